//! Sans-IO protocol core: events in, actions out, time passed in.

pub mod budget;
pub mod events;
pub mod frame;
pub mod ids;
pub mod job;
pub mod lease;
pub mod ring;
pub mod router;
pub mod rpc;
pub mod terminals;
pub mod unit;
