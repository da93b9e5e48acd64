//! Log lines a person can act on and no peer can forge: hostile ids are
//! escaped and bounded, `--log-format json` writes one object per line, the
//! agent is logged by its program name, never its arguments.
mod common;
use common::*;
use serde_json::Value;

#[test]
fn hostile_ids_cannot_forge_lines_or_write_raw_bytes() {
    let relay = Relay::start(&[]);
    let long = "x".repeat(5000);
    let mut d = relay.device(
        "%0Aforged%20line",
        &format!("session_id=%00%ff%1b[31m&other={long}"),
    );
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    relay.wait_log("connected as");
    relay.wait_log("is not live or stored");
    let log = relay.log();
    assert!(
        !log.lines().any(|l| l.starts_with("forged")),
        "a forged line:\n{log}"
    );
    assert!(
        log.contains("\\nforged line"),
        "escaped form missing:\n{log}"
    );
    assert!(!log.contains('\0'), "raw NUL in the log");
    assert!(!log.contains('\x1b'), "raw escape in the log");
    assert!(log.contains("\\0"), "{log}");
    // Every line names its level first.
    for l in log.lines() {
        assert!(
            ["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"]
                .iter()
                .any(|p| l.starts_with(p)),
            "line without a level: {l:?}"
        );
    }
}

#[test]
fn json_log_lines_and_the_agent_by_its_program_name() {
    let relay = Relay::start(&[
        "--log-format",
        "json",
        "--agent",
        &format!(
            "{} demo-agent --log warn --state-dir /tmp/SECRET-ARG-42",
            bin()
        ),
    ]);
    let mut d = relay.device("line%0Abreak", "");
    let session = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&session, "/chunks 1\nhi"));
    d.response(&id);
    relay.wait_log("started `acp-relay`");
    let log = relay.log();
    assert!(
        !log.contains("SECRET-ARG-42"),
        "agent arguments logged:\n{log}"
    );
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["msg"]
            .as_str()
            .is_some_and(|m| m.contains("line\\nbreak"))),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .all(|v| v["level"].is_string() && v["target"].is_string())
    );
}
