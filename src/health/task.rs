//! The check service: one task per endpoint runs its probe at `interval` while the endpoint
//! is steady and at `fastInterval` while it is changing state, starting at a random offset
//! so endpoints are not probed in lockstep. A slow backend never delays another: each has
//! its own task. [`Checks::sync`] makes the running tasks match the backend set, restarting
//! only the ones whose settings changed; the health state lives in the [`Backend`] and
//! carries over.
//!
//! [`Checks::react`] is the one consumer of the set's [`Event`]s: it logs and counts
//! transitions, closes a down backend's connections (`onDown: close`), keeps the metric
//! series in step with the endpoints, and starts or stops their checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use rustls::ClientConfig;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::probe::{self, Prober, TlsError};
use super::state::{Outcome, State, Transition};
use crate::backend::{Backend, BackendChanges, BackendSet, Event};
use crate::config::{CheckKind, Config, OnDown};
use crate::metrics::Metrics;

/// Loaded TLS client configs for checks, by backend name.
pub type TlsConfigs = HashMap<String, Arc<ClientConfig>>;

/// Load the TLS material every backend's checks need, reporting every problem at once.
pub fn load_tls(config: &Config) -> Result<TlsConfigs, Vec<TlsError>> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    // Backends usually share the global section: load each distinct one once.
    let mut cache: Vec<(crate::config::CheckTls, Arc<ClientConfig>)> = Vec::new();
    for (i, b) in config.backends.iter().enumerate() {
        let Some(tls) = &b.health.tls else { continue };
        if !matches!(b.health.kind, CheckKind::Tls | CheckKind::Https) {
            continue;
        }
        if let Some((_, c)) = cache.iter().find(|(t, _)| t == tls) {
            out.insert(b.name.clone(), Arc::clone(c));
            continue;
        }
        let key = if config.health.tls.as_ref() == Some(tls) {
            "health.tls".to_owned()
        } else {
            format!("backends[{i}].health.tls")
        };
        match probe::client_config(tls, &key) {
            Ok(c) => {
                cache.push((tls.clone(), Arc::clone(&c)));
                out.insert(b.name.clone(), c);
            }
            Err(e) => {
                if !errors
                    .iter()
                    .any(|x: &TlsError| x.to_string() == e.to_string())
                {
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One endpoint's running check task.
#[derive(Debug)]
struct Running {
    backend: Arc<Backend>,
    stop: CancellationToken,
    /// Set once its first check has finished.
    probed: Arc<AtomicBool>,
}

/// Runs the checks of every endpoint of a [`BackendSet`].
#[derive(Debug)]
pub struct Checks {
    backends: Arc<BackendSet>,
    metrics: Metrics,
    tracker: TaskTracker,
    stop: CancellationToken,
    /// TLS client configs of the running config's checks, by `backends[].name`.
    tls: Mutex<TlsConfigs>,
    /// By endpoint name.
    running: Mutex<HashMap<String, Running>>,
    /// Bumped each time a check task finishes its first check.
    first_checks: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Checks {
    /// A service whose tasks run on `tracker` until `stop`; nothing runs before
    /// [`sync`](Self::sync).
    pub fn new(
        backends: Arc<BackendSet>,
        metrics: Metrics,
        tls: TlsConfigs,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        Self {
            backends,
            metrics,
            tracker,
            stop,
            tls: Mutex::new(tls),
            running: Mutex::new(HashMap::new()),
            first_checks: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Resolves once every running check task has finished its first check (at once when
    /// no backend is checked).
    pub async fn first_round(&self) {
        let mut rx = self.first_checks.subscribe();
        loop {
            rx.mark_unchanged();
            let done = lock(&self.running)
                .values()
                .all(|r| r.probed.load(Ordering::Acquire));
            if done || rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Use `tls` for checks started from now on (a reload restarts the checks it changes).
    pub fn set_tls(&self, tls: TlsConfigs) {
        *lock(&self.tls) = tls;
    }

    /// Make the running checks match the set: start those missing, stop those of endpoints
    /// gone, and restart those of the configured backends named in `restart` (their check
    /// settings changed). Returns how many tasks were started.
    pub fn sync(&self, restart: &[String]) -> usize {
        let list = self.backends.snapshot();
        let tls = lock(&self.tls).clone();
        let mut running = lock(&self.running);
        running.retain(|name, r| {
            let keep = list.iter().any(|b| Arc::ptr_eq(b, &r.backend))
                && !restart.iter().any(|c| c == r.backend.config_name());
            if !keep {
                tracing::debug!(backend = %name, "checks stopped");
                r.stop.cancel();
            }
            keep
        });
        let mut started = 0;
        for backend in list.iter() {
            if running.contains_key(backend.name()) {
                continue;
            }
            let cfg = backend.health_config();
            if cfg.kind == CheckKind::None {
                continue;
            }
            let tls = tls.get(backend.config_name()).cloned();
            let prober = match Prober::new(&cfg, tls, backend.host()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(backend = backend.name(), "health checks off: {e}");
                    continue;
                }
            };
            let stop = self.stop.child_token();
            let probed = Arc::new(AtomicBool::new(false));
            self.tracker.spawn(check_loop(
                Arc::clone(backend),
                Arc::clone(&self.backends),
                prober,
                self.metrics.clone(),
                stop.clone(),
                FirstCheck {
                    probed: Arc::clone(&probed),
                    tell: Arc::clone(&self.first_checks),
                },
            ));
            running.insert(
                backend.name().to_owned(),
                Running {
                    backend: Arc::clone(backend),
                    stop,
                    probed,
                },
            );
            started += 1;
        }
        started
    }

    /// Endpoints with a running check task (tests, status).
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    /// Act on one event of the backend set.
    pub fn react(&self, event: Event) {
        match event {
            Event::Transition {
                backend,
                transition,
            } => self.transition(&backend, &transition),
            Event::Endpoints(changes) => self.endpoints(&changes),
        }
    }

    /// Consume the set's events until `stop`.
    pub async fn react_until_stopped(
        &self,
        mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                e = events.recv() => match e {
                    Some(e) => self.react(e),
                    None => return,
                },
            }
        }
    }

    fn transition(&self, backend: &Backend, t: &Transition) {
        let name = backend.name();
        self.metrics.transition(name, t);
        let line = format!("backend {name}: {} -> {} ({})", t.from, t.to, t.reason);
        if t.to == State::Up {
            tracing::info!(backend = %name, from = %t.from, to = %t.to, reason = %t.reason, "{line}");
        } else {
            tracing::warn!(backend = %name, from = %t.from, to = %t.to, reason = %t.reason, "{line}");
        }
        // The state may have moved on since; close only if it is still down.
        if t.to == State::Down
            && backend.state() == State::Down
            && backend.health_config().on_down == OnDown::Close
        {
            let n = backend.active();
            if n > 0 {
                tracing::warn!(backend = %name, connections = n, "onDown close: closing its connections");
            }
            self.backends.close_connections(backend);
        }
    }

    fn endpoints(&self, changes: &BackendChanges) {
        let list = self.backends.snapshot();
        for name in &changes.removed {
            if !list.iter().any(|b| b.name() == name) {
                for st in State::ALL {
                    let _ = self
                        .metrics
                        .backend_state
                        .remove_label_values(&[name, st.as_str()]);
                }
                let _ = self.metrics.backend_active.remove_label_values(&[name]);
            }
        }
        for b in list.iter() {
            if changes.added.iter().any(|n| n == b.name()) {
                self.metrics.set_state(b.name(), b.state());
            }
        }
        self.sync(&[]);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a check task reports that its first check has finished.
struct FirstCheck {
    probed: Arc<AtomicBool>,
    tell: Arc<tokio::sync::watch::Sender<u64>>,
}

async fn check_loop(
    backend: Arc<Backend>,
    set: Arc<BackendSet>,
    prober: Prober,
    metrics: Metrics,
    stop: CancellationToken,
    first_check: FirstCheck,
) {
    let cfg = backend.health_config();
    let first = rand::rng().random_range(0..=cfg.fast_interval.as_millis() as u64);
    let mut delay = Duration::from_millis(first);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            o = prober.probe(backend.address()) => o,
        };
        let now = Instant::now();
        metrics.check(backend.name(), outcome.label(), now - started);
        match &outcome {
            Outcome::Pass => {}
            Outcome::Draining(why) | Outcome::Fail(why) | Outcome::Refused(why) => {
                tracing::debug!(backend = backend.name(), outcome = outcome.label(), reason = %why, "check failed");
            }
        }
        if let Some(t) = backend.on_check(outcome, now) {
            set.publish(&backend, t);
        }
        if !first_check.probed.swap(true, Ordering::AcqRel) {
            first_check.tell.send_modify(|n| *n += 1);
        }
        let cfg = backend.health_config();
        delay = if backend.health().in_transition() {
            cfg.fast_interval
        } else {
            cfg.interval
        };
    }
}
