//! Notifications that reach a sleeping phone. [`Notifier`] is the sans-IO
//! part: router events in, time passed in, [`Note`]s out when they are due
//! (an ask nobody answered within the delay, or one that arrived with nobody
//! watching; an unwatched turn end; a crash; a login wait), rate-limited per
//! session. It performs no I/O and never reads the clock; [`deliver`] (the
//! shell) sends the notes over HTTP or to a command.

pub mod deliver;
pub mod http;

use crate::core::events::RelayEvent;
use crate::core::ids::AgentId;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Asks waiting for their delay to pass.
pub const MAX_PENDING_ASKS: usize = 256;
/// Notes ready and not yet taken by the shell.
pub const MAX_READY_NOTES: usize = 64;
/// Sessions whose rate limit is remembered; past it the stalest is forgotten.
pub const MAX_RATE_SESSIONS: usize = 256;

/// When to notify, and how often per session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// An ask unanswered this long (while a device is connected) is notified.
    pub delay_ms: u64,
    /// Notes a session may send at once.
    pub burst: u32,
    /// One more note per session per this many ms, up to `burst`.
    pub refill_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            delay_ms: 20_000,
            burst: 5,
            refill_ms: 60_000,
        }
    }
}

/// What a note is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ask,
    TurnEnded,
    Crash,
    Login,
}

impl Kind {
    /// The event name in webhooks and `ACP_RELAY_EVENT`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ask => "ask",
            Kind::TurnEnded => "turn_ended",
            Kind::Crash => "agent_crashed",
            Kind::Login => "agent_needs_login",
        }
    }
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub kind: Kind,
    pub session: Option<String>,
    /// The session's title.
    pub title: Option<String>,
    pub agent: Option<AgentId>,
    /// The tool call's title (asks).
    pub tool_title: Option<String>,
    /// Extra words: the stop reason, the exit status, the agent's message.
    pub detail: Option<String>,
}

impl Note {
    /// A short headline, e.g. "Permission needed: Edit src/main.rs".
    pub fn headline(&self) -> String {
        match self.kind {
            Kind::Ask => match &self.tool_title {
                Some(t) => format!("Permission needed: {t}"),
                None => "Permission needed".into(),
            },
            Kind::TurnEnded => "Turn finished".into(),
            Kind::Crash => "Agent crashed".into(),
            Kind::Login => "Agent needs a login".into(),
        }
    }

    /// The message body, naming the session title, the agent and what it asks.
    pub fn body(&self, agent: &str) -> String {
        let title = self.title.as_deref().unwrap_or("untitled session");
        match self.kind {
            Kind::Ask => format!(
                "{agent} asks in \"{title}\": {}",
                self.tool_title.as_deref().unwrap_or("a permission")
            ),
            Kind::TurnEnded => format!(
                "{agent} finished a turn in \"{title}\" ({})",
                self.detail.as_deref().unwrap_or("done")
            ),
            Kind::Crash => format!(
                "{agent} exited ({}) while serving \"{title}\"; the next prompt starts it again",
                self.detail.as_deref().unwrap_or("unknown status")
            ),
            Kind::Login => format!(
                "{agent} waits for a login to go on with \"{title}\": {}",
                self.detail.as_deref().unwrap_or("authentication required")
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    refilled_ms: u64,
    used_ms: u64,
}

/// Decides when to notify. Feed it events and the time; take [`Note`]s.
#[derive(Debug)]
pub struct Notifier {
    policy: Policy,
    /// Asks not yet due, by ask id: (due time, note).
    pending: BTreeMap<String, (u64, Note)>,
    buckets: HashMap<String, Bucket>,
    ready: VecDeque<Note>,
    /// Notes dropped by the rate limit or a full queue, not yet reported.
    suppressed: u64,
}

impl Notifier {
    pub fn new(policy: Policy) -> Self {
        Notifier {
            policy,
            pending: BTreeMap::new(),
            buckets: HashMap::new(),
            ready: VecDeque::new(),
            suppressed: 0,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// A new policy (SIGHUP); asks already pending keep their due time.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Feeds one router event in.
    pub fn event(&mut self, now_ms: u64, ev: &RelayEvent) {
        match ev {
            RelayEvent::AskOpened {
                session,
                ask_id,
                title,
                tool_title,
                watchers,
                agent,
            } => {
                let note = Note {
                    kind: Kind::Ask,
                    session: session.clone(),
                    title: title.clone(),
                    agent: *agent,
                    tool_title: tool_title.clone(),
                    detail: None,
                };
                if *watchers == 0 {
                    self.emit(now_ms, note);
                } else if self.pending.len() < MAX_PENDING_ASKS {
                    self.pending.insert(
                        ask_id.clone(),
                        (now_ms.saturating_add(self.policy.delay_ms), note),
                    );
                } else {
                    self.suppressed += 1;
                }
            }
            RelayEvent::AskSettled { ask_id, .. } => {
                self.pending.remove(ask_id);
            }
            RelayEvent::Attached { .. } | RelayEvent::AgentStarted { .. } => {}
            RelayEvent::TurnEnded {
                session,
                title,
                stop_reason,
                watchers,
                agent,
            } => {
                if *watchers == 0 {
                    self.emit(
                        now_ms,
                        Note {
                            kind: Kind::TurnEnded,
                            session: session.clone(),
                            title: title.clone(),
                            agent: *agent,
                            tool_title: None,
                            detail: stop_reason.clone(),
                        },
                    );
                }
            }
            RelayEvent::AgentExited {
                agent,
                status,
                crashed,
                sessions,
            } => {
                if *crashed {
                    let (session, title) = sessions.first().cloned().unwrap_or_default();
                    self.emit(
                        now_ms,
                        Note {
                            kind: Kind::Crash,
                            session,
                            title,
                            agent: Some(*agent),
                            tool_title: None,
                            detail: Some(status.clone()),
                        },
                    );
                }
            }
            RelayEvent::AgentNeedsLogin {
                agent,
                session,
                title,
                message,
            } => self.emit(
                now_ms,
                Note {
                    kind: Kind::Login,
                    session: session.clone(),
                    title: title.clone(),
                    agent: Some(*agent),
                    tool_title: None,
                    detail: Some(message.clone()),
                },
            ),
        }
    }

    /// When [`Notifier::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.pending.values().map(|(due, _)| *due).min()
    }

    /// Moves every ask whose delay has passed to the ready notes.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (t, _))| *t <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some((_, note)) = self.pending.remove(&k) {
                self.emit(now_ms, note);
            }
        }
    }

    /// The next note to send, in order.
    pub fn poll_note(&mut self) -> Option<Note> {
        self.ready.pop_front()
    }

    /// Notes dropped since the last call (for one log line with a count).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }

    fn emit(&mut self, now_ms: u64, note: Note) {
        if !self.allow(now_ms, note.session.as_deref().unwrap_or(""))
            || self.ready.len() >= MAX_READY_NOTES
        {
            self.suppressed += 1;
            return;
        }
        self.ready.push_back(note);
    }

    /// Token bucket per session: `burst` at once, then one per `refill_ms`.
    fn allow(&mut self, now_ms: u64, session: &str) -> bool {
        let p = self.policy;
        if !self.buckets.contains_key(session) && self.buckets.len() >= MAX_RATE_SESSIONS {
            let stalest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.used_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                self.buckets.remove(&k);
            }
        }
        let b = self.buckets.entry(session.to_owned()).or_insert(Bucket {
            tokens: p.burst,
            refilled_ms: now_ms,
            used_ms: now_ms,
        });
        let earned = now_ms
            .saturating_sub(b.refilled_ms)
            .checked_div(p.refill_ms)
            .unwrap_or(0);
        if earned > 0 {
            b.tokens = (b.tokens as u64 + earned).min(p.burst as u64) as u32;
            b.refilled_ms += earned * p.refill_ms;
        }
        b.used_ms = now_ms;
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(id: &str, watchers: usize) -> RelayEvent {
        RelayEvent::AskOpened {
            session: Some("s1".into()),
            ask_id: id.into(),
            title: Some("Fix the build".into()),
            tool_title: Some("Edit main.rs".into()),
            watchers,
            agent: Some(AgentId(1)),
        }
    }

    #[test]
    fn an_ask_waits_for_the_delay_and_a_settled_one_never_fires() {
        let mut n = Notifier::new(Policy::default());
        n.event(1_000, &ask("a", 1));
        n.event(1_000, &ask("b", 1));
        assert_eq!(n.poll_timeout(), Some(21_000));
        n.handle_timeout(20_999);
        assert_eq!(n.poll_note(), None);
        n.event(
            5_000,
            &RelayEvent::AskSettled {
                session: Some("s1".into()),
                ask_id: "a".into(),
            },
        );
        n.handle_timeout(21_000);
        let note = n.poll_note().expect("b is due");
        assert_eq!(note.kind, Kind::Ask);
        assert_eq!(note.headline(), "Permission needed: Edit main.rs");
        assert!(note.body("gemini").contains("\"Fix the build\""));
        assert_eq!(n.poll_note(), None);
        assert_eq!(n.poll_timeout(), None);
    }

    #[test]
    fn unwatched_events_fire_at_once_watched_turns_never() {
        let mut n = Notifier::new(Policy::default());
        n.event(0, &ask("a", 0));
        assert_eq!(n.poll_note().map(|x| x.kind), Some(Kind::Ask));
        let turn = |watchers| RelayEvent::TurnEnded {
            session: Some("s1".into()),
            title: None,
            stop_reason: Some("end_turn".into()),
            watchers,
            agent: None,
        };
        n.event(0, &turn(2));
        assert_eq!(n.poll_note(), None);
        n.event(0, &turn(0));
        assert_eq!(n.poll_note().map(|x| x.kind), Some(Kind::TurnEnded));
        let exit = |crashed| RelayEvent::AgentExited {
            agent: AgentId(1),
            status: "exit status: 3".into(),
            crashed,
            sessions: vec![(Some("s1".into()), Some("t".into()))],
        };
        n.event(0, &exit(false));
        assert_eq!(n.poll_note(), None);
        n.event(0, &exit(true));
        let crash = n.poll_note().unwrap();
        assert_eq!(crash.kind, Kind::Crash);
        assert_eq!(crash.session.as_deref(), Some("s1"));
    }

    #[test]
    fn rate_limited_per_session_with_refill() {
        let policy = Policy {
            delay_ms: 0,
            burst: 2,
            refill_ms: 1_000,
        };
        let mut n = Notifier::new(policy);
        for i in 0..5 {
            n.event(0, &ask(&format!("{i}"), 0));
        }
        assert_eq!(std::iter::from_fn(|| n.poll_note()).count(), 2);
        assert_eq!(n.take_suppressed(), 3);
        // Another session has its own bucket.
        n.event(
            0,
            &RelayEvent::AgentNeedsLogin {
                agent: AgentId(2),
                session: Some("s2".into()),
                title: None,
                message: "log in".into(),
            },
        );
        assert_eq!(n.poll_note().map(|x| x.kind), Some(Kind::Login));
        n.event(1_500, &ask("x", 0));
        assert!(n.poll_note().is_some());
        n.event(1_600, &ask("y", 0));
        assert!(n.poll_note().is_none());
    }
}
