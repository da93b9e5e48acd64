//! The memory budget inside the router: ring bytes counted as frames are
//! written; past the budget, idle sessions' rings shrink first (their frames
//! are on disk), then the others; a replay is cut to what fits (a reset for
//! the device) rather than pass the budget. Performs no I/O.

use super::*;
use crate::core::budget::MemoryMeter;
use crate::core::ring::Replay;
use std::rc::Rc;

impl Router {
    /// The meter the shell counts socket queues and store buffers into.
    pub fn meter(&self) -> Rc<MemoryMeter> {
        self.meter.clone()
    }

    /// Shares the shell's meter (call before the first input).
    pub fn set_meter(&mut self, meter: Rc<MemoryMeter>) {
        self.meter = meter;
    }

    /// Bytes every live session's ring holds.
    pub fn ring_bytes(&self) -> usize {
        self.ring_bytes
    }

    /// Everything counted against `--memory-budget`: rings, frames waiting
    /// on the store, socket queues (replays included) and store buffers.
    pub fn memory_bytes(&self) -> usize {
        let held: usize = self.units.values().map(|u| u.hub.gate.held_bytes()).sum();
        self.ring_bytes + held + self.meter.outside_rings()
    }

    /// `--memory-budget` (0: none).
    pub fn memory_budget(&self) -> usize {
        self.cfg.memory_budget
    }

    /// A ring went from `before` to `after` bytes: keeps the count and the
    /// budget (the check is two additions on the per-frame path).
    pub(super) fn ring_changed(&mut self, unit: UnitId, before: usize, after: usize) {
        self.ring_bytes = (self.ring_bytes + after).saturating_sub(before);
        let budget = self.cfg.memory_budget;
        if budget > 0
            && self.ring_bytes > self.budget_floor
            && self.ring_bytes + self.meter.outside_rings() > budget
        {
            self.enforce_budget(Some(unit), 0);
        }
    }

    /// Counts every ring again (after units come and go).
    pub(super) fn recount_rings(&mut self) {
        self.ring_bytes = self.units.values().map(|u| u.hub.ring.bytes()).sum();
    }

    /// Shrinks rings until everything, plus `incoming` bytes about to be
    /// queued, is within seven eighths of the budget: idle sessions (not
    /// viewed, no turn) oldest first, down to their newest frame; then the
    /// others, `writing` last.
    pub(super) fn enforce_budget(&mut self, writing: Option<UnitId>, incoming: usize) {
        let budget = self.cfg.memory_budget;
        if budget == 0 {
            return;
        }
        let target = budget - budget / 8;
        let held: usize = self.units.values().map(|u| u.hub.gate.held_bytes()).sum();
        let outside = self.meter.outside_rings() + held + incoming;
        let mut order: Vec<(bool, bool, u64, UnitId)> = self
            .units
            .iter()
            .map(|(id, u)| {
                let idle = !u.hub.is_viewed() && !u.busy() && !u.restoring;
                (Some(*id) == writing, !idle, u.updated_ms, *id)
            })
            .collect();
        order.sort();
        let mut freed = 0usize;
        for (_, busy_or_viewed, _, id) in order {
            let total = self.ring_bytes + outside;
            if total <= target {
                break;
            }
            let Some(u) = self.units.get_mut(&id) else {
                continue;
            };
            let keep = if busy_or_viewed {
                u.hub.ring.bytes().saturating_sub(total - target)
            } else {
                0
            };
            let f = u.hub.ring.shrink_to(keep);
            self.ring_bytes = self.ring_bytes.saturating_sub(f);
            freed += f;
        }
        if freed > 0 {
            log::debug!(
                "memory budget {budget}: shrank rings by {freed} bytes (rings {}, other {outside})",
                self.ring_bytes
            );
        }
        // Still over (socket queues hold the rest): retry only once the rings
        // have grown a sixteenth of the budget, not on every frame.
        self.budget_floor = if self.ring_bytes + outside > budget {
            self.ring_bytes + budget / 16
        } else {
            0
        };
    }

    /// A unit's replay since `last_seq`, within the budget: rings shrink to
    /// make room, and when it still does not fit only its newest frames that
    /// fit are sent, as a reset.
    pub(super) fn replay_within_budget(&mut self, unit: UnitId, last_seq: Option<u64>) -> Replay {
        let budget = self.cfg.memory_budget;
        let replay_of = |r: &Router| {
            r.units
                .get(&unit)
                .map(|u| u.hub.ring.replay_since(last_seq))
                .unwrap_or_default()
        };
        let replay = replay_of(self);
        if budget == 0 {
            return replay;
        }
        let bytes: usize = replay.frames.iter().map(|f| f.len()).sum();
        if self.memory_bytes() + bytes <= budget {
            return replay;
        }
        self.enforce_budget(None, bytes);
        let mut replay = replay_of(self);
        let room = budget.saturating_sub(self.memory_bytes());
        let mut bytes: usize = replay.frames.iter().map(|f| f.len()).sum();
        if bytes <= room {
            return replay;
        }
        let mut cut = 0;
        while bytes > room && cut < replay.frames.len() {
            bytes -= replay.frames[cut].len();
            cut += 1;
        }
        log::info!(
            "{unit}: replay cut by {cut} frames to stay within --memory-budget {budget}; the device is reset"
        );
        replay.frames.drain(..cut);
        replay.reset = true;
        replay
    }
}
