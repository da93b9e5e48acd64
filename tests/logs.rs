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
    // The exact forms: quoted as a peer string, each control character
    // escaped once by the line (a raw one, or an unquoted value, fails).
    assert!(
        log.contains("connected as \"\\nforged line\""),
        "escaped form missing:\n{log}"
    );
    assert!(!log.contains('\0'), "raw NUL in the log");
    assert!(!log.contains('\x1b'), "raw escape in the log");
    assert!(log.contains("\"\\0\u{fffd}\\x1b[31m\""), "{log}");
    // Every line names its level first, then when it was written.
    for l in log.lines() {
        assert!(
            ["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"]
                .iter()
                .any(|p| l.starts_with(p)),
            "line without a level: {l:?}"
        );
        assert!(starts_with_timestamp(&l[6..]), "line without a time: {l:?}");
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
            // JSON escapes the newline on the line; the message it decodes
            // to holds the peer's string as it was, quoted.
            .is_some_and(|m| m.contains("connected as \"line\nbreak\""))),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .all(|v| v["level"].is_string() && v["target"].is_string())
    );
    // Each with its time, RFC 3339 UTC to the millisecond.
    for v in &lines {
        let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {v}"));
        assert!(starts_with_timestamp(&format!("{ts} x")), "{ts}");
    }
}

/// Starts `serve` with stderr on a pipe and `JOURNAL_STREAM` naming that pipe
/// (`journal` true) or something else; its stderr lines up to the startup
/// line about notifications and a warning (a `--socket-bytes` it raises).
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
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log",
        "info",
        "--socket-bytes",
        "1",
        "--data-dir",
    ])
    .arg(dir.path().join("data"))
    .arg("--workspace")
    .arg(&ws);
    clean_env(&mut cmd, dir.path());
    cmd.env("JOURNAL_STREAM", stream)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer);
    let child = GroupGuard::spawn(cmd).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(reader).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let seen = |lines: &[String], what: &str| lines.iter().any(|l| l.contains(what));
    while !(seen(&lines, "notifications: ") && seen(&lines, "is below one replay")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no startup and warning lines; got {lines:?}"),
        }
    }
    // SIGTERM: a clean stop; the guard ends whatever is left.
    unsafe_kill(child.id(), "TERM");
    drop(child);
    lines
}

/// Whether `s` starts with an RFC 3339 UTC timestamp with milliseconds
/// (`2026-12-02T01:27:09.042Z `).
fn starts_with_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 25
        && b.iter().take(24).enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && b[24] == b' '
}

/// Whether a line starts with `prefix` and holds `needle`.
fn has(lines: &[String], prefix: &str, needle: &str) -> bool {
    lines
        .iter()
        .any(|l| l.starts_with(prefix) && l.contains(needle))
}

#[test]
fn under_systemd_lines_carry_syslog_priorities() {
    let lines = stderr_lines(true);
    assert!(has(&lines, "<6>INFO  ", "notifications: "), "{lines:?}");
    assert!(
        has(&lines, "<4>WARN  ", "is below one replay"),
        "the warning's priority: {lines:?}"
    );
    for l in &lines {
        assert!(
            l.starts_with("<6>INFO  ") || l.starts_with("<4>WARN  ") || l.starts_with("<3>ERROR "),
            "{lines:?}"
        );
        // journald stamps each line itself: no timestamp of ours.
        assert!(!starts_with_timestamp(&l[9..]), "{l}");
    }
    // A stderr that is not the journal's stream gets plain lines with a
    // timestamp after the level.
    let lines = stderr_lines(false);
    assert!(has(&lines, "WARN  ", "is below one replay"), "{lines:?}");
    for l in &lines {
        assert!(
            (l.starts_with("INFO  ") || l.starts_with("WARN  ")) && starts_with_timestamp(&l[6..]),
            "{l}"
        );
    }
}
