//! Several live sessions at once: no cross-talk, switching, the cap and eviction.
mod common;
use common::*;
use serde_json::json;

fn concurrent_sessions(flags: &[&str]) {
    let relay = Relay::start(flags);
    let mut a = relay.device("a", "");
    let mut b = relay.device("b", "");
    let sa = open_session(&mut a);
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let sb = new_session(&mut b);
    assert_ne!(sa, sb);
    let welcome_b = b.recv_until("welcome of the new session", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == sb.as_str()
    });
    assert_eq!(welcome_b["busy"], false);

    let ia = a.request(
        "session/prompt",
        prompt_params(&sa, "/chunks 3\n/sleep 200\n/chunks 3\nalpha"),
    );
    let ib = b.request(
        "session/prompt",
        prompt_params(&sb, "/chunks 3\n/sleep 200\n/chunks 3\nbravo"),
    );
    let da = a.response(&ia);
    let db = b.response(&ib);
    assert_eq!(da["result"]["stopReason"], "end_turn");
    assert_eq!(db["result"]["stopReason"], "end_turn");
    // b viewed the default session (a's) before its own: only its own count.
    let own = |frames: Vec<serde_json::Value>, s: &str| -> Vec<serde_json::Value> {
        frames
            .into_iter()
            .filter(|f| f["params"]["sessionId"].as_str().is_none_or(|x| x == s))
            .collect()
    };
    let fa = own(stamped_of(&a, &da), &sa);
    let fb = own(stamped_of(&b, &db), &sb);
    let text_a = agent_text(&fa);
    let text_b = agent_text(&fb);
    assert!(
        text_a.contains("alpha") && !text_a.contains("bravo"),
        "a saw only its session: {text_a}"
    );
    assert!(
        text_b.contains("bravo") && !text_b.contains("alpha"),
        "b saw only its session: {text_b}"
    );
    for f in &fa {
        if let Some(s) = f["params"]["sessionId"].as_str() {
            assert_eq!(s, sa);
        }
    }
    for frames in [&fa, &fb] {
        let seqs: Vec<u64> = frames.iter().map(|v| v["rseq"].as_u64().unwrap()).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{seqs:?}");
        }
    }
    // Each session has its own numbering; b's started after its own welcome.
    assert_eq!(fb[0]["rseq"], 1);
    let agents = agent_children(relay.pid()).len();
    let per_session = flags.contains(&"--agent-per-session");
    assert_eq!(agents, if per_session { 2 } else { 1 }, "agent processes");
}

#[test]
fn two_sessions_at_once_shared_agent() {
    concurrent_sessions(&[]);
}

#[test]
fn two_sessions_at_once_agent_per_session() {
    concurrent_sessions(&["--agent-per-session"]);
}

#[test]
fn switch_to_a_busy_session_replays_it_and_its_ask() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("a", "");
    let s1 = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&s1, "/chunks 2\n/ask"));
    let ask = a.recv_until("ask", |v| v["method"] == "session/request_permission");

    let mut b = relay.device("b", "");
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let s2 = new_session(&mut b);
    assert_ne!(s1, s2);
    b.recv_until("welcome s2", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == s2.as_str()
    });
    let load = b.request(
        "session/load",
        json!({"sessionId": s1, "cwd": "/", "mcpServers": []}),
    );
    let w = b.recv_until("welcome s1", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == s1.as_str()
    });
    assert_eq!(w["busy"], true);
    assert_eq!(w["pendingPermissionIds"], json!([ask["id"]]));
    let r = b.response(&load);
    assert!(r.get("result").is_some(), "{r}");
    assert!(
        b.seen.iter().any(|v| chunk_contains(v, "echo")),
        "ring replayed"
    );
    assert!(
        b.seen.iter().filter(|v| v["id"] == ask["id"]).count() >= 1,
        "open ask re-sent"
    );
    b.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    assert!(
        a.seen
            .iter()
            .any(|v| chunk_contains(v, "permission: allow"))
    );

    let unknown = b.request(
        "session/load",
        json!({"sessionId": "nope", "cwd": "/", "mcpServers": []}),
    );
    assert_eq!(b.response(&unknown)["error"]["code"], -32602);
}

#[test]
fn cap_evicts_the_oldest_idle_unviewed_session() {
    let relay = Relay::start(&["--max-sessions", "3"]);
    let mut a = relay.device("a", "");
    let s_default = open_session(&mut a);
    let id = a.request(
        "session/prompt",
        prompt_params(&s_default, "/chunks 1\ndefault"),
    );
    a.response(&id);
    // s2 gets a turn, then a moves on: s2 is idle and unviewed.
    let s2 = new_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&s2, "/chunks 1\nsecond"));
    a.response(&id);
    // s3 stays viewed by device b.
    let mut b = relay.device("b", "");
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let s3 = new_session(&mut b);
    b.recv_until("welcome s3", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == s3.as_str()
    });
    // a switches back to the default; opening a 4th must evict s2.
    let load = a.request(
        "session/load",
        json!({"sessionId": s_default, "cwd": "/", "mcpServers": []}),
    );
    a.response(&load);
    let s4 = new_session(&mut a);
    relay.wait_log(&format!("evicting session \"{s2}\""));
    assert!(!relay.log().contains(&format!("evicting session \"{s3}\"")));
    assert!(
        !relay
            .log()
            .contains(&format!("evicting session \"{s_default}\""))
    );

    let list = a.request("session/list", json!({}));
    let sessions = a.response(&list)["result"]["sessions"]
        .as_array()
        .unwrap()
        .clone();
    let live = |s: &str| {
        sessions
            .iter()
            .find(|v| v["sessionId"] == s)
            .map(|v| v["_meta"]["relay"]["live"].clone())
    };
    assert_eq!(
        live(&s2),
        Some(json!(false)),
        "evicted but stored: {sessions:?}"
    );
    assert_eq!(live(&s4), Some(json!(true)));
    assert_eq!(live(&s3), Some(json!(true)));

    // The evicted session loads again from the store, transcript and all,
    // once a slot can be freed: a leaves s4 for the default (every session
    // in view would refuse the load).
    let load = a.request(
        "session/load",
        json!({"sessionId": s_default, "cwd": "/", "mcpServers": []}),
    );
    a.response(&load);
    let mut c = relay.device("c", "");
    c.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let load = c.request(
        "session/load",
        json!({"sessionId": s2, "cwd": "/", "mcpServers": []}),
    );
    c.recv_until("welcome s2", |v| {
        v["type"] == "relay_welcome" && v["sessionId"] == s2.as_str()
    });
    c.response(&load);
    relay.wait_log(&format!("evicting session \"{s4}\""));
    assert!(agent_text(&c.seen).contains("second"), "{:?}", c.seen);
    let id = c.request("session/prompt", prompt_params(&s2, "/context"));
    c.response(&id);
    assert!(
        agent_text(&c.seen).contains("context: 1 earlier prompts; last: /chunks 1\nsecond"),
        "{}",
        agent_text(&c.seen)
    );
}

#[test]
fn close_ends_a_live_session_that_stays_loadable() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("a", "");
    let _default = open_session(&mut a);
    let s2 = new_session(&mut a);
    let id = a.request(
        "session/prompt",
        prompt_params(&s2, "/chunks 1\nto be closed"),
    );
    a.response(&id);
    let id = a.request("session/close", json!({"sessionId": s2}));
    assert!(a.response(&id).get("result").is_some());
    let id = a.request("session/list", json!({}));
    let list = a.response(&id);
    let row = list["result"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["sessionId"] == s2.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(row["_meta"]["relay"]["live"], false);
    let id = a.request("session/prompt", prompt_params(&s2, "hi"));
    assert_eq!(
        a.response(&id)["error"]["code"],
        -32602,
        "a closed session is not silently re-routed"
    );
    let id = a.request(
        "session/load",
        json!({"sessionId": s2, "cwd": "/", "mcpServers": []}),
    );
    a.response(&id);
    assert!(agent_text(&a.seen).contains("to be closed"));
}

#[test]
fn delete_removes_a_stored_session_and_refuses_a_busy_one() {
    let mut relay = Relay::start(&["--lease"]);
    let mut a = relay.device("a", "");
    let s1 = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&s1, "/chunks 1\nkeep me?"));
    a.response(&id);
    let s2 = new_session(&mut a);
    let busy = a.request("session/prompt", prompt_params(&s2, "/sleep 5000\nslow"));
    a.recv_until("the turn started", |v| {
        v["params"]["sessionId"] == s2.as_str()
            && v["params"]["update"]["sessionUpdate"] == "user_message_chunk"
    });
    let id = a.request("_relay/session/delete", json!({"sessionId": s2}));
    let r = a.response(&id);
    assert_eq!(r["error"]["code"], -32011, "a busy session is refused: {r}");

    // Not the controller: refused under the lease.
    let mut b = relay.device("b", "");
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = b.request("_relay/session/delete", json!({"sessionId": s1}));
    let r = b.response(&id);
    assert_eq!(r["error"]["code"], -32010, "{r}");

    a.send(&json!({"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId": s2}}));
    a.response(&busy);

    // Idle and live (it is the default session too): ended, then removed.
    let file = relay
        .data_dir
        .join("sessions")
        .join(acp_relay::store::transcript::file_name(&s1));
    assert!(file.exists());
    let id = a.request("_relay/session/delete", json!({"sessionId": s1}));
    let r = a.response(&id);
    assert_eq!(r["result"], json!({}), "{r}");
    let listed = |d: &mut Device| -> Vec<String> {
        let id = d.request("session/list", json!({}));
        let list = d.response(&id);
        list["result"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["sessionId"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(listed(&mut a), vec![s2.clone()]);
    let deadline = std::time::Instant::now() + WAIT;
    while file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "transcript not removed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let id = a.request("_relay/session/delete", json!({"sessionId": s1}));
    let r = a.response(&id);
    assert_eq!(r["error"]["code"], -32602, "already gone: {r}");
    // Still a working relay: a new session opens and prompts.
    let s3 = new_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&s3, "/chunks 1\nfresh"));
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");

    relay.kill9();
    relay.launch("127.0.0.1:0");
    let mut c = relay.device("c", "");
    c.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let after = listed(&mut c);
    assert!(!after.contains(&s1), "deleted stays deleted: {after:?}");
    assert!(after.contains(&s2) && after.contains(&s3), "{after:?}");
}

/// `/ws` devices each view the session they opened, so none may be evicted:
/// past `--max-sessions` a `session/new` is refused with a message that says
/// what to do, no agent starts for it, and the refusal is logged once.
#[test]
fn ws_devices_are_held_to_max_sessions() {
    let relay = Relay::start(&["--max-sessions", "2", "--agent-per-session"]);
    let mut devices: Vec<Device> = (0..6).map(|i| relay.device(&format!("d{i}"), "")).collect();
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for d in devices.iter_mut() {
        d.recv_until("welcome", |v| v["type"] == "relay_welcome");
        let id = d.request(
            "initialize",
            json!({"protocolVersion": 1, "clientCapabilities": {}}),
        );
        d.response(&id);
        let id = d.request("session/new", json!({"cwd": "/", "mcpServers": []}));
        let r = d.response(&id);
        match r["result"]["sessionId"].as_str() {
            Some(sid) => opened.push(sid.to_owned()),
            None => refused.push(r["error"].clone()),
        }
    }
    assert_eq!(opened.len(), 2, "opened {opened:?}, refused {refused:?}");
    for e in &refused {
        assert_eq!(e["code"], -32012, "{e}");
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("--max-sessions 2") && msg.contains("close a session"),
            "{msg}"
        );
    }
    let (live, r) = live_sessions(&mut devices[0]);
    assert_eq!(live, 2, "{r}");
    // Both opened sessions answer a prompt: they each have their agent.
    for (d, sid) in devices.iter_mut().zip(&opened) {
        let id = d.request("session/prompt", prompt_params(sid, "/chunks 1\nhi"));
        assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
    }
    let agents = agent_children(relay.pid()).len();
    assert_eq!(agents, 2, "{agents} agent processes for 2 sessions");
    let warned = relay.log().matches("refusing new ones").count();
    assert_eq!(warned, 1, "one warning for the spell:\n{}", relay.log());
    // Closing one frees its slot.
    let id = devices[1].request("session/close", json!({"sessionId": opened[1]}));
    assert_eq!(devices[1].response(&id)["result"], json!({}));
    let id = devices[5].request("session/new", json!({"cwd": "/", "mcpServers": []}));
    let r = devices[5].response(&id);
    assert!(r["result"]["sessionId"].is_string(), "{r}");
    relay.wait_log("4 session opens were refused");
}
