//! acp-relay: drive Agent Client Protocol agents at home from a phone or a browser.
//!
//! # Layout
//!
//! - [`core`] — sans-IO protocol state: JSON-RPC vocabulary, frame parsing and
//!   `rseq` stamping, the replay ring, the lease, units and the router. No
//!   sockets, no clock, no files.
//! - [`serve`] — the I/O shell: listener, HTTP head, auth, WebSocket pumps,
//!   and the [`serve::relay::Relay`] that feeds the router and performs its outputs.
//! - [`agent`] — agent child processes and bounded line framing.
//! - [`workspace`] — the directory jail and the agent's `fs/*` / `terminal/*` methods.
//! - [`store`] — files in the data directory (the pairing token).
//! - [`demo_agent`] — the built-in ACP agent (`acp-relay demo-agent`).
//! - [`proc`] — process groups and `/proc`: one way to signal a group.
//! - [`heap`] — the C allocator's knobs (arenas, trimming after a burst).
//! - [`notify`] — notifications: a sans-IO notifier and its HTTP/command delivery.
//! - [`config`], [`cli`], [`status`], [`pair`] — the config file, `install-service`,
//!   `status` and `/status`, `pair` with its QR code.

pub mod agent;
pub mod cli;
pub mod config;
pub mod connect;
pub mod core;
pub mod demo_agent;
pub mod heap;
pub mod logger;
pub mod notify;
pub mod pair;
pub mod proc;
pub mod pty;
pub mod serve;
pub mod status;
pub mod store;
pub mod workspace;
