//! A driver: the session level of one live session. It owns the session's
//! agent side — which agent runs it, the agent's own session id, whether
//! that agent session is open — the turn in flight (busy state), the
//! permission asks open on the agent's side with who settled the last ones,
//! and the agent's cached open answer. It decides what a prompt, an answer
//! or an agent's exit does to that state; the router routes lines to it and
//! performs the outputs. Plain data: it never sees a socket table, a client
//! or the lease, and performs no I/O.

use crate::core::ids::{AgentId, ClientId, SocketId};
use crate::core::ring::Frame;
use crate::core::rpc::{RpcError, code};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};

/// Settled asks remembered per session, to tell a late answer who answered first.
pub const SETTLED_MEMORY: usize = 64;

/// Characters of a prompt kept as a session's title.
pub const TITLE_CHARS: usize = 80;

/// Where a session's agent session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No agent session: one is opened on the next request that needs it.
    Idle,
    /// Waiting for the agent to start, or for its `session/new` / `session/load` answer.
    Opening,
    Ready,
}

/// The turn in flight: who asked, under which id, and the relay's id toward the agent.
#[derive(Debug, Clone)]
pub struct Turn {
    pub client: ClientId,
    /// The socket that sent the prompt (its plain-ACP answer goes there only).
    pub socket: SocketId,
    pub device_id: Value,
    pub agent_req: u64,
}

/// An ask (`session/request_permission`, `elicitation/create`) open on the agent's side.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The agent's own request id, to answer it.
    pub agent_id: Value,
    /// The agent connection the ask came from.
    pub agent: AgentId,
    /// The request as fanned to devices (stamped), re-sent on attach.
    pub frame: Frame,
}

/// Why an answer found no open ask.
#[derive(Debug, Clone, PartialEq)]
pub enum AskGone {
    /// Settled already, by this party (a device's client id, `cancel`...).
    Settled { by: String },
    /// Never opened, or settled longer ago than [`SETTLED_MEMORY`] asks.
    Unknown,
}

impl AskGone {
    /// The error a late answerer hears; `None` when the ask is unknown (no answer).
    pub fn error(&self) -> Option<RpcError> {
        match self {
            AskGone::Settled { by } => Some(RpcError::other(format!(
                "this ask was already answered by '{by}'; your answer was not sent"
            ))),
            AskGone::Unknown => None,
        }
    }
}

/// Session state a forwarded request changes when the agent accepts it, so
/// a cached `session/load` answer stays current.
#[derive(Debug, Clone, PartialEq)]
pub enum Track {
    None,
    /// `session/set_mode`: `modes.currentModeId`.
    Mode(Value),
    /// `session/set_model`: `models.currentModelId`.
    Model(Value),
    /// `session/set_config_option`: its answer's `configOptions`.
    Config,
}

impl Track {
    /// What a forwarded session request changes once accepted.
    pub fn of(method: &str, params: &Value) -> Track {
        match method {
            "session/set_mode" => Track::Mode(params["modeId"].clone()),
            "session/set_model" => Track::Model(params["modelId"].clone()),
            "session/set_config_option" => Track::Config,
            _ => Track::None,
        }
    }
}

/// The session level of one live session.
///
/// Invariants: `turn` is `Some` exactly while the session is busy; an ask id
/// is minted once (`perm:<session>:<n>`, `n` strictly increasing) and is in
/// `asks` until it is settled, then among the settled ones.
#[derive(Debug)]
pub struct Driver {
    pub agent: Option<AgentId>,
    /// The agent's id for this session, when it has one.
    pub agent_session: Option<String>,
    /// The agent id to `session/load` when the session is reopened.
    pub resume_from: Option<String>,
    pub phase: Phase,
    /// Agent `session/update`s are history being replayed by `session/load`.
    pub loading: bool,
    pub turn: Option<Turn>,
    asks: BTreeMap<String, Ask>,
    settled: VecDeque<(String, String)>,
    next_ask: u64,
    /// The agent's answer to `session/new` / `session/load` (modes, models, ...).
    pub opened: Value,
}

impl Default for Driver {
    fn default() -> Self {
        Driver::new()
    }
}

impl Driver {
    pub fn new() -> Self {
        Driver {
            agent: None,
            agent_session: None,
            resume_from: None,
            phase: Phase::Idle,
            loading: false,
            turn: None,
            asks: BTreeMap::new(),
            settled: VecDeque::new(),
            next_ask: 0,
            opened: Value::Null,
        }
    }

    pub fn busy(&self) -> bool {
        self.turn.is_some()
    }

    /// Refuses a prompt while a turn runs.
    pub fn check_idle(&self) -> Result<(), RpcError> {
        match &self.turn {
            Some(t) => Err(RpcError::new(
                code::BUSY,
                format!(
                    "session is busy with a turn from device '{}'; wait for it to end or send session/cancel",
                    t.client
                ),
            )),
            None => Ok(()),
        }
    }

    /// A prompt went to the agent: the session is busy, and the agent's
    /// history replay, if any, is over (what follows is this turn).
    pub fn start_turn(&mut self, turn: Turn) {
        self.loading = false;
        self.turn = Some(turn);
    }

    /// Ends the turn in flight, if any, handing it back to be answered.
    pub fn end_turn(&mut self) -> Option<Turn> {
        self.turn.take()
    }

    /// Nothing in flight that ending its agent would break: no turn, no
    /// open ask, no agent session being opened.
    pub fn quiet(&self) -> bool {
        !self.busy() && self.asks.is_empty() && self.phase != Phase::Opening
    }

    /// The agent session opened as `asid`.
    pub fn opened_as(&mut self, asid: String) {
        self.agent_session = Some(asid);
        self.resume_from = None;
        self.phase = Phase::Ready;
    }

    /// The session no longer has an agent (it exited or was retired): the
    /// next request reopens it on another, resuming the agent session.
    pub fn release_agent(&mut self) {
        self.resume_from = self.agent_session.take().or(self.resume_from.take());
        self.agent = None;
        self.phase = Phase::Idle;
    }

    /// Its agent exited: released, no replay window, and the turn it was
    /// running (if any) handed back to be failed.
    pub fn agent_exited(&mut self) -> Option<Turn> {
        let turn = self.turn.take();
        self.release_agent();
        self.loading = false;
        turn
    }

    /// The agent and its session id while the agent session is open.
    pub fn live(&self) -> Option<(AgentId, &str)> {
        match (self.agent, self.agent_session.as_deref(), self.phase) {
            (Some(agent), Some(asid), Phase::Ready) => Some((agent, asid)),
            _ => None,
        }
    }

    /// The agent session id to resume the session with (stored metadata).
    pub fn resumable(&self) -> Option<String> {
        self.agent_session
            .clone()
            .or_else(|| self.resume_from.clone())
    }

    /// The agent id the session is being loaded under, while it loads.
    pub fn loading_from(&self) -> Option<&str> {
        self.resume_from.as_deref().filter(|_| self.loading)
    }

    // ---- asks ----

    /// The relay id of the next ask: `perm:<session>:<n>`.
    pub fn mint_ask_id(&mut self, session: Option<&str>) -> String {
        self.next_ask = self.next_ask.saturating_add(1);
        format!("perm:{}:{}", session.unwrap_or("-"), self.next_ask)
    }

    /// Ask ids go on after `n` (a restored history may name ids up to it).
    pub fn number_asks_after(&mut self, n: u64) {
        self.next_ask = self.next_ask.max(n);
    }

    pub fn open_asks(&self) -> usize {
        self.asks.len()
    }

    pub fn has_asks(&self) -> bool {
        !self.asks.is_empty()
    }

    pub fn ask_ids(&self) -> impl Iterator<Item = &String> {
        self.asks.keys()
    }

    /// The open asks as fanned, oldest id first (re-sent on attach).
    pub fn ask_frames(&self) -> impl Iterator<Item = &Frame> {
        self.asks.values().map(|a| &a.frame)
    }

    /// The open asks by relay ask id.
    pub fn asks(&self) -> &BTreeMap<String, Ask> {
        &self.asks
    }

    /// The settled asks remembered (ask id, settled by), oldest first.
    pub fn settled_asks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.settled.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }

    pub fn add_ask(&mut self, ask_id: String, ask: Ask) {
        self.asks.insert(ask_id, ask);
    }

    /// Takes an open ask to answer it (the first answer wins); settle it
    /// with [`Driver::settled`].
    pub fn take_ask(&mut self, ask_id: &str) -> Result<Ask, AskGone> {
        if let Some(ask) = self.asks.remove(ask_id) {
            return Ok(ask);
        }
        Err(match self.settled_by(ask_id) {
            Some(by) => AskGone::Settled { by: by.to_owned() },
            None => AskGone::Unknown,
        })
    }

    /// Takes every open ask (cancel, turn end, agent exit, session end).
    pub fn take_asks(&mut self) -> Vec<(String, Ask)> {
        std::mem::take(&mut self.asks).into_iter().collect()
    }

    /// Remembers who settled an ask, within [`SETTLED_MEMORY`].
    pub fn settled(&mut self, ask_id: String, by: String) {
        if self.settled.len() >= SETTLED_MEMORY {
            self.settled.pop_front();
        }
        self.settled.push_back((ask_id, by));
    }

    pub fn settled_by(&self, ask_id: &str) -> Option<&str> {
        self.settled
            .iter()
            .rev()
            .find(|(id, _)| id == ask_id)
            .map(|(_, by)| by.as_str())
    }

    // ---- the cached open answer ----

    /// The agent's answer to opening the session (modes, models, config
    /// options, its own fields), under the relay's session id.
    pub fn open_result(&self, sid: &str) -> Value {
        let mut r = self.opened.clone();
        if !r.is_object() {
            r = json!({});
        }
        r["sessionId"] = json!(sid);
        r
    }

    /// Keeps the cached open answer current with the agent's
    /// `current_mode_update` and `config_option_update` notifications.
    pub fn track_update(&mut self, line: &[u8]) {
        let finder = |n: &[u8]| memchr::memmem::find(line, n).is_some();
        if !(finder(b"current_mode_update") || finder(b"config_option_update")) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let update = &v["params"]["update"];
        match update["sessionUpdate"].as_str() {
            Some("current_mode_update") => {
                self.track_answer(&Track::Mode(update["currentModeId"].clone()), &Value::Null)
            }
            Some("config_option_update") => self.track_answer(&Track::Config, update),
            _ => {}
        }
    }

    /// Applies an accepted state change to the cached open answer.
    pub fn track_answer(&mut self, track: &Track, result: &Value) {
        let opened = &mut self.opened;
        let (key, field, value) = match track {
            Track::None => return,
            Track::Mode(m) => ("modes", "currentModeId", m.clone()),
            Track::Model(m) => ("models", "currentModelId", m.clone()),
            Track::Config => {
                if let (Some(o), true) =
                    (opened.as_object_mut(), result["configOptions"].is_array())
                {
                    o.insert("configOptions".into(), result["configOptions"].clone());
                }
                return;
            }
        };
        if value.is_null() {
            return;
        }
        if let Some(state) = opened.get_mut(key).and_then(Value::as_object_mut) {
            state.insert(field.into(), value);
        }
    }
}

/// The session id an ask id names (`perm:<session>:<n>` → `<session>`).
pub fn ask_session(ask_id: &str) -> Option<&str> {
    let rest = ask_id.strip_prefix("perm:")?;
    let (session, n) = rest.rsplit_once(':')?;
    n.parse::<u64>().ok()?;
    Some(session)
}

/// A session's title from its first prompt: the text blocks' words, single
/// spaced, at most [`TITLE_CHARS`] characters; `None` when there is no text.
pub fn prompt_title(blocks: &[Value]) -> Option<String> {
    let title: String = blocks
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if title.trim().is_empty() {
        return None;
    }
    Some(
        title
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(TITLE_CHARS)
            .collect(),
    )
}

/// How a device's answer to an ask is announced: its `outcome`, the whole
/// result when it has none, or the error.
pub fn answer_summary(outcome: &Result<Value, Value>) -> Value {
    match outcome {
        Ok(r) => r.get("outcome").cloned().unwrap_or_else(|| r.clone()),
        Err(e) => json!({"outcome": "error", "error": e}),
    }
}

/// What `--auto-approve` answers a `session/request_permission`: the first
/// allow option (`allow_once` or `allow_always`), else the first option,
/// else `cancelled`.
pub fn auto_outcome(params: &Value) -> Value {
    let options = params["options"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let pick = options
        .iter()
        .find(|o| o["kind"] == "allow_once" || o["kind"] == "allow_always")
        .or(options.first())
        .and_then(|o| o["optionId"].as_str());
    match pick {
        Some(opt) => json!({"outcome": "selected", "optionId": opt}),
        None => json!({"outcome": "cancelled"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(client: &str) -> Turn {
        Turn {
            client: ClientId(client.into()),
            socket: SocketId(1),
            device_id: json!("c:1"),
            agent_req: 3,
        }
    }

    fn ask(n: u64) -> Ask {
        Ask {
            agent_id: json!(n),
            agent: AgentId(1),
            frame: Frame::from(format!(r#"{{"rseq":{n}}}"#).into_bytes()),
        }
    }

    #[test]
    fn ask_ids_name_their_session() {
        assert_eq!(ask_session("perm:abc:3"), Some("abc"));
        assert_eq!(ask_session("perm:a:b:12"), Some("a:b"));
        assert_eq!(ask_session("perm:abc:x"), None);
        assert_eq!(ask_session("c:17"), None);
    }

    #[test]
    fn ask_ids_strictly_increase_and_go_on_after_a_restored_history() {
        let mut d = Driver::new();
        assert_eq!(d.mint_ask_id(Some("s")), "perm:s:1");
        assert_eq!(d.mint_ask_id(None), "perm:-:2");
        d.number_asks_after(40);
        assert_eq!(d.mint_ask_id(Some("s")), "perm:s:41");
        d.number_asks_after(7);
        assert_eq!(d.mint_ask_id(Some("s")), "perm:s:42", "never back");
    }

    #[test]
    fn a_turn_makes_the_session_busy_until_it_ends() {
        let mut d = Driver::new();
        d.loading = true;
        assert!(d.check_idle().is_ok());
        d.start_turn(turn("phone"));
        assert!(d.busy() && !d.quiet());
        assert!(!d.loading, "a prompt ends the agent's history replay");
        let err = d.check_idle().expect_err("busy");
        assert_eq!(err.code, code::BUSY);
        assert!(err.message.contains("device 'phone'"), "{}", err.message);
        assert_eq!(d.end_turn().map(|t| t.agent_req), Some(3));
        assert!(d.end_turn().is_none(), "ended once");
        assert!(!d.busy() && d.quiet());
    }

    #[test]
    fn the_first_answer_wins_and_a_late_one_hears_who_answered() {
        let mut d = Driver::new();
        let id = d.mint_ask_id(Some("s"));
        d.add_ask(id.clone(), ask(1));
        assert!(!d.quiet());
        assert_eq!(d.ask_ids().collect::<Vec<_>>(), vec![&id]);
        let first = d.take_ask(&id).expect("open");
        assert_eq!(first.agent_id, json!(1));
        d.settled(id.clone(), "phone".into());
        let late = d.take_ask(&id).expect_err("settled");
        assert_eq!(late, AskGone::Settled { by: "phone".into() });
        let err = late.error().expect("a late answer is told");
        assert!(err.message.contains("'phone'"), "{}", err.message);
        let unknown = d.take_ask("perm:s:99").expect_err("never opened");
        assert_eq!(unknown, AskGone::Unknown);
        assert!(unknown.error().is_none(), "an unknown id gets no answer");
    }

    #[test]
    fn take_asks_empties_them_in_id_order() {
        let mut d = Driver::new();
        for n in 1..=3 {
            let id = d.mint_ask_id(Some("s"));
            d.add_ask(id, ask(n));
        }
        assert_eq!(d.open_asks(), 3);
        let frames: Vec<&Frame> = d.ask_frames().collect();
        assert_eq!(frames.len(), 3);
        let taken: Vec<String> = d.take_asks().into_iter().map(|(id, _)| id).collect();
        assert_eq!(taken, vec!["perm:s:1", "perm:s:2", "perm:s:3"]);
        assert!(!d.has_asks() && d.take_asks().is_empty());
    }

    #[test]
    fn settled_memory_is_bounded() {
        let mut d = Driver::new();
        for i in 0..(SETTLED_MEMORY + 10) {
            d.settled(format!("perm:s:{i}"), "c".into());
        }
        assert_eq!(d.settled_asks().count(), SETTLED_MEMORY);
        assert_eq!(d.settled_by("perm:s:3"), None);
        assert_eq!(
            d.settled_by(&format!("perm:s:{}", SETTLED_MEMORY + 9)),
            Some("c")
        );
        assert_eq!(d.settled_asks().next().map(|(id, _)| id), Some("perm:s:10"));
    }

    #[test]
    fn an_agent_exit_hands_back_the_turn_and_keeps_the_session_resumable() {
        let mut d = Driver::new();
        d.agent = Some(AgentId(2));
        d.phase = Phase::Opening;
        d.opened_as("a-1".into());
        assert_eq!(d.phase, Phase::Ready);
        assert_eq!(d.resumable().as_deref(), Some("a-1"));
        d.start_turn(turn("phone"));
        d.loading = true;
        let t = d.agent_exited().expect("the turn it ran");
        assert_eq!(t.client, ClientId("phone".into()));
        assert!(!d.busy() && !d.loading);
        assert_eq!((d.agent, d.phase), (None, Phase::Idle));
        assert_eq!(d.agent_session, None);
        assert_eq!(d.resume_from.as_deref(), Some("a-1"));
        // Released again before it reopened: still resumes the same one.
        d.release_agent();
        assert_eq!(d.resumable().as_deref(), Some("a-1"));
        assert_eq!(d.loading_from(), None, "only while loading");
        d.loading = true;
        assert_eq!(d.loading_from(), Some("a-1"));
        d.opened_as("a-2".into());
        assert_eq!(
            (d.resume_from.as_deref(), d.resumable().as_deref()),
            (None, Some("a-2"))
        );
    }

    #[test]
    fn only_an_open_agent_session_is_live() {
        let mut d = Driver::new();
        assert_eq!(d.live(), None);
        d.agent = Some(AgentId(3));
        d.phase = Phase::Opening;
        assert_eq!(d.live(), None, "opening");
        d.opened_as("a-1".into());
        assert_eq!(d.live(), Some((AgentId(3), "a-1")));
        d.release_agent();
        assert_eq!(d.live(), None);
    }

    #[test]
    fn an_opening_session_is_not_quiet() {
        let mut d = Driver::new();
        d.phase = Phase::Opening;
        assert!(!d.quiet());
        d.phase = Phase::Idle;
        assert!(d.quiet());
    }

    #[test]
    fn the_open_answer_follows_accepted_changes_and_state_updates() {
        let mut d = Driver::new();
        assert_eq!(d.open_result("r1"), json!({"sessionId": "r1"}));
        d.opened = json!({
            "sessionId": "agent-1",
            "modes": {"currentModeId": "ask", "availableModes": []},
            "models": {"currentModelId": "m1"},
        });
        d.track_answer(
            &Track::of("session/set_mode", &json!({"modeId": "code"})),
            &json!({}),
        );
        d.track_answer(
            &Track::of("session/set_model", &json!({"modelId": "m2"})),
            &json!({}),
        );
        d.track_answer(
            &Track::of("session/prompt", &json!({"modeId": "x"})),
            &json!({}),
        );
        d.track_answer(
            &Track::of("session/set_config_option", &json!({})),
            &json!({"configOptions": [{"id": "o"}]}),
        );
        d.track_answer(&Track::Config, &json!({"configOptions": "not an array"}));
        d.track_answer(&Track::Mode(Value::Null), &Value::Null);
        let r = d.open_result("r1");
        assert_eq!(r["sessionId"], "r1", "under the relay's id");
        assert_eq!(r["modes"]["currentModeId"], "code");
        assert_eq!(r["models"]["currentModelId"], "m2");
        assert_eq!(r["configOptions"], json!([{"id": "o"}]));
        d.track_update(
            br#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"agent-1","update":{"sessionUpdate":"current_mode_update","currentModeId":"plan"}}}"#,
        );
        d.track_update(
            br#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{"sessionUpdate":"config_option_update","configOptions":[]}}}"#,
        );
        d.track_update(
            br#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{"sessionUpdate":"agent_message_chunk","currentModeId":"no"}}}"#,
        );
        let r = d.open_result("r1");
        assert_eq!(r["modes"]["currentModeId"], "plan");
        assert_eq!(r["configOptions"], json!([]));
    }

    #[test]
    fn a_title_is_the_prompts_words_within_its_bound() {
        assert_eq!(
            prompt_title(&[
                json!({"type": "text", "text": "  fix\n the   bug "}),
                json!({"type": "image"}),
                json!({"text": "now"})
            ]),
            Some("fix the bug now".into())
        );
        assert_eq!(prompt_title(&[json!({"type": "image"})]), None);
        assert_eq!(prompt_title(&[json!({"text": " \n "})]), None);
        let long = prompt_title(&[json!({"text": "é".repeat(200)})]).expect("text");
        assert_eq!(long.chars().count(), TITLE_CHARS);
    }

    #[test]
    fn auto_approve_picks_an_allow_option_else_the_first_else_cancels() {
        let params = json!({"options": [
            {"optionId": "no", "kind": "reject_once"},
            {"optionId": "always", "kind": "allow_always"},
            {"optionId": "yes", "kind": "allow_once"},
        ]});
        assert_eq!(
            auto_outcome(&params),
            json!({"outcome": "selected", "optionId": "always"})
        );
        let params = json!({"options": [{"optionId": "no", "kind": "reject_once"}]});
        assert_eq!(
            auto_outcome(&params),
            json!({"outcome": "selected", "optionId": "no"})
        );
        assert_eq!(auto_outcome(&json!({})), json!({"outcome": "cancelled"}));
        assert_eq!(
            auto_outcome(&json!({"options": [{"kind": "allow_once"}]})),
            json!({"outcome": "cancelled"}),
            "an option without an id cannot be selected"
        );
    }

    #[test]
    fn an_answer_is_announced_by_its_outcome() {
        assert_eq!(
            answer_summary(&Ok(
                json!({"outcome": {"outcome": "selected", "optionId": "y"}})
            )),
            json!({"outcome": "selected", "optionId": "y"})
        );
        assert_eq!(
            answer_summary(&Ok(json!({"action": "accept"}))),
            json!({"action": "accept"})
        );
        assert_eq!(
            answer_summary(&Err(json!({"code": -1}))),
            json!({"outcome": "error", "error": {"code": -1}})
        );
    }
}
