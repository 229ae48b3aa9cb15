//! apilb: one binary that fronts kube-apiservers.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive); `main.rs` maps it to library calls.
//! - [`config`]: the LB config file, parsed and checked into [`config::Config`].

pub mod cli;
pub mod config;
