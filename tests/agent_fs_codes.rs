//! The agent's `fs/read_text_file` errors carry ACP's codes: a missing file
//! is -32002, ACP's "Resource not found" (an agent that reads before it writes then
//! creates the file), while an escape from the workspace stays a refusal.
mod common;
use common::*;

#[test]
fn a_missing_file_is_resource_not_found() {
    let relay = Relay::start(&[]);
    std::fs::create_dir(relay.workspace.join("sub")).unwrap();
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    let script = "/chunks 1\n/read missing.txt\n/read sub/missing/deeper.txt\n/read ../outside.txt";
    let id = d.request("session/prompt", prompt_params(&session, script));
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
    let text = agent_text(&d.seen);
    assert_eq!(
        text.matches("read error -32002: resource not found")
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("read error -32602") || text.contains("read error -32000"),
        "an escape is refused, not 'not found': {text}"
    );
}
