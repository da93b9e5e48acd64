//! Durable numbering through the fake store holding its acks: no `rseq` is
//! sent past the acknowledged reservation, a turn end waits for its fsync, a
//! clean stop records the exact end, and past the hold bound the viewers are
//! reset once the store catches up.

use super::*;
use serde_json::json;

/// A durable sim whose store holds its acks, with socket `s` viewing the
/// claimed session `s1`.
fn opened() -> (Sim, SocketId) {
    let mut sim = Sim::new(RouterConfig {
        durable: true,
        ..RouterConfig::default()
    });
    sim.store.hold_acks = true;
    sim.answer(A1, "initialize", init_result(json!({})));
    let s = sim.open("c");
    assert_eq!(sim.new_session(s, 1, A1, "s1"), "s1");
    sim.take_agent(A1);
    (sim, s)
}

fn update(sim: &mut Sim, n: u64) {
    sim.update(A1, "s1", chunk(&n.to_string()));
}

/// The `rseq`s of the frames `s` received since the last take.
fn sent(sim: &mut Sim, s: SocketId) -> Vec<u64> {
    sim.take_raw(s)
        .iter()
        .filter_map(|f| frame::read_rseq(f))
        .collect()
}

/// The reservations and fsyncs the router asked of the store since the
/// last call (the acks the store holds).
fn asked(sim: &mut Sim) -> (Vec<u64>, Vec<u64>) {
    let (mut reserves, mut syncs) = (Vec::new(), Vec::new());
    for (_, reserved, synced) in sim.store.acks.drain(..) {
        if reserved > 0 {
            reserves.push(reserved);
        }
        if synced > 0 {
            syncs.push(synced);
        }
    }
    (reserves, syncs)
}

fn ack(sim: &mut Sim, reserved: u64, synced: u64) {
    sim.feed(Input::Durable {
        session: "s1".into(),
        reserved,
        synced,
    });
}

#[test]
fn no_number_is_sent_past_the_acknowledged_reservation() {
    let (mut sim, s) = opened();
    update(&mut sim, 1);
    assert_eq!(asked(&mut sim).0, vec![1 + RESERVE_BLOCK]);
    assert!(
        sent(&mut sim, s).is_empty(),
        "held until the reservation is durable"
    );
    update(&mut sim, 2);
    assert!(sent(&mut sim, s).is_empty());
    assert!(asked(&mut sim).0.is_empty(), "one request in flight");
    ack(&mut sim, 1 + RESERVE_BLOCK, 0);
    assert_eq!(sent(&mut sim, s), vec![1, 2]);
    // Within the reservation frames go at once; at half of it, the next
    // block is asked for, long before it is needed.
    let mut reserves = Vec::new();
    for n in 3..=(RESERVE_BLOCK / 2 + 2) {
        update(&mut sim, n);
        assert_eq!(sent(&mut sim, s), vec![n]);
        reserves.extend(asked(&mut sim).0);
    }
    assert_eq!(reserves, vec![RESERVE_BLOCK / 2 + 2 + RESERVE_BLOCK]);
}

#[test]
fn a_turn_end_is_sent_only_once_it_is_fsynced() {
    let (mut sim, s) = opened();
    update(&mut sim, 1);
    ack(&mut sim, 1 + RESERVE_BLOCK, 0);
    sent(&mut sim, s);
    asked(&mut sim);
    sim.send(
        s,
        req(json!(2), "session/prompt", prompt_params("s1", "hi")),
    );
    assert_eq!(sent(&mut sim, s), vec![2], "the prompt's echo");
    sim.answer(A1, "session/prompt", json!({"stopReason": "end_turn"}));
    assert!(
        sent(&mut sim, s).is_empty(),
        "the answer waits for its fsync"
    );
    assert_eq!(asked(&mut sim).1, vec![3]);
    update(&mut sim, 4);
    assert!(sent(&mut sim, s).is_empty(), "and so does what follows it");
    ack(&mut sim, 0, 2);
    assert!(
        sent(&mut sim, s).is_empty(),
        "a fsync short of it is not enough"
    );
    ack(&mut sim, 0, 3);
    assert_eq!(sent(&mut sim, s), vec![3, 4]);
}

#[test]
fn a_clean_stop_records_the_exact_end_and_sends_nothing_more() {
    let (mut sim, s) = opened();
    update(&mut sim, 1);
    ack(&mut sim, 1 + RESERVE_BLOCK, 0);
    update(&mut sim, 2);
    sent(&mut sim, s);
    sim.stop();
    assert_eq!(sim.store.ends.get("s1"), Some(&2));
    update(&mut sim, 3);
    assert!(sent(&mut sim, s).is_empty());
}

#[test]
fn past_the_hold_bound_the_viewers_are_reset_once_the_store_catches_up() {
    let (mut sim, s) = opened();
    let n = MAX_HELD_FRAMES as u64 + 10;
    for i in 1..=n {
        update(&mut sim, i);
    }
    assert!(sent(&mut sim, s).is_empty());
    ack(&mut sim, n + RESERVE_BLOCK, 0);
    let frames = sim.take(s);
    let welcome = frames
        .iter()
        .find(|f| f["type"] == "relay_welcome")
        .expect("a fresh welcome");
    assert_eq!(welcome["reset"], true, "{welcome}");
    assert_eq!(welcome["headSeq"], n);
    // Then frames flow again, one after another.
    update(&mut sim, 0);
    assert_eq!(sent(&mut sim, s), vec![n + 1]);
}
