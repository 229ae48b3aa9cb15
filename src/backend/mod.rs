//! Backends at run time: the live set the proxy picks from, with per-backend connection
//! counts and passive failure counts, swapped atomically on reload.
//!
//! [`BackendSet`] owns the list; [`select`] decides which backend takes a connection. A
//! backend removed by a reload stays alive (through `Arc`) for as long as its established
//! connections last.
//!
//! [`Backend`] mutators take the time and return the [`Transition`] they caused; they log,
//! count and close nothing. Whoever caused a transition hands it to
//! [`BackendSet::publish`], which queues it as an [`Event`] for the one control-plane
//! consumer (logs, metrics, `onDown: close`) and refreshes the [`View`] that subscribers
//! (the VIP, the admin endpoint) watch.
//!
//! A backend configured by DNS name becomes one endpoint per address its name resolves to
//! ([`dns`] keeps them current), each named `NAME/IP:PORT` and health-checked on its own.

pub mod dns;
pub mod select;

/// What clients see of a backend (the health state machine's output).
pub use crate::health::state::State;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{BackendAddress, BackendConfig, HealthConfig};
use crate::health::state::{Admin, Health, Outcome, Thresholds, Transition};
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
    /// Bumped to close every connection established before (`onDown: close`), by
    /// [`BackendSet::close_connections`].
    closings: AtomicU64,
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
            closings: AtomicU64::new(0),
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

    /// Feed an active check result finished at `now`; returns the transition it caused.
    pub fn on_check(&self, outcome: Outcome, now: Instant) -> Option<Transition> {
        let thresholds = self.thresholds();
        lock(&self.health).on_check(outcome, now, &thresholds)
    }

    /// Set or clear an operator's override at `now`; returns the transition it caused.
    pub fn set_admin(&self, admin: Option<Admin>, now: Instant) -> Option<Transition> {
        lock(&self.health).set_admin(admin, now)
    }

    /// How many times its connections were closed (`onDown: close`): a connection that
    /// saw an older count when it was established must close.
    pub fn closings(&self) -> u64 {
        self.closings.load(Ordering::Acquire)
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
    /// length and the transition it caused.
    pub fn connect_failed(&self, why: &str) -> (u32, Option<Transition>) {
        let run = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let thresholds = self.thresholds();
        let t = lock(&self.health).on_connect_failure(why, &thresholds);
        (run, t)
    }

    /// Record a successful connect and count the connection as active until the returned
    /// guard drops.
    pub fn connected(self: &Arc<Self>) -> ActiveGuard {
        self.answered();
        self.connected_unconfirmed()
    }

    /// Count a connection whose backend has not answered yet as active until the returned
    /// guard drops; [`answered`](Self::answered) ends a run of failures once it does.
    pub fn connected_unconfirmed(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(self))
    }

    /// Record that the backend served a client (connected, or sent its first byte): a run
    /// of failed connects ends.
    pub fn answered(&self) {
        if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0 {
            lock(&self.health).on_connect_success();
        }
    }

    /// What selection needs of it at `now`.
    pub fn candidate(&self, now: Instant) -> Candidate {
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

/// What happened to the set, for its one control-plane consumer.
#[derive(Debug)]
pub enum Event {
    /// A backend changed the state clients see.
    Transition {
        /// The backend.
        backend: Arc<Backend>,
        /// What changed.
        transition: Transition,
    },
    /// Endpoints were added or removed (a reload or a DNS answer).
    Endpoints(BackendChanges),
}

/// One endpoint as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// Endpoint name.
    pub name: String,
    /// What clients see of it.
    pub state: State,
}

/// The set as subscribers see it, republished on every transition and endpoint change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Every endpoint, in config order.
    pub endpoints: Vec<EndpointView>,
}

impl View {
    fn of(list: &[Arc<Backend>]) -> Self {
        Self {
            endpoints: list
                .iter()
                .map(|b| EndpointView {
                    name: b.name.clone(),
                    state: b.state(),
                })
                .collect(),
        }
    }

    /// Endpoints that take new connections.
    pub fn up(&self) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.state == State::Up)
            .count()
    }
}

/// The live backends, in config order; readers take a snapshot without locking.
#[derive(Debug)]
pub struct BackendSet {
    current: ArcSwap<Vec<Arc<Backend>>>,
    /// What the list is built from: the configs and the latest DNS answers.
    sources: Mutex<Sources>,
    events: mpsc::UnboundedSender<Event>,
    view: watch::Sender<View>,
    /// Bumped with any backend's [`Backend::closings`], so the data plane looks for the
    /// connections to close.
    closings: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Sources {
    configs: Vec<BackendConfig>,
    /// Addresses of DNS-named backends, by config name.
    resolved: HashMap<String, Vec<SocketAddr>>,
}

/// What a change of the set did, by backend (endpoint) name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// A set built from config, and the receiver of its events (the endpoints of the
    /// initial configs are not reported as added). DNS-named backends have no endpoints
    /// until [`set_resolved`](Self::set_resolved) gives them addresses.
    pub fn new(cfgs: &[BackendConfig]) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let set = Self {
            current: ArcSwap::from_pointee(Vec::new()),
            sources: Mutex::new(Sources::default()),
            events,
            view: watch::Sender::new(View::default()),
            closings: watch::Sender::new(0),
        };
        let mut sources = lock(&set.sources);
        sources.configs = cfgs.to_vec();
        set.rebuild(&sources);
        drop(sources);
        set.refresh_view();
        (set, rx)
    }

    /// Close every connection established to `backend` so far (`onDown: close`); the data
    /// plane's workers close them at once.
    pub fn close_connections(&self, backend: &Backend) {
        backend.closings.fetch_add(1, Ordering::AcqRel);
        self.closings.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever [`close_connections`](Self::close_connections) was called.
    pub fn watch_closings(&self) -> watch::Receiver<u64> {
        self.closings.subscribe()
    }

    /// Watch the set's [`View`].
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.view.subscribe()
    }

    /// The view now.
    pub fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// Report a transition that `backend` returned: queued for the control plane and
    /// visible in the view at once.
    pub fn publish(&self, backend: &Arc<Backend>, transition: Transition) {
        self.refresh_view();
        // No receiver (a tool or test without a control plane): nothing to tell.
        let _ = self.events.send(Event::Transition {
            backend: Arc::clone(backend),
            transition,
        });
    }

    fn changed(&self, changes: BackendChanges) -> BackendChanges {
        if !changes.is_empty() {
            self.refresh_view();
            let _ = self.events.send(Event::Endpoints(changes.clone()));
        }
        changes
    }

    fn refresh_view(&self) {
        // Built inside the watch's lock, so concurrent publishers cannot leave an older
        // view last.
        self.view.send_if_modified(|v| {
            let new = View::of(&self.snapshot());
            let modified = *v != new;
            *v = new;
            modified
        });
    }

    /// The backends now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.current.load_full()
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
        let changes = self.rebuild(&sources);
        drop(sources);
        self.changed(changes)
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
        let changes = self.rebuild(&sources);
        drop(sources);
        self.changed(changes)
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
        let (set, _events) = BackendSet::new(&[cfg("a", 1, 1), cfg("b", 2, 1), cfg("c", 3, 1)]);
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
        let (set, _events) = BackendSet::new(&[cfg("a", 1, 1), dns.clone()]);
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
        let (set, _events) = BackendSet::new(&[cfg("a", 1, 1)]);
        let a = Arc::clone(&set.snapshot()[0]);
        let (run, t) = a.connect_failed("refused");
        assert_eq!(run, 1);
        assert_eq!(t.map(|t| t.to), Some(State::Down), "passiveFall 1");
        assert_eq!(a.state(), State::Down, "passiveFall 1 marks down at once");
        assert_eq!(a.connect_failed("refused"), (2, None));
        let _g = a.connected();
        assert_eq!(a.consecutive_failures(), 0);
    }

    #[tokio::test]
    async fn transitions_and_endpoint_changes_reach_the_view_and_the_event_stream() {
        let (set, mut events) = BackendSet::new(&[cfg("a", 1, 1), cfg("b", 2, 1)]);
        let mut view = set.subscribe();
        assert_eq!(set.view().up(), 2, "backends start up");
        assert!(
            events.try_recv().is_err(),
            "the initial list is not an event"
        );

        // A mutator only returns the transition; nothing is visible until published.
        let a = set.find("a").expect("a");
        let t = a.connect_failed("refused").1.expect("down");
        assert_eq!(set.view().up(), 2);
        set.publish(&a, t.clone());
        assert!(view.has_changed().expect("sender alive"));
        assert_eq!(view.borrow_and_update().up(), 1);
        match events.try_recv().expect("transition event") {
            Event::Transition {
                backend,
                transition,
            } => {
                assert_eq!(backend.name(), "a");
                assert_eq!(transition, t);
            }
            other => panic!("unexpected {other:?}"),
        }

        set.update(&[cfg("b", 2, 1), cfg("c", 3, 1)]);
        match events.try_recv().expect("endpoints event") {
            Event::Endpoints(c) => {
                assert_eq!(c.added, ["c"]);
                assert_eq!(c.removed, ["a"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let names: Vec<String> = set.view().endpoints.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["b", "c"]);
        // An update that changes nothing is no event.
        set.update(&[cfg("b", 2, 1), cfg("c", 3, 1)]);
        assert!(events.try_recv().is_err());
    }
}
