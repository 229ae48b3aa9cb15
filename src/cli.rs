//! Command line: the `apilb` subcommands and their flags (clap derive).
//!
//! Parsing only; `main.rs` maps each command to library calls.

use std::net::SocketAddr;
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
    /// Show listeners and backends of a running apilb (from its /status endpoint).
    Status {
        /// The running apilb's `metrics.listen` address.
        #[arg(long, value_name = "ADDR", default_value = crate::config::DEFAULT_METRICS_ADDRESS)]
        metrics_address: SocketAddr,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a backend's state in a running apilb.
    Backend {
        #[command(subcommand)]
        action: BackendAction,
        /// The running apilb's `metrics.listen` address.
        #[arg(long, global = true, value_name = "ADDR", default_value = crate::config::DEFAULT_METRICS_ADDRESS)]
        metrics_address: SocketAddr,
    },
}

/// `apilb backend ...`.
#[derive(Debug, Subcommand)]
pub enum BackendAction {
    /// Take no new connections; existing ones finish.
    Drain {
        /// Backend name.
        name: String,
        /// Wait until its connections reach zero (or the deadline), printing progress.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits at most.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_arg)]
        deadline: std::time::Duration,
    },
    /// Out of service: no new connections, checks not counted.
    Maint {
        /// Backend name.
        name: String,
    },
    /// Clear drain or maint: the checked state applies again.
    Enable {
        /// Backend name.
        name: String,
    },
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}
