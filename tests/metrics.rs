//! `/metrics` needs the token (or `--metrics-listen`), `/healthz` says `ok`
//! and the version, and after a scripted run the counters and gauges equal
//! what it did: sessions, a busy session and its open ask, a terminal, a
//! failed notification, a socket dropped as too slow.
mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn get(port: u16, path: &str, auth: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn parse(body: &str) -> HashMap<String, u64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The metrics a relay reports now.
fn metrics(relay: &Relay) -> HashMap<String, u64> {
    let (status, body) = get(relay.port, "/metrics", Some(&relay.token));
    assert!(status.contains("200"), "{status}");
    parse(&body)
}

/// A loopback port nothing listens on: connections to it are refused.
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn metrics_need_the_token_and_count_a_scripted_run() {
    // Notes go to a port that refuses them: each fails after its retries.
    let dead = format!("http://127.0.0.1:{}/hook", refused_port());
    let relay = Relay::start(&["--notify", &dead, "--notify-delay", "0"]);
    // The default session made at startup is no session anyone opened.
    assert_eq!(metrics(&relay).get("acp_relay_sessions_live"), Some(&0));
    let (status, body) = get(relay.port, "/healthz", None);
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, format!("ok {}\n", env!("CARGO_PKG_VERSION")));

    let (status, body) = get(relay.port, "/metrics", None);
    assert!(status.contains("401"), "{status}");
    assert!(!body.contains("acp_relay_"), "{body}");
    let (status, _) = get(relay.port, "/metrics", Some("wrong-token"));
    assert!(status.contains("401"), "{status}");
    let (status, _) = get(relay.port, "/status", None);
    assert!(status.contains("401"), "{status}");

    // The script: one device, two turns (one with an ask it answers).
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&session, "/chunks 2\nx"));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    let id = a.request("session/prompt", prompt_params(&session, "/ask"));
    let ask = a.recv_until("ask", |v| v["method"] == "session/request_permission");
    // Mid-ask: one live session, busy, with one open ask.
    let m = metrics(&relay);
    for (k, v) in [
        ("acp_relay_sessions_live", 1),
        ("acp_relay_sessions_busy", 1),
        ("acp_relay_asks_open", 1),
    ] {
        assert_eq!(m.get(k), Some(&v), "{k} mid-ask: {m:?}");
    }
    a.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");

    // A device resuming two frames back, and one whose position means nothing (a reset).
    let head = a
        .seen
        .iter()
        .filter_map(|v| v["rseq"].as_u64())
        .max()
        .unwrap();
    let mut b = relay.device(
        "bob",
        &format!("session_id={session}&last_seq={}", head - 2),
    );
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let mut c = relay.device("carol", "session_id=gone&last_seq=3");
    let w = c.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(w["reset"], true);

    let (status, body) = get(relay.port, "/metrics", Some(&relay.token));
    assert!(status.contains("200"), "{status}");
    let m = parse(&body);
    assert_eq!(m.get("acp_relay_resets_total"), Some(&1), "{body}");
    assert!(
        m.get("acp_relay_replays_total").is_some_and(|r| *r >= 1),
        "{body}"
    );
    assert!(
        m.get("acp_relay_replayed_frames_total")
            .is_some_and(|r| *r >= 2),
        "{body}"
    );
    let want = [
        ("acp_relay_turns_total", 2),
        ("acp_relay_asks_total", 1),
        ("acp_relay_asks_open", 0),
        ("acp_relay_sessions_busy", 0),
        ("acp_relay_sockets", 3),
        ("acp_relay_sockets_opened_total", 3),
        ("acp_relay_agents_spawned_total", 1),
        ("acp_relay_agent_crashes_total", 0),
        // Three refused requests above.
        ("acp_relay_auth_failures_total", 3),
        ("acp_relay_notifications_sent_total", 0),
    ];
    for (k, v) in want {
        assert_eq!(m.get(k), Some(&v), "{k} in:\n{body}");
    }
    assert!(m.get("acp_relay_rss_bytes").is_some_and(|r| *r > 0));
    assert!(m.get("acp_relay_frames_sent_total").is_some_and(|f| *f > 0));
    // At least the frames' bytes the device itself received.
    let got: u64 = a.raw.iter().map(|f| f.len() as u64).sum();
    assert!(
        m.get("acp_relay_bytes_sent_total")
            .is_some_and(|b| *b >= got),
        "{body}"
    );
    assert_eq!(m.get("acp_relay_agent_restarts_total"), Some(&0));

    // A crash, then a prompt that starts the agent again.
    let id = a.request("session/prompt", prompt_params(&session, "/exit"));
    a.response(&id);
    let id = a.request("session/prompt", prompt_params(&session, "/chunks 1\nback"));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    let m = parse(&get(relay.port, "/metrics", Some(&relay.token)).1);
    assert_eq!(m.get("acp_relay_agent_crashes_total"), Some(&1));
    assert_eq!(m.get("acp_relay_agents_spawned_total"), Some(&2));
    assert_eq!(m.get("acp_relay_agent_restarts_total"), Some(&1));
    assert_eq!(m.get("acp_relay_turns_total"), Some(&3));
    assert_eq!(m.get("acp_relay_sessions_live"), Some(&1));
    // The ask's note failed against the refusing port (after its retries).
    wait_until("the failed note to be counted", WAIT, || {
        metrics(&relay)
            .get("acp_relay_notifications_failed_total")
            .is_some_and(|n| *n >= 1)
    });
    assert_eq!(
        metrics(&relay).get("acp_relay_notifications_sent_total"),
        Some(&0)
    );
    // The token never appears in what the relay logs.
    assert!(!relay.log().contains(&relay.token));
}

#[test]
fn a_terminal_and_a_socket_dropped_as_too_slow_are_counted() {
    let agent = format!(
        "{} demo-agent --flood 6000 --frame-bytes 2000 --rate 5000",
        bin()
    );
    let relay = Relay::start(&[
        "--terminal",
        "--agent",
        &agent,
        "--ring-bytes",
        "1048576",
        "--socket-bytes",
        "2097152",
    ]);
    let m = metrics(&relay);
    assert_eq!(m.get("acp_relay_terminals"), Some(&0));
    assert_eq!(m.get("acp_relay_sockets_dropped_slow_total"), Some(&0));

    // A PTY terminal.
    let mut t = relay.device("term", "");
    t.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = t.request("_relay/terminal/open", json!({"command": "cat"}));
    let r = t.response(&id);
    assert!(r["result"]["terminalId"].is_string(), "{r}");
    assert_eq!(metrics(&relay).get("acp_relay_terminals"), Some(&1));
    // It leaves, so the flood below has one device to overrun.
    t.close();
    wait_until("the terminal's device to leave", WAIT, || {
        metrics(&relay).get("acp_relay_sockets") == Some(&0)
    });

    // A device that opens a session, asks for a flood and stops reading.
    let mut slow = relay.small_buffer_device("slow");
    let session = open_session(&mut slow);
    slow.request("session/prompt", prompt_params(&session, "go"));
    relay.wait_log("outbound queue full");
    relay.wait_log("closed (too slow)");
    let m = metrics(&relay);
    assert_eq!(
        m.get("acp_relay_sockets_dropped_slow_total"),
        Some(&1),
        "{m:?}"
    );
    assert_eq!(m.get("acp_relay_sessions_live"), Some(&1));
}

#[test]
fn metrics_listen_serves_metrics_without_the_token() {
    let relay = Relay::start(&["--metrics-listen", "127.0.0.1:0"]);
    relay.wait_log("metrics without the token on ");
    let log = relay.log();
    let addr = log
        .lines()
        .find_map(|l| l.split("metrics without the token on ").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = get(port, "/metrics", None);
    assert!(status.contains("200"), "{status}");
    assert!(
        parse(&body).contains_key("acp_relay_sessions_live"),
        "{body}"
    );
    let (status, _) = get(port, "/status", None);
    assert!(status.contains("404"), "{status}");
    // The main port still wants the token.
    assert!(get(relay.port, "/metrics", None).0.contains("401"));
}
