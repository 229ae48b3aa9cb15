//! Prometheus metrics: typed handles on a registry the caller owns (no global registry), so
//! tests build their own and nothing clashes. The HTTP endpoint comes with the status API.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::health::state::{State, Transition};

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
    /// (`eof`, `idle_timeout`, `drain_cut`, `backend_down`, `client_error`,
    /// `backend_error`).
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
    /// `apilb_backend_state{backend,state}`: 1 for the state each backend is in, else 0.
    pub backend_state: IntGaugeVec,
    /// `apilb_backend_transitions_total{backend,from,to}`: state changes.
    pub transitions: IntCounterVec,
    /// `apilb_health_checks_total{backend,outcome}`: active checks by outcome (`pass`,
    /// `fail`, `draining`, `refused`).
    pub checks: IntCounterVec,
    /// `apilb_health_check_duration_seconds{backend}`: how long checks took.
    pub check_duration: HistogramVec,
    /// `apilb_backend_active_connections{backend}`: connections open to each backend,
    /// refreshed at scrape time.
    pub backend_active: IntGaugeVec,
    /// `apilb_backend_connect_duration_seconds{backend}`: time to establish the backend leg.
    pub connect_duration: HistogramVec,
    /// `apilb_connection_duration_seconds`: lifetime of proxied connections.
    pub connection_duration: prometheus::Histogram,
    /// `apilb_certificate_expiry_timestamp_seconds{path}`: notAfter of each certificate the
    /// config references or watches, refreshed at scrape time.
    pub certificate_expiry: prometheus::GaugeVec,
    /// `apilb_certificate_read_errors_total{path}`: watched certificates that could not be
    /// read or parsed at scrape time.
    pub certificate_errors: IntCounterVec,
    /// `apilb_dns_lookups_total{backend,result}`: lookups of DNS-named backends (`ok`,
    /// `failed`).
    pub dns_lookups: IntCounterVec,
    /// `apilb_dns_endpoints{backend}`: addresses in the last good answer.
    pub dns_endpoints: IntGaugeVec,
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
        let build_info = IntGaugeVec::new(
            Opts::new("apilb_build_info", "apilb version; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Process metrics (CPU, memory, descriptors) come from /proc on Linux.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let connection_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "apilb_connection_duration_seconds",
                "Lifetime of proxied connections.",
            )
            .buckets(vec![
                0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
            ]),
        )?;
        registry.register(Box::new(connection_duration.clone()))?;
        let certificate_expiry = prometheus::GaugeVec::new(
            Opts::new(
                "apilb_certificate_expiry_timestamp_seconds",
                "notAfter of each certificate the config references or watches, as a Unix time.",
            ),
            &["path"],
        )?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        Ok(Self {
            backend_active: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "apilb_backend_active_connections",
                        "Connections open to each backend.",
                    ),
                    &["backend"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            connect_duration: histogram(
                "apilb_backend_connect_duration_seconds",
                "Time to establish the backend leg of a connection.",
                &["backend"],
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0,
                ],
            )?,
            connection_duration,
            certificate_expiry,
            dns_lookups: counter_vec(
                registry,
                "apilb_dns_lookups_total",
                "Lookups of DNS-named backends, by result.",
                &["backend", "result"],
            )?,
            dns_endpoints: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "apilb_dns_endpoints",
                        "Addresses in the last good DNS answer of each DNS-named backend.",
                    ),
                    &["backend"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            certificate_errors: counter_vec(
                registry,
                "apilb_certificate_read_errors_total",
                "Watched certificates that could not be read or parsed at scrape time.",
                &["path"],
            )?,
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
            backend_state: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "apilb_backend_state",
                        "1 for the state each backend is in (up, drain, down, maint), else 0.",
                    ),
                    &["backend", "state"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            transitions: counter_vec(
                registry,
                "apilb_backend_transitions_total",
                "Backend state changes.",
                &["backend", "from", "to"],
            )?,
            checks: counter_vec(
                registry,
                "apilb_health_checks_total",
                "Active health checks, by outcome.",
                &["backend", "outcome"],
            )?,
            check_duration: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "apilb_health_check_duration_seconds",
                        "How long active health checks took.",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ]),
                    &["backend"],
                )?;
                registry.register(Box::new(h.clone()))?;
                h
            },
        })
    }

    /// Record a backend's state (all four state series, so exactly one is 1).
    pub fn set_state(&self, backend: &str, state: State) {
        for s in State::ALL {
            self.backend_state
                .with_label_values(&[backend, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// Record a transition.
    pub fn transition(&self, backend: &str, t: &Transition) {
        self.transitions
            .with_label_values(&[backend, t.from.as_str(), t.to.as_str()])
            .inc();
        self.set_state(backend, t.to);
    }

    /// Record one active check.
    pub fn check(&self, backend: &str, outcome: &str, took: Duration) {
        self.checks.with_label_values(&[backend, outcome]).inc();
        self.check_duration
            .with_label_values(&[backend])
            .observe(took.as_secs_f64());
    }

    /// Metrics on a private registry (for tests and tools that do not export them).
    pub fn unregistered() -> Self {
        // A fresh registry has no names yet, so registration cannot clash.
        #[allow(clippy::expect_used)]
        Self::new(&Registry::new()).expect("metrics register on an empty registry")
    }
}

/// The VIP's metrics, registered only when the config has a `vip` section.
#[derive(Debug, Clone)]
pub struct VipMetrics {
    /// `apilb_vip_state{state}`: 1 for the VRRP state we are in, else 0.
    pub state: IntGaugeVec,
    /// `apilb_vip_priority`: the effective priority (after tracking).
    pub priority: IntGauge,
    /// `apilb_vip_transitions_total{from,to,reason}`.
    pub transitions: IntCounterVec,
    /// `apilb_vip_adverts_sent_total`.
    pub adverts_sent: IntCounter,
    /// `apilb_vip_advert_send_errors_total`.
    pub send_errors: IntCounter,
    /// `apilb_vip_adverts_received_total`: valid adverts for our VRID from other routers.
    pub adverts_received: IntCounter,
    /// `apilb_vip_invalid_packets_total{reason}`: dropped packets by reason.
    pub invalid: IntCounterVec,
    /// `apilb_vip_split_brain_total{outcome}`: another master seen while master
    /// (`yielded`, `kept`).
    pub split_brain: IntCounterVec,
    /// `apilb_vip_takeover_duration_seconds`: from the decision to become master until the
    /// addresses are on the interface and announced.
    pub takeover: prometheus::Histogram,
    /// `apilb_vip_address_errors_total{op}`: failed address changes (`add`, `remove`).
    pub address_errors: IntCounterVec,
}

impl VipMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let r = registry;
        let state = IntGaugeVec::new(
            Opts::new(
                "apilb_vip_state",
                "1 for the VRRP state this LB is in, else 0.",
            ),
            &["state"],
        )?;
        r.register(Box::new(state.clone()))?;
        let priority = IntGauge::with_opts(Opts::new(
            "apilb_vip_priority",
            "Effective VRRP priority after health tracking.",
        ))?;
        r.register(Box::new(priority.clone()))?;
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let c = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            r.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let takeover = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "apilb_vip_takeover_duration_seconds",
                "Time from deciding to become VRRP master until the addresses are added and announced.",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )?;
        r.register(Box::new(takeover.clone()))?;
        let m = Self {
            state,
            priority,
            transitions: cv(
                "apilb_vip_transitions_total",
                "VRRP state changes.",
                &["from", "to", "reason"],
            )?,
            adverts_sent: c("apilb_vip_adverts_sent_total", "VRRP adverts sent.")?,
            send_errors: c(
                "apilb_vip_advert_send_errors_total",
                "VRRP adverts that could not be sent.",
            )?,
            adverts_received: c(
                "apilb_vip_adverts_received_total",
                "Valid VRRP adverts for our virtual router received from others.",
            )?,
            invalid: cv(
                "apilb_vip_invalid_packets_total",
                "VRRP packets dropped, by reason.",
                &["reason"],
            )?,
            split_brain: cv(
                "apilb_vip_split_brain_total",
                "Another master seen while master, by outcome.",
                &["outcome"],
            )?,
            takeover,
            address_errors: cv(
                "apilb_vip_address_errors_total",
                "Failed virtual address changes, by operation.",
                &["op"],
            )?,
        };
        for reason in crate::vip::packet::Invalid::ALL {
            m.invalid.with_label_values(&[reason.as_str()]);
        }
        for s in crate::vip::fsm::State::ALL {
            m.state.with_label_values(&[s.as_str()]);
        }
        m.state.with_label_values(&["initialize"]).set(1);
        Ok(m)
    }

    /// Show `state` as the current one.
    pub fn set_state(&self, state: crate::vip::fsm::State) {
        for s in crate::vip::fsm::State::ALL {
            self.state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == state));
        }
    }
}

/// Metrics of route announcement ([`crate::announce`]), registered only when the config has
/// an `announce` section.
#[derive(Debug, Clone)]
pub struct AnnounceMetrics {
    /// `apilb_announce_state{address}`: 1 while the address's route is in the table, else 0.
    pub state: IntGaugeVec,
    /// `apilb_announce_transitions_total{address,reason}`: routes added or deleted, by why
    /// (`healthy`, `unhealthy`, `shutdown`, `reload`).
    pub transitions: IntCounterVec,
    /// `apilb_announce_errors_total`: route or address changes the kernel refused.
    pub errors: IntCounter,
}

impl AnnounceMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let state = IntGaugeVec::new(
            Opts::new(
                "apilb_announce_state",
                "1 while the address's route is in the announce table (announced), else 0.",
            ),
            &["address"],
        )?;
        registry.register(Box::new(state.clone()))?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "apilb_announce_transitions_total",
                "Announce routes added or deleted, by address and reason.",
            ),
            &["address", "reason"],
        )?;
        registry.register(Box::new(transitions.clone()))?;
        let errors = IntCounter::with_opts(Opts::new(
            "apilb_announce_errors_total",
            "Announce route or address changes the kernel refused.",
        ))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self {
            state,
            transitions,
            errors,
        })
    }
}
