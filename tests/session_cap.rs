//! `--max-sessions` end to end with two workspaces and an agent per session:
//! the default session no device opened holds no slot, its idle agent is
//! stopped when a session in the other workspace fills the cap, and the
//! phone's own session does not protect it from the phone's next open.
mod common;
use common::*;
use serde_json::json;
use std::path::Path;

/// `session/new` in `cwd`, then one turn in it; the session id.
fn open_and_prompt(d: &mut Device, cwd: &Path) -> String {
    let id = d.request("session/new", json!({"cwd": cwd, "mcpServers": []}));
    let r = d.response(&id);
    let sid = r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new in {}: {r}", cwd.display()))
        .to_owned();
    let id = d.request("session/prompt", prompt_params(&sid, "/chunks 1\nhi"));
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
    sid
}

#[test]
fn a_second_workspace_opens_under_max_sessions_one() {
    let dir = TempDir::new("cap-web");
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    let web = web.canonicalize().unwrap();
    let relay = Relay::start(&[
        "--workspace",
        &format!("web={}", web.display()),
        "--max-sessions",
        "1",
        "--agent-per-session",
    ]);
    let mut d = relay.device("phone", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    assert!(d.response(&id)["result"].is_object());
    // The initialize started the default session's agent.
    let first = agent_children(relay.pid());
    assert_eq!(first.len(), 1, "{first:?}");

    let w = open_and_prompt(&mut d, &web);
    wait_until("the default's idle agent to stop", WAIT, || {
        !agent_children(relay.pid()).contains(&first[0])
    });
    let second = agent_children(relay.pid());
    assert_eq!(second.len(), 1, "one agent for one session: {second:?}");

    // Back in the default workspace: the phone's web session makes room.
    let workspace = relay.workspace.canonicalize().unwrap();
    let s = open_and_prompt(&mut d, &workspace);
    assert_ne!(s, w);
    wait_until("the web session's agent to stop", WAIT, || {
        !agent_children(relay.pid()).contains(&second[0])
    });
    let third = agent_children(relay.pid());
    assert_eq!(third.len(), 1, "one agent for one session: {third:?}");
    relay.wait_log("evicting session");
    // The evicted session stays listed (stored) and loads again.
    let id = d.request("session/list", json!({}));
    let list = d.response(&id);
    let rows = list["result"]["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["sessionId"] == w.as_str() && r["_meta"]["relay"]["live"] == false),
        "{list}"
    );
}
