//! Asks: fan-out to every viewer, first answer wins, late answers, and the
//! settlements (cancel, turn end, agent exit, auto-approve, limits).

use super::*;
use crate::core::rpc::code;
use serde_json::json;

fn ask_frame(n: u64, ask: &str) -> Value {
    stamped(
        n,
        req(
            json!(ask),
            "session/request_permission",
            permission_params("s1"),
        ),
    )
}

/// A booted sim with two viewers `a`, `b`, a turn from `a` and one open ask.
fn with_ask() -> (Sim, SocketId, SocketId) {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "go")),
    );
    sim.ask(A1, 70, "s1");
    sim.clear();
    (sim, a, b)
}

#[test]
fn an_ask_fans_to_every_viewer_under_a_relay_id() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    let p = sim.open_plain("p");
    sim.send(p, req(json!(1), "session/load", json!({"sessionId": "s1"})));
    sim.clear();
    sim.ask(A1, 70, "s1");
    assert_eq!(sim.take(a), vec![ask_frame(1, "perm:s1:1")]);
    assert_eq!(sim.take(b), vec![ask_frame(1, "perm:s1:1")]);
    let mut plain = ask_frame(1, "perm:s1:1");
    plain.as_object_mut().map(|o| o.remove("rseq"));
    assert_eq!(sim.take(p), vec![plain]);
    assert!(sim.take_agent(A1).is_empty());
}

#[test]
fn the_first_answer_wins_and_a_late_one_is_told_who_answered() {
    let (mut sim, a, b) = with_ask();
    let pick = json!({"outcome": {"outcome": "selected", "optionId": "allow"}});
    sim.send(b, ok(json!("perm:s1:1"), pick.clone()));
    assert_eq!(sim.take_agent(A1), vec![ok(json!(70), pick.clone())]);
    let settled = stamped(
        3,
        resolved(
            "perm:s1:1",
            json!({"outcome": "selected", "optionId": "allow"}),
            "b",
        ),
    );
    assert_eq!(sim.take(a), vec![settled.clone()]);
    assert_eq!(sim.take(b), vec![settled]);
    sim.send(
        a,
        ok(
            json!("perm:s1:1"),
            json!({"outcome": {"outcome": "cancelled"}}),
        ),
    );
    assert_eq!(
        sim.take(a),
        vec![err(
            json!("perm:s1:1"),
            code::OTHER,
            "this ask was already answered by 'b'; your answer was not sent"
        )]
    );
    assert!(sim.take_agent(A1).is_empty(), "the agent hears one answer");
}

#[test]
fn answers_to_ids_the_relay_never_issued_are_ignored() {
    let (mut sim, a, _) = with_ask();
    for id in [
        json!(5),
        json!("perm:s1:99"),
        json!("perm:zz:1"),
        json!("c:1"),
    ] {
        sim.send(a, ok(id, json!({})));
    }
    assert!(sim.take(a).is_empty());
    assert!(sim.take_agent(A1).is_empty());
    assert_eq!(sim.r.units[&sim.unit_of("s1")].driver.open_asks(), 1);
}

#[test]
fn an_error_answer_reaches_the_agent_and_is_summarised() {
    let (mut sim, a, _) = with_ask();
    sim.send(a, err(json!("perm:s1:1"), -1, "no"));
    assert_eq!(sim.take_agent(A1), vec![err(json!(70), -1, "no")]);
    assert_eq!(
        sim.take(a),
        vec![stamped(
            3,
            resolved(
                "perm:s1:1",
                json!({"outcome": "error", "error": {"code": -1, "message": "no"}}),
                "a"
            )
        )]
    );
}

/// Cancel: the agent hears session/cancel and a cancelled answer to each ask.
#[test]
fn cancel_settles_every_open_ask() {
    let (mut sim, a, b) = with_ask();
    sim.ask(A1, 71, "s1");
    sim.clear();
    sim.send(b, note("session/cancel", json!({"sessionId": "s1"})));
    assert_eq!(
        sim.take_agent(A1),
        vec![
            note("session/cancel", json!({"sessionId": "s1"})),
            ok(json!(70), json!({"outcome": {"outcome": "cancelled"}})),
            ok(json!(71), json!({"outcome": {"outcome": "cancelled"}})),
        ]
    );
    let out = vec![
        stamped(
            4,
            resolved("perm:s1:1", json!({"outcome": "cancelled"}), "b"),
        ),
        stamped(
            5,
            resolved("perm:s1:2", json!({"outcome": "cancelled"}), "b"),
        ),
    ];
    assert_eq!(sim.take(a), out);
    assert_eq!(sim.take(b), out);
}

#[test]
fn the_turn_end_settles_asks_left_open() {
    let (mut sim, a, _) = with_ask();
    sim.answer(A1, "session/prompt", json!({"stopReason": "end_turn"}));
    assert_eq!(
        sim.take_agent(A1),
        vec![ok(json!(70), json!({"outcome": {"outcome": "cancelled"}}))]
    );
    assert_eq!(
        sim.take(a),
        vec![
            stamped(3, ok(json!("p"), json!({"stopReason": "end_turn"}))),
            stamped(
                4,
                resolved("perm:s1:1", json!({"outcome": "cancelled"}), "turn-end")
            ),
        ]
    );
}

#[test]
fn an_ask_for_an_unknown_session_is_answered_cancelled() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.clear();
    sim.ask(A1, 5, "other");
    assert_eq!(
        sim.take_agent(A1),
        vec![ok(json!(5), json!({"outcome": {"outcome": "cancelled"}}))]
    );
    assert!(sim.take(a).is_empty());
}

#[test]
fn asks_past_the_bound_are_answered_cancelled() {
    let mut sim = Sim::boot_with(RouterConfig {
        max_asks: 1,
        ..RouterConfig::default()
    });
    let a = sim.open("a");
    sim.ask(A1, 5, "s1");
    sim.clear();
    sim.ask(A1, 6, "s1");
    assert_eq!(
        sim.take_agent(A1),
        vec![ok(json!(6), json!({"outcome": {"outcome": "cancelled"}}))]
    );
    assert!(sim.take(a).is_empty());
}

#[test]
fn auto_approve_picks_an_allow_option_and_records_it() {
    let mut sim = Sim::boot_with(RouterConfig {
        auto_approve: true,
        ..RouterConfig::default()
    });
    let a = sim.open("a");
    sim.clear();
    sim.ask(A1, 5, "s1");
    let pick = json!({"outcome": "selected", "optionId": "allow"});
    assert_eq!(
        sim.take_agent(A1),
        vec![ok(json!(5), json!({"outcome": pick}))]
    );
    assert_eq!(
        sim.take(a),
        vec![stamped(1, resolved("perm:s1:1", pick, "auto-approve"))]
    );
}

#[test]
fn an_elicitation_fans_like_a_permission_ask() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.clear();
    sim.agent_says(
        A1,
        req(
            json!(8),
            "elicitation/create",
            json!({"sessionId": "s1", "message": "name?"}),
        ),
    );
    assert_eq!(
        sim.take(a),
        vec![stamped(
            1,
            req(
                json!("perm:s1:1"),
                "elicitation/create",
                json!({"sessionId": "s1", "message": "name?"})
            )
        )]
    );
}

/// The ask ids carry the relay's id when the agent's differs.
#[test]
fn asks_name_the_relay_session() {
    let mut sim = Sim::new(RouterConfig::default());
    sim.answer(A1, "initialize", init_result(json!({})));
    sim.answer(A1, "session/new", json!({"sessionId": "agent-1"}));
    let a = sim.open("a");
    sim.clear();
    sim.ask(A1, 8, "agent-1");
    let out = sim.take(a);
    assert_eq!(out[0]["id"], json!("perm:agent-1:1"));
    assert_eq!(out[0]["params"]["sessionId"], json!("agent-1"));
}
