//! Session lifecycle: session/new while the agent opens, eviction rules,
//! session/close, stored sessions and the waiters of a restore.

use super::*;
use crate::core::rpc::code;
use serde_json::json;

#[test]
fn session_new_waits_while_the_agent_starts() {
    let mut sim = Sim::new(RouterConfig::default());
    let a = sim.open("a");
    sim.take(a);
    sim.send(a, req(json!(1), "session/new", json!({})));
    assert!(sim.take(a).is_empty());
    sim.answer(A1, "initialize", init_result(json!({})));
    assert!(sim.take(a).is_empty());
    sim.answer(
        A1,
        "session/new",
        json!({"sessionId": "x1", "modes": {"currentModeId": "ask"}}),
    );
    assert_eq!(
        sim.take(a),
        vec![
            welcome(sim.epoch(1), Some("x1"), 0, false, false, &[]),
            ok(
                json!(1),
                json!({"sessionId": "x1", "modes": {"currentModeId": "ask"}})
            ),
        ]
    );
}

#[test]
fn a_prompt_sent_while_the_agent_starts_runs_once_it_is_open() {
    let mut sim = Sim::new(RouterConfig::default());
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(
            json!("p"),
            "session/prompt",
            json!({"prompt": [{"type": "text", "text": "hi"}]}),
        ),
    );
    assert!(sim.take(a).is_empty());
    sim.answer(A1, "initialize", init_result(json!({})));
    sim.answer(A1, "session/new", json!({"sessionId": "x1"}));
    assert_eq!(
        sim.take(a),
        vec![stamped(1, echo("x1", "a", json!("p"), "hi"))]
    );
    let r = sim.pending(A1, "session/prompt");
    assert_eq!(r.params["sessionId"], json!("x1"));
}

#[test]
fn the_second_session_new_opens_a_second_agent_session() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    assert_eq!(sim.new_session(a, 1, A1, "unused"), "s1");
    assert!(
        !sim.has_pending(A1, "session/new"),
        "the default was claimed, not reopened"
    );
    sim.send(a, req(json!(2), "session/new", json!({})));
    assert_eq!(
        sim.take_agent(A1),
        vec![req(
            json!(3),
            "session/new",
            json!({"cwd": "/", "mcpServers": []})
        )]
    );
    sim.answer(A1, "session/new", json!({"sessionId": "s2"}));
    assert_eq!(
        sim.take(a),
        vec![
            welcome(sim.epoch(2), Some("s2"), 0, false, false, &[]),
            ok(json!(2), json!({"sessionId": "s2"}))
        ]
    );
}

#[test]
fn an_agent_refusing_session_new_reaches_the_device_with_its_code_and_data() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    sim.send(a, req(json!(2), "session/new", json!({})));
    sim.answer_err(
        A1,
        "session/new",
        json!({"code": -32000, "message": "auth_required", "data": {"m": 1}}),
    );
    assert_eq!(
        sim.take(a),
        vec![json!({"jsonrpc": "2.0", "id": 2, "error": {
            "code": -32000,
            "message": "the agent could not open a session: auth_required; authenticate if it asks, then retry",
            "data": {"m": 1}
        }})]
    );
}

#[test]
fn agent_session_ids_that_collide_get_a_suffix() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    assert_eq!(sim.new_session(a, 2, A1, "s1"), "s1~2");
}

/// `max_sessions` 3: the default, one viewed, one busy, one idle unviewed.
fn crowded() -> (Sim, SocketId) {
    let mut sim = Sim::boot_with(RouterConfig {
        max_sessions: 3,
        ..RouterConfig::default()
    });
    let a = sim.two_sessions();
    sim.new_session(a, 3, A1, "s3");
    sim.clear();
    (sim, a)
}

#[test]
fn eviction_ends_the_oldest_idle_unviewed_session_never_the_default() {
    let (mut sim, a) = crowded();
    // a views s3; s1 is the default; s2 is idle and unviewed.
    sim.send(a, req(json!(4), "session/new", json!({})));
    assert!(!sim.r.by_session.contains_key("s2"), "s2 was evicted");
    assert!(sim.r.by_session.contains_key("s1"));
    assert!(sim.r.by_session.contains_key("s3"));
    assert_eq!(sim.r.units.len(), 3);
}

#[test]
fn eviction_spares_busy_sessions() {
    let (mut sim, a) = crowded();
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s2", "x")),
    );
    sim.take(a);
    // Another device opens one: s3 is a's view, s2 is busy.
    let b = sim.open("b");
    sim.send(b, req(json!(4), "session/new", json!({})));
    assert!(sim.r.by_session.contains_key("s2"), "busy s2 kept");
    let answer = sim.take(b).into_iter().find(|f| f["id"] == json!(4));
    assert_eq!(
        answer.map(|f| f["error"]["code"].clone()),
        Some(json!(code::LIMIT)),
        "refused rather than over the cap"
    );
    assert_eq!(sim.r.units.len(), 3);
}

#[test]
fn eviction_spares_sessions_other_devices_view() {
    let (mut sim, _a) = crowded();
    let b = sim.open_at("b", Some("s2"), None);
    let c = sim.open_at("c", Some("s2"), None);
    sim.take(b);
    sim.send(b, req(json!(4), "session/new", json!({})));
    // s2 is viewed by c as well as b, s3 by a: nothing may go.
    assert!(sim.r.by_session.contains_key("s2"));
    let answer = sim.take(b).into_iter().find(|f| f["id"] == json!(4));
    assert_eq!(
        answer.map(|f| f["error"]["code"].clone()),
        Some(json!(code::LIMIT))
    );
    assert_eq!(sim.r.units.len(), 3);
    // Once only b views s2, b's own view does not protect it: b leaves it
    // for the session it opens.
    sim.close(c);
    assert_eq!(sim.new_session(b, 5, A1, "s4"), "s4");
    assert!(!sim.r.by_session.contains_key("s2"), "s2 was evicted");
    assert!(sim.r.by_session.contains_key("s3"), "a still views s3");
    assert!(sim.r.units[&sim.unit_of("s4")].hub.views(b));
    assert_eq!(sim.r.units.len(), 3);
}

#[test]
fn eviction_spares_restoring_sessions() {
    let (mut sim, a) = crowded();
    sim.auto_restore = false;
    sim.r.add_stored([stored_info("old", 0)]);
    sim.send(
        a,
        req(json!(4), "session/load", json!({"sessionId": "old"})),
    );
    // s2 was evicted to make room for old; old is restoring now.
    assert!(!sim.r.by_session.contains_key("s2"));
    sim.send(a, req(json!(5), "session/new", json!({})));
    assert!(
        sim.r.by_session.contains_key("old"),
        "a restoring session is never evicted"
    );
}

#[test]
fn session_close_moves_viewers_to_the_default() {
    let mut sim = Sim::boot();
    let a = sim.two_sessions();
    let b = sim.open_at("b", Some("s2"), None);
    sim.clear();
    sim.send(
        a,
        req(json!(3), "session/close", json!({"sessionId": "s2"})),
    );
    let back = welcome(sim.epoch(1), Some("s1"), 0, false, false, &[]);
    assert_eq!(sim.take(a), vec![back.clone(), ok(json!(3), json!({}))]);
    assert_eq!(sim.take(b), vec![back]);
    assert!(!sim.r.by_session.contains_key("s2"));
}

#[test]
fn the_default_session_cannot_be_closed() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(json!(3), "session/close", json!({"sessionId": "s1"})),
    );
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(3),
            code::INVALID_PARAMS,
            "the default session stays open; close another session"
        )]
    );
}

pub(super) fn stored_info(sid: &str, head: u64) -> StoredInfo {
    StoredInfo {
        session_id: sid.into(),
        title: Some("old one".into()),
        cwd: "/".into(),
        created_ms: 5,
        updated_ms: 6,
        agent_session: Some(format!("agent-{sid}")),
        project: None,
        agent: None,
        head_seq: head,
    }
}

/// A stored session with two frames in the fake store.
fn with_stored() -> Sim {
    let mut sim = Sim::boot();
    sim.r.add_stored([stored_info("old", 2)]);
    sim.store.meta.insert("old".into(), stored_info("old", 2));
    let frames = vec![
        frame_of(1, &update_line("old", chunk("a"))),
        frame_of(2, &update_line("old", chunk("b"))),
    ];
    sim.store.transcripts.insert("old".into(), frames);
    sim
}

#[test]
fn a_socket_naming_a_stored_session_attaches_after_its_restore() {
    let mut sim = with_stored();
    sim.auto_restore = false;
    let s = sim.open_at("a", Some("old"), Some(1));
    assert!(
        sim.take(s).is_empty(),
        "nothing before the transcript is read"
    );
    let (unit, session) = sim.restores.pop_front().expect("a restore");
    assert_eq!(session, "old");
    sim.finish_restore(unit, &session, None);
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(2), Some("old"), 2, false, false, &[]),
            stamped(2, update_line("old", chunk("b"))),
        ]
    );
}

#[test]
fn load_and_attach_waiters_are_all_answered_by_one_restore() {
    let mut sim = with_stored();
    sim.auto_restore = false;
    let s = sim.open_at("a", Some("old"), None);
    let t = sim.open("b");
    sim.take(t);
    sim.send(
        t,
        req(json!(9), "session/load", json!({"sessionId": "old"})),
    );
    assert!(sim.take(t).is_empty());
    assert_eq!(sim.restores.len(), 1, "one read for both");
    let (unit, session) = sim.restores.pop_front().expect("a restore");
    sim.finish_restore(unit, &session, None);
    let all = vec![
        welcome(sim.epoch(2), Some("old"), 2, false, false, &[]),
        stamped(1, update_line("old", chunk("a"))),
        stamped(2, update_line("old", chunk("b"))),
    ];
    assert_eq!(sim.take(s), all);
    assert_eq!(sim.take(t), all);
    // The load answer is the agent's own, once it loaded the session.
    let load = sim.pending(A1, "session/load");
    assert_eq!(load.params["sessionId"], json!("agent-old"));
    let modes =
        json!({"currentModeId": "plan", "availableModes": [{"id": "plan"}, {"id": "code"}]});
    sim.agent_says(A1, ok(load.id, json!({"modes": modes})));
    assert_eq!(
        sim.take(t),
        vec![ok(json!(9), json!({"sessionId": "old", "modes": modes}))]
    );
    assert!(sim.take(s).is_empty());
}

/// After a restart the load answer carries what the agent says now, not `{sessionId}`.
#[test]
fn a_load_after_an_agent_exit_forwards_the_agents_load_answer() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.exit(A1, "gone");
    sim.clear();
    sim.send(a, req(json!(1), "session/load", json!({"sessionId": "s1"})));
    assert_eq!(
        sim.take(a),
        vec![
            welcome(sim.epoch(1), Some("s1"), 1, false, false, &[]),
            stamped(
                1,
                note(
                    "_relay/agent_exited",
                    json!({"sessionId": "s1", "status": "gone"})
                )
            )
        ]
    );
    let init = sim.pending(A2, "initialize");
    sim.agent_says(A2, ok(init.id, init_result(json!({"loadSession": true}))));
    sim.answer(
        A2,
        "session/load",
        json!({"models": {"currentModelId": "m2"}}),
    );
    assert_eq!(
        sim.take(a),
        vec![ok(
            json!(1),
            json!({"sessionId": "s1", "models": {"currentModelId": "m2"}})
        )]
    );
}

#[test]
fn closing_a_restoring_session_answers_its_waiters() {
    let mut sim = with_stored();
    sim.auto_restore = false;
    let s = sim.open_at("a", Some("old"), Some(1));
    let t = sim.open("b");
    sim.send(
        t,
        req(json!(9), "session/load", json!({"sessionId": "old"})),
    );
    sim.clear();
    sim.send(
        t,
        req(json!(10), "session/close", json!({"sessionId": "old"})),
    );
    assert_eq!(
        sim.take(s),
        vec![welcome(sim.epoch(1), Some("s1"), 0, true, false, &[])]
    );
    assert_eq!(
        sim.take(t),
        vec![
            err(
                json!(9),
                code::OTHER,
                "the session was closed while it was loading; load it again"
            ),
            ok(json!(10), json!({})),
        ]
    );
    // The transcript read landing afterwards changes nothing.
    let (unit, session) = sim.restores.pop_front().expect("a restore");
    sim.finish_restore(unit, &session, None);
    assert!(sim.take(s).is_empty() && sim.take(t).is_empty());
}

#[test]
fn a_failed_restore_keeps_numbering_after_the_stored_head() {
    let mut sim = with_stored();
    sim.auto_restore = false;
    let s = sim.open_at("a", Some("old"), Some(2));
    let (unit, session) = sim.restores.pop_front().expect("a restore");
    sim.store.transcripts.clear();
    sim.finish_restore(unit, &session, Some("disk on fire".into()));
    assert_eq!(
        sim.take(s),
        vec![welcome(sim.epoch(2), Some("old"), 2, false, false, &[])]
    );
    sim.send(
        s,
        req(json!("p"), "session/prompt", prompt_params("old", "hi")),
    );
    sim.answer(A1, "session/load", json!({}));
    sim.quiet();
    assert_eq!(
        sim.take(s),
        vec![stamped(3, echo("old", "a", json!("p"), "hi"))],
        "rseq 1 and 2 are never handed out again"
    );
}

#[test]
fn a_prompt_for_a_restored_session_resumes_its_agent_session() {
    let mut sim = with_stored();
    let s = sim.open_at("a", Some("old"), Some(2));
    sim.take(s);
    sim.send(
        s,
        req(json!("p"), "session/prompt", prompt_params("old", "hi")),
    );
    let load = sim.pending(A1, "session/load");
    assert_eq!(
        load.params,
        json!({"sessionId": "agent-old", "cwd": "/", "mcpServers": []})
    );
    // History the agent replays for session/load is not stamped again.
    sim.update(A1, "agent-old", chunk("a"));
    sim.agent_says(A1, ok(load.id, json!({})));
    sim.quiet();
    assert_eq!(
        sim.take(s),
        vec![stamped(3, echo("old", "a", json!("p"), "hi"))]
    );
    let p = sim.pending(A1, "session/prompt");
    assert_eq!(p.params["sessionId"], json!("agent-old"));
}

#[test]
fn an_agent_refusing_session_load_gets_a_fresh_session() {
    let mut sim = with_stored();
    let s = sim.open_at("a", Some("old"), Some(2));
    sim.send(
        s,
        req(json!("p"), "session/prompt", prompt_params("old", "hi")),
    );
    sim.answer_err(A1, "session/load", json!({"code": -32601, "message": "no"}));
    sim.answer(A1, "session/new", json!({"sessionId": "fresh"}));
    let p = sim.pending(A1, "session/prompt");
    assert_eq!(p.params["sessionId"], json!("fresh"));
    assert_eq!(
        sim.r.units[&sim.unit_of("old")].session_id.as_deref(),
        Some("old")
    );
}

#[test]
fn loading_an_unknown_session_is_invalid_params() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(json!(1), "session/load", json!({"sessionId": "nope"})),
    );
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(1),
            code::INVALID_PARAMS,
            "unknown session 'nope'; call session/list for the sessions this relay knows"
        )]
    );
    sim.send(a, req(json!(2), "session/load", json!({})));
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(2),
            code::INVALID_PARAMS,
            "session/load needs params.sessionId (a string)"
        )]
    );
}

#[test]
fn session_resume_switches_without_replay() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    sim.update(A1, "s1", chunk("x"));
    sim.new_session(a, 2, A1, "s2");
    sim.clear();
    sim.send(
        a,
        req(json!(3), "session/resume", json!({"sessionId": "s1"})),
    );
    assert_eq!(
        sim.take(a),
        vec![
            welcome(sim.epoch(1), Some("s1"), 1, false, false, &[]),
            ok(json!(3), json!({"sessionId": "s1"}))
        ]
    );
    sim.send(a, req(json!(4), "session/load", json!({"sessionId": "s1"})));
    assert_eq!(
        sim.take(a),
        vec![
            welcome(sim.epoch(1), Some("s1"), 1, false, false, &[]),
            stamped(1, update_line("s1", chunk("x"))),
            ok(json!(4), json!({"sessionId": "s1"})),
        ]
    );
}

#[test]
fn a_closed_socket_drops_its_deferred_lines_and_waits() {
    let mut sim = Sim::new(RouterConfig::default());
    let a = sim.open("a");
    sim.send(a, req(json!(1), "session/new", json!({})));
    sim.send(a, req(json!(2), "initialize", json!({})));
    sim.close(a);
    assert!(sim.r.deferred.is_empty() && sim.r.pending_new.is_empty());
    sim.answer(A1, "initialize", init_result(json!({})));
    sim.answer(A1, "session/new", json!({"sessionId": "x"}));
}

/// Closing a session with a turn and an ask in flight: the ask is answered
/// and announced, the agent hears session/cancel, the prompter gets its answer.
#[test]
fn closing_a_busy_session_settles_its_ask_and_answers_its_prompt() {
    let mut sim = Sim::boot();
    let a = sim.two_sessions();
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s2", "go")),
    );
    sim.ask(A1, 70, "s2");
    sim.clear();
    sim.send(
        a,
        req(json!(3), "session/close", json!({"sessionId": "s2"})),
    );
    assert_eq!(
        sim.take_agent(A1),
        vec![
            ok(json!(70), json!({"outcome": {"outcome": "cancelled"}})),
            note("session/cancel", json!({"sessionId": "s2"})),
        ]
    );
    assert_eq!(
        sim.take(a),
        vec![
            stamped(
                3,
                resolved(
                    "perm:s2:1",
                    json!({"outcome": "cancelled"}),
                    "session-ended"
                )
            ),
            ok(json!("p"), json!({"stopReason": "cancelled"})),
            welcome(sim.epoch(1), Some("s1"), 0, false, false, &[]),
            ok(json!(3), json!({})),
        ]
    );
    // The agent's late answer to the prompt finds no session and is dropped.
    sim.answer(A1, "session/prompt", json!({"stopReason": "cancelled"}));
    assert!(sim.take(a).is_empty());
}

#[test]
fn eviction_spares_sessions_with_an_open_ask() {
    let (mut sim, a) = crowded();
    sim.ask(A1, 70, "s2");
    sim.send(a, req(json!(4), "session/new", json!({})));
    assert!(
        sim.r.by_session.contains_key("s2"),
        "an ask waits for a person"
    );
}

#[test]
fn an_ask_for_a_session_that_ended_while_loading_is_answered_cancelled() {
    let mut sim = with_stored();
    let s = sim.open_at("a", Some("old"), Some(2));
    sim.send(
        s,
        req(json!("p"), "session/prompt", prompt_params("old", "hi")),
    );
    assert!(sim.has_pending(A1, "session/load"));
    sim.send(
        s,
        req(json!(3), "session/close", json!({"sessionId": "old"})),
    );
    sim.take_agent(A1);
    sim.ask(A1, 70, "agent-old");
    assert_eq!(
        sim.take_agent(A1),
        vec![ok(json!(70), json!({"outcome": {"outcome": "cancelled"}}))]
    );
}

/// A crafted transcript whose head is u64::MAX: no overflow, nothing renumbered.
#[test]
fn a_stored_head_of_u64_max_does_not_overflow() {
    let mut sim = Sim::boot();
    sim.r.add_stored([stored_info("max", u64::MAX)]);
    sim.store
        .meta
        .insert("max".into(), stored_info("max", u64::MAX));
    let s = sim.open_at("a", Some("max"), Some(u64::MAX));
    assert_eq!(
        sim.take(s),
        vec![welcome(
            sim.epoch(2),
            Some("max"),
            u64::MAX,
            false,
            false,
            &[]
        )]
    );
    sim.send(
        s,
        req(json!("p"), "session/prompt", prompt_params("max", "hi")),
    );
    sim.answer(A1, "session/load", json!({}));
    sim.quiet();
    sim.ask(A1, 70, "agent-max");
    sim.answer(A1, "session/prompt", json!({"stopReason": "end_turn"}));
    assert!(sim.take(s).is_empty(), "no number is left to stamp with");
    let to_agent = sim.take_agent(A1);
    assert!(
        to_agent.contains(&ok(json!(70), json!({"outcome": {"outcome": "cancelled"}}))),
        "the ask is not left hanging: {to_agent:?}"
    );
    assert_eq!(sim.r.units[&sim.unit_of("max")].hub.ring.head(), u64::MAX);
}

/// One /acp connection opening sessions past --max-sessions: the oldest idle
/// one it holds is evicted (the cap holds for plain sockets too).
#[test]
fn plain_sockets_are_held_to_the_session_cap() {
    let mut sim = Sim::boot_with(RouterConfig {
        max_sessions: 3,
        ..RouterConfig::default()
    });
    let p = sim.open_plain("p");
    for (i, asid) in ["unused", "x2", "x3", "x4", "x5"].iter().enumerate() {
        sim.new_session(p, i as u64, A1, asid);
    }
    assert_eq!(sim.r.units.len(), 3);
    assert!(sim.r.by_session.contains_key("x5") && sim.r.by_session.contains_key("x4"));
    assert!(!sim.r.by_session.contains_key("x2") && !sim.r.by_session.contains_key("x3"));
    // Its next prompt for an evicted session is told to load it again.
    sim.send(
        p,
        req(json!(9), "session/prompt", prompt_params("x2", "hi")),
    );
    assert_eq!(sim.take(p)[0]["error"]["code"], json!(code::INVALID_PARAMS));
}

/// Six `/ws` devices under `--max-sessions 2`: the first claims the default,
/// the second opens one more, the rest are refused (each views its own, so
/// none may be evicted) with a message that says what to do. A closed
/// session frees its slot.
#[test]
fn relay_sockets_are_held_to_the_session_cap() {
    let mut sim = Sim::boot_with(RouterConfig {
        max_sessions: 2,
        agent_per_session: true,
        ..RouterConfig::default()
    });
    let devices: Vec<SocketId> = (0..6).map(|i| sim.open(&format!("d{i}"))).collect();
    let s0 = sim.new_session(devices[0], 1, A1, "unused");
    assert_eq!(s0, "s1", "the first claims the default");
    sim.send(
        devices[1],
        req(
            json!(1),
            "session/new",
            json!({"cwd": "/", "mcpServers": []}),
        ),
    );
    let a2 = *sim
        .agents
        .keys()
        .last()
        .expect("an agent for the second session");
    assert_ne!(a2, A1, "an agent per session");
    sim.answer(a2, "initialize", init_result(json!({"loadSession": true})));
    sim.answer(a2, "session/new", json!({"sessionId": "x2"}));
    let answer = sim
        .take(devices[1])
        .into_iter()
        .find(|f| f["id"] == json!(1));
    assert!(answer.is_some_and(|f| f["result"]["sessionId"].is_string()));
    for (i, d) in devices[2..].iter().enumerate() {
        sim.send(
            *d,
            req(
                json!(10 + i),
                "session/new",
                json!({"cwd": "/", "mcpServers": []}),
            ),
        );
        let answer = sim.take(*d).into_iter().find(|f| f["id"] == json!(10 + i));
        let e = answer.map(|f| f["error"].clone()).unwrap_or_default();
        assert_eq!(e["code"], json!(code::LIMIT), "{e}");
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("--max-sessions 2") && msg.contains("close a session"),
            "{msg}"
        );
    }
    assert_eq!(sim.r.units.len(), 2);
    let alive = sim.agents.values().filter(|a| a.alive && !a.killed).count();
    assert_eq!(alive, 2, "one agent per live session, no more");
    sim.check_bounds().expect("within the cap");
    // A stored session cannot be loaded past the cap either, and stays stored.
    sim.r.add_stored([stored_info("old", 0)]);
    sim.send(
        devices[2],
        req(json!(20), "session/load", json!({"sessionId": "old"})),
    );
    let answer = sim
        .take(devices[2])
        .into_iter()
        .find(|f| f["id"] == json!(20));
    assert_eq!(
        answer.map(|f| f["error"]["code"].clone()),
        Some(json!(code::LIMIT))
    );
    assert!(sim.r.stored.contains_key("old"));
    // Closing the second session frees its slot for the next device.
    sim.send(
        devices[1],
        req(json!(2), "session/close", json!({"sessionId": "x2"})),
    );
    sim.send(
        devices[3],
        req(json!(30), "session/load", json!({"sessionId": "old"})),
    );
    let frames = sim.take(devices[3]);
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "relay_welcome" && f["sessionId"] == "old"),
        "{frames:?}"
    );
    assert_eq!(sim.r.units.len(), 2);
}
