//! The workspace answers an agent's `fs/*` and `terminal/*` requests inside
//! its jail: driven through `Workspace::call` on a `LocalExecutor`, with real
//! files and real processes. Every wait has a deadline.

mod common;
use common::TempDir;

use acp_relay::core::rpc::{RpcError, code};
use acp_relay::workspace::Workspace;
use futures_lite::future;
use serde_json::{Value, json};
use smol::{LocalExecutor, Timer};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::rc::Rc;
use std::time::Duration;

/// A temp dir with a `root/` workspace in it (the parent is outside the jail).
fn workspace(tag: &str) -> (TempDir, Workspace) {
    let tmp = TempDir::new(tag);
    let root = tmp.0.join("root");
    fs::create_dir(&root).unwrap();
    let ws = Workspace::new(&root).expect("open workspace");
    (tmp, ws)
}

fn run<T>(fut: impl Future<Output = T>) -> T {
    let ex = LocalExecutor::new();
    future::block_on(ex.run(fut))
}

/// Awaits `fut`, failing the test if it takes longer than `secs`.
async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    let timeout = async {
        Timer::after(Duration::from_secs(secs)).await;
        None
    };
    future::or(async { Some(fut.await) }, timeout)
        .await
        .unwrap_or_else(|| panic!("timed out after {secs}s waiting for {what}"))
}

async fn call(ws: &Workspace, method: &str, params: Value) -> Result<Value, RpcError> {
    within(20, method, ws.call(method, params)).await
}

async fn ok(ws: &Workspace, method: &str, params: Value) -> Value {
    call(ws, method, params.clone())
        .await
        .unwrap_or_else(|e| panic!("{method} {params} failed: {e}"))
}

async fn err(ws: &Workspace, method: &str, params: Value) -> RpcError {
    match call(ws, method, params.clone()).await {
        Ok(v) => panic!("{method} {params} should fail, got {v}"),
        Err(e) => {
            let first = e.message.chars().next().expect("a message");
            assert!(
                !first.is_uppercase() && !e.message.ends_with('.'),
                "message style: {e}"
            );
            e
        }
    }
}

/// Links the system `sleep` into `dir` under `name`, so its processes can be
/// told apart from every other test's (a process's `comm` is its file name).
fn sleeper(dir: &std::path::Path, name: &str) -> String {
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("a sleep binary");
    let link = dir.join(name);
    symlink(sleep, &link).unwrap();
    link.to_str().unwrap().to_owned()
}

/// Processes (zombies included) in this test's session whose `comm` is `name`.
fn processes_named(name: &str) -> Vec<String> {
    let own_session = fs::read_to_string("/proc/self/stat")
        .map(|s| stat_fields(&s).2)
        .unwrap();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (comm, state, session) = stat_fields(&stat);
        if comm == name && session == own_session {
            found.push(format!("{} ({state})", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// `(comm, state, session)` from a `/proc/PID/stat` line.
fn stat_fields(stat: &str) -> (String, String, String) {
    let open = stat.find('(').unwrap();
    let close = stat.rfind(')').unwrap();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the comm: state ppid pgrp session ...
    (
        stat[open + 1..close].to_owned(),
        rest[0].to_owned(),
        rest[3].to_owned(),
    )
}

/// Polls until every process named `name` is dead (gone or a zombie), or
/// fails after `secs`.
async fn all_dead(secs: u64, name: &str) {
    within(secs, &format!("{name} processes to die"), async {
        while processes_named(name).iter().any(|p| !p.ends_with("(Z)")) {
            Timer::after(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn abs(ws: &Workspace, rel: &str) -> String {
    ws.root().join(rel).to_str().unwrap().to_owned()
}

#[test]
fn new_refuses_a_missing_or_non_directory_root() {
    let tmp = TempDir::new("badroot");
    assert!(Workspace::new(&tmp.0.join("missing")).is_err());
    fs::write(tmp.0.join("file"), "x").unwrap();
    assert!(Workspace::new(&tmp.0.join("file")).is_err());
}

#[test]
fn read_honours_line_and_limit() {
    let (_tmp, ws) = workspace("read");
    fs::write(ws.root().join("f.txt"), "one\ntwo\nthree\nfour\n").unwrap();
    run(async {
        let all = ok(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": "f.txt"}),
        )
        .await;
        assert_eq!(all, json!({"content": "one\ntwo\nthree\nfour\n"}));

        let path = abs(&ws, "f.txt");
        let part = ok(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": path, "line": 2, "limit": 2}),
        )
        .await;
        assert_eq!(part["content"], "two\nthree\n");

        let tail = ok(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": path, "line": 4}),
        )
        .await;
        assert_eq!(tail["content"], "four\n");

        let missing = err(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": "nope.txt"}),
        )
        .await;
        assert_eq!(missing.code, code::RESOURCE_NOT_FOUND);

        let bad = err(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": "f.txt", "line": -1}),
        )
        .await;
        assert_eq!(bad.code, code::INVALID_PARAMS);

        let no_path = err(&ws, "fs/read_text_file", json!({"sessionId": "s"})).await;
        assert_eq!(no_path.code, code::INVALID_PARAMS);
    });
}

#[test]
fn read_refuses_binary_files_without_echoing_them() {
    let (_tmp, ws) = workspace("binary");
    fs::write(
        ws.root().join("bin"),
        [0x53u8, 0x45, 0x43, 0xff, 0xfe, 0x00],
    )
    .unwrap();
    run(async {
        let e = err(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": "bin"}),
        )
        .await;
        assert_eq!(e.code, code::OTHER);
        assert!(e.message.contains("not a text file"), "{e}");
        assert!(
            !e.message.contains("sec"),
            "no file contents in messages: {e}"
        );
    });
}

#[test]
fn write_is_atomic_and_keeps_the_mode() {
    let (_tmp, ws) = workspace("write");
    let target = ws.root().join("conf.txt");
    fs::write(&target, "old contents\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    let mut before = fs::File::open(&target).unwrap();
    run(async {
        let r = ok(
            &ws,
            "fs/write_text_file",
            json!({"sessionId": "s", "path": "conf.txt", "content": "new contents\n"}),
        )
        .await;
        assert_eq!(r, json!({}));
    });
    // Replaced by rename, not rewritten in place: an open handle still sees
    // the old file whole.
    let mut old = String::new();
    before.read_to_string(&mut old).unwrap();
    assert_eq!(old, "old contents\n");
    assert_eq!(fs::read_to_string(&target).unwrap(), "new contents\n");
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "mode kept");
    let names: Vec<_> = fs::read_dir(ws.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["conf.txt".to_owned()],
        "no temp file left behind"
    );
}

#[test]
fn write_creates_missing_directories_inside_the_jail() {
    let (_tmp, ws) = workspace("mkdirs");
    run(async {
        let path = abs(&ws, "a/b/c.txt");
        ok(
            &ws,
            "fs/write_text_file",
            json!({"sessionId": "s", "path": path, "content": "c"}),
        )
        .await;
        let back = ok(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": "a/b/c.txt"}),
        )
        .await;
        assert_eq!(back["content"], "c");

        let e = err(
            &ws,
            "fs/write_text_file",
            json!({"sessionId": "s", "path": "x/../../escape.txt", "content": "c"}),
        )
        .await;
        assert_eq!(e.code, code::INVALID_PARAMS);
        let e = err(
            &ws,
            "fs/write_text_file",
            json!({"sessionId": "s", "path": "a", "content": "c"}),
        )
        .await;
        assert_eq!(
            e.code,
            code::INVALID_PARAMS,
            "a directory is not a file: {e}"
        );
    });
    assert!(
        !ws.root().join("x").exists(),
        "nothing created for a refused path"
    );
    assert!(!ws.root().parent().unwrap().join("escape.txt").exists());
}

#[test]
fn escaping_paths_and_symlinks_are_refused() {
    let (tmp, ws) = workspace("escape");
    fs::write(tmp.0.join("secret.txt"), "outside").unwrap();
    symlink(tmp.0.join("secret.txt"), ws.root().join("secret-link")).unwrap();
    symlink("/etc", ws.root().join("etc")).unwrap();
    fs::write(ws.root().join("inside.txt"), "inside").unwrap();
    symlink("inside.txt", ws.root().join("inside-link")).unwrap();
    run(async {
        for path in ["secret-link", "etc/passwd", "../secret.txt", "/etc/passwd"] {
            let e = err(
                &ws,
                "fs/read_text_file",
                json!({"sessionId": "s", "path": path}),
            )
            .await;
            assert_eq!(e.code, code::INVALID_PARAMS, "{path}: {e}");
            assert!(!e.message.contains("outside\""), "no file contents: {e}");
        }
        let e = err(
            &ws,
            "fs/write_text_file",
            json!({"sessionId": "s", "path": "secret-link", "content": "pwned"}),
        )
        .await;
        assert_eq!(e.code, code::INVALID_PARAMS);
        let e = err(
            &ws,
            "fs/write_text_file",
            json!({"sessionId": "s", "path": "etc/new-file", "content": "pwned"}),
        )
        .await;
        assert_eq!(e.code, code::INVALID_PARAMS);

        let r = ok(
            &ws,
            "fs/read_text_file",
            json!({"sessionId": "s", "path": "inside-link"}),
        )
        .await;
        assert_eq!(r["content"], "inside");
    });
    assert_eq!(
        fs::read_to_string(tmp.0.join("secret.txt")).unwrap(),
        "outside"
    );
}

#[test]
fn terminal_runs_a_command_and_reports_its_exit_and_output() {
    let (_tmp, ws) = workspace("term");
    run(async {
        let created = ok(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "sh", "args": ["-c", "echo hi; echo err >&2; exit 3"]}),
        )
        .await;
        let id = created["terminalId"]
            .as_str()
            .expect("terminalId")
            .to_owned();
        let t = json!({"sessionId": "s", "terminalId": id});

        let exit = ok(&ws, "terminal/wait_for_exit", t.clone()).await;
        assert_eq!(exit["exitCode"], 3);
        assert_eq!(exit["signal"], Value::Null);

        let out = ok(&ws, "terminal/output", t.clone()).await;
        let text = out["output"].as_str().unwrap();
        assert!(
            text.contains("hi\n") && text.contains("err\n"),
            "output: {text:?}"
        );
        assert_eq!(out["truncated"], false);
        assert_eq!(out["exitStatus"]["exitCode"], 3);

        assert_eq!(ok(&ws, "terminal/release", t.clone()).await, json!({}));
        let gone = err(&ws, "terminal/output", t).await;
        assert_eq!(gone.code, code::INVALID_PARAMS);
    });
}

#[test]
fn terminal_honours_cwd_and_env() {
    let (_tmp, ws) = workspace("cwdenv");
    fs::create_dir(ws.root().join("sub")).unwrap();
    run(async {
        let created = ok(
            &ws,
            "terminal/create",
            json!({
                "sessionId": "s",
                "command": "sh",
                "args": ["-c", "pwd; echo \"$GREETING\""],
                "cwd": "sub",
                "env": [{"name": "GREETING", "value": "hello there"}],
            }),
        )
        .await;
        let t = json!({"sessionId": "s", "terminalId": created["terminalId"]});
        ok(&ws, "terminal/wait_for_exit", t.clone()).await;
        let out = ok(&ws, "terminal/output", t.clone()).await;
        let expected = format!("{}\nhello there\n", ws.root().join("sub").display());
        assert_eq!(out["output"], expected);
        ok(&ws, "terminal/release", t).await;

        let e = err(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "true", "cwd": "/etc"}),
        )
        .await;
        assert_eq!(e.code, code::INVALID_PARAMS);
        let e = err(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "acp-relay-no-such-command-xyz"}),
        )
        .await;
        assert_eq!(e.code, code::OTHER);
    });
}

#[test]
fn terminal_output_limit_truncates_at_a_char_boundary() {
    let (_tmp, ws) = workspace("trunc");
    run(async {
        // 10 bytes: "x" and three 3-byte euro signs; the newest 8 bytes start
        // inside a euro sign, so only the last two survive.
        let created = ok(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "printf", "args": ["x€€€"], "outputByteLimit": 8}),
        )
        .await;
        let t = json!({"sessionId": "s", "terminalId": created["terminalId"]});
        let exit = ok(&ws, "terminal/wait_for_exit", t.clone()).await;
        assert_eq!(exit["exitCode"], 0);
        let out = ok(&ws, "terminal/output", t.clone()).await;
        assert_eq!(out["output"], "€€");
        assert_eq!(out["truncated"], true);
        ok(&ws, "terminal/release", t).await;
    });
}

#[test]
fn terminal_kill_stops_a_long_command_promptly() {
    let (_tmp, ws) = workspace("kill");
    sleeper(ws.root(), "acpnap-kill");
    let ws = Rc::new(ws);
    let ex = LocalExecutor::new();
    future::block_on(ex.run(async {
        let created = ok(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "sh", "args": ["-c", "echo started; ./acpnap-kill 30"]}),
        )
        .await;
        let t = json!({"sessionId": "s", "terminalId": created["terminalId"]});

        // A concurrent waiter, as the relay's driver would have.
        let waiter = ex.spawn({
            let ws = ws.clone();
            let t = t.clone();
            async move { ws.call("terminal/wait_for_exit", t).await }
        });
        let out = ok(&ws, "terminal/output", t.clone()).await;
        assert!(out.get("exitStatus").is_none(), "still running: {out}");

        assert_eq!(ok(&ws, "terminal/kill", t.clone()).await, json!({}));

        let exit = within(5, "the waiter", waiter)
            .await
            .expect("wait_for_exit");
        assert_eq!(exit["signal"], "SIGKILL");
        assert_eq!(exit["exitCode"], Value::Null);

        // The terminal outlives the kill: its output is still there.
        let out = ok(&ws, "terminal/output", t.clone()).await;
        assert_eq!(out["exitStatus"]["signal"], "SIGKILL");
        ok(&ws, "terminal/release", t).await;
        // The kill reached the shell's own child too. (It was the shell's
        // child, not ours: whoever adopts orphans reaps it, so a zombie is fine.)
        all_dead(5, "acpnap-kill").await;
    }));
}

#[test]
fn terminal_limit_unknown_ids_and_shutdown() {
    let (_tmp, ws) = workspace("limit");
    run(async {
        let mut ids = Vec::new();
        for _ in 0..16 {
            let r = ok(
                &ws,
                "terminal/create",
                json!({"sessionId": "s", "command": "sleep", "args": ["30"]}),
            )
            .await;
            ids.push(r["terminalId"].clone());
        }
        let e = err(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "sleep", "args": ["30"]}),
        )
        .await;
        assert_eq!(e.code, code::LIMIT);
        assert!(e.message.contains("terminal/release"), "{e}");

        let e = err(
            &ws,
            "terminal/output",
            json!({"sessionId": "s", "terminalId": "term-nope"}),
        )
        .await;
        assert_eq!(e.code, code::INVALID_PARAMS);
        let e = err(&ws, "terminal/kill", json!({"sessionId": "s"})).await;
        assert_eq!(e.code, code::INVALID_PARAMS);

        within(10, "shutdown", ws.shutdown()).await;
        for id in ids {
            let e = err(
                &ws,
                "terminal/output",
                json!({"sessionId": "s", "terminalId": id}),
            )
            .await;
            assert_eq!(e.code, code::INVALID_PARAMS);
        }
        // Room again after shutdown.
        let r = ok(
            &ws,
            "terminal/create",
            json!({"sessionId": "s", "command": "true"}),
        )
        .await;
        ok(
            &ws,
            "terminal/release",
            json!({"sessionId": "s", "terminalId": r["terminalId"]}),
        )
        .await;
    });
}

#[test]
fn unknown_methods_are_refused() {
    let (_tmp, ws) = workspace("unknown");
    run(async {
        let e = err(&ws, "fs/delete_everything", json!({})).await;
        assert_eq!(e.code, code::METHOD_NOT_FOUND);
        let e = err(&ws, "fs/read_text_file", json!(["not", "an", "object"])).await;
        assert_eq!(e.code, code::INVALID_PARAMS);
    });
}
