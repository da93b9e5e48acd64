//! Sans-IO protocol core: events in, actions out, time passed in.

pub mod rpc;
pub mod frame;
pub mod ring;
