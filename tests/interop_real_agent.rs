//! A real coding agent from npm behind the relay: `@zed-industries/codex-acp`
//! (installed by scripts/setup-interop.sh) driven by the scripted model
//! tests/interop/fake_model.py on loopback (OpenAI Responses API, SSE), with
//! its own HOME and CODEX_HOME per run. One tool-using turn (the agent runs a
//! shell command after a permission ask that a device answers), two devices
//! seeing the same numbered frames, a relay `kill -9` right after the turn's
//! end, a restart on the same data dir and a `session/load` that replays
//! exactly what the devices saw; then the agent resumes its own history.
//! Under CI=true a missing agent fails the test.
mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TEST: &str = "codex_acp_tool_turn_ask_kill9_restart_and_load";

/// The codex-acp native binary for this machine, or why not.
fn codex_acp() -> Result<PathBuf, String> {
    let plat = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        (os, arch) => return Err(format!("codex-acp ships no build for {os}-{arch}")),
    };
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/interop/agent/node_modules/@zed-industries/codex-acp-{plat}/bin/codex-acp"
    ));
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: run scripts/setup-interop.sh (installs npm @zed-industries/codex-acp; needs Node.js 20+ and the npm registry)",
            bin.display()
        ))
    }
}

/// tests/interop/fake_model.py on an ephemeral loopback port.
struct FakeModel {
    _proc: GroupGuard,
    port: u16,
    log: PathBuf,
}

impl FakeModel {
    fn start(dir: &Path) -> FakeModel {
        let log = dir.join("model-requests.jsonl");
        let mut cmd = Command::new("python3");
        cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/fake_model.py"))
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = GroupGuard::spawn(cmd).expect("spawn python3 fake_model.py");
        let mut line = String::new();
        BufReader::new(proc.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("fake model's address line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("fake model printed {line:?}"));
        FakeModel {
            _proc: proc,
            port,
            log,
        }
    }

    /// The `input` items of every request the model got, as text.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Processes running the codex-acp binary among `pids`.
fn codex_procs(pids: &[u32]) -> Vec<Proc> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("codex-acp"))
        })
        .filter_map(Proc::of_live)
        .collect()
}

/// The permission option of `kind` (`allow_once`, ...).
fn option_of(ask: &Value, kind: &str) -> Value {
    ask["params"]["options"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["kind"] == kind))
        .map(|o| o["optionId"].clone())
        .unwrap_or_else(|| panic!("no {kind} option in {ask}"))
}

/// Every stamped frame a device received (in the order received), by rseq.
fn stamped(d: &Device) -> Vec<(u64, Value)> {
    d.raw
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter_map(|v| Some((v.get("rseq")?.as_u64()?, v)))
        .collect()
}

#[test]
fn codex_acp_tool_turn_ask_kill9_restart_and_load() {
    let bin = match codex_acp() {
        Ok(b) => b,
        Err(why) => return peer_missing(TEST, &why),
    };
    if python3_runs().is_none() {
        return peer_missing(TEST, "python3 is not installed (runs the fake model)");
    }
    let tmp = TempDir::new("real-agent");
    let model = FakeModel::start(tmp.path());
    let codex_home = tmp.path().join("codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    // The agent's provider points at the fake model; no sandbox (that needs
    // bubblewrap) but every command that is not known-safe asks first.
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"fake-model\"\nmodel_provider = \"fake\"\napproval_policy = \"untrusted\"\n\
             sandbox_mode = \"danger-full-access\"\n\n[model_providers.fake]\nname = \"fake\"\n\
             base_url = \"http://127.0.0.1:{}/v1\"\nenv_key = \"OPENAI_API_KEY\"\nwire_api = \"responses\"\n",
            model.port
        ),
    )
    .unwrap();
    let agent = bin.to_str().unwrap().to_owned();
    let mut relay = Relay::start_env(
        &["--agent", &agent],
        &[
            ("CODEX_HOME", codex_home.to_str().unwrap()),
            ("OPENAI_API_KEY", "dummy"),
            ("RUST_LOG", "warn"),
        ],
    );
    let cwd = relay.workspace.to_str().unwrap().to_owned();

    let mut a = relay.device("a", "");
    a.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = a.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{"fs":{"readTextFile":true,"writeTextFile":true},"terminal":true}}),
    );
    let init = a.response(&id);
    assert_eq!(
        init["result"]["agentInfo"]["name"], "codex-acp",
        "the relay forwards the real agent's identity: {init}"
    );
    let id = a.request("session/new", json!({"cwd": cwd, "mcpServers": []}));
    let r = a.response(&id);
    let sid = r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new: {r}\nrelay log:\n{}", relay.log()))
        .to_owned();
    let mut b = relay.device("b", &format!("session_id={sid}"));
    b.recv_until("b's welcome", |v| v["type"] == "relay_welcome");

    // One tool-using turn: the model asks for a shell command, the agent asks
    // the devices, device a allows it, the command runs, the model sums up.
    let turn = a.request(
        "session/prompt",
        prompt_params(&sid, "RUN: echo relay-proof > proof.txt"),
    );
    let ask = a.recv_until("the permission ask", |v| {
        v["method"] == "session/request_permission"
    });
    let ask_b = b.recv_until("the ask on b", |v| {
        v["method"] == "session/request_permission"
    });
    assert_eq!(ask["id"], ask_b["id"], "one ask, fanned to both devices");
    assert_eq!(ask["params"]["toolCall"]["kind"], "execute", "{ask}");
    let allow = option_of(&ask, "allow_once");
    a.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":allow}}}));
    let done = a.response(&turn);
    assert_eq!(
        done["result"]["stopReason"],
        "end_turn",
        "{done}\nrelay log:\n{}",
        relay.log()
    );
    let head = done["rseq"]
        .as_u64()
        .unwrap_or_else(|| panic!("the turn's end is a stamped frame: {done}"));
    assert_eq!(
        std::fs::read_to_string(relay.workspace.join("proof.txt"))
            .unwrap_or_default()
            .trim(),
        "relay-proof",
        "the agent ran the allowed command in the workspace"
    );
    let seen_a = stamped_of(&a, &done);
    assert!(
        seen_a
            .iter()
            .any(|v| v["params"]["update"]["sessionUpdate"] == "tool_call"),
        "{seen_a:?}"
    );
    assert!(agent_text(&seen_a).contains("tool said"), "{seen_a:?}");
    let b_done = b.response(&turn);
    assert_eq!(b_done, done, "b sees the same turn end");
    let frames_a = stamped(&a);
    let frames_b = stamped(&b);
    // Each device's numbers go up by one; b attached after the session's
    // first frames, so it holds a suffix of a's.
    for w in frames_a.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "a's rseq +1: {frames_a:?}");
    }
    assert!(
        frames_a.ends_with(&frames_b),
        "both devices hold the same numbered frames:\na: {frames_a:?}\nb: {frames_b:?}"
    );

    // kill -9 right after the turn's end reached the devices.
    let before = codex_procs(&relay.descendants());
    assert_eq!(before.len(), 1, "one codex-acp process: {before:?}");
    a.close();
    b.close();
    relay.kill9();
    // codex-acp ignores stdin EOF: it must die with the relay anyway.
    wait_until("codex-acp to end with the SIGKILLed relay", WAIT, || {
        before.iter().all(|p| !p.alive())
    });

    // Same data dir, new process: the load replays what the devices saw.
    relay.launch("127.0.0.1:0");
    let mut c = relay.device("c", "");
    c.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = c.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{"fs":{"readTextFile":true,"writeTextFile":true},"terminal":true}}),
    );
    c.response(&id);
    let id = c.request(
        "session/load",
        json!({"sessionId": sid, "cwd": cwd, "mcpServers": []}),
    );
    let w = c.recv_until("welcome of the loaded session", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == sid.as_str()
    });
    assert!(
        w["headSeq"].as_u64().is_some_and(|h| h >= head),
        "the turn's end (rseq {head}) survived the kill -9: {w}"
    );
    let load = c.response(&id);
    assert!(
        load.get("error").is_none(),
        "session/load after the restart: {load}\nrelay log:\n{}",
        relay.log()
    );
    let replay = stamped(&c);
    let replayed: Vec<&(u64, Value)> = replay.iter().filter(|(n, _)| *n <= head).collect();
    let expected: Vec<&(u64, Value)> = frames_a.iter().collect();
    assert_eq!(
        replayed, expected,
        "the replay after the restart is exactly what device a saw, numbered as before"
    );

    // The agent resumed its own history: the next turn's model request
    // carries the first turn's prompt.
    c.seen.clear();
    let turn = c.request("session/prompt", prompt_params(&sid, "hello again"));
    let done2 = c.response(&turn);
    assert_eq!(done2["result"]["stopReason"], "end_turn", "{done2}");
    assert!(
        done2["rseq"].as_u64().is_some_and(|n| n > head),
        "new frames get new numbers: {done2}"
    );
    let text = agent_text(&stamped_of(&c, &done2));
    assert!(text.contains("fake model heard: hello again"), "{text}");
    let last = model.requests().pop().unwrap_or_default();
    assert!(
        last.contains("hello again") && last.contains("relay-proof"),
        "codex-acp loaded its session: the model sees the earlier turn: {last}"
    );
    let after = codex_procs(&relay.descendants());
    assert_eq!(
        after.len(),
        1,
        "one codex-acp process after restart + load: {after:?}"
    );
}

fn python3_runs() -> Option<()> {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| ())
}
