//! A device that drops mid-turn resumes with its last_seq: exactly the missed
//! frames, after a welcome that tells the truth; a gap the ring lost is a reset.
mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn rseq(v: &Value) -> u64 {
    v["rseq"].as_u64().unwrap_or_else(|| panic!("no rseq: {v}"))
}

#[test]
fn reconnect_with_last_seq_gets_exactly_the_gap() {
    let relay = Relay::start(&[]);
    let mut watcher = relay.device("watcher", "");
    let mut phone = relay.device("phone", "");
    let session = open_session(&mut phone);
    watcher.recv_until("welcome", |v| v["type"] == "relay_welcome");

    // A turn that streams, then waits on a permission ask.
    let id = phone.request(
        "session/prompt",
        prompt_params(&session, "/chunks 3\n/sleep 300\n/chunks 2\n/ask"),
    );
    let first = phone.recv_until("first chunk", |v| chunk_contains(v, "echo"));
    let last_seq = rseq(&first);
    phone.close();

    // While the phone is away the turn goes on until it asks.
    let ask = watcher.recv_until("permission ask", |v| {
        v["method"] == "session/request_permission"
    });
    let ask_id = ask["id"].as_str().unwrap().to_owned();
    assert!(ask_id.starts_with(&format!("perm:{session}:")), "{ask_id}");
    let head = rseq(&ask);

    let mut phone = relay.device(
        "phone",
        &format!("session_id={session}&last_seq={last_seq}"),
    );
    let welcome = phone.recv();
    assert_eq!(welcome["type"], "relay_welcome", "{welcome}");
    assert_eq!(welcome["sessionId"], session.as_str());
    assert_eq!(welcome["reset"], false);
    assert_eq!(welcome["busy"], true);
    assert_eq!(welcome["headSeq"], head);
    assert_eq!(welcome["pendingPermissionIds"], serde_json::json!([ask_id]));
    // The gap: last_seq+1 ..= head, in order, no duplicate; then the open ask again (unstamped order irrelevant).
    let mut got = Vec::new();
    for _ in last_seq + 1..=head {
        got.push(rseq(&phone.recv()));
    }
    assert_eq!(got, (last_seq + 1..=head).collect::<Vec<_>>());
    let again = phone.recv();
    assert_eq!(
        again["id"],
        ask_id.as_str(),
        "open ask re-sent on attach: {again}"
    );

    // The reconnected device answers; the turn completes.
    phone.send(&serde_json::json!({"jsonrpc":"2.0","id":ask_id,"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    phone.recv_until("permission outcome", |v| {
        chunk_contains(v, "permission: allow")
    });
    let done = phone.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    let done_w = watcher.response(&id);
    assert_eq!(rseq(&done), rseq(&done_w));
}

#[test]
fn gap_evicted_from_the_ring_is_replayed_from_the_transcript() {
    let relay = Relay::start(&["--ring-frames", "5"]);
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    let id = d.request(
        "session/prompt",
        prompt_params(&session, "/chunks 12\nmany"),
    );
    let done = d.response(&id);
    let head = rseq(&done);
    assert!(head > 10);
    d.close();

    // The ring holds only the newest 5; the rest of the gap comes from the
    // transcript on disk, so the device gets exactly its gap, no reset.
    let mut d = relay.device("d", &format!("session_id={session}&last_seq=1"));
    let w = d.recv();
    assert_eq!(w["reset"], false, "{w}");
    assert_eq!(w["headSeq"], head);
    let frames: Vec<u64> = d
        .drain(Duration::from_millis(300))
        .iter()
        .filter(|v| v.get("rseq").is_some())
        .map(rseq)
        .collect();
    assert_eq!(
        frames,
        (2..=head).collect::<Vec<_>>(),
        "exactly the gap, older frames from the transcript"
    );

    // Up to date: nothing replayed, no reset.
    let mut d2 = relay.device("d2", &format!("session_id={session}&last_seq={head}"));
    let w = d2.recv();
    assert_eq!(w["reset"], false);
    assert!(
        d2.drain(Duration::from_millis(300))
            .iter()
            .all(|v| v.get("rseq").is_none())
    );
}
