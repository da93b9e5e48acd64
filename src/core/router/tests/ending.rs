//! Telling the agent a session ended: ACP `session/close` when it
//! advertises `sessionCapabilities.close`, otherwise retiring the shared agent
//! after [`MAX_SESSIONS_PER_AGENT`] sessions and ending it once it is quiet.

use super::*;
use serde_json::json;

fn closing_agent() -> Sim {
    let mut sim = Sim::new(RouterConfig::default());
    sim.answer(
        A1,
        "initialize",
        init_result(json!({"loadSession": true, "sessionCapabilities": {"close": {}}})),
    );
    sim.answer(A1, "session/new", json!({"sessionId": "s1"}));
    sim.take_agent(A1);
    sim
}

#[test]
fn a_closed_session_is_closed_at_an_agent_that_can() {
    let mut sim = closing_agent();
    let a = sim.two_sessions();
    sim.take_agent(A1);
    sim.send(
        a,
        req(json!(3), "session/close", json!({"sessionId": "s2"})),
    );
    assert_eq!(
        sim.take_agent(A1),
        vec![req(json!(4), "session/close", json!({"sessionId": "s2"}))]
    );
    // Its answer, even a refusal, is only logged.
    sim.answer_err(A1, "session/close", json!({"code": -1, "message": "x"}));
    assert!(sim.take_agent(A1).is_empty());
    assert!(!sim.r.links[&A1].sessions.contains_key("s2"));
}

#[test]
fn an_evicted_session_is_closed_at_the_agent_too() {
    let mut sim = closing_agent();
    sim.r.cfg.max_sessions = 3;
    let a = sim.two_sessions();
    sim.new_session(a, 3, A1, "s3");
    sim.take_agent(A1);
    sim.send(a, req(json!(4), "session/new", json!({})));
    assert_eq!(
        sim.take_agent(A1),
        vec![
            req(json!(5), "session/close", json!({"sessionId": "s2"})),
            req(
                json!(6),
                "session/new",
                json!({"cwd": "/", "mcpServers": []})
            ),
        ]
    );
}

#[test]
fn an_agent_without_close_is_never_sent_one() {
    let mut sim = Sim::boot();
    let a = sim.two_sessions();
    sim.take_agent(A1);
    sim.send(
        a,
        req(json!(3), "session/close", json!({"sessionId": "s2"})),
    );
    assert!(sim.take_agent(A1).is_empty());
}

/// Past the bound the shared agent takes no new session; it is ended once
/// quiet, and its sessions resume on the fresh agent.
#[test]
fn an_agent_that_cannot_close_is_retired_after_its_bound() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 0, A1, "unused");
    // The default counts: MAX - 1 more opened and closed.
    for i in 1..MAX_SESSIONS_PER_AGENT {
        let sid = sim.new_session(a, 2 * i, A1, &format!("x{i}"));
        sim.send(
            a,
            req(json!(2 * i + 1), "session/close", json!({"sessionId": sid})),
        );
    }
    assert!(sim.r.links[&A1].retired, "the bound was reached");
    assert!(
        sim.agents[&A1].killed,
        "quiet: only the idle default was left on it"
    );
    let d = &sim.r.units[&sim.r.default_unit];
    assert_eq!(
        (d.driver.agent, d.driver.resume_from.as_deref()),
        (None, Some("s1"))
    );
    // The next session opens on a fresh agent.
    sim.send(a, req(json!("n"), "session/new", json!({})));
    let init = sim.pending(A2, "initialize");
    sim.agent_says(A2, ok(init.id, init_result(json!({"loadSession": true}))));
    sim.answer(A2, "session/new", json!({"sessionId": "fresh"}));
    // The default resumes there with session/load at its next prompt.
    sim.clear();
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "hi")),
    );
    let load = sim.pending(A2, "session/load");
    assert_eq!(load.params["sessionId"], json!("s1"));
}

#[test]
fn a_retired_agent_with_a_busy_session_ends_after_that_turn() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 0, A1, "unused");
    sim.send(
        a,
        req(json!("p"), "session/prompt", prompt_params("s1", "long")),
    );
    if let Some(l) = sim.r.links.get_mut(&A1) {
        l.opened = MAX_SESSIONS_PER_AGENT;
    }
    let sid = sim.new_session(a, 1, A1, "x");
    sim.send(a, req(json!(2), "session/close", json!({"sessionId": sid})));
    assert!(sim.r.links[&A1].retired);
    assert!(!sim.agents[&A1].killed, "s1 is busy");
    sim.answer(A1, "session/prompt", json!({"stopReason": "end_turn"}));
    assert!(sim.agents[&A1].killed, "ended once quiet");
}
