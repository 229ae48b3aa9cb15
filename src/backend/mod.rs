//! Backends at run time: the live set the proxy picks from, with per-backend connection
//! counts and passive failure counts, swapped atomically on reload.
//!
//! [`BackendSet`] owns the list; [`select`] decides which backend takes a connection. A
//! backend removed by a reload stays alive (through `Arc`) for as long as its established
//! connections last.

pub mod select;

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

/// One backend and its live counters.
#[derive(Debug)]
pub struct Backend {
    name: String,
    address: BackendAddress,
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
    fn new(cfg: &BackendConfig) -> Self {
        Self {
            name: cfg.name.clone(),
            address: cfg.address.clone(),
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

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn address(&self) -> &BackendAddress {
        &self.address
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
}

/// What a [`BackendSet::update`] changed, by backend name.
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
    /// A set built from config.
    pub fn new(cfgs: &[BackendConfig]) -> Self {
        let list = cfgs.iter().map(|c| Arc::new(Backend::new(c))).collect();
        Self {
            current: ArcSwap::from_pointee(list),
        }
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

    /// The backend named `name`, if any.
    pub fn find(&self, name: &str) -> Option<Arc<Backend>> {
        self.snapshot().iter().find(|b| b.name == name).cloned()
    }

    /// Replace the set with `cfgs`. A backend with the same name and address is kept (with
    /// its counters and connections) and takes the new weight; others are added or dropped.
    pub fn update(&self, cfgs: &[BackendConfig]) -> BackendChanges {
        let old = self.snapshot();
        let mut changes = BackendChanges::default();
        let list: Vec<Arc<Backend>> = cfgs
            .iter()
            .map(|cfg| {
                match old
                    .iter()
                    .find(|b| b.name == cfg.name && b.address == cfg.address)
                {
                    Some(b) => {
                        if b.weight.swap(cfg.weight, Ordering::Relaxed) != cfg.weight {
                            changes.reweighted.push(cfg.name.clone());
                        }
                        b.health_config.store(Arc::new(cfg.health.clone()));
                        Arc::clone(b)
                    }
                    None => {
                        changes.added.push(cfg.name.clone());
                        Arc::new(Backend::new(cfg))
                    }
                }
            })
            .collect();
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
