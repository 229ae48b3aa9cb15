//! apilb: one binary that fronts kube-apiservers.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive); `main.rs` maps it to library calls.
//! - [`cluster`]: the cluster description (`config/cluster.yaml`), shared by `issue` and
//!   `bootstrap`.
//! - [`pki`]: the kubeadm control-plane PKI (`apilb issue`, `certs check-expiration`,
//!   `ca-cert-hash`).
//! - [`token`]: bootstrap tokens and certificate keys.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod cluster;
pub mod pki;
pub mod token;
