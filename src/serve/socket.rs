//! One TCP connection: the TLS handshake when TLS is on (feature `tls`), then
//! read the request head, answer plain HTTP (`/`, `/healthz`, `/metrics`,
//! `/status`) or authenticate and upgrade `/ws` or `/acp` to a WebSocket, then
//! pump frames between the socket and the router. Never holds a router borrow
//! across an await: every router call is a synchronous `feed`.

use crate::core::ids::{ClientId, SocketId};
use crate::core::router::Input;
use crate::serve::admission::{self, Refusal};
use crate::serve::http::{self, Head};
use crate::serve::relay::{QueueDepth, Relay, SocketHandle, SocketMsg};
use crate::serve::{Shared, web};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use futures_util::SinkExt;
use smol::channel::Receiver;
use smol::net::{SocketAddr, TcpStream};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Gives the admission slot back when the socket ends, however it ends.
struct Slot {
    shared: Rc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.admission.borrow_mut().close(self.ip);
    }
}

/// An unauthenticated slot ([`Admission::begin`]), given back when the
/// connection authenticates, gets its HTTP answer or ends.
///
/// [`Admission::begin`]: crate::serve::admission::Admission::begin
pub struct PreAuth {
    shared: Rc<Shared>,
    ip: IpAddr,
}

impl PreAuth {
    /// Takes an unauthenticated slot for `ip`, or says why not.
    pub fn begin(shared: &Rc<Shared>, ip: IpAddr) -> Result<PreAuth, Refusal> {
        shared.admission.borrow_mut().begin(ip)?;
        Ok(PreAuth {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        self.shared.admission.borrow_mut().end(self.ip);
    }
}

/// Logs a refusal from `peer`, at most once per address per
/// [`admission::LOG_INTERVAL`], with the number refused meanwhile.
pub fn warn_refusal(shared: &Shared, peer: SocketAddr, what: &str) {
    let now = std::time::Instant::now();
    let Some(more) = shared.admission.borrow_mut().log_refusal(peer.ip(), now) else {
        return;
    };
    if more == 0 {
        log::warn!("{peer}: {what}");
    } else {
        log::warn!(
            "{peer}: {what} (and {more} more refusals from {} in the last {}s)",
            peer.ip(),
            admission::LOG_INTERVAL.as_secs()
        );
    }
}

/// Why [`authenticate`] turned a request away.
pub enum AuthRefusal {
    /// Too many failed authentications from the address: 429.
    RateLimited { retry_after: u64 },
    /// No token, or a wrong one (`presented`): 401.
    Refused { presented: bool },
}

/// The one gate every token-holding request passes (`/ws`, `/acp`,
/// `/metrics`, `/status`): the address's failed-authentication budget, the
/// constant-time token check, the failure counted (budget and
/// `auth_failures`) and logged once per address per interval. `what` names
/// the request in the log line ("upgrade", "/metrics").
pub fn authenticate(
    shared: &Shared,
    peer: SocketAddr,
    what: &str,
    presented: Option<&str>,
) -> Result<(), AuthRefusal> {
    let now = std::time::Instant::now();
    let rate = shared.admission.borrow_mut().check_rate(peer.ip(), now);
    if let Err(Refusal::RateLimited { retry_after }) = rate {
        warn_refusal(
            shared,
            peer,
            &format!("refused {what}: too many failed authentications"),
        );
        return Err(AuthRefusal::RateLimited { retry_after });
    }
    // The token is read at start, on SIGHUP and when its file changes (serve), never here:
    // an unauthenticated attempt must not re-create a deleted token file.
    if presented.is_some_and(|t| shared.token.borrow().matches(t)) {
        return Ok(());
    }
    shared.admission.borrow_mut().failed(peer.ip(), now);
    let m = &shared.relay.metrics;
    m.auth_failures.set(m.auth_failures.get() + 1);
    let why = if presented.is_some() {
        "wrong token"
    } else {
        "missing token"
    };
    warn_refusal(shared, peer, &format!("refused {what}: {why}"));
    Err(AuthRefusal::Refused {
        presented: presented.is_some(),
    })
}

/// The answer to a connection refused at accept, before its head is read.
const ACCEPT_REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\nContent-Length: 58\r\nConnection: close\r\n\r\ntoo many connections waiting to authenticate; retry later\n";

/// Refuses a connection just accepted without spending a task on it: one
/// write that never waits (a fresh socket's buffer takes it), then close.
pub fn refuse_at_accept(shared: &Shared, stream: TcpStream, peer: SocketAddr, why: Refusal) {
    let what = match why {
        Refusal::Unauthenticated { per_peer: true } => format!(
            "refused a connection: already {} unauthenticated connections from this address",
            shared.admission.borrow().limits().max_preauth_per_peer
        ),
        _ => format!(
            "refused a connection: already {} unauthenticated connections open",
            shared.admission.borrow().limits().max_preauth
        ),
    };
    warn_refusal(shared, peer, &what);
    let _ = rustix::net::send(&stream, ACCEPT_REFUSED, rustix::net::SendFlags::NOSIGNAL);
}

type WsSink = async_tungstenite::WebSocketSender<Conn>;

/// What wraps accepted connections in TLS (`serve --tls-cert --tls-key`).
#[cfg(feature = "tls")]
pub use crate::serve::tls::Acceptor;

/// Built without the `tls` feature there is no acceptor: an
/// `Option<Acceptor>` is always `None`.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub enum Acceptor {}

/// An accepted connection, plain or TLS. One type for both keeps one copy of
/// the HTTP and WebSocket code; without the `tls` feature it is a `TcpStream`.
pub enum Conn {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::serve::tls::TlsStream>),
}

impl Conn {
    /// Ends a connection after its last reply: a TLS stream sends
    /// close_notify and flushes (within 2 s); a plain one just drops.
    async fn finish(&mut self) {
        match self {
            Conn::Plain(_) => {}
            #[cfg(feature = "tls")]
            Conn::Tls(s) => {
                futures_lite::future::or(
                    async {
                        let _ = s.close().await;
                    },
                    async {
                        smol::Timer::after(Duration::from_secs(2)).await;
                    },
                )
                .await
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s).poll_read_vectored(cx, bufs),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_close(cx),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// How long a client may take to send its request head (and, with TLS, to
/// finish the handshake): an idle connection holds an unauthenticated slot
/// ([`admission::MAX_PREAUTH_PER_PEER`]) for no longer than this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Ping interval on an idle socket.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// Frames fed before one flush.
pub const MAX_BATCH: usize = 256;
/// Initial read buffer of a device socket.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// A socket silent for this long (no frame, no pong) is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);

/// Serves one accepted connection to its end; `tls` wraps it in TLS first.
pub async fn connection(
    shared: Rc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Acceptor>,
    preauth: PreAuth,
) {
    // A second handle on the TCP stream, under any TLS: what a slow-socket drop
    // shuts down without waiting on the socket's (blocked) writer.
    let raw = stream.clone();
    let mut stream = match tls {
        None => Conn::Plain(stream),
        #[cfg(feature = "tls")]
        Some(acceptor) => {
            match futures_lite::future::or(acceptor.accept(stream), async {
                smol::Timer::after(HEAD_TIMEOUT).await;
                Err("timed out waiting for the TLS handshake".to_string())
            })
            .await
            {
                Ok(s) => Conn::Tls(Box::new(s)),
                Err(e) => {
                    log::debug!("{peer}: {e}");
                    return;
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    };
    let head = match futures_lite::future::or(read_head(&mut stream), async {
        smol::Timer::after(HEAD_TIMEOUT).await;
        Err("timed out waiting for the request head".to_string())
    })
    .await
    {
        Ok(h) => h,
        Err(e) => {
            log::debug!("{peer}: {e}");
            send(&mut stream, &http::text(400, "Bad Request", &[], &e)).await;
            return;
        }
    };
    let reply = |status: u16, reason: &str, body: &str| http::text(status, reason, &[], body);
    let path = head.path.clone();
    match (head.method.as_str(), path.as_str()) {
        ("GET", "/ws") if head.is_upgrade() => {
            upgrade(shared, stream, raw, peer, head, false, preauth).await
        }
        ("GET", "/acp") if head.is_upgrade() => {
            upgrade(shared, stream, raw, peer, head, true, preauth).await
        }
        ("GET", "/acp") => {
            send(
                &mut stream,
                &reply(
                    426,
                    "Upgrade Required",
                    "/acp is a WebSocket endpoint (plain ACP)",
                ),
            )
            .await;
        }
        ("GET", "/ws") => {
            send(
                &mut stream,
                &reply(426, "Upgrade Required", "/ws is a WebSocket endpoint"),
            )
            .await;
        }
        ("GET", "/healthz" | "/metrics" | "/status") => {
            send(&mut stream, &http::ops_request(&shared, &head, peer)).await;
        }
        ("GET", _) if web::find(&path).is_some() => {
            if let Some(bytes) = web::respond(&head) {
                send(&mut stream, &bytes).await;
            }
        }
        _ => {
            send(
                &mut stream,
                &reply(
                    404,
                    "Not Found",
                    "not found; the relay serves /, /ws, /acp, /healthz, /metrics and /status",
                ),
            )
            .await;
        }
    }
}

/// Writes a connection's last reply, then ends it (see [`Conn::finish`]).
async fn send(stream: &mut Conn, bytes: &[u8]) {
    if stream.write_all(bytes).await.is_ok() {
        stream.finish().await;
    }
}

/// Reads until a whole request head is in (at most [`http::MAX_HEAD_BYTES`]).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((head, _)) = http::parse_head(&buf).map_err(|e| e.to_string())? {
            return Ok(head);
        }
    }
}

async fn refuse(
    stream: &mut Conn,
    status: u16,
    reason: &str,
    extra: &[(&str, String)],
    body: &str,
) {
    send(stream, &http::text(status, reason, extra, body)).await;
}

async fn upgrade(
    shared: Rc<Shared>,
    mut stream: Conn,
    raw: TcpStream,
    peer: SocketAddr,
    head: Head,
    plain: bool,
    preauth: PreAuth,
) {
    let ip = peer.ip();
    if !admission::origin_allowed(
        head.header("origin"),
        head.header("host"),
        &shared.allowed_origins,
    ) {
        warn_refusal(
            &shared,
            peer,
            &format!(
                "refused upgrade from foreign origin {}",
                crate::logger::peer(head.header("origin").unwrap_or("(none)"))
            ),
        );
        let body = "forbidden: this origin may not open relay sockets; add it with --allow-origin";
        return refuse(&mut stream, 403, "Forbidden", &[], body).await;
    }
    let (presented, proto) = head.presented_token();
    match authenticate(&shared, peer, "upgrade", presented.as_deref()) {
        Ok(()) => {}
        Err(AuthRefusal::RateLimited { retry_after }) => {
            let body = format!(
                "too many failed authentications from your address; retry in {retry_after}s"
            );
            return refuse(
                &mut stream,
                429,
                "Too Many Requests",
                &[("Retry-After", retry_after.to_string())],
                &body,
            )
            .await;
        }
        Err(AuthRefusal::Refused { .. }) => {
            let body = "unauthorized: present the pairing token (acp-relay token) as Authorization: Bearer, subprotocol acp-relay.token.T, or ?token=";
            let extra = [("WWW-Authenticate", "Bearer".into())];
            return refuse(&mut stream, 401, "Unauthorized", &extra, body).await;
        }
    }
    let opened = shared.admission.borrow_mut().open(ip);
    if let Err(refusal) = opened {
        let per_peer = matches!(refusal, Refusal::Full { per_peer: true });
        let what = if per_peer {
            "refused upgrade: connection limit reached (per address)"
        } else {
            "refused upgrade: connection limit reached (total)"
        };
        warn_refusal(&shared, peer, what);
        let body = if per_peer {
            "too many connections from your address; close some and retry"
        } else {
            "the relay has as many connections as it allows; retry later"
        };
        let extra = [("Retry-After", "5".into())];
        return refuse(&mut stream, 503, "Service Unavailable", &extra, body).await;
    }
    let _slot = Slot {
        shared: shared.clone(),
        ip,
    };
    // Authenticated: from here the socket slot bounds it, not the pre-auth one.
    drop(preauth);
    let socket = shared.relay.mint_socket();
    let client = head
        .query("client_id")
        .filter(|c| !c.is_empty() && c.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if plain {
                format!("acp-{}", socket.0)
            } else {
                format!("anon-{peer}")
            }
        });
    let session = head
        .query("session_id")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let last_seq = head.query("last_seq").and_then(|s| s.parse::<u64>().ok());
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = proto {
        resp.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if plain {
        resp.push_str(&format!(
            "Acp-Connection-Id: {}-{}\r\n",
            shared.relay.epoch(),
            socket.0
        ));
    }
    resp.push_str("\r\n");
    // Flush: a TLS stream may hold the 101 back, and `/acp` sends nothing first.
    if stream.write_all(resp.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(shared.limits.max_message_bytes);
    config.max_frame_size = Some(shared.limits.max_message_bytes);
    // Device messages are small; the 128 KiB default costs every socket.
    config.read_buffer_size = READ_BUFFER_BYTES;
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    let open = Input::SocketOpen {
        socket,
        client: ClientId(client),
        session,
        last_seq,
        plain,
    };
    run_socket(shared, ws, raw, peer, socket, open).await;
}

/// Ends a connection at once, whatever its writer is doing: linger 0 (so the
/// close resets the connection and the kernel drops what it still buffers for
/// a peer that does not read), then shut both directions down, which wakes the
/// socket's reader and writer with end of file / an error.
fn abort(raw: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(raw, Some(Duration::ZERO));
    let _ = raw.shutdown(std::net::Shutdown::Both);
}

async fn run_socket(
    shared: Rc<Shared>,
    ws: WebSocketStream<Conn>,
    raw: TcpStream,
    peer: SocketAddr,
    socket: SocketId,
    open: Input<'static>,
) {
    let relay: Rc<Relay> = shared.relay.clone();
    // Unbounded channel, bounded by `depth`: a bounded one would allocate
    // every slot of --socket-queue up front for every socket.
    let (tx, rx) = smol::channel::unbounded();
    let own_tx = tx.clone();
    let depth = Rc::new(QueueDepth::default());
    let aborted = Rc::new(std::cell::Cell::new(false));
    relay.register_socket(
        socket,
        SocketHandle {
            tx,
            depth: depth.clone(),
            cap: shared.limits.socket_queue,
            cap_bytes: shared.limits.socket_bytes,
            abort: Box::new({
                let aborted = aborted.clone();
                let queue = rx.downgrade();
                move || {
                    aborted.set(true);
                    abort(&raw);
                    // Free the queued frames now, not when the writer's task ends.
                    if let Some(rx) = queue.upgrade() {
                        while rx.try_recv().is_ok() {}
                    }
                }
            }),
        },
    );
    if let Input::SocketOpen { client, plain, .. } = &open {
        log::info!(
            "{socket}: {peer} connected as {}{}",
            crate::logger::peer(&client.0),
            if *plain { " (plain ACP)" } else { "" }
        );
    }
    let (sink, mut stream) = ws.split();

    let writer = relay.ex.spawn(write_socket(sink, rx, depth));

    relay.feed(open);
    let mut close: Option<(u16, &str)> = None;
    loop {
        let next = futures_lite::future::or(async { stream.next().await.map(Some) }, async {
            smol::Timer::after(DEAD_AFTER).await;
            Some(None)
        })
        .await;
        match next {
            None => break,
            Some(None) => {
                log::info!("{socket}: silent for {}s; closing", DEAD_AFTER.as_secs());
                close = Some((1001, "no traffic or pong for 30s"));
                break;
            }
            Some(Some(Ok(Message::Text(text)))) => relay.feed(Input::SocketText {
                socket,
                text: text.as_bytes(),
            }),
            Some(Some(Ok(Message::Binary(_)))) => {
                log::debug!("{socket}: binary frame ignored; send JSON-RPC as text")
            }
            Some(Some(Ok(Message::Close(_)))) => break,
            Some(Some(Ok(_))) => {}
            Some(Some(Err(WsError::Capacity(e)))) => {
                log::warn!("{socket}: {e}; closing with 1009");
                close = Some((
                    1009,
                    "message too big; split it or raise --max-message-bytes",
                ));
                break;
            }
            Some(Some(Err(WsError::Utf8(e)))) => {
                log::warn!("{socket}: invalid UTF-8 in a text frame ({e}); closing with 1007");
                close = Some((1007, "text frame is not valid UTF-8"));
                break;
            }
            Some(Some(Err(e))) => {
                log::debug!("{socket}: {e}");
                break;
            }
        }
    }
    relay.feed(Input::SocketClosed { socket });
    if aborted.get() {
        // Dropped as too slow: the stream is already shut down. Cancelling the
        // writer frees its queue now, not when a blocked write gives up.
        writer.cancel().await;
        drop(own_tx);
        // A walk of the whole heap: off the executor thread.
        smol::unblock(crate::heap::trim).await;
        log::info!("{socket}: closed (too slow)");
        return;
    }
    match close {
        Some((code, reason)) => {
            let _ = own_tx.try_send(SocketMsg::Close {
                code,
                reason: reason.into(),
            });
        }
        None => {
            if own_tx
                .try_send(SocketMsg::Close {
                    code: 1000,
                    reason: String::new(),
                })
                .is_err()
            {
                own_tx.close();
            }
        }
    }
    futures_lite::future::or(writer, async {
        smol::Timer::after(Duration::from_secs(2)).await;
    })
    .await;
    log::info!("{socket}: closed");
}

/// Sends queued frames in order, one flush per batch, and pings every
/// [`PING_EVERY`] whatever the traffic (a device that only listens answers
/// pongs, which keeps its reader alive).
async fn write_socket(mut sink: WsSink, rx: Receiver<SocketMsg>, depth: Rc<QueueDepth>) {
    let mut ticker = smol::Timer::interval(PING_EVERY);
    loop {
        let next = futures_lite::future::or(async { Some(rx.recv().await) }, async {
            ticker.next().await;
            None
        })
        .await;
        let mut close = None;
        match next {
            None => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Err(_)) => {
                // Closed: by the relay's overflow rule while senders remain, else a normal end.
                close = Some(if rx.sender_count() > 0 {
                    CloseFrame {
                        code: CloseCode::Policy,
                        reason: "too slow: outbound queue full; reconnect with last_seq".into(),
                    }
                } else {
                    CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    }
                });
            }
            Some(Ok(first)) => {
                let mut msg = Some(first);
                let mut batch = 0;
                while let Some(m) = msg.take() {
                    match m {
                        SocketMsg::Text(text) => {
                            depth.taken(text.len());
                            if sink.feed(Message::Text(text)).await.is_err() {
                                return;
                            }
                            batch += 1;
                        }
                        SocketMsg::NotUtf8(len) => {
                            depth.taken(len);
                            batch += 1;
                        }
                        SocketMsg::Close { code, reason } => {
                            close = Some(CloseFrame {
                                code: CloseCode::from(code),
                                reason: reason.into(),
                            });
                            break;
                        }
                    }
                    if batch >= MAX_BATCH {
                        break;
                    }
                    msg = rx.try_recv().ok();
                }
                if SinkExt::flush(&mut sink).await.is_err() {
                    return;
                }
            }
        }
        if let Some(frame) = close {
            let _ = sink.close(Some(frame)).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ACCEPT_REFUSED;

    #[test]
    fn the_accept_refusal_is_one_whole_response() {
        let text = std::str::from_utf8(ACCEPT_REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
