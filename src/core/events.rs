//! Things that happened in the router that a person may want to hear about
//! when no device is looking: asks, unwatched turn ends, agent exits, an agent
//! waiting for login. The router emits them as `Output::Event`; the shell
//! feeds them to the notifier and the metrics. Plain data, no I/O.

use crate::core::ids::AgentId;

/// Suffix the shell appends to an agent's exit status when the relay itself
/// ended the agent (eviction, shutdown, a hung stdin): not a crash.
pub const STOPPED_BY_RELAY: &str = "stopped by the relay";

/// Where the shell sends router events.
pub type EventSink = std::rc::Rc<dyn Fn(&RelayEvent)>;

/// One event for notifications and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    /// A permission ask (or elicitation) reached the devices.
    AskOpened {
        session: Option<String>,
        ask_id: String,
        /// The session's title.
        title: Option<String>,
        /// What it asks: the tool call's title.
        tool_title: Option<String>,
        /// Sockets viewing the session when the ask arrived.
        watchers: usize,
        agent: Option<AgentId>,
    },
    /// An ask was answered or cancelled.
    AskSettled {
        session: Option<String>,
        ask_id: String,
    },
    /// A turn ended (the agent answered `session/prompt`).
    TurnEnded {
        session: Option<String>,
        title: Option<String>,
        stop_reason: Option<String>,
        /// Sockets viewing the session when it ended.
        watchers: usize,
        agent: Option<AgentId>,
    },
    /// An agent process ended.
    AgentExited {
        agent: AgentId,
        status: String,
        /// It ended on its own with a failure (not a clean exit, not ended by the relay).
        crashed: bool,
        /// The sessions it served: (session id, title).
        sessions: Vec<(Option<String>, Option<String>)>,
    },
    /// The shell started an agent process: the configured agent's name
    /// (what notifications call it).
    AgentStarted { agent: AgentId, name: String },
    /// A relay socket attached to a session: the history frames it was sent
    /// and whether its welcome said `reset` (its gap was no longer held).
    Attached { replayed: usize, reset: bool },
    /// The agent refused to open a session until someone logs in.
    AgentNeedsLogin {
        agent: AgentId,
        session: Option<String>,
        title: Option<String>,
        message: String,
    },
}

impl RelayEvent {
    /// Whether an exit status string means a crash.
    pub fn crashed(status: &str) -> bool {
        status != "exit status: 0" && !status.ends_with(STOPPED_BY_RELAY)
    }
}

/// One live session as `acp-relay status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub session: Option<String>,
    pub title: Option<String>,
    pub agent: Option<AgentId>,
    /// The project it runs in and its agent, by their configured names.
    pub project: String,
    pub agent_name: String,
    pub busy: bool,
    pub open_asks: usize,
    pub devices: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_classification() {
        assert!(!RelayEvent::crashed("exit status: 0"));
        assert!(RelayEvent::crashed("exit status: 3"));
        assert!(RelayEvent::crashed("signal: 9 (SIGKILL)"));
        assert!(!RelayEvent::crashed(&format!(
            "signal: 15 (SIGTERM), {STOPPED_BY_RELAY}"
        )));
    }
}
