//! One relay-wide memory budget (`--memory-budget`): the bytes the rings,
//! socket queues, replays and store buffers hold, counted in one place. The
//! router counts its rings and held frames itself; the shell counts socket
//! queues and store buffers into a [`MemoryMeter`] the router reads. Performs
//! no I/O.

use std::cell::Cell;

/// Default `--memory-budget`: 48 MiB, so 16 sessions with 4 devices each fit
/// a 64 MiB Pi slice with room for the rest of the process.
pub const DEFAULT_MEMORY_BUDGET: usize = 48 << 20;

/// Bytes held outside the router's rings, counted by the shell. Shared
/// (`Rc`) between the router and the shell on the executor thread.
///
/// ```
/// let m = acp_relay::core::budget::MemoryMeter::default();
/// m.queued(100);
/// m.dequeued(40);
/// m.set_store_bytes(8);
/// assert_eq!(m.outside_rings(), 68);
/// ```
#[derive(Debug, Default)]
pub struct MemoryMeter {
    sockets: Cell<usize>,
    store: Cell<usize>,
}

impl MemoryMeter {
    /// A frame of `n` bytes entered a socket's outbound queue.
    pub fn queued(&self, n: usize) {
        self.sockets.set(self.sockets.get() + n);
    }

    /// A frame of `n` bytes left a socket's queue (sent, or the queue freed).
    pub fn dequeued(&self, n: usize) {
        self.sockets.set(self.sockets.get().saturating_sub(n));
    }

    /// Bytes in every socket's outbound queue (replays included).
    pub fn socket_bytes(&self) -> usize {
        self.sockets.get()
    }

    /// The store's buffers and queue now hold `n` bytes.
    pub fn set_store_bytes(&self, n: usize) {
        self.store.set(n);
    }

    pub fn store_bytes(&self) -> usize {
        self.store.get()
    }

    /// Everything counted here.
    pub fn outside_rings(&self) -> usize {
        self.sockets.get() + self.store.get()
    }
}
