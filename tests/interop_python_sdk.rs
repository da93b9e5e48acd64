//! An ACP agent written on the official Python SDK (PyPI
//! `agent-client-protocol`, installed by scripts/setup-interop.sh) runs behind
//! the relay: a /ws device prompts it, sees the streamed updates, answers its
//! permission ask, and the agent's `fs/read_text_file` is answered by the
//! relay from the workspace. Skips with a message when the SDK is missing.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use bridge::*;
use serde_json::json;

#[test]
fn python_sdk_agent_streams_and_asks_through_the_relay() {
    let py = match sdk_python() {
        Ok(p) => p,
        Err(why) => return skip("python_sdk_agent_streams_and_asks_through_the_relay", &why),
    };
    let cmd = agent_cmd(&py.display().to_string(), "sdk_agent.py", "");
    let relay = Relay::start(&["--agent", &cmd]);
    std::fs::write(
        relay.workspace.join("notes.txt"),
        "notes from the workspace\n",
    )
    .unwrap();

    let mut phone = relay.device("phone", "");
    let session = open_session(&mut phone);
    assert!(session.starts_with("py-") || !session.is_empty());
    let mut laptop = relay.device("laptop", &format!("session_id={session}"));

    let turn = phone.request("session/prompt", prompt_params(&session, "hello sdk"));
    let ask = phone.recv_until("permission ask", |v| {
        v["method"] == "session/request_permission"
    });
    assert_eq!(ask["params"]["options"][0]["optionId"], "allow", "{ask}");
    // The laptop sees the same ask; the phone answers it.
    laptop.recv_until("the same ask", |v| v["id"] == ask["id"]);
    phone.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    let done = phone.response(&turn);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");

    let text = agent_text(&phone.seen);
    for i in 1..=3 {
        assert!(
            text.contains(&format!("sdk chunk {i} of 3 (hello sdk)")),
            "{text}"
        );
    }
    assert!(text.contains("sdk permission: allow"), "{text}");
    assert!(
        text.contains("sdk read: notes from the workspace"),
        "the relay answers the SDK agent's fs/read_text_file: {text}"
    );
    assert!(
        phone
            .seen
            .iter()
            .any(|v| v["params"]["update"]["sessionUpdate"] == "tool_call"),
        "tool call streamed"
    );
    // Every streamed frame is stamped for replay; the laptop got them too.
    laptop.recv_until("the laptop sees the read", |v| {
        chunk_contains(v, "sdk read: notes")
    });
    laptop.recv_until("ask_resolved", |v| v["method"] == "_relay/ask_resolved");

    // A second turn, rejected this time, on the same SDK process.
    let turn = phone.request("session/prompt", prompt_params(&session, "again"));
    let ask = phone.recv_until("second ask", |v| {
        v["method"] == "session/request_permission"
    });
    phone.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"reject"}}}));
    phone.recv_until("reject outcome", |v| {
        chunk_contains(v, "sdk permission: reject")
    });
    assert_eq!(phone.response(&turn)["result"]["stopReason"], "end_turn");
}
