//! The demo agent as a real process (`acp-relay demo-agent`), driven over its
//! stdin/stdout by a minimal ACP client. Every wait has a deadline.

mod common;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

struct Agent {
    child: Child,
    _home: common::TempDir,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    next_id: u64,
}

/// What one prompt produced.
struct Turn {
    updates: Vec<Value>,
    answer: Value,
}

impl Turn {
    fn texts(&self, kind: &str) -> Vec<String> {
        self.updates
            .iter()
            .filter(|u| u["update"]["sessionUpdate"] == kind)
            .map(|u| {
                u["update"]["content"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    fn chunks(&self) -> Vec<String> {
        self.texts("agent_message_chunk")
    }

    fn stop_reason(&self) -> &str {
        self.answer["result"]["stopReason"]
            .as_str()
            .unwrap_or("<none>")
    }
}

impl Agent {
    fn spawn(state_dir: Option<&Path>) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_acp-relay"));
        cmd.arg("demo-agent");
        if let Some(d) = state_dir {
            cmd.arg("--state-dir").arg(d);
        }
        let home = common::TempDir::new("demo-agent-home");
        common::clean_env(&mut cmd, home.path());
        common::own_group(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn acp-relay demo-agent");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = match serde_json::from_str(&line) {
                    Ok(v) => v,
                    Err(e) => panic!("the agent wrote a line that is not JSON: {line:?}: {e}"),
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Agent {
            child,
            _home: home,
            stdin,
            lines,
            next_id: 1,
        }
    }

    fn send(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let mut line = v.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .expect("write to the agent");
        stdin.flush().expect("flush to the agent");
    }

    fn request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    fn next(&mut self, what: &str) -> Value {
        self.lines.recv_timeout(DEADLINE).unwrap_or_else(|e| {
            panic!("no message from the agent within {DEADLINE:?} while waiting for {what}: {e}")
        })
    }

    /// Reads until the answer to `id`, answering the agent's own requests
    /// with `answer` (None → -32601) and collecting `session/update`s.
    fn finish(&mut self, id: u64, mut answer: impl FnMut(&Value) -> Option<Value>) -> Turn {
        let mut updates = Vec::new();
        loop {
            let msg = self.next(&format!("the answer to request {id}"));
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let reply = match answer(&msg) {
                    Some(result) => json!({ "jsonrpc": "2.0", "id": msg["id"], "result": result }),
                    None => {
                        json!({ "jsonrpc": "2.0", "id": msg["id"], "error": { "code": -32601, "message": "not here" } })
                    }
                };
                self.send(reply);
            } else if msg["method"] == "session/update" {
                updates.push(msg["params"].clone());
            } else if msg["id"] == id {
                return Turn {
                    updates,
                    answer: msg,
                };
            } else {
                panic!("unexpected message from the agent: {msg}");
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Turn {
        let id = self.request(method, params);
        self.finish(id, |m| panic!("unexpected request from the agent: {m}"))
    }

    fn initialize(&mut self) -> Value {
        let caps =
            json!({ "fs": { "readTextFile": true, "writeTextFile": true }, "terminal": true });
        let t = self.call(
            "initialize",
            json!({ "protocolVersion": 1, "clientCapabilities": caps }),
        );
        assert_eq!(
            t.answer["result"]["protocolVersion"], 1,
            "initialize answer: {}",
            t.answer
        );
        t.answer
    }

    fn new_session(&mut self, cwd: &str) -> String {
        let t = self.call("session/new", json!({ "cwd": cwd, "mcpServers": [] }));
        t.answer["result"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("session/new answer without sessionId: {}", t.answer))
            .to_string()
    }

    fn prompt_id(&mut self, sid: &str, text: &str) -> u64 {
        self.request(
            "session/prompt",
            json!({ "sessionId": sid, "prompt": [{ "type": "text", "text": text }] }),
        )
    }

    fn prompt(&mut self, sid: &str, text: &str) -> Turn {
        let id = self.prompt_id(sid, text);
        self.finish(id, |m| panic!("unexpected request from the agent: {m}"))
    }

    /// Closes stdin and waits for the exit status.
    fn exit_status(mut self, what: &str) -> Option<i32> {
        self.stdin = None;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {DEADLINE:?} after {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // The agent and every command it started (its process group).
        common::kill_group(self.child.id(), "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready() -> (Agent, String) {
    let mut a = Agent::spawn(None);
    a.initialize();
    let sid = a.new_session("/work/space");
    (a, sid)
}

#[test]
fn chunks_then_end_turn() {
    let (mut a, sid) = ready();
    let t = a.prompt(&sid, "/chunks 2\nhi");
    assert_eq!(t.chunks().len(), 2, "chunks: {:?}", t.chunks());
    assert_eq!(t.chunks().concat(), "echo: /chunks 2\nhi");
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn ask_allowed() {
    let (mut a, sid) = ready();
    let id = a.prompt_id(&sid, "/ask");
    let t = a.finish(id, |m| {
        assert_eq!(
            m["method"], "session/request_permission",
            "unexpected request {m}"
        );
        assert_eq!(m["params"]["sessionId"], sid.as_str());
        Some(json!({ "outcome": { "outcome": "selected", "optionId": "allow" } }))
    });
    assert!(
        t.chunks().contains(&"permission: allow".to_string()),
        "chunks: {:?}",
        t.chunks()
    );
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn read_through_the_client() {
    let (mut a, sid) = ready();
    let id = a.prompt_id(&sid, "/read notes/today.txt");
    let t = a.finish(id, |m| {
        assert_eq!(m["method"], "fs/read_text_file", "unexpected request {m}");
        assert_eq!(m["params"]["path"], "/work/space/notes/today.txt");
        Some(json!({ "content": "buy milk\nand bread\n" }))
    });
    assert!(
        t.chunks()
            .contains(&"read ok: 19 bytes: buy milk".to_string()),
        "chunks: {:?}",
        t.chunks()
    );
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn cancel_ends_a_sleep_quickly() {
    let (mut a, sid) = ready();
    let id = a.prompt_id(&sid, "/chunks 1\n/sleep 5000");
    let first = a.next("the echo chunk");
    assert_eq!(
        first["params"]["update"]["sessionUpdate"], "agent_message_chunk",
        "got {first}"
    );
    a.send(json!({ "jsonrpc": "2.0", "method": "session/cancel", "params": { "sessionId": sid } }));
    let t = a.finish(id, |m| panic!("unexpected request {m}"));
    assert_eq!(t.stop_reason(), "cancelled");
}

#[test]
fn load_on_a_new_process_restores_context() {
    let tmp = common::TempDir::new("demo-load");
    let dir = tmp.path().to_path_buf();
    let mut a = Agent::spawn(Some(&dir));
    a.initialize();
    let sid = a.new_session("/work/space");
    assert_eq!(
        a.prompt(&sid, "/chunks 1\nremember the milk").stop_reason(),
        "end_turn"
    );
    assert_eq!(a.exit_status("stdin closed"), Some(0));

    let mut b = Agent::spawn(Some(&dir));
    b.initialize();
    let t = b.call(
        "session/load",
        json!({ "sessionId": sid, "cwd": "/work/space", "mcpServers": [] }),
    );
    assert!(
        t.answer.get("error").is_none(),
        "session/load failed: {}",
        t.answer
    );
    assert_eq!(
        t.texts("user_message_chunk"),
        ["/chunks 1\nremember the milk"]
    );
    assert_eq!(
        t.texts("agent_message_chunk"),
        ["echo: /chunks 1\nremember the milk"]
    );
    let t = b.prompt(&sid, "/chunks 1\n/context");
    assert_eq!(
        t.chunks().last().map(String::as_str),
        Some("context: 1 earlier prompts; last: /chunks 1\nremember the milk")
    );

    let t = b.call(
        "session/load",
        json!({ "sessionId": "demo-0000000000000000", "cwd": "/", "mcpServers": [] }),
    );
    assert_eq!(
        t.answer["error"]["code"], -32602,
        "unknown session answer: {}",
        t.answer
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exit_command_crashes_with_status_3() {
    let (mut a, sid) = ready();
    a.prompt_id(&sid, "/exit");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = a.child.try_wait().expect("try_wait") {
            assert_eq!(status.code(), Some(3));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not exit after /exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
