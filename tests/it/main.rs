//! The one integration-test binary: one module per area (STYLE B6).
//!
//! Tests that need an external tool (`openssl`, `etcd`, `etcdctl`, `kubectl`, `promtool`)
//! skip with a printed reason when it is missing, and fail instead when
//! `APILB_REQUIRE_PRIVILEGED=1` (set by `.ci/run`, which installs them).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod alerts;
mod announce;
mod bootstrap;
mod check_config;
mod cli;
mod contracts;
mod control;
mod demo;
mod deploy;
mod firstbyte;
mod health;
mod lab;
mod lab_bgp;
mod lifecycle;
mod logs;
mod metrics;
mod notify;
mod package;
mod pki;
mod privilege;
mod props;
mod proxy;
mod rebalance;
mod soak;
mod status;
mod statuspage;
mod vip;
