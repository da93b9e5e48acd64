//! Projects and agents: `session/new` picks a project by `cwd` or name and
//! an agent by name, jobs and shells run in their session's project, one
//! shared agent per (agent, project), stored sessions come back to theirs,
//! and idle agents are stopped and resumed.

use super::*;
use crate::core::ids::{AgentKind, Place, ProjectId};
use crate::core::rpc::code;
use serde_json::json;

const A3: AgentId = AgentId(3);

pub(super) fn two_by_two() -> RouterConfig {
    RouterConfig {
        projects: vec![
            ProjectCfg {
                name: "api".into(),
                path: "/p/api".into(),
            },
            ProjectCfg {
                name: "web".into(),
                path: "/p/web".into(),
            },
        ],
        agents: vec!["one".into(), "two".into()],
        cwd: "/p/api".into(),
        ..RouterConfig::default()
    }
}

pub(super) fn place(agent: u64, project: u64) -> Place {
    Place {
        agent: AgentKind(agent),
        project: ProjectId(project),
    }
}

/// A booted router with `cfg` and a relay socket whose welcome is taken.
fn booted(cfg: RouterConfig) -> (Sim, SocketId) {
    let mut sim = Sim::boot_with(cfg);
    let a = sim.open("a");
    sim.take(a);
    (sim, a)
}

/// `session/new` with `params` from `socket`; the answer frame, if any yet.
fn new_with(sim: &mut Sim, socket: SocketId, id: u64, params: Value) -> Option<Value> {
    sim.send(socket, req(json!(id), "session/new", params));
    sim.take(socket).into_iter().find(|f| f["id"] == json!(id))
}

/// Opens a session in `web` on agent `two`: agent 2, agent session `w1`.
fn web_two(sim: &mut Sim, socket: SocketId) -> String {
    let params =
        json!({"cwd": "/p/web/src", "mcpServers": [], "_meta": {"relay": {"agent": "two"}}});
    assert_eq!(new_with(sim, socket, 7, params), None, "waits for agent 2");
    assert_eq!(sim.agents[&A2].place, place(1, 1));
    sim.answer(A2, "initialize", init_result(json!({"loadSession": true})));
    let open = sim.pending(A2, "session/new");
    assert_eq!(open.params["cwd"], json!("/p/web"));
    sim.agent_says(A2, ok(open.id, json!({"sessionId": "w1"})));
    let frames = sim.take(socket);
    let answer = frames.iter().find(|f| f["id"] == json!(7)).expect("answer");
    answer["result"]["sessionId"].as_str().unwrap().to_owned()
}

#[test]
fn session_new_picks_the_project_of_its_cwd_and_the_agent_it_names() {
    let mut sim = Sim::boot_with(two_by_two());
    assert_eq!(sim.agents[&A1].place, place(0, 0));
    let a = sim.open("a");
    sim.take(a);
    let sid = web_two(&mut sim, a);
    assert_eq!(sid, "w1");
    let unit = sim.unit_of("w1");
    assert_eq!(sim.r.units[&unit].place, place(1, 1));
    sim.send(a, req(json!(8), "session/list", json!({})));
    let list = sim.take(a);
    let rows = list[0]["result"]["sessions"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "the unclaimed default is not listed");
    assert_eq!(rows[0]["cwd"], json!("/p/web"));
    assert_eq!(rows[0]["_meta"]["relay"]["project"], json!("web"));
    assert_eq!(rows[0]["_meta"]["relay"]["agent"], json!("two"));
    // The default agent's default project, by name: the default session is claimed.
    let params = json!({"cwd": "/elsewhere", "_meta": {"relay": {"project": "api"}}});
    let answer = new_with(&mut sim, a, 9, params).expect("answered at once");
    assert_eq!(answer["result"]["sessionId"], json!("s1"));
}

#[test]
fn a_cwd_outside_every_project_and_unknown_names_are_refused() {
    let (mut sim, a) = booted(two_by_two());
    let answer = new_with(&mut sim, a, 1, json!({"cwd": "/p/apix"})).unwrap();
    assert_eq!(
        answer,
        err(
            json!(1),
            code::INVALID_PARAMS,
            "cwd '/p/apix' is not inside a project this relay serves; use a directory in one of: api (/p/api), web (/p/web) (or name one in _meta.relay.project)"
        )
    );
    let answer = new_with(&mut sim, a, 2, json!({"cwd": "/p/api/../web"})).unwrap();
    assert_eq!(answer["error"]["code"], json!(code::INVALID_PARAMS));
    let params = json!({"cwd": "/p/api", "_meta": {"relay": {"agent": "three"}}});
    let answer = new_with(&mut sim, a, 3, params).unwrap();
    assert_eq!(
        answer["error"]["message"],
        json!("unknown agent 'three' in _meta.relay.agent; this relay runs: one, two")
    );
    let params = json!({"_meta": {"relay": {"project": 7}}});
    let answer = new_with(&mut sim, a, 4, params).unwrap();
    assert_eq!(answer["error"]["code"], json!(code::INVALID_PARAMS));
    assert!(
        !sim.agents.contains_key(&A2),
        "no agent started for a refusal"
    );
}

#[test]
fn with_one_project_any_cwd_means_it() {
    let (mut sim, a) = booted(RouterConfig::default());
    let answer = new_with(&mut sim, a, 1, json!({"cwd": "/home/laptop/x"})).unwrap();
    assert_eq!(answer["result"]["sessionId"], json!("s1"));
}

#[test]
fn jobs_and_shells_run_in_their_sessions_project() {
    let (mut sim, a) = booted(two_by_two());
    web_two(&mut sim, a);
    sim.agent_says(
        A2,
        req(
            json!(5),
            "fs/read_text_file",
            json!({"sessionId": "w1", "path": "/p/web/f"}),
        ),
    );
    let job = sim.jobs.pop_front().expect("a job");
    assert_eq!(
        (job.method.as_str(), job.project),
        ("fs/read_text_file", ProjectId(1))
    );
    // The device views w1: its queries go to web too.
    sim.send(a, req(json!(6), "_relay/fs/tree", json!({"path": ""})));
    let job = sim.jobs.pop_front().expect("a job");
    assert_eq!(
        (job.method.as_str(), job.project),
        ("_relay/fs/tree", ProjectId(1))
    );
    // The default agent's jobs stay in api.
    sim.agent_says(
        A1,
        req(
            json!(1),
            "fs/read_text_file",
            json!({"sessionId": "s1", "path": "/p/api/f"}),
        ),
    );
    assert_eq!(sim.jobs.pop_front().expect("a job").project, ProjectId(0));
}

#[test]
fn one_shared_agent_per_agent_and_project() {
    let (mut sim, a) = booted(two_by_two());
    web_two(&mut sim, a);
    // Another session in web on two: the same process.
    let params = json!({"cwd": "/p/web", "_meta": {"relay": {"agent": "two"}}});
    assert_eq!(new_with(&mut sim, a, 10, params), None);
    assert!(sim.has_pending(A2, "session/new"));
    assert!(!sim.agents.contains_key(&A3));
    // Agent two in api: a process of its own, working in api.
    let params = json!({"cwd": "/p/api", "_meta": {"relay": {"agent": "two"}}});
    assert_eq!(new_with(&mut sim, a, 11, params), None);
    assert_eq!(sim.agents[&A3].place, place(1, 0));
    sim.check_bounds().unwrap();
}

#[test]
fn initialize_lists_every_agent_with_its_capabilities_once_started() {
    let (mut sim, a) = booted(two_by_two());
    sim.send(
        a,
        req(json!(1), "initialize", json!({"protocolVersion": 1})),
    );
    let init = sim.take(a).remove(0);
    let relay = &init["result"]["_meta"]["relay"];
    assert_eq!(
        relay["agents"],
        json!([
            {"name": "one", "default": true, "initialized": true,
             "agentCapabilities": {"loadSession": true}, "agentInfo": null, "authMethods": null},
            {"name": "two", "default": false, "initialized": false,
             "agentCapabilities": null, "agentInfo": null, "authMethods": null},
        ])
    );
    assert_eq!(
        relay["projects"],
        json!([
            {"name": "api", "path": "/p/api", "default": true},
            {"name": "web", "path": "/p/web", "default": false},
        ])
    );
    assert!(!sim.agents.contains_key(&A2), "initialize starts no agent");
    web_two(&mut sim, a);
    sim.send(
        a,
        req(json!(2), "initialize", json!({"protocolVersion": 1})),
    );
    let init = sim.take(a).remove(0);
    assert_eq!(
        init["result"]["_meta"]["relay"]["agents"][1]["initialized"],
        json!(true)
    );
}

#[test]
fn a_stored_session_resumes_with_its_agent_in_its_project() {
    let mut sim = Sim::boot_with(two_by_two());
    let info = StoredInfo {
        session_id: "old".into(),
        title: None,
        cwd: "/p/web".into(),
        created_ms: 1,
        updated_ms: 2,
        agent_session: Some("w9".into()),
        project: Some("web".into()),
        agent: Some("two".into()),
        head_seq: 0,
    };
    let gone = StoredInfo {
        session_id: "gone".into(),
        project: Some("docs".into()),
        ..info.clone()
    };
    sim.r.add_stored([info, gone]);
    let a = sim.open("a");
    sim.take(a);
    sim.send(
        a,
        req(
            json!(1),
            "session/load",
            json!({"sessionId": "old", "cwd": "/p/web"}),
        ),
    );
    assert_eq!(sim.agents[&A2].place, place(1, 1));
    sim.answer(A2, "initialize", init_result(json!({"loadSession": true})));
    let load = sim.pending(A2, "session/load");
    assert_eq!(
        load.params,
        json!({"sessionId": "w9", "cwd": "/p/web", "mcpServers": []})
    );
    sim.send(
        a,
        req(json!(2), "session/load", json!({"sessionId": "gone"})),
    );
    let answer = sim
        .take(a)
        .into_iter()
        .find(|f| f["id"] == json!(2))
        .unwrap();
    assert_eq!(
        answer["error"]["message"],
        json!(
            "session 'gone' ran in project 'docs', which this relay does not serve; restart it with --workspace docs=DIR to load it"
        )
    );
    assert!(sim.r.stored.contains_key("gone"), "still listed");
}

#[test]
fn an_idle_agent_is_stopped_and_its_session_resumes_on_the_next_prompt() {
    let cfg = RouterConfig {
        agent_idle_ms: 60_000,
        ..two_by_two()
    };
    let (mut sim, a) = booted(cfg);
    web_two(&mut sim, a);
    let deadline = sim.r.poll_timeout().expect("an idle deadline");
    sim.wait(deadline - sim.now - 2);
    assert!(!sim.agents[&A2].killed, "not before --agent-idle");
    sim.wait(60_000);
    assert!(sim.agents[&A1].killed && sim.agents[&A2].killed);
    assert_eq!(sim.r.poll_timeout(), None, "nothing left to stop");
    sim.exit(A2, "signal: 15, stopped by the relay");
    // The session is still live; its next prompt starts a fresh agent two in web.
    sim.send(
        a,
        req(json!(3), "session/prompt", prompt_params("w1", "hi")),
    );
    assert_eq!(sim.agents[&A3].place, place(1, 1));
    sim.answer(A3, "initialize", init_result(json!({"loadSession": true})));
    let load = sim.pending(A3, "session/load");
    assert_eq!(load.params["sessionId"], json!("w1"));
    assert_eq!(load.params["cwd"], json!("/p/web"));
}

#[test]
fn a_busy_agent_is_never_idle() {
    let cfg = RouterConfig {
        agent_idle_ms: 1_000,
        ..RouterConfig::default()
    };
    let (mut sim, a) = booted(cfg);
    sim.send(
        a,
        req(json!(1), "session/prompt", prompt_params("s1", "hi")),
    );
    assert!(sim.has_pending(A1, "session/prompt"));
    sim.wait(5_000);
    assert!(!sim.agents[&A1].killed, "a turn is running");
}

#[test]
fn authenticate_reaches_the_agent_it_names_before_any_session_of_it() {
    let (mut sim, a) = booted(two_by_two());
    let params = json!({"methodId": "login", "_meta": {"relay": {"agent": "two"}}});
    sim.send(a, req(json!(1), "authenticate", params));
    assert_eq!(
        sim.agents[&A2].place,
        place(1, 0),
        "two, in the socket's project"
    );
    sim.answer(A2, "initialize", init_result(json!({})));
    let auth = sim.pending(A2, "authenticate");
    assert_eq!(auth.params, json!({"methodId": "login", "_meta": {}}));
    sim.agent_says(A2, ok(auth.id, json!({})));
    assert_eq!(sim.take(a), vec![ok(json!(1), json!({}))]);
    // Again: the same process.
    sim.send(
        a,
        req(
            json!(2),
            "authenticate",
            json!({"methodId": "login", "_meta": {"relay": {"agent": "two"}}}),
        ),
    );
    assert!(sim.has_pending(A2, "authenticate"));
    assert!(!sim.agents.contains_key(&A3));
    sim.send(
        a,
        req(
            json!(3),
            "authenticate",
            json!({"_meta": {"relay": {"agent": "nine"}}}),
        ),
    );
    let answer = sim
        .take(a)
        .into_iter()
        .find(|f| f["id"] == json!(3))
        .unwrap();
    assert_eq!(answer["error"]["code"], json!(code::INVALID_PARAMS));
}

#[test]
fn keep_sessions_counts_every_project_and_agent_together() {
    let cfg = RouterConfig {
        keep_sessions: 2,
        ..two_by_two()
    };
    let (mut sim, a) = booted(cfg);
    let stored = |sid: &str, project: &str, agent: &str, updated_ms: u64| StoredInfo {
        session_id: sid.into(),
        title: None,
        cwd: format!("/p/{project}"),
        created_ms: 1,
        updated_ms,
        agent_session: None,
        project: Some(project.into()),
        agent: Some(agent.into()),
        head_seq: 0,
    };
    sim.r.add_stored([
        stored("old-api", "api", "one", 10),
        stored("mid-web", "web", "two", 20),
        stored("new-api", "api", "two", 30),
    ]);
    sim.send(a, req(json!(1), "session/list", json!({})));
    let list = sim.take(a).remove(0);
    let rows: Vec<(String, String, String)> = list["result"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let m = &r["_meta"]["relay"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (s(&r["sessionId"]), s(&m["project"]), s(&m["agent"]))
        })
        .collect();
    let row = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        rows,
        [row("new-api", "api", "two"), row("mid-web", "web", "two")]
    );
}
