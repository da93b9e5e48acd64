//! acp-relay: drive Agent Client Protocol agents at home from a phone or a browser.
//!
//! # Layout
//!
//! - [`core`] — sans-IO protocol state: JSON-RPC vocabulary, frame parsing and
//!   `rseq` stamping, the replay ring, the router and per-session drivers. No
//!   sockets, no clock, no files.
//! - [`workspace`] — the directory jail and the agent's `fs/*` / `terminal/*` methods.
//! - [`demo_agent`] — the built-in ACP agent (`acp-relay demo-agent`).

pub mod core;
pub mod demo_agent;
pub mod workspace;
