//! Router simulation harness: fake sockets, fake agents, a fake store and a
//! virtual clock around one [`Router`]. Each test feeds [`Input`]s and asserts
//! the exact frames each socket and each agent received. Performs no I/O.

mod sim;

mod agents;
mod asks;
mod attach;
mod budget;
mod cap;
mod deadlines;
mod durable;
mod ending;
mod lease;
mod lifecycle;
mod places;
mod random;
mod requests;

use super::*;
use sim::*;
