//! The lease: the first privileged call claims it, other devices are refused
//! until they take control, non-privileged calls pass.

use super::*;
use crate::core::rpc::code;
use serde_json::json;

fn leased() -> Sim {
    Sim::boot_with(RouterConfig {
        lease: true,
        ..RouterConfig::default()
    })
}

fn control(holder: Option<&str>, epoch: u64) -> Value {
    note(
        "_relay/control",
        json!({"lease": true, "holder": holder, "controlEpoch": epoch}),
    )
}

#[test]
fn the_welcome_names_the_lease() {
    let mut sim = leased();
    let a = sim.open("a");
    let w = &sim.take(a)[0];
    assert_eq!(
        (
            w["lease"].clone(),
            w["holder"].clone(),
            w["controlEpoch"].clone()
        ),
        (json!(true), Value::Null, json!(0))
    );
}

#[test]
fn the_first_privileged_call_claims_and_is_broadcast() {
    let mut sim = leased();
    let a = sim.open("a");
    let b = sim.open("b");
    let p = sim.open_plain("p");
    sim.clear();
    sim.send(
        a,
        req(
            json!(1),
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "x"}),
        ),
    );
    assert_eq!(sim.take(a), vec![control(Some("a"), 1)]);
    assert_eq!(sim.take(b), vec![control(Some("a"), 1)]);
    assert!(sim.take(p).is_empty());
    assert_eq!(sim.take_agent(A1).len(), 1);
}

#[test]
fn another_device_is_refused_until_it_takes_control() {
    let mut sim = leased();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.send(
        a,
        req(
            json!(1),
            "session/set_mode",
            json!({"sessionId": "s1", "modeId": "x"}),
        ),
    );
    sim.clear();
    sim.send(
        b,
        req(json!(2), "session/prompt", prompt_params("s1", "hi")),
    );
    assert_eq!(
        sim.take(b),
        vec![err(
            json!(2),
            code::NOT_CONTROLLER,
            "device 'a' has control; send _relay/take_control first to drive from this device"
        )]
    );
    assert!(sim.take_agent(A1).is_empty());
    sim.send(b, req(json!(3), "_relay/take_control", json!({})));
    assert_eq!(
        sim.take(b),
        vec![
            control(Some("b"), 2),
            ok(
                json!(3),
                json!({"lease": true, "holder": "b", "controlEpoch": 2})
            ),
        ]
    );
    assert_eq!(sim.take(a), vec![control(Some("b"), 2)]);
    sim.send(
        b,
        req(json!(4), "session/prompt", prompt_params("s1", "hi")),
    );
    assert_eq!(sim.take_agent(A1).len(), 1);
}

#[test]
fn reading_needs_no_lease() {
    let mut sim = leased();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.send(
        a,
        req(json!(1), "session/set_mode", json!({"sessionId": "s1"})),
    );
    sim.clear();
    sim.send(b, req(json!(2), "session/list", json!({})));
    sim.send(b, req(json!(3), "initialize", json!({})));
    sim.send(b, req(json!(4), "_relay/fs/tree", json!({})));
    let out = sim.take(b);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|f| f.get("error").is_none()));
    assert_eq!(sim.jobs.len(), 1);
}

#[test]
fn an_ask_answer_needs_the_lease() {
    let mut sim = leased();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.send(
        a,
        req(json!(1), "session/prompt", prompt_params("s1", "go")),
    );
    sim.ask(A1, 70, "s1");
    sim.clear();
    sim.send(
        b,
        ok(
            json!("perm:s1:1"),
            json!({"outcome": {"outcome": "cancelled"}}),
        ),
    );
    assert_eq!(sim.take(b)[0]["error"]["code"], json!(code::NOT_CONTROLLER));
    assert!(sim.take_agent(A1).is_empty());
    assert_eq!(sim.r.units[&sim.unit_of("s1")].driver.open_asks(), 1);
}
