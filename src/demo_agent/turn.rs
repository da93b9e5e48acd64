//! One prompt turn, on its own thread: plays the prompt's script (or the demo
//! tour, or a flood), blocking on the client's answers to the agent's own
//! requests and on `session/cancel`, both delivered through one channel.

use super::flood::{self, Flood, FloodEnd};
use super::history::{Context, Entry};
use super::peer::{Peer, TurnEvent};
use super::script::{self, Step};
use super::session::Session;
use crate::core::rpc::{RpcError, code};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// After `session/cancel`, how long a turn still waits for the client to
/// answer an open permission request (which it must answer `cancelled`) or to
/// release a terminal, before it gives up and ends.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// `outputByteLimit` of every `terminal/create`.
const OUTPUT_BYTE_LIMIT: u64 = 65_536;

/// Longest text put into a tool call's content.
const PREVIEW_CHARS: usize = 4096;
/// The largest file a write's diff shows the old text of (the whole of it).
const MAX_DIFF_OLD_BYTES: u64 = 64 * 1024;

/// The context window the demo agent pretends to have, in tokens.
const DEMO_CONTEXT_TOKENS: u64 = 200_000;

/// The command the demo tour runs.
const TOUR_COMMAND: &str = "echo hello from the terminal";

/// The demo agent's modes: id, name, description.
pub const MODES: [(&str, &str, &str); 2] = [
    ("ask", "Ask", "Ask before changing anything"),
    ("code", "Code", "Edit and run without asking"),
];

/// The id of the demo agent's one config option.
pub const MODEL_OPTION: &str = "model";

/// The values of the model option: value, name.
pub const MODELS: [(&str, &str); 2] = [("demo-fast", "Fast"), ("demo-smart", "Smart")];

/// A session's mode and config option values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: String,
    pub model: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: MODES[0].0.to_string(),
            model: MODELS[0].0.to_string(),
        }
    }
}

impl Settings {
    /// ACP `modes` of a session answer.
    pub fn modes(&self) -> Value {
        let available: Vec<Value> = MODES
            .iter()
            .map(|(id, name, description)| json!({ "id": id, "name": name, "description": description }))
            .collect();
        json!({ "currentModeId": self.mode, "availableModes": available })
    }

    /// ACP `configOptions` of a session answer.
    pub fn config_options(&self) -> Value {
        let options: Vec<Value> = MODELS
            .iter()
            .map(|(value, name)| json!({ "value": value, "name": name }))
            .collect();
        json!([{
            "id": MODEL_OPTION,
            "name": "Model",
            "description": "Which demo model answers",
            "category": "model",
            "type": "select",
            "currentValue": self.model,
            "options": options,
        }])
    }
}

/// Which client methods the client advertised in `initialize`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCaps {
    pub read_text_file: bool,
    pub write_text_file: bool,
    pub terminal: bool,
}

impl ClientCaps {
    /// Reads `clientCapabilities` from `initialize` params; absent means no.
    pub fn from_initialize(params: &Value) -> ClientCaps {
        let caps = &params["clientCapabilities"];
        let yes = |v: &Value| v.as_bool().unwrap_or(false);
        ClientCaps {
            read_text_file: yes(&caps["fs"]["readTextFile"]),
            write_text_file: yes(&caps["fs"]["writeTextFile"]),
            terminal: yes(&caps["terminal"]),
        }
    }
}

/// What the turn does.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Script,
    Flood(Flood),
}

/// Why a turn stopped early.
#[derive(Debug)]
enum Stop {
    Cancelled,
    Fail(RpcError),
}

/// A user's answer to a permission request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Permission {
    Allow,
    Reject,
    Cancelled,
    Failed(String),
}

impl Permission {
    fn from_reply(reply: Result<Value, RpcError>) -> Permission {
        let v = match reply {
            Ok(v) => v,
            Err(e) => return Permission::Failed(e.message),
        };
        let outcome = &v["outcome"];
        match outcome["outcome"].as_str() {
            Some("cancelled") => Permission::Cancelled,
            Some("selected") if outcome["optionId"] == "allow" => Permission::Allow,
            Some("selected") => Permission::Reject,
            _ => Permission::Failed(format!("unexpected answer: {v}")),
        }
    }

    fn said(&self) -> String {
        match self {
            Permission::Allow => "permission: allow".into(),
            Permission::Reject => "permission: reject".into(),
            Permission::Cancelled => "permission: cancelled".into(),
            Permission::Failed(why) => format!("permission: error: {why}"),
        }
    }
}

/// Everything a turn needs, moved onto its thread.
pub struct Turn {
    pub peer: Arc<Peer>,
    pub session: Arc<Mutex<Session>>,
    pub session_id: String,
    pub cwd: PathBuf,
    pub caps: ClientCaps,
    /// The session's history before this prompt.
    pub context: Context,
    pub text: String,
    /// The prompt's image blocks: MIME type and decoded size in bytes.
    pub images: Vec<(String, usize)>,
    /// The URIs of the prompt's resource links.
    pub links: Vec<String>,
    /// The session's mode and config options when the prompt arrived.
    pub settings: Settings,
    pub mode: Mode,
    pub wake: Sender<TurnEvent>,
    pub events: Receiver<TurnEvent>,
    pub cancel: Arc<AtomicBool>,
}

/// Runs the turn to its end, records the agent's text, clears the session's
/// turn and answers the prompt request `id`.
pub fn run(turn: Turn, id: Value) {
    let peer = Arc::clone(&turn.peer);
    let session = Arc::clone(&turn.session);
    let mut player = Player {
        turn,
        said: String::new(),
    };
    let result = match player.turn.mode {
        Mode::Script => {
            let r = player.play();
            player.usage();
            r
        }
        Mode::Flood(f) => player.flood(f),
    };
    {
        let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
        s.turn = None;
        s.record(Entry::Agent {
            text: std::mem::take(&mut player.said),
        });
    }
    match result {
        Ok(()) => peer.respond(&id, json!({ "stopReason": "end_turn" })),
        Err(Stop::Cancelled) => peer.respond(&id, json!({ "stopReason": "cancelled" })),
        Err(Stop::Fail(e)) => peer.respond_error(&id, &e),
    }
}

struct Player {
    turn: Turn,
    /// Message text streamed so far, messages separated by newlines.
    said: String,
}

/// The first line (from 1) where `new` differs from `old`: where a write's
/// tool call points.
pub(super) fn first_change(old: &str, new: &str) -> u64 {
    let same = old
        .lines()
        .zip(new.lines())
        .take_while(|(a, b)| a == b)
        .count();
    let lines = new.lines().count().max(1);
    same.min(lines - 1) as u64 + 1
}

static TOOL_CALLS: AtomicU64 = AtomicU64::new(1);

/// Names this agent process in its tool call ids, so that ids stay unique in
/// a session across agent restarts (a restarted agent counts from 1 again).
fn process_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        format!("{:x}{:x}", ms, std::process::id())
    })
}

impl Player {
    fn cancelled(&self) -> bool {
        self.turn.cancel.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), Stop> {
        if self.cancelled() {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    fn update(&self, update: Value) {
        self.turn.peer.update(&self.turn.session_id, update);
    }

    fn chunk(&mut self, text: &str) {
        self.said.push_str(text);
        self.update(json!({ "sessionUpdate": "agent_message_chunk", "content": { "type": "text", "text": text } }));
    }

    /// One whole message, as one chunk; after earlier text a chunk holding
    /// the newline that separates them comes first (sent and recorded alike).
    fn say(&mut self, text: &str) {
        if !self.said.is_empty() {
            self.chunk("\n");
        }
        self.chunk(text);
    }

    /// A `usage_update` at the end of a turn: a made-up token count from the
    /// text so far (four characters a token), against a pretend context window.
    fn usage(&self) {
        let c = &self.turn.context;
        let chars = self.turn.text.len() + self.said.len() + c.prompts * 160;
        let used = (chars / 4) as u64;
        self.update(json!({
            "sessionUpdate": "usage_update",
            "used": used,
            "size": DEMO_CONTEXT_TOKENS,
            "cost": { "amount": used as f64 * 0.000_002, "currency": "USD" },
        }));
    }

    fn tool_call(&self, title: &str, kind: &str, status: &str, extra: Value) -> String {
        let id = format!(
            "tool-{}-{}",
            process_tag(),
            TOOL_CALLS.fetch_add(1, Ordering::Relaxed)
        );
        let mut call = json!({
            "sessionUpdate": "tool_call",
            "toolCallId": id,
            "title": title,
            "kind": kind,
            "status": status,
        });
        merge(&mut call, extra);
        self.update(call);
        id
    }

    fn tool_update(&self, id: &str, status: &str, content: Option<Value>) {
        let mut u =
            json!({ "sessionUpdate": "tool_call_update", "toolCallId": id, "status": status });
        if let Some(c) = content {
            u["content"] = c;
        }
        self.update(u);
    }

    /// Sleeps `ms`, ending early with `Stop::Cancelled` on `session/cancel`.
    fn sleep(&self, ms: u64) -> Result<(), Stop> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            match self.turn.events.recv_timeout(deadline - now) {
                Ok(TurnEvent::Reply { id, .. }) => {
                    log::debug!("demo agent: late answer to request {id} ignored")
                }
                Ok(TurnEvent::Cancel) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(Stop::Cancelled),
            }
        }
    }

    /// Sends a request to the client and waits for its answer. After
    /// `session/cancel`, a `grace` request is still awaited for
    /// [`CANCEL_GRACE`]; any other request is abandoned at once (and not sent
    /// at all when the turn is already cancelled).
    fn request(
        &self,
        method: &str,
        params: Value,
        grace: bool,
    ) -> Result<Result<Value, RpcError>, Stop> {
        if !grace {
            self.check()?;
        }
        let peer = &self.turn.peer;
        let id = peer.request(method, params, self.turn.wake.clone());
        let mut deadline: Option<Instant> = None;
        loop {
            if self.cancelled() {
                if !grace {
                    peer.forget(id);
                    return Err(Stop::Cancelled);
                }
                deadline.get_or_insert_with(|| Instant::now() + CANCEL_GRACE);
            }
            let event = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        log::info!(
                            "demo agent: no answer to {method} after cancel; ending the turn"
                        );
                        peer.forget(id);
                        return Err(Stop::Cancelled);
                    }
                    self.turn.events.recv_timeout(d - now)
                }
                None => self
                    .turn
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(TurnEvent::Reply { id: got, result }) if got == id => return Ok(result),
                Ok(TurnEvent::Reply { id: got, .. }) => {
                    log::debug!("demo agent: late answer to request {got} ignored")
                }
                Ok(TurnEvent::Cancel) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    peer.forget(id);
                    return Err(Stop::Cancelled);
                }
            }
        }
    }

    /// `path` as the client should see it: absolute, against the session's
    /// cwd when relative. `..` is left in place for the client's jail to judge.
    fn absolute(&self, path: &str) -> String {
        let p = Path::new(path);
        if p.is_absolute() {
            path.to_string()
        } else {
            self.turn.cwd.join(p).to_string_lossy().into_owned()
        }
    }

    fn play(&mut self) -> Result<(), Stop> {
        let script = script::parse(&self.turn.text);
        let echo = format!("echo: {}", self.turn.text);
        for piece in script::split_chunks(&echo, script.chunks) {
            self.check()?;
            self.chunk(piece);
        }
        for (mime, bytes) in self.turn.images.clone() {
            self.say(&format!(
                "image: {mime}, {bytes} bytes; a demo agent cannot see it"
            ));
        }
        for uri in self.turn.links.clone() {
            self.say(&format!("file: {uri}"));
        }
        if script.tour && self.turn.images.is_empty() && self.turn.links.is_empty() {
            return self.tour();
        }
        for step in script.steps {
            self.check()?;
            self.step(step)?;
        }
        Ok(())
    }

    fn step(&mut self, step: Step) -> Result<(), Stop> {
        match step {
            Step::Sleep { ms } => self.sleep(ms),
            Step::Ask => self.ask(),
            Step::Read { path, line } => self.read(&path, line.unwrap_or(1)),
            Step::Write { path, text } => self.write(&path, &text),
            Step::Run { command } => self.run_command(&command),
            Step::Context => {
                let c = &self.turn.context;
                let text = format!(
                    "context: {} earlier prompts; last: {}",
                    c.prompts,
                    c.last.as_deref().unwrap_or("none")
                );
                self.say(&text);
                Ok(())
            }
            Step::Settings => {
                let s = &self.turn.settings;
                let text = format!("settings: mode {}; {MODEL_OPTION} {}", s.mode, s.model);
                self.say(&text);
                Ok(())
            }
            Step::Fail => Err(Stop::Fail(RpcError::new(code::OTHER, "demo failure"))),
            Step::Exit => {
                log::info!("demo agent: /exit, ending the process with status 3");
                std::process::exit(3);
            }
            Step::Invalid { line, why } => {
                self.say(&format!("ignored `{line}`: {why}"));
                Ok(())
            }
        }
    }

    /// A pending tool call, a permission request for it, and a chunk saying
    /// the answer. Returns the tool call id and the answer.
    fn permission(&mut self, title: &str, kind: &str) -> (String, Permission) {
        let tool = self.tool_call(title, kind, "pending", json!({}));
        let params = json!({
            "sessionId": self.turn.session_id,
            "toolCall": { "toolCallId": tool, "title": title, "kind": kind, "status": "pending" },
            "options": [
                { "optionId": "allow", "name": "Allow", "kind": "allow_once" },
                { "optionId": "reject", "name": "Reject", "kind": "reject_once" },
            ],
        });
        let answer = match self.request("session/request_permission", params, true) {
            Ok(reply) => Permission::from_reply(reply),
            Err(_) => Permission::Cancelled,
        };
        self.say(&answer.said());
        (tool, answer)
    }

    fn ask(&mut self) -> Result<(), Stop> {
        let (tool, answer) = self.permission("Demo action that needs your permission", "other");
        match answer {
            Permission::Allow => {
                self.tool_update(&tool, "completed", Some(text_content("allowed")));
                Ok(())
            }
            Permission::Cancelled => {
                self.tool_update(&tool, "failed", Some(text_content("cancelled")));
                Err(Stop::Cancelled)
            }
            Permission::Reject | Permission::Failed(_) => {
                self.tool_update(&tool, "failed", Some(text_content("rejected")));
                Ok(())
            }
        }
    }

    fn read(&mut self, path: &str, line: u64) -> Result<(), Stop> {
        let abs = self.absolute(path);
        let extra =
            json!({ "locations": [{ "path": abs, "line": line }], "rawInput": { "path": abs } });
        let tool = self.tool_call(&format!("Read {path}"), "read", "in_progress", extra);
        if !self.turn.caps.read_text_file {
            self.say("read skipped: the client did not advertise fs.readTextFile");
            self.tool_update(&tool, "failed", None);
            return Ok(());
        }
        let params = json!({ "sessionId": self.turn.session_id, "path": abs });
        let reply = self.request("fs/read_text_file", params, false);
        let reply = match reply {
            Ok(r) => r,
            Err(stop) => {
                self.tool_update(&tool, "failed", None);
                return Err(stop);
            }
        };
        let content = reply.and_then(|v| match v["content"].as_str() {
            Some(s) => Ok(s.to_string()),
            None => Err(RpcError::other("the answer has no content string")),
        });
        match content {
            Ok(text) => {
                let first = text.lines().next().unwrap_or("");
                self.say(&format!("read ok: {} bytes: {first}", text.len()));
                self.tool_update(&tool, "completed", Some(text_content(preview(&text))));
            }
            Err(e) => {
                self.say(&format!("read error {}: {}", e.code, e.message));
                self.tool_update(&tool, "failed", Some(text_content(&e.message)));
            }
        }
        Ok(())
    }

    fn write(&mut self, path: &str, text: &str) -> Result<(), Stop> {
        let abs = self.absolute(path);
        let old = self.old_text(path);
        let line = first_change(old.as_deref().unwrap_or(""), text);
        let extra = json!({
            "locations": [{ "path": abs, "line": line }],
            "rawInput": { "path": abs, "content": text },
        });
        let tool = self.tool_call(&format!("Write {path}"), "edit", "in_progress", extra);
        if !self.turn.caps.write_text_file {
            self.say("write skipped: the client did not advertise fs.writeTextFile");
            self.tool_update(&tool, "failed", None);
            return Ok(());
        }
        let params = json!({ "sessionId": self.turn.session_id, "path": abs, "content": text });
        let reply = match self.request("fs/write_text_file", params, false) {
            Ok(r) => r,
            Err(stop) => {
                self.tool_update(&tool, "failed", None);
                return Err(stop);
            }
        };
        match reply {
            Ok(_) => {
                self.say("write ok");
                let diff =
                    json!([{ "type": "diff", "path": abs, "oldText": old, "newText": text }]);
                self.tool_update(&tool, "completed", Some(diff));
            }
            Err(e) => {
                self.say(&format!("write error: {}", e.message));
                self.tool_update(&tool, "failed", Some(text_content(&e.message)));
            }
        }
        Ok(())
    }

    /// The text a write replaces, for the diff it shows: read from disk, only
    /// for a relative path that stays inside the session's directory.
    fn old_text(&self, path: &str) -> Option<String> {
        let p = Path::new(path);
        let inside = p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return None;
        }
        let full = self.turn.cwd.join(p);
        // A file larger than a diff should carry shows no old side: a cut
        // one would point the location and the diff at lines that did not change.
        if std::fs::metadata(&full).ok()?.len() > MAX_DIFF_OLD_BYTES {
            return None;
        }
        std::fs::read_to_string(full).ok()
    }

    fn run_command(&mut self, command: &str) -> Result<(), Stop> {
        let extra = json!({ "rawInput": { "command": command } });
        let tool = self.tool_call(&format!("Run {command}"), "execute", "in_progress", extra);
        if !self.turn.caps.terminal {
            self.say("run skipped: the client did not advertise terminal");
            self.tool_update(&tool, "failed", None);
            return Ok(());
        }
        let sid = self.turn.session_id.clone();
        let params = json!({
            "sessionId": sid,
            "command": "sh",
            "args": ["-c", command],
            "cwd": self.turn.cwd.to_string_lossy(),
            "outputByteLimit": OUTPUT_BYTE_LIMIT,
        });
        // Awaited through a cancel, so a terminal that was created is released.
        let created = match self.request("terminal/create", params, true) {
            Ok(r) => r,
            Err(stop) => {
                self.tool_update(&tool, "failed", None);
                return Err(stop);
            }
        };
        let terminal = match created.and_then(|v| match v["terminalId"].as_str() {
            Some(t) => Ok(t.to_string()),
            None => Err(RpcError::other("the answer has no terminalId")),
        }) {
            Ok(t) => t,
            Err(e) => {
                self.say(&format!("run error: {}", e.message));
                self.tool_update(&tool, "failed", Some(text_content(&e.message)));
                return Ok(());
            }
        };
        self.update(json!({
            "sessionUpdate": "tool_call_update",
            "toolCallId": tool,
            "content": [{ "type": "terminal", "terminalId": terminal }],
        }));
        let outcome = self.await_terminal(&terminal);
        let release = json!({ "sessionId": sid, "terminalId": terminal });
        if let Ok(Err(e)) = self.request("terminal/release", release, true) {
            log::debug!("demo agent: terminal/release failed: {e}");
        }
        match outcome {
            Err(stop) => {
                self.tool_update(&tool, "failed", None);
                Err(stop)
            }
            Ok(Err(e)) => {
                self.say(&format!("run error: {}", e.message));
                self.tool_update(&tool, "failed", Some(text_content(&e.message)));
                Ok(())
            }
            Ok(Ok((exit, output))) => {
                let output = output.trim_end();
                self.say(&format!("run exit {exit}: {output}"));
                self.tool_update(&tool, "completed", Some(text_content(preview(output))));
                Ok(())
            }
        }
    }

    /// Waits for the command to exit and collects its output: the exit code
    /// (or signal) as text, and the output.
    fn await_terminal(&self, terminal: &str) -> Result<Result<(String, String), RpcError>, Stop> {
        let params = json!({ "sessionId": self.turn.session_id, "terminalId": terminal });
        let exit = match self.request("terminal/wait_for_exit", params.clone(), false)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let output = match self.request("terminal/output", params, false)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let exit = match (exit["exitCode"].as_i64(), exit["signal"].as_str()) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "unknown".to_string(),
        };
        let text = output["output"].as_str().unwrap_or("").to_string();
        Ok(Ok((exit, text)))
    }

    /// The tour of a prompt without commands: a tool call, a permission, and
    /// when allowed a file read and a command.
    fn tour(&mut self) -> Result<(), Stop> {
        self.check()?;
        self.update(json!({
            "sessionUpdate": "agent_thought_chunk",
            "content": { "type": "text", "text": "The person sent plain text: show them around." },
        }));
        let entry = |content: &str, status: &str| json!({ "content": content, "priority": "medium", "status": status });
        self.update(json!({
            "sessionUpdate": "plan",
            "entries": [
                entry("Ask for permission", "in_progress"),
                entry("Read README.md", "pending"),
                entry("Run a command", "pending"),
            ],
        }));
        let plan = self.tool_call("Plan the demo", "think", "in_progress", json!({}));
        self.tool_update(
            &plan,
            "completed",
            Some(text_content(
                "stream text, ask permission, read README.md, run a command",
            )),
        );
        self.check()?;
        let (tool, answer) = self.permission("Read README.md and run a command", "other");
        match answer {
            Permission::Allow => {}
            Permission::Cancelled => {
                self.tool_update(&tool, "failed", Some(text_content("cancelled")));
                return Err(Stop::Cancelled);
            }
            Permission::Reject | Permission::Failed(_) => {
                self.tool_update(&tool, "failed", Some(text_content("rejected")));
                self.say("skipping the file read and the command");
                return Ok(());
            }
        }
        self.tool_update(&tool, "in_progress", None);
        self.check()?;
        if self.turn.cwd.join("README.md").is_file() {
            self.read("README.md", 1)?;
        } else {
            self.say(&format!(
                "no README.md in {}; skipping the read",
                self.turn.cwd.display()
            ));
        }
        self.check()?;
        self.run_command(TOUR_COMMAND)?;
        self.tool_update(&tool, "completed", None);
        self.say("that was the tour: text, tool calls, a permission, a file read and a command");
        Ok(())
    }

    fn flood(&mut self, f: Flood) -> Result<(), Stop> {
        let t = &self.turn;
        match flood::run(&t.peer, &t.session_id, f, &t.cancel) {
            Ok(FloodEnd::Done) => {
                self.said = format!("(flood of {} chunks)", f.frames);
                Ok(())
            }
            Ok(FloodEnd::Cancelled { sent }) => {
                self.said = format!("(flood cancelled after {sent} chunks)");
                Err(Stop::Cancelled)
            }
            Err(e) => Err(Stop::Fail(RpcError::other(format!("flood failed: {e}")))),
        }
    }
}

/// Tool call content holding one text block.
fn text_content(text: &str) -> Value {
    json!([{ "type": "content", "content": { "type": "text", "text": text } }])
}

/// At most [`PREVIEW_CHARS`] characters of `text`.
fn preview(text: &str) -> &str {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Copies the members of object `extra` into object `into`.
fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_outcomes() {
        let sel = |id: &str| Ok(json!({ "outcome": { "outcome": "selected", "optionId": id } }));
        assert_eq!(Permission::from_reply(sel("allow")), Permission::Allow);
        assert_eq!(Permission::from_reply(sel("reject")), Permission::Reject);
        assert_eq!(Permission::from_reply(sel("other")), Permission::Reject);
        assert_eq!(
            Permission::from_reply(Ok(json!({ "outcome": { "outcome": "cancelled" } }))),
            Permission::Cancelled
        );
        assert!(matches!(
            Permission::from_reply(Ok(json!({}))),
            Permission::Failed(_)
        ));
        assert!(
            matches!(Permission::from_reply(Err(RpcError::other("x"))), Permission::Failed(m) if m == "x")
        );
        assert_eq!(Permission::Allow.said(), "permission: allow");
        assert_eq!(Permission::Cancelled.said(), "permission: cancelled");
    }

    #[test]
    fn caps_from_initialize() {
        let p =
            json!({ "clientCapabilities": { "fs": { "readTextFile": true }, "terminal": true } });
        assert_eq!(
            ClientCaps::from_initialize(&p),
            ClientCaps {
                read_text_file: true,
                write_text_file: false,
                terminal: true
            }
        );
        assert_eq!(
            ClientCaps::from_initialize(&json!(null)),
            ClientCaps::default()
        );
    }

    #[test]
    fn preview_cuts_on_char_boundary() {
        let long = "é".repeat(PREVIEW_CHARS + 10);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS);
        assert_eq!(preview("short"), "short");
    }
}
