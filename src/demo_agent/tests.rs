//! The whole agent driven in-process over pipes by a minimal fake client.

use super::*;
use crate::testing::TempDir;
use std::collections::VecDeque;
use std::io::{BufRead, PipeWriter};
use std::path::Path;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

struct Client {
    to_agent: PipeWriter,
    from_agent: mpsc::Receiver<Value>,
    backlog: VecDeque<Value>,
    next_id: u64,
}

/// What a turn produced: the `session/update` params and the prompt's answer.
struct Turned {
    updates: Vec<Value>,
    answer: Value,
}

impl Turned {
    /// The messages as a client shows them: every message chunk's text in
    /// order, cut where a chunk that is only a newline separates two
    /// messages. A separator that is not sent glues two messages into one
    /// (and the tests that look at one of them fail).
    fn chunks(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut cur: Option<String> = None;
        for t in self.texts("agent_message_chunk") {
            if t == "\n" {
                out.extend(cur.take());
            } else {
                cur.get_or_insert_with(String::new).push_str(&t);
            }
        }
        out.extend(cur);
        out
    }

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

    fn stop_reason(&self) -> &str {
        self.answer["result"]["stopReason"]
            .as_str()
            .unwrap_or("<none>")
    }
}

impl Client {
    fn start(opts: DemoOptions) -> Client {
        let (agent_in, to_agent) = io::pipe().expect("pipe");
        let (from_agent_r, agent_out) = io::pipe().expect("pipe");
        std::thread::spawn(move || serve(agent_in, agent_out, opts));
        let (tx, from_agent) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from_agent_r).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent wrote invalid JSON {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Client {
            to_agent,
            from_agent,
            backlog: VecDeque::new(),
            next_id: 1,
        }
    }

    fn send_raw(&mut self, line: &str) {
        self.to_agent.write_all(line.as_bytes()).expect("write");
        self.to_agent.write_all(b"\n").expect("write");
    }

    fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string());
    }

    fn request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    fn next(&mut self, what: &str) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        self.from_agent
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("no message from the agent while waiting for {what}: {e}"))
    }

    fn nothing_within(&mut self, d: Duration) -> bool {
        self.backlog.is_empty() && self.from_agent.recv_timeout(d).is_err()
    }

    /// Reads until the answer to `id`, answering the agent's requests with
    /// `answer` (None → -32601) and collecting its updates.
    fn finish(&mut self, id: u64, mut answer: impl FnMut(&Value) -> Option<Value>) -> Turned {
        let mut updates = Vec::new();
        loop {
            let msg = self.next(&format!("the answer to request {id}"));
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let reply = match answer(&msg) {
                    Some(result) => json!({ "jsonrpc": "2.0", "id": msg["id"], "result": result }),
                    None => {
                        json!({ "jsonrpc": "2.0", "id": msg["id"], "error": { "code": -32601, "message": "no" } })
                    }
                };
                self.send(reply);
            } else if msg["method"] == "session/update" {
                updates.push(msg["params"].clone());
            } else if msg["id"] == id {
                return Turned {
                    updates,
                    answer: msg,
                };
            } else {
                panic!("unexpected message {msg}");
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Turned {
        let id = self.request(method, params);
        self.finish(id, |m| panic!("unexpected request {m}"))
    }

    fn initialize(&mut self, fs: bool, terminal: bool) -> Value {
        let caps =
            json!({ "fs": { "readTextFile": fs, "writeTextFile": fs }, "terminal": terminal });
        self.call(
            "initialize",
            json!({ "protocolVersion": 1, "clientCapabilities": caps }),
        )
        .answer
    }

    fn new_session(&mut self, cwd: &str) -> String {
        let t = self.call("session/new", json!({ "cwd": cwd, "mcpServers": [] }));
        t.answer["result"]["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string()
    }

    fn prompt_id(&mut self, sid: &str, text: &str) -> u64 {
        self.request(
            "session/prompt",
            json!({ "sessionId": sid, "prompt": [{ "type": "text", "text": text }] }),
        )
    }

    fn prompt(&mut self, sid: &str, text: &str) -> Turned {
        let id = self.prompt_id(sid, text);
        self.finish(id, |m| panic!("unexpected request {m}"))
    }
}

fn ready(fs: bool, terminal: bool) -> (Client, String) {
    let mut c = Client::start(DemoOptions::default());
    c.initialize(fs, terminal);
    let sid = c.new_session("/work/space");
    (c, sid)
}

#[test]
fn input_is_split_into_bounded_lines() {
    let (tx, rx) = mpsc::channel();
    let input: &[u8] = b"one\n\ntoo long line\ntwo\nlast without newline";
    read_lines(input, 8, tx);
    let got: Vec<String> = rx
        .iter()
        .map(|i| match i {
            Input::Line(l) => String::from_utf8_lossy(&l).into_owned(),
            Input::TooLong => "<too long>".into(),
            Input::End(r) => format!("<end {}>", r.is_ok()),
        })
        .collect();
    assert_eq!(
        got,
        ["one", "", "<too long>", "two", "<too long>", "<end true>"]
    );
}

#[test]
fn initialize_advertises_load_session() {
    let mut c = Client::start(DemoOptions::default());
    let a = c.initialize(true, true);
    let r = &a["result"];
    assert_eq!(r["protocolVersion"], 1);
    assert_eq!(r["agentCapabilities"]["loadSession"], true);
    assert_eq!(
        r["agentCapabilities"]["promptCapabilities"]["embeddedContext"],
        true
    );
    assert_eq!(r["agentInfo"]["name"], "acp-relay-demo");
    assert_eq!(r["authMethods"][0]["id"], "demo-login");
}

#[test]
fn malformed_input_gets_errors_not_panics() {
    let mut c = Client::start(DemoOptions::default());
    c.send_raw("this is not json");
    assert_eq!(c.next("parse error")["error"]["code"], code::PARSE_ERROR);
    c.send_raw("[1,2]");
    assert_eq!(
        c.next("batch error")["error"]["code"],
        code::INVALID_REQUEST
    );
    c.send_raw(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"initialize"}"#);
    assert_eq!(c.next("bad id")["error"]["code"], code::INVALID_REQUEST);
    c.send_raw(r#"{"jsonrpc":"2.0","id":7}"#);
    let e = c.next("no method");
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(7), json!(code::INVALID_REQUEST))
    );
    c.send_raw(r#"{"jsonrpc":"2.0","id":8,"method":"nope/nope"}"#);
    assert_eq!(
        c.next("unknown method")["error"]["code"],
        code::METHOD_NOT_FOUND
    );
    c.send_raw(r#"{"jsonrpc":"2.0","id":9,"method":"session/prompt","params":{"sessionId":"demo-x","prompt":[]}}"#);
    assert_eq!(
        c.next("unknown session")["error"]["code"],
        code::INVALID_PARAMS
    );
    c.send_raw(r#"{"jsonrpc":"2.0","id":10,"method":"session/new","params":{}}"#);
    assert_eq!(c.next("missing cwd")["error"]["code"], code::INVALID_PARAMS);
    // Ignored silently: unknown notifications, answers to ids never issued, blank lines.
    c.send_raw(r#"{"jsonrpc":"2.0","method":"whatever","params":{}}"#);
    c.send_raw(r#"{"jsonrpc":"2.0","id":424242,"result":{}}"#);
    c.send_raw(r#"{"jsonrpc":"2.0","id":"x","error":{"code":1,"message":"m"}}"#);
    c.send_raw("   ");
    assert!(c.nothing_within(Duration::from_millis(200)));
    assert_eq!(c.initialize(false, false)["result"]["protocolVersion"], 1);
}

#[test]
fn chunks_stream_the_echo() {
    let (mut c, sid) = ready(false, false);
    let t = c.prompt(&sid, "/chunks 2\nhi");
    assert_eq!(t.texts("agent_message_chunk").len(), 2);
    assert_eq!(t.chunks(), ["echo: /chunks 2\nhi"]);
    assert_eq!(t.stop_reason(), "end_turn");
    assert!(t.updates.iter().all(|u| u["sessionId"] == sid.as_str()));
}

#[test]
fn ask_reports_each_answer() {
    let (mut c, sid) = ready(false, false);
    for (option, said) in [
        ("allow", "permission: allow"),
        ("reject", "permission: reject"),
    ] {
        let id = c.prompt_id(&sid, "/ask");
        let t = c.finish(id, |m| {
            assert_eq!(m["method"], "session/request_permission");
            assert_eq!(m["params"]["options"][0]["optionId"], "allow");
            assert_eq!(m["params"]["options"][1]["kind"], "reject_once");
            Some(json!({ "outcome": { "outcome": "selected", "optionId": option } }))
        });
        assert_eq!(t.chunks().last().map(String::as_str), Some(said));
        assert_eq!(t.stop_reason(), "end_turn");
        let kinds: Vec<&str> = t
            .updates
            .iter()
            .filter_map(|u| u["update"]["sessionUpdate"].as_str())
            .collect();
        assert!(
            kinds.contains(&"tool_call") && kinds.contains(&"tool_call_update"),
            "{kinds:?}"
        );
        let last = t
            .updates
            .iter()
            .rev()
            .find(|u| u["update"]["sessionUpdate"] == "tool_call_update")
            .expect("update");
        assert_eq!(
            last["update"]["status"],
            if option == "allow" {
                "completed"
            } else {
                "failed"
            }
        );
    }
    let id = c.prompt_id(&sid, "/ask\n/context");
    let t = c.finish(id, |_| {
        Some(json!({ "outcome": { "outcome": "cancelled" } }))
    });
    assert_eq!(
        t.chunks().last().map(String::as_str),
        Some("permission: cancelled")
    );
    assert_eq!(t.stop_reason(), "cancelled");
}

#[test]
fn cancel_during_ask_waits_for_the_cancelled_answer() {
    let (mut c, sid) = ready(false, false);
    let id = c.prompt_id(&sid, "/ask");
    loop {
        let m = c.next("the permission request");
        if m["method"] == "session/request_permission" {
            c.send(json!({ "jsonrpc": "2.0", "method": "session/cancel", "params": { "sessionId": sid } }));
            c.send(json!({ "jsonrpc": "2.0", "id": m["id"], "result": { "outcome": { "outcome": "cancelled" } } }));
            break;
        }
    }
    let t = c.finish(id, |m| panic!("unexpected request {m}"));
    assert_eq!(t.chunks(), vec!["permission: cancelled"]);
    assert_eq!(t.stop_reason(), "cancelled");
}

#[test]
fn read_goes_through_the_client() {
    let (mut c, sid) = ready(true, false);
    let id = c.prompt_id(&sid, "/read notes.txt\n/read ../outside\n/read /abs/file");
    let mut paths = Vec::new();
    let t = c.finish(id, |m| {
        assert_eq!(m["method"], "fs/read_text_file");
        let path = m["params"]["path"].as_str().unwrap_or("").to_string();
        paths.push(path.clone());
        if path.contains("..") {
            None
        } else {
            Some(json!({ "content": "first line\nsecond\n" }))
        }
    });
    assert_eq!(
        paths,
        vec![
            "/work/space/notes.txt",
            "/work/space/../outside",
            "/abs/file"
        ]
    );
    let chunks = t.chunks();
    assert_eq!(
        chunks[chunks.len() - 3..],
        [
            "read ok: 18 bytes: first line",
            "read error -32601: no",
            "read ok: 18 bytes: first line"
        ]
    );
    let statuses: Vec<&str> = t
        .updates
        .iter()
        .filter(|u| u["update"]["sessionUpdate"] == "tool_call_update")
        .filter_map(|u| u["update"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["completed", "failed", "completed"]);
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn fs_and_terminal_need_capabilities() {
    let (mut c, sid) = ready(false, false);
    let t = c.prompt(&sid, "/read a\n/write b text\n/run true");
    let chunks = t.chunks();
    assert!(
        chunks.iter().any(|s| s.starts_with("read skipped")),
        "{chunks:?}"
    );
    assert!(
        chunks.iter().any(|s| s.starts_with("write skipped")),
        "{chunks:?}"
    );
    assert!(
        chunks.iter().any(|s| s.starts_with("run skipped")),
        "{chunks:?}"
    );
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn write_and_run_go_through_the_client() {
    let (mut c, sid) = ready(true, true);
    let id = c.prompt_id(&sid, "/write out.txt hello world\n/run echo hi");
    let mut methods = Vec::new();
    let t = c.finish(id, |m| {
        let method = m["method"].as_str().unwrap_or("").to_string();
        methods.push(method.clone());
        let p = &m["params"];
        match method.as_str() {
            "fs/write_text_file" => {
                assert_eq!(
                    (p["path"].as_str(), p["content"].as_str()),
                    (Some("/work/space/out.txt"), Some("hello world"))
                );
                Some(Value::Null)
            }
            "terminal/create" => {
                assert_eq!(p["command"], "sh");
                assert_eq!(p["args"], json!(["-c", "echo hi"]));
                assert_eq!(p["cwd"], "/work/space");
                assert_eq!(p["outputByteLimit"], 65536);
                Some(json!({ "terminalId": "t1" }))
            }
            "terminal/wait_for_exit" => Some(json!({ "exitCode": 0, "signal": null })),
            "terminal/output" => Some(json!({ "output": "hi\n", "truncated": false })),
            "terminal/release" => Some(Value::Null),
            _ => None,
        }
    });
    assert_eq!(
        methods,
        [
            "fs/write_text_file",
            "terminal/create",
            "terminal/wait_for_exit",
            "terminal/output",
            "terminal/release"
        ]
    );
    let chunks = t.chunks();
    assert_eq!(chunks[chunks.len() - 2..], ["write ok", "run exit 0: hi"]);
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn sleep_is_cancellable() {
    let (mut c, sid) = ready(false, false);
    let id = c.prompt_id(&sid, "/chunks 1\n/sleep 5000\n/context");
    let first = c.next("the echo");
    assert_eq!(
        first["params"]["update"]["sessionUpdate"],
        "agent_message_chunk"
    );
    let t0 = Instant::now();
    c.send(json!({ "jsonrpc": "2.0", "method": "session/cancel", "params": { "sessionId": sid } }));
    let t = c.finish(id, |m| panic!("unexpected request {m}"));
    assert_eq!(t.stop_reason(), "cancelled");
    assert!(
        t.chunks().is_empty(),
        "nothing after the cancel: {:?}",
        t.chunks()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        t0.elapsed()
    );
    // The session is usable again.
    assert_eq!(c.prompt(&sid, "/chunks 1\nagain").stop_reason(), "end_turn");
}

#[test]
fn sessions_run_concurrently() {
    let (mut c, a) = ready(false, false);
    let b = c.new_session("/other");
    let t0 = Instant::now();
    let ia = c.prompt_id(&a, "/sleep 400\n/context");
    let ib = c.prompt_id(&b, "/sleep 400\n/context");
    let mut done = HashMap::new();
    while done.len() < 2 {
        let m = c.next("both prompts to end");
        if m.get("method").is_none() {
            done.insert(
                m["id"].as_u64().unwrap_or(0),
                m["result"]["stopReason"].clone(),
            );
        }
    }
    assert_eq!(done.get(&ia), Some(&json!("end_turn")));
    assert_eq!(done.get(&ib), Some(&json!("end_turn")));
    assert!(
        t0.elapsed() < Duration::from_millis(790),
        "sessions ran one after the other: {:?}",
        t0.elapsed()
    );
}

#[test]
fn second_prompt_while_busy_is_refused() {
    let (mut c, sid) = ready(false, false);
    let first = c.prompt_id(&sid, "/sleep 300");
    let second = c.prompt_id(&sid, "hello");
    let mut answers = HashMap::new();
    while answers.len() < 2 {
        let m = c.next("both answers");
        if m.get("method").is_none() {
            answers.insert(m["id"].as_u64().unwrap_or(0), m);
        }
    }
    assert_eq!(answers[&second]["error"]["code"], code::BUSY);
    assert_eq!(answers[&first]["result"]["stopReason"], "end_turn");
}

#[test]
fn fail_answers_with_an_error() {
    let (mut c, sid) = ready(false, false);
    let t = c.prompt(&sid, "/chunks 1\n/fail");
    assert_eq!(t.answer["error"]["code"], -32000);
    assert_eq!(t.answer["error"]["message"], "demo failure");
    assert_eq!(t.chunks(), ["echo: /chunks 1\n/fail"]);
}

#[test]
fn invalid_commands_are_reported() {
    let (mut c, sid) = ready(false, false);
    let t = c.prompt(&sid, "/chunks 1\n/sleep later");
    assert!(
        t.chunks()[1].starts_with("ignored `/sleep later`"),
        "{:?}",
        t.chunks()
    );
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn context_counts_earlier_prompts() {
    let (mut c, sid) = ready(false, false);
    let t = c.prompt(&sid, "/chunks 1\n/context");
    assert_eq!(t.chunks()[1], "context: 0 earlier prompts; last: none");
    c.prompt(&sid, "/chunks 1\nsecond one");
    let t = c.prompt(&sid, "/context");
    assert_eq!(
        t.chunks().last().map(String::as_str),
        Some("context: 2 earlier prompts; last: /chunks 1\nsecond one")
    );
}

#[test]
fn load_restores_history_from_the_state_dir() {
    let tmp = TempDir::new("demo-load");
    let dir = tmp.0.clone();
    let opts = DemoOptions {
        state_dir: Some(dir.clone()),
        ..DemoOptions::default()
    };
    let mut c = Client::start(opts.clone());
    c.initialize(false, false);
    let sid = c.new_session("/work/space");
    c.prompt(&sid, "/chunks 1\nremember me");
    drop(c);

    let mut c = Client::start(opts);
    c.initialize(false, false);
    let t = c.call(
        "session/load",
        json!({ "sessionId": sid, "cwd": "/work/space", "mcpServers": [] }),
    );
    assert_eq!(t.answer["result"]["modes"]["currentModeId"], "ask");
    assert_eq!(t.texts("user_message_chunk"), ["/chunks 1\nremember me"]);
    assert_eq!(
        t.texts("agent_message_chunk"),
        ["echo: /chunks 1\nremember me"]
    );
    let t = c.prompt(&sid, "/chunks 1\n/context");
    assert_eq!(
        t.chunks()[1],
        "context: 1 earlier prompts; last: /chunks 1\nremember me"
    );

    let t = c.call(
        "session/load",
        json!({ "sessionId": "demo-unknown", "cwd": "/", "mcpServers": [] }),
    );
    assert_eq!(t.answer["error"]["code"], code::INVALID_PARAMS);
    let t = c.call(
        "session/load",
        json!({ "sessionId": "../../etc/passwd", "cwd": "/", "mcpServers": [] }),
    );
    assert_eq!(t.answer["error"]["code"], code::INVALID_PARAMS);
}

#[test]
fn load_from_memory_without_state_dir() {
    let (mut c, sid) = ready(false, false);
    c.prompt(&sid, "/chunks 1\nin memory");
    let t = c.call(
        "session/load",
        json!({ "sessionId": sid, "cwd": "/work/space", "mcpServers": [] }),
    );
    assert_eq!(t.texts("user_message_chunk"), ["/chunks 1\nin memory"]);
    assert_eq!(t.answer["result"]["modes"]["currentModeId"], "ask");
}

#[test]
fn tour_without_commands() {
    let tmp = TempDir::new("demo-tour");
    let dir = tmp.0.clone();
    std::fs::write(dir.join("README.md"), "# Demo readme\nbody\n").expect("readme");
    let mut c = Client::start(DemoOptions::default());
    c.initialize(true, true);
    let sid = c.new_session(&dir.to_string_lossy());
    let id = c.prompt_id(&sid, "show me around");
    let readme = dir.join("README.md");
    let t = c.finish(id, |m| match m["method"].as_str() {
        Some("session/request_permission") => {
            Some(json!({ "outcome": { "outcome": "selected", "optionId": "allow" } }))
        }
        Some("fs/read_text_file") => {
            assert_eq!(
                Path::new(m["params"]["path"].as_str().unwrap_or("")),
                readme
            );
            Some(json!({ "content": "# Demo readme\nbody\n" }))
        }
        Some("terminal/create") => {
            assert_eq!(m["params"]["args"][1], "echo hello from the terminal");
            Some(json!({ "terminalId": "t9" }))
        }
        Some("terminal/wait_for_exit") => Some(json!({ "exitCode": 0 })),
        Some("terminal/output") => {
            Some(json!({ "output": "hello from the terminal\n", "truncated": false }))
        }
        Some("terminal/release") => Some(Value::Null),
        _ => None,
    });
    let chunks = t.chunks();
    assert_eq!(chunks[0], "echo: show me around");
    assert!(
        chunks.contains(&"permission: allow".to_string()),
        "{chunks:?}"
    );
    assert!(
        chunks.contains(&"read ok: 19 bytes: # Demo readme".to_string()),
        "{chunks:?}"
    );
    assert!(
        chunks.contains(&"run exit 0: hello from the terminal".to_string()),
        "{chunks:?}"
    );
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn flood_mode_streams_stamped_chunks() {
    let opts = DemoOptions {
        flood: 2000,
        frame_bytes: 64,
        ..DemoOptions::default()
    };
    let mut c = Client::start(opts);
    c.initialize(false, false);
    let sid = c.new_session("/");
    let t = c.prompt(&sid, "go");
    assert_eq!(t.updates.len(), 2000);
    for (i, u) in t.updates.iter().enumerate() {
        assert_eq!(u["update"]["_meta"]["n"], i as u64);
    }
    assert_eq!(t.stop_reason(), "end_turn");
}

#[test]
fn messages_are_separated_in_the_chunks_sent() {
    let (mut c, sid) = ready(false, false);
    let t = c.prompt(&sid, "/chunks 1\n/context\n/settings");
    // What a client that appends every chunk shows: the newline between two
    // messages is in the stream itself, not only in the agent's record.
    let sent = t.texts("agent_message_chunk").concat();
    assert_eq!(
        sent,
        "echo: /chunks 1\n/context\n/settings\ncontext: 0 earlier prompts; last: none\nsettings: mode ask; model demo-fast"
    );
    assert_eq!(t.chunks().len(), 3, "{:?}", t.chunks());
    // and the record a load replays holds the same text
    let r = c.call(
        "session/load",
        json!({ "sessionId": sid, "cwd": "/work/space", "mcpServers": [] }),
    );
    assert_eq!(r.texts("agent_message_chunk").concat(), sent);
}

#[test]
fn tool_ids_differ_between_writes_and_reads_point_at_a_line() {
    let tmp = TempDir::new("demo-locations");
    let dir = tmp.0.clone();
    std::fs::write(dir.join("notes.txt"), "one\ntwo\nthree\n").expect("notes");
    let mut c = Client::start(DemoOptions::default());
    c.initialize(true, false);
    let sid = c.new_session(&dir.to_string_lossy());
    let id = c.prompt_id(
        &sid,
        "/chunks 1\n/read notes.txt:2\n/read notes.txt\n/write notes.txt one",
    );
    let t = c.finish(id, |m| match m["method"].as_str() {
        Some("fs/read_text_file") => Some(json!({ "content": "one\ntwo\nthree\n" })),
        Some("fs/write_text_file") => Some(Value::Null),
        _ => None,
    });
    let calls: Vec<&Value> = t
        .updates
        .iter()
        .filter(|u| u["update"]["sessionUpdate"] == "tool_call")
        .map(|u| &u["update"])
        .collect();
    let lines: Vec<&Value> = calls.iter().map(|u| &u["locations"][0]["line"]).collect();
    assert_eq!(lines, [&json!(2), &json!(1), &json!(1)]);
    // a write points at its first changed line
    assert_eq!(turn::first_change("a\nb\nc\n", "a\nb\nC\n"), 3);
    assert_eq!(turn::first_change("a\nb\n", "a\nb\nc\n"), 3);
    assert_eq!(turn::first_change("", "new\n"), 1);
    assert_eq!(turn::first_change("a\nb\nc\n", "a\n"), 1);
    // past the first 4,096 characters too (the old text is whole, not a preview)
    let long: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let changed = long.replace("line 1500\n", "LINE 1500\n");
    assert_eq!(turn::first_change(&long, &changed), 1501);
    let ids: std::collections::HashSet<&str> = calls
        .iter()
        .filter_map(|u| u["toolCallId"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "{calls:?}");
}

/// Set in the child process `tool_ids_are_unique_across_agent_processes` starts.
const TOOL_ID_CHILD: &str = "ACP_RELAY_DEMO_TOOL_ID_CHILD";

/// Run only as that child: prints the id of this process's first tool call.
#[test]
#[ignore = "run by tool_ids_are_unique_across_agent_processes in a child process"]
fn print_first_tool_id() {
    if std::env::var_os(TOOL_ID_CHILD).is_none() {
        return;
    }
    let (mut c, sid) = ready(false, false);
    let id = c.prompt_id(&sid, "/ask");
    let t = c.finish(id, |_| {
        Some(json!({ "outcome": { "outcome": "selected", "optionId": "allow" } }))
    });
    let first = t
        .updates
        .iter()
        .find(|u| u["update"]["sessionUpdate"] == "tool_call")
        .and_then(|u| u["update"]["toolCallId"].as_str())
        .expect("a tool call");
    println!("TOOL-ID={first}");
}

/// A restarted agent is a new process whose counter starts again: its tool
/// ids must still differ from the last one's (a session keeps both).
#[test]
fn tool_ids_are_unique_across_agent_processes() {
    let exe = std::env::current_exe().expect("the test binary");
    let first_id = || {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "demo_agent::tests::print_first_tool_id",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(TOOL_ID_CHILD, "1")
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.split_once("TOOL-ID=").map(|(_, id)| id.trim().to_owned()))
            .unwrap_or_else(|| panic!("no tool id from the child: {text}"))
    };
    let (a, b) = (first_id(), first_id());
    assert!(a.starts_with("tool-") && b.starts_with("tool-"), "{a} {b}");
    assert_ne!(a, b, "two agent processes made the same tool id");
}
