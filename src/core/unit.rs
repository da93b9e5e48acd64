//! One live session ("unit"): its replay ring, the sockets viewing it, and the
//! driver state of its agent session (busy turn, open asks, the agent's own
//! session id). Plain data; the router drives it. Performs no I/O.

use crate::core::ids::{AgentId, ClientId, SocketId};
use crate::core::ring::{Frame, ReplayRing};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Settled asks remembered per unit, to tell a late answer who answered first.
pub const SETTLED_MEMORY: usize = 64;

/// Where a unit's agent session stands.
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

#[derive(Debug)]
pub struct Unit {
    /// The relay's session id: stable for the life of the session (None until
    /// the first `session/new` answer names it).
    pub session_id: Option<String>,
    pub agent: Option<AgentId>,
    /// Its agent kind and project (its jail); fixed for the session's life.
    pub place: crate::core::ids::Place,
    /// The agent's id for this session, when it has one.
    pub agent_session: Option<String>,
    /// The agent id to `session/load` when the session is reopened.
    pub resume_from: Option<String>,
    pub phase: Phase,
    /// Agent `session/update`s are history being replayed by `session/load`.
    pub loading: bool,
    /// Claimed by a device's `session/new` (the eagerly opened default starts unclaimed).
    pub claimed: bool,
    pub ring: ReplayRing,
    pub viewers: BTreeSet<SocketId>,
    pub turn: Option<Turn>,
    pub asks: BTreeMap<String, Ask>,
    pub settled: VecDeque<(String, String)>,
    pub next_ask: u64,
    pub epoch: u64,
    pub title: Option<String>,
    /// Unix milliseconds of the last frame.
    pub updated_ms: u64,
    /// Creation order, for eviction.
    pub opened_ms: u64,
    /// When the session was first created (kept across restarts).
    pub created_ms: u64,
    /// Its transcript is waiting to be read back from the store.
    pub restoring: bool,
    /// Its metadata has been written to the store.
    pub persisted: bool,
    /// The head recorded in the store when the session was resumed.
    pub stored_head: u64,
    /// The agent's answer to `session/new` / `session/load` (modes, models, ...).
    pub opened: serde_json::Value,
    /// What its frames wait on before they reach devices (durable numbering).
    pub gate: crate::core::router::Gate,
}

impl Unit {
    pub fn new(ring: ReplayRing, epoch: u64, now_ms: u64) -> Self {
        Unit {
            session_id: None,
            agent: None,
            place: Default::default(),
            agent_session: None,
            resume_from: None,
            phase: Phase::Idle,
            loading: false,
            claimed: false,
            ring,
            viewers: BTreeSet::new(),
            turn: None,
            asks: BTreeMap::new(),
            settled: VecDeque::new(),
            next_ask: 0,
            epoch,
            title: None,
            updated_ms: now_ms,
            opened_ms: now_ms,
            created_ms: now_ms,
            restoring: false,
            persisted: false,
            stored_head: 0,
            opened: serde_json::Value::Null,
            gate: Default::default(),
        }
    }

    pub fn busy(&self) -> bool {
        self.turn.is_some()
    }

    /// The relay id of the next ask: `perm:<session>:<n>`.
    pub fn mint_ask_id(&mut self) -> String {
        self.next_ask = self.next_ask.saturating_add(1);
        format!(
            "perm:{}:{}",
            self.session_id.as_deref().unwrap_or("-"),
            self.next_ask
        )
    }

    /// Remembers who settled an ask, within [`SETTLED_MEMORY`].
    pub fn remember_settled(&mut self, ask_id: String, by: String) {
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
}

/// The session id an ask id names (`perm:<session>:<n>` → `<session>`).
pub fn ask_session(ask_id: &str) -> Option<&str> {
    let rest = ask_id.strip_prefix("perm:")?;
    let (session, n) = rest.rsplit_once(':')?;
    n.parse::<u64>().ok()?;
    Some(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_ids_name_their_session() {
        assert_eq!(ask_session("perm:abc:3"), Some("abc"));
        assert_eq!(ask_session("perm:a:b:12"), Some("a:b"));
        assert_eq!(ask_session("perm:abc:x"), None);
        assert_eq!(ask_session("c:17"), None);
    }

    #[test]
    fn settled_memory_is_bounded() {
        let mut u = Unit::new(ReplayRing::new(4, 1024), 1, 0);
        for i in 0..(SETTLED_MEMORY + 10) {
            u.remember_settled(format!("perm:s:{i}"), "c".into());
        }
        assert_eq!(u.settled.len(), SETTLED_MEMORY);
        assert_eq!(u.settled_by("perm:s:3"), None);
        assert_eq!(
            u.settled_by(&format!("perm:s:{}", SETTLED_MEMORY + 9)),
            Some("c")
        );
    }
}
