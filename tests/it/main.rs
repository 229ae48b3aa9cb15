//! The integration tests: one binary, one module per area.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod health;
mod lifecycle;
mod metrics;
mod proxy;
