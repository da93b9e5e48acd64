//! Bad actors and bad input: rate-limited token guessing, foreign origins,
//! oversized and deep messages, floods of lines and connections, invalid
//! UTF-8, binary frames. Each gets its clean outcome; a normal device on the
//! same relay keeps working.
mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use tungstenite::Message;

fn upgrade_status(port: u16, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A TCP connection to the relay from another loopback source address.
fn connect_from(src: &str, port: u16) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let src: std::net::SocketAddr = format!("{src}:0").parse().unwrap();
    bind(&fd, &src).unwrap();
    let dst: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    connect(&fd, &dst).unwrap();
    TcpStream::from(fd)
}

fn healthy(relay: &Relay) {
    let mut d = relay.device("healthy", "");
    let s = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&s, "/chunks 1\nstill fine"));
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
}

#[test]
fn token_guessing_is_rate_limited_per_address() {
    let relay = Relay::start(&[]);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            upgrade_status(relay.port, "/ws?token=guess", "")
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        );
    }
    assert!(
        statuses[..10].iter().all(|s| s.starts_with("HTTP/1.1 401")),
        "{statuses:?}"
    );
    assert!(statuses[10].starts_with("HTTP/1.1 429"), "{statuses:?}");
    let resp = upgrade_status(relay.port, "/ws?token=guess", "");
    assert!(resp.contains("Retry-After:"), "{resp}");
    // Even the right token from the limited address waits; from another address it works.
    assert!(
        upgrade_status(relay.port, &format!("/ws?token={}", relay.token), "")
            .starts_with("HTTP/1.1 429")
    );
    let mut s = connect_from("127.0.0.2", relay.port);
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        relay.token
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        !relay.log().contains(&relay.token),
        "the token is never logged"
    );
    assert!(
        !relay.log().contains("guess"),
        "presented tokens are never logged"
    );
}

#[test]
fn foreign_origins_are_refused() {
    let relay = Relay::start(&["--allow-origin", "https://phone.example"]);
    let tok = format!("Authorization: Bearer {}\r\n", relay.token);
    let foreign = upgrade_status(
        relay.port,
        "/ws",
        &format!("{tok}Origin: https://evil.example\r\n"),
    );
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let own = upgrade_status(
        relay.port,
        "/ws",
        &format!("{tok}Origin: http://127.0.0.1:{}\r\n", relay.port),
    );
    assert!(own.starts_with("HTTP/1.1 101"), "{own}");
    let allowed = upgrade_status(
        relay.port,
        "/ws",
        &format!("{tok}Origin: https://phone.example\r\n"),
    );
    assert!(allowed.starts_with("HTTP/1.1 101"), "{allowed}");
}

#[test]
fn oversized_deep_and_flooding_messages() {
    let relay = Relay::start(&[
        "--max-message-bytes",
        "600000",
        "--max-lines",
        "100",
        "--max-depth",
        "32",
    ]);
    // Oversized message: closed with 1009.
    let mut big = relay.device("big", "");
    big.recv_until("welcome", |v| v["type"] == "relay_welcome");
    big.send_text(&"x".repeat(700_000));
    assert_eq!(big.wait_closed(), Some(1009));

    // Deep nesting: -32600 and the socket stays open.
    let mut deep = relay.device("deep", "");
    deep.recv_until("welcome", |v| v["type"] == "relay_welcome");
    deep.send_text(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{}1{}}}",
        "[".repeat(40),
        "]".repeat(40)
    ));
    let r = deep.recv_until("depth error", |v| v.get("error").is_some());
    assert_eq!(r["error"]["code"], -32600);
    assert!(r["error"]["message"].as_str().unwrap().contains("nested"));

    // 10k lines in one message: the first 100 are handled, then one error.
    let line = json!({"jsonrpc":"2.0","method":"session/unknown_note"}).to_string();
    let many = vec![line; 10_000].join("\n");
    deep.send_text(&many);
    let r = deep.recv_until("lines error", |v| v.get("error").is_some());
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 100 lines"),
        "{r}"
    );

    // Responses to ids the relay never issued: ignored.
    deep.send_text(r#"{"jsonrpc":"2.0","id":"nobody:1","result":{}}"#);
    // Binary frames: ignored.
    deep.ws
        .send(Message::binary(vec![0u8, 159, 146, 150]))
        .unwrap();
    let id = deep.request("session/list", json!({}));
    assert!(
        deep.response(&id).get("result").is_some(),
        "socket still works"
    );

    // Invalid UTF-8 in a text frame: closed with 1007 (raw frame, unmasked opcode 1 with bad bytes).
    let mut bad = relay.device("bad", "");
    bad.recv_until("welcome", |v| v["type"] == "relay_welcome");
    // tungstenite will not send invalid UTF-8 as text; write the frame by hand: FIN+text, masked, len 2.
    let payload = [0xffu8, 0xfe];
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    bad.ws.get_mut().write_all(&frame).unwrap();
    assert_eq!(bad.wait_closed(), Some(1007));

    healthy(&relay);
}

#[test]
fn connection_flood_gets_503() {
    let relay = Relay::start(&["--max-conns-per-peer", "4", "--max-conns", "6"]);
    let mut held = Vec::new();
    for i in 0..4 {
        let mut d = relay.device(&format!("c{i}"), "");
        d.recv_until("welcome", |v| v["type"] == "relay_welcome");
        held.push(d);
    }
    let tok = format!("Authorization: Bearer {}\r\n", relay.token);
    let fifth = upgrade_status(relay.port, "/ws", &tok);
    assert!(fifth.starts_with("HTTP/1.1 503"), "{fifth}");
    drop(held.pop());
    // After one leaves, a slot frees up (the relay notices the close).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = upgrade_status(relay.port, "/ws", &tok);
        if r.starts_with("HTTP/1.1 101") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slot never freed: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
