//! The layer-4 data plane: listening sockets, accept, one connection, forwarding. It reads
//! the [`BackendSet`] and its [`Settings`] and moves bytes; health checks, DNS, the VIP and
//! reloads are the control plane's ([`crate::control`]), which drives a [`Proxy`] through
//! [`Proxy::bind`], [`Proxy::apply`], [`Proxy::stop_accepting`] and [`Proxy::drain`].
//!
//! ```text
//!   socket.rs ──> accept.rs ──> conn.rs ──> forward.rs ──> pool.rs
//!   (bind, TCP    (limits,       (pick, connect   (splice / copy,
//!    options)      back-off)      with retry)      half-close)
//!                                   │                  ▲ signal
//!                                   ▼                  │
//!                                track.rs <──────── sweep.rs
//!                                (open connections)  (idle, cut, onDown close)
//! ```
//!
//! It runs on `workers` threads ([`worker`]), each with its own single-threaded runtime.
//! Every listening address has an accept loop on every worker: with `accept: reusePort`
//! each loop owns one socket of a SO_REUSEPORT group, with `shared` they all accept from
//! one socket. A connection stays on the worker that accepted it, and so does its place in
//! that worker's connection table, which the worker's sweeper walks.

mod accept;
mod conn;
mod first;
mod forward;
mod pool;
mod socket;
mod sweep;
mod track;
mod worker;

pub use track::{ConnId, ConnTable, Connection};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::SockRef;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::BackendSet;
use crate::backend::select::Selector;
use crate::config::diff::ListenerChanges;
use crate::config::{Config, Forwarding, ListenerOptions, TcpOptions, Timeouts};
use crate::metrics::Metrics;

/// Why the proxy could not start or bind a new listener.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening socket could not be set up.
    #[error("cannot listen on {address}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The worker threads could not be started.
    #[error("cannot start {count} data-plane worker threads")]
    Workers {
        /// How many were asked for.
        count: usize,
        /// Why.
        source: std::io::Error,
    },
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
    pub(crate) backends: Arc<BackendSet>,
    /// Client connections open now (the `maxConnections` count).
    pub(crate) active: AtomicUsize,
    pub(crate) metrics: Metrics,
}

/// One bound listening address.
#[derive(Debug)]
struct Listening {
    local: SocketAddr,
    stop: CancellationToken,
    /// Its sockets (one, or one per worker), shared with their accept loops so a reload
    /// can set new TCP options on them.
    sockets: Vec<Arc<TcpListener>>,
}

/// Listening sockets bound for a reload, not yet accepting: [`Proxy::apply`] starts them,
/// and dropping them closes them (a reload that fails later changes nothing).
#[derive(Debug, Default)]
pub struct Bound(Vec<(SocketAddr, Vec<std::net::TcpListener>)>);

/// What [`Proxy::apply`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Listeners started.
    pub listeners_added: Vec<SocketAddr>,
    /// Listeners closed (their connections continue).
    pub listeners_removed: Vec<SocketAddr>,
    /// Changes that take effect only for listeners bound later (e.g. socket options).
    pub warnings: Vec<String>,
}

/// How a drain went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when accepting stopped.
    pub open_at_start: usize,
    /// Connections still open at the drain deadline, and cut.
    pub cut: usize,
}

/// A running data plane.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    /// Listeners by configured address.
    listeners: Mutex<HashMap<SocketAddr, Listening>>,
    /// Configured listen addresses, in config order.
    order: Mutex<Vec<SocketAddr>>,
    /// Cancelled at the end of a drain: every connection closes.
    cut: CancellationToken,
    /// What each worker's accept loops and connections share, by worker index.
    scopes: Vec<Scope>,
    /// The threads accept loops and connections run on.
    workers: worker::Workers,
    /// Each worker's counters, by worker index.
    stats: Vec<Arc<accept::WorkerStats>>,
}

impl Proxy {
    /// Bind every listener of `config` and start accepting, picking from `backends`. Fails,
    /// with nothing left running, if any listener cannot be bound. Cancelling `cut` (a
    /// child of the control plane's root token) stops every listener and cuts every
    /// connection.
    pub fn start(
        config: &Config,
        backends: Arc<BackendSet>,
        metrics: Metrics,
        cut: CancellationToken,
    ) -> Result<Proxy, Error> {
        let count = config.workers.count();
        let workers =
            worker::Workers::start(count).map_err(|source| Error::Workers { count, source })?;
        let bound = bind_all(&config.listen, &config.listener, &config.tcp, workers.len())?;
        let stats = (0..workers.len())
            .map(|i| Arc::new(accept::WorkerStats::new(i, &metrics)))
            .collect();
        let proxy = Proxy {
            shared: Arc::new(Shared {
                settings: ArcSwap::from_pointee(Settings::new(
                    config,
                    Arc::new(Selector::new(config.balance)),
                )),
                backends,
                active: AtomicUsize::new(0),
                metrics,
            }),
            listeners: Mutex::new(HashMap::new()),
            order: Mutex::new(config.listen.clone()),
            scopes: (0..workers.len())
                .map(|_| Scope {
                    tracker: TaskTracker::new(),
                    cut: cut.child_token(),
                })
                .collect(),
            cut,
            stats,
            workers,
        };
        for (i, scope) in proxy.scopes.iter().enumerate() {
            proxy.workers.handle(i).spawn(sweep::run(
                Arc::clone(&proxy.stats[i].conns),
                Arc::clone(&proxy.shared),
                scope.cut.clone(),
                proxy.shared.backends.watch_closings(),
            ));
        }
        for (addr, l) in bound {
            proxy.spawn_listener(addr, l);
        }
        Ok(proxy)
    }

    /// The bound local address of every listener, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let order = lock(&self.order);
        let listeners = lock(&self.listeners);
        order
            .iter()
            .filter_map(|a| listeners.get(a).map(|l| l.local))
            .collect()
    }

    /// Client connections open now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Every open connection, on every worker: backend, age, bytes and last activity,
    /// copied now.
    pub fn connections(&self) -> Vec<Connection> {
        self.stats.iter().flat_map(|w| w.conns.snapshot()).collect()
    }

    /// Ask connection `id` to close gracefully: at a quiet instant (nothing unread or
    /// unsent on either leg) it gets FIN on both legs and ends with reason `rebalance`; if
    /// it is busy when asked, it stays open. False if no such connection is open.
    pub fn shed(&self, id: ConnId) -> bool {
        self.stats
            .get(track::table_of(id))
            .is_some_and(|w| w.conns.shed(id))
    }

    /// The metrics this proxy updates.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// How many data-plane workers run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Each worker's runtime (a single thread each), for work that must run on every
    /// data-plane thread (dropping capabilities, which Linux keeps per thread).
    pub fn worker_handles(&self) -> Vec<tokio::runtime::Handle> {
        (0..self.workers.len())
            .map(|i| self.workers.handle(i).clone())
            .collect()
    }

    /// Bind `addrs` (the listeners a reload adds) with `config`'s options, or none of them.
    pub fn bind(&self, addrs: &[SocketAddr], config: &Config) -> Result<Bound, Error> {
        bind_all(addrs, &config.listener, &config.tcp, self.workers.len()).map(Bound)
    }

    /// Switch to `config`: new connections read its settings (the round-robin position is
    /// kept when `balance` is unchanged), `bound` listeners start accepting, listeners not
    /// in `config.listen` close (their connections continue). A `tcp` change retunes the
    /// kept listeners; `listener` and `workers` changes are reported, as they need new
    /// listeners or a restart.
    pub fn apply(&self, config: &Config, bound: Bound, changes: &ListenerChanges) -> Applied {
        let mut applied = Applied::default();
        let old = self.shared.settings.load_full();
        let selector = if old.selector.kind() == config.balance {
            Arc::clone(&old.selector)
        } else {
            Arc::new(Selector::new(config.balance))
        };
        self.shared
            .settings
            .store(Arc::new(Settings::new(config, selector)));
        *lock(&self.order) = config.listen.clone();
        for (addr, l) in bound.0 {
            applied.listeners_added.push(addr);
            self.spawn_listener(addr, l);
        }
        let mut listeners = lock(&self.listeners);
        listeners.retain(|addr, l| {
            if !config.listen.contains(addr) {
                l.stop.cancel();
                tracing::info!(address = %l.local, "stopped accepting");
                applied.listeners_removed.push(*addr);
                return false;
            }
            if applied.listeners_added.contains(addr) {
                return true;
            }
            if changes.tcp_changed {
                // Connections accepted from now on inherit the new options.
                for socket in &l.sockets {
                    if let Err(e) = socket::tune_socket(SockRef::from(&**socket), &config.tcp) {
                        applied.warnings.push(format!(
                            "listener {addr}: cannot apply the new tcp options: {e}"
                        ));
                        break;
                    }
                }
            }
            if changes.options_changed {
                applied.warnings.push(format!(
                    "listener options changed; the listener on {addr} keeps its old options until restart"
                ));
            }
            true
        });
        drop(listeners);
        if changes.workers_changed {
            applied.warnings.push(format!(
                "workers changed; {} workers keep running until restart",
                self.workers.len()
            ));
        }
        applied.listeners_removed.sort();
        applied
    }

    /// Stop accepting on every listener and close them; established connections continue.
    pub fn stop_accepting(&self) {
        for (_, l) in lock(&self.listeners).drain() {
            l.stop.cancel();
            tracing::info!(address = %l.local, "stopped accepting");
        }
    }

    /// Let connections finish for up to `limit`, then cut the rest. Returns once every
    /// accept loop and connection task has ended. Call after [`stop_accepting`](Self::stop_accepting).
    pub async fn drain(&self, limit: Duration) -> ShutdownReport {
        for s in &self.scopes {
            s.tracker.close();
        }
        let open_at_start = self.active_connections();
        let mut cut = 0;
        if tokio::time::timeout(limit, self.all_ended()).await.is_err() {
            cut = self.active_connections();
            self.cut.cancel();
            self.all_ended().await;
        }
        ShutdownReport { open_at_start, cut }
    }

    /// Once every accept loop and connection task of every worker has ended (after their
    /// trackers were closed).
    async fn all_ended(&self) {
        futures_util::future::join_all(self.scopes.iter().map(|s| s.tracker.wait())).await;
    }

    /// Stop accepting, drain for up to `limit` and cut the rest.
    pub async fn shutdown(&self, limit: Duration) -> ShutdownReport {
        self.stop_accepting();
        self.drain(limit).await
    }

    /// A future that calls `alive` every `every` for as long as the data plane runs (until
    /// its cut token) and every worker answers within `every`, for systemd's watchdog: a
    /// worker stuck in a loop or a blocking call stops the calls, and systemd restarts the
    /// process.
    pub fn heartbeat(
        self: &Arc<Self>,
        every: Duration,
        alive: impl Fn() + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cut = self.cut.clone();
        let proxy = Arc::clone(self);
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cut.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if proxy.workers.all_alive(every).await {
                    alive();
                } else {
                    tracing::warn!(
                        "a data-plane worker did not answer in time; not telling the watchdog"
                    );
                }
            }
        }
    }

    /// Cut every established connection now (the end of a drain, or a forced stop).
    pub fn cut_now(&self) {
        self.cut.cancel();
    }

    /// Start accepting on `group` (the sockets of one address): an accept loop on every
    /// worker, each registered with its worker's runtime.
    fn spawn_listener(&self, addr: SocketAddr, group: Vec<std::net::TcpListener>) {
        let local = group
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(addr);
        let stop = self.cut.child_token();
        let n = self.workers.len();
        let loops: Vec<(usize, std::io::Result<std::net::TcpListener>)> = if group.len() > 1 {
            group.into_iter().map(Ok).enumerate().collect()
        } else {
            // `shared` (or one worker): every worker accepts from its own descriptor of
            // the one socket.
            let Some(l) = group.into_iter().next() else {
                return;
            };
            let mut v: Vec<_> = (1..n).map(|i| (i, l.try_clone())).collect();
            v.insert(0, (0, Ok(l)));
            v
        };
        let mut registered = Vec::with_capacity(loops.len());
        let burst = Arc::new(accept::SharedBurst::default());
        for (i, l) in loops {
            let handle = self.workers.handle(i);
            let socket = l.and_then(|l| {
                let _in_worker = handle.enter();
                TcpListener::from_std(l)
            });
            let socket = match socket {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::error!(address = %local, worker = i, error = %e, "cannot accept on this worker");
                    continue;
                }
            };
            registered.push(Arc::clone(&socket));
            let scope = &self.scopes[i];
            scope.tracker.spawn_on(
                accept::accept_loop(
                    socket,
                    Arc::clone(&burst),
                    Arc::clone(&self.stats[i]),
                    Arc::clone(&self.shared),
                    stop.child_token(),
                    scope.cut.clone(),
                    scope.tracker.clone(),
                ),
                handle,
            );
        }
        tracing::info!(address = %local, workers = n, "listening");
        lock(&self.listeners).insert(
            addr,
            Listening {
                local,
                stop,
                sockets: registered,
            },
        );
    }
}

/// What one worker's accept loops and connections share. Each worker has its own, so
/// starting, ending or waiting on a connection touches only memory its own core writes: a
/// connection's task is counted by its worker's tracker, and a connection waiting for the
/// cut registers with its worker's token (a child of the proxy's `cut`).
#[derive(Debug)]
struct Scope {
    tracker: TaskTracker,
    cut: CancellationToken,
}

/// Bind every address for `workers` workers, or none: on the first failure the ones
/// already bound are closed.
fn bind_all(
    addrs: &[SocketAddr],
    opts: &ListenerOptions,
    tcp: &TcpOptions,
    workers: usize,
) -> Result<Vec<(SocketAddr, Vec<std::net::TcpListener>)>, Error> {
    addrs
        .iter()
        .map(|&address| {
            socket::bind_group(address, opts, tcp, workers)
                .map(|l| (address, l))
                .map_err(|source| Error::Bind { address, source })
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
