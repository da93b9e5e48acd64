//! What a person asks a running relay: `GET /status` (token required) as
//! JSON, the ops counters behind it and `/metrics`, and the
//! `acp-relay status` client that prints it. The counters are fed from
//! router events ([`Ops::count`]); the client is a blocking one-shot CLI.

use crate::core::events::{RelayEvent, SessionSummary};
use crate::notify::deliver::{Dispatcher, NotifyCounters};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

/// Largest `/status` answer the client reads.
pub const MAX_STATUS_BYTES: usize = 1 << 20;

/// Counters from router events.
#[derive(Default)]
pub struct EventCounters {
    pub asks: Cell<u64>,
    pub turns: Cell<u64>,
    pub agent_exits: Cell<u64>,
    pub agent_crashes: Cell<u64>,
    pub login_waits: Cell<u64>,
    /// Attaches that were sent history, the frames sent so, and resets.
    pub replays: Cell<u64>,
    pub replayed_frames: Cell<u64>,
    pub resets: Cell<u64>,
}

/// Ops state the HTTP endpoints read: counters, the notifier, the start time.
pub struct Ops {
    pub started_ms: u64,
    pub events: EventCounters,
    pub notify: RefCell<Option<Rc<Dispatcher>>>,
    /// The agent's program name.
    pub agent_name: String,
}

impl Ops {
    pub fn new(started_ms: u64, agent_name: String) -> Ops {
        Ops {
            started_ms,
            events: EventCounters::default(),
            notify: RefCell::new(None),
            agent_name,
        }
    }

    /// Counts one router event.
    pub fn count(&self, ev: &RelayEvent) {
        let inc = |c: &Cell<u64>| c.set(c.get() + 1);
        let e = &self.events;
        match ev {
            RelayEvent::AskOpened { .. } => inc(&e.asks),
            RelayEvent::TurnEnded {
                session,
                stop_reason,
                watchers,
                agent,
                ..
            } => {
                inc(&e.turns);
                log::info!(
                    "session {}: turn ended ({}) on {}, {watchers} device(s) watching",
                    crate::logger::peer(session.as_deref().unwrap_or("-")),
                    crate::logger::peer(stop_reason.as_deref().unwrap_or("no stop reason")),
                    agent.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                );
            }
            RelayEvent::AgentExited { crashed, .. } => {
                inc(&e.agent_exits);
                if *crashed {
                    inc(&e.agent_crashes);
                }
            }
            RelayEvent::AgentNeedsLogin { .. } => inc(&e.login_waits),
            RelayEvent::AskSettled { .. } | RelayEvent::AgentStarted { .. } => {}
            RelayEvent::Attached { replayed, reset } => {
                if *replayed > 0 {
                    inc(&e.replays);
                    e.replayed_frames
                        .set(e.replayed_frames.get() + *replayed as u64);
                }
                if *reset {
                    inc(&e.resets);
                }
            }
        }
    }

    fn notify_counters(&self) -> Option<Rc<NotifyCounters>> {
        self.notify.borrow().as_ref().map(|d| d.counters.clone())
    }

    /// The `/status` document.
    pub fn status_json(&self, now_ms: u64, sessions: &[SessionSummary], sockets: usize) -> Value {
        let sessions: Vec<Value> = sessions
            .iter()
            .map(|s| {
                json!({
                    "sessionId": s.session,
                    "title": s.title,
                    "agent": s.agent.map(|a| a.to_string()),
                    "project": s.project,
                    "agentName": s.agent_name,
                    "busy": s.busy,
                    "openAsks": s.open_asks,
                    "devices": s.devices,
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSecs": now_ms.saturating_sub(self.started_ms) / 1000,
            "rssBytes": rss_bytes(),
            "agent": self.agent_name,
            "devices": sockets,
            "sessions": sessions,
        })
    }

    /// Prometheus lines for what the ops side counts.
    pub fn metrics_text(&self, sessions: &[SessionSummary], terminals: usize) -> String {
        let mut out = String::new();
        let mut m =
            |name: &str, help: &str, kind: &str, v: u64| metric(&mut out, name, help, kind, v);
        let busy = sessions.iter().filter(|s| s.busy).count() as u64;
        let asks: usize = sessions.iter().map(|s| s.open_asks).sum();
        m(
            "acp_relay_sessions_busy",
            "Live sessions with a turn in flight.",
            "gauge",
            busy,
        );
        m(
            "acp_relay_asks_open",
            "Permission asks waiting for an answer.",
            "gauge",
            asks as u64,
        );
        m(
            "acp_relay_terminals",
            "Open interactive terminals.",
            "gauge",
            terminals as u64,
        );
        let e = &self.events;
        m(
            "acp_relay_asks_total",
            "Permission asks fanned to devices.",
            "counter",
            e.asks.get(),
        );
        m(
            "acp_relay_turns_total",
            "Turns that ended.",
            "counter",
            e.turns.get(),
        );
        m(
            "acp_relay_agent_exits_total",
            "Agent processes that ended.",
            "counter",
            e.agent_exits.get(),
        );
        m(
            "acp_relay_agent_crashes_total",
            "Agent processes that ended on their own with a failure.",
            "counter",
            e.agent_crashes.get(),
        );
        m(
            "acp_relay_replays_total",
            "Device attaches that were sent history from the ring.",
            "counter",
            e.replays.get(),
        );
        m(
            "acp_relay_replayed_frames_total",
            "History frames sent to attaching devices.",
            "counter",
            e.replayed_frames.get(),
        );
        m(
            "acp_relay_resets_total",
            "Attaches whose gap the ring no longer held (welcome with reset).",
            "counter",
            e.resets.get(),
        );
        m(
            "acp_relay_agent_login_waits_total",
            "Sessions an agent refused until someone logs in.",
            "counter",
            e.login_waits.get(),
        );
        let n = self.notify_counters();
        let get = |f: fn(&NotifyCounters) -> u64| n.as_deref().map(f).unwrap_or(0);
        m(
            "acp_relay_notifications_sent_total",
            "Notifications delivered (per target).",
            "counter",
            get(|c| c.sent.get()),
        );
        m(
            "acp_relay_notifications_failed_total",
            "Notifications given up after their retries (per target).",
            "counter",
            get(|c| c.failed.get()),
        );
        m(
            "acp_relay_notifications_dropped_total",
            "Notifications not sent: rate limit or a full queue.",
            "counter",
            get(|c| c.dropped.get()),
        );
        m(
            "acp_relay_rss_bytes",
            "Resident memory of the relay process.",
            "gauge",
            rss_bytes().unwrap_or(0),
        );
        m(
            "acp_relay_uptime_seconds",
            "Seconds since the relay started.",
            "gauge",
            crate::serve::relay::now_ms().saturating_sub(self.started_ms) / 1000,
        );
        out
    }
}

/// Appends one metric in the Prometheus text format to `out`.
pub fn metric(out: &mut String, name: &str, help: &str, kind: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// This process's resident memory, from `/proc/self/status`.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Why `acp-relay status` could not get an answer.
#[derive(Debug)]
pub enum StatusError {
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Io(std::io::Error),
    /// The TLS handshake failed (the certificate is not the one trusted).
    Tls(String),
    /// A plain request reached a TLS port.
    NeedsTls,
    Refused(u16),
    Malformed,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusError::Connect { addr, source } => write!(
                f,
                "no relay answers on {addr}: {source}; is it running? (pass --url http://HOST:PORT)"
            ),
            StatusError::Io(e) => write!(f, "reading the relay's answer: {e}"),
            StatusError::Tls(e) => write!(
                f,
                "TLS: {e}; on the relay's machine pass its --config (its tls-cert is trusted), \
                 elsewhere use the name its certificate covers, or set SSL_CERT_FILE"
            ),
            StatusError::NeedsTls => write!(
                f,
                "the relay speaks TLS on that port; pass --url https://HOST:PORT (or its --config)"
            ),
            StatusError::Refused(401) => write!(
                f,
                "the relay refused the token; pass the relay's --data-dir (or --config) so the right token is used"
            ),
            StatusError::Refused(s) => write!(f, "the relay answered HTTP {s}"),
            StatusError::Malformed => write!(f, "the relay's answer is not a status document"),
        }
    }
}

impl std::error::Error for StatusError {}

/// How `acp-relay status` reaches the relay.
pub enum Transport {
    Plain,
    /// TLS with this client config, expecting this server name.
    #[cfg(feature = "tls")]
    Tls {
        config: std::sync::Arc<futures_rustls::rustls::ClientConfig>,
        name: futures_rustls::rustls::pki_types::ServerName<'static>,
    },
}

/// `GET path` with the token as Bearer; the JSON body.
pub fn fetch(
    addr: SocketAddr,
    path: &str,
    token: &str,
    how: &Transport,
) -> Result<Value, StatusError> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|source| StatusError::Connect { addr, source })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(StatusError::Io)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(StatusError::Io)?;
    match how {
        Transport::Plain => get(s, addr, path, token),
        #[cfg(feature = "tls")]
        Transport::Tls { config, name } => {
            let conn = futures_rustls::rustls::ClientConnection::new(config.clone(), name.clone())
                .map_err(|e| StatusError::Tls(e.to_string()))?;
            let tls = futures_rustls::rustls::StreamOwned::new(conn, s);
            get(tls, addr, path, token).map_err(|e| match e {
                // rustls reports a refused certificate as an I/O error.
                StatusError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    StatusError::Tls(e.to_string())
                }
                e => e,
            })
        }
    }
}

fn get(
    mut s: impl Read + Write,
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> Result<Value, StatusError> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .map_err(StatusError::Io)?;
    s.flush().map_err(StatusError::Io)?;
    let mut buf = Vec::new();
    let read = s.take(MAX_STATUS_BYTES as u64).read_to_end(&mut buf);
    // A TLS peer that closes without close_notify after a whole answer is
    // still an answer.
    if let Err(e) = read
        && (buf.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof)
    {
        return Err(StatusError::Io(e));
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(StatusError::Malformed)?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(StatusError::Malformed)?;
    if code == 400 && body.contains("https://") {
        return Err(StatusError::NeedsTls);
    }
    if code != 200 {
        return Err(StatusError::Refused(code));
    }
    serde_json::from_str(body).map_err(|_| StatusError::Malformed)
}

/// The status document as lines for a person.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let up = v["uptimeSecs"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "acp-relay {}  up {}h{:02}m{:02}s  rss {:.1} MiB  agent {}  devices {}",
        v["version"].as_str().unwrap_or("?"),
        up / 3600,
        (up / 60) % 60,
        up % 60,
        v["rssBytes"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0),
        v["agent"].as_str().unwrap_or("?"),
        v["devices"].as_u64().unwrap_or(0),
    );
    let sessions = v["sessions"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "sessions: {}", sessions.len());
    for s in sessions {
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {:<16} {:<5} asks {:<3} devices {:<3} {}",
            s["sessionId"].as_str().unwrap_or("(not open yet)"),
            s["agent"].as_str().unwrap_or("-"),
            format!(
                "{}/{}",
                s["project"].as_str().unwrap_or("-"),
                s["agentName"].as_str().unwrap_or("-")
            ),
            if s["busy"].as_bool() == Some(true) {
                "busy"
            } else {
                "idle"
            },
            s["openAsks"].as_u64().unwrap_or(0),
            s["devices"].as_u64().unwrap_or(0),
            crate::logger::escape(s["title"].as_str().unwrap_or("")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::AgentId;

    #[test]
    fn status_document_and_rendering() {
        let ops = Ops::new(1_000, "gemini".into());
        let sessions = [SessionSummary {
            session: Some("s1".into()),
            title: Some("Fix it".into()),
            agent: Some(AgentId(2)),
            project: "api".into(),
            agent_name: "gemini".into(),
            busy: true,
            open_asks: 1,
            devices: 2,
        }];
        let v = ops.status_json(61_000, &sessions, 3);
        assert_eq!(v["uptimeSecs"], 60);
        assert_eq!(v["sessions"][0]["openAsks"], 1);
        let text = render(&v);
        assert!(text.contains("up 0h01m00s"), "{text}");
        assert!(text.contains("s1") && text.contains("busy") && text.contains("Fix it"));
        assert!(text.contains("api/gemini"), "{text}");
        let m = ops.metrics_text(&sessions, 0);
        assert!(m.contains("\nacp_relay_sessions_busy 1\n"));
        assert!(m.contains("\nacp_relay_asks_open 1\n"));
    }
}
