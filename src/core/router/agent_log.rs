//! What an agent says off the protocol: its stderr and the stdout lines that
//! are not JSON-RPC (a login URL, "enter the code"), kept in a bounded log per
//! agent that devices read with `_relay/agent/log` and hear line by line as
//! `_relay/agent/log_line`; and the agent's own notifications (other than
//! `session/update`), passed as they are to the devices viewing its sessions.
//! Performs no I/O.

use super::*;

/// Lines kept per agent.
pub const AGENT_LOG_LINES: usize = 200;
/// Bytes of text kept per agent.
pub const AGENT_LOG_BYTES: usize = 64 << 10;
/// Longest line kept; the rest of a longer one is cut.
pub const AGENT_LOG_LINE_BYTES: usize = 4 << 10;
/// Agents whose log is kept (a dead agent's log stays readable for a while).
pub const MAX_AGENT_LOGS: usize = 8;

/// Which of the agent's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stderr,
    Stdout,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stderr => "stderr",
            Stream::Stdout => "stdout",
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    t: u64,
    stream: Stream,
    text: String,
}

/// One agent's log, bounded in lines and bytes (oldest lines go first).
#[derive(Debug, Default)]
pub struct AgentLog {
    lines: VecDeque<Line>,
    bytes: usize,
}

impl AgentLog {
    fn push(&mut self, line: Line) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > AGENT_LOG_LINES || self.bytes > AGENT_LOG_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }
}

/// A line as text: lossy UTF-8, cut at [`AGENT_LOG_LINE_BYTES`] on a char boundary.
fn text_of(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut text = String::from_utf8_lossy(line).into_owned();
    if text.len() > AGENT_LOG_LINE_BYTES {
        let mut cut = AGENT_LOG_LINE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

impl Router {
    /// Records a line the agent wrote off the protocol and tells the
    /// devices viewing its sessions.
    pub(super) fn agent_said(&mut self, agent: AgentId, stream: Stream, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let text = text_of(line);
        log::info!("{agent} {}: {:?}", stream.name(), text);
        if !self.agent_logs.contains_key(&agent) {
            while self.agent_logs.len() >= MAX_AGENT_LOGS {
                let Some(oldest) = self.agent_logs.keys().next().copied() else {
                    break;
                };
                self.agent_logs.remove(&oldest);
            }
        }
        let t = self.now_ms;
        self.agent_logs.entry(agent).or_default().push(Line {
            t,
            stream,
            text: text.clone(),
        });
        for (socket, sid) in self.viewers_of_agent(agent, false) {
            let mut params = json!({
                "agent": agent.0,
                "stream": stream.name(),
                "text": text,
                "t": t,
            });
            if let Some(sid) = sid {
                params["sessionId"] = json!(sid);
            }
            self.send_bytes(socket, rpc::notification("_relay/agent/log_line", params));
        }
    }

    /// An agent notification the relay has no use for (`_auth/status_update`,
    /// extensions): it reaches the devices viewing the agent's sessions as it is.
    pub(super) fn agent_notification(&mut self, agent: AgentId, line: &[u8]) {
        for (socket, _) in self.viewers_of_agent(agent, true) {
            self.send_bytes(socket, line.to_vec());
        }
    }

    /// Sockets viewing a session of `agent`, with that session's id; `/acp`
    /// sockets only when `plain` (relay extensions never reach them).
    fn viewers_of_agent(&self, agent: AgentId, plain: bool) -> Vec<(SocketId, Option<String>)> {
        let mut out: Vec<(SocketId, Option<String>)> = Vec::new();
        for u in self
            .units
            .values()
            .filter(|u| u.driver.agent == Some(agent))
        {
            for (socket, is_plain) in u.hub.viewers() {
                if (plain || !is_plain) && !out.iter().any(|(s, _)| *s == socket) {
                    out.push((socket, u.session_id.clone()));
                }
            }
        }
        out
    }

    /// `_relay/agent/log {sessionId?}`: the log of the session's agent (the
    /// socket's session when none is named; the newest agent's when the
    /// session has none running).
    pub(super) fn agent_log_result(
        &self,
        socket: SocketId,
        params: &Value,
    ) -> Result<Value, RpcError> {
        let unit = self.unit_for(socket, params)?;
        let agent = self
            .units
            .get(&unit)
            .and_then(|u| u.driver.agent.or_else(|| self.shared_agent(u.place)))
            .or_else(|| self.agent_logs.keys().next_back().copied());
        let lines: Vec<Value> = agent
            .and_then(|a| self.agent_logs.get(&a))
            .map(|l| {
                l.lines
                    .iter()
                    .map(|l| json!({"t": l.t, "stream": l.stream.name(), "text": l.text}))
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({ "agent": agent.map(|a| a.0), "lines": lines }))
    }
}
