//! The built-in demo ACP agent (`acp-relay demo-agent`): a real agent on
//! stdin/stdout, newline-delimited JSON-RPC 2.0, whose prompts are a tiny
//! script (see `script`) so that tests are deterministic. It is a separate
//! process: plain threads and blocking I/O, one reader thread feeding the
//! dispatch loop, one thread per running turn. Logs go to stderr only.
//!
//! # Layout
//!
//! - `script` — parses a prompt's text into steps (pure).
//! - `history` — a session's prompts and answers, and their `.jsonl` file.
//! - `session` — one session's state and the handle of its running turn.
//! - `peer` — whole-line writes to the client and the agent's open requests.
//! - `turn` — plays one prompt turn on its own thread.
//! - `flood` — flood mode, a load generator.

mod flood;
mod history;
mod peer;
mod script;
mod session;
mod turn;

use crate::core::rpc::{RpcError, code};
use history::{Context, Entry, HistoryFile};
use peer::{Peer, error_from_value};
use serde_json::{Map, Value, json};
use session::{Session, TurnHandle};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use turn::{ClientCaps, Mode, Settings, Turn};

/// Options of `acp-relay demo-agent`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Where per-session history is kept so `session/load` can restore context. None = in memory only.
    pub state_dir: Option<std::path::PathBuf>,
    /// Flood mode: on every prompt emit `flood` agent_message_chunk updates instead of the demo script (0 = off).
    pub flood: u64,
    /// Approximate bytes of each flood chunk's text.
    pub frame_bytes: usize,
    /// Flood chunks per second (0 = as fast as possible).
    pub rate: u64,
}

/// The one auth method the demo agent offers (it needs no account).
const DEMO_AUTH_METHOD: &str = "demo-login";

/// Adds a session's modes and config options to its `session/new` or
/// `session/load` answer.
fn merge_settings(answer: &mut Value, settings: &Settings) {
    if let Some(o) = answer.as_object_mut() {
        o.insert("modes".into(), settings.modes());
        o.insert("configOptions".into(), settings.config_options());
    }
}

/// The ACP protocol version the demo agent speaks.
const PROTOCOL_VERSION: u64 = 1;

/// Longest accepted input line; a longer one is discarded and answered -32600.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Most sessions one demo agent process keeps.
const MAX_SESSIONS: usize = 1024;

/// Capacity of the output buffer (flood mode batches many lines into it).
const OUTPUT_BUFFER: usize = 64 << 10;

/// Runs the agent on stdin/stdout until stdin closes.
pub fn run(opts: DemoOptions) -> io::Result<()> {
    serve(io::stdin(), io::stdout(), opts)
}

/// Serves ACP over any pair of byte streams until `input` ends.
fn serve<R, W>(input: R, output: W, opts: DemoOptions) -> io::Result<()>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let peer = Arc::new(Peer::new(Box::new(BufWriter::with_capacity(
        OUTPUT_BUFFER,
        output,
    ))));
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("demo-agent-stdin".into())
        .spawn(move || read_lines(input, MAX_LINE_BYTES, tx))?;
    let mut agent = Agent::new(opts, peer);
    log::info!("demo agent: ready");
    while let Ok(input) = rx.recv() {
        match input {
            Input::Line(line) => agent.handle_line(&line),
            Input::TooLong => agent.peer.respond_error(
                &Value::Null,
                &RpcError::new(
                    code::INVALID_REQUEST,
                    format!("line longer than {MAX_LINE_BYTES} bytes; send smaller messages"),
                ),
            ),
            Input::End(Ok(())) => {
                log::info!("demo agent: input closed, exiting");
                break;
            }
            Input::End(Err(e)) => {
                log::warn!("demo agent: cannot read input: {e}");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// What the reader thread hands the dispatch loop.
enum Input {
    Line(Vec<u8>),
    TooLong,
    End(io::Result<()>),
}

/// Splits `input` into lines (without the newline) of at most `max` bytes;
/// a longer line is dropped and reported as [`Input::TooLong`]. Stops at end
/// of input or when nobody listens.
fn read_lines<R: Read>(input: R, max: usize, tx: mpsc::Sender<Input>) {
    let mut reader = BufReader::with_capacity(64 << 10, input);
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Input::End(Err(e)));
                return;
            }
        };
        if buf.is_empty() {
            if too_long {
                let _ = tx.send(Input::TooLong);
            } else if !line.is_empty() {
                let _ = tx.send(Input::Line(std::mem::take(&mut line)));
            }
            let _ = tx.send(Input::End(Ok(())));
            return;
        }
        let (part, used, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(part);
            }
        }
        reader.consume(used);
        if complete {
            let msg = if too_long {
                Input::TooLong
            } else {
                Input::Line(std::mem::take(&mut line))
            };
            too_long = false;
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

/// The dispatch loop's state. Sessions are only added or removed here; turn
/// threads reach their own session through its `Arc<Mutex<_>>`.
struct Agent {
    opts: DemoOptions,
    peer: Arc<Peer>,
    caps: ClientCaps,
    sessions: HashMap<String, Arc<Mutex<Session>>>,
    /// Each session's mode and config option values (same keys as `sessions`).
    settings: HashMap<String, Settings>,
}

fn lock(s: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn str_param<'a>(params: &'a Value, method: &str, key: &str) -> Result<&'a str, RpcError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("{method} needs `{key}` (a string)")))
}

fn unknown_session(id: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "unknown session: {id}; create one with session/new"
    ))
}

impl Agent {
    fn new(opts: DemoOptions, peer: Arc<Peer>) -> Agent {
        Agent {
            opts,
            peer,
            caps: ClientCaps::default(),
            sessions: HashMap::new(),
            settings: HashMap::new(),
        }
    }

    fn handle_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let msg: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                let err = RpcError::new(
                    code::PARSE_ERROR,
                    format!("parse error: {e}; send one JSON object per line"),
                );
                return self.peer.respond_error(&Value::Null, &err);
            }
        };
        let Value::Object(obj) = msg else {
            let err = RpcError::new(
                code::INVALID_REQUEST,
                "invalid request: send a JSON-RPC 2.0 object (batches are not supported)",
            );
            return self.peer.respond_error(&Value::Null, &err);
        };
        let id = obj.get("id").cloned();
        if let Some(id) = &id
            && !(id.is_string() || id.is_number() || id.is_null())
        {
            let err = RpcError::new(
                code::INVALID_REQUEST,
                "invalid request: `id` must be a string or a number",
            );
            return self.peer.respond_error(&Value::Null, &err);
        }
        let params = obj.get("params").cloned().unwrap_or(Value::Null);
        match (obj.get("method"), id) {
            (Some(Value::String(method)), Some(id)) => {
                if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
                    let err = RpcError::new(
                        code::INVALID_REQUEST,
                        "invalid request: `jsonrpc` must be \"2.0\"",
                    );
                    return self.peer.respond_error(&id, &err);
                }
                self.request(id, method, &params);
            }
            (Some(Value::String(method)), None) => self.notification(method, &params),
            (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
                self.response(&id, &obj)
            }
            (_, id) => {
                let err = RpcError::new(
                    code::INVALID_REQUEST,
                    "invalid request: expected a request (method, id), a notification (method) or a response (id, result|error)",
                );
                self.peer.respond_error(&id.unwrap_or(Value::Null), &err);
            }
        }
    }

    fn request(&mut self, id: Value, method: &str, params: &Value) {
        log::debug!("demo agent: request {method}");
        let result = match method {
            "initialize" => Ok(self.initialize(params)),
            "session/new" | "session/load" => {
                let opened = if method == "session/new" {
                    self.new_session(params)
                } else {
                    self.load_session(params)
                };
                if let Ok(v) = &opened {
                    let sid = v["sessionId"]
                        .as_str()
                        .or_else(|| params["sessionId"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let mut answer = v.clone();
                    if let Some(o) = answer.as_object_mut() {
                        o.remove("sessionId");
                        if method == "session/new" {
                            o.insert("sessionId".into(), json!(sid));
                        }
                    }
                    let live = &self.sessions;
                    self.settings.retain(|k, _| live.contains_key(k));
                    let settings = self.settings.entry(sid.clone()).or_default();
                    merge_settings(&mut answer, settings);
                    // The command list comes before the answer: a client that
                    // reads up to the answer has it (the relay holds updates
                    // for a session it does not know yet).
                    self.peer.update(
                        &sid,
                        json!({ "sessionUpdate": "available_commands_update", "availableCommands": script::command_list() }),
                    );
                    self.peer.respond(&id, answer);
                    return;
                }
                opened
            }
            "session/close" => session::close(&mut self.sessions, params),
            "session/set_mode" => self.set_mode(params),
            "session/set_config_option" => self.set_config_option(params),
            "authenticate" => {
                let method = params["methodId"].as_str().unwrap_or("");
                if method == DEMO_AUTH_METHOD {
                    eprintln!("demo agent: logged in with {DEMO_AUTH_METHOD} (nothing to do)");
                    Ok(json!({}))
                } else {
                    Err(RpcError::invalid_params(format!(
                        "unknown auth method {method:?}; use {DEMO_AUTH_METHOD:?}"
                    )))
                }
            }
            "session/prompt" => match self.prompt(&id, params) {
                Ok(()) => return,
                Err(e) => Err(e),
            },
            _ => Err(RpcError::method_not_found(method)),
        };
        match result {
            Ok(v) => self.peer.respond(&id, v),
            Err(e) => self.peer.respond_error(&id, &e),
        }
    }

    fn notification(&mut self, method: &str, params: &Value) {
        match method {
            "session/cancel" => {
                let Some(sid) = params.get("sessionId").and_then(Value::as_str) else {
                    return log::warn!("demo agent: session/cancel without a sessionId ignored");
                };
                match self.sessions.get(sid) {
                    Some(s) => match &lock(s).turn {
                        Some(t) => {
                            log::info!("demo agent: cancelling the turn of {sid}");
                            t.cancel();
                        }
                        None => log::debug!("demo agent: session/cancel for idle {sid}"),
                    },
                    None => log::warn!("demo agent: session/cancel for unknown session {sid}"),
                }
            }
            _ => log::debug!("demo agent: notification {method} ignored"),
        }
    }

    fn response(&mut self, id: &Value, obj: &Map<String, Value>) {
        let result = match obj.get("error") {
            Some(e) => Err(error_from_value(e)),
            None => Ok(obj.get("result").cloned().unwrap_or(Value::Null)),
        };
        if !self.peer.route_reply(id, result) {
            log::warn!("demo agent: answer to unknown request id {id} ignored");
        }
    }

    fn initialize(&mut self, params: &Value) -> Value {
        self.caps = ClientCaps::from_initialize(params);
        log::info!("demo agent: client capabilities {:?}", self.caps);
        json!({
            "protocolVersion": PROTOCOL_VERSION,
            "agentCapabilities": {
                "loadSession": true,
                "sessionCapabilities": { "close": {} },
                "promptCapabilities": { "image": true, "audio": false, "embeddedContext": true },
            },
            "agentInfo": { "name": "acp-relay-demo", "version": env!("CARGO_PKG_VERSION") },
            "authMethods": [{
                "id": DEMO_AUTH_METHOD,
                "name": "Demo login",
                "description": "Pretends to log in; the demo agent needs no account",
            }],
        })
    }

    fn check_room(&self) -> Result<(), RpcError> {
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(RpcError::new(
                code::LIMIT,
                format!(
                    "the demo agent holds {MAX_SESSIONS} sessions already; start a new agent process"
                ),
            ));
        }
        Ok(())
    }

    fn new_session(&mut self, params: &Value) -> Result<Value, RpcError> {
        let cwd = str_param(params, "session/new", "cwd")?;
        self.check_room()?;
        let id = session::new_session_id();
        let file = self
            .opts
            .state_dir
            .as_deref()
            .and_then(|d| HistoryFile::for_session(d, &id));
        let mut s = Session {
            cwd: PathBuf::from(cwd),
            entries: Vec::new(),
            file,
            turn: None,
        };
        s.record(Entry::Session {
            cwd: cwd.to_string(),
        });
        log::info!("demo agent: new session {id} in {cwd}");
        self.sessions.insert(id.clone(), Arc::new(Mutex::new(s)));
        Ok(json!({ "sessionId": id }))
    }

    fn load_session(&mut self, params: &Value) -> Result<Value, RpcError> {
        let sid = str_param(params, "session/load", "sessionId")?;
        let cwd = params.get("cwd").and_then(Value::as_str);
        let session = match self.sessions.get(sid) {
            Some(s) => Arc::clone(s),
            None => {
                self.check_room()?;
                let s = Arc::new(Mutex::new(self.restore(sid, cwd)?));
                self.sessions.insert(sid.to_string(), Arc::clone(&s));
                s
            }
        };
        let mut s = lock(&session);
        if let Some(cwd) = cwd {
            s.cwd = PathBuf::from(cwd);
        }
        for e in &s.entries {
            let (kind, text) = match e {
                Entry::User { text } => ("user_message_chunk", text),
                Entry::Agent { text } => ("agent_message_chunk", text),
                Entry::Session { .. } => continue,
            };
            if !text.is_empty() {
                self.peer.update(
                    sid,
                    json!({ "sessionUpdate": kind, "content": { "type": "text", "text": text } }),
                );
            }
        }
        log::info!(
            "demo agent: loaded session {sid} ({} prompts)",
            Context::of(&s.entries).prompts
        );
        Ok(json!({}))
    }

    fn set_mode(&mut self, params: &Value) -> Result<Value, RpcError> {
        let sid = str_param(params, "session/set_mode", "sessionId")?;
        let mode = str_param(params, "session/set_mode", "modeId")?;
        if !self.sessions.contains_key(sid) {
            return Err(unknown_session(sid));
        }
        if !turn::MODES.iter().any(|(id, _, _)| *id == mode) {
            return Err(RpcError::invalid_params(format!(
                "unknown mode {mode:?}; pick one of the session's availableModes"
            )));
        }
        self.settings.entry(sid.to_string()).or_default().mode = mode.to_string();
        log::info!("demo agent: session {sid} mode {mode}");
        self.peer.update(
            sid,
            json!({ "sessionUpdate": "current_mode_update", "currentModeId": mode }),
        );
        Ok(json!({}))
    }

    fn set_config_option(&mut self, params: &Value) -> Result<Value, RpcError> {
        let sid = str_param(params, "session/set_config_option", "sessionId")?;
        let config = str_param(params, "session/set_config_option", "configId")?;
        let value = str_param(params, "session/set_config_option", "value")?;
        if !self.sessions.contains_key(sid) {
            return Err(unknown_session(sid));
        }
        if config != turn::MODEL_OPTION {
            return Err(RpcError::invalid_params(format!(
                "unknown config option {config:?}; the demo agent has {:?}",
                turn::MODEL_OPTION
            )));
        }
        if !turn::MODELS.iter().any(|(v, _)| *v == value) {
            return Err(RpcError::invalid_params(format!(
                "unknown value {value:?} for {config:?}; pick one of its options"
            )));
        }
        let settings = self.settings.entry(sid.to_string()).or_default();
        settings.model = value.to_string();
        log::info!("demo agent: session {sid} {config} = {value}");
        let options = settings.config_options();
        self.peer.update(
            sid,
            json!({ "sessionUpdate": "config_option_update", "configOptions": options }),
        );
        Ok(json!({ "configOptions": options }))
    }

    /// A session from its history file, or -32602 when there is none.
    fn restore(&self, sid: &str, cwd: Option<&str>) -> Result<Session, RpcError> {
        let dir = self
            .opts
            .state_dir
            .as_deref()
            .ok_or_else(|| unknown_session(sid))?;
        let mut file = HistoryFile::for_session(dir, sid).ok_or_else(|| unknown_session(sid))?;
        let entries = match file.load() {
            Ok(Some(entries)) => entries,
            Ok(None) => return Err(unknown_session(sid)),
            Err(e) => {
                return Err(RpcError::other(format!(
                    "cannot read the history of {sid}: {e}"
                )));
            }
        };
        let saved_cwd = entries.iter().find_map(|e| match e {
            Entry::Session { cwd } => Some(cwd.clone()),
            _ => None,
        });
        let cwd = cwd
            .map(str::to_string)
            .or(saved_cwd)
            .unwrap_or_else(|| ".".to_string());
        Ok(Session {
            cwd: PathBuf::from(cwd),
            entries,
            file: Some(file),
            turn: None,
        })
    }

    /// Starts a turn on its own thread; it answers `id` when it ends.
    fn prompt(&mut self, id: &Value, params: &Value) -> Result<(), RpcError> {
        let sid = str_param(params, "session/prompt", "sessionId")?;
        let blocks = params
            .get("prompt")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                RpcError::invalid_params(
                    "session/prompt needs `prompt` (an array of content blocks)",
                )
            })?;
        let text: String = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect();
        let images: Vec<(String, usize)> = blocks
            .iter()
            .filter(|b| b["type"] == "image")
            .map(|b| {
                let mime = b["mimeType"].as_str().unwrap_or("image/?").to_string();
                // base64: four characters per three bytes
                let bytes = b["data"]
                    .as_str()
                    .map_or(0, |d| d.trim_end_matches('=').len() * 3 / 4);
                (mime, bytes)
            })
            .collect();
        let links: Vec<String> = blocks
            .iter()
            .filter(|b| b["type"] == "resource_link")
            .filter_map(|b| b["uri"].as_str().map(str::to_string))
            .collect();
        let settings = self.settings.get(sid).cloned().unwrap_or_default();
        let session = self
            .sessions
            .get(sid)
            .cloned()
            .ok_or_else(|| unknown_session(sid))?;
        let (wake, events) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let (context, cwd) = {
            let mut s = lock(&session);
            if s.turn.is_some() {
                return Err(RpcError::new(
                    code::BUSY,
                    "a turn is already running in this session; wait for it to end or send session/cancel",
                ));
            }
            let context = Context::of(&s.entries);
            s.record(Entry::User { text: text.clone() });
            s.turn = Some(TurnHandle {
                wake: wake.clone(),
                cancel: Arc::clone(&cancel),
            });
            (context, s.cwd.clone())
        };
        let mode = if self.opts.flood > 0 {
            Mode::Flood(flood::Flood {
                frames: self.opts.flood,
                frame_bytes: self.opts.frame_bytes,
                rate: self.opts.rate,
            })
        } else {
            Mode::Script
        };
        let turn = Turn {
            peer: Arc::clone(&self.peer),
            session: Arc::clone(&session),
            session_id: sid.to_string(),
            cwd,
            caps: self.caps,
            context,
            text,
            images,
            links,
            settings,
            mode,
            wake,
            events,
            cancel,
        };
        let id = id.clone();
        let spawned = std::thread::Builder::new()
            .name("demo-agent-turn".into())
            .spawn(move || turn::run(turn, id));
        if let Err(e) = spawned {
            lock(&session).turn = None;
            return Err(RpcError::new(
                code::INTERNAL,
                format!("cannot start the turn: {e}; try again"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
