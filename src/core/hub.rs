//! A hub: one session's replay ring, the sockets viewing it, and the
//! [`Gate`] its frames pass on their way out. It fans frames out (stamped to
//! relay `/ws` viewers, unstamped to the plain `/acp` viewers a [`Plain`]
//! admits) at once or once the store's acknowledgements allow, and sends
//! targeted frames to its viewers. Plain data: it knows nothing of agents,
//! clients or the lease, asks the store nothing itself (the router does, see
//! `router/durable.rs`), and performs no I/O.

use crate::core::frame;
use crate::core::ids::SocketId;
use crate::core::ring::{Frame, ReplayRing};
use std::collections::{BTreeMap, VecDeque};

/// Frames one hub may hold while the store catches up; past it the viewers
/// are reset from the ring instead.
pub const MAX_HELD_FRAMES: usize = 16384;
/// Bytes one hub may hold while the store catches up.
pub const MAX_HELD_BYTES: usize = 8 << 20;
/// Turn ends waiting on a fsync per hub; past it two merge into the later one.
pub const MAX_BARRIERS: usize = 16;

/// Which plain (`/acp`) viewers get a ring frame; relay (`/ws`) viewers get every frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain {
    /// Standard ACP traffic: every plain viewer.
    All,
    /// Relay extensions: no plain viewer.
    None,
    /// A response: only the plain socket that asked.
    Only(SocketId),
    /// The echo of a prompt: every plain viewer but its sender.
    AllBut(SocketId),
}

impl Plain {
    fn admits(self, socket: SocketId) -> bool {
        match self {
            Plain::All => true,
            Plain::None => false,
            Plain::Only(s) => s == socket,
            Plain::AllBut(s) => s != socket,
        }
    }
}

/// A stamped frame without its `"rseq":N` key, for plain sockets.
pub fn unstamp(frame: &Frame) -> Frame {
    let Some((_, tail)) = frame::split_rseq(frame) else {
        return frame.clone();
    };
    let tail = tail.strip_prefix(b",").unwrap_or(tail);
    let mut out = Vec::with_capacity(tail.len() + 1);
    out.push(b'{');
    out.extend_from_slice(tail);
    out.into()
}

/// What a hub's frames wait on before they reach its viewers: numbers the
/// store has durably reserved, and the fsync of the last turn end.
///
/// Invariant: held frames are contiguous and oldest first; none goes out
/// before the store has reserved its number and fsync'd the last turn end
/// at or before it.
#[derive(Debug, Default)]
pub struct Gate {
    /// Numbers up to this are durably reserved (acknowledged by the store).
    reserved: u64,
    /// The reservation asked for (acknowledged or not).
    asked: u64,
    /// Frames up to this are fsync'd (acknowledged by the store).
    synced: u64,
    /// The fsync asked for (acknowledged or not).
    sync_asked: u64,
    /// Turn ends: a frame at or after one waits until it is fsync'd.
    barriers: VecDeque<u64>,
    /// The next frame stamped is a turn end.
    hold_next: bool,
    /// Frames stamped and not yet released, oldest first.
    held: VecDeque<(u64, Frame, Plain)>,
    held_bytes: usize,
    /// Held frames passed the bound and were dropped from `held`: once the
    /// store catches up, the viewers are reset from the ring.
    overflowed: bool,
}

impl Gate {
    /// The newest `rseq` that may be released now.
    fn limit(&self) -> u64 {
        let mut limit = self.reserved;
        if let Some(&b) = self.barriers.front()
            && self.synced < b
        {
            limit = limit.min(b - 1);
        }
        limit
    }

    /// A gate for a ring restored up to `head`: those numbers are the
    /// store's already; new ones need a new reservation.
    pub fn restored(head: u64) -> Gate {
        Gate {
            reserved: head,
            asked: head,
            synced: head,
            sync_asked: head,
            ..Gate::default()
        }
    }

    /// Bytes held (they count against the memory budget).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The store made numbers up to `reserved` and frames up to `synced`
    /// durable (0: not this kind).
    pub fn acked(&mut self, reserved: u64, synced: u64) {
        self.reserved = self.reserved.max(reserved);
        self.synced = self.synced.max(synced);
        while self.barriers.front().is_some_and(|b| *b <= self.synced) {
            self.barriers.pop_front();
        }
    }

    /// The next frame stamped ends a turn: it and every later frame wait
    /// until the store has fsync'd it.
    pub fn end_turn_next(&mut self) {
        self.hold_next = true;
    }

    /// Whether the frame `rseq` just stamped ends a turn (marked with
    /// [`Gate::end_turn_next`]); then it is a barrier. Clears the mark.
    pub fn turn_end(&mut self, rseq: u64) -> bool {
        if !std::mem::take(&mut self.hold_next) {
            return false;
        }
        if self.barriers.len() >= MAX_BARRIERS {
            self.barriers.pop_back();
        }
        self.barriers.push_back(rseq);
        true
    }

    /// Whether a fsync up to `upto` is yet to be asked for; if so it is
    /// taken as asked.
    pub fn ask_sync(&mut self, upto: u64) -> bool {
        if upto <= self.sync_asked {
            return false;
        }
        self.sync_asked = upto;
        true
    }

    /// The reservation to ask for once `rseq` is stamped: `block` numbers
    /// past it, when half a block is all that is left of what is reserved
    /// or asked; taken as asked.
    pub fn reserve_for(&mut self, rseq: u64, block: u64) -> Option<u64> {
        if rseq + block / 2 <= self.asked.max(self.reserved) {
            return None;
        }
        self.asked = rseq + block;
        Some(self.asked)
    }
}

/// One session's ring, its viewers and its gate.
///
/// Invariant: a socket views a hub at most once, and its kind (plain or
/// relay) is the one it was added with.
#[derive(Debug)]
pub struct Hub {
    /// The session's frames: stamping, release and replay (see [`ReplayRing`]).
    pub ring: ReplayRing,
    /// What stamped frames wait on before they are fanned out.
    pub gate: Gate,
    /// Viewing sockets → whether the socket is plain (`/acp`).
    viewers: BTreeMap<SocketId, bool>,
}

impl Hub {
    pub fn new(ring: ReplayRing) -> Self {
        Hub {
            ring,
            gate: Gate::default(),
            viewers: BTreeMap::new(),
        }
    }

    /// Refills the ring from the store, numbering on after `head`; those
    /// numbers are the store's already.
    pub fn restore(&mut self, frames: Vec<Frame>, head: u64) {
        self.ring.restore(frames, head);
        self.gate = Gate::restored(self.ring.stamped());
    }

    /// Releases the frame `rseq` just stamped and fans it out at once (no
    /// store to wait on).
    pub fn send_now(
        &mut self,
        rseq: u64,
        frame: &Frame,
        plain: Plain,
        send: impl FnMut(SocketId, Frame),
    ) {
        self.gate.hold_next = false;
        self.ring.release(rseq);
        self.fan_out(frame, plain, send);
    }

    /// Passes the frame `rseq` just stamped through the gate: fanned out at
    /// once when nothing waits ahead of it and the acknowledgements allow,
    /// else held. Past [`MAX_HELD_FRAMES`] or [`MAX_HELD_BYTES`] every held
    /// frame is dropped and the viewers will be reset once the store catches
    /// up; then it returns how many frames were held, and until that reset
    /// frames reach the viewers only from the ring.
    pub fn offer(
        &mut self,
        rseq: u64,
        frame: &Frame,
        plain: Plain,
        send: impl FnMut(SocketId, Frame),
    ) -> Option<usize> {
        let g = &mut self.gate;
        if g.overflowed {
            // Dropped from the gate: the viewers get it from the ring.
        } else if g.held.is_empty() && rseq <= g.limit() {
            self.ring.release(rseq);
            self.fan_out(frame, plain, send);
        } else if g.held.len() >= MAX_HELD_FRAMES || g.held_bytes + frame.len() > MAX_HELD_BYTES {
            let held = g.held.len();
            g.held.clear();
            g.held_bytes = 0;
            g.overflowed = true;
            return Some(held);
        } else {
            g.held_bytes += frame.len();
            g.held.push_back((rseq, frame.clone(), plain));
        }
        None
    }

    /// Fans out the held frames the acknowledgements now allow. After an
    /// overflow, once the store has caught up with the ring, it returns the
    /// viewers to reset (socket, plain) instead.
    pub fn release_held(
        &mut self,
        mut send: impl FnMut(SocketId, Frame),
    ) -> Option<Vec<(SocketId, bool)>> {
        let limit = self.gate.limit();
        if self.gate.overflowed {
            self.ring.release(limit);
            if limit < self.ring.stamped() {
                return None;
            }
            self.gate.overflowed = false;
            return Some(self.viewers().collect());
        }
        while let Some((rseq, frame, plain)) = self.gate.held.pop_front() {
            if rseq > limit {
                self.gate.held.push_front((rseq, frame, plain));
                break;
            }
            self.gate.held_bytes -= frame.len();
            self.ring.release(rseq);
            self.fan_out(&frame, plain, &mut send);
        }
        None
    }

    /// `socket` views the hub from now on (`plain`: an `/acp` socket).
    pub fn add(&mut self, socket: SocketId, plain: bool) {
        self.viewers.insert(socket, plain);
    }

    /// `socket` no longer views the hub; whether it did.
    pub fn remove(&mut self, socket: SocketId) -> bool {
        self.viewers.remove(&socket).is_some()
    }

    pub fn views(&self, socket: SocketId) -> bool {
        self.viewers.contains_key(&socket)
    }

    pub fn viewer_count(&self) -> usize {
        self.viewers.len()
    }

    pub fn is_viewed(&self) -> bool {
        !self.viewers.is_empty()
    }

    /// Every viewer, in socket order, with whether it is plain.
    pub fn viewers(&self) -> impl Iterator<Item = (SocketId, bool)> + '_ {
        self.viewers.iter().map(|(s, p)| (*s, *p))
    }

    /// The relay (`/ws`) viewers, in socket order.
    pub fn relay_viewers(&self) -> impl Iterator<Item = SocketId> + '_ {
        self.viewers().filter(|(_, p)| !p).map(|(s, _)| s)
    }

    /// Whether no relay (`/ws`) socket views the hub (true when none views it).
    pub fn only_plain_viewers(&self) -> bool {
        self.viewers.values().all(|plain| *plain)
    }

    /// Hands `frame` to `send` for every relay viewer and, unstamped, for the
    /// plain viewers `plain` admits, in socket order.
    pub fn fan_out(&self, frame: &Frame, plain: Plain, mut send: impl FnMut(SocketId, Frame)) {
        let mut unstamped: Option<Frame> = None;
        for (&socket, &is_plain) in &self.viewers {
            let bytes = if is_plain {
                if !plain.admits(socket) {
                    continue;
                }
                unstamped.get_or_insert_with(|| unstamp(frame)).clone()
            } else {
                frame.clone()
            };
            send(socket, bytes);
        }
    }

    /// Hands `bytes` (not in the ring) to `send` for every relay viewer.
    pub fn to_relay_viewers(&self, bytes: &Frame, mut send: impl FnMut(SocketId, Frame)) {
        for socket in self.relay_viewers() {
            send(socket, bytes.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(ReplayRing::new(8, 1 << 16))
    }

    fn fanned(h: &Hub, frame: &Frame, plain: Plain) -> Vec<(SocketId, String)> {
        let mut got = Vec::new();
        h.fan_out(frame, plain, |s, b| {
            got.push((s, String::from_utf8_lossy(&b).into_owned()))
        });
        got
    }

    #[test]
    fn unstamp_removes_only_the_rseq_key() {
        let f = Frame::from(br#"{"rseq":7,"jsonrpc":"2.0","method":"m"}"#.to_vec());
        assert_eq!(&unstamp(&f)[..], br#"{"jsonrpc":"2.0","method":"m"}"#);
        let bare = Frame::from(br#"{"jsonrpc":"2.0"}"#.to_vec());
        assert_eq!(unstamp(&bare), bare);
    }

    #[test]
    fn relay_viewers_get_the_stamped_frame_plain_ones_what_plain_admits() {
        let mut h = hub();
        h.add(SocketId(1), false);
        h.add(SocketId(2), true);
        h.add(SocketId(3), true);
        let f = h
            .ring
            .push(br#"{"jsonrpc":"2.0","method":"m"}"#)
            .expect("stamped");
        let stamped = String::from_utf8_lossy(&f).into_owned();
        let plain = r#"{"jsonrpc":"2.0","method":"m"}"#.to_owned();
        assert_eq!(stamped, r#"{"rseq":1,"jsonrpc":"2.0","method":"m"}"#);
        assert_eq!(
            fanned(&h, &f, Plain::All),
            vec![
                (SocketId(1), stamped.clone()),
                (SocketId(2), plain.clone()),
                (SocketId(3), plain.clone())
            ]
        );
        assert_eq!(
            fanned(&h, &f, Plain::None),
            vec![(SocketId(1), stamped.clone())]
        );
        assert_eq!(
            fanned(&h, &f, Plain::Only(SocketId(3))),
            vec![(SocketId(1), stamped.clone()), (SocketId(3), plain.clone())]
        );
        assert_eq!(
            fanned(&h, &f, Plain::AllBut(SocketId(3))),
            vec![(SocketId(1), stamped), (SocketId(2), plain)]
        );
    }

    #[test]
    fn targeted_frames_reach_relay_viewers_only() {
        let mut h = hub();
        h.add(SocketId(2), false);
        h.add(SocketId(1), true);
        h.add(SocketId(4), false);
        let mut got = Vec::new();
        h.to_relay_viewers(&Frame::from(b"x".to_vec()), |s, _| got.push(s));
        assert_eq!(got, vec![SocketId(2), SocketId(4)]);
    }

    #[test]
    fn viewers_come_and_go() {
        let mut h = hub();
        assert!(!h.is_viewed());
        assert!(
            h.only_plain_viewers(),
            "no viewer at all counts as plain only"
        );
        h.add(SocketId(1), true);
        assert!(h.only_plain_viewers());
        h.add(SocketId(2), false);
        assert!(!h.only_plain_viewers());
        assert_eq!(h.viewer_count(), 2);
        assert!(h.views(SocketId(2)));
        assert!(h.remove(SocketId(2)));
        assert!(!h.remove(SocketId(2)), "removed once");
        assert!(!h.views(SocketId(2)));
        assert_eq!(h.viewers().collect::<Vec<_>>(), vec![(SocketId(1), true)]);
        h.fan_out(&Frame::from(b"{}".to_vec()), Plain::None, |s, _| {
            panic!("{s} is plain and Plain::None admits none")
        });
    }

    /// A hub with one relay viewer (socket 1); `stamp` pushes a held frame.
    fn gated() -> Hub {
        let mut h = hub();
        h.add(SocketId(1), false);
        h
    }

    fn stamp(h: &mut Hub) -> (u64, Frame) {
        let f = h.ring.push_held(br#"{"m":1}"#).expect("stamped");
        (h.ring.stamped(), f)
    }

    /// The rseqs `f` hands to `send`.
    fn rseqs(f: impl FnOnce(&mut dyn FnMut(SocketId, Frame))) -> Vec<u64> {
        let mut got = Vec::new();
        f(&mut |_, b: Frame| got.extend(frame::read_rseq(&b)));
        got
    }

    #[test]
    fn without_a_store_frames_go_at_once() {
        let mut h = gated();
        h.gate.end_turn_next();
        let (n, f) = stamp(&mut h);
        assert_eq!(rseqs(|s| h.send_now(n, &f, Plain::All, s)), vec![1]);
        assert_eq!(h.ring.head(), 1, "released");
        assert!(
            !h.gate.turn_end(2),
            "sending at once clears a turn-end mark"
        );
    }

    #[test]
    fn frames_wait_for_their_reservation_in_order() {
        let mut h = gated();
        let (n1, f1) = stamp(&mut h);
        assert_eq!(h.gate.reserve_for(n1, 8), Some(9));
        assert!(rseqs(|s| assert_eq!(h.offer(n1, &f1, Plain::All, s), None)).is_empty());
        let (n2, f2) = stamp(&mut h);
        assert_eq!(h.gate.reserve_for(n2, 8), None, "one request in flight");
        assert!(rseqs(|s| assert_eq!(h.offer(n2, &f2, Plain::All, s), None)).is_empty());
        assert_eq!(
            (h.ring.head(), h.gate.held_bytes()),
            (0, f1.len() + f2.len())
        );
        h.gate.acked(1, 0);
        assert_eq!(rseqs(|s| assert!(h.release_held(s).is_none())), vec![1]);
        h.gate.acked(9, 0);
        assert_eq!(rseqs(|s| assert!(h.release_held(s).is_none())), vec![2]);
        assert_eq!((h.ring.head(), h.gate.held_bytes()), (2, 0));
        // Within the reservation a frame goes at once; at half of it the next
        // block is asked for.
        let (n3, f3) = stamp(&mut h);
        assert_eq!(
            rseqs(|s| assert_eq!(h.offer(n3, &f3, Plain::All, s), None)),
            vec![3]
        );
        assert_eq!(h.gate.reserve_for(5, 8), None, "5 + 8/2 is within 9");
        assert_eq!(h.gate.reserve_for(6, 8), Some(14));
    }

    #[test]
    fn a_turn_end_and_what_follows_wait_for_its_fsync() {
        let mut h = gated();
        h.gate.acked(100, 0);
        h.gate.end_turn_next();
        let (n1, f1) = stamp(&mut h);
        assert!(h.gate.turn_end(n1));
        h.gate.ask_sync(n1);
        assert!(!h.gate.ask_sync(n1), "asked already");
        assert!(rseqs(|s| assert_eq!(h.offer(n1, &f1, Plain::All, s), None)).is_empty());
        let (n2, f2) = stamp(&mut h);
        assert!(!h.gate.turn_end(n2), "only the marked frame is a turn end");
        assert!(rseqs(|s| assert_eq!(h.offer(n2, &f2, Plain::All, s), None)).is_empty());
        assert!(h.gate.ask_sync(n2));
        h.gate.acked(0, n1 - 1);
        assert!(rseqs(|s| assert!(h.release_held(s).is_none())).is_empty());
        h.gate.acked(0, n1);
        assert_eq!(rseqs(|s| assert!(h.release_held(s).is_none())), vec![1, 2]);
    }

    #[test]
    fn past_the_hold_bound_the_viewers_are_reset_once_the_store_catches_up() {
        let mut h = gated();
        h.add(SocketId(2), true);
        for _ in 0..MAX_HELD_FRAMES {
            let (n, f) = stamp(&mut h);
            assert_eq!(h.offer(n, &f, Plain::All, |_, _| panic!("held")), None);
        }
        let (n, f) = stamp(&mut h);
        assert_eq!(
            h.offer(n, &f, Plain::All, |_, _| panic!("held")),
            Some(MAX_HELD_FRAMES)
        );
        assert_eq!(h.gate.held_bytes(), 0, "dropped from the gate");
        let (n, f) = stamp(&mut h);
        assert_eq!(
            h.offer(n, &f, Plain::All, |_, _| panic!("from the ring")),
            None
        );
        h.gate.acked(n - 1, 0);
        assert!(h.release_held(|_, _| panic!("not yet")).is_none());
        assert_eq!(h.ring.head(), n - 1, "released as far as the acks allow");
        h.gate.acked(n, 0);
        assert_eq!(
            h.release_held(|_, _| panic!("reset, not sent")),
            Some(vec![(SocketId(1), false), (SocketId(2), true)])
        );
        let (n, f) = stamp(&mut h);
        h.gate.acked(n, 0);
        assert_eq!(
            rseqs(|s| assert_eq!(h.offer(n, &f, Plain::None, s), None)),
            vec![n]
        );
    }

    #[test]
    fn a_restored_hub_numbers_on_and_needs_a_new_reservation() {
        let mut h = gated();
        let old: Vec<Frame> = (1..=3)
            .map(|n| frame::stamp_rseq(br#"{"m":1}"#, n).expect("stamp").into())
            .collect();
        h.restore(old, 5);
        assert_eq!((h.ring.stamped(), h.ring.head()), (5, 5));
        assert!(!h.gate.ask_sync(5), "the store has those");
        let (n, f) = stamp(&mut h);
        assert_eq!(n, 6);
        assert_eq!(h.gate.reserve_for(n, 8), Some(14));
        assert!(rseqs(|s| assert_eq!(h.offer(n, &f, Plain::All, s), None)).is_empty());
        h.gate.acked(14, 0);
        assert_eq!(rseqs(|s| assert!(h.release_held(s).is_none())), vec![6]);
    }
}
