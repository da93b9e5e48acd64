//! What an agent says reaches log lines escaped and bounded: an id, a method
//! or a session id with a newline never forges a line, and a huge one is cut.
mod common;
use common::*;
use serde_json::json;

/// Long enough to be cut: past the logger's bound for a peer string.
const LONG_ID: usize = 3000;

#[test]
fn agent_ids_methods_and_session_ids_are_escaped_and_bounded_in_the_log() {
    let dir = TempDir::new("hostile-agent");
    let script = dir.path().join("agent.sh");
    let long = "A".repeat(LONG_ID);
    // Answers initialize, then says hostile things and stays up.
    std::fs::write(
        &script,
        format!(
            r#"read -r line
printf '%s\n' '{{"jsonrpc":"2.0","id":1,"result":{{"protocolVersion":1,"agentCapabilities":{{}}}}}}'
printf '%s\n' '{{"jsonrpc":"2.0","id":"{long}","result":{{}}}}'
printf '%s\n' '{{"jsonrpc":"2.0","id":"x\nFORGED-ID line","result":{{}}}}'
printf '%s\n' '{{"jsonrpc":"2.0","id":7,"method":"evil\nFORGED-METHOD line","params":{{}}}}'
i=0
while [ $i -lt 300 ]; do
  printf '%s\n' '{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":"s\nFORGED-SID line","update":{{}}}}}}'
  i=$((i+1))
done
printf '%s\n' '{{"jsonrpc":"2.0","id":8,"method":"done/marker","params":{{}}}}'
exec cat >/dev/null
"#
        ),
    )
    .unwrap();
    let agent = format!("sh {}", script.display());
    let relay = Relay::start(&["--agent", &agent]);
    let mut d = relay.device("d", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    d.response(&id);
    relay.wait_log("done/marker");
    let log = relay.log();
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line:\n{log}");
        assert!(!line.contains(&long), "an unbounded id:\n{line}");
    }
    // Quoted as peer strings, the newline escaped once by the line: an
    // unquoted value or a raw newline fails these.
    assert!(log.contains("\"x\\nFORGED-ID line\""), "{log}");
    assert!(log.contains("\"evil\\nFORGED-METHOD line\""), "{log}");
    assert!(log.contains("\"s\\nFORGED-SID line\""), "{log}");
    assert!(
        log.contains(&format!("({LONG_ID} chars)")),
        "cut with its length:\n{log}"
    );
}
