//! Sans-IO protocol core: events in, actions out, time passed in. Nothing
//! here opens a socket or a file, spawns a process or reads the clock; the
//! shell (`serve`, `agent`, `pty`, `workspace`, `store`) does all of that.

pub mod budget;
pub mod driver;
pub mod events;
pub mod frame;
pub mod hub;
pub mod ids;
pub mod job;
pub mod lease;
pub mod ring;
pub mod router;
pub mod rpc;
pub mod terminals;
pub mod unit;
