//! The pairing token: refused without it (401 before any upgrade), accepted in each of its three forms.
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use tungstenite::client::IntoClientRequest;

fn raw_upgrade(port: u16, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn missing_or_wrong_token_is_401() {
    let relay = Relay::start(&[]);
    let none = raw_upgrade(relay.port, "/ws", "");
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    let wrong = raw_upgrade(relay.port, "/ws?token=nope", "");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let wrong_bearer = raw_upgrade(relay.port, "/ws", "Authorization: Bearer 0000\r\n");
    assert!(wrong_bearer.starts_with("HTTP/1.1 401"), "{wrong_bearer}");
    // The token never reaches the log.
    assert!(!relay.log().contains(&relay.token));
}

#[test]
fn each_token_form_is_accepted() {
    let relay = Relay::start(&[]);
    let ok = raw_upgrade(relay.port, &format!("/ws?token={}", relay.token), "");
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    let ok = raw_upgrade(
        relay.port,
        "/ws",
        &format!("Authorization: Bearer {}\r\n", relay.token),
    );
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    let ok = raw_upgrade(
        relay.port,
        "/ws",
        &format!(
            "Sec-WebSocket-Protocol: acp-relay.token.{}\r\n",
            relay.token
        ),
    );
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    // The 101 never carries the token; `acp-relay.v1` is answered when offered.
    assert!(!ok.contains(&relay.token), "token echoed: {ok}");
    let ok = raw_upgrade(
        relay.port,
        "/ws",
        &format!(
            "Sec-WebSocket-Protocol: acp-relay.v1, acp-relay.token.{}\r\n",
            relay.token
        ),
    );
    assert!(
        ok.contains("Sec-WebSocket-Protocol: acp-relay.v1\r\n"),
        "{ok}"
    );
    assert!(!ok.contains(&relay.token), "token echoed: {ok}");

    // And a full device over the subprotocol form gets its welcome.
    let mut req = format!("ws://127.0.0.1:{}/ws?client_id=sub", relay.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("acp-relay.v1, acp-relay.token.{}", relay.token)
            .parse()
            .unwrap(),
    );
    let mut d = Device::connect(relay.port, req, "sub").unwrap();
    let w = d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(w["reset"], false);
}

/// One plain HTTP GET of `path` with `extra` headers; the whole answer.
fn get(port: u16, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Bad-token `/metrics` and `/status` requests spend the same per-address
/// failure budget an upgrade does: past it they get 429 with `Retry-After`,
/// and the log holds a few lines, not one per request.
#[test]
fn bad_token_ops_requests_are_rate_limited_and_logged_sparsely() {
    const REQUESTS: usize = 400;
    let relay = Relay::start(&[]);
    let mut codes = Vec::new();
    for i in 0..REQUESTS {
        let path = if i % 2 == 0 { "/metrics" } else { "/status" };
        let extra = if i % 3 == 0 {
            ""
        } else {
            "Authorization: Bearer 0000\r\n"
        };
        let r = get(relay.port, path, extra);
        codes.push(r.get(9..12).unwrap_or_default().to_owned());
        if i == REQUESTS - 1 {
            assert!(r.contains("\r\nRetry-After: "), "{r}");
        }
    }
    let refused_401 = codes.iter().filter(|c| *c == "401").count();
    let limited = codes.iter().filter(|c| *c == "429").count();
    assert_eq!(refused_401, 10, "the failure budget, then 429: {codes:?}");
    assert_eq!(limited, REQUESTS - 10, "{codes:?}");
    // The token holder from the same address waits out the window too, as
    // an upgrade would; /healthz still answers.
    let r = get(
        relay.port,
        "/metrics",
        &format!("Authorization: Bearer {}\r\n", relay.token),
    );
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    assert!(get(relay.port, "/healthz", "").starts_with("HTTP/1.1 200"));

    let log = relay.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused /metrics") || l.contains("refused /status"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for {REQUESTS} refused requests; log:\n{log}"
    );
    assert!(!log.contains(&relay.token));
}
