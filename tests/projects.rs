//! One relay, several projects and agents: `session/new` picks each by `cwd`
//! and `_meta.relay.agent`, each session's agent, files, queries and shells
//! stay in its own project, an unused agent is never started, sessions come
//! back with their own agent in their own project after `kill -9`, and an
//! idle agent is stopped and resumed on the next prompt.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Two projects (`api`, `web`, each with a file of its own) and three demo
/// agents (`one`, `two`, `three`), each with its own state dir.
struct Setup {
    dir: TempDir,
    api: PathBuf,
    web: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = TempDir::new("projects");
        let api = dir.path().join("api");
        let web = dir.path().join("web");
        for (p, file) in [(&api, "only-api.txt"), (&web, "only-web.txt")] {
            std::fs::create_dir_all(p.join("sub")).unwrap();
            std::fs::write(p.join(file), format!("{file} content\n")).unwrap();
        }
        let api = api.canonicalize().unwrap();
        let web = web.canonicalize().unwrap();
        Setup { dir, api, web }
    }

    fn state(&self, agent: &str) -> PathBuf {
        self.dir.path().join(format!("state-{agent}"))
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a = vec![
            "--workspace".to_owned(),
            format!("api={}", self.api.display()),
            "--workspace".to_owned(),
            format!("web={}", self.web.display()),
        ];
        for name in ["one", "two", "three"] {
            a.push("--agent".into());
            a.push(format!(
                "{name}={} demo-agent --state-dir {}",
                bin(),
                self.state(name).display()
            ));
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn start(&self, extra: &[&str]) -> Relay {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Relay::start(&args)
    }
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn cwd_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The relay's live agent processes that run with this state dir.
fn agent_pids(relay: &Relay, state: &Path) -> Vec<u32> {
    let needle = format!("demo-agent --state-dir {}", state.display());
    relay
        .descendants()
        .into_iter()
        .filter(|p| cmdline(*p).contains(&needle) && Proc::of_live(*p).is_some())
        .collect()
}

fn init(d: &mut Device) -> Value {
    d.recv_until("relay_welcome", |v| v["type"] == "relay_welcome");
    let id = d.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    d.response(&id)
}

/// `session/new` in `cwd` on `agent` (default when None); the session id.
fn new_in(d: &mut Device, cwd: &Path, agent: Option<&str>) -> String {
    let mut params = json!({"cwd": cwd, "mcpServers": []});
    if let Some(a) = agent {
        params["_meta"] = json!({"relay": {"agent": a}});
    }
    let id = d.request("session/new", params);
    let r = d.response(&id);
    r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new: {r}"))
        .to_owned()
}

/// Runs a prompt to its end; the agent's text of that turn.
fn turn(d: &mut Device, session: &str, text: &str) -> String {
    d.seen.clear();
    let id = d.request("session/prompt", prompt_params(session, text));
    let done = d.response(&id);
    assert_eq!(done["result"]["stopReason"], "end_turn", "{done}");
    agent_text(&d.seen)
}

fn list_row(d: &mut Device, session: &str) -> Value {
    let id = d.request("session/list", json!({}));
    let r = d.response(&id);
    r["result"]["sessions"]
        .as_array()
        .and_then(|rows| rows.iter().find(|s| s["sessionId"] == session).cloned())
        .unwrap_or_else(|| panic!("{session} not in {r}"))
}

/// A session's agent reads its own project's file, is refused the other
/// project's (by absolute path and by `..`), and runs commands in its own.
fn confined(
    d: &mut Device,
    session: &str,
    (mine, dir): (&str, &Path),
    (other, odir): (&str, &Path),
) {
    let script = format!(
        "/chunks 1\n/read only-{mine}.txt\n/read {}/only-{other}.txt\n/read ../{other}/only-{other}.txt\n/run pwd",
        odir.display()
    );
    let text = turn(d, session, &script);
    let ok = format!("read ok: 21 bytes: only-{mine}.txt content");
    assert!(text.contains(&ok), "{text}");
    assert_eq!(text.matches("read error").count(), 2, "{text}");
    assert!(
        !text.contains(&format!("only-{other}.txt content")),
        "{text}"
    );
    let pwd = format!("run exit 0: {}", dir.display());
    assert!(text.contains(&pwd), "{text}");
}

#[test]
fn each_session_runs_its_agent_in_its_own_project() {
    let s = Setup::new();
    let relay = s.start(&["--terminal"]);
    let mut d = relay.device("d", "");
    let init = init(&mut d);
    let meta = &init["result"]["_meta"]["relay"];
    let names = |k: &str| -> Vec<String> {
        meta[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("agents"), ["one", "two", "three"], "{meta}");
    assert_eq!(names("projects"), ["ws", "api", "web"], "{meta}");

    let sa = new_in(&mut d, &s.api.join("sub"), None);
    confined(&mut d, &sa, ("api", &s.api), ("web", &s.web));
    let sw = new_in(&mut d, &s.web, Some("two"));
    confined(&mut d, &sw, ("web", &s.web), ("api", &s.api));

    // The device views the web session: its workspace query lists web.
    let id = d.request("_relay/fs/tree", json!({}));
    let tree = d.response(&id).to_string();
    assert!(
        tree.contains("only-web.txt") && !tree.contains("only-api.txt"),
        "{tree}"
    );
    // A shell opened from it starts in web.
    let id = d.request("_relay/terminal/open", json!({"command": "sleep 31"}));
    assert!(d.response(&id)["result"]["terminalId"].is_string());
    let mut shell = None;
    wait_until("the shell to start", WAIT, || {
        shell = relay
            .descendants()
            .into_iter()
            .find(|p| cmdline(*p).contains("sleep 31"));
        shell.is_some()
    });
    assert_eq!(cwd_of(shell.unwrap()).as_deref(), Some(s.web.as_path()));

    for (sid, project, agent) in [(&sa, "api", "one"), (&sw, "web", "two")] {
        let row = list_row(&mut d, sid);
        assert_eq!(row["_meta"]["relay"]["project"], project, "{row}");
        assert_eq!(row["_meta"]["relay"]["agent"], agent, "{row}");
    }

    // The process table: agent one works in api (and in ws, for the default
    // session), two in web, three was never started.
    let cwds = |agent: &str| -> Vec<PathBuf> {
        agent_pids(&relay, &s.state(agent))
            .into_iter()
            .filter_map(cwd_of)
            .collect()
    };
    assert!(cwds("one").contains(&s.api), "{:?}", cwds("one"));
    assert_eq!(cwds("two"), std::slice::from_ref(&s.web));
    assert!(cwds("three").is_empty());
    let log = relay.log();
    assert!(
        log.contains(&format!("agent two in {}", s.web.display())),
        "{log}"
    );
    assert!(!log.contains("agent three in"), "{log}");
    assert!(!s.state("three").exists(), "agent three never ran");

    // A cwd outside every project is refused, naming them.
    let id = d.request("session/new", json!({"cwd": "/usr", "mcpServers": []}));
    let r = d.response(&id);
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("api ({})", s.api.display()))
            && msg.contains(&format!("web ({})", s.web.display())),
        "{msg}"
    );

    let id = d.request("_relay/projects", json!({}));
    let r = d.response(&id);
    let rows = r["result"]["projects"].as_array().unwrap();
    let row = rows.iter().find(|p| p["name"] == "web").unwrap();
    assert_eq!(row["path"], s.web.display().to_string(), "{r}");
    assert!(
        row.get("branch").is_some() && row.get("dirty").is_some(),
        "{r}"
    );
}

#[test]
fn after_kill9_each_session_resumes_with_its_agent_in_its_project() {
    let s = Setup::new();
    let mut relay = s.start(&[]);
    let mut d = relay.device("d", "");
    init(&mut d);
    let sa = new_in(&mut d, &s.api, Some("one"));
    turn(&mut d, &sa, "/chunks 1\nremember api");
    let sw = new_in(&mut d, &s.web, Some("two"));
    turn(&mut d, &sw, "/chunks 1\nremember web");
    d.close();
    relay.kill9();
    relay.launch("127.0.0.1:0");

    let mut d = relay.device("d2", "");
    init(&mut d);
    for (sid, project, agent, said) in [
        (&sa, &s.api, "one", "remember api"),
        (&sw, &s.web, "two", "remember web"),
    ] {
        let id = d.request(
            "session/load",
            json!({"sessionId": sid, "cwd": project, "mcpServers": []}),
        );
        let r = d.response(&id);
        assert!(r["result"].is_object(), "{r}");
        let text = turn(&mut d, sid, "/context");
        assert!(
            text.contains(&format!(
                "context: 1 earlier prompts; last: /chunks 1\n{said}"
            )),
            "{sid} resumed with its own agent's memory: {text}"
        );
        let text = turn(&mut d, sid, "/chunks 1\n/run pwd");
        assert!(
            text.contains(&format!("run exit 0: {}", project.display())),
            "{text}"
        );
        let pids = agent_pids(&relay, &s.state(agent));
        assert!(
            pids.iter()
                .any(|p| cwd_of(*p).as_deref() == Some(project.as_path())),
            "{agent} runs in {}",
            project.display()
        );
        let row = list_row(&mut d, sid);
        assert_eq!(row["_meta"]["relay"]["agent"], agent, "{row}");
    }
    assert!(agent_pids(&relay, &s.state("three")).is_empty());
}

#[test]
fn an_idle_agent_is_stopped_and_its_session_resumes_on_the_next_prompt() {
    let s = Setup::new();
    let relay = s.start(&["--agent-idle", "1"]);
    let mut d = relay.device("d", "");
    init(&mut d);
    let sw = new_in(&mut d, &s.web, Some("two"));
    turn(&mut d, &sw, "/chunks 1\nbefore the nap");
    let first = agent_pids(&relay, &s.state("two"));
    assert_eq!(first.len(), 1);
    wait_until("agent two to be stopped as idle", WAIT, || {
        agent_pids(&relay, &s.state("two")).is_empty()
    });
    relay.wait_log("no busy session for --agent-idle 1s");
    // Gone from the process table, the session is still live and listed.
    assert_eq!(list_row(&mut d, &sw)["_meta"]["relay"]["live"], true);
    let text = turn(&mut d, &sw, "/context");
    assert!(
        text.contains("context: 1 earlier prompts; last: /chunks 1\nbefore the nap"),
        "resumed through session/load: {text}"
    );
    let again = agent_pids(&relay, &s.state("two"));
    assert_eq!(again.len(), 1);
    assert_ne!(again, first, "a fresh process");
    assert_eq!(cwd_of(again[0]).as_deref(), Some(s.web.as_path()));
    // Quiet again, it is stopped again.
    wait_until("agent two to be stopped again", WAIT, || {
        agent_pids(&relay, &s.state("two")).is_empty()
    });
}

#[test]
fn a_stock_acp_client_sending_only_cwd_gets_that_project_and_the_default_agent() {
    let s = Setup::new();
    let relay = s.start(&[]);
    let mut c = relay.acp("stock");
    let id = c.request(
        "initialize",
        json!({"protocolVersion": 1, "clientCapabilities": {}}),
    );
    assert_eq!(c.response(&id)["result"]["protocolVersion"], 1);
    let id = c.request(
        "session/new",
        json!({"cwd": s.web.join("sub"), "mcpServers": []}),
    );
    let r = c.response(&id);
    let sid = r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let id = c.request("session/prompt", prompt_params(&sid, "/chunks 1\n/run pwd"));
    assert_eq!(c.response(&id)["result"]["stopReason"], "end_turn");
    let text = agent_text(&c.seen);
    assert!(
        text.contains(&format!("run exit 0: {}", s.web.display())),
        "{text}"
    );
    let pids = agent_pids(&relay, &s.state("one"));
    assert!(
        pids.iter()
            .any(|p| cwd_of(*p).as_deref() == Some(s.web.as_path()))
    );
    assert!(
        agent_pids(&relay, &s.state("two")).is_empty(),
        "the default agent only"
    );
    // A cwd in no project: -32602, naming them.
    let id = c.request(
        "session/new",
        json!({"cwd": "/home/laptop/code", "mcpServers": []}),
    );
    let r = c.response(&id);
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("web ("),
        "{r}"
    );
}

#[test]
fn an_idle_agent_that_ignores_sigterm_is_killed_after_the_grace() {
    let s = Setup::new();
    let state = s.state("stubborn");
    // SIG_IGN survives exec; after the demo agent ends (its stdin closed) a
    // `sleep` keeps the group, and its stdout, alive.
    let agent = format!(
        "stubborn=sh -c 'trap \"\" TERM; {} demo-agent --state-dir {}; exec sleep 61'",
        bin(),
        state.display()
    );
    let relay = Relay::start(&[
        "--workspace",
        &format!("api={}", s.api.display()),
        "--agent",
        &agent,
        "--agent-idle",
        "1",
    ]);
    let mut d = relay.device("d", "");
    init(&mut d);
    let sa = new_in(&mut d, &s.api, None);
    turn(&mut d, &sa, "/chunks 1\nhello");
    relay.wait_log("no busy session for --agent-idle 1s");
    relay.wait_log("still running 5s after SIGTERM; killing its process group");
    wait_until("the stubborn agents' groups to end", WAIT, || {
        relay.descendants().is_empty()
    });
}

#[test]
fn acp_relay_connect_picks_the_project_and_agent_it_is_told() {
    let s = Setup::new();
    let relay = s.start(&[]);
    let mut b = bridge::Bridge::start_args(&[
        format!("ws://127.0.0.1:{}/acp", relay.port),
        "--token".into(),
        relay.token.clone(),
        "--project".into(),
        "web".into(),
        "--agent".into(),
        "two".into(),
    ]);
    // bridge_session sends the client's own cwd ("/"), in no project.
    let sid = bridge::bridge_session(&mut b);
    let id = b.request("session/prompt", prompt_params(&sid, "/chunks 1\n/run pwd"));
    assert_eq!(b.response(&id)["result"]["stopReason"], "end_turn");
    let text = agent_text(&b.seen);
    assert!(
        text.contains(&format!("run exit 0: {}", s.web.display())),
        "{text}"
    );
    let pids = agent_pids(&relay, &s.state("two"));
    assert!(
        pids.iter()
            .any(|p| cwd_of(*p).as_deref() == Some(s.web.as_path()))
    );
    assert_eq!(b.finish(), Some(0));
}
