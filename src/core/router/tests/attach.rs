//! Attaching: welcome, replayed gap, open asks, then live frames; replay and
//! reset at the ring's edges; which session a socket lands on.

use super::*;
use serde_json::json;

#[test]
fn a_fresh_socket_gets_the_welcome_of_the_default_session() {
    let mut sim = Sim::boot();
    let s = sim.open("a");
    assert_eq!(
        sim.take(s),
        vec![welcome(sim.epoch(1), Some("s1"), 0, false, false, &[])]
    );
}

/// welcome → gap → asks → live, in that order.
#[test]
fn attach_order_is_welcome_gap_asks_then_live() {
    let mut sim = Sim::boot();
    let watcher = sim.open("w");
    sim.update(A1, "s1", chunk("one"));
    sim.update(A1, "s1", chunk("two"));
    sim.ask(A1, 7, "s1");
    sim.update(A1, "s1", chunk("three"));
    sim.take(watcher);
    let ask = stamped(
        3,
        req(
            json!("perm:s1:1"),
            "session/request_permission",
            permission_params("s1"),
        ),
    );
    let s = sim.open_at("a", Some("s1"), Some(1));
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(1), Some("s1"), 4, false, false, &["perm:s1:1"]),
            stamped(2, update_line("s1", chunk("two"))),
            ask.clone(),
            stamped(4, update_line("s1", chunk("three"))),
            ask,
        ]
    );
    sim.update(A1, "s1", chunk("live"));
    let live = vec![stamped(5, update_line("s1", chunk("live")))];
    assert_eq!(sim.take(s), live);
    assert_eq!(sim.take(watcher), live);
}

#[test]
fn every_viewer_gets_the_same_bytes_with_rseq_first() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    let b = sim.open("b");
    sim.take(a);
    sim.take(b);
    sim.update(A1, "s1", chunk("x"));
    let fa = sim.take_raw(a);
    let fb = sim.take_raw(b);
    assert_eq!(fa, fb);
    assert_eq!(fa.len(), 1);
    assert!(fa[0].starts_with(b"{\"rseq\":1,"), "{:?}", fa[0]);
}

#[test]
fn last_seq_at_the_head_replays_nothing() {
    let mut sim = Sim::boot();
    sim.update(A1, "s1", chunk("one"));
    sim.update(A1, "s1", chunk("two"));
    let s = sim.open_at("a", Some("s1"), Some(2));
    assert_eq!(
        sim.take(s),
        vec![welcome(sim.epoch(1), Some("s1"), 2, false, false, &[])]
    );
}

#[test]
fn no_last_seq_replays_everything_held_without_reset() {
    let mut sim = Sim::boot();
    sim.update(A1, "s1", chunk("one"));
    sim.update(A1, "s1", chunk("two"));
    let s = sim.open_at("a", Some("s1"), None);
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(1), Some("s1"), 2, false, false, &[]),
            stamped(1, update_line("s1", chunk("one"))),
            stamped(2, update_line("s1", chunk("two"))),
        ]
    );
}

#[test]
fn last_seq_past_the_head_is_a_reset_with_everything() {
    let mut sim = Sim::boot();
    sim.update(A1, "s1", chunk("one"));
    let s = sim.open_at("a", Some("s1"), Some(9));
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(1), Some("s1"), 1, true, false, &[]),
            stamped(1, update_line("s1", chunk("one"))),
        ]
    );
}

fn small_ring() -> Sim {
    let mut sim = Sim::boot_with(RouterConfig {
        ring_frames: 3,
        ..RouterConfig::default()
    });
    for t in ["1", "2", "3", "4", "5"] {
        sim.update(A1, "s1", chunk(t));
    }
    sim
}

/// The ring holds 3..=5: a device that saw 2 misses nothing it cannot get.
#[test]
fn a_gap_that_starts_at_the_oldest_frame_is_replayed_without_reset() {
    let mut sim = small_ring();
    let s = sim.open_at("a", Some("s1"), Some(2));
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(1), Some("s1"), 5, false, false, &[]),
            stamped(3, update_line("s1", chunk("3"))),
            stamped(4, update_line("s1", chunk("4"))),
            stamped(5, update_line("s1", chunk("5"))),
        ]
    );
}

/// A device that saw 1 lost frame 2 to eviction: it must rebuild.
#[test]
fn a_gap_older_than_the_ring_is_a_reset() {
    let mut sim = small_ring();
    let s = sim.open_at("a", Some("s1"), Some(1));
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(1), Some("s1"), 5, true, false, &[]),
            stamped(3, update_line("s1", chunk("3"))),
            stamped(4, update_line("s1", chunk("4"))),
            stamped(5, update_line("s1", chunk("5"))),
        ]
    );
}

#[test]
fn an_unknown_session_lands_on_the_default_with_reset() {
    let mut sim = Sim::boot();
    sim.update(A1, "s1", chunk("one"));
    let s = sim.open_at("a", Some("gone"), Some(40));
    assert_eq!(
        sim.take(s),
        vec![
            welcome(sim.epoch(1), Some("s1"), 1, true, false, &[]),
            stamped(1, update_line("s1", chunk("one"))),
        ]
    );
    // Without a last_seq there is nothing to reset.
    let s = sim.open_at("b", Some("gone"), None);
    assert_eq!(
        sim.take(s)[0],
        welcome(sim.epoch(1), Some("s1"), 1, false, false, &[])
    );
}

#[test]
fn a_client_comes_back_to_the_session_it_viewed_last() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    // The first session/new claims the eagerly opened default.
    assert_eq!(sim.new_session(a, 1, A1, "unused"), "s1");
    assert_eq!(sim.new_session(a, 2, A1, "s2"), "s2");
    sim.close(a);
    let a2 = sim.open("a");
    assert_eq!(
        sim.take(a2),
        vec![welcome(sim.epoch(2), Some("s2"), 0, false, false, &[])]
    );
    // Another client still lands on the default.
    let b = sim.open("b");
    assert_eq!(
        sim.take(b),
        vec![welcome(sim.epoch(1), Some("s1"), 0, false, false, &[])]
    );
}

#[test]
fn a_closed_socket_gets_nothing_more() {
    let mut sim = Sim::boot();
    let a = sim.open("a");
    sim.close(a);
    sim.update(A1, "s1", chunk("after"));
    // Sim's drop check fails the test on any Send to a closed socket.
    assert!(!sim.r.units[&sim.r.default_unit].hub.is_viewed());
}

#[test]
fn text_for_an_unknown_socket_is_ignored() {
    let mut sim = Sim::boot();
    sim.feed(Input::SocketText {
        socket: SocketId(99),
        text: br#"{"jsonrpc":"2.0","id":1,"method":"session/list"}"#,
    });
    assert!(sim.take_agent(A1).is_empty());
}
