//! Replays served from the transcript: when a resuming device's gap is no
//! longer in the ring (evicted, or shrunk by the memory budget) but is on
//! disk, the shell reads it ([`Output::StoreReplay`]) and the device gets
//! exactly its gap instead of a reset. Performs no I/O.

use super::*;

/// Transcript replays in flight; past it a device is reset instead.
pub const MAX_STORE_REPLAYS: usize = 16;
/// Room a socket queue keeps beside a replay for live frames.
pub const LIVE_HEADROOM_BYTES: usize = 1 << 20;

impl Router {
    /// Starts a transcript replay for `socket` resuming `unit` after `last_seq`
    /// when the ring cannot serve it and the transcript can; `true` when it
    /// did (the socket is attached when [`Input::StoreReplayed`] comes back).
    pub(super) fn replay_from_store(
        &mut self,
        socket: SocketId,
        unit: UnitId,
        last_seq: u64,
    ) -> bool {
        if !self.cfg.durable
            || self.disk_replays.len() >= MAX_STORE_REPLAYS
            || self.disk_replays.contains_key(&socket)
            || self.sockets.get(&socket).is_none_or(|s| s.plain)
        {
            return false;
        }
        let Some(u) = self.units.get(&unit) else {
            return false;
        };
        let ring = &u.hub.ring;
        let Some(oldest) = ring.oldest() else {
            return false;
        };
        // Only a gap the ring dropped: not one past the head, not one across
        // numbers a crash may have lost (those are resets whatever the disk says).
        if !u.persisted
            || last_seq >= ring.head()
            || last_seq < ring.lost_upto()
            || last_seq + 1 >= oldest
        {
            return false;
        }
        let Some(session) = u.session_id.clone() else {
            return false;
        };
        let budget = self.cfg.memory_budget;
        let max_bytes = if budget == 0 {
            crate::core::ring::DEFAULT_RING_BYTES
        } else {
            budget.saturating_sub(self.memory_bytes()) / 2
        };
        // The transcript part and the ring's frames after it are queued on
        // the socket together: both must fit its byte bound with room for
        // live frames, or the replay would drop the device it is for (which
        // would reconnect and ask for the same replay again).
        let room = self
            .cfg
            .socket_bytes
            .saturating_sub(ring.bytes().saturating_add(LIVE_HEADROOM_BYTES));
        let max_bytes = max_bytes.min(room);
        if max_bytes == 0 {
            return false;
        }
        self.disk_replays.insert(socket, (unit, last_seq));
        self.out.push_back(Output::StoreReplay {
            socket,
            unit,
            session,
            after: last_seq,
            upto: oldest - 1,
            max_bytes,
        });
        true
    }

    /// The shell read a transcript replay (`None`: it could not, within its
    /// bounds): the socket gets its welcome, the frames read, then the ring's.
    pub(super) fn store_replayed(
        &mut self,
        socket: SocketId,
        unit: UnitId,
        frames: Option<Vec<Frame>>,
    ) {
        let Some((want_unit, last_seq)) = self.disk_replays.get(&socket).copied() else {
            return;
        };
        let live = self.sockets.get(&socket).is_some_and(|s| s.unit == unit);
        if want_unit != unit || !live {
            self.disk_replays.remove(&socket);
            return;
        }
        // Usable when it starts right after `last_seq` and the ring still
        // goes on right after it.
        let usable = frames.filter(|f| {
            let first = f.first().and_then(|x| frame::read_rseq(x));
            let last = f.last().and_then(|x| frame::read_rseq(x));
            let oldest = self.units.get(&unit).and_then(|u| u.hub.ring.oldest());
            first == Some(last_seq + 1)
                && last.is_some_and(|l| oldest.is_some_and(|o| o <= l + 1))
                && f.windows(2)
                    .all(|w| frame::read_rseq(&w[1]) == frame::read_rseq(&w[0]).map(|s| s + 1))
        });
        match usable {
            Some(disk) => {
                log::debug!(
                    "{socket}: {} frames of its gap replayed from the transcript",
                    disk.len()
                );
                self.disk_replays.remove(&socket);
                self.attach_frames(socket, unit, Some(last_seq), false, disk);
            }
            None => {
                // The entry stays while attaching so no second read starts.
                self.attach_frames(socket, unit, Some(last_seq), false, Vec::new());
                self.disk_replays.remove(&socket);
            }
        }
    }
}
