//! The harness ends what a test started even when the test fails: a test that
//! panics while its relay runs an agent and a command leaves no process
//! behind. The failing test runs as a child process (this test binary, one
//! ignored test) so that its panic does not fail the suite.
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "ACP_RELAY_GUARD_CHILD";

#[test]
#[ignore = "run by a_panicking_test_leaves_no_process_behind"]
fn panicking_child() {
    let Some(marker) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let marker = marker.to_string_lossy().into_owned();
    let relay = Relay::start(&[]);
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    d.request(
        "session/prompt",
        prompt_params(&session, &format!("/run {marker}")),
    );
    wait_until("the command", WAIT, || {
        !running_with_cmdline(&marker).is_empty()
    });
    println!("relay {}", relay.pid());
    for p in relay.descendants() {
        println!("child {p}");
    }
    panic!("deliberately failing with a relay, an agent and a command running");
}

#[test]
fn a_panicking_test_leaves_no_process_behind() {
    // A duration no other test uses names the command.
    let marker = format!("sleep 50.{}", std::process::id());
    let exe = std::env::current_exe().expect("current test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "panicking_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = GroupGuard::spawn(cmd).expect("spawn the failing child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut pids = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(p) = line
            .strip_prefix("relay ")
            .or_else(|| line.strip_prefix("child "))
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            pids.push(p);
        }
    }
    let status = child.wait().expect("wait for the child");
    assert!(!status.success(), "the child test must fail");
    assert!(
        pids.len() >= 2,
        "the child printed its relay and agent: {pids:?}"
    );
    // The child has exited: whatever it started is gone now (the guard's
    // drop ran during the panic), not merely re-parented.
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| Proc::of_live(*p).is_some())
        .collect();
    assert!(alive.is_empty(), "left running after the panic: {alive:?}");
    let cmds = running_with_cmdline(&marker);
    assert!(
        cmds.is_empty(),
        "the agent's command outlived the panic: {cmds:?}"
    );
}
