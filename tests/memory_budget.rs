//! One memory budget: 16 sessions with full rings and 4 devices each, plus
//! a full replay to all 64 devices, stay within `--memory-budget` by the
//! relay's own accounting (`/metrics`).
mod common;
use common::*;
use std::io::{Read, Write};

const BUDGET: u64 = 8 << 20;
const RING_BYTES: u64 = 1 << 20;

/// The relay's `/metrics` text.
fn metrics(relay: &Relay) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        relay.token
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn gauge(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[test]
fn sixteen_full_sessions_and_64_replays_stay_within_the_budget() {
    let agent = format!("{} demo-agent --flood 300 --frame-bytes 4000", bin());
    let relay = Relay::start(&[
        "--agent",
        &agent,
        "--ring-bytes",
        &RING_BYTES.to_string(),
        "--memory-budget",
        &BUDGET.to_string(),
        "--max-conns-per-peer",
        "128",
        "--max-conns",
        "256",
    ]);
    let mut c = relay.device("c", "");
    let mut sessions = Vec::new();
    for i in 0..16 {
        let s = if i == 0 {
            open_session(&mut c)
        } else {
            new_session(&mut c)
        };
        // Each flood is more than the ring holds: every ring is full.
        let id = c.request("session/prompt", prompt_params(&s, "fill"));
        let done = c.response(&id);
        assert!(done.get("result").is_some(), "{done}");
        c.seen.clear();
        sessions.push(s);
    }
    let m = metrics(&relay);
    assert_eq!(gauge(&m, "acp_relay_memory_budget_bytes"), BUDGET);
    let after_fill = gauge(&m, "acp_relay_memory_bytes");
    assert!(
        after_fill <= BUDGET,
        "after the fill: {after_fill} > {BUDGET}\n{m}"
    );

    // A full replay to 64 devices that do not read.
    let mut devices = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        for k in 0..4 {
            let client = format!("d{i}-{k}");
            devices.push(relay.device(&client, &format!("session_id={s}&last_seq=0")));
        }
    }
    let m = metrics(&relay);
    let memory = gauge(&m, "acp_relay_memory_bytes");
    let rings = gauge(&m, "acp_relay_ring_bytes");
    eprintln!("after the fill {after_fill} bytes; with 64 replays {memory} bytes, rings {rings}");
    assert!(
        memory <= BUDGET,
        "with 64 replays: {memory} > {BUDGET}\n{m}"
    );
    assert!(rings > 0, "{m}");
    // Every device got its welcome and its replay (or a reset) all the same.
    for d in &mut devices {
        let w = d.recv_until("welcome", |v| v["type"] == "relay_welcome");
        assert!(w["headSeq"].as_u64().unwrap() > 0, "{w}");
    }
    // A reading device catches up and the relay still serves new turns.
    let s = sessions.last().unwrap();
    let id = c.request("session/prompt", prompt_params(s, "again"));
    assert!(c.response(&id).get("result").is_some());
    let m = metrics(&relay);
    let memory = gauge(&m, "acp_relay_memory_bytes");
    assert!(
        memory <= BUDGET,
        "after another turn: {memory} > {BUDGET}\n{m}"
    );
}

/// A device asking for more history than its socket may queue is never
/// dropped by its own replay (it would reconnect and ask again, for ever):
/// the transcript part is cut to what fits beside the ring, as a reset.
#[test]
fn a_replay_never_outgrows_the_socket_it_is_for() {
    let agent = format!("{} demo-agent --flood 1500 --frame-bytes 2000", bin());
    let relay = Relay::start(&[
        "--agent",
        &agent,
        "--ring-bytes",
        "262144",
        "--socket-bytes",
        "1310720",
    ]);
    let mut d = relay.device("filler", "");
    let s = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&s, "fill"));
    let done = d.response(&id);
    let head = done["rseq"].as_u64().expect("a stamped turn end");
    assert!(head > 1000, "{done}");
    d.close();
    // ~3.3 MB of history, a 256 KiB ring, a socket bound of ring + 1 MiB.
    for i in 0..3 {
        let mut e = relay.device(&format!("late{i}"), &format!("session_id={s}&last_seq=0"));
        let w = e.recv_until("welcome", |v| v["type"] == "relay_welcome");
        assert_eq!(w["headSeq"], head, "{w}");
        let got = e.recv_until(&format!("the head, rseq {head}"), |v| v["rseq"] == head);
        assert_eq!(got["rseq"], head);
        // Still connected: a request is answered.
        let id = e.request("session/list", serde_json::json!({}));
        assert!(e.response(&id).get("result").is_some());
    }
}
