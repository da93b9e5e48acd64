//! Sessions outlive the relay process: after `kill -9` and a restart the same
//! sessions are listed, their transcripts load, and the agent resumes context.
mod common;
use common::*;
use serde_json::json;

#[test]
fn kill9_and_restart_keeps_sessions() {
    let mut relay = Relay::start(&[]);
    let mut a = relay.device("a", "");
    let s1 = open_session(&mut a);
    let id = a.request(
        "session/prompt",
        prompt_params(&s1, "/chunks 2\nfirst session prompt"),
    );
    a.response(&id);
    let id = a.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    let s2 = a.response(&id)["result"]["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = a.request(
        "session/prompt",
        prompt_params(&s2, "/chunks 2\nsecond session prompt"),
    );
    let last = a.response(&id);
    let head2 = last["rseq"].as_u64().unwrap();
    a.close();
    relay.kill9();

    // A torn last line in every transcript, and files that are no transcript at all.
    let sessions_dir = relay.data_dir.join("sessions");
    for e in std::fs::read_dir(&sessions_dir).unwrap().flatten() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(e.path())
            .unwrap();
        f.write_all(b"{\"rseq\":99999,\"jsonrpc\":\"2.0\",\"method\":\"session/upd")
            .unwrap();
    }
    std::fs::write(
        sessions_dir.join("garbage.jsonl"),
        b"\x00\x01 not json at all\n{{{{\n",
    )
    .unwrap();
    std::fs::write(sessions_dir.join("notes.txt"), b"hello").unwrap();

    relay.launch("127.0.0.1:0");
    let mut d = relay.device("d", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = d.request("session/list", json!({}));
    let list = d.response(&id);
    let sessions = list["result"]["sessions"].as_array().unwrap();
    let title = |s: &str| {
        sessions
            .iter()
            .find(|v| v["sessionId"] == s)
            .map(|v| v["title"].clone())
    };
    assert_eq!(
        title(&s1),
        Some(json!("/chunks 2 first session prompt")),
        "{list}"
    );
    assert_eq!(
        title(&s2),
        Some(json!("/chunks 2 second session prompt")),
        "{list}"
    );

    // Load replays the same transcript, numbered as before.
    let id = d.request(
        "session/load",
        json!({"sessionId": s2, "cwd": "/", "mcpServers": []}),
    );
    let w = d.recv_until("welcome s2", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == s2.as_str()
    });
    // After a crash numbering goes on past the durable reservation, so no
    // number a device may have seen names other content.
    assert!(w["headSeq"].as_u64().unwrap() >= head2, "{w}");
    d.response(&id);
    assert!(
        agent_text(&d.seen).contains("second session prompt"),
        "{}",
        agent_text(&d.seen)
    );
    assert!(
        d.seen
            .iter()
            .any(|v| v["rseq"] == head2 && v["result"]["stopReason"] == "end_turn")
    );

    // The demo agent resumes its own context through ACP session/load.
    let id = d.request("session/prompt", prompt_params(&s2, "/context"));
    let done = d.response(&id);
    assert!(done["rseq"].as_u64().unwrap() > head2);
    assert!(
        agent_text(&d.seen)
            .contains("context: 1 earlier prompts; last: /chunks 2\nsecond session prompt"),
        "{}",
        agent_text(&d.seen)
    );

    // A device reconnecting straight into a stored session gets it too.
    let mut e = relay.device("e", &format!("session_id={s1}&last_seq=0"));
    let w = e.recv();
    assert_eq!(w["sessionId"], s1.as_str(), "{w}");
    let frames = e.drain(std::time::Duration::from_millis(300));
    assert!(agent_text(&frames).contains("first session prompt"));
}
