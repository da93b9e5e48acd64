//! The official TypeScript SDK's WebSocket client (npm
//! `@agentclientprotocol/sdk`, `experimental/ws-client`) drives `/acp` as a
//! stock ACP client: initialize → session/new → prompt (permission answered)
//! against the demo agent, disconnect, reconnect, `session/load` — and the
//! session's history arrives as `session/update`s before the load's answer.
//! Skips with a message when the npm peers are not installed.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use bridge::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn sdk_ws_client_prompts_reconnects_and_loads_history() {
    let dir = match node_modules("@agentclientprotocol/sdk").and(node_modules("ws")) {
        Ok(d) => d,
        Err(why) => return skip("sdk_ws_client_prompts_reconnects_and_loads_history", &why),
    };
    let relay = Relay::start(&[]);
    let mut cmd = Command::new("node");
    cmd.arg(fixture("ws_client.mjs"))
        .env("INTEROP_NODE_DIR", &dir)
        .env("ACP_URL", format!("ws://127.0.0.1:{}/acp", relay.port))
        .env("ACP_TOKEN", &relay.token);
    let ran = run_with_deadline(cmd, Duration::from_secs(30));
    let last = ran.stdout.lines().last().unwrap_or("");
    let r: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "no JSON result ({e}); status {:?}\nstdout:\n{}\nstderr:\n{}\nrelay log:\n{}",
            ran.status,
            ran.stdout,
            ran.stderr,
            relay.log()
        )
    });
    assert_eq!(r["ok"], true, "{r}\nstderr:\n{}", ran.stderr);
    assert_eq!(ran.status, Some(0));
    assert_eq!(r["loadSession"], true, "{r}");
    assert_eq!(r["firstStopReason"], "end_turn", "{r}");
    assert_eq!(r["permissionAsks"], 1, "{r}");
    let live = r["liveText"].as_str().unwrap();
    assert!(live.contains("hello from the node sdk"), "{r}");
    assert!(live.contains("permission: allow"), "{r}");

    // The history came before the load's answer, as session/updates of that session.
    assert!(r["historyCount"].as_u64().unwrap() >= 3, "{r}");
    let kinds: Vec<&str> = r["historyKinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    // The session's stream starts with the agent's command list (sent
    // before its session/new answer), then the prompt.
    let first = kinds
        .iter()
        .find(|k| **k != "available_commands_update")
        .copied();
    assert_eq!(first, Some("user_message_chunk"), "the prompt first: {r}");
    assert!(kinds.contains(&"agent_message_chunk"), "{r}");
    assert!(kinds.contains(&"tool_call"), "{r}");
    assert!(!kinds.contains(&"ask"), "no asks in the history: {r}");
    assert_eq!(r["historySessions"], serde_json::json!([r["sessionId"]]));
    let history = r["historyText"].as_str().unwrap();
    assert!(history.contains("hello from the node sdk"), "{r}");
    assert!(history.contains("permission: allow"), "{r}");

    // And the loaded session goes on.
    assert_eq!(r["secondStopReason"], "end_turn", "{r}");
    assert!(
        r["afterText"].as_str().unwrap().contains("after the load"),
        "{r}"
    );
}
