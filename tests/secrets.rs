//! The token stays secret: not on stdout when stdout is not a terminal (a
//! journal keeps it), not in the 101 response, and a deleted token file is
//! never re-created by an upgrade attempt.
mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Kills the child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_token_on_stdout_when_it_is_not_a_terminal() {
    let dir = TempDir::new("stdout");
    let data = dir.path().join("data");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut g = Guard(
        Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--workspace")
            .arg(&ws)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = g.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !lines.iter().any(|l: &String| l.contains("browser:")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no browser line on stdout: {lines:?}"),
        }
    }
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let token = token.trim();
    let out = lines.join("\n");
    assert!(!out.contains(token), "token on stdout:\n{out}");
    assert!(out.contains("acp-relay pair --data-dir"), "{out}");
}

fn raw_upgrade(port: u16, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    write!(
        s,
        "GET /ws?client_id=raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_101_never_carries_the_token_and_a_deleted_token_stays_deleted() {
    let relay = Relay::start(&[]);
    let r = raw_upgrade(
        relay.port,
        &format!(
            "Sec-WebSocket-Protocol: acp-relay.v1, acp-relay.token.{}\r\n",
            relay.token
        ),
    );
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    assert!(
        r.contains("Sec-WebSocket-Protocol: acp-relay.v1\r\n"),
        "{r}"
    );
    assert!(!r.contains(&relay.token), "token in the 101:\n{r}");

    std::fs::remove_file(relay.data_dir.join("token")).unwrap();
    let r = raw_upgrade(relay.port, "Authorization: Bearer not-the-token\r\n");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(
        !relay.data_dir.join("token").exists(),
        "an unauthenticated attempt re-created the token file"
    );
    // The token read at start still admits its holders.
    let r = raw_upgrade(
        relay.port,
        &format!("Authorization: Bearer {}\r\n", relay.token),
    );
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    assert!(!relay.data_dir.join("token").exists());
}
