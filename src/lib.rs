//! apilb: one binary that fronts kube-apiservers.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive); [`commands`] runs each subcommand and says
//!   what `main.rs` prints and exits with.
//! - [`input`]: what both YAML files share: positioned problems, unknown keys, and the
//!   host:port, DNS-name, CIDR and duration rules.
//! - [`config`]: the LB config file, parsed and checked into [`config::Config`];
//!   [`config::diff`] says what a reload changes.
//! - [`control`]: the control plane: owns the process, builds and stops every part, applies
//!   signals (reload, drain) slice by slice.
//! - [`proxy`]: the data plane: listeners, accept, connections, forwarding. Reads the
//!   backend set; imports neither health nor DNS.
//! - [`backend`]: the live backend set (pure mutators, a watched view, an event stream), the
//!   pure selection algorithms, DNS watches.
//! - [`health`]: backend health: the pure state machine, probes, the check service.
//! - [`vip`]: VRRPv3 VIP failover: pure codec and state machine, raw sockets and netlink.
//! - [`privilege`]: least privilege: the capabilities a config needs after start, the rest
//!   dropped from every thread and set.
//! - [`announce`]: active-active VIPs as kernel routes a BGP daemon exports: pure health
//!   gate, host checks, the route task.
//! - [`netlink`]: rtnetlink (interfaces, addresses, routes), shared by `vip` and `announce`.
//! - [`admin`]: the HTTP endpoint for metrics, status and backend state changes, and its
//!   client (`apilb status`, `apilb backend`).
//! - [`metrics`]: typed Prometheus handles.
//! - [`demo`]: `apilb demo`, the whole system on loopback, and its stand-in apiservers.
//! - [`logging`]: log output on stderr, colour only at a terminal outside the journal.
//! - [`cluster`]: the cluster description (`config/cluster.yaml`), shared by `issue` and
//!   `bootstrap`.
//! - [`pki`]: the kubeadm control-plane PKI (`apilb issue`, `certs check-expiration`,
//!   `ca-cert-hash`).
//! - [`token`]: bootstrap tokens and certificate keys.
//! - [`assets`]: man pages and shell completions from the command line, for packaging.
//! - [`bootstrap`]: `apilb bootstrap`: per-master kubeadm configs, etcd manifests, LB host
//!   configs and READMEs from the cluster description.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod announce;
pub mod assets;
pub mod backend;
pub mod bootstrap;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod control;
pub mod demo;
pub mod errors;
pub mod health;
mod http;
pub mod input;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod pki;
pub mod privilege;
pub mod proxy;
pub mod rebalance;
pub mod token;
pub mod vip;
