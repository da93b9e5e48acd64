//! Bad input gets a JSON-RPC error, a second prompt while busy gets -32011, and
//! the relay keeps serving.
mod common;
use common::*;
use serde_json::json;

#[test]
fn busy_and_malformed_input() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("alice", "");
    let mut b = relay.device("bob", "");
    let session = open_session(&mut a);

    let first = a.request(
        "session/prompt",
        prompt_params(&session, "/sleep 1500\nslow"),
    );
    a.recv_until("turn started", |v| {
        v["params"]["update"]["sessionUpdate"] == "user_message_chunk"
    });
    let second = b.request("session/prompt", prompt_params(&session, "again"));
    let busy = b.response(&second);
    assert_eq!(busy["error"]["code"], -32011, "{busy}");
    assert!(
        busy["error"]["message"].as_str().unwrap().contains("alice"),
        "{busy}"
    );

    b.send_text("{not json");
    let parse = b.recv_until("parse error", |v| v.get("error").is_some());
    assert_eq!(parse["error"]["code"], -32700);
    assert_eq!(parse["id"], serde_json::Value::Null);

    b.send_text("[1,2]");
    assert_eq!(
        b.recv_until("invalid", |v| v.get("error").is_some())["error"]["code"],
        -32600
    );
    b.send_text(r#"{"jsonrpc":"2.0","id":"bob:x","method":"no/such"}"#);
    assert_eq!(b.response(&json!("bob:x"))["error"]["code"], -32601);
    let bad = b.request(
        "session/prompt",
        json!({"sessionId": session, "prompt": "not an array"}),
    );
    assert_eq!(b.response(&bad)["error"]["code"], -32602);
    let unknown = b.request("session/prompt", prompt_params("no-such-session", "hi"));
    assert_eq!(b.response(&unknown)["error"]["code"], -32602);
    // A response to an id the relay never issued is ignored (logged).
    b.send_text(r#"{"jsonrpc":"2.0","id":"perm:nope:1","result":{}}"#);
    b.send_text(r#"{"jsonrpc":"2.0","id":42,"result":{}}"#);

    assert_eq!(a.response(&first)["result"]["stopReason"], "end_turn");
    // Still serving: a new turn works, and several lines in one message are each handled.
    let text = format!(
        "{}\n{}\n",
        json!({"jsonrpc":"2.0","id":"bob:l1","method":"session/list","params":{}}),
        json!({"jsonrpc":"2.0","id":"bob:p1","method":"session/prompt","params":prompt_params(&session, "/chunks 1\nok")})
    );
    b.send_text(&text);
    let list = b.response(&json!("bob:l1"));
    assert!(
        list["result"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["sessionId"] == session.as_str())
    );
    assert_eq!(
        b.response(&json!("bob:p1"))["result"]["stopReason"],
        "end_turn"
    );
    relay.wait_log("never issued");
}
