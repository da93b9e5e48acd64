//! Agents die with the relay: an agent that ignores stdin EOF and SIGTERM is
//! gone once the relay is SIGKILLed, and the process it started (which no
//! death signal reaches) is ended by the next start on the same data dir.
mod common;
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// Kills the recorded processes on drop, so a failing test leaves nothing
/// (only those still running this test's programs: a pid may be reused).
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in &self.0 {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("86311") || c.contains("agent.sh")
            });
            if ours && running(*pid) {
                unsafe_kill(*pid, "KILL");
            }
        }
    }
}

/// Whether a process runs (a zombie counts as gone).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z")
}

fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + WAIT;
    while running(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_agent_that_ignores_eof_dies_with_the_relay_and_its_child_is_swept() {
    let dir = TempDir::new("orphans");
    let script = dir.path().join("agent.sh");
    // Ignores SIGTERM (and its child inherits that), never reads stdin, and
    // starts a child in its own group; each writes its pid for the test.
    std::fs::write(
        &script,
        format!(
            "trap '' TERM\nsleep 86311 &\necho $! > {d}/child.pid.tmp && mv {d}/child.pid.tmp {d}/child.pid\necho $$ > {d}/agent.pid.tmp && mv {d}/agent.pid.tmp {d}/agent.pid\nwait\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let agent = format!("sh {}", script.display());
    let mut relay = Relay::start(&["--agent", &agent]);
    // The default agent starts when first needed: an initialize (never answered).
    let mut d = relay.device("d", "");
    d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    let agent_pid = read_pid(&dir.path().join("agent.pid"));
    let child_pid = read_pid(&dir.path().join("child.pid"));
    let _leftovers = Leftovers(vec![agent_pid, child_pid]);
    assert!(running(agent_pid) && running(child_pid));

    relay.kill9();
    wait_gone(agent_pid, "the agent after the relay was SIGKILLed");
    assert!(
        running(child_pid),
        "the agent's child outlives it (no death signal reaches it)"
    );

    // The next start on the same data dir ends it.
    let _ = std::fs::remove_file(dir.path().join("agent.pid"));
    let _ = std::fs::remove_file(dir.path().join("child.pid"));
    relay.launch("127.0.0.1:0");
    wait_gone(child_pid, "the previous run's agent child after a restart");
    relay.wait_log("left behind");
    let mut d = relay.device("d", "");
    d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    // The new run's agent is not touched by its own sweep.
    let new_agent = read_pid(&dir.path().join("agent.pid"));
    let new_child = read_pid(&dir.path().join("child.pid"));
    let _more = Leftovers(vec![new_agent, new_child]);
    assert!(running(new_agent), "the new run's agent runs");
}
