//! apilb: one binary that fronts kube-apiservers.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive); `main.rs` maps it to library calls.
//! - [`input`]: what both YAML files share: positioned problems, unknown keys, and the
//!   host:port, DNS-name, CIDR and duration rules.
//! - [`config`]: the LB config file, parsed and checked into [`config::Config`].
//! - [`backend`]: the live backend set and the pure selection algorithms.
//! - [`health`]: backend health: state machine, probes, check tasks.
//! - [`proxy`]: the layer-4 data plane (listeners, connect with retry, forwarding).
//! - [`control`]: signals to reload and drain.
//! - [`admin`]: the HTTP endpoint for metrics, status and backend state changes.
//! - [`metrics`]: typed Prometheus handles.
//! - [`cluster`]: the cluster description (`config/cluster.yaml`), shared by `issue` and
//!   `bootstrap`.
//! - [`pki`]: the kubeadm control-plane PKI (`apilb issue`, `certs check-expiration`,
//!   `ca-cert-hash`).
//! - [`token`]: bootstrap tokens and certificate keys.
//! - [`bootstrap`]: `apilb bootstrap`: per-master kubeadm configs, etcd manifests, LB host
//!   configs and READMEs from the cluster description.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod backend;
pub mod bootstrap;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod demo;
pub mod health;
pub mod input;
pub mod metrics;
pub mod pki;
pub mod proxy;
pub mod token;
pub mod vip;
