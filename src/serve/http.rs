//! The HTTP request head the relay reads before deciding what a connection
//! is: a WebSocket upgrade on `/ws` or `/acp`, or a plain GET (`/`,
//! `/healthz`, `/metrics`, `/status`). Parsing is pure; it never reads the
//! socket; [`ops_endpoint`] builds the answers of the ops endpoints.

use std::fmt;

/// The subprotocol the relay speaks; offered with the token's
/// (`acp-relay.v1, acp-relay.token.T`), it is the one answered.
pub const SUBPROTOCOL: &str = "acp-relay.v1";

/// Longest request head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one head.
pub const MAX_HEADERS: usize = 64;

/// The parts of a request head the relay uses.
#[derive(Debug, Default, Clone)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, PartialEq)]
pub enum HeadError {
    TooLarge,
    Malformed(String),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "request head larger than {MAX_HEAD_BYTES} bytes"),
            HeadError::Malformed(e) => write!(f, "malformed request head: {e}"),
        }
    }
}

impl std::error::Error for HeadError {}

impl Head {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A WebSocket upgrade request (RFC 6455 §4.2.1).
    pub fn is_upgrade(&self) -> bool {
        self.method == "GET"
            && self
                .header("upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
            && self.header("connection").is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
            && self.header("sec-websocket-key").is_some()
    }

    /// The token presented as `Authorization: Bearer T`, a subprotocol
    /// `acp-relay.token.T`, or `?token=T`, and the subprotocol to answer:
    /// [`SUBPROTOCOL`] when the client offered it, never the token-bearing one
    /// (the 101 response must not carry the secret).
    pub fn presented_token(&self) -> (Option<String>, Option<String>) {
        let protos: Vec<&str> = self
            .header("sec-websocket-protocol")
            .map(|p| p.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let answer = protos
            .contains(&SUBPROTOCOL)
            .then(|| SUBPROTOCOL.to_owned());
        if let Some(t) = self.bearer() {
            return (Some(t), answer);
        }
        if let Some(t) = protos
            .iter()
            .find_map(|p| p.strip_prefix("acp-relay.token."))
        {
            return (Some(t.to_owned()), answer);
        }
        (self.query("token").map(str::to_owned), answer)
    }

    /// The token of an `Authorization: Bearer T` header.
    pub fn bearer(&self) -> Option<String> {
        self.header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned())
    }
}

/// Parses a head from the bytes read so far: `Ok(None)` means "need more bytes".
/// On success returns the head and its length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or("/");
            let (path, q) = target.split_once('?').unwrap_or((target, ""));
            let head = Head {
                method: req.method.unwrap_or("").to_owned(),
                path: percent_decode(path),
                query: parse_query(q),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((head, n)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` and `+` in a URL component; invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A complete HTTP/1.1 response with a body; the connection closes after it.
pub fn response(
    status: u16,
    reason: &str,
    content_type: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A plain-text answer (`body` and a newline), the connection closing after it.
pub fn text(status: u16, reason: &str, extra: &[(&str, String)], body: &str) -> Vec<u8> {
    response(
        status,
        reason,
        "text/plain; charset=utf-8",
        extra,
        format!("{body}\n").as_bytes(),
    )
}

/// Answers `/healthz` (`ok` and the version, no token), `/metrics` and
/// `/status` (the token as Bearer, unless `open`: the `--metrics-listen`
/// port, which serves `/metrics` without one). Logs nothing: on the main
/// port [`ops_request`] rate-limits and logs failures.
pub fn ops_endpoint(shared: &crate::serve::Shared, head: &Head, open: bool) -> Vec<u8> {
    if head.path == "/healthz" {
        return text(200, "OK", &[], &format!("ok {}", env!("CARGO_PKG_VERSION")));
    }
    let authorized = (open && head.path == "/metrics") || bearer_matches(shared, head);
    if !authorized {
        let m = &shared.relay.metrics;
        m.auth_failures.set(m.auth_failures.get() + 1);
    }
    ops_answer(shared, head, authorized)
}

/// Answers an ops request from `peer` on the main port. `/metrics` and
/// `/status` go through the failed-authentication limit an upgrade does: an
/// address over its budget gets 429 with `Retry-After`, a wrong or missing
/// token counts against it, and a refusal is logged once per address per
/// interval with a count.
pub fn ops_request(
    shared: &crate::serve::Shared,
    head: &Head,
    peer: std::net::SocketAddr,
) -> Vec<u8> {
    use crate::serve::socket::{AuthRefusal, authenticate};
    if head.path == "/healthz" {
        return ops_endpoint(shared, head, false);
    }
    let presented = head.bearer();
    match authenticate(shared, peer, &head.path, presented.as_deref()) {
        Ok(()) => ops_answer(shared, head, true),
        Err(AuthRefusal::RateLimited { retry_after }) => text(
            429,
            "Too Many Requests",
            &[("Retry-After", retry_after.to_string())],
            &format!("too many failed authentications from your address; retry in {retry_after}s"),
        ),
        Err(AuthRefusal::Refused { .. }) => ops_answer(shared, head, false),
    }
}

/// Whether the request carries the pairing token as `Authorization: Bearer`.
fn bearer_matches(shared: &crate::serve::Shared, head: &Head) -> bool {
    head.bearer()
        .is_some_and(|t| shared.token.borrow().matches(&t))
}

/// The answer of `/metrics` or `/status`, or 401 when not `authorized` (the
/// caller counted the failure).
fn ops_answer(shared: &crate::serve::Shared, head: &Head, authorized: bool) -> Vec<u8> {
    if !authorized {
        return text(
            401,
            "Unauthorized",
            &[("WWW-Authenticate", "Bearer".into())],
            "unauthorized: send the pairing token as Authorization: Bearer (acp-relay token), or use --metrics-listen for /metrics",
        );
    }
    let (sessions, sockets, terminals) = shared
        .relay
        .with_router(|r| (r.session_summaries(), r.socket_count(), r.terminal_count()));
    match head.path.as_str() {
        "/metrics" => {
            let mut body = shared.metrics_text();
            body.push_str(&shared.ops.metrics_text(&sessions, terminals));
            let bytes = shared.relay.metrics.bytes_sent.get();
            // A start that follows a crash is a restart (at most one per crash).
            let spawned = shared.relay.metrics.agents_spawned.get();
            let crashes = shared.ops.events.agent_crashes.get();
            let restarts = crashes.min(spawned.saturating_sub(1));
            use crate::status::metric;
            metric(
                &mut body,
                "acp_relay_bytes_sent_total",
                "Frame bytes queued to device sockets.",
                "counter",
                bytes,
            );
            metric(
                &mut body,
                "acp_relay_agent_restarts_total",
                "Agent starts that followed a crash.",
                "counter",
                restarts,
            );
            response(200, "OK", "text/plain; version=0.0.4", &[], body.as_bytes())
        }
        _ => {
            let now = crate::serve::relay::now_ms();
            let v = shared.ops.status_json(now, &sessions, sockets);
            response(200, "OK", "application/json", &[], v.to_string().as_bytes())
        }
    }
}

/// Fuzz harness: the request-head parser and the token extraction never panic.
pub fn fuzz_head(data: &[u8]) {
    if let Ok(Some((head, n))) = parse_head(data) {
        assert!(n <= data.len());
        let _ = head.presented_token();
        let _ = head.is_upgrade();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upgrade_with_query_and_token_forms() {
        let raw = b"GET /ws?client_id=phone%201&last_seq=7&token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\nrest";
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 4);
        assert_eq!(h.path, "/ws");
        assert!(h.is_upgrade());
        assert_eq!(h.query("client_id"), Some("phone 1"));
        assert_eq!(h.query("last_seq"), Some("7"));
        assert_eq!(h.presented_token(), (Some("abc".into()), None));

        let raw = b"GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: acp-relay.v1, acp-relay.token.s3cret\r\n\r\n";
        let (h, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            h.presented_token(),
            (Some("s3cret".into()), Some("acp-relay.v1".into()))
        );
        let raw = b"GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: acp-relay.token.s3cret\r\n\r\n";
        let (h, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.presented_token(), (Some("s3cret".into()), None));
        let raw = b"GET /ws HTTP/1.1\r\nAuthorization: Bearer tkn\r\n\r\n";
        assert_eq!(
            parse_head(raw)
                .unwrap()
                .unwrap()
                .0
                .presented_token()
                .0
                .as_deref(),
            Some("tkn")
        );
    }

    #[test]
    fn partial_large_and_malformed() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(parse_head(&big).unwrap_err(), HeadError::TooLarge);
        assert!(matches!(
            parse_head(b"\x00\x01 nonsense\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut s: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet = b"GET /ws?=&%+ HTTP/1.1\r\n:abcXYZ019\xff\x00";
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 96) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| alphabet[((s >> (i % 56)) as usize + i * 7) % alphabet.len()])
                .collect();
            fuzz_head(&buf);
        }
        for e in std::fs::read_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/request_head"),
        )
        .unwrap()
        .flatten()
        {
            fuzz_head(&std::fs::read(e.path()).unwrap());
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%zz%4"), "a b c%zz%4");
        assert_eq!(percent_decode("%"), "%");
    }
}
