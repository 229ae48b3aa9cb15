//! The layer-4 data plane: listeners, connection admission, backend connect with retry,
//! and forwarding.
//!
//! [`Proxy`] owns the running state. It is driven from outside ([`crate::control`] maps
//! signals to [`Proxy::reload`] and [`Proxy::shutdown`]), so tests can drive it directly.

mod conn;
mod forward;
mod listener;
mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::SockRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::select::Selector;
use crate::backend::{BackendChanges, BackendSet};
use crate::config::{Config, Forwarding, ListenerOptions, TcpOptions, Timeouts};
use crate::health::probe::TlsError;
use crate::health::state::State;
use crate::health::task::{HealthChecker, load_tls};
use crate::metrics::Metrics;

/// Why the proxy could not start or apply a config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening socket could not be set up.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files for health checks are missing or bad; every problem is listed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    HealthTls(Vec<TlsError>),
}

/// The settings a new connection reads once, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) selector: Arc<Selector>,
    pub(crate) max_connections: usize,
    pub(crate) forwarding: Forwarding,
    pub(crate) timeouts: Timeouts,
    pub(crate) tcp: TcpOptions,
}

impl Settings {
    fn new(config: &Config, selector: Arc<Selector>) -> Self {
        Self {
            selector,
            max_connections: config.max_connections,
            forwarding: config.forwarding,
            timeouts: config.timeouts,
            tcp: config.tcp,
        }
    }
}

/// State shared by the accept loops and connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: ArcSwap<Settings>,
    pub(crate) backends: BackendSet,
    /// Client connections open now (the `maxConnections` count).
    pub(crate) active: AtomicUsize,
    pub(crate) metrics: Metrics,
    pub(crate) pools: pool::Pools,
}

/// One bound listener.
#[derive(Debug)]
struct Listening {
    local: SocketAddr,
    options: ListenerOptions,
    stop: CancellationToken,
    /// Shared with its accept loop, so a reload can set new TCP options on it.
    socket: Arc<tokio::net::TcpListener>,
}

/// What a reload changed.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Backend changes.
    pub backends: BackendChanges,
    /// Listeners bound.
    pub listeners_added: Vec<SocketAddr>,
    /// Listeners closed (their connections continue).
    pub listeners_removed: Vec<SocketAddr>,
    /// Changes that take effect only for listeners bound later (e.g. socket options).
    pub warnings: Vec<String>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when accepting stopped.
    pub open_at_start: usize,
    /// Connections still open at the drain deadline, and cut.
    pub cut: usize,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    /// Listeners by configured address.
    listeners: Mutex<HashMap<SocketAddr, Listening>>,
    config: Mutex<Config>,
    tracker: TaskTracker,
    /// Cancelled at the end of a drain: every connection closes.
    cut: CancellationToken,
    checker: HealthChecker,
    /// Cancelled at shutdown: health checks stop.
    stop_checks: CancellationToken,
}

impl Proxy {
    /// Bind every listener of `config` and start accepting. Fails, with nothing left
    /// running, if any listener cannot be bound.
    pub fn start(config: Config, metrics: Metrics) -> Result<Proxy, Error> {
        let tls = load_tls(&config).map_err(Error::HealthTls)?;
        let tracker = TaskTracker::new();
        let stop_checks = CancellationToken::new();
        let checker = HealthChecker::new(metrics.clone(), tracker.clone(), stop_checks.clone());
        for b in &config.backends {
            metrics.set_state(&b.name, State::Up);
        }
        let shared = Arc::new(Shared {
            settings: ArcSwap::from_pointee(Settings::new(
                &config,
                Arc::new(Selector::new(config.balance)),
            )),
            backends: BackendSet::new(&config.backends),
            active: AtomicUsize::new(0),
            metrics,
            pools: pool::Pools::default(),
        });
        let proxy = Proxy {
            shared,
            listeners: Mutex::new(HashMap::new()),
            config: Mutex::new(config.clone()),
            tracker,
            cut: CancellationToken::new(),
            checker,
            stop_checks,
        };
        let bound = bind_all(&config.listen, &config.listener, &config.tcp)?;
        proxy
            .checker
            .restart(&proxy.shared.backends.snapshot(), &tls);
        for (addr, l) in bound {
            proxy.spawn_listener(addr, l, config.listener);
        }
        Ok(proxy)
    }

    /// The bound local address of every listener, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let config = lock(&self.config);
        let listeners = lock(&self.listeners);
        config
            .listen
            .iter()
            .filter_map(|a| listeners.get(a).map(|l| l.local))
            .collect()
    }

    /// The config running now.
    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// Client connections open now.
    pub fn active_connections(&self) -> usize {
        self.shared
            .active
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The metrics this proxy updates.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Cut every established connection now (the end of a drain, or a forced stop).
    pub fn cut_now(&self) {
        self.cut.cancel();
    }

    /// The live backend set.
    pub fn backends(&self) -> &BackendSet {
        &self.shared.backends
    }

    /// Apply a new (already checked) config without dropping established connections. New
    /// listeners are bound first; if one fails, nothing changes and the error is returned.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, Error> {
        let mut report = ReloadReport::default();
        let tls = load_tls(&config).map_err(Error::HealthTls)?;
        let mut current = lock(&self.config);
        let new_addrs: Vec<SocketAddr> = {
            let listeners = lock(&self.listeners);
            config
                .listen
                .iter()
                .copied()
                .filter(|a| !listeners.contains_key(a))
                .collect()
        };
        let bound = bind_all(&new_addrs, &config.listener, &config.tcp)?;

        // Settings: keep the selector (and its round-robin position) if balance is unchanged.
        let old = self.shared.settings.load_full();
        let selector = if old.selector.kind() == config.balance {
            Arc::clone(&old.selector)
        } else {
            Arc::new(Selector::new(config.balance))
        };
        self.shared
            .settings
            .store(Arc::new(Settings::new(&config, selector)));
        report.backends = self.shared.backends.update(&config.backends);
        let metrics = &self.shared.metrics;
        for name in &report.backends.removed {
            if !config.backends.iter().any(|b| &b.name == name) {
                for st in State::ALL {
                    let _ = metrics
                        .backend_state
                        .remove_label_values(&[name, st.as_str()]);
                }
            }
        }
        let list = self.shared.backends.snapshot();
        for b in list.iter() {
            if report.backends.added.iter().any(|n| n == b.name()) {
                metrics.set_state(b.name(), b.state());
            }
        }
        self.checker.restart(&list, &tls);

        for (addr, l) in bound {
            report.listeners_added.push(addr);
            self.spawn_listener(addr, l, config.listener);
        }
        let mut listeners = lock(&self.listeners);
        let tcp_changed = current.tcp != config.tcp;
        listeners.retain(|addr, l| {
            if config.listen.contains(addr) {
                if tcp_changed {
                    // Connections accepted from now on inherit the new options.
                    if let Err(e) = listener::tune_socket(SockRef::from(&*l.socket), &config.tcp) {
                        report
                            .warnings
                            .push(format!("listener {addr}: cannot apply the new tcp options: {e}"));
                    }
                }
                if l.options != config.listener {
                    report.warnings.push(format!(
                        "listener options changed; the listener on {addr} keeps its old options until restart"
                    ));
                }
                true
            } else {
                l.stop.cancel();
                report.listeners_removed.push(*addr);
                false
            }
        });
        *current = config;
        Ok(report)
    }

    /// Stop accepting, let connections finish for up to `drain`, then cut the rest. Returns
    /// once every connection task has ended.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.stop_checks.cancel();
        for l in lock(&self.listeners).drain() {
            l.1.stop.cancel();
        }
        self.tracker.close();
        let open_at_start = self.active_connections();
        let mut cut = 0;
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            cut = self.active_connections();
            self.cut.cancel();
            self.tracker.wait().await;
        }
        ShutdownReport { open_at_start, cut }
    }

    fn spawn_listener(
        &self,
        addr: SocketAddr,
        l: tokio::net::TcpListener,
        options: ListenerOptions,
    ) {
        let local = l.local_addr().unwrap_or(addr);
        let stop = CancellationToken::new();
        let socket = Arc::new(l);
        tracing::info!(address = %local, "listening");
        self.tracker.spawn(listener::accept_loop(
            Arc::clone(&socket),
            Arc::clone(&self.shared),
            stop.clone(),
            self.cut.clone(),
            self.tracker.clone(),
        ));
        lock(&self.listeners).insert(
            addr,
            Listening {
                local,
                options,
                stop,
                socket,
            },
        );
    }
}

/// Bind every address, or none: on the first failure the ones already bound are closed.
fn bind_all(
    addrs: &[SocketAddr],
    opts: &ListenerOptions,
    tcp: &TcpOptions,
) -> Result<Vec<(SocketAddr, tokio::net::TcpListener)>, Error> {
    addrs
        .iter()
        .map(|&address| {
            listener::bind(address, opts, tcp)
                .map(|l| (address, l))
                .map_err(|source| Error::Bind { address, source })
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
