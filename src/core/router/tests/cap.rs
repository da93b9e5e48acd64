//! `--max-sessions`: what counts toward it (every session a device opened,
//! not the unopened default), which sessions eviction may end (a session
//! only the requesting device views is fair game), that agent processes stay
//! within it with `--agent-per-session`, and the login notification only for
//! ACP's `auth_required`.

use super::*;
use crate::core::events::RelayEvent;
use crate::core::ids::Place;
use crate::core::rpc::code;
use serde_json::json;

const A3: AgentId = AgentId(3);

/// Projects `api` (the default) and `web`; sessions open on agent `one`.
fn two_projects(max_sessions: usize, agent_per_session: bool) -> RouterConfig {
    RouterConfig {
        max_sessions,
        agent_per_session,
        ..super::places::two_by_two()
    }
}

fn in_project(project: u64) -> Place {
    super::places::place(0, project)
}

/// A relay socket whose welcome is taken, after an answered `initialize`
/// (which starts the placeholder's agent, agent 1, on a fresh relay).
fn initialized(sim: &mut Sim, client: &str) -> SocketId {
    let s = sim.open(client);
    sim.send(
        s,
        req(
            json!(0),
            "initialize",
            json!({"protocolVersion": 1, "clientCapabilities": {}}),
        ),
    );
    if sim.has_pending(A1, "initialize") {
        sim.answer(A1, "initialize", init_result(json!({"loadSession": true})));
    }
    let frames = sim.take(s);
    assert!(
        frames
            .iter()
            .any(|f| f["id"] == json!(0) && f["result"].is_object()),
        "{frames:?}"
    );
    s
}

/// `session/new` in `cwd` from `socket`; `agent` (started for it) answers
/// `initialize` if asked and opens `asid`. The device's answer.
fn open_in(
    sim: &mut Sim,
    socket: SocketId,
    id: u64,
    cwd: &str,
    agent: AgentId,
    asid: &str,
) -> Value {
    sim.send(
        socket,
        req(
            json!(id),
            "session/new",
            json!({"cwd": cwd, "mcpServers": []}),
        ),
    );
    if sim.has_pending(agent, "initialize") {
        sim.answer(
            agent,
            "initialize",
            init_result(json!({"loadSession": true})),
        );
    }
    if sim.has_pending(agent, "session/new") {
        sim.answer(agent, "session/new", json!({"sessionId": asid}));
    }
    let frames = sim.take(socket);
    frames
        .into_iter()
        .find(|f| f["id"] == json!(id))
        .unwrap_or_else(|| panic!("no answer to session/new {id}"))
}

/// `--max-sessions 1` with two projects and an agent per session: a session
/// in the second project opens (the unopened default holds no slot), the
/// default's idle agent is stopped so one agent runs, and a session in the
/// default project later takes the slot back from the phone's own session.
#[test]
fn a_session_in_another_project_opens_under_a_cap_of_one() {
    let mut sim = Sim::lazy(two_projects(1, true));
    let a = initialized(&mut sim, "a");
    assert_eq!(sim.agents[&A1].place, in_project(0), "the default's agent");
    assert_eq!(sim.r.live_sessions(), 0);
    let answer = open_in(&mut sim, a, 1, "/p/web", A2, "w1");
    assert_eq!(answer["result"]["sessionId"], "w1", "{answer}");
    assert_eq!(sim.agents[&A2].place, in_project(1));
    assert!(
        sim.agents[&A1].killed,
        "the default's idle agent is stopped"
    );
    assert_eq!(sim.running_agents(), 1);
    assert_eq!(sim.r.live_sessions(), 1);
    sim.check_bounds().expect("within the cap");
    // The phone's own session does not protect it from the phone's next open.
    let answer = open_in(&mut sim, a, 2, "/p/api", A3, "d1");
    assert_eq!(answer["result"]["sessionId"], "d1", "{answer}");
    assert!(!sim.r.by_session.contains_key("w1"), "w1 was evicted");
    assert!(sim.r.stored.contains_key("w1"), "w1 stays in the store");
    assert!(sim.agents[&A2].killed, "w1's agent ended with it");
    assert_eq!(sim.agents[&A3].place, in_project(0));
    assert_eq!(sim.r.units.len(), 1, "the default, claimed");
    assert_eq!(sim.running_agents(), 1);
    assert_eq!(sim.r.live_sessions(), 1);
    sim.check_bounds().expect("within the cap");
}

/// Shared agents, `--max-sessions 2`, two devices in the second project:
/// both open (the unopened default does not count), a third device is
/// refused, and `/metrics` says the cap is full when it refuses.
#[test]
fn the_unopened_default_holds_no_slot() {
    let mut sim = Sim::lazy(two_projects(2, false));
    let a = initialized(&mut sim, "a");
    let b = initialized(&mut sim, "b");
    let c = initialized(&mut sim, "c");
    let answer = open_in(&mut sim, a, 1, "/p/web", A2, "w1");
    assert_eq!(answer["result"]["sessionId"], "w1", "{answer}");
    let answer = open_in(&mut sim, b, 1, "/p/web", A2, "w2");
    assert_eq!(answer["result"]["sessionId"], "w2", "{answer}");
    assert_eq!(sim.r.live_sessions(), 2);
    assert_eq!(
        sim.r.units.len(),
        3,
        "two sessions and the unopened default"
    );
    let answer = open_in(&mut sim, c, 1, "/p/web", A2, "w3");
    assert_eq!(answer["error"]["code"], json!(code::LIMIT), "{answer}");
    assert_eq!(sim.r.live_sessions(), 2, "full, as the refusal says");
    sim.check_bounds().expect("within the cap");
}

/// A device attached to the unopened default cannot open it past the cap
/// by prompting it (no `session/new`): the prompt is refused.
#[test]
fn a_prompt_cannot_open_the_default_past_the_cap() {
    let mut sim = Sim::lazy(two_projects(1, false));
    let a = initialized(&mut sim, "a");
    let b = initialized(&mut sim, "b");
    let answer = open_in(&mut sim, a, 1, "/p/web", A2, "w1");
    assert_eq!(answer["result"]["sessionId"], "w1", "{answer}");
    sim.send(
        b,
        req(
            json!(2),
            "session/prompt",
            json!({"prompt": [{"type": "text", "text": "hi"}]}),
        ),
    );
    let answer = sim.take(b).into_iter().find(|f| f["id"] == json!(2));
    assert_eq!(
        answer.map(|f| f["error"]["code"].clone()),
        Some(json!(code::LIMIT))
    );
    assert!(
        !sim.has_pending(A1, "session/new"),
        "the default's agent session is not opened"
    );
    assert_eq!(sim.r.live_sessions(), 1);
    sim.check_bounds().expect("within the cap");
}

/// A stored session of the second project loaded under `--max-sessions 1`
/// with an agent per session: the default's idle agent (of the other
/// project, so it cannot be handed over) is stopped.
#[test]
fn loading_a_session_of_another_project_stops_the_defaults_idle_agent() {
    let mut sim = Sim::lazy(two_projects(1, true));
    let a = initialized(&mut sim, "a");
    let mut info = super::lifecycle::stored_info("old", 0);
    info.project = Some("web".into());
    info.cwd = "/p/web".into();
    sim.r.add_stored([info]);
    sim.send(
        a,
        req(json!(1), "session/load", json!({"sessionId": "old"})),
    );
    assert!(
        sim.agents[&A1].killed,
        "the default's idle agent is stopped"
    );
    assert_eq!(sim.agents[&A2].place, in_project(1));
    sim.answer(A2, "initialize", init_result(json!({"loadSession": true})));
    sim.answer(A2, "session/load", json!({}));
    let frames = sim.take(a);
    assert!(
        frames
            .iter()
            .any(|f| f["id"] == json!(1) && f["result"]["sessionId"] == "old"),
        "{frames:?}"
    );
    assert_eq!(sim.running_agents(), 1);
    sim.check_bounds().expect("within the cap");
}

/// One phone under `--max-sessions 2` opens a third session: the one it
/// views (and leaves for the new one) is evicted, the default stays.
#[test]
fn one_phone_opens_a_third_session_under_a_cap_of_two() {
    let mut sim = Sim::boot_with(RouterConfig {
        max_sessions: 2,
        ..RouterConfig::default()
    });
    let a = sim.two_sessions();
    assert_eq!(sim.new_session(a, 3, A1, "s3"), "s3");
    assert!(!sim.r.by_session.contains_key("s2"), "s2 was evicted");
    assert!(sim.r.by_session.contains_key("s1"), "the default stays");
    assert!(sim.r.units[&sim.unit_of("s3")].hub.views(a), "a views s3");
    assert_eq!(sim.r.live_sessions(), 2);
}

// ---- the login notification ----

fn logins(sim: &Sim) -> Vec<&RelayEvent> {
    sim.events
        .iter()
        .filter(|e| matches!(e, RelayEvent::AgentNeedsLogin { .. }))
        .collect()
}

/// A prompt on `s1` that agent 1 refuses with `error`; the events after.
fn refused_prompt(error: Value) -> Sim {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.new_session(a, 1, A1, "unused");
    sim.send(
        a,
        req(json!(2), "session/prompt", prompt_params("s1", "Refactor")),
    );
    sim.answer_err(A1, "session/prompt", error.clone());
    let answer = sim.take(a).into_iter().find(|f| f["id"] == json!(2));
    assert_eq!(answer.map(|f| f["error"].clone()), Some(error));
    sim
}

#[test]
fn a_prompt_refused_with_a_generic_server_error_notifies_no_login() {
    let sim = refused_prompt(json!({"code": -32000, "message": "internal failure"}));
    assert!(logins(&sim).is_empty(), "{:?}", sim.events);
    // Another code that mentions authentication is not auth_required either.
    let sim = refused_prompt(json!({"code": -32603, "message": "Authentication required"}));
    assert!(logins(&sim).is_empty(), "{:?}", sim.events);
}

#[test]
fn a_prompt_refused_as_auth_required_notifies_a_login() {
    let sim = refused_prompt(json!({"code": -32000, "message": "Authentication required"}));
    assert_eq!(
        logins(&sim),
        vec![&RelayEvent::AgentNeedsLogin {
            agent: A1,
            session: Some("s1".into()),
            title: Some("Refactor".into()),
            message: "Authentication required".into(),
        }]
    );
    // The marker may be in the data only.
    let sim = refused_prompt(json!({
        "code": -32000,
        "message": "refused",
        "data": {"reason": "AUTH_REQUIRED"}
    }));
    assert_eq!(logins(&sim).len(), 1, "{:?}", sim.events);
}

/// `session/new` refusals go by the same rule as prompts.
#[test]
fn a_session_new_refusal_notifies_a_login_only_for_auth_required() {
    for (error, notified) in [
        (
            json!({"code": -32000, "message": "internal failure"}),
            false,
        ),
        (json!({"code": -32000, "message": "auth_required"}), true),
        (json!({"code": -32602, "message": "auth_required"}), false),
    ] {
        let mut sim = Sim::boot();
        let a = sim.open("a");
        sim.new_session(a, 1, A1, "unused");
        sim.send(a, req(json!(2), "session/new", json!({})));
        sim.answer_err(A1, "session/new", error.clone());
        let answer = sim.take(a).into_iter().find(|f| f["id"] == json!(2));
        assert_eq!(
            answer.map(|f| f["error"]["code"].clone()),
            Some(error["code"].clone())
        );
        assert_eq!(logins(&sim).len(), usize::from(notified), "{error}");
    }
}
