//! Shared by the interop tests: an `acp-relay connect` process driven as a
//! stdio ACP client would drive it, and the peers installed by
//! `scripts/setup-interop.sh` (skipped with a message when missing).
#![allow(dead_code)]

use super::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `acp-relay connect URL --token T` with piped stdio.
pub struct Bridge {
    pub child: GroupGuard,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub log: Arc<Mutex<String>>,
    next_id: u64,
    /// Messages received while waiting for something else.
    pub seen: Vec<Value>,
    /// Everything received, in order.
    pub all: Vec<Value>,
    _home: TempDir,
}

impl Bridge {
    pub fn start(relay: &Relay) -> Bridge {
        Bridge::start_args(&[
            format!("ws://127.0.0.1:{}/acp", relay.port),
            "--token".into(),
            relay.token.clone(),
        ])
    }

    pub fn start_args(args: &[String]) -> Bridge {
        let home = TempDir::new("bridge-home");
        let mut cmd = Command::new(bin());
        cmd.arg("connect")
            .args(args)
            .args(["--log", "info"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clean_env(&mut cmd, home.path());
        let mut child = GroupGuard::spawn(cmd).expect("spawn acp-relay connect");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("RELAY_LOG").is_some() {
                    eprintln!("[connect] {line}");
                }
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Bridge {
            stdin: child.stdin.take(),
            child,
            _home: home,
            lines,
            log,
            next_id: 0,
            seen: Vec::new(),
            all: Vec::new(),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}").expect("write to connect");
        stdin.flush().unwrap();
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}));
        id
    }

    /// The next line within `wait`, parsed.
    pub fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(wait).ok()?;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("connect wrote a non-JSON line {line:?}: {e}"));
        self.all.push(v.clone());
        Some(v)
    }

    pub fn recv_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left) {
                Some(v) if pred(&v) => return v,
                Some(v) => self.seen.push(v),
                None => panic!(
                    "connect: never received {what}; saw:\n{}\nlog:\n{}",
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.log()
                ),
            }
        }
    }

    pub fn response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_until(&format!("response to {id}"), move |v| {
            v["id"] == id && v.get("method").is_none()
        })
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "connect log never showed {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the bridge's stdin (the client is done sending).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Closes stdin and waits for the exit status.
    pub fn finish(mut self) -> Option<i32> {
        self.stdin.take();
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("connect did not exit; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `initialize` then `session/new` through the bridge; returns the session id.
pub fn bridge_session(b: &mut Bridge) -> String {
    let id = b.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{"fs":{"readTextFile":true,"writeTextFile":true},"terminal":true}}),
    );
    let init = b.response(&id);
    assert_eq!(init["result"]["protocolVersion"], 1, "{init}");
    let id = b.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    let r = b.response(&id);
    r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new: {r}"))
        .to_owned()
}

/// Where `scripts/setup-interop.sh` installs the peers.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop")
}

/// The test fixtures (agents and clients) under tests/interop/.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// A usable `python3` for the plain (SDK-less) scripted agents.
pub fn python3() -> Option<String> {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| "python3".to_string())
}

/// The venv's python with `agent-client-protocol` installed, or why not.
pub fn sdk_python() -> Result<PathBuf, String> {
    let py = interop_dir().join("venv/bin/python");
    if !py.exists() {
        return Err(format!(
            "{} is missing: run scripts/setup-interop.sh (needs PyPI)",
            py.display()
        ));
    }
    let ok = Command::new(&py)
        .args(["-c", "import acp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(py)
    } else {
        Err("the interop venv has no `acp` module: run scripts/setup-interop.sh".into())
    }
}

/// `node` and the npm peers' directory, or why not.
pub fn node_modules(package: &str) -> Result<PathBuf, String> {
    let dir = interop_dir().join("node");
    let pkg = dir.join("node_modules").join(package).join("package.json");
    if !pkg.exists() {
        return Err(format!(
            "npm package {package} is not installed in {}: run scripts/setup-interop.sh (needs the npm registry)",
            dir.display()
        ));
    }
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node is not installed: {e}"))?;
    if !node.status.success() {
        return Err("node --version failed".into());
    }
    Ok(dir)
}

/// A missing peer: fails under `CI=true`, else prints SKIPPED (see
/// [`peer_missing`]).
pub fn skip(test: &str, why: &str) {
    peer_missing(test, why);
}

/// A relay running the quirk agent (tests/interop/quirk_agent.py) in `mode`,
/// or None (skipped, a failure under CI=true) without python3.
pub fn quirk_relay(test: &str, mode: &str, extra: &[&str]) -> Option<Relay> {
    let Some(py) = python3() else {
        skip(test, "python3 (3.8+) is not installed");
        return None;
    };
    let cmd = agent_cmd(&py, "quirk_agent.py", mode);
    let mut flags = vec!["--agent", cmd.as_str()];
    flags.extend_from_slice(extra);
    Some(Relay::start(&flags))
}

/// A relay command line fragment for `--agent` that runs `script` with `python`.
pub fn agent_cmd(python: &str, script: &str, args: &str) -> String {
    let path = fixture(script);
    format!("{python} {} {args}", path.display())
        .trim_end()
        .to_string()
}

/// What a finished peer program printed.
pub struct Ran {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end, killing it past `limit`; stdout and stderr captured.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Ran {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = GroupGuard::spawn(cmd).unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() > deadline {
            kill_group(child.id(), "KILL");
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}
