//! Agent terminals live: the output of a command the agent started with
//! `terminal/create` reaches the devices viewing its session as it is
//! printed (`_relay/agent_terminal/output`, escapes intact), and a device
//! that comes late reads what was printed so far (`_relay/agent_terminal/read`).
mod common;
use common::*;
use serde_json::json;

#[test]
fn agent_terminal_output_reaches_the_sessions_viewers_live() {
    let relay = Relay::start_env(&[], &[("SHELL", "/bin/sh"), ("ENV", ""), ("BASH_ENV", "")]);
    let go = relay.workspace.join("go");
    let mut d = relay.device("phone", "");
    let session = open_session(&mut d);
    let id = d.request(
        "session/prompt",
        prompt_params(
            &session,
            "/run printf '\\033[31mred\\033[0m first\\n'; while [ ! -e go ]; do sleep 0.05; done; echo second",
        ),
    );
    // The first line arrives while the command still runs (it waits for `go`).
    let first = d.recv_until("live agent terminal output", |v| {
        v["method"] == "_relay/agent_terminal/output"
            && v["params"]["data"]
                .as_str()
                .is_some_and(|t| t.contains("first"))
    });
    let p = &first["params"];
    assert_eq!(p["sessionId"], session.as_str());
    assert_eq!(
        p["data"].as_str().unwrap(),
        "\u{1b}[31mred\u{1b}[0m first\n",
        "escapes intact"
    );
    let tid = p["terminalId"].as_str().unwrap().to_owned();
    // The tool call names the same terminal.
    d.recv_until("the terminal tool call", |v| {
        v["params"]["update"]["content"][0]["terminalId"] == tid.as_str()
    });

    // A device that comes late reads the output so far.
    let mut late = relay.device("laptop", &format!("session_id={session}"));
    late.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let rid = late.request("_relay/agent_terminal/read", json!({"terminalId": tid}));
    let read = late.response(&rid);
    assert_eq!(
        read["result"]["output"].as_str(),
        Some("\u{1b}[31mred\u{1b}[0m first\n"),
        "{read}"
    );
    assert!(read["result"].get("exitStatus").is_none(), "{read}");
    // Backlog and live chunks carry their stream offset, so a viewer can tell
    // which live chunks the backlog already holds (they come by two paths).
    let first_end = "\u{1b}[31mred\u{1b}[0m first\n".len() as u64;
    assert_eq!(p["end"], first_end, "{first}");
    assert_eq!(read["result"]["_meta"]["relay"]["end"], first_end, "{read}");

    std::fs::write(&go, "").unwrap();
    for dev in [&mut d, &mut late] {
        let second = dev.recv_until("the second line, live", |v| {
            v["method"] == "_relay/agent_terminal/output"
                && v["params"]["terminalId"] == tid.as_str()
                && v["params"]["data"]
                    .as_str()
                    .is_some_and(|t| t.contains("second"))
        });
        assert_eq!(
            second["params"]["end"],
            first_end + "second\n".len() as u64,
            "{second}"
        );
    }
    d.response(&id);
    // Live output is not part of the session's transcript.
    assert!(
        d.seen
            .iter()
            .filter(|v| v["method"] == "_relay/agent_terminal/output")
            .all(|v| v.get("rseq").is_none())
    );
}

#[test]
fn reading_an_unknown_agent_terminal_is_refused() {
    let relay = Relay::start(&[]);
    let mut d = relay.device("d", "");
    open_session(&mut d);
    let rid = d.request(
        "_relay/agent_terminal/read",
        json!({"terminalId": "term-99"}),
    );
    let r = d.response(&rid);
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let rid = d.request("_relay/agent_terminal/read", json!({}));
    assert_eq!(d.response(&rid)["error"]["code"], -32602);
}
