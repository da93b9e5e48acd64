//! Agent lines, branch by branch, and agent lifecycle: early updates, ids
//! rewritten, answers to unknown ids, agent requests and jobs, exits mid-turn
//! with several sessions, and the resume on the next prompt.

use super::*;
use crate::core::rpc::code;
use serde_json::json;

#[test]
fn lines_from_an_unknown_agent_are_ignored() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.agents.entry(AgentId(9)).or_default().alive = true;
    sim.update(AgentId(9), "s1", chunk("x"));
    sim.ask(AgentId(9), 1, "s1");
    assert!(sim.take(a).is_empty());
    assert!(sim.take_agent(AgentId(9)).is_empty());
}

#[test]
fn updates_for_a_session_not_yet_named_are_held_then_flushed_in_order() {
    let mut sim = Sim::new(RouterConfig::default());
    let a = sim.open("a");
    sim.take(a);
    sim.answer(A1, "initialize", init_result(json!({})));
    sim.update(A1, "x1", chunk("early1"));
    sim.update(A1, "x1", chunk("early2"));
    sim.update(A1, "other", chunk("not mine"));
    sim.answer(A1, "session/new", json!({"sessionId": "x1"}));
    assert_eq!(
        sim.take(a),
        vec![
            stamped(1, update_line("x1", chunk("early1"))),
            stamped(2, update_line("x1", chunk("early2"))),
        ]
    );
    assert_eq!(sim.r.links[&A1].early.len(), 1);
}

#[test]
fn early_updates_are_bounded() {
    let mut sim = Sim::new(RouterConfig::default());
    sim.answer(A1, "initialize", init_result(json!({})));
    for i in 0..(MAX_EARLY_UPDATES + 5) {
        sim.update(A1, "x", chunk(&i.to_string()));
    }
    assert_eq!(sim.r.links[&A1].early.len(), MAX_EARLY_UPDATES);
}

#[test]
fn updates_are_renamed_when_the_relay_id_differs() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    assert_eq!(sim.new_session(a, 2, A1, "s1"), "s1~2");
    sim.clear();
    // The agent's second session is also "s1": its updates are for "s1~2"'s unit.
    sim.update(A1, "s1", chunk("x"));
    assert_eq!(
        sim.take(a),
        vec![stamped(1, update_line("s1~2", chunk("x")))]
    );
}

#[test]
fn an_update_with_params_that_are_not_an_object_is_dropped() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.agent_raw(
        A1,
        br#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":7}}"#,
    );
    assert!(sim.take(a).is_empty());
    sim.agent_raw(A1, b"not json at all");
    assert_eq!(
        sim.take(a),
        vec![note(
            "_relay/agent/log_line",
            json!({"agent": 1, "sessionId": "s1", "stream": "stdout", "text": "not json at all", "t": sim.now})
        )]
    );
    assert_eq!(sim.r.units[&sim.r.default_unit].hub.ring.head(), 0);
}

#[test]
fn answers_to_ids_the_relay_never_sent_are_ignored() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.agent_says(A1, ok(json!(999), json!({})));
    sim.agent_says(A1, ok(json!("x"), json!({})));
    assert!(sim.take(a).is_empty());
    assert!(sim.take_agent(A1).is_empty());
}

#[test]
fn a_failed_initialize_ends_the_agent() {
    let mut sim = Sim::new(RouterConfig::default());
    sim.answer_err(A1, "initialize", json!({"code": -1, "message": "no"}));
    assert!(sim.agents[&A1].killed);
}

#[test]
fn agent_requests_the_relay_does_not_serve_are_method_not_found() {
    let mut sim = Sim::boot();
    sim.agent_says(A1, req(json!(4), "weird/thing", json!({})));
    assert_eq!(
        sim.take_agent(A1),
        vec![err(
            json!(4),
            code::METHOD_NOT_FOUND,
            "method not found: weird/thing"
        )]
    );
}

#[test]
fn agent_fs_requests_become_jobs_and_writes_are_announced() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.agent_says(
        A1,
        req(
            json!(4),
            "fs/write_text_file",
            json!({"sessionId": "s1", "path": "/x/f", "content": "c"}),
        ),
    );
    let job = sim.jobs.pop_front().expect("a job");
    assert_eq!(
        (job.method.as_str(), job.deadline),
        ("fs/write_text_file", false)
    );
    sim.feed(Input::JobDone {
        job: job.job,
        result: Ok(json!(null)),
    });
    assert_eq!(sim.take_agent(A1), vec![ok(json!(4), json!(null))]);
    assert_eq!(
        sim.take(a),
        vec![note(
            "_relay/workspace_changed",
            json!({"path": "x/f", "by": "agent", "project": "workspace"})
        )]
    );
    sim.agent_says(
        A1,
        req(json!(5), "fs/read_text_file", json!({"path": "/nope"})),
    );
    let job = sim.jobs.pop_front().expect("a job");
    sim.feed(Input::JobDone {
        job: job.job,
        result: Err(RpcError::new(-32002, "Resource not found")),
    });
    assert_eq!(
        sim.take_agent(A1),
        vec![err(json!(5), -32002, "Resource not found")]
    );
    assert!(sim.take(a).is_empty());
}

#[test]
fn an_agents_terminals_are_released_when_it_exits() {
    let mut sim = Sim::boot();
    sim.agent_says(
        A1,
        req(
            json!(4),
            "terminal/create",
            json!({"sessionId": "s1", "command": "ls"}),
        ),
    );
    let job = sim.jobs.pop_front().expect("a job");
    sim.feed(Input::JobDone {
        job: job.job,
        result: Ok(json!({"terminalId": "t9"})),
    });
    assert_eq!(
        sim.take_agent(A1),
        vec![ok(json!(4), json!({"terminalId": "t9"}))]
    );
    sim.exit(A1, "killed");
    let job = sim.jobs.pop_front().expect("a clean-up job");
    assert_eq!(
        (job.method.as_str(), &job.params),
        ("terminal/release", &json!({"terminalId": "t9"}))
    );
    sim.feed(Input::JobDone {
        job: job.job,
        result: Ok(json!({})),
    });
    assert!(
        sim.take_agent(A1).is_empty(),
        "nothing is written to a dead agent"
    );
}

/// Two sessions on the shared agent, a turn in one with an open ask: each
/// session hears the exit, the turn fails to its prompter, the ask settles.
#[test]
fn an_agent_exit_mid_turn_ends_every_session_of_it() {
    let mut sim = Sim::boot();
    let a = sim.two_sessions();
    let b = sim.open_at("b", Some("s1"), None);
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s2", "go")),
    );
    sim.ask(A1, 70, "s2");
    sim.clear();
    sim.exit(A1, "signal 9");
    let why = "the agent exited (signal 9); send the prompt again to start a fresh agent";
    assert_eq!(
        sim.take(a),
        vec![
            stamped(
                3,
                resolved("perm:s2:1", json!({"outcome": "cancelled"}), "agent-exit")
            ),
            stamped(
                4,
                note(
                    "_relay/agent_exited",
                    json!({"sessionId": "s2", "status": "signal 9"})
                )
            ),
            stamped(5, err(json!("p"), code::OTHER, why)),
        ]
    );
    assert_eq!(
        sim.take(b),
        vec![stamped(
            1,
            note(
                "_relay/agent_exited",
                json!({"sessionId": "s1", "status": "signal 9"})
            )
        )]
    );
    assert!(sim.take_agent(A1).is_empty());
    let u = &sim.r.units[&sim.unit_of("s2")];
    assert_eq!(
        (
            u.driver.phase,
            u.driver.agent,
            u.driver.resume_from.as_deref()
        ),
        (Phase::Idle, None, Some("s2"))
    );
    assert!(!u.busy());
}

#[test]
fn forwarded_requests_in_flight_fail_when_the_agent_exits() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.send(
        a,
        req(json!("m"), "session/set_mode", json!({"sessionId": "s1"})),
    );
    sim.clear();
    sim.exit(A1, "exit status 1");
    let out = sim.take(a);
    assert_eq!(
        out[0],
        err(
            json!("m"),
            code::OTHER,
            "the agent exited (exit status 1); send the prompt again to start a fresh agent"
        )
    );
}

#[test]
fn the_next_prompt_after_an_exit_resumes_on_a_fresh_agent() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.exit(A1, "gone");
    sim.clear();
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "again")),
    );
    assert!(sim.agents[&A2].alive, "a second agent was spawned");
    let init = sim.pending(A2, "initialize");
    sim.agent_says(A2, ok(init.id, init_result(json!({"loadSession": true}))));
    let load = sim.pending(A2, "session/load");
    assert_eq!(load.params["sessionId"], json!("s1"));
    sim.agent_says(A2, ok(load.id, json!({})));
    sim.quiet();
    assert_eq!(
        sim.take(a),
        vec![stamped(2, echo("s1", "a", json!("p"), "again"))]
    );
    assert!(sim.has_pending(A2, "session/prompt"));
}

#[test]
fn an_agent_that_dies_while_opening_fails_the_lines_waiting_for_it() {
    let mut sim = Sim::new(RouterConfig::default());
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, req(json!(1), "initialize", json!({})));
    sim.exit(A1, "could not start: ENOENT");
    assert_eq!(
        sim.take(a),
        vec![
            stamped(
                1,
                note(
                    "_relay/agent_exited",
                    json!({"sessionId": null, "status": "could not start: ENOENT"})
                )
            ),
            err(
                json!(1),
                code::OTHER,
                "the agent exited (could not start: ENOENT) before the session was open; check --agent and the log, then retry"
            ),
        ]
    );
}

#[test]
fn a_per_session_agent_ends_with_its_session() {
    let mut sim = Sim::boot_with(RouterConfig {
        agent_per_session: true,
        ..RouterConfig::default()
    });
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    sim.send(a, req(json!(2), "session/new", json!({})));
    let init = sim.pending(A2, "initialize");
    sim.agent_says(A2, ok(init.id, init_result(json!({}))));
    sim.answer(A2, "session/new", json!({"sessionId": "p2"}));
    sim.send(
        a,
        req(json!(3), "session/close", json!({"sessionId": "p2"})),
    );
    assert!(sim.agents[&A2].killed);
    assert!(!sim.agents[&A1].killed);
}

/// Two per-session agents starting: one dies; only the lines waiting for it fail.
#[test]
fn a_dead_agent_fails_only_the_lines_waiting_for_it() {
    let mut sim = Sim::boot_with(RouterConfig {
        agent_per_session: true,
        ..RouterConfig::default()
    });
    let a = sim.open("a");
    let b = sim.open("b");
    sim.new_session(a, 1, A1, "unused");
    // Two sessions whose agents (2 and 3) are still starting, a prompt waiting on each.
    sim.send(a, req(json!(2), "session/new", json!({})));
    sim.send(b, req(json!(3), "session/new", json!({})));
    let init2 = sim.pending(A2, "initialize");
    sim.agent_says(A2, ok(init2.id, init_result(json!({}))));
    sim.answer(A2, "session/new", json!({"sessionId": "p2"}));
    let init3 = sim.pending(AgentId(3), "initialize");
    sim.agent_says(AgentId(3), ok(init3.id, init_result(json!({}))));
    sim.answer(AgentId(3), "session/new", json!({"sessionId": "p3"}));
    sim.exit(A2, "crash");
    sim.exit(AgentId(3), "crash");
    // Both sessions are idle now; prompts respawn agents 4 and 5.
    sim.send(
        a,
        req(json!("pa"), "session/prompt", prompt_params("p2", "x")),
    );
    sim.send(
        b,
        req(json!("pb"), "session/prompt", prompt_params("p3", "y")),
    );
    assert_eq!(sim.r.deferred.len(), 2);
    sim.clear();
    sim.exit(AgentId(4), "could not start");
    let out = sim.take(a);
    assert!(
        out.iter()
            .any(|f| f["id"] == json!("pa") && f["error"].is_object()),
        "{out:?}"
    );
    assert!(sim.take(b).iter().all(|f| f["id"] != json!("pb")));
    assert_eq!(
        sim.r.deferred.len(),
        1,
        "b's prompt still waits for agent 5"
    );
    let init5 = sim.pending(AgentId(5), "initialize");
    sim.agent_says(
        AgentId(5),
        ok(init5.id, init_result(json!({"loadSession": true}))),
    );
    sim.answer(AgentId(5), "session/load", json!({}));
    sim.quiet();
    assert!(sim.has_pending(AgentId(5), "session/prompt"));
}

#[test]
fn agent_stderr_reaches_the_viewers_of_its_sessions_and_the_log() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let p = sim.open_plain("p");
    sim.send(p, req(json!(1), "session/load", json!({"sessionId": "s1"})));
    sim.clear();
    sim.feed(Input::AgentStderr {
        agent: A1,
        line: b"Visit https://login.example/x to sign in",
    });
    let t = sim.now;
    assert_eq!(
        sim.take(a),
        vec![note(
            "_relay/agent/log_line",
            json!({"agent": 1, "sessionId": "s1", "stream": "stderr", "text": "Visit https://login.example/x to sign in", "t": t})
        )]
    );
    assert!(sim.take(p).is_empty(), "relay extensions never reach /acp");
    sim.agent_raw(A1, b"Enter the authorization code:");
    sim.take(a);
    sim.send(a, req(json!(2), "_relay/agent/log", json!({})));
    assert_eq!(
        sim.take(a),
        vec![ok(
            json!(2),
            json!({"agent": 1, "lines": [
                {"t": t, "stream": "stderr", "text": "Visit https://login.example/x to sign in"},
                {"t": t + 1, "stream": "stdout", "text": "Enter the authorization code:"},
            ]})
        )]
    );
}

#[test]
fn the_agent_log_is_bounded_and_outlives_the_agent() {
    use super::super::agent_log::{AGENT_LOG_LINE_BYTES, AGENT_LOG_LINES};
    let mut sim = Sim::boot();
    let a = sim.open("a");
    for i in 0..(AGENT_LOG_LINES + 50) {
        let line = format!("line {i}");
        sim.feed(Input::AgentStderr {
            agent: A1,
            line: line.as_bytes(),
        });
    }
    let long = vec![b'x'; AGENT_LOG_LINE_BYTES * 2];
    sim.feed(Input::AgentStderr {
        agent: A1,
        line: &long,
    });
    sim.feed(Input::AgentStderr {
        agent: A1,
        line: b"\xff\xfe bad utf-8",
    });
    sim.exit(A1, "crashed");
    sim.clear();
    sim.send(
        a,
        req(json!(2), "_relay/agent/log", json!({"sessionId": "s1"})),
    );
    let out = sim.take(a);
    let lines = out[0]["result"]["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(lines.len(), AGENT_LOG_LINES);
    assert_eq!(lines[0]["text"], json!("line 52"));
    let cut = lines[AGENT_LOG_LINES - 2]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(cut.len() <= AGENT_LOG_LINE_BYTES + 3 && cut.ends_with('…'));
    assert_eq!(
        out[0]["result"]["agent"],
        json!(1),
        "a dead agent's log stays readable"
    );
}

#[test]
fn agent_notifications_other_than_updates_reach_the_viewers_as_they_are() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let p = sim.open_plain("p");
    sim.send(p, req(json!(1), "session/load", json!({"sessionId": "s1"})));
    let b = sim.open("b");
    sim.new_session(b, 1, A1, "unused");
    sim.new_session(b, 2, A1, "s2");
    sim.clear();
    let line = br#"{"jsonrpc":"2.0","method":"_auth/status_update","params":{"state":"waiting"}}"#;
    sim.agent_raw(A1, line);
    assert_eq!(sim.take_raw(a), vec![Frame::from_static(line)]);
    assert_eq!(sim.take_raw(p), vec![Frame::from_static(line)]);
    assert_eq!(
        sim.take_raw(b),
        vec![Frame::from_static(line)],
        "once, for s2"
    );
}

#[test]
fn an_agents_own_rseq_key_is_removed_before_stamping() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.clear();
    sim.agent_raw(
        A1,
        br#"{"rseq":99,"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"plan","rseq":"inner stays"}}}"#,
    );
    let raw = sim.take_raw(a);
    assert_eq!(raw.len(), 1);
    let text = String::from_utf8_lossy(&raw[0]).into_owned();
    assert!(text.starts_with("{\"rseq\":1,"), "{text}");
    assert_eq!(
        text.matches("\"rseq\":").count(),
        2,
        "one top-level key: {text}"
    );
    assert_eq!(
        parse(&raw[0])["params"]["update"]["rseq"],
        json!("inner stays")
    );
}

#[test]
fn an_update_with_invalid_utf8_is_refused_before_it_is_numbered() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.clear();
    sim.agent_raw(
        A1,
        b"{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":{\"sessionId\":\"s1\",\"update\":{\"sessionUpdate\":\"agent_message_chunk\",\"content\":{\"type\":\"text\",\"text\":\"\xff\xfe\"}}}}",
    );
    let out = sim.take(a);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]["method"],
        json!("_relay/agent/log_line"),
        "only the log line: {out:?}"
    );
    assert_eq!(
        sim.r.units[&sim.r.default_unit].hub.ring.head(),
        0,
        "no rseq used"
    );
    sim.update(A1, "s1", chunk("next"));
    assert_eq!(
        sim.take(a),
        vec![stamped(1, update_line("s1", chunk("next")))]
    );
}
