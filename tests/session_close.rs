//! Months of sessions on one shared agent: each `session/close` reaches the
//! agent as ACP `session/close` (the demo agent advertises it and forgets the
//! session), so 1,100 opened-and-closed sessions exhaust nothing and the next
//! session still opens and runs a turn.
mod common;
use common::*;
use serde_json::json;

#[test]
fn eleven_hundred_closed_sessions_leave_the_shared_agent_usable() {
    // Every session is stored now (its first frame is the agent's commands);
    // a large --keep-sessions keeps the store's pruning out of this test.
    let relay = Relay::start(&["--keep-sessions", "5000"]);
    let mut d = relay.device("a", "");
    open_session(&mut d);
    for _ in 0..1100 {
        let sid = new_session(&mut d);
        let id = d.request("session/close", json!({ "sessionId": sid }));
        let r = d.response(&id);
        assert!(r.get("error").is_none(), "session/close: {r}");
        d.seen.clear();
    }
    let sid = new_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&sid, "/chunks 2"));
    let r = d.response(&id);
    assert!(r["result"]["stopReason"].is_string(), "prompt: {r}");
    assert_eq!(
        relay.log().matches("started `").count(),
        1,
        "one agent process throughout (the demo agent refuses a 1,025th live session)"
    );
}
