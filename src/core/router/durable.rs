//! Durable numbering and turn ends: the write and fan-out path of a unit's
//! ring. Performs no I/O.
//!
//! # Why a reservation, not a fsync per frame
//!
//! A number once sent must never name other content, across `kill -9`. The
//! store writes frames through a buffer (fsync'ing each would cost a disk
//! round trip per frame), so the newest frames may be lost by a crash; what
//! must survive is the *highest number that may have been sent*. So the router
//! asks the store to durably reserve numbers ahead ([`RESERVE_BLOCK`] at a
//! time, asked again when half of the block is used: one fsync per
//! `RESERVE_BLOCK / 2` frames, and in practice no frame ever waits) and sends
//! devices no `rseq` above the reservation the store has acknowledged
//! ([`Input::Durable`]). A restored session numbers on after the largest of
//! its last stored frame and its reservation, and a device resuming below that
//! is reset (the numbers between may have been sent and lost). A clean stop or
//! a session's end records the exact end ([`Persist::End`]), so devices
//! resume without a reset. A per-run epoch would have forced a reset on every
//! restart, a clean one included; a fsync before every send would have put a
//! disk round trip on the per-frame path.
//!
//! A turn's end (the answer to `session/prompt`) is released only after the
//! store acknowledges a fsync covering it, so a device that saw a turn end
//! finds it after any crash. Frames waiting on the store stay in the unit's
//! [`Gate`] (bounded: past [`MAX_HELD_FRAMES`] or [`MAX_HELD_BYTES`] they are
//! dropped from it and the viewers are reset from the ring once the store
//! catches up). Units that are not persisted (no session id yet, unclaimed)
//! and routers without a store (`durable: false`) send at once.

use super::*;
use crate::core::hub::Hub;

/// Numbers reserved per request; the next request goes out when half are used.
pub const RESERVE_BLOCK: u64 = 1 << 16;
/// Frames one unit may hold while the store catches up; past it the viewers
/// are reset from the ring instead.
pub const MAX_HELD_FRAMES: usize = 16384;
/// Bytes one unit may hold while the store catches up.
pub const MAX_HELD_BYTES: usize = 8 << 20;
/// Turn ends waiting on a fsync per unit; past it two merge into the later one.
pub const MAX_BARRIERS: usize = 16;

/// What a unit's frames wait on before they reach devices.
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
}

/// Queues `frame` for the hub's viewers (see [`Hub::fan_out`]).
fn fan_out(hub: &Hub, out: &mut VecDeque<Output>, frame: &Frame, plain: Plain) {
    hub.fan_out(frame, plain, |socket, bytes| {
        out.push_back(Output::Send { socket, bytes })
    });
}

impl Router {
    /// Stamps a line into a unit's ring, persists it and fans it out to every
    /// relay viewer and to the plain viewers `plain` admits (unstamped), at
    /// once or when the store has acknowledged what it waits on.
    pub(super) fn write_unit_for(
        &mut self,
        unit: UnitId,
        line: &[u8],
        plain: Plain,
    ) -> Option<Frame> {
        let u = self.units.get_mut(&unit)?;
        if self.stopping {
            // Shutting down (agents ending, their last words): neither sent
            // nor stored. The exact end was recorded by `stop`; a number used
            // here named nothing anyone saw, so it may be used again.
            return u.hub.ring.push_held(line);
        }
        let before = u.hub.ring.bytes();
        let frame = u.hub.ring.push_held(line)?;
        let after = u.hub.ring.bytes();
        let rseq = u.hub.ring.stamped();
        self.ring_changed(unit, before, after);
        let u = self.units.get_mut(&unit)?;
        u.updated_ms = self.now_ms;
        let persist = u.claimed && u.session_id.is_some();
        let first = persist && !u.persisted;
        if first {
            // Everything the session's stream held goes to disk, the frames
            // stamped before it was claimed included.
            self.persist_meta(unit);
        } else if persist && let Some(session) = u.session_id.clone() {
            self.out.push_back(Output::Persist(Persist::Frame {
                session,
                frame: frame.clone(),
            }));
        }
        let Some(u) = self.units.get_mut(&unit) else {
            return Some(frame);
        };
        if !(self.cfg.durable && u.persisted) {
            u.gate.hold_next = false;
            u.hub.ring.release(rseq);
            fan_out(&u.hub, &mut self.out, &frame, plain);
            return Some(frame);
        }
        let g = &mut u.gate;
        if std::mem::take(&mut g.hold_next) {
            if g.barriers.len() >= MAX_BARRIERS {
                g.barriers.pop_back();
            }
            g.barriers.push_back(rseq);
            // Asked here so a turn end never waits on a fsync nobody asked
            // for; `persist_sync` right after covers the frames that follow.
            if let Some(session) = u.session_id.clone() {
                g.sync_asked = g.sync_asked.max(rseq);
                self.out.push_back(Output::Persist(Persist::Durable {
                    session,
                    upto: rseq,
                }));
            }
        }
        if rseq + RESERVE_BLOCK / 2 > g.asked.max(g.reserved)
            && let Some(session) = u.session_id.clone()
        {
            g.asked = rseq + RESERVE_BLOCK;
            self.out.push_back(Output::Persist(Persist::Reserve {
                session,
                upto: g.asked,
            }));
        }
        let g = &mut u.gate;
        if g.overflowed {
            // Dropped from the gate: the viewers get it from the ring.
        } else if g.held.is_empty() && rseq <= g.limit() {
            u.hub.ring.release(rseq);
            fan_out(&u.hub, &mut self.out, &frame, plain);
        } else if g.held.len() >= MAX_HELD_FRAMES || g.held_bytes + frame.len() > MAX_HELD_BYTES {
            log::warn!(
                "{unit}: {} frames wait for the session store; its viewers will be reset",
                g.held.len()
            );
            g.held.clear();
            g.held_bytes = 0;
            g.overflowed = true;
        } else {
            g.held_bytes += frame.len();
            g.held.push_back((rseq, frame.clone(), plain));
        }
        Some(frame)
    }

    /// The next frame written to `unit` ends a turn: it and every later frame
    /// wait until the store has fsync'd it (ask with [`Router::persist_sync`]).
    pub(super) fn hold_for_sync(&mut self, unit: UnitId) {
        if let Some(u) = self.units.get_mut(&unit) {
            u.gate.hold_next = true;
        }
    }

    /// The store acknowledged a reservation and/or a fsync of `session`.
    pub(super) fn durable(&mut self, session: &str, reserved: u64, synced: u64) {
        let Some(unit) = self.by_session.get(session).copied() else {
            return;
        };
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let g = &mut u.gate;
        g.reserved = g.reserved.max(reserved);
        g.synced = g.synced.max(synced);
        while g.barriers.front().is_some_and(|b| *b <= g.synced) {
            g.barriers.pop_front();
        }
        self.release(unit);
    }

    /// Sends the held frames the store's acknowledgements now allow.
    fn release(&mut self, unit: UnitId) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        if self.stopping {
            return;
        }
        let limit = u.gate.limit();
        if u.gate.overflowed {
            u.hub.ring.release(limit);
            if limit < u.hub.ring.stamped() {
                return;
            }
            u.gate.overflowed = false;
            let viewers: Vec<(SocketId, bool)> = u.hub.viewers().collect();
            for (socket, plain) in viewers {
                if plain {
                    self.out.push_back(Output::Close {
                        socket,
                        code: 1013,
                        reason: "fell behind while the session store caught up; reconnect and session/load".into(),
                    });
                } else {
                    self.attach_with(socket, unit, None, true);
                }
            }
            return;
        }
        while let Some((rseq, frame, plain)) = u.gate.held.pop_front() {
            if rseq > limit {
                u.gate.held.push_front((rseq, frame, plain));
                break;
            }
            u.gate.held_bytes -= frame.len();
            u.hub.ring.release(rseq);
            fan_out(&u.hub, &mut self.out, &frame, plain);
        }
    }

    /// Asks the store to fsync everything stamped so far in `unit` (turn ends,
    /// agent exits), with its metadata; the frames held behind a turn end are
    /// released when the store acknowledges it.
    pub(super) fn persist_sync(&mut self, unit: UnitId) {
        if self.stopping {
            return;
        }
        self.persist_meta(unit);
        let durable = self.cfg.durable;
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let (true, Some(session)) = (u.persisted, u.session_id.clone()) else {
            return;
        };
        let upto = u.hub.ring.stamped();
        if !durable {
            self.out
                .push_back(Output::Persist(Persist::Sync { session }));
        } else if upto > u.gate.sync_asked {
            u.gate.sync_asked = upto;
            self.out
                .push_back(Output::Persist(Persist::Durable { session, upto }));
        }
    }

    /// Records the exact end of a unit's numbering (clean stop, session end).
    pub(super) fn persist_end(&mut self, unit: UnitId) {
        if self.stopping {
            return;
        }
        self.persist_meta(unit);
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        if let (true, Some(session)) = (u.persisted, u.session_id.clone()) {
            let head = u.hub.ring.stamped();
            self.out
                .push_back(Output::Persist(Persist::End { session, head }));
        }
    }

    /// A clean stop (SIGTERM): nothing more reaches devices, every persisted
    /// session records its exact end, and agents exiting from here on are not
    /// crashes. Drain [`Router::poll_output`] afterwards.
    pub fn stop(&mut self) {
        let units: Vec<UnitId> = self.units.keys().copied().collect();
        for unit in units {
            self.persist_end(unit);
        }
        // From here on nothing is stored: the ends just recorded are exact.
        self.stopping = true;
    }

    /// Whether [`Router::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping
    }
}
