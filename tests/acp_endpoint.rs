//! `/acp`: plain ACP over WebSocket. A stock ACP client sees the relay as the
//! agent: no welcome, no rseq, no relay extensions; `session/load` replays the
//! history as `session/update`s before it answers.
mod common;
use common::*;
use serde_json::{Value, json};

fn acp_client(relay: &Relay) -> (Device, String) {
    let req = relay.ws_request("/acp");
    let stream = std::net::TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let (ws, resp) = tungstenite::client::client(req, stream)
        .map_err(|e| format!("{e}"))
        .unwrap();
    let conn = resp
        .headers()
        .get("acp-connection-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("Acp-Connection-Id header");
    (Device::from_ws(ws, "acp"), conn)
}

fn assert_plain(frames: &[Value]) {
    for f in frames {
        assert!(f.get("rseq").is_none(), "no rseq on /acp: {f}");
        assert!(f.get("type").is_none(), "no welcome on /acp: {f}");
        assert!(
            !f["method"].as_str().unwrap_or("").starts_with("_relay/"),
            "no relay extensions: {f}"
        );
    }
}

#[test]
fn stock_client_prompts_and_resumes_with_session_load() {
    let relay = Relay::start(&[]);
    std::fs::write(relay.workspace.join("notes.txt"), "hello notes\n").unwrap();
    let (mut c, conn) = acp_client(&relay);
    assert!(!conn.is_empty());
    let id = c.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    let init = c.response(&id);
    assert_eq!(init["result"]["protocolVersion"], 1);
    assert_eq!(init["result"]["agentCapabilities"]["loadSession"], true);
    let id = c.request("session/new", json!({"cwd": "/", "mcpServers": []}));
    let sid = c.response(&id)["result"]["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();

    let turn = c.request(
        "session/prompt",
        prompt_params(&sid, "/chunks 3\n/ask\nplain client"),
    );
    let ask = c.recv_until("permission request", |v| {
        v["method"] == "session/request_permission"
    });
    c.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    let done = c.response(&turn);
    assert_eq!(done["result"]["stopReason"], "end_turn");
    let mut live = c.seen.clone();
    live.push(done.clone());
    live.push(ask);
    assert_plain(&live);
    assert!(agent_text(&live).contains("plain client"));
    assert!(agent_text(&live).contains("permission: allow"));
    assert!(
        !live
            .iter()
            .any(|v| v["params"]["update"]["sessionUpdate"] == "user_message_chunk"),
        "its own prompt is not echoed back"
    );
    // A /ws device watching the same session sees the relay view of it.
    c.close();

    let (mut c, conn2) = acp_client(&relay);
    assert_ne!(conn, conn2);
    let id = c.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    c.response(&id);
    let load = c.request(
        "session/load",
        json!({"sessionId": sid, "cwd": "/", "mcpServers": []}),
    );
    let answer = c.response(&load);
    assert!(answer.get("result").is_some(), "{answer}");
    let history = std::mem::take(&mut c.seen);
    assert_plain(&history);
    assert!(
        history.iter().all(|v| v["method"] == "session/update"),
        "history before the answer is session/update only: {history:?}"
    );
    assert!(
        history
            .iter()
            .any(|v| v["params"]["update"]["sessionUpdate"] == "user_message_chunk"),
        "the user's prompt is part of the history"
    );
    assert!(agent_text(&history).contains("plain client"));

    // And it can go on prompting the same session.
    let turn = c.request("session/prompt", prompt_params(&sid, "/chunks 1\nagain"));
    assert_eq!(c.response(&turn)["result"]["stopReason"], "end_turn");

    // session/resume attaches without history.
    let (mut r, _) = acp_client(&relay);
    let id = r.request(
        "session/resume",
        json!({"sessionId": sid, "cwd": "/", "mcpServers": []}),
    );
    assert!(r.response(&id).get("result").is_some());
    assert!(r.seen.is_empty(), "no history on resume: {:?}", r.seen);
}

#[test]
fn one_plain_connection_drives_two_sessions() {
    let relay = Relay::start(&[]);
    let (mut c, _) = acp_client(&relay);
    let id = c.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    c.response(&id);
    let id = c.request("session/new", json!({"cwd": "/", "mcpServers": []}));
    let s1 = c.response(&id)["result"]["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = c.request("session/new", json!({"cwd": "/", "mcpServers": []}));
    let s2 = c.response(&id)["result"]["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(s1, s2);
    let t1 = c.request(
        "session/prompt",
        prompt_params(&s1, "/chunks 2\n/sleep 200\nfirst"),
    );
    let t2 = c.request("session/prompt", prompt_params(&s2, "/chunks 2\nsecond"));
    assert_eq!(c.response(&t2)["result"]["stopReason"], "end_turn");
    assert_eq!(c.response(&t1)["result"]["stopReason"], "end_turn");
    let text = |s: &str| {
        agent_text(
            &c.seen
                .iter()
                .filter(|v| v["params"]["sessionId"] == s)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert!(text(&s1).contains("first") && !text(&s1).contains("second"));
    assert!(text(&s2).contains("second"));
}
