//! Permission asks: the first answer wins and reaches the agent, a second one is
//! told who answered, everyone sees `_relay/ask_resolved`; cancel settles asks.
mod common;
use common::*;
use serde_json::json;

#[test]
fn first_answer_wins_second_is_told_who() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("alice", "");
    let mut b = relay.device("bob", "");
    let session = open_session(&mut a);
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = a.request("session/prompt", prompt_params(&session, "/ask"));
    let ask = a.recv_until("ask", |v| v["method"] == "session/request_permission");
    let ask_b = b.recv_until("ask", |v| v["method"] == "session/request_permission");
    assert_eq!(ask["id"], ask_b["id"]);
    let ask_id = ask["id"].clone();
    assert!(
        ask["params"]["options"]
            .as_array()
            .is_some_and(|o| o.len() == 2)
    );

    b.send(&json!({"jsonrpc":"2.0","id":ask_id,"result":{"outcome":{"outcome":"selected","optionId":"reject"}}}));
    let resolved_b = b.recv_until("ask_resolved", |v| v["method"] == "_relay/ask_resolved");
    assert_eq!(resolved_b["params"]["by"], "bob");
    assert_eq!(resolved_b["params"]["id"], ask_id);
    assert_eq!(resolved_b["params"]["outcome"]["optionId"], "reject");
    let resolved_a = a.recv_until("ask_resolved", |v| v["method"] == "_relay/ask_resolved");
    assert_eq!(resolved_a["rseq"], resolved_b["rseq"]);

    a.send(&json!({"jsonrpc":"2.0","id":ask_id,"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    let err = a.recv_until("late-answer error", |v| {
        v["id"] == ask_id && v.get("error").is_some()
    });
    assert!(
        err["error"]["message"].as_str().unwrap().contains("bob"),
        "{err}"
    );

    // The agent got bob's answer, not alice's.
    a.recv_until("outcome chunk", |v| chunk_contains(v, "permission: reject"));
    let done = a.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn");
    assert!(
        !a.seen
            .iter()
            .any(|v| chunk_contains(v, "permission: allow"))
    );
}

#[test]
fn cancel_settles_open_asks_as_cancelled() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&session, "/ask"));
    let ask = a.recv_until("ask", |v| v["method"] == "session/request_permission");
    a.send(&json!({"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":session}}));
    let resolved = a.recv_until("ask_resolved", |v| v["method"] == "_relay/ask_resolved");
    assert_eq!(resolved["params"]["id"], ask["id"]);
    assert_eq!(resolved["params"]["outcome"]["outcome"], "cancelled");
    let done = a.response(&id);
    assert_eq!(done["result"]["stopReason"], "cancelled", "{done}");
}

#[test]
fn auto_approve_answers_with_the_allow_option() {
    let relay = Relay::start(&["--auto-approve"]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&session, "/ask"));
    let resolved = a.recv_until("ask_resolved", |v| v["method"] == "_relay/ask_resolved");
    assert_eq!(resolved["params"]["by"], "auto-approve");
    a.recv_until("outcome chunk", |v| chunk_contains(v, "permission: allow"));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
}
