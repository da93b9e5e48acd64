//! An agent that dies mid-turn never takes the relay down: viewers get an error
//! frame and the next prompt starts a fresh agent.
mod common;
use common::*;

#[test]
fn killing_the_agent_mid_turn() {
    let relay = Relay::start(&[]);
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    let id = d.request(
        "session/prompt",
        prompt_params(&session, "/chunks 1\n/sleep 20000\nlong"),
    );
    d.recv_until("first chunk", |v| chunk_contains(v, "echo"));
    let agents = agent_children(relay.pid());
    assert_eq!(agents.len(), 1, "one shared agent: {agents:?}");
    unsafe_kill(agents[0], "KILL");

    let err = d.response(&id);
    assert!(
        err["rseq"].is_u64(),
        "the error is a stamped frame every viewer gets: {err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent exited"),
        "{err}"
    );
    assert!(d.seen.iter().any(|v| v["method"] == "_relay/agent_exited"));

    // The next prompt works, on the same relay session id.
    let id = d.request(
        "session/prompt",
        prompt_params(&session, "/chunks 1\n/context\nagain"),
    );
    let done = d.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    // The demo agent resumed its history through session/load.
    assert!(
        agent_text(&d.seen).contains("context: 1 earlier prompts"),
        "{}",
        agent_text(&d.seen)
    );
    let agents2 = agent_children(relay.pid());
    assert_eq!(agents2.len(), 1);
    assert_ne!(agents2, agents);
}

#[test]
fn exit_mid_turn_then_sigterm_leaves_no_children() {
    let mut relay = Relay::start(&[]);
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    let id = d.request(
        "session/prompt",
        prompt_params(&session, "/chunks 1\n/exit"),
    );
    let err = d.response(&id);
    assert!(err.get("error").is_some(), "{err}");
    // A duration no other test uses names the background command.
    let marker = format!("sleep 30.{}", std::process::id());
    let id = d.request(
        "session/prompt",
        prompt_params(&session, &format!("/run {marker} & echo started\n")),
    );
    d.recv_until("run output", |v| chunk_contains(v, "started"));
    let _ = d.response(&id);
    let mut bg = None;
    wait_until("the background command", WAIT, || {
        bg = running_with_cmdline(&marker).first().copied();
        bg.is_some()
    });
    // Everything the relay started (the agent, and the background command
    // its shell left behind, already re-parented), named by pid and start
    // time so a reused pid is never confused with it. Taken before the exit:
    // afterwards nothing links these processes to the relay any more.
    let mut before: Vec<Proc> = relay
        .descendants()
        .into_iter()
        .filter_map(Proc::of_live)
        .collect();
    before.extend(bg.and_then(Proc::of_live));
    assert!(
        before.len() >= 2,
        "the agent and the background command run: {before:?}"
    );
    assert_eq!(relay.terminate(), Some(0), "SIGTERM exits 0");
    let leftover = || {
        before
            .iter()
            .filter(|p| p.alive())
            .copied()
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !leftover().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "processes the relay started outlived its SIGTERM: {:?}",
            leftover()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn shared_agent_crash_fails_every_in_flight_turn_and_each_session_resumes() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("a", "");
    let mut b = relay.device("b", "");
    let sa = open_session(&mut a);
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = b.request(
        "session/new",
        serde_json::json!({"cwd":"/","mcpServers":[]}),
    );
    let sb = b.response(&id)["result"]["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    // One earlier turn each, so each has context to resume.
    for (d, s, word) in [(&mut a, &sa, "apple"), (&mut b, &sb, "banana")] {
        let id = d.request(
            "session/prompt",
            prompt_params(s, &format!("/chunks 1\n{word}")),
        );
        d.response(&id);
    }
    let ta = a.request(
        "session/prompt",
        prompt_params(&sa, "/chunks 1\n/sleep 20000\nlong a"),
    );
    let tb = b.request(
        "session/prompt",
        prompt_params(&sb, "/chunks 1\n/sleep 20000\nlong b"),
    );
    a.recv_until("a streaming", |v| chunk_contains(v, "long a"));
    b.recv_until("b streaming", |v| chunk_contains(v, "long b"));
    let agents = agent_children(relay.pid());
    assert_eq!(agents.len(), 1, "one shared agent");
    unsafe_kill(agents[0], "KILL");
    assert!(a.response(&ta).get("error").is_some());
    assert!(b.response(&tb).get("error").is_some());

    for (d, s, word) in [(&mut a, &sa, "apple"), (&mut b, &sb, "banana")] {
        let id = d.request("session/prompt", prompt_params(s, "/context"));
        assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
        let text = agent_text(&d.seen);
        assert!(
            text.contains(&format!(
                "context: 2 earlier prompts; last: /chunks 1\n/sleep 20000\nlong {}",
                &word[..1]
            )),
            "{text}"
        );
    }
}

#[test]
fn a_dead_agents_commands_are_ended() {
    let relay = Relay::start(&[]);
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    let marker = format!("sleep 40.{}", std::process::id());
    let id = d.request(
        "session/prompt",
        prompt_params(&session, &format!("/run {marker}")),
    );
    d.recv_until("execute tool call", |v| {
        v["params"]["update"]["kind"] == "execute"
    });
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == marker)
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe_kill(agent_children(relay.pid())[0], "KILL");
    assert!(d.response(&id).get("error").is_some());
    while running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead agent's command still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
