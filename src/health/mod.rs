//! Backend health: the pure state machine ([`state`]), the probes ([`probe`]) and the task
//! that runs them on a schedule for every backend ([`task`]).
//!
//! Passive detection (failed client connects) feeds the same state machine from the data
//! plane; operators override it through the status API.

pub mod probe;
pub mod state;
pub mod task;
