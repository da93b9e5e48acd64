//! Durable numbering and turn ends: the write path of a unit's ring — what
//! is stamped, stored and asked of the store; the hub's [`Gate`] holds the
//! frames until the store's acknowledgements let them out. Performs no I/O.
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
//! finds it after any crash. Frames waiting on the store stay in the hub's
//! [`Gate`] (bounded: past [`MAX_HELD_FRAMES`] or [`MAX_HELD_BYTES`] they are
//! dropped from it and the viewers are reset from the ring once the store
//! catches up). Units that are not persisted (no session id yet, unclaimed)
//! and routers without a store (`durable: false`) send at once.

use super::*;

/// Numbers reserved per request; the next request goes out when half are used.
pub const RESERVE_BLOCK: u64 = 1 << 16;
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
        let out = &mut self.out;
        let send = |socket, bytes| out.push_back(Output::Send { socket, bytes });
        if !(self.cfg.durable && u.persisted) {
            u.hub.send_now(rseq, &frame, plain, send);
            return Some(frame);
        }
        // Asked here so a turn end never waits on a fsync nobody asked for;
        // `persist_sync` right after covers the frames that follow.
        if u.hub.gate.turn_end(rseq)
            && let Some(session) = u.session_id.clone()
            && u.hub.gate.ask_sync(rseq)
        {
            self.out.push_back(Output::Persist(Persist::Durable {
                session,
                upto: rseq,
            }));
        }
        if let Some(session) = u.session_id.clone()
            && let Some(upto) = u.hub.gate.reserve_for(rseq, RESERVE_BLOCK)
        {
            self.out
                .push_back(Output::Persist(Persist::Reserve { session, upto }));
        }
        let out = &mut self.out;
        let send = |socket, bytes| out.push_back(Output::Send { socket, bytes });
        if let Some(held) = u.hub.offer(rseq, &frame, plain, send) {
            log::warn!(
                "{unit}: {held} frames wait for the session store; its viewers will be reset"
            );
        }
        Some(frame)
    }

    /// The next frame written to `unit` ends a turn: it and every later frame
    /// wait until the store has fsync'd it (ask with [`Router::persist_sync`]).
    pub(super) fn hold_for_sync(&mut self, unit: UnitId) {
        if let Some(u) = self.units.get_mut(&unit) {
            u.hub.gate.end_turn_next();
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
        u.hub.gate.acked(reserved, synced);
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
        let out = &mut self.out;
        let send = |socket, bytes| out.push_back(Output::Send { socket, bytes });
        if let Some(reset) = u.hub.release_held(send) {
            for (socket, plain) in reset {
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
        } else if u.hub.gate.ask_sync(upto) {
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
