//! apilb: one binary that fronts kube-apiservers.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive); `main.rs` maps it to library calls.
//! - [`backend`]: the live backend set and the pure selection algorithms.
//! - [`config`]: the LB config file, parsed and checked into [`config::Config`].

pub mod admin;
pub mod backend;
pub mod cli;
pub mod config;
pub mod control;
pub mod health;
pub mod metrics;
pub mod proxy;
