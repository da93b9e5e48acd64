//! Device requests, branch by branch: initialize, prompt, cancel, list,
//! forwarded methods, jobs, refusals and malformed lines.

use super::*;
use crate::core::rpc::code;
use serde_json::json;

#[test]
fn initialize_is_answered_from_the_agent_with_relay_capabilities() {
    let mut sim = Sim::boot();
    let s = sim.open("a");
    sim.take(s);
    sim.send(
        s,
        req(json!(0), "initialize", json!({"protocolVersion": 1})),
    );
    let out = sim.take(s);
    assert_eq!(out.len(), 1);
    let r = &out[0]["result"];
    assert_eq!(out[0]["id"], json!(0));
    assert_eq!(
        r["agentCapabilities"],
        json!({"loadSession": true, "sessionCapabilities": {"list": {}, "resume": {}, "close": {}}})
    );
    assert_eq!(r["_meta"]["relay"]["sessionId"], json!("s1"));
    assert_eq!(r["_meta"]["relay"]["lease"], json!(false));
    assert!(sim.take_agent(A1).is_empty(), "initialize is not forwarded");
}

#[test]
fn initialize_before_the_agent_is_ready_waits_for_it() {
    let mut sim = Sim::new(RouterConfig::default());
    let s = sim.open("a");
    sim.take(s);
    sim.send(s, req(json!(0), "initialize", json!({})));
    assert!(sim.take(s).is_empty());
    sim.answer(A1, "initialize", init_result(json!({})));
    let out = sim.take(s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], json!(0));
    assert_eq!(
        out[0]["result"]["agentCapabilities"]["loadSession"],
        json!(true)
    );
}

/// The prompt's echo, the agent's request under its own session id, the
/// reply stamped for every viewer.
#[test]
fn a_prompt_is_echoed_forwarded_and_its_reply_stamped() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.clear();
    sim.send(
        a,
        req(json!("p1"), "session/prompt", prompt_params("s1", "hello")),
    );
    let e = stamped(1, echo("s1", "a", json!("p1"), "hello"));
    assert_eq!(sim.take(a), vec![e.clone()]);
    assert_eq!(sim.take(b), vec![e]);
    assert_eq!(
        sim.take_agent(A1),
        vec![req(
            json!(3),
            "session/prompt",
            prompt_params("s1", "hello")
        )]
    );
    sim.update(A1, "s1", chunk("hi"));
    sim.answer(A1, "session/prompt", json!({"stopReason": "end_turn"}));
    let tail = vec![
        stamped(2, update_line("s1", chunk("hi"))),
        stamped(3, ok(json!("p1"), json!({"stopReason": "end_turn"}))),
    ];
    assert_eq!(sim.take(a), tail);
    assert_eq!(sim.take(b), tail);
    let u = &sim.r.units[&sim.unit_of("s1")];
    assert!(u.claimed && !u.busy());
    assert_eq!(u.title.as_deref(), Some("hello"));
}

#[test]
fn a_second_prompt_while_busy_is_refused() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.send(
        a,
        req(json!(1), "session/prompt", prompt_params("s1", "one")),
    );
    sim.clear();
    sim.send(
        b,
        req(json!(2), "session/prompt", prompt_params("s1", "two")),
    );
    assert_eq!(
        sim.take(b),
        vec![err(
            json!(2),
            code::BUSY,
            "session is busy with a turn from device 'a'; wait for it to end or send session/cancel"
        )]
    );
    assert!(sim.take_agent(A1).is_empty());
}

#[test]
fn a_prompt_without_blocks_is_invalid_params() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(json!(1), "session/prompt", json!({"sessionId": "s1"})),
    );
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(1),
            code::INVALID_PARAMS,
            "session/prompt needs params.prompt, an array of content blocks"
        )]
    );
}

#[test]
fn a_prompt_for_an_unknown_session_is_invalid_params() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(json!(1), "session/prompt", prompt_params("nope", "x")),
    );
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(1),
            code::INVALID_PARAMS,
            "unknown session 'nope'; call session/list, then session/load it first"
        )]
    );
    sim.send(
        a,
        req(
            json!(2),
            "session/prompt",
            json!({"sessionId": 5, "prompt": []}),
        ),
    );
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(2),
            code::INVALID_PARAMS,
            "params.sessionId must be a string"
        )]
    );
}

#[test]
fn a_prompt_notification_is_ignored() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, note("session/prompt", prompt_params("s1", "x")));
    assert!(sim.take(a).is_empty());
    assert!(sim.take_agent(A1).is_empty());
}

/// A forwarded method's answer goes to its requester only, unstamped, under
/// the device's own id.
#[test]
fn forwarded_requests_map_ids_both_ways() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.clear();
    sim.send(
        a,
        req(
            json!("m"),
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "plan"}),
        ),
    );
    assert_eq!(
        sim.take_agent(A1),
        vec![req(
            json!(3),
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "plan"})
        )]
    );
    sim.answer(A1, "session/set_mode", json!({}));
    assert_eq!(sim.take(a), vec![ok(json!("m"), json!({}))]);
    assert!(sim.take(b).is_empty());
}

#[test]
fn forwarded_notifications_reach_the_agent() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        note(
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "plan"}),
        ),
    );
    assert_eq!(
        sim.take_agent(A1),
        vec![note(
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "plan"})
        )]
    );
}

#[test]
fn authenticate_goes_to_the_agent_without_a_session() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, req(json!(9), "authenticate", json!({"methodId": "x"})));
    assert_eq!(
        sim.take_agent(A1),
        vec![req(json!(3), "authenticate", json!({"methodId": "x"}))]
    );
    sim.answer(A1, "authenticate", json!({}));
    assert_eq!(sim.take(a), vec![ok(json!(9), json!({}))]);
}

#[test]
fn an_unknown_method_is_method_not_found_and_an_unknown_notification_is_dropped() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, req(json!(1), "frobnicate", json!({})));
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(1),
            code::METHOD_NOT_FOUND,
            "method not found: frobnicate"
        )]
    );
    sim.send(a, note("frobnicate", json!({})));
    assert!(sim.take(a).is_empty());
}

#[test]
fn malformed_lines_get_json_rpc_errors() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send_raw(a, b"{not json");
    let out = sim.take(a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], Value::Null);
    assert_eq!(out[0]["error"]["code"], json!(code::PARSE_ERROR));
    sim.send_raw(a, b"[1,2]");
    assert_eq!(
        sim.take(a),
        vec![err(
            Value::Null,
            code::INVALID_REQUEST,
            "a JSON-RPC message must be a JSON object"
        )]
    );
    sim.send_raw(a, br#"{"jsonrpc":"2.0","id":4}"#);
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(4),
            code::INVALID_REQUEST,
            "invalid JSON-RPC message: a message needs a method (request) or result/error (response)"
        )]
    );
}

#[test]
fn more_lines_than_allowed_in_one_message_are_cut() {
    let mut sim = Sim::boot_with(RouterConfig {
        max_lines_per_message: 2,
        ..RouterConfig::default()
    });
    let a = sim.open("a");
    sim.take(a);
    let line = r#"{"jsonrpc":"2.0","id":1,"method":"session/list"}"#;
    sim.send_raw(a, format!("{line}\n{line}\n{line}").as_bytes());
    let out = sim.take(a);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[2],
        err(
            Value::Null,
            code::INVALID_REQUEST,
            "more than 2 lines in one message; the rest were dropped, send them in separate messages"
        )
    );
}

#[test]
fn session_list_shows_live_sessions_newest_first() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    sim.advance(10_000);
    sim.new_session(a, 2, A1, "s2");
    sim.update(A1, "s2", chunk("x"));
    sim.take(a);
    sim.send(a, req(json!(3), "session/list", json!({})));
    let out = sim.take(a);
    let sessions = out[0]["result"]["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ids: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["sessionId"].as_str())
        .collect();
    assert_eq!(ids, vec!["s2", "s1"]);
    assert_eq!(
        sessions[0]["_meta"],
        json!({"relay": {"busy": false, "live": true, "pendingAsks": 0, "project": "workspace", "agent": "agent"}})
    );
    assert_eq!(sessions[0]["cwd"], json!("/"));
}

#[test]
fn device_workspace_requests_become_jobs_answered_to_their_socket() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, req(json!(5), "_relay/fs/read", json!({"path": "x"})));
    let job = sim.jobs.pop_front().expect("a job");
    assert_eq!(
        (job.method.as_str(), &job.params, job.deadline),
        ("_relay/fs/read", &json!({"path":"x"}), true)
    );
    sim.feed(Input::JobDone {
        job: job.job,
        result: Ok(json!({"text": "hi"})),
    });
    assert_eq!(sim.take(a), vec![ok(json!(5), json!({"text": "hi"}))]);
    // Notifications for workspace methods are dropped.
    sim.send(a, note("_relay/fs/read", json!({"path": "x"})));
    assert!(sim.jobs.is_empty());
}

#[test]
fn an_applied_edit_is_announced_to_every_relay_socket() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    let p = sim.open_plain("p");
    sim.clear();
    sim.send(a, req(json!(5), "_relay/apply_edit", json!({"path": "f"})));
    let job = sim.jobs.pop_front().expect("a job");
    sim.feed(Input::JobDone {
        job: job.job,
        result: Ok(json!({"path": "f"})),
    });
    let changed = note(
        "_relay/workspace_changed",
        json!({"path": "f", "project": "workspace"}),
    );
    assert_eq!(
        sim.take(a),
        vec![ok(json!(5), json!({"path": "f"})), changed.clone()]
    );
    assert_eq!(sim.take(b), vec![changed]);
    assert!(sim.take(p).is_empty(), "relay extensions never reach /acp");
}

#[test]
fn terminals_are_refused_when_off() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, req(json!(1), "_relay/terminal/open", json!({})));
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(1),
            code::METHOD_NOT_FOUND,
            "terminals are off on this relay; start it with --terminal to allow shells"
        )]
    );
}

#[test]
fn too_many_jobs_in_flight_are_refused() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    for i in 0..MAX_JOBS {
        sim.send(a, req(json!(i), "_relay/git/status", json!({})));
    }
    sim.take(a);
    sim.send(a, req(json!("over"), "_relay/git/status", json!({})));
    assert_eq!(
        sim.take(a),
        vec![err(
            json!("over"),
            code::LIMIT,
            "256 requests are in flight; retry shortly"
        )]
    );
}

fn with_modes() -> (Sim, SocketId) {
    let mut sim = Sim::new(RouterConfig::default());
    sim.answer(A1, "initialize", init_result(json!({"loadSession": true})));
    sim.answer(
        A1,
        "session/new",
        json!({
            "sessionId": "s1",
            "modes": {"currentModeId": "auto", "availableModes": [{"id": "auto"}, {"id": "default"}]},
            "models": {"currentModelId": "m1"},
            "configOptions": [{"id": "effort", "currentValue": "low"}]
        }),
    );
    let a = sim.open("a");
    sim.clear();
    (sim, a)
}

fn reload(sim: &mut Sim, a: SocketId, id: u64) -> Value {
    sim.send(
        a,
        req(json!(id), "session/resume", json!({"sessionId": "s1"})),
    );
    let out = sim.take(a);
    out.into_iter()
        .find(|f| f["id"] == json!(id))
        .map(|f| f["result"].clone())
        .unwrap_or_default()
}

/// A re-sent cached answer follows set_mode, set_model and set_config_option.
#[test]
fn accepted_state_changes_update_the_cached_load_answer() {
    let (mut sim, a) = with_modes();
    sim.send(
        a,
        req(
            json!(1),
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "default"}),
        ),
    );
    sim.answer(A1, "session/set_mode", json!({}));
    sim.send(
        a,
        req(
            json!(2),
            "session/set_model",
            json!({"sessionId": "s1", "modelId": "m2"}),
        ),
    );
    sim.answer(A1, "session/set_model", json!({}));
    sim.send(
        a,
        req(
            json!(3),
            "session/set_config_option",
            json!({"sessionId": "s1", "configId": "effort", "value": "high"}),
        ),
    );
    sim.answer(
        A1,
        "session/set_config_option",
        json!({"configOptions": [{"id": "effort", "currentValue": "high"}]}),
    );
    // A refused change changes nothing.
    sim.send(
        a,
        req(
            json!(4),
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "bogus"}),
        ),
    );
    sim.answer_err(
        A1,
        "session/set_mode",
        json!({"code": -32602, "message": "no such mode"}),
    );
    sim.clear();
    let r = reload(&mut sim, a, 5);
    assert_eq!(r["modes"]["currentModeId"], json!("default"));
    assert_eq!(r["models"]["currentModelId"], json!("m2"));
    assert_eq!(
        r["configOptions"],
        json!([{"id": "effort", "currentValue": "high"}])
    );
}

#[test]
fn the_agents_own_mode_and_config_updates_update_the_cached_answer() {
    let (mut sim, a) = with_modes();
    sim.update(
        A1,
        "s1",
        json!({"sessionUpdate": "current_mode_update", "currentModeId": "default"}),
    );
    sim.update(A1, "s1", json!({"sessionUpdate": "config_option_update", "configOptions": [{"id": "effort", "currentValue": "mid"}]}));
    assert_eq!(sim.take(a).len(), 2, "both still reach the viewers");
    let r = reload(&mut sim, a, 5);
    assert_eq!(r["modes"]["currentModeId"], json!("default"));
    assert_eq!(
        r["configOptions"],
        json!([{"id": "effort", "currentValue": "mid"}])
    );
}

#[test]
fn a_cancel_sent_as_a_request_is_answered() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "go")),
    );
    sim.clear();
    sim.send(
        a,
        req(json!("c"), "session/cancel", json!({"sessionId": "s1"})),
    );
    assert_eq!(sim.take(a), vec![ok(json!("c"), json!({}))]);
    assert_eq!(
        sim.take_agent(A1),
        vec![note("session/cancel", json!({"sessionId": "s1"}))]
    );
}

#[test]
fn an_id_that_would_not_come_back_as_sent_is_refused() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    for id in ["1000000000000000000000000000000", "1.5", "1e3"] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"session/list"}}"#);
        sim.send_raw(a, line.as_bytes());
        assert_eq!(
            sim.take(a),
            vec![err(
                Value::Null,
                code::INVALID_REQUEST,
                "invalid JSON-RPC message: id must be a string or an integer of at most 64 bits, so it can be echoed exactly"
            )],
            "{id}"
        );
    }
    // 64-bit integers are echoed as they are.
    sim.send_raw(
        a,
        br#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"session/list"}"#,
    );
    let raw = sim.take_raw(a);
    assert!(String::from_utf8_lossy(&raw[0]).contains("\"id\":18446744073709551615"));
}

/// A socket viewing s1 prompts s2: it gets the answer (without rseq: it does
/// not follow s2's numbering); s2's viewers get it stamped.
#[test]
fn a_prompt_for_a_session_the_socket_does_not_view_is_answered_there() {
    let mut sim = Sim::boot();
    let a = sim.two_sessions();
    let b = sim.open_at("b", Some("s1"), None);
    sim.clear();
    sim.send(
        b,
        req(json!("x"), "session/prompt", prompt_params("s2", "hi")),
    );
    assert!(sim.take(b).is_empty(), "the echo goes to s2's viewers");
    sim.answer(A1, "session/prompt", json!({"stopReason": "end_turn"}));
    assert_eq!(
        sim.take(b),
        vec![ok(json!("x"), json!({"stopReason": "end_turn"}))]
    );
    assert_eq!(
        sim.take(a),
        vec![
            stamped(1, echo("s2", "b", json!("x"), "hi")),
            stamped(2, ok(json!("x"), json!({"stopReason": "end_turn"}))),
        ]
    );
}
