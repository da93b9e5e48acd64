//! A hub: one session's replay ring and the sockets viewing it. It stamps
//! lines into the ring, fans released frames out (stamped to relay `/ws`
//! viewers, unstamped to the plain `/acp` viewers a [`Plain`] admits) and
//! sends targeted frames to its viewers. Plain data: it knows nothing of
//! agents, clients, the lease or the store, and performs no I/O.

use crate::core::frame;
use crate::core::ids::SocketId;
use crate::core::ring::{Frame, ReplayRing};
use std::collections::BTreeMap;

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

/// One session's ring and its viewers.
///
/// Invariant: a socket views a hub at most once, and its kind (plain or
/// relay) is the one it was added with.
#[derive(Debug)]
pub struct Hub {
    /// The session's frames: stamping, release and replay (see [`ReplayRing`]).
    pub ring: ReplayRing,
    /// Viewing sockets → whether the socket is plain (`/acp`).
    viewers: BTreeMap<SocketId, bool>,
}

impl Hub {
    pub fn new(ring: ReplayRing) -> Self {
        Hub {
            ring,
            viewers: BTreeMap::new(),
        }
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
}
