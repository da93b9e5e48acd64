//! The bridge's protocol state, sans I/O: what to do with a line from the
//! stdio client, a message from the relay, a link that came up or went down.
//! The shell in `connect.rs` owns stdin, stdout and the sockets and turns
//! their I/O into these calls; every call pushes what to send into `out`.
//!
//! What it remembers to resume after a drop: the client's `initialize`
//! request, and the last session the client created or loaded (with its `cwd`
//! and `mcpServers`). On a new link it replays `initialize` and sends
//! `session/load` under its own ids and swallows both answers and the history
//! the load replays, so the client sees neither twice. Requests still waiting
//! for an answer when a link drops are answered with an error at once, so the
//! client never hangs on a response that cannot come.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};

/// Most client requests waiting for the relay's answer; past it a request is
/// answered with an error at once instead of forwarded.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Most client lines held while the link is down or resuming.
pub const MAX_QUEUED_LINES: usize = 64;
/// Most bytes of client lines held while the link is down or resuming (one
/// line more may be accepted when the queue is empty).
pub const MAX_QUEUED_BYTES: usize = 8 << 20;
/// Most open agent asks (relay → client requests) remembered to drop their
/// re-sends after a resume.
pub const MAX_OPEN_ASKS: usize = 256;

/// The JSON-RPC error code for "other" errors (DESIGN.md).
pub const LINK_LOST_CODE: i64 = -32000;
/// What an in-flight request is answered with when the link drops.
pub const LINK_LOST: &str = "relay connection lost; retry";
/// What queued and in-flight requests are answered with when the bridge gives up.
pub const GAVE_UP: &str =
    "relay connection lost and could not be re-established; restart the agent command";
/// What a request past [`MAX_IN_FLIGHT`] is answered with.
pub const TOO_MANY: &str =
    "too many requests in flight through acp-relay connect; wait for answers and retry";

/// Prefix of the ids the bridge uses for its own requests to the relay.
pub const OWN_ID_PREFIX: &str = "acp-relay-connect:";

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// A line for the client's stdin (without the newline).
    Client(String),
    /// A text frame for the relay.
    Relay(String),
}

/// Where the link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No link: connecting. Client lines are queued.
    Down,
    /// A new link: waiting for the answer to the replayed `initialize`.
    AwaitInit { id: String },
    /// Waiting for the answer to our `session/load`; its replayed history is dropped.
    AwaitLoad { id: String, session: String },
    /// Forwarding both ways.
    Up,
}

/// The session the bridge resumes after a drop.
#[derive(Debug, Clone, PartialEq)]
struct Resume {
    session_id: String,
    cwd: Value,
    mcp_servers: Value,
}

/// A client request waiting for its answer.
#[derive(Debug)]
struct InFlight {
    id: Value,
    /// For session/new, load and resume: what to remember once it succeeds.
    resume: Option<Resume>,
}

/// The first keys of a JSON-RPC message, without building its tree.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// `params.sessionId` of a notification, without building its tree.
#[derive(Deserialize)]
struct SessionProbe {
    params: SessionParams,
}

#[derive(Deserialize)]
struct SessionParams {
    #[serde(rename = "sessionId", default)]
    session_id: Option<String>,
}

/// The bridge state.
#[derive(Debug)]
pub struct Bridge {
    phase: Phase,
    /// The client's `initialize` params, replayed on every new link.
    init: Option<Value>,
    resume: Option<Resume>,
    in_flight: HashMap<String, InFlight>,
    queued: VecDeque<String>,
    queued_bytes: usize,
    open_asks: HashSet<String>,
    next_own: u64,
    /// History updates dropped during resumes (for logs and tests).
    pub swallowed: u64,
    /// `_meta.relay` added to the client's `session/new` (`--project`,
    /// `--agent`) unless it names its own; `None`: nothing added.
    place: Option<Value>,
}

impl Default for Bridge {
    fn default() -> Self {
        Bridge::new()
    }
}

impl Bridge {
    pub fn new() -> Bridge {
        Bridge {
            phase: Phase::Down,
            init: None,
            resume: None,
            in_flight: HashMap::new(),
            queued: VecDeque::new(),
            queued_bytes: 0,
            open_asks: HashSet::new(),
            next_own: 0,
            swallowed: 0,
            place: None,
        }
    }

    /// A bridge whose `session/new`s pick this project and agent (by the
    /// relay's names) when the client's own say none: a stock client sends
    /// its own machine's directory as `cwd`.
    pub fn with_place(project: Option<String>, agent: Option<String>) -> Bridge {
        let mut relay = serde_json::Map::new();
        if let Some(p) = project {
            relay.insert("project".into(), json!(p));
        }
        if let Some(a) = agent {
            relay.insert("agent".into(), json!(a));
        }
        Bridge {
            place: (!relay.is_empty()).then_some(Value::Object(relay)),
            ..Bridge::new()
        }
    }

    /// `line` (a `session/new`) with the bridge's `_meta.relay` added where
    /// the client set none.
    fn placed(&self, line: String) -> String {
        let Some(place) = &self.place else {
            return line;
        };
        let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        let Some(params) = v.get_mut("params").and_then(Value::as_object_mut) else {
            return line;
        };
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return line;
        };
        let relay = meta.entry("relay").or_insert_with(|| json!({}));
        if let (Some(relay), Some(place)) = (relay.as_object_mut(), place.as_object()) {
            for (k, val) in place {
                relay.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
        serde_json::to_string(&v).unwrap_or(line)
    }

    /// Whether the link is up and resumed.
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// Whether a new link is replaying `initialize` / `session/load`.
    pub fn is_resuming(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitInit { .. } | Phase::AwaitLoad { .. }
        )
    }

    /// Whether the shell may take another client line now (the queue is
    /// bounded; while it is full the client waits on its stdout pipe).
    pub fn accepts_client(&self) -> bool {
        self.is_up()
            || self.queued.is_empty()
            || (self.queued.len() < MAX_QUEUED_LINES && self.queued_bytes < MAX_QUEUED_BYTES)
    }

    /// The session the bridge would resume, if any.
    pub fn resume_session(&self) -> Option<&str> {
        self.resume.as_ref().map(|r| r.session_id.as_str())
    }

    /// Whether nothing from the client waits: no request in flight, no line queued.
    pub fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.queued.is_empty()
    }

    /// Client requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A line from the client.
    pub fn client_line(&mut self, line: String, out: &mut Vec<Out>) {
        if line.trim().is_empty() {
            return;
        }
        if self.is_up() {
            self.forward_client(line, out);
        } else {
            self.queued_bytes += line.len();
            self.queued.push_back(line);
        }
    }

    fn forward_client(&mut self, line: String, out: &mut Vec<Out>) {
        let Ok(probe) = serde_json::from_str::<Probe>(&line) else {
            // Not ours to judge: the relay answers it with a parse error.
            out.push(Out::Relay(line));
            return;
        };
        let line = if probe.method.as_deref() == Some("session/new") {
            self.placed(line)
        } else {
            line
        };
        match (probe.id, probe.method) {
            (Some(id), Some(method)) => {
                let key = id.to_string();
                if self.in_flight.len() >= MAX_IN_FLIGHT {
                    log::warn!("connect: {MAX_IN_FLIGHT} requests in flight; refusing {method}");
                    out.push(Out::Client(error_line(&id, TOO_MANY)));
                    return;
                }
                let resume = match method.as_str() {
                    "initialize" => {
                        self.init = parse_params(&line);
                        None
                    }
                    "session/new" | "session/load" | "session/resume" => {
                        parse_params(&line).map(|p| Resume {
                            session_id: p["sessionId"].as_str().unwrap_or_default().to_owned(),
                            cwd: p.get("cwd").cloned().unwrap_or_else(|| json!("/")),
                            mcp_servers: p.get("mcpServers").cloned().unwrap_or_else(|| json!([])),
                        })
                    }
                    _ => None,
                };
                self.in_flight.insert(key, InFlight { id, resume });
            }
            (Some(id), None) => {
                // The client's answer to one of the relay's asks.
                self.open_asks.remove(&id.to_string());
            }
            _ => {}
        }
        out.push(Out::Relay(line));
    }

    /// A text message from the relay.
    pub fn relay_message(&mut self, text: String, out: &mut Vec<Out>) {
        let Ok(probe) = serde_json::from_str::<Probe>(&text) else {
            log::warn!("connect: the relay sent a message that is not JSON-RPC; dropped");
            return;
        };
        match (&probe.id, &probe.method) {
            (Some(id), None) => self.relay_response(id, probe.error.is_some(), text, out),
            (Some(id), Some(method)) => {
                // A request from the agent (permission, elicitation, ...). A
                // resumed session re-sends its open asks; the client has them.
                let key = id.to_string();
                if self.open_asks.contains(&key) {
                    log::debug!("connect: dropped a re-sent {method} the client already has");
                    return;
                }
                if self.open_asks.len() >= MAX_OPEN_ASKS {
                    self.open_asks.clear();
                }
                self.open_asks.insert(key);
                out.push(Out::Client(text));
            }
            (None, Some(method)) => {
                if let Phase::AwaitLoad { session, .. } = &self.phase
                    && method == "session/update"
                    && serde_json::from_str::<SessionProbe>(&text)
                        .ok()
                        .and_then(|p| p.params.session_id)
                        .is_some_and(|s| &s == session)
                {
                    self.swallowed += 1;
                    return;
                }
                out.push(Out::Client(text));
            }
            (None, None) => out.push(Out::Client(text)),
        }
    }

    fn relay_response(&mut self, id: &Value, is_error: bool, text: String, out: &mut Vec<Out>) {
        let key = id.to_string();
        match &self.phase {
            Phase::AwaitInit { id: own } if *own == key => {
                if is_error {
                    log::warn!("connect: the relay refused the replayed initialize: {text}");
                }
                match self.resume.clone() {
                    Some(r) if !r.session_id.is_empty() => {
                        let id = self.own_id();
                        let load = json!({
                            "jsonrpc": "2.0",
                            "id": id,
                            "method": "session/load",
                            "params": {
                                "sessionId": r.session_id,
                                "cwd": r.cwd,
                                "mcpServers": r.mcp_servers,
                            },
                        });
                        out.push(Out::Relay(load.to_string()));
                        self.phase = Phase::AwaitLoad {
                            id: json!(id).to_string(),
                            session: r.session_id,
                        };
                    }
                    _ => self.resumed(out),
                }
                return;
            }
            Phase::AwaitLoad { id: own, session } if *own == key => {
                if is_error {
                    log::warn!("connect: could not resume session {session}: {text}");
                } else {
                    log::info!(
                        "connect: resumed session {session} ({} history updates not repeated)",
                        self.swallowed
                    );
                }
                self.resumed(out);
                return;
            }
            _ => {}
        }
        if let Some(done) = self.in_flight.remove(&key)
            && let Some(mut r) = done.resume
            && !is_error
        {
            if r.session_id.is_empty() {
                // session/new: the id is in the answer.
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    r.session_id = v["result"]["sessionId"].as_str().unwrap_or_default().into();
                }
            }
            if !r.session_id.is_empty() {
                self.resume = Some(r);
            }
        }
        out.push(Out::Client(text));
    }

    fn resumed(&mut self, out: &mut Vec<Out>) {
        self.phase = Phase::Up;
        self.queued_bytes = 0;
        while let Some(line) = self.queued.pop_front() {
            self.forward_client(line, out);
        }
    }

    fn own_id(&mut self) -> String {
        self.next_own += 1;
        format!("{OWN_ID_PREFIX}{}", self.next_own)
    }

    /// A new link is open: replay `initialize` (and then `session/load`), or,
    /// before the client initialized, just start forwarding.
    pub fn link_up(&mut self, out: &mut Vec<Out>) {
        self.swallowed = 0;
        match self.init.clone() {
            Some(params) => {
                let id = self.own_id();
                let init =
                    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": params});
                out.push(Out::Relay(init.to_string()));
                self.phase = Phase::AwaitInit {
                    id: json!(id).to_string(),
                };
            }
            None => self.resumed(out),
        }
    }

    /// The link dropped: every request still waiting is answered with an
    /// error now (its answer cannot come on another link).
    pub fn link_down(&mut self, out: &mut Vec<Out>) {
        self.phase = Phase::Down;
        let mut lost: Vec<InFlight> = self.in_flight.drain().map(|(_, v)| v).collect();
        lost.sort_by_key(|f| f.id.to_string());
        for f in lost {
            out.push(Out::Client(error_line(&f.id, LINK_LOST)));
        }
    }

    /// No new link could be made: answer everything still waiting, queued
    /// requests included.
    pub fn give_up(&mut self, out: &mut Vec<Out>) {
        self.link_down(out);
        for line in self.queued.drain(..) {
            if let Ok(Probe {
                id: Some(id),
                method: Some(_),
                ..
            }) = serde_json::from_str::<Probe>(&line)
            {
                out.push(Out::Client(error_line(&id, GAVE_UP)));
            }
        }
        self.queued_bytes = 0;
    }
}

fn parse_params(line: &str) -> Option<Value> {
    let mut v: Value = serde_json::from_str(line).ok()?;
    Some(
        v.get_mut("params")
            .map(Value::take)
            .unwrap_or_else(|| json!({})),
    )
}

/// A JSON-RPC error response line.
pub fn error_line(id: &Value, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": LINK_LOST_CODE, "message": message}})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: u64, method: &str, params: Value) -> String {
        json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()
    }

    fn relay_lines(out: &[Out]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Out::Relay(t) => Some(serde_json::from_str(t).unwrap()),
                Out::Client(_) => None,
            })
            .collect()
    }

    fn client_lines(out: &[Out]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Out::Client(t) => Some(serde_json::from_str(t).unwrap()),
                Out::Relay(_) => None,
            })
            .collect()
    }

    fn update(session: &str, text: &str) -> String {
        json!({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":session,
            "update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":text}}}})
        .to_string()
    }

    /// A bridge that initialized and opened session `s1` on its first link.
    fn started() -> Bridge {
        let mut b = Bridge::new();
        let mut out = Vec::new();
        b.link_up(&mut out);
        assert!(out.is_empty() && b.is_up());
        b.client_line(
            req(
                1,
                "initialize",
                json!({"protocolVersion":1,"clientCapabilities":{"fs":{}}}),
            ),
            &mut out,
        );
        b.relay_message(
            json!({"jsonrpc":"2.0","id":1,"result":{"protocolVersion":1}}).to_string(),
            &mut out,
        );
        b.client_line(
            req(2, "session/new", json!({"cwd":"/w","mcpServers":[]})),
            &mut out,
        );
        b.relay_message(
            json!({"jsonrpc":"2.0","id":2,"result":{"sessionId":"s1"}}).to_string(),
            &mut out,
        );
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(b.resume_session(), Some("s1"));
        assert_eq!(b.in_flight(), 0);
        b
    }

    #[test]
    fn forwards_both_ways_untouched() {
        let mut b = started();
        let mut out = Vec::new();
        let line = r#"{"jsonrpc":"2.0","id":"x","method":"session/prompt","params":{"sessionId":"s1","extra":1}}"#;
        b.client_line(line.into(), &mut out);
        assert_eq!(out, vec![Out::Relay(line.into())]);
        out.clear();
        let u = update("s1", "hi");
        b.relay_message(u.clone(), &mut out);
        assert_eq!(out, vec![Out::Client(u)]);
    }

    #[test]
    fn drop_mid_request_answers_with_an_error() {
        let mut b = started();
        let mut out = Vec::new();
        b.client_line(
            req(7, "session/prompt", json!({"sessionId":"s1"})),
            &mut out,
        );
        out.clear();
        b.link_down(&mut out);
        let c = client_lines(&out);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["id"], 7);
        assert_eq!(c[0]["error"]["code"], LINK_LOST_CODE);
        assert_eq!(c[0]["error"]["message"], LINK_LOST);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn resume_replays_initialize_and_loads_without_duplicates() {
        let mut b = started();
        let mut out = Vec::new();
        b.link_down(&mut out);
        assert!(out.is_empty());
        // The client's next prompt waits in the queue.
        b.client_line(
            req(3, "session/prompt", json!({"sessionId":"s1"})),
            &mut out,
        );
        assert!(out.is_empty());

        b.link_up(&mut out);
        let r = relay_lines(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["method"], "initialize");
        assert_eq!(r[0]["params"]["clientCapabilities"]["fs"], json!({}));
        let init_id = r[0]["id"].clone();
        assert!(init_id.as_str().unwrap().starts_with(OWN_ID_PREFIX));
        out.clear();

        b.relay_message(
            json!({"jsonrpc":"2.0","id":init_id,"result":{}}).to_string(),
            &mut out,
        );
        let r = relay_lines(&out);
        assert_eq!(client_lines(&out).len(), 0, "init answer swallowed");
        assert_eq!(r[0]["method"], "session/load");
        assert_eq!(r[0]["params"]["sessionId"], "s1");
        assert_eq!(r[0]["params"]["cwd"], "/w");
        let load_id = r[0]["id"].clone();
        out.clear();

        b.relay_message(update("s1", "old"), &mut out);
        b.relay_message(update("other", "keep"), &mut out);
        assert_eq!(
            client_lines(&out).len(),
            1,
            "only the other session's update"
        );
        out.clear();
        b.relay_message(
            json!({"jsonrpc":"2.0","id":load_id,"result":{}}).to_string(),
            &mut out,
        );
        assert!(b.is_up());
        assert_eq!(b.swallowed, 1);
        // The queued prompt goes out now, and the load answer did not reach the client.
        assert_eq!(client_lines(&out).len(), 0);
        let r = relay_lines(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["id"], 3);
        out.clear();
        // Live updates pass again.
        b.relay_message(update("s1", "new"), &mut out);
        assert_eq!(client_lines(&out).len(), 1);
    }

    #[test]
    fn resume_before_any_session_only_initializes() {
        let mut b = Bridge::new();
        let mut out = Vec::new();
        b.link_up(&mut out);
        b.client_line(req(1, "initialize", json!({"protocolVersion":1})), &mut out);
        b.link_down(&mut out);
        out.clear();
        b.link_up(&mut out);
        let id = relay_lines(&out)[0]["id"].clone();
        out.clear();
        b.relay_message(
            json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string(),
            &mut out,
        );
        assert!(b.is_up());
        assert!(out.is_empty());
    }

    #[test]
    fn load_and_failed_new_update_the_remembered_session() {
        let mut b = started();
        let mut out = Vec::new();
        b.client_line(
            req(
                4,
                "session/load",
                json!({"sessionId":"s2","cwd":"/x","mcpServers":[]}),
            ),
            &mut out,
        );
        b.relay_message(
            json!({"jsonrpc":"2.0","id":4,"result":null}).to_string(),
            &mut out,
        );
        assert_eq!(b.resume_session(), Some("s2"));
        b.client_line(req(5, "session/new", json!({"cwd":"/y"})), &mut out);
        b.relay_message(
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32000,"message":"no"}}).to_string(),
            &mut out,
        );
        assert_eq!(b.resume_session(), Some("s2"));
    }

    #[test]
    fn re_sent_asks_are_dropped_until_answered() {
        let mut b = started();
        let mut out = Vec::new();
        let ask = json!({"jsonrpc":"2.0","id":"perm:s1:1","method":"session/request_permission","params":{}})
            .to_string();
        b.relay_message(ask.clone(), &mut out);
        b.relay_message(ask.clone(), &mut out);
        assert_eq!(out.len(), 1);
        b.client_line(
            json!({"jsonrpc":"2.0","id":"perm:s1:1","result":{}}).to_string(),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(matches!(out[1], Out::Relay(_)));
    }

    #[test]
    fn queue_is_bounded_and_give_up_answers_it() {
        let mut b = started();
        let mut out = Vec::new();
        b.link_down(&mut out);
        let mut n = 0;
        while b.accepts_client() {
            n += 1;
            b.client_line(req(100 + n, "session/prompt", json!({})), &mut out);
        }
        assert_eq!(n as usize, MAX_QUEUED_LINES);
        b.give_up(&mut out);
        let c = client_lines(&out);
        assert_eq!(c.len(), MAX_QUEUED_LINES);
        assert!(c.iter().all(|v| v["error"]["message"] == GAVE_UP));
        assert!(b.accepts_client());
    }

    #[test]
    fn in_flight_is_bounded() {
        let mut b = started();
        let mut out = Vec::new();
        for i in 0..MAX_IN_FLIGHT as u64 + 1 {
            b.client_line(req(1000 + i, "x/y", json!({})), &mut out);
        }
        assert_eq!(b.in_flight(), MAX_IN_FLIGHT);
        let c = client_lines(&out);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["error"]["message"], TOO_MANY);
    }

    #[test]
    fn session_new_gets_the_bridges_project_and_agent_unless_it_names_its_own() {
        let mut b = Bridge::with_place(Some("web".into()), Some("two".into()));
        let mut out = Vec::new();
        b.link_up(&mut out);
        b.client_line(
            req(
                1,
                "session/new",
                json!({"cwd": "/laptop", "mcpServers": []}),
            ),
            &mut out,
        );
        b.client_line(
            req(
                2,
                "session/new",
                json!({"cwd": "/x", "_meta": {"relay": {"agent": "one"}}}),
            ),
            &mut out,
        );
        b.client_line(
            req(3, "session/prompt", json!({"sessionId": "s"})),
            &mut out,
        );
        let sent: Vec<Value> = out
            .iter()
            .filter_map(|o| match o {
                Out::Relay(l) => serde_json::from_str(l).ok(),
                _ => None,
            })
            .collect();
        assert_eq!(
            sent[0]["params"]["_meta"]["relay"],
            json!({"project": "web", "agent": "two"})
        );
        assert_eq!(
            sent[1]["params"]["_meta"]["relay"],
            json!({"project": "web", "agent": "one"})
        );
        assert!(sent[2]["params"].get("_meta").is_none());
    }
}
