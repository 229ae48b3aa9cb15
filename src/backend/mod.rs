//! Backends at run time: the live set the proxy picks from, with per-backend connection
//! counts and passive failure counts, swapped atomically on reload.
//!
//! [`BackendSet`] owns the list; [`select`] decides which backend takes a connection. A
//! backend removed by a reload stays alive (through `Arc`) for as long as its established
//! connections last.
//!
//! A backend configured by DNS name becomes one endpoint per address its name resolves to
//! ([`dns`] keeps them current), each named `NAME/IP:PORT` and health-checked on its own.

pub mod dns;
pub mod select;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{BackendAddress, BackendConfig, HealthConfig, OnDown};
use crate::health::state::{Admin, Health, Outcome, State, Thresholds, Transition};
use crate::metrics::Metrics;
use select::Candidate;

/// Selection weights are scaled by this, so slow start can hand out fractions of a weight.
const WEIGHT_SCALE: f64 = 1000.0;

/// One backend endpoint and its live counters.
#[derive(Debug)]
pub struct Backend {
    /// The config name, or `NAME/IP:PORT` for an endpoint of a DNS-named backend.
    name: String,
    /// The `backends[].name` it comes from.
    config_name: String,
    /// The configured host (DNS name or IP), for TLS names in checks.
    host: String,
    address: SocketAddr,
    weight: AtomicU32,
    active: AtomicUsize,
    total: AtomicU64,
    consecutive_failures: AtomicU32,
    health_config: ArcSwap<HealthConfig>,
    health: Mutex<Health>,
    /// Cancelled to close every established connection (`onDown: close`); replaced after.
    kill: Mutex<CancellationToken>,
}

impl Backend {
    fn new(cfg: &BackendConfig, address: SocketAddr) -> Self {
        let (name, host) = match &cfg.address {
            BackendAddress::Ip(a) => (cfg.name.clone(), a.ip().to_string()),
            BackendAddress::Dns { host, .. } => (format!("{}/{address}", cfg.name), host.clone()),
        };
        Self {
            name,
            config_name: cfg.name.clone(),
            host,
            address,
            weight: AtomicU32::new(cfg.weight),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            health_config: ArcSwap::from_pointee(cfg.health.clone()),
            health: Mutex::new(Health::new()),
            kill: Mutex::new(CancellationToken::new()),
        }
    }

    /// Its health settings.
    pub fn health_config(&self) -> Arc<HealthConfig> {
        self.health_config.load_full()
    }

    /// A copy of its health now.
    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// What clients see of it now.
    pub fn state(&self) -> State {
        lock(&self.health).state()
    }

    fn thresholds(&self) -> Thresholds {
        let c = self.health_config.load();
        Thresholds {
            rise: c.rise,
            fall: c.fall,
            passive_fall: c.passive_fall,
            slow_start: c.slow_start,
        }
    }

    /// Feed an active check result; applies and reports any transition.
    pub fn on_check(&self, outcome: Outcome, metrics: &Metrics) -> Option<Transition> {
        let t = lock(&self.health).on_check(outcome, Instant::now(), &self.thresholds());
        self.after(t, metrics)
    }

    /// Set or clear an operator's override.
    pub fn set_admin(&self, admin: Option<Admin>, metrics: &Metrics) -> Option<Transition> {
        let t = lock(&self.health).set_admin(admin);
        self.after(t, metrics)
    }

    /// A token cancelled when this backend's connections must close.
    pub fn kill_token(&self) -> CancellationToken {
        lock(&self.kill).clone()
    }

    /// Close every established connection now.
    pub fn close_connections(&self) {
        let old = std::mem::take(&mut *lock(&self.kill));
        old.cancel();
    }

    fn after(&self, t: Option<Transition>, metrics: &Metrics) -> Option<Transition> {
        let t = t?;
        metrics.transition(&self.name, &t);
        let line = format!(
            "backend {}: {} -> {} ({})",
            self.name, t.from, t.to, t.reason
        );
        match t.to {
            State::Up => {
                tracing::info!(backend = %self.name, from = %t.from, to = %t.to, reason = %t.reason, "{line}")
            }
            _ => {
                tracing::warn!(backend = %self.name, from = %t.from, to = %t.to, reason = %t.reason, "{line}")
            }
        }
        if t.to == State::Down && self.health_config.load().on_down == OnDown::Close {
            let n = self.active();
            if n > 0 {
                tracing::warn!(backend = %self.name, connections = n, "onDown close: closing its connections");
            }
            self.close_connections();
        }
        Some(t)
    }

    /// Its name: the configured name, or `NAME/IP:PORT` for an endpoint of a DNS-named
    /// backend.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `backends[].name` it comes from.
    pub fn config_name(&self) -> &str {
        &self.config_name
    }

    /// The configured host: an IP address, or the DNS name this endpoint was resolved from.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Current weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Connections proxied to it right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections proxied to it since it was added.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Connect attempts that failed in a row (reset by a successful connect).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Record a failed client connect attempt (passive detection); returns the new run
    /// length.
    pub fn connect_failed(&self, why: &str, metrics: &Metrics) -> u32 {
        let run = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let t = lock(&self.health).on_connect_failure(why, &self.thresholds());
        self.after(t, metrics);
        run
    }

    /// Record a successful connect and count the connection as active until the returned
    /// guard drops.
    pub fn connected(self: &Arc<Self>) -> ActiveGuard {
        if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0 {
            lock(&self.health).on_connect_success();
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(self))
    }

    fn candidate(&self, now: Instant) -> Candidate {
        let (state, factor) = {
            let h = lock(&self.health);
            let slow = self.health_config.load().slow_start;
            (h.state(), h.slow_start_factor(now, slow))
        };
        let scaled = f64::from(self.weight()) * WEIGHT_SCALE * factor;
        Candidate {
            weight: (scaled as u32).max(1),
            active: self.active(),
            state,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one established connection on its backend while alive.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Backend>);

impl ActiveGuard {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The live backends, in config order; readers take a snapshot without locking.
#[derive(Debug)]
pub struct BackendSet {
    current: ArcSwap<Vec<Arc<Backend>>>,
    /// What the list is built from: the configs and the latest DNS answers.
    sources: Mutex<Sources>,
}

#[derive(Debug, Default)]
struct Sources {
    configs: Vec<BackendConfig>,
    /// Addresses of DNS-named backends, by config name.
    resolved: HashMap<String, Vec<SocketAddr>>,
}

/// What a change of the set did, by backend (endpoint) name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendChanges {
    /// Newly added (or re-added with a new address).
    pub added: Vec<String>,
    /// Removed (or replaced by a new address); their connections finish on their own.
    pub removed: Vec<String>,
    /// Kept, with a new weight.
    pub reweighted: Vec<String>,
}

impl BackendChanges {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.reweighted.is_empty()
    }
}

impl BackendSet {
    /// A set built from config. DNS-named backends have no endpoints until
    /// [`set_resolved`](Self::set_resolved) gives them addresses.
    pub fn new(cfgs: &[BackendConfig]) -> Self {
        let set = Self {
            current: ArcSwap::from_pointee(Vec::new()),
            sources: Mutex::new(Sources::default()),
        };
        set.update(cfgs);
        set
    }

    /// The backends now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.current.load_full()
    }

    /// Selection views of `list`, in the same order.
    pub fn candidates(list: &[Arc<Backend>]) -> Vec<Candidate> {
        let now = Instant::now();
        list.iter().map(|b| b.candidate(now)).collect()
    }

    /// The backend (endpoint) named `name`, if any.
    pub fn find(&self, name: &str) -> Option<Arc<Backend>> {
        self.snapshot().iter().find(|b| b.name == name).cloned()
    }

    /// Every endpoint of the configured backend `name` (one, or one per DNS address), or the
    /// endpoint named `name`.
    pub fn find_all(&self, name: &str) -> Vec<Arc<Backend>> {
        self.snapshot()
            .iter()
            .filter(|b| b.name == name || b.config_name == name)
            .cloned()
            .collect()
    }

    /// Replace the configs. An endpoint with the same name and address is kept (with its
    /// counters, health and connections) and takes the new weight and health settings.
    pub fn update(&self, cfgs: &[BackendConfig]) -> BackendChanges {
        let mut sources = lock(&self.sources);
        sources.configs = cfgs.to_vec();
        let dns: Vec<&str> = cfgs
            .iter()
            .filter(|c| matches!(c.address, BackendAddress::Dns { .. }))
            .map(|c| c.name.as_str())
            .collect();
        sources
            .resolved
            .retain(|name, _| dns.contains(&name.as_str()));
        self.rebuild(&sources)
    }

    /// Set the addresses the DNS-named backend `name` resolves to now.
    pub fn set_resolved(&self, name: &str, mut addrs: Vec<SocketAddr>) -> BackendChanges {
        addrs.sort();
        addrs.dedup();
        let mut sources = lock(&self.sources);
        if !sources.configs.iter().any(|c| c.name == name) {
            return BackendChanges::default();
        }
        sources.resolved.insert(name.to_owned(), addrs);
        self.rebuild(&sources)
    }

    fn rebuild(&self, sources: &Sources) -> BackendChanges {
        let old = self.snapshot();
        let mut changes = BackendChanges::default();
        let mut list: Vec<Arc<Backend>> = Vec::new();
        for cfg in &sources.configs {
            let addrs = match &cfg.address {
                BackendAddress::Ip(a) => vec![*a],
                BackendAddress::Dns { port, .. } => sources
                    .resolved
                    .get(&cfg.name)
                    .map(|v| v.iter().map(|a| SocketAddr::new(a.ip(), *port)).collect())
                    .unwrap_or_default(),
            };
            for addr in addrs {
                let fresh = Backend::new(cfg, addr);
                match old
                    .iter()
                    .find(|b| b.name == fresh.name && b.address == addr && b.host == fresh.host)
                {
                    Some(b) => {
                        if b.weight.swap(cfg.weight, Ordering::Relaxed) != cfg.weight {
                            changes.reweighted.push(b.name.clone());
                        }
                        b.health_config.store(Arc::new(cfg.health.clone()));
                        list.push(Arc::clone(b));
                    }
                    None => {
                        changes.added.push(fresh.name.clone());
                        list.push(Arc::new(fresh));
                    }
                }
            }
        }
        for b in old.iter() {
            if !list.iter().any(|n| Arc::ptr_eq(n, b)) {
                changes.removed.push(b.name.clone());
            }
        }
        self.current.store(Arc::new(list));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, port: u16, weight: u32) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            address: BackendAddress::Ip(([127, 0, 0, 1], port).into()),
            weight,
            health: HealthConfig::default(),
        }
    }

    #[test]
    fn update_keeps_matching_backends_and_their_counters() {
        let set = BackendSet::new(&[cfg("a", 1, 1), cfg("b", 2, 1), cfg("c", 3, 1)]);
        let a = Arc::clone(&set.snapshot()[0]);
        let guard = a.connected();
        let changes = set.update(&[cfg("a", 1, 5), cfg("c", 4, 1), cfg("d", 5, 1)]);
        assert_eq!(
            changes,
            BackendChanges {
                added: vec!["c".into(), "d".into()],
                removed: vec!["b".into(), "c".into()],
                reweighted: vec!["a".into()],
            }
        );
        let now = set.snapshot();
        assert!(Arc::ptr_eq(&now[0], &a));
        assert_eq!(now[0].weight(), 5);
        assert_eq!(now[0].active(), 1);
        drop(guard);
        assert_eq!(a.active(), 0);
        assert_eq!(a.total(), 1);
    }

    #[test]
    fn dns_backends_become_one_endpoint_per_address() {
        let dns = BackendConfig {
            name: "m".into(),
            address: BackendAddress::Dns {
                host: "m.example".into(),
                port: 6443,
            },
            weight: 1,
            health: HealthConfig::default(),
        };
        let set = BackendSet::new(&[cfg("a", 1, 1), dns.clone()]);
        assert_eq!(set.snapshot().len(), 1, "no endpoints before resolution");
        let ip = |s: &str| SocketAddr::new(s.parse().expect("ip"), 0);
        let c = set.set_resolved("m", vec![ip("10.0.0.2"), ip("10.0.0.1")]);
        assert_eq!(c.added, ["m/10.0.0.1:6443", "m/10.0.0.2:6443"]);
        let first = set.find("m/10.0.0.1:6443").expect("endpoint");
        assert_eq!(first.host(), "m.example");
        assert_eq!(first.config_name(), "m");
        assert_eq!(set.find_all("m").len(), 2);
        // A new answer keeps the endpoint that stayed.
        let c = set.set_resolved("m", vec![ip("10.0.0.1"), ip("10.0.0.3")]);
        assert_eq!(c.added, ["m/10.0.0.3:6443"]);
        assert_eq!(c.removed, ["m/10.0.0.2:6443"]);
        assert!(Arc::ptr_eq(
            &first,
            &set.find("m/10.0.0.1:6443").expect("kept")
        ));
        // A reload keeps resolved endpoints of backends still configured.
        let c = set.update(&[dns]);
        assert_eq!(c.removed, ["a"]);
        assert_eq!(set.snapshot().len(), 2);
        // Unknown names are ignored.
        assert!(set.set_resolved("zz", vec![ip("10.0.0.9")]).is_empty());
    }

    #[test]
    fn failures_reset_on_connect() {
        let set = BackendSet::new(&[cfg("a", 1, 1)]);
        let a = Arc::clone(&set.snapshot()[0]);
        let m = Metrics::unregistered();
        assert_eq!(a.connect_failed("refused", &m), 1);
        assert_eq!(a.state(), State::Down, "passiveFall 1 marks down at once");
        assert_eq!(a.connect_failed("refused", &m), 2);
        let _g = a.connected();
        assert_eq!(a.consecutive_failures(), 0);
    }
}
