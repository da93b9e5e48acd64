//! The durability contract over the real binary: a number once sent never
//! names other content across `kill -9`, a resuming device gets exactly its
//! gap or `reset: true`, a turn's end survives a crash right after it, the
//! first frame of a session is stored, and SIGTERM is a clean stop.
mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Runs of the kill -9 flood test.
const FLOOD_RUNS: usize = 20;
/// Frames per flood turn.
const FLOOD_FRAMES: u64 = 2000;
/// Frames per second: fast, yet slow enough that the device keeps up with
/// live frames, so what it has seen is as new as what the store buffers (a
/// device lagging behind would only ever see frames already written out).
const FLOOD_RATE: u64 = 4000;

/// A tiny deterministic generator (no crate needed): xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// What a device has seen of one session across relay lives.
#[derive(Default)]
struct Ledger {
    /// rseq -> the frame's content, as first seen.
    seen: HashMap<u64, String>,
    reused: Vec<String>,
    skips: Vec<String>,
    frames: u64,
    resets: u64,
    /// The next rseq due on this connection (None right after a reset).
    expect: Option<u64>,
    /// The newest rseq the device holds.
    last: u64,
    /// After a reset welcome: its `headSeq`. The replay may end below it (the
    /// numbers between were reserved by a run that crashed and name nothing);
    /// the first live frame after it must be `headSeq + 1`.
    reset_head: Option<u64>,
}

impl Ledger {
    fn check(&mut self, run: usize, v: &Value) {
        let Some(rseq) = v["rseq"].as_u64() else {
            return;
        };
        self.frames += 1;
        if let Some(h) = self.reset_head
            && rseq > h
        {
            self.reset_head = None;
            if self.expect.is_some_and(|e| e <= h) {
                self.expect = Some(h + 1);
            }
        }
        // A reset's replay is the session's history, which keeps the holes
        // of earlier crashes (their reserved numbers name nothing); past its
        // head, numbers go up by one again.
        let in_reset_replay = self.reset_head.is_some_and(|h| rseq <= h);
        if let Some(e) = self.expect
            && rseq != e
            && !(in_reset_replay && rseq > e)
        {
            self.skips
                .push(format!("run {run}: expected rseq {e}, got {rseq}"));
        }
        self.expect = Some(rseq + 1);
        self.last = rseq;
        let content = v.to_string();
        match self.seen.get(&rseq) {
            Some(before) if *before != content => self.reused.push(format!(
                "run {run}: rseq {rseq} was {before} and is now {content}"
            )),
            Some(_) => {}
            None => {
                self.seen.insert(rseq, content);
            }
        }
    }
}

#[test]
fn kill9_during_a_flood_never_reuses_or_skips_a_number() {
    let state = TempDir::new("flood-state");
    let agent = format!(
        "{} demo-agent --flood {FLOOD_FRAMES} --frame-bytes 80 --rate {FLOOD_RATE} --state-dir {}",
        bin(),
        state.path().display()
    );
    let mut relay = Relay::start(&["--agent", &agent]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill -9 flood seed {seed}");
    let mut rng = Rng(seed);
    let mut ledger = Ledger::default();
    let mut session: Option<String> = None;
    for run in 0..FLOOD_RUNS {
        if run > 0 {
            relay.launch("127.0.0.1:0");
        }
        let mut d = match &session {
            None => {
                let mut d = relay.device("f", "");
                let s = open_session(&mut d);
                ledger.expect = None;
                for v in std::mem::take(&mut d.seen) {
                    ledger.check(run, &v);
                }
                session = Some(s);
                d
            }
            Some(s) => {
                let mut d = relay.device("f", &format!("session_id={s}&last_seq={}", ledger.last));
                let w = d.recv_until("welcome", |v| v["type"] == "relay_welcome");
                assert_eq!(w["sessionId"], s.as_str(), "{w}");
                if w["reset"] == true {
                    ledger.resets += 1;
                    ledger.expect = None;
                    ledger.reset_head = w["headSeq"].as_u64();
                } else {
                    ledger.expect = Some(ledger.last + 1);
                }
                d
            }
        };
        let s = session.clone().unwrap();
        let id = d.request("session/prompt", prompt_params(&s, "flood"));
        // Kill at a random point: after 0..~1.3 floods' worth of frames (past
        // the flood's end the kill lands right after the turn's answer).
        let kill_after = rng.next() % (FLOOD_FRAMES * 13 / 10);
        let mut got = 0u64;
        loop {
            let v = d.recv();
            ledger.check(run, &v);
            got += 1;
            let answered = v["id"] == id && v.get("method").is_none();
            if answered {
                assert!(v.get("result").is_some(), "run {run}: {v}");
            }
            if got >= kill_after || answered {
                break;
            }
        }
        relay.kill9();
    }
    eprintln!(
        "{FLOOD_RUNS} kill -9 runs: {} frames checked, {} resets, {} reused, {} silent skips",
        ledger.frames,
        ledger.resets,
        ledger.reused.len(),
        ledger.skips.len()
    );
    assert!(ledger.frames > FLOOD_RUNS as u64, "too few frames checked");
    assert!(
        ledger.reused.is_empty(),
        "numbers reused (seed {seed}):\n{}",
        ledger.reused[..ledger.reused.len().min(5)].join("\n")
    );
    assert!(
        ledger.skips.is_empty(),
        "silent skips (seed {seed}):\n{}",
        ledger.skips.join("\n")
    );
}

#[test]
fn kill9_right_after_a_turn_end_keeps_the_turn() {
    let mut relay = Relay::start(&[]);
    let mut session: Option<String> = None;
    let mut last_end = 0;
    let mut ends: Vec<u64> = Vec::new();
    for run in 0..8 {
        if run > 0 {
            relay.launch("127.0.0.1:0");
        }
        let (mut d, s) = match &session {
            None => {
                let mut d = relay.device("t", "");
                let s = open_session(&mut d);
                (d, s)
            }
            Some(s) => (relay.device("t", &format!("session_id={s}")), s.clone()),
        };
        let text = format!("/chunks 3\nturn {run}");
        let id = d.request("session/prompt", prompt_params(&s, &text));
        // This turn's answer, not the last run's (replayed with the same id).
        let done = d.recv_until(&format!("turn {run}'s end"), |v| {
            v["id"] == id && v["rseq"].as_u64() > Some(last_end)
        });
        assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
        let rseq = done["rseq"].as_u64().unwrap();
        last_end = rseq;
        // The device saw the turn end: the very next instant, the relay dies.
        relay.kill9();
        relay.launch("127.0.0.1:0");
        let mut e = relay.device("u", &format!("session_id={s}"));
        let w = e.recv_until("welcome", |v| v["type"] == "relay_welcome");
        assert_eq!(w["sessionId"], s.as_str(), "{w}");
        let replayed = e.recv_until(&format!("turn {run}'s end, rseq {rseq}"), |v| {
            v["rseq"] == rseq
        });
        assert_eq!(replayed, done, "run {run}: the turn's end is what was sent");
        // The whole history, across every crash's jump in the numbers: the
        // first frame, and each earlier turn's end.
        let got: Vec<u64> = e.seen.iter().filter_map(|v| v["rseq"].as_u64()).collect();
        assert_eq!(
            got.first(),
            Some(&1),
            "run {run}: replay starts at rseq 1: {got:?}"
        );
        for end in &ends {
            assert!(
                got.contains(end),
                "run {run}: turn end {end} not replayed: {got:?}"
            );
        }
        ends.push(rseq);
        let id = e.request("session/list", json!({}));
        let list = e.response(&id);
        let row = list["result"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["sessionId"] == s.as_str())
            .cloned();
        assert!(row.is_some(), "run {run}: {list}");
        session = Some(s);
        relay.kill9();
    }
}

#[test]
fn the_first_frame_of_a_session_survives_a_restart() {
    let mut relay = Relay::start(&[]);
    let mut d = relay.device("a", "");
    let s = open_session(&mut d);
    let first = d.recv_until("available_commands_update", |v| {
        v["params"]["update"]["sessionUpdate"] == "available_commands_update"
    });
    assert_eq!(first["rseq"], 1, "{first}");
    let id = d.request("session/prompt", prompt_params(&s, "/chunks 1\nhello"));
    d.response(&id);
    relay.kill9();
    relay.launch("127.0.0.1:0");
    let mut e = relay.device("b", &format!("session_id={s}&last_seq=0"));
    let w = e.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(w["sessionId"], s.as_str(), "{w}");
    let one = e.recv_until("rseq 1", |v| v.get("rseq").is_some());
    assert_eq!(one, first, "rseq 1 is replayed as it was sent");
}

#[test]
fn no_unclaimed_session_after_restart_and_load() {
    let mut relay = Relay::start(&["--agent-per-session"]);
    let mut d = relay.device("a", "");
    let s = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&s, "/chunks 1\nreal work"));
    d.response(&id);
    relay.kill9();
    relay.launch("127.0.0.1:0");
    let mut e = relay.device("b", "");
    e.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = e.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{}}),
    );
    e.response(&id);
    let id = e.request(
        "session/load",
        json!({"sessionId": s, "cwd": "/", "mcpServers": []}),
    );
    let loaded = e.response(&id);
    assert!(loaded.get("result").is_some(), "{loaded}");
    let id = e.request("session/prompt", prompt_params(&s, "/chunks 1\nmore"));
    let done = e.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    let id = e.request("session/list", json!({}));
    let list = e.response(&id);
    let rows = list["result"]["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the real session is listed: {list}");
    assert_eq!(rows[0]["sessionId"], s.as_str(), "{list}");
    let agents = agent_children(relay.pid());
    assert_eq!(
        agents.len(),
        1,
        "one agent process, not an extra: {agents:?}"
    );
    relay.kill9();
    relay.launch("127.0.0.1:0");
    let mut f = relay.device("c", "");
    f.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = f.request("session/list", json!({}));
    let list = f.response(&id);
    let rows = list["result"]["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "nothing unclaimed was stored: {list}");
}

/// `updatedAt` of session `s` in a `session/list`.
fn updated_at(d: &mut Device, s: &str) -> String {
    let id = d.request("session/list", json!({}));
    let list = d.response(&id);
    list["result"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["sessionId"] == s)
        .and_then(|v| v["updatedAt"].as_str())
        .unwrap_or_else(|| panic!("{s} not listed: {list}"))
        .to_owned()
}

/// Waits until the wall clock has moved past `since` by a few milliseconds.
fn clock_moves_past(since: std::time::SystemTime) {
    let deadline = std::time::Instant::now() + WAIT;
    while since.elapsed().unwrap_or_default() < std::time::Duration::from_millis(5) {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stood still"
        );
        std::thread::yield_now();
    }
}

#[test]
fn updated_at_moves_with_every_turn_on_disk_too() {
    let mut relay = Relay::start(&[]);
    let mut d = relay.device("a", "");
    let s = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&s, "/chunks 1\none"));
    d.response(&id);
    let t1 = updated_at(&mut d, &s);
    clock_moves_past(std::time::SystemTime::now());
    let id = d.request("session/prompt", prompt_params(&s, "/chunks 1\ntwo"));
    d.response(&id);
    let t2 = updated_at(&mut d, &s);
    assert!(t2 > t1, "{t2} after {t1}");
    relay.kill9();
    relay.launch("127.0.0.1:0");
    let mut e = relay.device("b", "");
    e.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let t3 = updated_at(&mut e, &s);
    assert!(
        t3 >= t2,
        "updatedAt went backwards after a restart: {t3} < {t2}"
    );
}

#[test]
fn sigterm_is_a_clean_stop_and_devices_resume_without_reset() {
    let mut relay = Relay::start(&[]);
    let mut d = relay.device("a", "");
    let s = open_session(&mut d);
    let id = d.request(
        "session/prompt",
        prompt_params(&s, "/chunks 2\nbefore stop"),
    );
    let done = d.response(&id);
    let head = done["rseq"].as_u64().unwrap();
    assert_eq!(relay.terminate(), Some(0));
    let log = relay.log();
    assert!(
        !log.contains("agent exited"),
        "a normal shutdown is not an agent crash:\n{log}"
    );
    let sessions_dir = relay.data_dir.join("sessions");
    for e in std::fs::read_dir(&sessions_dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        assert!(
            !text.contains("_relay/agent_exited"),
            "{}: {text}",
            e.path().display()
        );
    }
    relay.launch("127.0.0.1:0");
    let mut e = relay.device("a", &format!("session_id={s}&last_seq={head}"));
    let w = e.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(w["reset"], false, "a clean stop records the exact end: {w}");
    assert_eq!(w["headSeq"], head, "{w}");
    let id = e.request("session/prompt", prompt_params(&s, "/chunks 1\nafter"));
    let next = e.recv_until("the next frame", |v| v.get("rseq").is_some());
    assert_eq!(next["rseq"], head + 1, "{next}");
    e.response(&id);
}

#[test]
fn a_gap_the_ring_dropped_is_replayed_from_the_transcript() {
    let relay = Relay::start(&["--ring-frames", "8"]);
    let mut a = relay.device("a", "");
    let s = open_session(&mut a);
    let id = a.request(
        "session/prompt",
        prompt_params(&s, "/chunks 30\nlong answer"),
    );
    let done = a.response(&id);
    let head = done["rseq"].as_u64().unwrap();
    assert!(head > 30, "{done}");
    let sent: Vec<Value> = stamped_of(&a, &done)
        .into_iter()
        .filter(|v| v["rseq"].as_u64().is_some_and(|r| r > 3))
        .collect();
    // The ring holds 8 frames; the gap after 3 is on disk.
    let mut b = relay.device("b", &format!("session_id={s}&last_seq=3"));
    let w = b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(
        w["reset"], false,
        "served from the transcript, not a reset: {w}"
    );
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let v = b.recv();
        if v.get("rseq").is_some() {
            got.push(v);
        }
    }
    assert_eq!(got, sent, "exactly the gap, as it was sent");
}
