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

/// Starts `serve` with stderr on a pipe and `JOURNAL_STREAM` naming that pipe
/// (`journal` true) or something else; the first stderr lines up to the agent start.
fn stderr_lines(journal: bool) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let dir = TempDir::new("journal");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let st = std::fs::metadata(format!("/proc/self/fd/{}", writer.as_raw_fd())).unwrap();
    let stream = if journal {
        format!("{}:{}", st.dev(), st.ino())
    } else {
        format!("{}:{}", st.dev(), st.ino() + 1)
    };
    let mut child = std::process::Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "info",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--workspace")
        .arg(&ws)
        .env("JOURNAL_STREAM", stream)
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(reader).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !lines
        .iter()
        .any(|l: &String| l.contains("started `acp-relay demo-agent`"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    // SIGTERM: the relay ends its agent too.
    unsafe_kill(child.id(), "TERM");
    let _ = child.wait();
    assert!(!lines.is_empty(), "no stderr lines");
    lines
}

#[test]
fn under_systemd_lines_carry_syslog_priorities() {
    let lines = stderr_lines(true);
    assert!(
        lines.iter().all(|l| l.starts_with("<6>INFO ")
            || l.starts_with("<4>WARN ")
            || l.starts_with("<3>ERROR")),
        "{lines:?}"
    );
    // A stderr that is not the journal's stream gets plain lines.
    let lines = stderr_lines(false);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("INFO ") || l.starts_with("WARN ")),
        "{lines:?}"
    );
}
