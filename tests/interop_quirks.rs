//! Agent quirks the relay tolerates, one scripted agent each
//! (tests/interop/quirk_agent.py MODE, plain Python, no SDK), driven from /ws
//! devices (and the bridge, for the large message).
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use bridge::*;
use serde_json::{Value, json};

fn initialize(d: &mut Device) -> Value {
    d.recv_until("relay_welcome", |v| v["type"] == "relay_welcome");
    let id = d.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{}}),
    );
    d.response(&id)
}

fn new_session(d: &mut Device) -> Value {
    let id = d.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    d.response(&id)
}

fn prompt_ok(d: &mut Device, session: &str, text: &str) -> Value {
    let id = d.request("session/prompt", prompt_params(session, text));
    let done = d.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    done
}

#[test]
fn set_model_and_unknown_fields_pass_through() {
    let Some(relay) = quirk_relay(
        "set_model_and_unknown_fields_pass_through",
        "set_model",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let init = initialize(&mut d);
    assert_eq!(
        init["result"]["agentCapabilities"]["vendorCapability"]["fancy"], true,
        "unknown agent capabilities reach the device: {init}"
    );
    let created = new_session(&mut d);
    let sid = created["result"]["sessionId"].as_str().unwrap().to_owned();

    let id = d.request(
        "session/set_model",
        json!({"sessionId": sid, "modelId": "fast", "extraField": {"x": 1}}),
    );
    let set = d.response(&id);
    assert_eq!(set["result"]["echo"]["modelId"], "fast", "{set}");
    assert_eq!(
        set["result"]["echo"]["extraField"],
        json!({"x": 1}),
        "{set}"
    );

    let done = prompt_ok(&mut d, &sid, "hi");
    assert_eq!(done["result"]["vendorResultField"], "kept", "{done}");
    assert_eq!(done["result"]["usage"]["outputTokens"], 2, "{done}");
    let c = d.recv_until("chunk", |v| chunk_contains(v, "(model fast)"));
    assert_eq!(
        c["params"]["update"]["vendorUpdateField"],
        json!([1, 2, 3]),
        "{c}"
    );
    let vendor = d.recv_until("vendor update", |v| {
        v["params"]["update"]["sessionUpdate"] == "vendor_thing_update"
    });
    assert_eq!(vendor["params"]["update"]["whatever"]["deep"], true);
}

#[test]
fn updates_after_the_prompt_answer_are_delivered_and_kept() {
    let Some(relay) = quirk_relay(
        "updates_after_the_prompt_answer_are_delivered_and_kept",
        "late_updates",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let sid = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&sid, "one"));
    let done = d.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn");
    let late = d.recv_until("the last late update", |v| {
        chunk_contains(v, "late update 3 for one")
    });
    assert!(late["rseq"].as_u64().unwrap() > 0);
    // They came after the answer, and in order.
    let pos = |needle: &str| d.raw.iter().position(|t| t.contains(needle)).unwrap();
    assert!(pos("late update 1") > pos("\"stopReason\""));
    assert!(pos("late update 1") < pos("late update 2"));

    // The next turn is not refused as busy, and a late viewer replays them.
    prompt_ok(&mut d, &sid, "two");
    let mut v = relay.device("viewer", &format!("session_id={sid}&last_seq=0"));
    v.recv_until("replayed late update", |v| {
        chunk_contains(v, "late update 2 for one")
    });
}

#[test]
fn load_advertised_but_unsupported_falls_back_to_a_fresh_agent_session() {
    let Some(relay) = quirk_relay(
        "load_advertised_but_unsupported_falls_back_to_a_fresh_agent_session",
        "load_unsupported",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let sid = open_session(&mut d);
    prompt_ok(&mut d, &sid, "first words");

    // The agent dies; the next prompt starts a new one, whose session/load fails.
    let id = d.request("session/prompt", prompt_params(&sid, "exit"));
    let crashed = d.response(&id);
    assert!(crashed.get("error").is_some(), "{crashed}");
    d.seen.clear();
    prompt_ok(&mut d, &sid, "second words");
    let c = d.recv_until("answer from the new agent session", |v| {
        chunk_contains(v, "second words")
    });
    assert_eq!(
        c["params"]["sessionId"], sid,
        "the device keeps the relay's session id: {c}"
    );
    assert!(
        c["params"]["update"]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("turn 1 of session"),
        "a fresh agent session: {c}"
    );
    // The stored transcript still holds the first turn for a late viewer.
    let mut v = relay.device("viewer", &format!("session_id={sid}&last_seq=0"));
    v.recv_until("first turn in the replay", |v| {
        chunk_contains(v, "first words")
    });
}

#[test]
fn load_unsupported_after_a_relay_restart_resumes_from_the_store() {
    let Some(mut relay) = quirk_relay(
        "load_unsupported_after_a_relay_restart_resumes_from_the_store",
        "load_unsupported",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let sid = open_session(&mut d);
    prompt_ok(&mut d, &sid, "before restart");
    d.close();
    let port = relay.port;
    relay.terminate();
    relay.launch(&format!("127.0.0.1:{port}"));

    let mut d = relay.device("phone", "");
    initialize(&mut d);
    let id = d.request(
        "session/load",
        json!({"sessionId": sid, "cwd": "/", "mcpServers": []}),
    );
    let loaded = d.response(&id);
    assert!(loaded.get("result").is_some(), "{loaded}");
    prompt_ok(&mut d, &sid, "after restart");
    d.recv_until("the new turn", |v| chunk_contains(v, "after restart"));
    let mut v = relay.device("viewer", &format!("session_id={sid}&last_seq=0"));
    v.recv_until("the stored turn", |v| chunk_contains(v, "before restart"));
}

#[test]
fn non_json_stdout_lines_are_skipped() {
    let Some(relay) = quirk_relay("non_json_stdout_lines_are_skipped", "stdout_logs", &[]) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let sid = open_session(&mut d);
    prompt_ok(&mut d, &sid, "through the noise");
    d.recv_until("chunk", |v| chunk_contains(v, "through the noise"));
    prompt_ok(&mut d, &sid, "again");
    // They are the agent's log: heard as _relay/agent/log_line, never as session frames.
    let frames: Vec<Value> = d
        .raw
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    assert!(
        frames
            .iter()
            .filter(|f| f.to_string().contains("not json"))
            .all(|f| f["method"] == "_relay/agent/log_line" && f.get("rseq").is_none()),
        "log lines reach a device only as its agent log"
    );
}

#[test]
fn a_five_mib_message_reaches_devices_and_the_bridge() {
    let Some(relay) = quirk_relay(
        "a_five_mib_message_reaches_devices_and_the_bridge",
        "huge",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let sid = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&sid, "big"));
    let big = d.recv_until("the big chunk", |v| chunk_contains(v, "END-OF-HUGE"));
    let text = big["params"]["update"]["content"]["text"].as_str().unwrap();
    assert!(text.len() > 5 << 20, "{}", text.len());
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");

    // The same through /acp and `acp-relay connect` as one stdout line.
    let mut b = Bridge::start(&relay);
    let bsid = bridge_session(&mut b);
    let id = b.request("session/prompt", prompt_params(&bsid, "big again"));
    let big = b.recv_until("the big chunk", |v| chunk_contains(v, "END-OF-HUGE"));
    assert!(
        big["params"]["update"]["content"]["text"]
            .as_str()
            .unwrap()
            .len()
            > 5 << 20
    );
    assert_eq!(b.response(&id)["result"]["stopReason"], "end_turn");
    assert_eq!(b.finish(), Some(0));
}

#[test]
fn an_agent_that_needs_authenticate_is_driven_by_the_device() {
    let Some(relay) = quirk_relay(
        "an_agent_that_needs_authenticate_is_driven_by_the_device",
        "auth",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    let init = initialize(&mut d);
    assert_eq!(
        init["result"]["authMethods"][0]["id"], "test-token",
        "the device sees the agent's authMethods: {init}"
    );
    let refused = new_session(&mut d);
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Authentication required"),
        "the agent's own reason: {refused}"
    );
    assert!(message.contains("authenticate"), "{refused}");
    assert_eq!(
        refused["error"]["data"]["authMethods"][0], "test-token",
        "the agent's error data: {refused}"
    );
    let id = d.request("authenticate", json!({"methodId": "test-token"}));
    let auth = d.response(&id);
    assert!(auth.get("result").is_some(), "{auth}");
    let created = new_session(&mut d);
    let sid = created["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new after authenticate: {created}"))
        .to_owned();
    prompt_ok(&mut d, &sid, "authed");
    d.recv_until("chunk", |v| chunk_contains(v, "auth: authed"));
}

/// Agents on `session/set_model` list their models in session/new's answer
/// (`models`), next to other fields ACP does not define: a device can only
/// offer the model switch if the relay's answer carries them.
#[test]
fn session_new_answer_keeps_the_agents_fields() {
    let Some(relay) = quirk_relay(
        "session_new_answer_keeps_the_agents_fields",
        "set_model",
        &[],
    ) else {
        return;
    };
    let mut d = relay.device("phone", "");
    initialize(&mut d);
    let created = new_session(&mut d);
    assert!(created["result"]["sessionId"].is_string(), "{created}");
    assert_eq!(
        created["result"]["models"]["currentModelId"], "default",
        "session/new's models reach the device: {created}"
    );
    assert_eq!(
        created["result"]["models"]["availableModels"][1]["modelId"], "fast",
        "{created}"
    );
    assert_eq!(created["result"]["vendorSessionField"]["a"], 1, "{created}");
}
