//! One address holding hundreds of idle connections that never send a
//! request does not lock anyone else out: token holders from another address
//! get their sockets and `/healthz` answers, the idle connections are closed
//! after the head deadline, and the log stays a few lines long.
mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Idle connections the flooding address opens.
const IDLE: usize = 400;
/// Token holders that connect from another address meanwhile.
const HOLDERS: usize = 40;

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

/// Reads until the relay closes the connection (or the deadline passes);
/// returns what it sent, or None if it is still open.
fn read_to_close(s: &mut TcpStream, wait: Duration) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
    None
}

fn healthz(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_to_close(&mut s, WAIT).expect("/healthz answered and closed")
}

#[test]
fn idle_connections_from_one_address_do_not_lock_others_out() {
    let relay = Relay::start(&["--max-conns-per-peer", "64"]);
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| connect_from("127.0.0.9", relay.port))
        .collect();
    // The relay has seen the flood once its first refusal is logged.
    relay.wait_log("127.0.0.9");

    let health = healthz(relay.port);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let mut holders = Vec::new();
    for i in 0..HOLDERS {
        let mut d = relay.device(&format!("holder{i}"), "");
        d.recv_until("welcome", |v| v["type"] == "relay_welcome");
        holders.push(d);
    }

    // The flood's connections end: those past the cap at once with a 503,
    // the rest when the head deadline passes.
    for (i, s) in idle.iter_mut().enumerate() {
        let got = read_to_close(s, WAIT)
            .unwrap_or_else(|| panic!("idle connection {i} still open after {WAIT:?}"));
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 503") || got.starts_with("HTTP/1.1 400"),
            "idle connection {i} got {got:?}"
        );
    }

    let log = relay.log();
    // Debug lines (one per timed-out head, bounded by the per-address cap) aside.
    let flood_lines = log
        .lines()
        .filter(|l| l.contains("127.0.0.9") && !l.starts_with("DEBUG"))
        .count();
    assert!(
        flood_lines <= 5,
        "{flood_lines} log lines about the flooding address; log:\n{log}"
    );
    assert!(log.len() < 64 * 1024, "log grew to {} bytes", log.len());
    drop(holders);
}
