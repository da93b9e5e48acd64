//! Sans-IO protocol core: events in, actions out, time passed in.

pub mod rpc;
