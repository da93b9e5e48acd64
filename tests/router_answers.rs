//! Every request gets its answer, exactly: ids that cannot be echoed as sent
//! are refused, a prompt for a session the socket does not view is answered
//! on that socket, a cancel sent as a request is answered, and `/acp`
//! connections are held to `--max-sessions` like any other.
mod common;
use common::*;
use serde_json::{Value, json};

#[test]
fn an_id_that_cannot_be_echoed_exactly_is_refused() {
    let relay = Relay::start(&[]);
    let mut d = relay.device("a", "");
    open_session(&mut d);
    d.send_text(r#"{"jsonrpc":"2.0","id":1000000000000000000000000000000,"method":"session/list","params":{}}"#);
    let r = d.recv_until("an error", |v| v.get("error").is_some());
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert_eq!(r["id"], Value::Null, "{r}");
    // 2^100, and a fraction: neither comes back as its own text, so refused
    for id in ["1267650600228229401496703205376", "1.5"] {
        d.raw.clear();
        d.send_text(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"session/list","params":{{}}}}"#
        ));
        let r = d.recv_until("an error", |v| v.get("error").is_some());
        assert_eq!(r["error"]["code"], -32600, "{id}: {r}");
        assert_eq!(r["id"], Value::Null, "{id}: {r}");
    }
    d.send_text(r#"{"jsonrpc":"2.0","id":9007199254740993,"method":"session/list","params":{}}"#);
    d.recv_until("the list", |v| v["result"]["sessions"].is_array());
    assert!(
        d.raw.iter().any(|t| t.contains("\"id\":9007199254740993")),
        "a 64-bit id comes back digit for digit"
    );
}

#[test]
fn a_prompt_for_a_session_the_socket_does_not_view_is_answered_to_it() {
    let relay = Relay::start(&[]);
    let mut d = relay.device("a", "");
    let s1 = open_session(&mut d);
    let s2 = new_session(&mut d);
    assert_ne!(s1, s2);
    // d views s2 now; it prompts s1.
    let id = d.request("session/prompt", prompt_params(&s1, "/chunks 1"));
    let r = d.response(&id);
    assert_eq!(r["result"]["stopReason"], "end_turn", "{r}");
    assert!(
        r.get("rseq").is_none(),
        "not numbered in a stream it does not follow: {r}"
    );
}

#[test]
fn a_cancel_sent_as_a_request_is_answered() {
    let relay = Relay::start(&[]);
    let mut d = relay.device("a", "");
    let sid = open_session(&mut d);
    let id = d.request("session/cancel", json!({ "sessionId": sid }));
    let r = d.response(&id);
    assert_eq!(r["result"], json!({}), "{r}");
}

fn acp_client(relay: &Relay) -> Device {
    relay.acp("acp")
}

#[test]
fn acp_connections_are_held_to_max_sessions() {
    let relay = Relay::start(&["--max-sessions", "2", "--agent-per-session"]);
    let mut c = acp_client(&relay);
    let id = c.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    c.response(&id);
    for _ in 0..5 {
        let id = c.request("session/new", json!({"cwd": "/", "mcpServers": []}));
        let r = c.response(&id);
        assert!(r["result"]["sessionId"].is_string(), "{r}");
    }
    let (live, r) = live_sessions(&mut c);
    assert!(
        live <= 2,
        "{live} live sessions under --max-sessions 2: {r}"
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let agents = agent_children(relay.pid()).len();
        if agents <= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{agents} agent processes for 2 sessions"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
