//! The controller lease: off, everyone drives; on, the first driver holds it,
//! viewers are refused with -32010 and change nothing, `_relay/take_control`
//! moves it and everyone hears `_relay/control`.
mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn lease_off_everyone_drives() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("a", "");
    let mut b = relay.device("b", "");
    let s = open_session(&mut a);
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = a.request("session/prompt", prompt_params(&s, "/chunks 1\nfrom a"));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    let id = b.request("session/prompt", prompt_params(&s, "/chunks 1\nfrom b"));
    assert_eq!(b.response(&id)["result"]["stopReason"], "end_turn");
}

#[test]
fn lease_on_viewer_is_refused_until_it_takes_control() {
    let relay = Relay::start(&["--lease"]);
    std::fs::write(relay.workspace.join("f.txt"), "original").unwrap();
    let mut a = relay.device("a", "");
    let w = a.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(w["lease"], true);
    assert_eq!(w["holder"], serde_json::Value::Null);
    let mut b = relay.device("b", "");
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");

    // a's first privileged call claims the free lease; both hear it.
    let id = a.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    let s = a.response(&id)["result"]["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ctl = b.recv_until("control", |v| v["method"] == "_relay/control");
    assert_eq!(ctl["params"]["holder"], "a");
    let epoch1 = ctl["params"]["controlEpoch"].as_u64().unwrap();

    // a waits on a permission ask; b, a viewer, can do none of the driving.
    let turn = a.request("session/prompt", prompt_params(&s, "/ask"));
    let ask = b.recv_until("ask", |v| v["method"] == "session/request_permission");
    for (method, params) in [
        ("session/prompt", prompt_params(&s, "viewer prompt")),
        ("session/new", json!({"cwd":"/","mcpServers":[]})),
        (
            "_relay/apply_edit",
            json!({"path":"f.txt","content":"changed by viewer"}),
        ),
        ("session/set_mode", json!({"sessionId": s, "modeId": "x"})),
    ] {
        let id = b.request(method, params);
        let r = b.response(&id);
        assert_eq!(r["error"]["code"], -32010, "{method}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("take_control"),
            "{r}"
        );
    }
    b.send(&json!({"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId": s}}));
    b.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    let refused = b.recv_until("refused answer", |v| {
        v["id"] == ask["id"] && v.get("error").is_some()
    });
    assert_eq!(refused["error"]["code"], -32010);
    // Read-only calls stay open to viewers.
    let id = b.request("session/list", json!({}));
    assert!(b.response(&id).get("result").is_some());
    // Nothing changed: the file, the ask is still open, the turn still runs.
    assert_eq!(
        std::fs::read_to_string(relay.workspace.join("f.txt")).unwrap(),
        "original"
    );
    assert!(
        a.drain(Duration::from_millis(300))
            .iter()
            .all(|v| v["method"] != "_relay/ask_resolved" && v["id"] != turn)
    );

    // b takes control: epoch bumps, both hear it, and a's stale commands are refused.
    let id = b.request("_relay/take_control", json!({}));
    let r = b.response(&id);
    assert_eq!(r["result"]["holder"], "b");
    let ctl = a.recv_until("control to b", |v| {
        v["method"] == "_relay/control" && v["params"]["holder"] == "b"
    });
    assert_eq!(ctl["params"]["holder"], "b");
    assert_eq!(ctl["params"]["controlEpoch"].as_u64().unwrap(), epoch1 + 1);
    a.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"reject"}}}));
    assert_eq!(
        a.recv_until("refused", |v| v["id"] == ask["id"]
            && v.get("error").is_some())["error"]["code"],
        -32010
    );
    b.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    assert_eq!(a.response(&turn)["result"]["stopReason"], "end_turn");
    assert!(
        a.seen
            .iter()
            .any(|v| chunk_contains(v, "permission: allow"))
    );

    // The holder keeps control across its own reconnect.
    b.close();
    let mut b = relay.device("b", &format!("session_id={s}"));
    let w = b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert_eq!(w["holder"], "b");
    let id = b.request("session/prompt", prompt_params(&s, "/chunks 1\nstill mine"));
    assert_eq!(b.response(&id)["result"]["stopReason"], "end_turn");
}
