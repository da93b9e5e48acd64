//! Time in the router: deadlines on every request sent to an agent, and the
//! quiet period that separates an agent's history replay from a new turn.
//! The shell asks [`Router::poll_timeout`] when to wake and feeds
//! [`Input::Tick`] then. Performs no I/O and never reads the clock.
//!
//! # An agent's history replay
//!
//! ACP agents answer `session/load` by streaming the session's history as
//! `session/update`s, some before their answer, some (gemini) after it. The
//! relay's ring already holds that history, so the rule is: from the relay's
//! `session/load` to the agent until the next `session/prompt` it forwards,
//! the session's content updates are the agent's replay and are dropped;
//! state updates (`available_commands_update`, `current_mode_update`,
//! `config_option_update`, `session_info_update`, `usage_update`) pass. A
//! prompt waiting for the load is forwarded only once the agent has sent
//! nothing for that session for [`REPLAY_QUIET_MS`] after its answer (at most
//! [`REPLAY_MAX_MS`]), so a replay that follows the answer still falls inside
//! the window.
//!
//! # Deadlines
//!
//! Every request the relay sends an agent must be answered within
//! `agent_timeout_ms` (`--agent-timeout`, default 300 s so an interactive
//! login fits). A `session/prompt` counts from the session's last frame, not
//! from when it was sent (a long turn that keeps streaming never expires),
//! and has no deadline while an ask waits for a person. On expiry the device
//! gets a JSON-RPC error (`AGENT_TIMEOUT`); a late answer is ignored.

use super::*;

/// Silence after a `session/load` answer that ends the agent's replay.
pub const REPLAY_QUIET_MS: u64 = 300;
/// Longest a prompt waits for a replay to go quiet.
pub const REPLAY_MAX_MS: u64 = 5_000;

/// A prompt hold after a `session/load` answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    quiet_until: u64,
    cap: u64,
}

impl Hold {
    fn due(&self) -> u64 {
        self.quiet_until.min(self.cap)
    }
}

/// Whether an update in an agent's replay window reaches devices: the
/// session's state, never its content.
pub(super) fn passes_replay(line: &[u8]) -> bool {
    const STATE: [&[u8]; 5] = [
        b"available_commands_update",
        b"current_mode_update",
        b"config_option_update",
        b"session_info_update",
        b"usage_update",
    ];
    if !STATE
        .iter()
        .any(|k| memchr::memmem::find(line, k).is_some())
    {
        return false;
    }
    serde_json::from_slice::<Value>(line).is_ok_and(|v| {
        v["params"]["update"]["sessionUpdate"]
            .as_str()
            .is_some_and(|k| STATE.iter().any(|s| s == &k.as_bytes()))
    })
}

impl Router {
    /// The earliest time (unix ms) at which [`Input::Tick`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let holds = self.replay_hold.values().map(Hold::due);
        let requests = self
            .links
            .values()
            .filter(|l| l.state != LinkState::Dead)
            .flat_map(|l| l.pending.values())
            .filter_map(|f| self.deadline(f));
        holds.chain(requests).chain(self.idle_deadline()).min()
    }

    /// When an in-flight request expires, `None` when it does not.
    fn deadline(&self, f: &InFlight) -> Option<u64> {
        let timeout = self.cfg.agent_timeout_ms;
        if timeout == 0 {
            return None;
        }
        let base = match &f.what {
            Pending::Prompt { unit } => {
                let u = self.units.get(unit)?;
                if u.driver.has_asks() {
                    return None;
                }
                f.sent_ms.max(u.updated_ms)
            }
            _ => f.sent_ms,
        };
        Some(base.saturating_add(timeout))
    }

    pub(super) fn tick(&mut self) {
        let now = self.now_ms;
        let released: Vec<UnitId> = self
            .replay_hold
            .iter()
            .filter(|(_, h)| h.due() <= now)
            .map(|(u, _)| *u)
            .collect();
        for unit in &released {
            self.replay_hold.remove(unit);
        }
        let mut expired: Vec<(AgentId, u64)> = Vec::new();
        for (agent, l) in &self.links {
            if l.state == LinkState::Dead {
                continue;
            }
            for (id, f) in &l.pending {
                if self.deadline(f).is_some_and(|d| d <= now) {
                    expired.push((*agent, *id));
                }
            }
        }
        expired.sort_unstable();
        for (agent, id) in expired {
            let Some(f) = self
                .links
                .get_mut(&agent)
                .and_then(|l| l.pending.remove(&id))
            else {
                continue;
            };
            self.expire(agent, f);
        }
        if !released.is_empty() {
            self.run_deferred();
        }
        self.stop_idle_agents();
    }

    /// A request the agent left unanswered past its deadline.
    fn expire(&mut self, agent: AgentId, f: InFlight) {
        let secs = self.cfg.agent_timeout_ms / 1000;
        let method = f.method;
        log::warn!("{agent}: no answer to {method} within {secs} s");
        let err = RpcError::new(
            code::AGENT_TIMEOUT,
            format!(
                "the agent did not answer {method} within {secs} s (--agent-timeout); check the agent's log (_relay/agent/log), then retry"
            ),
        );
        match f.what {
            Pending::Initialize => self.out.push_back(Output::KillAgent { agent }),
            Pending::OpenSession { unit, load } => {
                let e = json!({ "code": err.code, "message": err.message });
                self.session_opened(agent, unit, load, Err(e));
            }
            Pending::Prompt { unit } => self.expire_turn(agent, unit, &err),
            Pending::Release => {}
            Pending::Forward {
                socket, device_id, ..
            } => self.send_error(socket, &device_id, &err),
        }
    }

    /// Ends a turn the agent went silent on: the agent is told to cancel,
    /// asks are settled and the prompter gets the error.
    fn expire_turn(&mut self, agent: AgentId, unit: UnitId, err: &RpcError) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let Some(turn) = u.driver.turn.take() else {
            return;
        };
        if let Some(asid) = u.driver.agent_session.clone() {
            self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::notification("session/cancel", json!({ "sessionId": asid })),
            });
        }
        self.settle_all(unit, json!({"outcome": "cancelled"}), "timeout", true);
        let line = rpc::error_response(&turn.device_id, err);
        self.hold_for_sync(unit);
        self.answer_turn(unit, &turn, &line);
        self.persist_sync(unit);
    }

    /// Starts the quiet period after a `session/load` answer.
    pub(super) fn hold_for_replay(&mut self, unit: UnitId) {
        let now = self.now_ms;
        self.replay_hold.insert(
            unit,
            Hold {
                quiet_until: now + REPLAY_QUIET_MS,
                cap: now + REPLAY_MAX_MS,
            },
        );
    }

    /// A replayed update arrived: the quiet period starts again.
    pub(super) fn replay_heard(&mut self, unit: UnitId) {
        let now = self.now_ms;
        if let Some(h) = self.replay_hold.get_mut(&unit) {
            h.quiet_until = now + REPLAY_QUIET_MS;
        }
    }
}
