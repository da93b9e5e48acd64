//! `acp-relay connect`: a stdio ACP client drives the relay through the
//! bridge; the link drops (relay restart, kill -9) and the bridge resumes
//! with `session/load` without repeating history, and answers a request that
//! was in flight with an error instead of hanging.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use bridge::*;
use serde_json::json;

#[test]
fn bridge_prompts_and_resumes_after_relay_restart() {
    let mut relay = Relay::start(&[]);
    std::fs::write(relay.workspace.join("notes.txt"), "bridge notes\n").unwrap();
    let mut b = Bridge::start(&relay);
    let sid = bridge_session(&mut b);

    let turn = b.request(
        "session/prompt",
        prompt_params(&sid, "/chunks 2\nfirst turn\n/ask\n/read notes.txt"),
    );
    let ask = b.recv_until("permission request", |v| {
        v["method"] == "session/request_permission"
    });
    b.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    let done = b.response(&turn);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    let text = agent_text(&b.seen);
    assert!(text.contains("first turn"), "{text}");
    assert!(text.contains("permission: allow"), "{text}");
    assert!(text.contains("read ok"), "{text}");
    b.seen.clear();
    let before = b.all.len();

    // The relay goes away and comes back on the same port.
    let port = relay.port;
    relay.terminate();
    b.wait_log("lost the link");
    relay.launch(&format!("127.0.0.1:{port}"));
    b.wait_log("resumed session");

    let turn = b.request(
        "session/prompt",
        prompt_params(&sid, "/chunks 1\nsecond turn"),
    );
    let done = b.response(&turn);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    let after = &b.all[before..];
    let text = agent_text(after);
    assert!(text.contains("second turn"), "{text}");
    assert!(
        !text.contains("first turn"),
        "the replayed history must not reach the client again: {after:?}"
    );
    assert!(
        after.iter().all(|v| v.get("rseq").is_none()),
        "plain ACP only: {after:?}"
    );
    assert_eq!(b.finish(), Some(0));
}

#[test]
fn request_in_flight_when_the_link_drops_gets_an_error() {
    let mut relay = Relay::start(&[]);
    let mut b = Bridge::start(&relay);
    let sid = bridge_session(&mut b);
    let turn = b.request("session/prompt", prompt_params(&sid, "/chunks 1\nfirst"));
    assert_eq!(b.response(&turn)["result"]["stopReason"], "end_turn");
    let turn = b.request(
        "session/prompt",
        prompt_params(&sid, "/chunks 1\nslow turn\n/sleep 20000"),
    );
    b.recv_until("the echo", |v| chunk_contains(v, "slow turn"));
    // The relay must know the session when it comes back: wait until the
    // store wrote this turn's echo to the transcript.
    wait_transcript_has(&relay, "slow turn");
    let port = relay.port;
    relay.kill9();
    let answer = b.response(&turn);
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("relay connection lost"),
        "{answer}"
    );

    // Back again: the bridge resumes and the session goes on.
    relay.launch(&format!("127.0.0.1:{port}"));
    b.wait_log("resumed session");
    let turn = b.request("session/prompt", prompt_params(&sid, "/chunks 1\nagain"));
    assert_eq!(b.response(&turn)["result"]["stopReason"], "end_turn");
    assert_eq!(b.finish(), Some(0));
}

#[test]
fn requests_sent_while_the_relay_is_down_wait_for_the_resume() {
    let mut relay = Relay::start(&[]);
    let mut b = Bridge::start(&relay);
    let sid = bridge_session(&mut b);
    let port = relay.port;
    relay.terminate();
    b.wait_log("lost the link");
    // Queued in the bridge while it reconnects: one more failed attempt
    // after the request was written means the bridge took it while down.
    let attempts = |b: &Bridge| b.log().matches("connect: attempt").count();
    let seen = attempts(&b);
    let turn = b.request("session/prompt", prompt_params(&sid, "/chunks 1\nqueued"));
    wait_until("another reconnect attempt", WAIT, || attempts(&b) > seen);
    relay.launch(&format!("127.0.0.1:{port}"));
    let done = b.response(&turn);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    assert!(agent_text(&b.seen).contains("queued"));
    assert_eq!(b.finish(), Some(0));
}

#[test]
fn stdin_eof_exits_zero_and_bad_setups_say_why() {
    let relay = Relay::start(&[]);
    let b = Bridge::start(&relay);
    assert_eq!(b.finish(), Some(0));

    // Requests written just before stdin closes are still answered.
    let mut b = Bridge::start(&relay);
    let init = b.request("initialize", json!({"protocolVersion":1}));
    let new = b.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    b.close_stdin();
    assert!(b.response(&init).get("result").is_some());
    assert!(b.response(&new)["result"]["sessionId"].is_string());
    assert_eq!(b.wait_exit(), Some(0));

    let mut b = Bridge::start_args(&[
        format!("ws://127.0.0.1:{}/acp", relay.port),
        "--token".into(),
        "wrong".into(),
    ]);
    b.request("initialize", json!({"protocolVersion":1}));
    assert_eq!(b.wait_exit(), Some(1));
    b.wait_log("401");
    b.wait_log("token");

    let mut b = Bridge::start_args(&["wss://127.0.0.1:1/acp".into()]);
    assert_eq!(b.wait_exit(), Some(1));
    b.wait_log("plain ws://");
}
