//! The timer seam: deadlines on requests to agents (`poll_timeout`, `Tick`)
//! and the agent's history replay kept out of the new turn.

use super::*;
use crate::core::rpc::code;
use serde_json::json;

const T: u64 = DEFAULT_AGENT_TIMEOUT_MS;

fn timeout_msg(method: &str) -> String {
    format!(
        "the agent did not answer {method} within {} s (--agent-timeout); check the agent's log (_relay/agent/log), then retry",
        T / 1000
    )
}

#[test]
fn nothing_waits_nothing_to_wake_for() {
    let sim = Sim::boot();
    assert_eq!(sim.r.poll_timeout(), None);
}

#[test]
fn a_forwarded_request_past_its_deadline_is_answered_with_an_error() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(json!(9), "authenticate", json!({"methodId": "oauth"})),
    );
    let sent = sim.now;
    assert_eq!(sim.r.poll_timeout(), Some(sent + T));
    sim.wait(T - 10);
    assert!(sim.take(a).is_empty(), "an early tick does nothing");
    sim.wait(10);
    assert_eq!(
        sim.take(a),
        vec![err(
            json!(9),
            code::AGENT_TIMEOUT,
            &timeout_msg("authenticate")
        )]
    );
    assert_eq!(sim.r.poll_timeout(), None);
    // Its late answer is ignored.
    sim.answer(A1, "authenticate", json!({}));
    assert!(sim.take(a).is_empty());
}

#[test]
fn a_prompt_deadline_counts_from_the_sessions_last_frame_and_waits_for_asks() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "go")),
    );
    sim.wait(T / 2);
    sim.update(A1, "s1", chunk("still working"));
    let last = sim.now;
    assert_eq!(sim.r.poll_timeout(), Some(last + T));
    sim.ask(A1, 70, "s1");
    assert_eq!(sim.r.poll_timeout(), None, "a person is deciding");
    sim.wait(2 * T);
    sim.send(
        a,
        ok(
            json!("perm:s1:1"),
            json!({"outcome": {"outcome": "cancelled"}}),
        ),
    );
    let answered = sim.now;
    assert_eq!(sim.r.poll_timeout(), Some(answered + T));
    sim.clear();
    sim.wait(T);
    assert_eq!(
        sim.take_agent(A1),
        vec![note("session/cancel", json!({"sessionId": "s1"}))]
    );
    assert_eq!(
        sim.take(a),
        vec![stamped(
            5,
            err(
                json!("p"),
                code::AGENT_TIMEOUT,
                &timeout_msg("session/prompt")
            )
        )]
    );
    assert!(!sim.r.units[&sim.r.default_unit].busy());
}

#[test]
fn an_agent_that_never_initializes_is_ended() {
    let mut sim = Sim::new(RouterConfig::default());
    sim.wait(T);
    assert!(sim.agents[&A1].killed);
}

#[test]
fn a_session_new_past_its_deadline_fails_to_the_device() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    sim.send(a, req(json!(2), "session/new", json!({})));
    sim.take(a);
    sim.wait(T);
    let out = sim.take(a);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["id"], json!(2));
    assert_eq!(out[0]["error"]["code"], json!(code::AGENT_TIMEOUT));
}

#[test]
fn no_deadline_when_switched_off() {
    let mut sim = Sim::boot_with(RouterConfig {
        agent_timeout_ms: 0,
        ..RouterConfig::default()
    });
    let a = sim.open("a");
    sim.send(a, req(json!(9), "authenticate", json!({})));
    assert_eq!(sim.r.poll_timeout(), None);
}

/// A resumed session: the agent replays before its load answer.
fn resumed() -> (Sim, SocketId) {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.update(A1, "s1", chunk("old answer"));
    sim.exit(A1, "gone");
    sim.clear();
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "next")),
    );
    let init = sim.pending(A2, "initialize");
    sim.agent_says(A2, ok(init.id, init_result(json!({"loadSession": true}))));
    (sim, a)
}

#[test]
fn a_replay_before_the_load_answer_is_dropped_but_state_passes() {
    let (mut sim, a) = resumed();
    sim.update(
        A2,
        "s1",
        json!({"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": "old"}}),
    );
    sim.update(A2, "s1", chunk("old answer"));
    let cmds = json!({"sessionUpdate": "available_commands_update", "availableCommands": []});
    sim.update(A2, "s1", cmds.clone());
    assert_eq!(sim.take(a), vec![stamped(3, update_line("s1", cmds))]);
}

/// gemini: the load answer first, then the history.
#[test]
fn a_replay_after_the_load_answer_is_dropped_and_the_prompt_waits_for_quiet() {
    let (mut sim, a) = resumed();
    sim.answer(A2, "session/load", json!({}));
    sim.wait(super::super::timers::REPLAY_QUIET_MS - 50);
    sim.update(A2, "s1", chunk("old answer"));
    sim.wait(super::super::timers::REPLAY_QUIET_MS - 50);
    assert!(
        !sim.has_pending(A2, "session/prompt"),
        "the replay is still going"
    );
    sim.update(
        A2,
        "s1",
        json!({"sessionUpdate": "session_info_update", "title": "t"}),
    );
    sim.wait(super::super::timers::REPLAY_QUIET_MS);
    assert!(sim.has_pending(A2, "session/prompt"));
    assert_eq!(
        sim.take(a),
        vec![
            stamped(
                3,
                update_line(
                    "s1",
                    json!({"sessionUpdate": "session_info_update", "title": "t"})
                )
            ),
            stamped(4, echo("s1", "a", json!("p"), "next")),
        ]
    );
    // The new turn's content is stamped again.
    sim.update(A2, "s1", chunk("new answer"));
    assert_eq!(
        sim.take(a),
        vec![stamped(5, update_line("s1", chunk("new answer")))]
    );
}

#[test]
fn a_replay_that_never_goes_quiet_holds_the_prompt_at_most_the_cap() {
    let (mut sim, a) = resumed();
    sim.answer(A2, "session/load", json!({}));
    let start = sim.now;
    while sim.now < start + super::super::timers::REPLAY_MAX_MS {
        sim.update(A2, "s1", chunk("old"));
        sim.wait(100);
    }
    assert!(sim.has_pending(A2, "session/prompt"));
    assert_eq!(
        sim.take(a),
        vec![stamped(3, echo("s1", "a", json!("p"), "next"))]
    );
}
