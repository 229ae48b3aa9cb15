//! The control plane owns the process: [`Server::start`] builds the metrics registry, one
//! [`BackendSet`], the health checks and DNS watches, the data plane ([`Proxy`]), the VIP and
//! the admin endpoint, each under one root cancellation token and one task tracker;
//! [`Server::run`] applies [`Control`] messages (signals, or a channel in tests and the demo)
//! until it has shut down in the HA order.
//!
//! ```text
//!   SIGHUP ─────────┐                     ┌─> Proxy (data plane: accept, connections)
//!   SIGTERM/SIGINT ─┼─ Control ─> Server ─┼─> Checks + DnsWatcher ─> BackendSet ─┐
//!   (tests, demo) ──┘                     ├─> Vip      <──── View (watch) ───────┤
//!                                         └─> admin    <─────────────────────────┘
//! ```
//!
//! Route announcement ([`Announcer`], the `announce` section) sits where the VIP does, on the
//! same view; the config never has both. On shutdown its routes are deleted first and
//! `announce.withdrawDelay` passes before the listeners close.
//!
//! Shutdown order: the VIP is released first (a master waits a bounded time for an instant
//! with no open connection, then sends its priority-0 advert), then listeners close,
//! established connections get `timeouts.drain` to finish and the rest are cut, then checks
//! and DNS stop, and the admin endpoint last. A second SIGTERM/SIGINT cuts at once.

mod notify;
mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminSettings, AdminState};
use crate::announce::Announcer;
use crate::backend::BackendSet;
use crate::backend::dns::{DnsWatcher, OnAnswer};
use crate::config::Config;
use crate::health::probe::TlsError;
use crate::health::task::{Checks, TlsConfigs, load_tls};
use crate::metrics::{AnnounceMetrics, Metrics, RebalanceMetrics, VipMetrics};
use crate::proxy::{Proxy, ShutdownReport};
use crate::rebalance::Rebalance;
use crate::vip::Vip;

pub use notify::Notifier;
pub use reload::{ReloadError, ReloadReport};

/// What the process is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the config file and apply it (SIGHUP).
    Reload,
    /// Stop accepting and drain (SIGTERM, SIGINT).
    Shutdown,
    /// Cut every connection now (a second SIGTERM or SIGINT).
    Quit,
}

/// A source of [`Control`] messages; `None` means no more will come.
pub trait Controls: Send {
    /// The next message.
    fn recv(&mut self) -> impl Future<Output = Option<Control>> + Send;
}

impl Controls for mpsc::Receiver<Control> {
    fn recv(&mut self) -> impl Future<Output = Option<Control>> + Send {
        mpsc::Receiver::recv(self)
    }
}

/// SIGHUP, SIGTERM and SIGINT as [`Control`] messages: the first SIGTERM/SIGINT is a
/// Shutdown, later ones Quit. Polled in place: no task of its own.
#[derive(Debug)]
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
    stopping: bool,
}

impl Signals {
    /// Install the handlers (inside the runtime).
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            stopping: false,
        })
    }
}

impl Controls for Signals {
    async fn recv(&mut self) -> Option<Control> {
        let stop = if self.stopping {
            Control::Quit
        } else {
            Control::Shutdown
        };
        let control = tokio::select! {
            Some(()) = self.hup.recv() => Control::Reload,
            Some(()) = self.term.recv() => stop,
            Some(()) = self.int.recv() => stop,
            else => return None,
        };
        self.stopping |= control == Control::Shutdown;
        Some(control)
    }
}

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TLS files for health checks are missing or bad; every problem is listed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    HealthTls(Vec<TlsError>),
    /// The VIP cannot start (its config does not fit the host, or a socket failed).
    #[error(transparent)]
    Vip(#[from] crate::vip::Error),
    /// The `metrics.tls` files are missing or bad.
    #[error(transparent)]
    AdminTls(#[from] admin::tls::TlsError),
    /// Route announcement cannot start (the host does not fit, or netlink failed).
    #[error(transparent)]
    Announce(#[from] crate::announce::Error),
    /// The metrics address could not be bound.
    #[error("metrics.listen: cannot listen on {address}")]
    MetricsBind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A listen address could not be bound.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::Error),
    /// The DNS resolver for DNS-named backends could not be set up.
    #[error(transparent)]
    Dns(#[from] crate::backend::dns::Error),
    /// Metrics could not be registered (a bug: names clash).
    #[error("registering metrics")]
    Metrics(#[from] prometheus::Error),
    /// Capabilities could not be dropped after start.
    #[error(transparent)]
    Privilege(#[from] crate::privilege::Error),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
}

impl Error {
    /// Whether the config (or the host it meets) is at fault: the config exit code.
    pub fn is_config(&self) -> bool {
        match self {
            Error::HealthTls(_) | Error::AdminTls(_) => true,
            Error::Vip(e) => e.is_config(),
            Error::Announce(e) => e.is_config(),
            _ => false,
        }
    }
}

/// Run file or CPU work off the async runtime and return its result.
pub(crate) async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        // Only a panic in `f` gets here (blocking tasks are never cancelled): pass it on.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Load the health checks' TLS material off the async runtime (files are read).
async fn load_tls_blocking(config: &Config) -> Result<TlsConfigs, Vec<TlsError>> {
    let config = config.clone();
    off_runtime(move || load_tls(&config)).await
}

/// Load `metrics.tls` off the async runtime (files are read); `None` without it.
async fn load_admin_tls(
    config: &Config,
) -> Result<Option<Arc<admin::tls::AdminTls>>, admin::tls::TlsError> {
    let Some(tls) = config.metrics.as_ref().and_then(|m| m.tls.clone()) else {
        return Ok(None);
    };
    off_runtime(move || admin::tls::AdminTls::load(&tls).map(|t| Some(Arc::new(t)))).await
}

/// The admin endpoint while it runs.
#[derive(Debug)]
struct AdminRun {
    address: SocketAddr,
    stop: CancellationToken,
}

/// A running process: every part built and started.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    /// The running config; held across a reload so reloads never interleave.
    config: Mutex<Config>,
    registry: Registry,
    metrics: Metrics,
    backends: Arc<BackendSet>,
    proxy: Arc<Proxy>,
    checks: Arc<Checks>,
    dns: DnsWatcher,
    vip: Option<Arc<Vip>>,
    announcer: Option<Arc<Announcer>>,
    rebalance: Arc<Rebalance>,
    admin_state: Arc<AdminState>,
    admin: StdMutex<Option<AdminRun>>,
    /// The check TLS files' bytes at the last (re)load.
    tls_material: StdMutex<reload::TlsMaterial>,
    /// systemd's notify socket, when there is one.
    notifier: Notifier,
    /// Cancelled last: everything stops.
    root: CancellationToken,
    /// Health checks, DNS watches and the backend event consumer.
    checks_stop: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Check `config` against the host, load its TLS material, bind every listener and the
    /// metrics address, and start every part. `path` is what a reload re-reads. Fails, with
    /// nothing left running, if any part cannot start.
    pub async fn start(config: Config, path: &Path) -> Result<Server, Error> {
        // Host checks and files first: a config error leaves nothing to undo.
        if let Some(v) = &config.vip {
            crate::vip::task::check_host(v).await?;
        }
        if let Some(a) = &config.announce {
            crate::announce::check_host(a).await?;
        }
        let tls = load_tls_blocking(&config).await.map_err(Error::HealthTls)?;
        let tls_material = reload::tls_material(&config).await;
        let admin_tls = load_admin_tls(&config).await?;
        let admin_listener = match &config.metrics {
            Some(m) => Some(
                bind_admin(m.listen)
                    .await
                    .map_err(|source| Error::MetricsBind {
                        address: m.listen,
                        source,
                    })?,
            ),
            None => None,
        };
        raise_fd_limit();

        let registry = Registry::new();
        let metrics = Metrics::new(&registry)?;
        let vip_metrics = match &config.vip {
            Some(_) => Some(VipMetrics::new(&registry)?),
            None => None,
        };
        let announce_metrics = match &config.announce {
            Some(_) => Some(AnnounceMetrics::new(&registry)?),
            None => None,
        };
        let (set, events) = BackendSet::new(&config.backends);
        let backends = Arc::new(set);
        for b in backends.snapshot().iter() {
            metrics.set_state(b.name(), b.state());
        }
        let root = CancellationToken::new();
        let tracker = TaskTracker::new();
        let checks_stop = root.child_token();

        let proxy = Arc::new(Proxy::start(
            &config,
            Arc::clone(&backends),
            metrics.clone(),
            root.child_token(),
        )?);
        let dns = DnsWatcher::new(tracker.clone(), checks_stop.clone());
        if let Err(e) = dns.restart(
            &config.backends,
            &config.dns,
            &metrics,
            &on_answer(&backends),
        ) {
            proxy.shutdown(Duration::ZERO).await;
            return Err(e.into());
        }
        let checks = Arc::new(Checks::new(
            Arc::clone(&backends),
            metrics.clone(),
            tls,
            tracker.clone(),
            checks_stop.clone(),
        ));
        checks.sync(&[]);
        {
            let checks = Arc::clone(&checks);
            tracker.spawn(async move { checks.react_until_stopped(events).await });
        }

        let rebalance = Arc::new(Rebalance::new(
            config.rebalance.clone(),
            RebalanceMetrics::new(&registry)?,
        ));
        tracker.spawn(Arc::clone(&rebalance).run(
            Arc::clone(&proxy),
            Arc::clone(&backends),
            checks_stop.clone(),
        ));

        let vip = match (config.vip.clone(), vip_metrics) {
            (Some(v), Some(vm)) => match Vip::start(v, backends.subscribe(), vm, &tracker).await {
                Ok(vip) => Some(Arc::new(vip)),
                Err(e) => {
                    proxy.shutdown(Duration::ZERO).await;
                    root.cancel();
                    tracker.close();
                    tracker.wait().await;
                    return Err(e.into());
                }
            },
            _ => None,
        };
        // Beside the VIP (never together: the config refuses both), on the same view.
        let announcer = match (config.announce.clone(), announce_metrics) {
            (Some(a), Some(am)) => {
                match Announcer::start(a, backends.subscribe(), am, &tracker, root.child_token())
                    .await
                {
                    Ok(a) => Some(Arc::new(a)),
                    Err(e) => {
                        proxy.shutdown(Duration::ZERO).await;
                        root.cancel();
                        tracker.close();
                        tracker.wait().await;
                        return Err(e.into());
                    }
                }
            }
            _ => None,
        };

        let admin_state = Arc::new(AdminState {
            proxy: Arc::clone(&proxy),
            backends: Arc::clone(&backends),
            registry: registry.clone(),
            metrics: metrics.clone(),
            vip: vip.clone(),
            announcer: announcer.clone(),
            rebalance: Arc::clone(&rebalance),
            settings: ArcSwap::from_pointee(AdminSettings::of(&config)),
            tls: arc_swap::ArcSwapOption::new(admin_tls),
        });
        let server = Server {
            path: path.to_owned(),
            config: Mutex::new(config),
            registry,
            metrics,
            backends,
            proxy,
            checks,
            dns,
            vip,
            announcer,
            rebalance,
            admin_state,
            admin: StdMutex::new(None),
            tls_material: StdMutex::new(tls_material),
            notifier: Notifier::from_env(),
            root,
            checks_stop,
            tracker,
        };
        if let Some(l) = admin_listener {
            server.spawn_admin(l);
        }
        tracing::info!(config = %server.path.display(), version = env!("CARGO_PKG_VERSION"), "apilb serving");
        Ok(server)
    }

    fn spawn_admin(&self, listener: TcpListener) {
        let address = listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let stop = self.root.child_token();
        self.tracker.spawn(admin::serve(
            listener,
            Arc::clone(&self.admin_state),
            stop.clone(),
        ));
        let old = lock(&self.admin).replace(AdminRun { address, stop });
        if let Some(old) = old {
            old.stop.cancel();
        }
    }

    /// The bound local address of every listener, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.proxy.local_addrs()
    }

    /// The bound metrics address, if the endpoint runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        lock(&self.admin).as_ref().map(|a| a.address)
    }

    /// The live backend set.
    pub fn backends(&self) -> &Arc<BackendSet> {
        &self.backends
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The registry the metrics are in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Client connections open now.
    pub fn active_connections(&self) -> usize {
        self.proxy.active_connections()
    }

    /// Endpoints whose checks run now.
    pub fn running_checks(&self) -> usize {
        self.checks.running()
    }

    /// The VIP, when the config has one.
    pub fn vip(&self) -> Option<&Vip> {
        self.vip.as_deref()
    }

    /// The route announcer, when the config has an `announce` section.
    pub fn announcer(&self) -> Option<&Announcer> {
        self.announcer.as_deref()
    }

    /// The rebalancer.
    pub fn rebalance(&self) -> &Rebalance {
        &self.rebalance
    }

    /// The config running now.
    pub async fn config(&self) -> Config {
        self.config.lock().await.clone()
    }

    /// Apply `controls` until the process has shut down. Tells systemd (when it listens)
    /// READY=1 once the first round of checks has run, and keeps its status line current.
    pub async fn run(self, mut controls: impl Controls) -> ShutdownReport {
        self.ready().await;
        loop {
            match controls.recv().await {
                Some(Control::Reload) => self.reload_from_file().await,
                Some(Control::Shutdown) | None => break,
                Some(Control::Quit) => {
                    return self.stop(Duration::ZERO, None::<NoControls>, true).await;
                }
            }
        }
        let drain = self.config.lock().await.timeouts.drain;
        self.stop(drain, Some(controls), false).await
    }

    /// After the first round of checks (bounded by the slowest first check): READY=1, the
    /// status line kept current, and the watchdog fed from the data plane.
    async fn ready(&self) {
        let limit = {
            let config = self.config.lock().await;
            config
                .backends
                .iter()
                .map(|b| b.health.fast_interval + b.health.timeout)
                .max()
                .unwrap_or_default()
                + Duration::from_secs(1)
        };
        if tokio::time::timeout(limit, self.checks.first_round())
            .await
            .is_err()
        {
            tracing::warn!(
                "the first health checks did not all finish within {}; ready anyway",
                humantime::format_duration(limit)
            );
        }
        // Subscribed before the first status line is built, so no change after it is missed.
        let mut view = self.backends.subscribe();
        let mut vip = self.vip.as_ref().map(|v| v.subscribe());
        {
            let v = view.borrow_and_update().clone();
            let vs = vip.as_mut().map(|r| r.borrow_and_update().clone());
            self.notifier.ready(&notify::status_line(&v, vs.as_ref()));
        }
        let notifier = self.notifier;
        let stop = self.root.child_token();
        self.tracker.spawn(async move {
            loop {
                let vip_changed = async {
                    match vip.as_mut() {
                        Some(v) => v.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    r = view.changed() => if r.is_err() { return },
                    ok = vip_changed => if !ok { vip = None },
                }
                let v = view.borrow_and_update().clone();
                let vs = vip.as_mut().map(|r| r.borrow_and_update().clone());
                notifier.status(&notify::status_line(&v, vs.as_ref()));
            }
        });
        if let Some(every) = Notifier::watchdog_every() {
            tracing::info!(every = %humantime::format_duration(every), "systemd watchdog on");
            let notifier = self.notifier;
            self.tracker
                .spawn(self.proxy.heartbeat(every, move || notifier.watchdog()));
        }
    }

    fn status_line(&self) -> String {
        let vip = self.vip.as_ref().map(|v| v.status());
        notify::status_line(&self.backends.view(), vip.as_ref())
    }

    /// Shut down in the HA order with up to `drain` for established connections.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.stop(drain, None::<NoControls>, false).await
    }

    /// The HA order; `cut` (a second stop signal came first) skips `announce.withdrawDelay`.
    async fn stop<C: Controls>(
        &self,
        drain: Duration,
        mut controls: Option<C>,
        cut: bool,
    ) -> ShutdownReport {
        self.notifier.stopping(&format!(
            "draining {} connections for up to {}",
            self.proxy.active_connections(),
            humantime::format_duration(drain)
        ));
        if let Some(a) = &self.announcer {
            self.withdraw_routes(a, &mut controls, cut).await;
        }
        if let Some(v) = &self.vip {
            self.release_vip(v, drain).await;
        }
        tracing::info!(drain = %humantime::format_duration(drain), connections = self.proxy.active_connections(), "shutting down: draining");
        self.proxy.stop_accepting();
        let drained = self.proxy.drain(drain);
        tokio::pin!(drained);
        let report = loop {
            let next = async {
                match controls.as_mut() {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                report = &mut drained => break report,
                c = next => match c {
                    Some(Control::Quit) => {
                        tracing::warn!("second stop signal: cutting every connection now");
                        self.proxy.cut_now();
                    }
                    Some(Control::Reload) => tracing::warn!("reload ignored: shutting down"),
                    Some(Control::Shutdown) => {}
                    None => controls = None,
                },
            }
        };
        if report.cut > 0 {
            tracing::warn!(
                cut = report.cut,
                "drain deadline reached: cut the remaining connections"
            );
        }
        // Checks, DNS and the event consumer, then the admin endpoint, then anything left.
        self.checks_stop.cancel();
        if let Some(a) = lock(&self.admin).take() {
            a.stop.cancel();
        }
        self.root.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!(
            drained = report.open_at_start - report.cut.min(report.open_at_start),
            cut = report.cut,
            "stopped"
        );
        report
    }

    /// Connections open when the VIP moves die (the new master has no socket for them), so
    /// a master hands over at an instant when none is open, waiting a bounded time for one
    /// while it keeps serving.
    async fn release_vip(&self, vip: &Vip, drain: Duration) {
        if vip.status().state == "master" {
            let limit = drain.min(VIP_RELEASE_IDLE_WAIT);
            if !self.wait_idle(limit).await {
                tracing::info!(
                    connections = self.proxy.active_connections(),
                    "no idle instant within {}; releasing the VIP anyway",
                    humantime::format_duration(limit)
                );
            }
        }
        tracing::info!(
            connections = self.proxy.active_connections(),
            "shutting down: releasing the VIP first"
        );
        vip.shutdown().await;
    }

    /// The routes go first, so routers send new flows to the other LB hosts; then
    /// `announce.withdrawDelay` passes while this host still serves what arrives, so the
    /// routers converge before the listeners close. A second stop signal ends the wait.
    async fn withdraw_routes<C: Controls>(
        &self,
        announcer: &Announcer,
        controls: &mut Option<C>,
        cut: bool,
    ) {
        announcer.withdraw().await;
        let delay = if cut {
            Duration::ZERO
        } else {
            announcer.config().withdraw_delay
        };
        tracing::info!(
            delay = %humantime::format_duration(delay),
            connections = self.proxy.active_connections(),
            "shutting down: routes withdrawn first; waiting withdrawDelay before draining"
        );
        let waited = tokio::time::sleep(delay);
        tokio::pin!(waited);
        loop {
            let next = async {
                match controls.as_mut() {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut waited => return,
                c = next => match c {
                    Some(Control::Quit) => {
                        tracing::warn!("second stop signal: not waiting withdrawDelay");
                        // Handled again by the drain: it cuts every connection.
                        self.proxy.cut_now();
                        return;
                    }
                    Some(Control::Reload) => tracing::warn!("reload ignored: shutting down"),
                    Some(Control::Shutdown) => {}
                    None => *controls = None,
                },
            }
        }
    }

    /// Wait until no connection is open, polling every millisecond, for at most `limit`;
    /// true if it got there.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.proxy.active_connections() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }
}

/// Longest a VIP master waits on a graceful stop for an instant with no open connection
/// before it hands the VIP over (bounded further by `timeouts.drain`).
pub const VIP_RELEASE_IDLE_WAIT: Duration = Duration::from_secs(2);

/// No controls at all (a direct shutdown).
struct NoControls;

impl Controls for NoControls {
    async fn recv(&mut self) -> Option<Control> {
        None
    }
}

/// `apilb serve`: start everything for `config` and run until `controls` stop it.
pub async fn run(
    config: Config,
    path: &Path,
    controls: impl Controls,
) -> Result<ShutdownReport, Error> {
    let server = Server::start(config, path).await?;
    // Started: keep only the capabilities the config still needs (crate::privilege).
    let keep = crate::privilege::needed(&server.config().await);
    let workers = server.proxy.worker_handles();
    if let Err(e) = crate::privilege::drop_to(keep.clone(), &workers).await {
        server.shutdown(Duration::ZERO).await;
        return Err(e.into());
    }
    tracing::info!(kept = %crate::privilege::names(&keep), "capabilities dropped");
    Ok(server.run(controls).await)
}

/// The callback DNS watches call with each answer.
fn on_answer(backends: &Arc<BackendSet>) -> OnAnswer {
    let set = Arc::clone(backends);
    Arc::new(move |name: &str, addrs| {
        let changes = set.set_resolved(name, addrs);
        if !changes.is_empty() {
            tracing::info!(backend = name, added = %changes.added.join(", "), removed = %changes.removed.join(", "), "DNS answer changed the endpoints");
        }
    })
}

async fn bind_admin(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: every proxied connection needs two
/// descriptors (and a pipe pair while splicing), far past the usual soft limit of 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
