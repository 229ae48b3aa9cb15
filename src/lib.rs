//! apilb: one binary that fronts kube-apiservers.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive); `main.rs` maps it to library calls.

pub mod cli;
