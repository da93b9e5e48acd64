//! Agent edges over the real binary, with scripted agents
//! (tests/interop/quirk_agent.py): a request the agent never answers ends in
//! an error at the deadline; `session/load` answers carry the agent's current
//! modes (after a `set_mode`, and after a relay restart); an agent that
//! answers `session/load` before streaming its history (gemini) does not get
//! that history stamped as new frames.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use bridge::*;
use serde_json::{Value, json};

fn init(d: &mut Device) {
    d.recv_until("relay_welcome", |v| v["type"] == "relay_welcome");
    let id = d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    d.response(&id);
}

#[test]
fn a_request_the_agent_never_answers_ends_in_an_error_at_the_deadline() {
    let Some(relay) = quirk_relay("never_answers", "never_answers", &["--agent-timeout", "1"])
    else {
        return;
    };
    let mut d = relay.device("a", "");
    init(&mut d);
    let id = d.request("authenticate", json!({"methodId": "oauth-personal"}));
    let r = d.response(&id);
    assert_eq!(r["error"]["code"], -32013, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("did not answer authenticate within 1 s"),
        "{r}"
    );
}

fn load(d: &mut Device, sid: &str) -> Value {
    let id = d.request(
        "session/load",
        json!({"sessionId": sid, "cwd": "/", "mcpServers": []}),
    );
    d.response(&id)
}

#[test]
fn load_answers_carry_the_agents_state_and_its_replay_is_never_restamped() {
    let Some(mut relay) = quirk_relay("load_history", "load_history", &[]) else {
        return;
    };
    let mut d = relay.device("a", "");
    init(&mut d);
    let id = d.request("session/new", json!({"cwd": "/", "mcpServers": []}));
    let r = d.response(&id);
    assert_eq!(r["result"]["modes"]["currentModeId"], "auto", "{r}");
    let sid = r["result"]["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = d.request("session/prompt", prompt_params(&sid, "first question"));
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
    let id = d.request(
        "session/set_mode",
        json!({"sessionId": sid, "modeId": "default"}),
    );
    assert!(d.response(&id).get("error").is_none());
    // Live: the cached answer follows the accepted set_mode.
    let r = load(&mut d, &sid);
    assert_eq!(
        r["result"]["modes"]["currentModeId"], "default",
        "live load: {r}"
    );
    let head = d
        .raw
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok()?["rseq"].as_u64())
        .max()
        .unwrap_or(0);
    d.close();

    relay.terminate();
    relay.launch("127.0.0.1:0");
    let mut d = relay.device("b", &format!("session_id={sid}&last_seq={head}"));
    init(&mut d);
    // After the restart the answer is the agent's own load answer.
    let r = load(&mut d, &sid);
    assert_eq!(
        r["result"]["modes"]["currentModeId"], "default",
        "after restart: {r}"
    );
    d.seen.clear();
    let id = d.request("session/prompt", prompt_params(&sid, "second question"));
    let done = d.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    let frames = stamped_of(&d, &done);
    let text: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
    assert!(
        !text.iter().any(|t| t.contains("first question")),
        "the agent's replay was stamped as new frames:\n{}",
        text.join("\n")
    );
    assert!(
        agent_text(&frames).contains("second question"),
        "{}",
        text.join("\n")
    );
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["rseq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "rseq +1: {seqs:?}"
    );
}

/// What an agent prints off the protocol (a banner on stdout, its stderr)
/// is in its log, readable by a device.
#[test]
fn an_agents_stderr_and_stray_stdout_are_read_by_a_device() {
    let Some(relay) = quirk_relay("agent_log", "stdout_logs", &[]) else {
        return;
    };
    let mut d = relay.device("a", "");
    init(&mut d);
    let deadline = std::time::Instant::now() + WAIT;
    let lines = loop {
        let id = d.request("_relay/agent/log", json!({}));
        let r = d.response(&id);
        let lines = r["result"]["lines"].as_array().cloned().unwrap_or_default();
        let has = |stream: &str, needle: &str| {
            lines.iter().any(|l| {
                l["stream"] == stream && l["text"].as_str().is_some_and(|t| t.contains(needle))
            })
        };
        if has("stderr", "[quirk-agent stdout_logs] started")
            && has("stdout", "this banner is not JSON")
        {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent log never showed both lines: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(lines.iter().all(|l| l["t"].is_u64()), "{lines:?}");
}

#[test]
fn no_agent_runs_until_a_device_needs_one() {
    let relay = Relay::start(&[]);
    // Up and serving (a device got its welcome and a session list), and
    // still no agent process: on a Pi that reboots at night, nothing starts.
    let mut d = relay.device("d", "");
    let id = d.request("session/list", json!({}));
    assert!(d.response(&id).get("result").is_some());
    assert_eq!(
        agent_children(relay.pid()).len(),
        0,
        "an agent started before anyone needed it"
    );
    assert!(!relay.log().contains("started `"), "{}", relay.log());
    // The first initialize starts the default agent and answers with its
    // capabilities.
    let id = d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    let init = d.response(&id);
    assert!(init["result"]["agentCapabilities"].is_object(), "{init}");
    assert_eq!(agent_children(relay.pid()).len(), 1);
}
