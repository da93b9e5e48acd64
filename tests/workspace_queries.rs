//! Devices browse, read, query git and edit the workspace through the real
//! binary: `_relay/fs/tree`, `_relay/fs/read`, `_relay/git/status`,
//! `_relay/git/diff` and `_relay/apply_edit`, against a real git repository
//! the test makes. Every wait has a deadline.

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs real `git` in `dir`; panics with its stderr on failure.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // never the person's ~/.gitconfig (signing, hooks, default branch)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SHA-256 of a file, from coreutils' `sha256sum`.
fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// The response to a request (result or error), asserted unstamped.
fn ask(d: &mut Device, method: &str, params: Value) -> Value {
    let id = d.request(method, params);
    let r = d.response(&id);
    assert!(
        r.get("rseq").is_none(),
        "workspace replies are not stamped: {r}"
    );
    r
}

fn ok(d: &mut Device, method: &str, params: Value) -> Value {
    let r = ask(d, method, params.clone());
    assert!(r.get("error").is_none(), "{method} {params}: {r}");
    r["result"].clone()
}

fn err(d: &mut Device, method: &str, params: Value) -> Value {
    let r = ask(d, method, params.clone());
    assert!(
        r.get("result").is_none(),
        "{method} {params} should fail: {r}"
    );
    r["error"].clone()
}

fn welcome(d: &mut Device) -> Value {
    d.recv_until("relay_welcome", |v| v["type"] == "relay_welcome")
}

/// A repo with a committed-then-modified file, a staged new file, an
/// untracked file, an ignored file and directory, and a binary file.
const MODIFIED: &str = "pub fn answer() -> u32 {\n    42\n}\n// changed\n";

fn make_repo(ws: &Path) {
    git(ws, &["init", "-q", "-b", "main"]);
    git(ws, &["config", "user.name", "Relay Test"]);
    git(ws, &["config", "user.email", "relay@test.invalid"]);
    fs::create_dir(ws.join("src")).unwrap();
    fs::write(
        ws.join("src/lib.rs"),
        "pub fn answer() -> u32 {\n    42\n}\n",
    )
    .unwrap();
    fs::write(ws.join("README.md"), "# demo\n").unwrap();
    fs::write(ws.join(".gitignore"), "*.log\ntarget/\n").unwrap();
    fs::write(
        ws.join("logo.png"),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe",
    )
    .unwrap();
    git(ws, &["add", "."]);
    git(ws, &["commit", "-q", "-m", "initial"]);
    fs::write(ws.join("src/lib.rs"), MODIFIED).unwrap();
    fs::write(ws.join("added.txt"), "staged line\n").unwrap();
    git(ws, &["add", "added.txt"]);
    fs::write(ws.join("notes.txt"), "untracked\n").unwrap();
    fs::write(ws.join("debug.log"), "ignored\n").unwrap();
    fs::create_dir(ws.join("target")).unwrap();
    fs::write(ws.join("target/out.bin"), "ignored too\n").unwrap();
}

fn names(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn queries_report_what_git_and_the_filesystem_say() {
    let relay = Relay::start(&[]);
    let ws = relay.workspace.clone();
    let mut d = relay.device("phone", "");
    welcome(&mut d);

    // `initialize` advertises the workspace methods.
    let init = ok(
        &mut d,
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    let caps = &init["_meta"]["relay"]["workspace"];
    assert_eq!(caps["fs"], json!({"tree": true, "read": true}), "{init}");
    assert_eq!(caps["applyEdit"], true, "{init}");
    assert_eq!(caps["git"], true, "git is installed here: {init}");

    // Not a repository yet: git queries say so, the tree still works.
    for method in ["_relay/git/status", "_relay/git/diff"] {
        let e = err(&mut d, method, json!({}));
        assert_eq!(e["code"], -32000, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("the workspace is not a git repository"),
            "{e}"
        );
    }
    fs::write(ws.join("plain.txt"), "x").unwrap();
    let t = ok(&mut d, "_relay/fs/tree", json!({}));
    assert_eq!(names(&t["entries"]), ["plain.txt"]);
    assert_eq!(t["ignoresApplied"], false);
    fs::remove_file(ws.join("plain.txt")).unwrap();

    make_repo(&ws);

    // The tree: no .git, nothing git ignores, directories first.
    let t = ok(&mut d, "_relay/fs/tree", json!({"depth": 2}));
    assert_eq!(t["path"], ".");
    assert_eq!(t["truncated"], false);
    assert_eq!(t["ignoresApplied"], true);
    assert_eq!(
        names(&t["entries"]),
        [
            "src",
            ".gitignore",
            "README.md",
            "added.txt",
            "logo.png",
            "notes.txt"
        ],
        "{t}"
    );
    let src = &t["entries"][0];
    assert_eq!(src["kind"], "dir");
    assert_eq!(src["children"][0]["path"], "src/lib.rs");
    assert_eq!(src["children"][0]["kind"], "file");
    assert_eq!(src["children"][0]["size"], MODIFIED.len());
    assert!(src["children"][0]["mtimeMs"].as_u64().unwrap() > 0);
    // Depth 1 lists a directory without its children.
    let t = ok(&mut d, "_relay/fs/tree", json!({}));
    assert!(t["entries"][0].get("children").is_none(), "{t}");
    let t = ok(&mut d, "_relay/fs/tree", json!({"path": "src"}));
    assert_eq!(t["path"], "src");
    assert_eq!(names(&t["entries"]), ["lib.rs"]);

    // Read: text with its hash, a window, and a binary file.
    let r = ok(&mut d, "_relay/fs/read", json!({"path": "src/lib.rs"}));
    assert_eq!(r["path"], "src/lib.rs");
    assert_eq!(r["content"], MODIFIED);
    assert_eq!(r["size"], MODIFIED.len());
    assert_eq!(r["offset"], 0);
    assert_eq!(r["truncated"], false);
    assert_eq!(r["sha256"], sha256_of(&ws.join("src/lib.rs")));
    let r = ok(
        &mut d,
        "_relay/fs/read",
        json!({"path": "src/lib.rs", "offset": 4, "maxBytes": 6}),
    );
    assert_eq!(r["content"], "fn ans");
    assert_eq!(r["truncated"], true);
    assert_eq!(r["sha256"], sha256_of(&ws.join("src/lib.rs")));
    let r = ok(&mut d, "_relay/fs/read", json!({"path": "logo.png"}));
    assert_eq!(r["binary"], true, "{r}");
    assert_eq!(r["size"], fs::metadata(ws.join("logo.png")).unwrap().len());
    assert_eq!(r["sha256"], sha256_of(&ws.join("logo.png")));
    assert!(r.get("content").is_none());
    let e = err(&mut d, "_relay/fs/read", json!({"path": "src"}));
    assert_eq!(e["code"], -32602, "{e}");

    // Status: modified, staged, untracked; never the ignored ones.
    let s = ok(&mut d, "_relay/git/status", json!({}));
    assert_eq!(s["branch"], "main", "{s}");
    let mut entries: Vec<(String, String, String)> = s["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["index"].as_str().unwrap().to_owned(),
                e["worktree"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    entries.sort();
    let own = |p: &str, i: &str, w: &str| (p.to_owned(), i.to_owned(), w.to_owned());
    assert_eq!(
        entries,
        [
            own("added.txt", "A", " "),
            own("notes.txt", "?", "?"),
            own("src/lib.rs", " ", "M"),
        ],
        "{s}"
    );

    // Diff: work tree, staged, one path.
    let df = ok(&mut d, "_relay/git/diff", json!({}));
    let text = df["diff"].as_str().unwrap();
    assert_eq!(df["truncated"], false);
    assert!(
        text.contains("diff --git a/src/lib.rs b/src/lib.rs"),
        "{text}"
    );
    assert!(text.contains("+// changed"), "{text}");
    assert!(!text.contains("added.txt"), "{text}");
    let df = ok(&mut d, "_relay/git/diff", json!({"staged": true}));
    let text = df["diff"].as_str().unwrap();
    assert!(text.contains("+staged line"), "{text}");
    assert!(!text.contains("src/lib.rs"), "{text}");
    let df = ok(&mut d, "_relay/git/diff", json!({"path": "README.md"}));
    assert_eq!(df["diff"], "");
    let df = ok(&mut d, "_relay/git/diff", json!({"path": "src"}));
    assert!(df["diff"].as_str().unwrap().contains("+// changed"));
}

#[test]
fn viewers_query_only_the_controller_edits_and_everyone_hears_of_it() {
    let relay = Relay::start(&["--lease"]);
    let ws = relay.workspace.clone();
    make_repo(&ws);
    let before = fs::read(ws.join("README.md")).unwrap();
    let old_sha = sha256_of(&ws.join("README.md"));

    // The controller: opens a session (claiming the lease) and prompts.
    let mut ctl = relay.device("ctl", "");
    let s1 = open_session(&mut ctl);
    let id = ctl.request("session/prompt", prompt_params(&s1, "hi\n/chunks 1"));
    let r = ctl.response(&id);
    assert!(r.get("error").is_none(), "prompt: {r}");

    // A viewer of the same session may query but not edit.
    let mut viewer = relay.device("viewer", &format!("session_id={s1}"));
    welcome(&mut viewer);
    let r = ok(&mut viewer, "_relay/fs/read", json!({"path": "README.md"}));
    assert_eq!(r["sha256"], old_sha);
    ok(&mut viewer, "_relay/fs/tree", json!({}));
    ok(&mut viewer, "_relay/git/status", json!({}));
    ok(&mut viewer, "_relay/git/diff", json!({}));
    let e = err(
        &mut viewer,
        "_relay/apply_edit",
        json!({"path": "README.md", "content": "viewer was here\n"}),
    );
    assert_eq!(e["code"], -32010, "{e}");
    assert_eq!(fs::read(ws.join("README.md")).unwrap(), before);

    // The controller switches to a second session; a third device sits on the first.
    let id = ctl.request("session/new", json!({"cwd": "/", "mcpServers": []}));
    let r = ctl.response(&id);
    let s2 = r["result"]["sessionId"].as_str().unwrap().to_owned();
    assert_ne!(s1, s2);
    let mut other = relay.device("other", &format!("session_id={s1}"));
    welcome(&mut other);

    // A stale hash is refused and leaves the file alone.
    let stale = "0".repeat(64);
    let e = err(
        &mut ctl,
        "_relay/apply_edit",
        json!({"path": "README.md", "content": "lost\n", "expectedSha256": stale}),
    );
    assert_eq!(e["code"], -32000, "{e}");
    assert_eq!(e["data"]["conflict"], true, "{e}");
    assert_eq!(e["data"]["currentSha256"], old_sha, "{e}");
    assert!(e["message"].as_str().unwrap().contains("re-read"), "{e}");
    assert_eq!(fs::read(ws.join("README.md")).unwrap(), before);

    // A good edit lands, keeps the mode, and every device hears of it.
    fs::set_permissions(ws.join("README.md"), fs::Permissions::from_mode(0o640)).unwrap();
    let content = "# demo\n\nedited from a phone\n";
    let r = ok(
        &mut ctl,
        "_relay/apply_edit",
        json!({"path": "README.md", "content": content, "expectedSha256": old_sha}),
    );
    assert_eq!(r["path"], "README.md");
    assert_eq!(fs::read_to_string(ws.join("README.md")).unwrap(), content);
    assert_eq!(r["sha256"], sha256_of(&ws.join("README.md")));
    let mode = fs::metadata(ws.join("README.md"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    for d in [&mut ctl, &mut viewer, &mut other] {
        let n = d.recv_until("_relay/workspace_changed", |v| {
            v["method"] == "_relay/workspace_changed"
        });
        assert_eq!(n["params"]["path"], "README.md", "{n}");
        assert!(n.get("rseq").is_none(), "{n}");
    }

    // A new file in a new directory, inside the workspace.
    let r = ok(
        &mut ctl,
        "_relay/apply_edit",
        json!({"path": "docs/new/guide.md", "content": "guide\n"}),
    );
    assert_eq!(r["path"], "docs/new/guide.md");
    assert_eq!(
        fs::read_to_string(ws.join("docs/new/guide.md")).unwrap(),
        "guide\n"
    );
    // Expecting a file that is gone is a conflict with a null hash.
    let e = err(
        &mut ctl,
        "_relay/apply_edit",
        json!({"path": "gone.txt", "content": "x", "expectedSha256": old_sha}),
    );
    assert_eq!(e["data"]["conflict"], true, "{e}");
    assert!(e["data"]["currentSha256"].is_null(), "{e}");
    assert!(!ws.join("gone.txt").exists());
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(&ws)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn escapes_are_refused_for_every_method() {
    let relay = Relay::start(&[]);
    let ws = relay.workspace.clone();
    make_repo(&ws);
    let outside = relay.dir.path().join("outside.txt");
    fs::write(&outside, "outside\n").unwrap();
    symlink("/etc", ws.join("etc")).unwrap();
    let mut d = relay.device("phone", "");
    welcome(&mut d);

    let outside_abs = outside.to_str().unwrap().to_owned();
    let reads = [
        "../outside.txt",
        "src/../../outside.txt",
        "/etc/passwd",
        outside_abs.as_str(),
        "etc",
        "etc/passwd",
    ];
    for path in reads {
        for (method, params) in [
            ("_relay/fs/tree", json!({"path": path})),
            ("_relay/fs/read", json!({"path": path})),
            ("_relay/git/diff", json!({"path": path})),
        ] {
            let e = err(&mut d, method, params);
            assert_eq!(e["code"], -32602, "{method} {path}: {e}");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("outside the workspace")
            );
        }
    }
    // Edits never write outside (nor below a symlink to /etc).
    let probe = "etc/acp-relay-escape-probe";
    for path in [
        "../outside.txt",
        "src/../../outside.txt",
        outside_abs.as_str(),
        probe,
    ] {
        let e = err(
            &mut d,
            "_relay/apply_edit",
            json!({"path": path, "content": "pwned\n"}),
        );
        assert_eq!(e["code"], -32602, "apply_edit {path}: {e}");
    }
    assert_eq!(fs::read_to_string(&outside).unwrap(), "outside\n");
    assert!(!Path::new("/etc/acp-relay-escape-probe").exists());
    // `..` that stays inside is fine.
    let r = ok(
        &mut d,
        "_relay/fs/read",
        json!({"path": "src/../README.md"}),
    );
    assert_eq!(r["path"], "README.md");
}

/// Whether any direct child of `pid` is running `sleep`.
fn has_sleeping_child(pid: u32) -> bool {
    children(pid).into_iter().any(|c| {
        fs::read(format!("/proc/{c}/cmdline"))
            .is_ok_and(|cmd| cmd.split(|b| *b == 0).next() == Some(b"sleep"))
    })
}

#[test]
fn a_hung_git_times_out_while_a_turn_keeps_streaming() {
    // A `git` that never answers, first on the relay's PATH.
    let bin = TempDir::new("hung-git");
    let wrapper = bin.path().join("git");
    fs::write(&wrapper, "#!/bin/sh\nexec sleep 60\n").unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let relay = Relay::start_env(&[], &[("PATH", &path)]);
    fs::write(relay.workspace.join("a.txt"), "still readable\n").unwrap();

    let mut d = relay.device("phone", "");
    let s1 = open_session(&mut d);
    let mut script = String::from("stream\n");
    for _ in 0..40 {
        script.push_str("/sleep 500\n/context\n");
    }
    let prompt = d.request("session/prompt", prompt_params(&s1, &script));
    d.recv_until("the turn's first chunk", |v| chunk_contains(v, "echo:"));

    // A second device, on a second session, asks too.
    let mut other = relay.device("other", "");
    let s2 = open_session(&mut other);
    assert_ne!(s1, s2);
    let other_status = other.request("_relay/git/status", json!({}));

    let status = d.request("_relay/git/status", json!({}));
    let read = d.request("_relay/fs/read", json!({"path": "a.txt"}));
    let started = Instant::now();
    let mut streamed = 0;
    let mut read_answered_first = false;
    let reply = loop {
        let v = d.recv_until("a reply or a frame", |_| true);
        if v["id"] == status && v.get("method").is_none() {
            break v;
        }
        if v["id"] == read && v.get("method").is_none() {
            assert_eq!(v["result"]["content"], "still readable\n", "{v}");
            read_answered_first = true;
        } else if v["method"] == "session/update" && v["params"]["sessionId"] == s1 {
            streamed += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer to git/status"
        );
    };
    assert_eq!(reply["error"]["code"], -32000, "{reply}");
    let msg = reply["error"]["message"].as_str().unwrap();
    assert!(msg.contains("took longer than 10s"), "{msg}");
    assert!(read_answered_first, "fs/read waited behind the hung git");
    assert!(
        streamed >= 5,
        "only {streamed} frames of the turn arrived while git hung"
    );

    let r = other.response(&other_status);
    assert_eq!(r["error"]["code"], -32000, "{r}");

    // The hung `git` children were killed when their queries were abandoned.
    let deadline = Instant::now() + WAIT;
    while has_sleeping_child(relay.pid()) {
        assert!(
            Instant::now() < deadline,
            "a hung git is still running: {:?}",
            children(relay.pid())
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The turn is still going; stop it.
    d.send(&json!({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": s1}}));
    let r = d.response(&prompt);
    assert!(r.get("result").is_some() || r.get("error").is_some(), "{r}");
}
