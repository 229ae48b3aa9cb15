//! Command line: the `apilb` subcommands and their flags (clap derive).
//!
//! Parsing only; `main.rs` maps each command to library calls.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Load balancer, VIP failover and PKI bootstrap for kube-apiservers.
#[derive(Debug, Parser)]
#[command(name = "apilb", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax (e.g. `info`, `apilb=debug`); overrides RUST_LOG.
    #[arg(long = "log", global = true, value_name = "FILTER")]
    pub log_filter: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the load balancer in the foreground.
    Serve {
        /// The LB config file (YAML).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
    /// Parse and validate an LB config file; print every problem; exit 64 on any.
    CheckConfig {
        /// The LB config file (YAML).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}
