//! Rebalancing long-lived connections: after an apiserver returns (or is added), clients'
//! long-lived connections stay where they were and one backend carries most of the load for
//! hours. The rebalancer closes a bounded number of idle connections on the over-loaded
//! backends, gracefully (FIN both ways, at a moment with nothing in flight); the clients
//! reconnect and least-connections places them on the emptier backends.
//!
//! [`core`] is the pure decision (when, how many, which; time passed in). The task
//! ([`Rebalance::run`]) runs it on the control plane: it watches the backend view for Up
//! changes, steps the core every [`TICK`] over the proxy's connection table, asks the proxy
//! to shed the chosen connections and keeps the metrics and status current. It does not
//! move anything itself and never touches a socket.

pub mod core;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::core::{Endpoint, Rebalancer, State};
use crate::backend::{BackendSet, State as Health, View};
use crate::config::RebalanceConfig;
use crate::metrics::RebalanceMetrics;
use crate::proxy::{ConnId, Proxy};

/// How often the core is stepped.
pub const TICK: Duration = Duration::from_millis(250);
/// A shed asked for but still open after this long was declined by the connection (it was
/// busy at that instant); it is no longer awaited.
const SHED_ANSWER: Duration = Duration::from_secs(2);

/// The rebalancer as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    /// `rebalance.enabled`.
    pub enabled: bool,
    /// idle, waiting, shedding or paused.
    pub state: String,
    /// Why paused, when paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// Highest over mean connections per weight over Up backends.
    pub skew: f64,
    /// Connections above their backends' shares.
    pub excess: usize,
    /// Connections closed to move them since start.
    pub closes: u64,
}

/// The rebalancer of a running process: settings (swapped on reload), the operator's
/// trigger, and what the task last decided.
#[derive(Debug)]
pub struct Rebalance {
    settings: ArcSwap<RebalanceConfig>,
    trigger: Notify,
    status: Mutex<RebalanceStatus>,
    metrics: RebalanceMetrics,
}

impl Rebalance {
    /// Not running yet; [`run`](Self::run) starts it.
    pub fn new(settings: RebalanceConfig, metrics: RebalanceMetrics) -> Self {
        let status = RebalanceStatus {
            enabled: settings.enabled,
            state: State::Idle.as_str().to_owned(),
            pause: None,
            skew: 1.0,
            excess: 0,
            closes: 0,
        };
        Self {
            settings: ArcSwap::from_pointee(settings),
            trigger: Notify::new(),
            status: Mutex::new(status),
            metrics,
        }
    }

    /// New settings (a reload); the next step uses them.
    pub fn set_config(&self, settings: RebalanceConfig) {
        lock(&self.status).enabled = settings.enabled;
        self.settings.store(Arc::new(settings));
    }

    /// Run the gentle procedure now instead of waiting for `after` (`apilb backend
    /// rebalance`, `POST /rebalance`).
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// What the task last decided.
    pub fn status(&self) -> RebalanceStatus {
        lock(&self.status).clone()
    }

    /// Step the core every [`TICK`] (and at once on a trigger) until `stop`, shedding on
    /// `proxy` what it picks. Up changes of `backends` are noted as they happen.
    pub async fn run(
        self: Arc<Self>,
        proxy: Arc<Proxy>,
        backends: Arc<BackendSet>,
        stop: CancellationToken,
    ) {
        let mut core = Rebalancer::new();
        let mut view = backends.subscribe();
        core.observe(Instant::now(), &ups(&view.borrow_and_update()));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut asked: HashMap<ConnId, Asked> = HashMap::new();
        let mut last_state = State::Idle;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = view.changed() => {
                    if r.is_err() {
                        return;
                    }
                    core.observe(Instant::now(), &ups(&view.borrow_and_update()));
                    continue;
                }
                () = self.trigger.notified() => {
                    tracing::info!("rebalance triggered by an operator");
                    core.trigger();
                }
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let settings = self.settings.load_full();
            let endpoints: Vec<Endpoint> = backends
                .snapshot()
                .iter()
                .map(|b| {
                    let health = b.health();
                    let slow_start = b.health_config().slow_start;
                    Endpoint {
                        name: b.name().to_owned(),
                        weight: b.weight(),
                        up: health.state() == Health::Up,
                        ramping: health.slow_start_factor(now, slow_start) < 1.0,
                    }
                })
                .collect();
            let conns = proxy.connections();
            for client in self.settle(now, &mut asked, &conns) {
                core.declined(client);
            }
            let plan = core.step(now, &settings, &endpoints, &conns);
            let m = &self.metrics;
            m.skew.set(plan.skew);
            m.excess.set(plan.excess as i64);
            m.set_state(plan.state);
            for s in &plan.skipped {
                m.skipped.with_label_values(&[s.as_str()]).inc();
            }
            if plan.state != last_state {
                tracing::info!(
                    from = last_state.as_str(),
                    to = plan.state.as_str(),
                    skew = format!("{:.2}", plan.skew),
                    excess = plan.excess,
                    pause = plan.pause.map(|p| p.as_str()),
                    "rebalance state"
                );
                last_state = plan.state;
            }
            for c in plan.closes {
                if proxy.shed(c.id) {
                    tracing::debug!(id = c.id, backend = %c.backend, age = ?c.age, "shedding a connection to rebalance");
                    asked.insert(
                        c.id,
                        Asked {
                            backend: c.backend,
                            age: c.age,
                            client: c.client,
                            at: now,
                        },
                    );
                }
            }
            let mut st = lock(&self.status);
            st.state = plan.state.as_str().to_owned();
            st.pause = plan.pause.map(|p| p.as_str().to_owned());
            st.skew = plan.skew;
            st.excess = plan.excess;
        }
    }

    /// Count the asked sheds that happened (gone from the table); returns the clients of
    /// those declined (still open after [`SHED_ANSWER`]).
    fn settle(
        &self,
        now: Instant,
        asked: &mut HashMap<ConnId, Asked>,
        conns: &[crate::proxy::Connection],
    ) -> Vec<std::net::IpAddr> {
        let mut declined = Vec::new();
        if asked.is_empty() {
            return declined;
        }
        let open: std::collections::HashSet<ConnId> = conns.iter().map(|c| c.id).collect();
        let mut closed = 0;
        asked.retain(|id, a| {
            if !open.contains(id) {
                self.metrics.closes.with_label_values(&[&a.backend]).inc();
                self.metrics.close_age.observe(a.age.as_secs_f64());
                closed += 1;
                return false;
            }
            if now.saturating_duration_since(a.at) >= SHED_ANSWER {
                tracing::debug!(id, backend = %a.backend, "connection was busy when asked to close; left open");
                declined.push(a.client);
                return false;
            }
            true
        });
        lock(&self.status).closes += closed;
        declined
    }
}

/// A shed asked for, not yet seen done.
#[derive(Debug)]
struct Asked {
    backend: String,
    age: Duration,
    client: std::net::IpAddr,
    at: Instant,
}

fn ups(view: &View) -> Vec<(String, bool)> {
    view.endpoints
        .iter()
        .map(|e| (e.name.clone(), e.state == Health::Up))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
