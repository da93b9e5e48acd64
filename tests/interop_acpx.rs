//! A stdio ACP client from a package registry (npm `acpx`, the 0.1.x line
//! that runs on Node 20) uses the relay as its agent through
//! `acp-relay connect ws://…/acp --token T`: the demo agent's `fs/*` and
//! `terminal/*` requests are answered by the relay inside its workspace, and
//! acpx grants the permission ask (`--approve-all`). Skips with a message
//! when acpx is not installed.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use bridge::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn acpx_drives_the_relay_through_connect() {
    let dir = match node_modules("acpx") {
        Ok(d) => d,
        Err(why) => return skip("acpx_drives_the_relay_through_connect", &why),
    };
    let relay = Relay::start(&[]);
    std::fs::write(relay.workspace.join("notes.txt"), "acpx notes line\n").unwrap();
    let home = TempDir::new("acpx-home");
    let agent = format!(
        "\"{}\" connect ws://127.0.0.1:{}/acp --token {}",
        bin(),
        relay.port,
        relay.token
    );
    let prompt = "/chunks 1\n/read notes.txt\n/write from-acpx.txt written through acpx\n/run cat from-acpx.txt\n/ask";
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("node_modules/acpx/dist/cli.js"))
        .args(["--agent", &agent])
        .args(["--approve-all", "--format", "json", "--timeout", "25"])
        .arg("--cwd")
        .arg(&relay.workspace)
        .args(["exec", prompt])
        .current_dir(&relay.workspace)
        // acpx keeps its state under $HOME/.acpx.
        .env("HOME", home.path());
    let ran = run_with_deadline(cmd, Duration::from_secs(30));
    let ctx = || {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}\nrelay log:\n{}",
            ran.status,
            ran.stdout,
            ran.stderr,
            relay.log()
        )
    };
    assert_eq!(ran.status, Some(0), "{}", ctx());
    let frames: Vec<Value> = ran
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let text = agent_text(&frames);
    assert!(
        text.contains("read ok: 16 bytes: acpx notes line"),
        "{}",
        ctx()
    );
    assert!(text.contains("write ok"), "{}", ctx());
    assert!(
        text.contains("run exit 0: written through acpx"),
        "{}",
        ctx()
    );
    assert!(text.contains("permission: allow"), "{}", ctx());
    assert_eq!(
        std::fs::read_to_string(relay.workspace.join("from-acpx.txt")).unwrap(),
        "written through acpx"
    );
    // acpx answered the ask itself (its --approve-all), through the bridge.
    assert!(
        frames
            .iter()
            .any(|v| v["method"] == "session/request_permission"),
        "{}",
        ctx()
    );
    assert!(
        frames
            .iter()
            .any(|v| v["result"]["stopReason"] == "end_turn"),
        "{}",
        ctx()
    );
}
