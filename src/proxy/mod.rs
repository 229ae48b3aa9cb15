//! The layer-4 data plane: listening sockets, accept, one connection, forwarding. It reads
//! the [`BackendSet`] and its [`Settings`] and moves bytes; health checks, DNS, the VIP and
//! reloads are the control plane's ([`crate::control`]), which drives a [`Proxy`] through
//! [`Proxy::bind`], [`Proxy::apply`], [`Proxy::stop_accepting`] and [`Proxy::drain`].
//!
//! ```text
//!   socket.rs ──> accept.rs ──> conn.rs ──> forward.rs ──> pool.rs
//!   (bind, TCP    (limits,       (pick, connect   (splice / copy,
//!    options)      back-off)      with retry)      half-close, idle)
//! ```

mod accept;
mod conn;
mod forward;
mod pool;
mod socket;

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
    pub(crate) pools: pool::Pools,
}

/// One bound listener.
#[derive(Debug)]
struct Listening {
    local: SocketAddr,
    stop: CancellationToken,
    /// Shared with its accept loop, so a reload can set new TCP options on it.
    socket: Arc<TcpListener>,
}

/// Listening sockets bound for a reload, not yet accepting: [`Proxy::apply`] starts them,
/// and dropping them closes them (a reload that fails later changes nothing).
#[derive(Debug, Default)]
pub struct Bound(Vec<(SocketAddr, TcpListener)>);

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
    /// Accept loops and connections.
    tracker: TaskTracker,
    /// Cancelled at the end of a drain: every connection closes.
    cut: CancellationToken,
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
        let bound = bind_all(&config.listen, &config.listener, &config.tcp)?;
        let proxy = Proxy {
            shared: Arc::new(Shared {
                settings: ArcSwap::from_pointee(Settings::new(
                    config,
                    Arc::new(Selector::new(config.balance)),
                )),
                backends,
                active: AtomicUsize::new(0),
                metrics,
                pools: pool::Pools::default(),
            }),
            listeners: Mutex::new(HashMap::new()),
            order: Mutex::new(config.listen.clone()),
            tracker: TaskTracker::new(),
            cut,
        };
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

    /// The metrics this proxy updates.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Bind `addrs` (the listeners a reload adds) with `config`'s options, or none of them.
    pub fn bind(&self, addrs: &[SocketAddr], config: &Config) -> Result<Bound, Error> {
        bind_all(addrs, &config.listener, &config.tcp).map(Bound)
    }

    /// Switch to `config`: new connections read its settings (the round-robin position is
    /// kept when `balance` is unchanged), `bound` listeners start accepting, listeners not
    /// in `config.listen` close (their connections continue). `tcp_changed` retunes the
    /// kept listeners; `options_changed` is reported, as it needs a restart.
    pub fn apply(
        &self,
        config: &Config,
        bound: Bound,
        tcp_changed: bool,
        options_changed: bool,
    ) -> Applied {
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
                applied.listeners_removed.push(*addr);
                return false;
            }
            if applied.listeners_added.contains(addr) {
                return true;
            }
            if tcp_changed {
                // Connections accepted from now on inherit the new options.
                if let Err(e) = socket::tune_socket(SockRef::from(&*l.socket), &config.tcp) {
                    applied.warnings.push(format!(
                        "listener {addr}: cannot apply the new tcp options: {e}"
                    ));
                }
            }
            if options_changed {
                applied.warnings.push(format!(
                    "listener options changed; the listener on {addr} keeps its old options until restart"
                ));
            }
            true
        });
        applied.listeners_removed.sort();
        applied
    }

    /// Stop accepting on every listener and close them; established connections continue.
    pub fn stop_accepting(&self) {
        for (_, l) in lock(&self.listeners).drain() {
            l.stop.cancel();
        }
    }

    /// Let connections finish for up to `limit`, then cut the rest. Returns once every
    /// accept loop and connection task has ended. Call after [`stop_accepting`](Self::stop_accepting).
    pub async fn drain(&self, limit: Duration) -> ShutdownReport {
        self.tracker.close();
        let open_at_start = self.active_connections();
        let mut cut = 0;
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_err()
        {
            cut = self.active_connections();
            self.cut.cancel();
            self.tracker.wait().await;
        }
        ShutdownReport { open_at_start, cut }
    }

    /// Stop accepting, drain for up to `limit` and cut the rest.
    pub async fn shutdown(&self, limit: Duration) -> ShutdownReport {
        self.stop_accepting();
        self.drain(limit).await
    }

    /// A future that calls `alive` every `every` for as long as the data plane runs (until
    /// its cut token), for systemd's watchdog. With today's single runtime a tick proves
    /// the runtime still schedules the data plane's tasks.
    pub fn heartbeat(
        &self,
        every: Duration,
        alive: impl Fn() + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cut = self.cut.clone();
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cut.cancelled() => return,
                    _ = tick.tick() => alive(),
                }
            }
        }
    }

    /// Cut every established connection now (the end of a drain, or a forced stop).
    pub fn cut_now(&self) {
        self.cut.cancel();
    }

    fn spawn_listener(&self, addr: SocketAddr, l: TcpListener) {
        let local = l.local_addr().unwrap_or(addr);
        let stop = self.cut.child_token();
        let socket = Arc::new(l);
        tracing::info!(address = %local, "listening");
        self.tracker.spawn(accept::accept_loop(
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
) -> Result<Vec<(SocketAddr, TcpListener)>, Error> {
    addrs
        .iter()
        .map(|&address| {
            socket::bind(address, opts, tcp)
                .map(|l| (address, l))
                .map_err(|source| Error::Bind { address, source })
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
