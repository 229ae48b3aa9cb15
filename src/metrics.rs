//! Prometheus metrics: typed handles on a registry the caller owns (no global registry), so
//! tests build their own and nothing clashes. The HTTP endpoint comes with the status API.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the data plane updates.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `apilb_connections_accepted_total`: client connections accepted.
    pub accepted: IntCounter,
    /// `apilb_connections_rejected_total{reason}`: closed at once without proxying
    /// (`max_connections`).
    pub rejected: IntCounterVec,
    /// `apilb_connections_active`: client connections open now.
    pub active: IntGauge,
    /// `apilb_connections_failed_total{reason}`: clients closed without a backend connection
    /// (`no_backend`: every backend failed; `local_resources`: no socket could be made).
    pub failed: IntCounterVec,
    /// `apilb_connections_closed_total{reason}`: how proxied connections ended
    /// (`eof`, `idle_timeout`, `drain_cut`, `client_error`, `backend_error`).
    pub closed: IntCounterVec,
    /// `apilb_backend_connections_total{backend}`: connections established to each backend.
    pub backend_connections: IntCounterVec,
    /// `apilb_backend_connect_failures_total{backend,reason}`: failed connect attempts
    /// (`refused`, `timeout`, `unreachable`, `resolve`, `other`).
    pub connect_failures: IntCounterVec,
    /// `apilb_bytes_total{direction}`: bytes forwarded (`client_to_backend`,
    /// `backend_to_client`), counted when a connection ends.
    pub bytes: IntCounterVec,
    /// `apilb_accept_errors_total{kind}`: failed accept(2) calls (`resources`, `other`).
    pub accept_errors: IntCounterVec,
    /// `apilb_config_reloads_total{result}`: reloads (`ok`, `failed`).
    pub reloads: IntCounterVec,
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn counter_vec(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let active = IntGauge::with_opts(Opts::new(
            "apilb_connections_active",
            "Client connections open now.",
        ))?;
        registry.register(Box::new(active.clone()))?;
        Ok(Self {
            accepted: counter(
                registry,
                "apilb_connections_accepted_total",
                "Client connections accepted.",
            )?,
            rejected: counter_vec(
                registry,
                "apilb_connections_rejected_total",
                "Client connections closed at once without proxying.",
                &["reason"],
            )?,
            active,
            failed: counter_vec(
                registry,
                "apilb_connections_failed_total",
                "Client connections closed because no backend took them.",
                &["reason"],
            )?,
            closed: counter_vec(
                registry,
                "apilb_connections_closed_total",
                "Proxied connections ended, by reason.",
                &["reason"],
            )?,
            backend_connections: counter_vec(
                registry,
                "apilb_backend_connections_total",
                "Connections established to each backend.",
                &["backend"],
            )?,
            connect_failures: counter_vec(
                registry,
                "apilb_backend_connect_failures_total",
                "Failed connect attempts to each backend, by reason.",
                &["backend", "reason"],
            )?,
            bytes: counter_vec(
                registry,
                "apilb_bytes_total",
                "Bytes forwarded, by direction.",
                &["direction"],
            )?,
            accept_errors: counter_vec(
                registry,
                "apilb_accept_errors_total",
                "Failed accept calls, by kind.",
                &["kind"],
            )?,
            reloads: counter_vec(
                registry,
                "apilb_config_reloads_total",
                "Config reloads, by result.",
                &["result"],
            )?,
        })
    }

    /// Metrics on a private registry (for tests and tools that do not export them).
    pub fn unregistered() -> Self {
        // A fresh registry has no names yet, so registration cannot clash.
        #[allow(clippy::expect_used)]
        Self::new(&Registry::new()).expect("metrics register on an empty registry")
    }
}
