//! Prometheus metrics: typed handles on a registry the caller owns (no global registry), so
//! tests build their own and nothing clashes. The HTTP endpoint comes with the status API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::health::state::{State, Transition};

/// The `reason` values of `apilb_connections_closed_total`, in the order of
/// `proxy::forward::End::index`.
pub const CLOSE_REASONS: &[&str] = &[
    "eof",
    "idle_timeout",
    "drain_cut",
    "backend_down",
    "client_error",
    "backend_error",
    "rebalance",
];

/// The `direction` values of `apilb_bytes_total`.
pub const DIRECTIONS: &[&str] = &["client_to_backend", "backend_to_client"];
/// Index of `client_to_backend` in [`DIRECTIONS`].
pub const UP: usize = 0;
/// Index of `backend_to_client` in [`DIRECTIONS`].
pub const DOWN: usize = 1;

/// Every metric the data plane updates.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `apilb_connections_accepted_total`: client connections accepted (per-worker shards).
    pub accepted: ShardedCounter,
    /// `apilb_worker_connections_accepted_total{worker}`: client connections each
    /// data-plane worker accepted (how evenly the kernel spreads them).
    pub worker_accepted: IntCounterVec,
    /// `apilb_connections_rejected_total{reason}`: closed at once without proxying
    /// (`max_connections`).
    pub rejected: IntCounterVec,
    /// `apilb_connections_active`: client connections open now (set from the proxy's
    /// `maxConnections` count when scraped).
    pub active: IntGauge,
    /// `apilb_connections_failed_total{reason}`: clients closed without a backend connection
    /// (`no_backend`: every backend failed; `local_resources`: no socket could be made).
    pub failed: IntCounterVec,
    /// `apilb_connections_closed_total{reason}`: how proxied connections ended
    /// (`eof`, `idle_timeout`, `drain_cut`, `backend_down`, `client_error`,
    /// `backend_error`, `rebalance`).
    pub closed: ShardedCounter,
    /// `apilb_backend_connections_total{backend}`: connections established to each backend.
    pub backend_connections: IntCounterVec,
    /// `apilb_backend_connect_failures_total{backend,reason}`: failed connect attempts
    /// (`refused`, `timeout`, `unreachable`, `resolve`, `other`).
    pub connect_failures: IntCounterVec,
    /// `apilb_bytes_total{direction}`: bytes forwarded (`client_to_backend`,
    /// `backend_to_client`), counted when a connection ends.
    pub bytes: ShardedCounter,
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
        registry.register(Box::new(RuntimeCollector::new()?))?;
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
            accepted: ShardedCounter::new(
                registry,
                "apilb_connections_accepted_total",
                "Client connections accepted.",
                None,
                &[""],
            )?,
            worker_accepted: counter_vec(
                registry,
                "apilb_worker_connections_accepted_total",
                "Client connections accepted by each data-plane worker.",
                &["worker"],
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
            closed: ShardedCounter::new(
                registry,
                "apilb_connections_closed_total",
                "Proxied connections ended, by reason.",
                Some("reason"),
                CLOSE_REASONS,
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
            bytes: ShardedCounter::new(
                registry,
                "apilb_bytes_total",
                "Bytes forwarded, by direction.",
                Some("direction"),
                DIRECTIONS,
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

/// `apilb_runtime_alive_tasks` and `apilb_runtime_workers`, read from the tokio runtime that
/// scrapes them (absent when gathered off any runtime): a task leak shows as a count that
/// grows while the load stays the same (the soak checks it).
#[derive(Debug)]
struct RuntimeCollector {
    alive: IntGauge,
    workers: IntGauge,
}

impl RuntimeCollector {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            alive: IntGauge::with_opts(Opts::new(
                "apilb_runtime_alive_tasks",
                "Tasks alive on the async runtime now (spawned and not yet finished).",
            ))?,
            workers: IntGauge::with_opts(Opts::new(
                "apilb_runtime_workers",
                "Worker threads of the async runtime.",
            ))?,
        })
    }
}

impl prometheus::core::Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.alive
            .desc()
            .into_iter()
            .chain(self.workers.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Vec::new();
        };
        let m = handle.metrics();
        self.alive
            .set(i64::try_from(m.num_alive_tasks()).unwrap_or(i64::MAX));
        self.workers
            .set(i64::try_from(m.num_workers()).unwrap_or(i64::MAX));
        self.alive
            .collect()
            .into_iter()
            .chain(self.workers.collect())
            .collect()
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

/// A counter family summed over per-worker shards when scraped. Each data-plane worker adds
/// to its own [`Shard`] (its own cache lines), so counting a connection or its bytes writes
/// nothing another core reads until a scrape. The label values are fixed up front.
#[derive(Debug, Clone)]
pub struct ShardedCounter(Arc<ShardedInner>);

#[derive(Debug)]
struct ShardedInner {
    desc: Desc,
    name: String,
    help: String,
    /// The one label's name, or `None` for a counter without labels.
    label: Option<&'static str>,
    /// The label's values (one entry, `""`, without a label).
    values: &'static [&'static str],
    shards: Mutex<Vec<Arc<Shard>>>,
}

/// One worker's counts of a [`ShardedCounter`], one per label value.
#[derive(Debug)]
pub struct Shard(Box<[PaddedCount]>);

/// A count on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCount(AtomicU64);

impl Shard {
    /// Add `n` to the count of the label value at `index` (in the family's value list).
    pub fn add(&self, index: usize, n: u64) {
        if let Some(c) = self.0.get(index) {
            c.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add one to the count of the label value at `index`.
    pub fn inc(&self, index: usize) {
        self.add(index, 1);
    }
}

impl ShardedCounter {
    /// A family `name` with one `label` taking `values` (or no label: `label` `None` and
    /// `values` `&[""]`), registered in `registry`.
    pub fn new(
        registry: &Registry,
        name: &str,
        help: &str,
        label: Option<&'static str>,
        values: &'static [&'static str],
    ) -> Result<Self, prometheus::Error> {
        let labels: Vec<String> = label.iter().map(|l| (*l).to_owned()).collect();
        let desc = Desc::new(name.to_owned(), help.to_owned(), labels, HashMap::new())?;
        let c = ShardedCounter(Arc::new(ShardedInner {
            desc,
            name: name.to_owned(),
            help: help.to_owned(),
            label,
            values,
            shards: Mutex::new(Vec::new()),
        }));
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A new shard for one worker; its counts are part of every later scrape.
    pub fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard(
            self.0
                .values
                .iter()
                .map(|_| PaddedCount::default())
                .collect(),
        ));
        lock(&self.0.shards).push(Arc::clone(&shard));
        shard
    }

    /// The sum over every shard for label `value` (`""` without a label).
    pub fn get(&self, value: &str) -> u64 {
        let Some(i) = self.0.values.iter().position(|v| *v == value) else {
            return 0;
        };
        self.sum(i)
    }

    /// The sum over every shard and label value.
    pub fn total(&self) -> u64 {
        (0..self.0.values.len()).map(|i| self.sum(i)).sum()
    }

    fn sum(&self, i: usize) -> u64 {
        lock(&self.0.shards)
            .iter()
            .map(|s| s.0[i].0.load(Ordering::Relaxed))
            .sum()
    }
}

impl Collector for ShardedCounter {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut family = MetricFamily::default();
        family.set_name(self.0.name.clone());
        family.set_help(self.0.help.clone());
        family.set_field_type(MetricType::COUNTER);
        for (i, value) in self.0.values.iter().enumerate() {
            let mut counter = proto::Counter::default();
            counter.set_value(self.sum(i) as f64);
            let mut m = proto::Metric::default();
            if let Some(label) = self.0.label {
                let mut pair = proto::LabelPair::default();
                pair.set_name(label.to_owned());
                pair.set_value((*value).to_owned());
                m.set_label(vec![pair]);
            }
            m.set_counter(counter);
            family.mut_metric().push(m);
        }
        vec![family]
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic mid-push leaves a valid list.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    #[test]
    fn sharded_counters_sum_their_shards_when_scraped() {
        let registry = Registry::new();
        let bytes = ShardedCounter::new(
            &registry,
            "t_bytes_total",
            "Bytes.",
            Some("direction"),
            DIRECTIONS,
        )
        .expect("register");
        let plain = ShardedCounter::new(&registry, "t_plain_total", "Plain.", None, &[""])
            .expect("register");
        let (a, b) = (bytes.shard(), bytes.shard());
        a.add(UP, 10);
        b.add(UP, 5);
        b.add(DOWN, 7);
        a.add(99, 1); // out of range: ignored
        plain.shard().inc(0);
        assert_eq!(bytes.get("client_to_backend"), 15);
        assert_eq!(bytes.get("backend_to_client"), 7);
        assert_eq!(bytes.get("sideways"), 0);
        assert_eq!(bytes.total(), 22);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .expect("encode");
        let text = String::from_utf8(text).expect("utf-8");
        assert!(text.contains("# TYPE t_bytes_total counter\n"), "{text}");
        assert!(
            text.contains("t_bytes_total{direction=\"client_to_backend\"} 15\n"),
            "{text}"
        );
        assert!(
            text.contains("t_bytes_total{direction=\"backend_to_client\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("t_plain_total 1\n"), "{text}");
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

/// The rebalancer's metrics.
#[derive(Debug, Clone)]
pub struct RebalanceMetrics {
    /// `apilb_backend_skew_ratio`: highest over mean connections per weight, over Up
    /// backends (1 when balanced).
    pub skew: prometheus::Gauge,
    /// `apilb_rebalance_closes_total{backend}`: connections closed to move them.
    pub closes: IntCounterVec,
    /// `apilb_rebalance_skipped_total{reason}`: candidates passed over (`busy`, `young`,
    /// `recent_client`, `no_quiet_moment`), each connection once per reason and episode.
    pub skipped: IntCounterVec,
    /// `apilb_rebalance_state{state}`: 1 for the rebalancer's state (`idle`, `waiting`,
    /// `shedding`, `paused`), else 0.
    pub state: IntGaugeVec,
    /// `apilb_rebalance_excess_connections`: connections above their backends' shares.
    pub excess: IntGauge,
    /// `apilb_rebalance_close_age_seconds`: age of connections when the rebalancer closed
    /// them.
    pub close_age: prometheus::Histogram,
}

impl RebalanceMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        use crate::rebalance::core::{Skip, State as RState};
        let r = registry;
        let skew = prometheus::Gauge::with_opts(Opts::new(
            "apilb_backend_skew_ratio",
            "Highest over mean active connections per unit of weight, over Up backends.",
        ))?;
        r.register(Box::new(skew.clone()))?;
        let closes = IntCounterVec::new(
            Opts::new(
                "apilb_rebalance_closes_total",
                "Connections closed by the rebalancer to move them, by backend.",
            ),
            &["backend"],
        )?;
        r.register(Box::new(closes.clone()))?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "apilb_rebalance_skipped_total",
                "Rebalance candidates passed over, by reason.",
            ),
            &["reason"],
        )?;
        r.register(Box::new(skipped.clone()))?;
        let state = IntGaugeVec::new(
            Opts::new(
                "apilb_rebalance_state",
                "1 for the rebalancer's state, else 0.",
            ),
            &["state"],
        )?;
        r.register(Box::new(state.clone()))?;
        let excess = IntGauge::with_opts(Opts::new(
            "apilb_rebalance_excess_connections",
            "Connections above their backends' weighted shares.",
        ))?;
        r.register(Box::new(excess.clone()))?;
        let close_age = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "apilb_rebalance_close_age_seconds",
                "Age of connections when the rebalancer closed them.",
            )
            .buckets(vec![
                60.0,
                300.0,
                600.0,
                1800.0,
                3600.0,
                4.0 * 3600.0,
                12.0 * 3600.0,
                86400.0,
            ]),
        )?;
        r.register(Box::new(close_age.clone()))?;
        let m = Self {
            skew,
            closes,
            skipped,
            state,
            excess,
            close_age,
        };
        m.skew.set(1.0);
        for s in Skip::ALL {
            m.skipped.with_label_values(&[s.as_str()]);
        }
        m.set_state(RState::Idle);
        Ok(m)
    }

    /// Show `state` as the current one.
    pub fn set_state(&self, state: crate::rebalance::core::State) {
        for s in crate::rebalance::core::State::ALL {
            self.state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == state));
        }
    }
}
