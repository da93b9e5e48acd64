//! `acp-relay connect URL`: a stdio ↔ WebSocket bridge to a relay's `/acp`,
//! so any stdio ACP client can use a remote relay as its agent command.
//!
//! Each line on stdin goes out as one text frame; each text frame that comes
//! back is written to stdout as one line. When the link drops the bridge
//! answers the requests still waiting with an error, reconnects with backoff,
//! replays the client's `initialize` and `session/load`s its last session
//! (swallowing the replayed history, which the client already has), then goes
//! on. When stdin closes, the requests already sent are still answered (for
//! at most [`DRAIN_AFTER_EOF`]), then the bridge closes the socket and exits 0.
//!
//! Shape: one `LocalExecutor` thread, plus a thread blocking on stdin. A
//! stdout task (the std handle behind `Unblock`), a connector task per reconnect, a
//! reader and a writer task per link, all feeding the main loop through
//! bounded channels; the main loop owns the sans-IO [`state::Bridge`].

pub mod state;

use crate::agent::lines::{LineAcc, LineRead};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message, http};
use futures_lite::future::{or, race};
use futures_lite::{AsyncWriteExt, StreamExt};
use smol::channel::{Receiver, Sender, bounded};
use smol::net::TcpStream;
use smol::{LocalExecutor, Task, Timer, Unblock};
use state::{Bridge, Out};
use std::rc::Rc;
use std::time::Duration;

/// Largest line read from stdin and largest message accepted from the relay
/// (the relay's own default for agent lines; the SDKs use the same).
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;
/// stdin read buffer.
pub const STDIN_BUFFER: usize = 64 << 10;
/// Lines from stdin waiting for the main loop.
pub const CLIENT_QUEUE: usize = 16;
/// Events from the link (messages, ups and downs) waiting for the main loop.
pub const LINK_QUEUE: usize = 64;
/// Frames waiting for the socket writer.
pub const SEND_QUEUE: usize = 64;
/// Lines waiting for stdout.
pub const STDOUT_QUEUE: usize = 256;
/// Connection attempts in a row without a working link before giving up.
pub const MAX_ATTEMPTS: u32 = 10;
/// First reconnect delay; doubled per failed attempt up to [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest delay between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// One attempt (TCP connect and WebSocket handshake) may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The replayed `initialize` and `session/load` must be answered within this.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// Ping interval on an idle link.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// A link silent for this long (no frame, no pong) is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);
/// After stdin closes, requests already sent are still answered for this long.
pub const DRAIN_AFTER_EOF: Duration = Duration::from_secs(60);
/// How long closing the socket may take at exit.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Options of `acp-relay connect`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/acp` or `wss://...`.
    pub url: String,
    /// The pairing token (`--token` or `ACP_RELAY_TOKEN`).
    pub token: Option<String>,
    /// The relay's project and agent for the client's `session/new`s
    /// (`--project`, `--agent`), unless the client names its own.
    pub project: Option<String>,
    pub agent: Option<String>,
}

/// Where to connect, checked once.
#[derive(Clone)]
struct Target {
    url: String,
    host: String,
    port: u16,
    token: Option<String>,
}

impl Target {
    fn parse(opts: &ConnectOptions) -> Result<Target, String> {
        let url = opts.url.trim();
        if url.starts_with("wss://") || url.starts_with("https://") {
            return Err(format!(
                "{url}: acp-relay connect speaks plain ws:// only; for wss:// use the relay's \
                 ws:// address over a VPN (e.g. Tailscale), or a local TLS proxy such as \
                 `socat TCP-LISTEN:7448,fork,reuseaddr OPENSSL:HOST:443` and ws://127.0.0.1:7448/acp"
            ));
        }
        if !url.starts_with("ws://") {
            return Err(format!(
                "{url}: expected a ws:// URL, e.g. ws://127.0.0.1:7447/acp"
            ));
        }
        let req = url
            .into_client_request()
            .map_err(|e| format!("{url}: not a usable WebSocket URL: {e}"))?;
        let host = req
            .uri()
            .host()
            .ok_or_else(|| format!("{url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = req.uri().port_u16().unwrap_or(80);
        Ok(Target {
            url: url.to_owned(),
            host,
            port,
            token: opts.token.clone().filter(|t| !t.is_empty()),
        })
    }

    fn request(&self) -> Result<http::Request<()>, String> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(t) = &self.token {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| "the token has characters a header cannot carry".to_string())?;
            req.headers_mut().insert("Authorization", v);
        }
        Ok(req)
    }
}

/// From the stdin task.
enum ClientEvent {
    Line(String),
    Eof,
}

/// From the link tasks, tagged with the link generation they belong to.
enum LinkEvent {
    Up {
        link_no: u64,
        tx: Sender<String>,
        writer: Task<()>,
        attempts: u32,
    },
    Message {
        link_no: u64,
        text: String,
    },
    Down {
        link_no: u64,
        why: String,
    },
    GaveUp {
        link_no: u64,
        why: String,
    },
    ResumeTimeout {
        link_no: u64,
    },
    /// stdin closed [`DRAIN_AFTER_EOF`] ago.
    DrainTimeout,
}

/// One attempt's failure: worth retrying or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

/// Bridges stdin/stdout to the relay until stdin closes.
pub fn run(opts: ConnectOptions) -> Result<(), String> {
    let target = Target::parse(&opts)?;
    let core = Bridge::with_place(opts.project, opts.agent);
    let ex = Rc::new(LocalExecutor::new());
    smol::block_on(ex.run(bridge(ex.clone(), target, core)))
}

async fn bridge(
    ex: Rc<LocalExecutor<'static>>,
    target: Target,
    mut core: Bridge,
) -> Result<(), String> {
    let (client_tx, client_rx) = bounded::<ClientEvent>(CLIENT_QUEUE);
    let (link_tx, link_rx) = bounded::<LinkEvent>(LINK_QUEUE);
    let (out_tx, out_rx) = bounded::<String>(STDOUT_QUEUE);
    std::thread::Builder::new()
        .name("connect-stdin".into())
        .spawn(move || read_stdin(client_tx))
        .map_err(|e| format!("could not start the stdin reader: {e}"))?;
    let stdout = ex.spawn(write_stdout(out_rx));

    let mut link_no = 0u64;
    // Attempts in a row that did not end in a working link.
    let mut streak = 0u32;
    let mut link: Option<(Sender<String>, Task<()>)> = None;
    let mut _connector = Some(ex.spawn(connect_loop(
        ex.clone(),
        target.clone(),
        link_no,
        0,
        link_tx.clone(),
    )));
    let mut _resume_timer: Option<Task<()>> = None;
    let mut _drain_timer: Option<Task<()>> = None;
    let mut client_open = true;
    let mut out = Vec::new();

    let result = loop {
        let ev = if client_open && core.accepts_client() {
            race(async { link_rx.recv().await.map(Ok) }, async {
                client_rx.recv().await.map(Err)
            })
            .await
        } else {
            link_rx.recv().await.map(Ok)
        };
        let mut drop_link: Option<String> = None;
        match ev {
            Err(_) | Ok(Err(ClientEvent::Eof)) => {
                // Stdin is done; what it already asked is still answered.
                client_open = false;
                let tx = link_tx.clone();
                _drain_timer = Some(ex.spawn(async move {
                    Timer::after(DRAIN_AFTER_EOF).await;
                    let _ = tx.send(LinkEvent::DrainTimeout).await;
                }));
            }
            Ok(Err(ClientEvent::Line(line))) => core.client_line(line, &mut out),
            Ok(Ok(LinkEvent::Up {
                link_no: g,
                tx,
                writer,
                attempts,
            })) if g == link_no => {
                streak += attempts;
                log::info!("connect: connected to {}", target.url);
                link = Some((tx, writer));
                core.link_up(&mut out);
                if core.is_resuming() {
                    let tx = link_tx.clone();
                    _resume_timer = Some(ex.spawn(async move {
                        Timer::after(RESUME_TIMEOUT).await;
                        let _ = tx.send(LinkEvent::ResumeTimeout { link_no: g }).await;
                    }));
                }
            }
            Ok(Ok(LinkEvent::Message { link_no: g, text })) if g == link_no => {
                core.relay_message(text, &mut out);
                if core.is_up() {
                    streak = 0;
                    _resume_timer = None;
                }
            }
            Ok(Ok(LinkEvent::Down { link_no: g, why })) if g == link_no => drop_link = Some(why),
            Ok(Ok(LinkEvent::ResumeTimeout { link_no: g }))
                if g == link_no && core.is_resuming() =>
            {
                drop_link = Some(format!(
                    "the relay did not answer the resume within {}s",
                    RESUME_TIMEOUT.as_secs()
                ));
            }
            Ok(Ok(LinkEvent::GaveUp { link_no: g, why })) if g == link_no => {
                core.give_up(&mut out);
                deliver(&mut out, &out_tx, None).await;
                break Err(why);
            }
            Ok(Ok(LinkEvent::DrainTimeout)) => {
                log::warn!(
                    "connect: stdin closed {}s ago and {} requests are still unanswered; exiting",
                    DRAIN_AFTER_EOF.as_secs(),
                    core.in_flight()
                );
                break Ok(());
            }
            Ok(Ok(_)) => {} // from an older link
        }
        if let Some(why) = drop_link {
            // Dropping the writer task here and the connector task (the
            // reader) below closes the old socket.
            link = None;
            core.link_down(&mut out);
            link_no += 1;
            if streak >= MAX_ATTEMPTS {
                core.give_up(&mut out);
                deliver(&mut out, &out_tx, None).await;
                break Err(format!(
                    "lost the link to {} ({why}) and {MAX_ATTEMPTS} attempts in a row failed",
                    target.url
                ));
            }
            log::warn!(
                "connect: lost the link to {} ({why}); reconnecting",
                target.url
            );
            _connector = Some(ex.spawn(connect_loop(
                ex.clone(),
                target.clone(),
                link_no,
                streak,
                link_tx.clone(),
            )));
        }
        if !deliver(&mut out, &out_tx, link.as_ref().map(|l| &l.0)).await {
            // stdout is gone: the client went away.
            break Ok(());
        }
        if !client_open && core.idle() {
            break Ok(());
        }
    };

    // Close the socket (the writer sends a close frame when its channel ends).
    if let Some((tx, writer)) = link.take() {
        drop(tx);
        or(writer, async {
            Timer::after(CLOSE_GRACE).await;
        })
        .await;
    }
    drop(out_tx);
    stdout.await;
    result
}

/// Sends what the core produced; false when stdout is closed.
async fn deliver(
    out: &mut Vec<Out>,
    stdout: &Sender<String>,
    relay: Option<&Sender<String>>,
) -> bool {
    let mut ok = true;
    for o in out.drain(..) {
        match o {
            Out::Client(line) => ok &= stdout.send(line).await.is_ok(),
            Out::Relay(text) => match relay {
                // A failed send means the link just ended; its Down event follows.
                Some(tx) => {
                    let _ = tx.send(text).await;
                }
                None => log::debug!("connect: no link for a frame; dropped"),
            },
        }
    }
    ok
}

/// Reads stdin on its own thread (a blocking std handle; `Unblock` under a
/// `BufReader` may not be polled again after end of file).
fn read_stdin(tx: Sender<ClientEvent>) {
    let stdin = std::io::stdin();
    let mut r = std::io::BufReader::with_capacity(STDIN_BUFFER, stdin.lock());
    let mut buf = Vec::new();
    loop {
        match read_line_blocking(&mut r, &mut buf, MAX_MESSAGE_BYTES) {
            Ok(LineRead::Line) => {
                let line = match String::from_utf8(std::mem::take(&mut buf)) {
                    Ok(l) => l,
                    Err(_) => {
                        log::warn!("connect: dropped a stdin line that is not UTF-8");
                        continue;
                    }
                };
                if tx.send_blocking(ClientEvent::Line(line)).is_err() {
                    return;
                }
            }
            Ok(LineRead::TooLong { size }) => log::warn!(
                "connect: dropped a {size}-byte stdin line (longer than {MAX_MESSAGE_BYTES} bytes)"
            ),
            Ok(LineRead::Eof) => break,
            Err(e) => {
                log::warn!("connect: reading stdin: {e}");
                break;
            }
        }
    }
    let _ = tx.send_blocking(ClientEvent::Eof);
}

/// One `\n`-terminated line into `buf` (cleared first), at most `max` bytes;
/// a longer line is skipped, never buffered whole.
fn read_line_blocking(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut acc = LineAcc::new(buf, max);
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (used, done) = acc.feed(chunk);
        r.consume(used);
        if let Some(read) = done {
            return Ok(read);
        }
    }
}

async fn write_stdout(rx: Receiver<String>) {
    let mut w = Unblock::new(std::io::stdout());
    while let Ok(line) = rx.recv().await {
        let mut res = w.write_all(line.as_bytes()).await;
        if res.is_ok() {
            res = w.write_all(b"\n").await;
        }
        if res.is_ok() && rx.is_empty() {
            res = w.flush().await;
        }
        if let Err(e) = res {
            log::warn!("connect: writing stdout: {e}");
            return;
        }
    }
    let _ = w.flush().await;
}

/// Connects (attempts `first`.. up to [`MAX_ATTEMPTS`] with backoff), then
/// runs the link's reader here and its writer in its own task.
async fn connect_loop(
    ex: Rc<LocalExecutor<'static>>,
    target: Target,
    link_no: u64,
    first: u32,
    events: Sender<LinkEvent>,
) {
    let mut attempt = first;
    let ws = loop {
        if attempt > 0 {
            let delay = backoff(attempt);
            log::warn!(
                "connect: attempt {}/{MAX_ATTEMPTS} to reach {} in {} ms",
                attempt + 1,
                target.url,
                delay.as_millis()
            );
            Timer::after(delay).await;
        }
        attempt += 1;
        match connect_once(&target).await {
            Ok(ws) => break ws,
            Err(Failure::Fatal(why)) => {
                let _ = events.send(LinkEvent::GaveUp { link_no, why }).await;
                return;
            }
            Err(Failure::Retry(why)) if attempt >= MAX_ATTEMPTS => {
                let why = format!(
                    "could not reach {} after {attempt} attempts: {why}",
                    target.url
                );
                let _ = events.send(LinkEvent::GaveUp { link_no, why }).await;
                return;
            }
            Err(Failure::Retry(why)) => log::warn!("connect: {}: {why}", target.url),
        }
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, rx) = bounded::<String>(SEND_QUEUE);
    let down = events.clone();
    let writer = ex.spawn(async move {
        loop {
            let next = or(async { rx.recv().await.ok().map(Some) }, async {
                Timer::after(PING_EVERY).await;
                Some(None)
            })
            .await;
            let res = match next {
                None => {
                    let _ = sink.close(None).await;
                    return;
                }
                Some(Some(text)) => sink.send(Message::text(text)).await,
                Some(None) => sink.send(Message::Ping(Default::default())).await,
            };
            if let Err(e) = res {
                let why = format!("sending: {e}");
                let _ = down.send(LinkEvent::Down { link_no, why }).await;
                return;
            }
        }
    });
    let up = LinkEvent::Up {
        link_no,
        tx,
        writer,
        attempts: attempt - first,
    };
    if events.send(up).await.is_err() {
        return;
    }
    let why = loop {
        let next = or(async { Some(stream.next().await) }, async {
            Timer::after(DEAD_AFTER).await;
            None
        })
        .await;
        match next {
            None => break format!("no traffic or pong for {}s", DEAD_AFTER.as_secs()),
            Some(None) => break "the relay closed the connection".to_string(),
            Some(Some(Ok(Message::Text(t)))) => {
                let text = t.as_str().to_owned();
                if events
                    .send(LinkEvent::Message { link_no, text })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(Some(Ok(Message::Close(f)))) => {
                break match f {
                    Some(f) => format!("the relay closed the connection ({} {})", f.code, f.reason),
                    None => "the relay closed the connection".to_string(),
                };
            }
            // Binary frames are not ACP; pings are answered by tungstenite.
            Some(Some(Ok(_))) => {}
            Some(Some(Err(e))) => break format!("receiving: {e}"),
        }
    };
    let _ = events.send(LinkEvent::Down { link_no, why }).await;
}

fn backoff(attempt: u32) -> Duration {
    let d = BACKOFF_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    d.min(BACKOFF_MAX)
}

async fn connect_once(target: &Target) -> Result<WebSocketStream<TcpStream>, Failure> {
    let req = target.request().map_err(Failure::Fatal)?;
    let attempt = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| Failure::Retry(format!("TCP connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE_BYTES);
        config.max_frame_size = Some(MAX_MESSAGE_BYTES);
        match async_tungstenite::client_async_with_config(req, tcp, Some(config)).await {
            Ok((ws, _resp)) => Ok(ws),
            Err(WsError::Http(resp)) => {
                let status = resp.status();
                let hint = match status.as_u16() {
                    401 | 403 => {
                        " (wrong or missing token: pass --token or set ACP_RELAY_TOKEN; \
                         `acp-relay token` prints it on the relay's machine)"
                    }
                    404 => " (no such endpoint: the relay's plain ACP endpoint is /acp)",
                    _ => "",
                };
                let why = format!("the relay answered HTTP {status}{hint}");
                if status.is_client_error() && status.as_u16() != 429 {
                    Err(Failure::Fatal(format!("{}: {why}", target.url)))
                } else {
                    Err(Failure::Retry(why))
                }
            }
            Err(e) => Err(Failure::Retry(format!("WebSocket handshake: {e}"))),
        }
    };
    or(attempt, async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err(Failure::Retry(format!(
            "no connection within {}s",
            CONNECT_TIMEOUT.as_secs()
        )))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = |u: &str| {
            Target::parse(&ConnectOptions {
                url: u.into(),
                token: Some("t".into()),
                project: None,
                agent: None,
            })
        };
        let ok = t("ws://127.0.0.1:7447/acp").ok().unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("127.0.0.1", 7447));
        let ok = t("ws://[::1]/acp?token=x").ok().unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("::1", 80));
        let e = t("wss://pi.local/acp").err().unwrap();
        assert!(e.contains("ws://") && e.contains("proxy"), "{e}");
        assert!(t("http://x/acp").is_err());
        assert!(t("ws://").is_err());
    }

    #[test]
    fn blocking_lines_are_bounded() {
        let data: &[u8] = b"one\ntoo long line\nthree\nlast";
        let mut r = std::io::BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        let mut next = || {
            let got = read_line_blocking(&mut r, &mut buf, 8).unwrap();
            (got, String::from_utf8(buf.clone()).unwrap())
        };
        assert_eq!(next(), (LineRead::Line, "one".into()));
        assert_eq!(next(), (LineRead::TooLong { size: 13 }, String::new()));
        assert_eq!(next(), (LineRead::Line, "three".into()));
        assert_eq!(next(), (LineRead::Line, "last".into()));
        assert_eq!(next(), (LineRead::Eof, String::new()));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), BACKOFF_BASE);
        assert_eq!(backoff(2), BACKOFF_BASE * 2);
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
