//! acp-relay: drive Agent Client Protocol agents at home from a phone or a browser.
//!
//! # Layout
//!
//! The sans-IO core and the I/O shell around it. The core never touches a
//! socket, a file or the clock; the shell runs it on one `smol`
//! `LocalExecutor` thread (plus the store's writer thread and smol's helper
//! threads for blocking work).
//!
//! - [`core`] — protocol state: JSON-RPC vocabulary, frame parsing and `rseq`
//!   stamping, the replay ring, the hub (a ring, its viewers, its gate), the
//!   driver (one session's agent session, turn and asks), units (hub +
//!   driver + metadata), the lease, the router (connection level: sockets,
//!   clients, dispatch, lifecycle, durable numbering, the memory budget,
//!   deadlines, the agent log), terminal screens, events and typed jobs for
//!   the shell.
//! - [`serve`] — the I/O shell: listener, HTTP head, admission, WebSocket
//!   pumps, the [`serve::relay::Relay`] that feeds the router and performs its
//!   outputs, ops endpoints, TLS, and the embedded web client.
//! - [`agent`] — agent child processes, bounded line framing, and the record
//!   of agent process groups swept after a crash.
//! - [`workspace`] — the directory jail (`openat2`), the agent's `fs/*` and
//!   `terminal/*` methods, device queries and edits.
//! - [`pty`] — PTY children for device terminals.
//! - [`store`] — the data directory: the pairing token and session transcripts.
//! - [`notify`] — notifications: a sans-IO notifier and its HTTP/command delivery.
//! - [`config`], [`cli`], [`status`], [`pair`] — the config file,
//!   `install-service`, `status` and `/status`, `pair` with its QR code.
//! - [`connect`] — `acp-relay connect`: the stdio ↔ `/acp` bridge.
//! - `client_tls` (feature `tls`) — the TLS client side: CA-checked for
//!   https notification targets, pinned to the relay's own certificate for
//!   `status`.
//! - [`places`] — `--workspace NAME=DIR` and `--agent NAME=CMD`: the projects and agents.
//! - [`demo_agent`] — the built-in ACP agent (`acp-relay demo-agent`).
//! - [`proc`], [`heap`], [`logger`] — process groups and `/proc`; the C
//!   allocator's knobs; the `log` backend (escaped lines, text or JSON).
//! - `testing` (test builds only) — helpers the unit tests share (`TempDir`).

pub mod agent;
pub mod cli;
#[cfg(feature = "tls")]
pub mod client_tls;
pub mod config;
pub mod connect;
pub mod core;
pub mod demo_agent;
pub mod heap;
pub mod logger;
pub mod notify;
pub mod pair;
pub mod places;
pub mod proc;
pub mod pty;
pub mod serve;
pub mod status;
pub mod store;
#[cfg(test)]
mod testing;
pub mod workspace;
