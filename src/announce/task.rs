//! The announce task: feeds the backend view's Up count and its own deadlines to the
//! [`Gate`] and makes the table hold exactly the routes the gate wants, through
//! [`crate::netlink`]. [`Announcer`] is the handle `control` holds.
//!
//! ```text
//!   backend View ──Up count──┐
//!   hold deadline ───────────┼──> Gate ──state──> reconcile: add / delete routes ──> metrics,
//!   Announcer ──reload, withdraw┘                 (a failed change is retried)        status
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Error;
use super::gate::{Gate, Reason, State};
use super::host::{self, Facts};
use crate::backend::View;
use crate::config::{AnnounceConfig, VipAddress, host_prefix};
use crate::metrics::AnnounceMetrics;
use crate::netlink::{self, HostRoute, Interface};

/// How soon a route change the kernel refused is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest [`Announcer::withdraw`] and [`Announcer::reload`] wait for the task.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// The healthy-backend count source: the backend set's view.
pub type Healthy = watch::Receiver<View>;

/// Route announcement as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnounceStatus {
    /// What the health gate decided: `announced` or `withdrawn`.
    pub state: String,
    /// `announce.interface`.
    pub interface: String,
    /// `announce.table`.
    pub table: u32,
    /// `announce.protocol`.
    pub protocol: u8,
    /// `announce.addresses`.
    pub addresses: Vec<String>,
    /// The addresses whose route is in the table now.
    pub announced: Vec<String>,
    /// Backends Up now.
    pub up: usize,
    /// `announce.track.healthyBackendsBelow`.
    pub healthy_backends_below: usize,
}

enum Command {
    Reconfigure(Box<AnnounceConfig>, oneshot::Sender<()>),
    Withdraw(oneshot::Sender<()>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Reconfigure(..) => "Reconfigure",
            Command::Withdraw(_) => "Withdraw",
        })
    }
}

/// A running announcer.
#[derive(Debug)]
pub struct Announcer {
    cmd: mpsc::Sender<Command>,
    status: watch::Receiver<AnnounceStatus>,
    config: std::sync::Mutex<AnnounceConfig>,
}

impl Announcer {
    /// Check the host, add the addresses missing from the interface, delete the routes of
    /// our table and protocol that an earlier run left (a crash), and start withdrawn: the
    /// routes come once enough backends have been Up for `hold`. Ends when `stop` is
    /// cancelled, deleting its routes. Must run inside the runtime.
    pub async fn start(
        cfg: AnnounceConfig,
        healthy: Healthy,
        metrics: AnnounceMetrics,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Announcer, Error> {
        let (conn, handle) = netlink::connect().map_err(Error::Open)?;
        // The netlink connection runs beside the task and ends with it (the runner holds
        // the guard).
        let conn_stop = CancellationToken::new();
        {
            let stop = conn_stop.clone();
            tracker.spawn(async move {
                tokio::select! {
                    () = conn => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        let conn_guard = conn_stop.drop_guard();
        let iface = prepare(&handle, &cfg).await?;
        let stale = remove_routes(&handle, &cfg).await?;
        if stale > 0 {
            tracing::info!(
                routes = stale,
                table = cfg.table,
                protocol = cfg.protocol,
                "announce: removed routes an earlier run left"
            );
        }
        for a in &cfg.addresses {
            metrics.state.with_label_values(&[&a.to_string()]).set(0);
        }
        let gate = Gate::new(cfg.healthy_backends_below, cfg.hold);
        let (status_tx, status) = watch::channel(status_of(&cfg, &gate, &BTreeSet::new(), 0));
        let (cmd, cmd_rx) = mpsc::channel(4);
        tracing::info!(
            addresses = %join(&cfg.addresses),
            interface = %cfg.interface,
            table = cfg.table,
            protocol = cfg.protocol,
            "announce: starting withdrawn"
        );
        let runner = Runner {
            cfg: cfg.clone(),
            index: iface.index,
            gate,
            handle,
            _netlink: conn_guard,
            installed: BTreeSet::new(),
            reason: Reason::Healthy,
            retry_at: None,
            up: 0,
            metrics,
            healthy,
            status: status_tx,
        };
        tracker.spawn(runner.run(cmd_rx, stop));
        Ok(Announcer {
            cmd,
            status,
            config: std::sync::Mutex::new(cfg),
        })
    }

    /// The current state.
    pub fn status(&self) -> AnnounceStatus {
        self.status.borrow().clone()
    }

    /// Watch the state.
    pub fn subscribe(&self) -> watch::Receiver<AnnounceStatus> {
        self.status.clone()
    }

    /// The config in force.
    pub fn config(&self) -> AnnounceConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Apply `new` (checked against the host by [`check_host`] first): addresses, interface,
    /// table, protocol, threshold and hold all change live. Returns once the routes follow
    /// (bounded by [`COMMAND_TIMEOUT`]).
    pub async fn reload(&self, new: AnnounceConfig) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reconfigure(Box::new(new), tx), rx, "reload")
            .await;
    }

    /// Delete the routes and never announce again (the first step of a graceful stop).
    /// Returns once they are deleted (bounded by [`COMMAND_TIMEOUT`]).
    pub async fn withdraw(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Withdraw(tx), rx, "withdraw").await;
    }

    async fn send(&self, cmd: Command, done: oneshot::Receiver<()>, what: &str) {
        if self.cmd.send(cmd).await.is_ok()
            && tokio::time::timeout(COMMAND_TIMEOUT, done).await.is_err()
        {
            tracing::warn!("announce: {what} did not finish within {COMMAND_TIMEOUT:?}");
        }
    }
}

/// Check `cfg` against the host without changing anything: the interface exists and is
/// up, CAP_NET_ADMIN is held, and the sysctls fit (see [`host`]).
pub async fn check_host(cfg: &AnnounceConfig) -> Result<(), Error> {
    let (conn, handle) = netlink::connect().map_err(Error::Open)?;
    // The connection is driven here, beside the requests: nothing outlives the check.
    crate::http::drive(conn, async {
        let facts = facts(&handle, cfg).await?;
        check(cfg, &facts)
    })
    .await
}

/// Delete every route of `cfg`'s table and protocol (`apilb announce --withdraw`, after a
/// crash); how many there were.
pub async fn withdraw(cfg: &AnnounceConfig) -> Result<usize, Error> {
    let (conn, handle) = netlink::connect().map_err(Error::Open)?;
    crate::http::drive(conn, remove_routes(&handle, cfg)).await
}

async fn facts(handle: &rtnetlink::Handle, cfg: &AnnounceConfig) -> Result<Facts, Error> {
    let interface = netlink::interface(handle, &cfg.interface).await?;
    let others = netlink::all_addresses(handle)
        .await?
        .into_iter()
        .filter(|(_, index, _)| *index != interface.index)
        .map(|(name, _, addrs)| (name, addrs))
        .collect();
    let status = crate::control::off_runtime(|| {
        std::fs::read_to_string("/proc/self/status").unwrap_or_default()
    })
    .await;
    Ok(Facts {
        interface,
        others,
        net_admin: host::has_net_admin(&status),
    })
}

fn check(cfg: &AnnounceConfig, facts: &Facts) -> Result<(), Error> {
    let problems = host::problems(cfg, facts, &host::read_sysctl);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Host {
            interface: cfg.interface.clone(),
            problems,
        })
    }
}

/// Check the host and add the addresses the interface lacks; the interface.
async fn prepare(handle: &rtnetlink::Handle, cfg: &AnnounceConfig) -> Result<Interface, Error> {
    let facts = facts(handle, cfg).await?;
    check(cfg, &facts)?;
    let iface = facts.interface;
    let missing: Vec<VipAddress> = cfg
        .addresses
        .iter()
        .filter(|ip| !iface.addresses.iter().any(|a| a.ip == **ip))
        .map(|ip| VipAddress {
            ip: *ip,
            prefix: host_prefix(*ip),
        })
        .collect();
    if !missing.is_empty() {
        netlink::add_addresses(handle, &iface, &missing).await?;
        for a in &missing {
            tracing::info!(address = %a, interface = %iface.name, "announce: added the address to the interface");
        }
    }
    Ok(iface)
}

/// Delete every route of `cfg`'s table and protocol; how many.
async fn remove_routes(handle: &rtnetlink::Handle, cfg: &AnnounceConfig) -> Result<usize, Error> {
    let routes = netlink::routes(handle, cfg.table, cfg.protocol).await?;
    for r in &routes {
        netlink::delete_route(handle, &cfg.interface, r).await?;
    }
    Ok(routes.len())
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_of(
    cfg: &AnnounceConfig,
    gate: &Gate,
    installed: &BTreeSet<HostRoute>,
    up: usize,
) -> AnnounceStatus {
    let mut announced: Vec<IpAddr> = installed.iter().map(|r| r.address).collect();
    announced.dedup();
    AnnounceStatus {
        state: gate.state().as_str().to_owned(),
        interface: cfg.interface.clone(),
        table: cfg.table,
        protocol: cfg.protocol,
        addresses: cfg.addresses.iter().map(ToString::to_string).collect(),
        announced: announced.iter().map(ToString::to_string).collect(),
        up,
        healthy_backends_below: cfg.healthy_backends_below,
    }
}

struct Runner {
    cfg: AnnounceConfig,
    /// `cfg.interface`'s index.
    index: u32,
    gate: Gate,
    handle: rtnetlink::Handle,
    /// Ends the netlink connection's task when the runner ends.
    _netlink: tokio_util::sync::DropGuard,
    /// The routes in the table now, as far as we know.
    installed: BTreeSet<HostRoute>,
    /// Why the routes change next (the last decision's reason).
    reason: Reason,
    /// When to retry a refused change.
    retry_at: Option<Instant>,
    /// Backends Up, as last seen.
    up: usize,
    metrics: AnnounceMetrics,
    healthy: Healthy,
    status: watch::Sender<AnnounceStatus>,
}

impl Runner {
    async fn run(mut self, mut cmds: mpsc::Receiver<Command>, stop: CancellationToken) {
        self.up = self.healthy.borrow_and_update().up();
        let first = self.gate.observe(self.up, Instant::now());
        self.decided(first);
        let mut healthy_open = true;
        loop {
            self.reconcile().await;
            self.publish();
            let wake = [self.gate.wake_at(), self.retry_at]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                c = cmds.recv() => match c {
                    None => break,
                    Some(Command::Withdraw(done)) => {
                        let t = self.gate.stop();
                        self.decided(t);
                        self.reconcile().await;
                        self.publish();
                        let _ = done.send(());
                    }
                    Some(Command::Reconfigure(new, done)) => {
                        self.reconfigure(*new).await;
                        self.publish();
                        let _ = done.send(());
                    }
                },
                r = self.healthy.changed(), if healthy_open => match r {
                    Ok(()) => {
                        self.up = self.healthy.borrow_and_update().up();
                        let t = self.gate.observe(self.up, Instant::now());
                        self.decided(t);
                    }
                    Err(_) => healthy_open = false,
                },
                () = sleep_until(wake), if wake.is_some() => {
                    self.retry_at = None;
                    let t = self.gate.tick(Instant::now());
                    self.decided(t);
                }
            }
        }
        // Stopping without a withdraw first (a cut): the routes go anyway.
        let t = self.gate.stop();
        self.decided(t);
        self.reconcile().await;
        self.publish();
    }

    /// Note a gate decision: its reason labels the route changes that follow.
    fn decided(&mut self, t: Option<super::gate::Transition>) {
        let Some(t) = t else { return };
        self.reason = t.reason;
        match t.to {
            State::Announced => tracing::info!(
                up = self.up,
                hold = %humantime::format_duration(self.cfg.hold),
                "announce: enough backends Up for the hold time: announcing"
            ),
            State::Withdrawn => tracing::info!(
                up = self.up,
                needed = self.cfg.healthy_backends_below,
                reason = t.reason.as_str(),
                "announce: withdrawing"
            ),
        }
    }

    fn route(&self, address: IpAddr) -> HostRoute {
        HostRoute {
            address,
            index: self.index,
            table: self.cfg.table,
            protocol: self.cfg.protocol,
        }
    }

    /// Make the table hold what the gate wants: delete routes not wanted, add those missing;
    /// count and log each address whose route came or went, and retry what the kernel
    /// refused after [`RETRY_AFTER`].
    async fn reconcile(&mut self) {
        let wanted: BTreeSet<HostRoute> = match self.gate.state() {
            State::Announced => self.cfg.addresses.iter().map(|a| self.route(*a)).collect(),
            State::Withdrawn => BTreeSet::new(),
        };
        if wanted == self.installed {
            return;
        }
        let before: BTreeSet<IpAddr> = self.installed.iter().map(|r| r.address).collect();
        let mut failed = false;
        let extra: Vec<HostRoute> = self.installed.difference(&wanted).copied().collect();
        for r in extra {
            match netlink::delete_route(&self.handle, &self.cfg.interface, &r).await {
                Ok(()) => {
                    self.installed.remove(&r);
                }
                Err(e) => {
                    failed = true;
                    self.metrics.errors.inc();
                    tracing::error!("announce: {e}");
                }
            }
        }
        let missing: Vec<HostRoute> = wanted.difference(&self.installed).copied().collect();
        for r in missing {
            match netlink::add_route(&self.handle, &self.cfg.interface, &r).await {
                Ok(()) => {
                    self.installed.insert(r);
                }
                Err(e) => {
                    failed = true;
                    self.metrics.errors.inc();
                    tracing::error!("announce: {e}");
                }
            }
        }
        let after: BTreeSet<IpAddr> = self.installed.iter().map(|r| r.address).collect();
        for a in before.symmetric_difference(&after) {
            let on = after.contains(a);
            let label = a.to_string();
            self.metrics
                .state
                .with_label_values(&[&label])
                .set(i64::from(on));
            self.metrics
                .transitions
                .with_label_values(&[&label, self.reason.as_str()])
                .inc();
            tracing::info!(
                address = %a,
                table = self.cfg.table,
                reason = self.reason.as_str(),
                "announce: route {}",
                if on { "added" } else { "deleted" }
            );
        }
        self.retry_at = failed.then(|| Instant::now() + RETRY_AFTER);
    }

    async fn reconfigure(&mut self, new: AnnounceConfig) {
        if new.interface != self.cfg.interface || new.addresses != self.cfg.addresses {
            match prepare(&self.handle, &new).await {
                Ok(iface) => self.index = iface.index,
                Err(e) => {
                    self.metrics.errors.inc();
                    tracing::error!("{e}");
                }
            }
        }
        let removed: Vec<IpAddr> = self
            .cfg
            .addresses
            .iter()
            .filter(|a| !new.addresses.contains(a))
            .copied()
            .collect();
        for a in &new.addresses {
            if !self.cfg.addresses.contains(a) {
                self.metrics
                    .state
                    .with_label_values(&[&a.to_string()])
                    .set(0);
            }
        }
        self.cfg = new;
        self.reason = Reason::Reload;
        let t = self.gate.set_params(
            self.cfg.healthy_backends_below,
            self.cfg.hold,
            Instant::now(),
        );
        self.decided(t);
        self.reconcile().await;
        for a in removed {
            if !self.installed.iter().any(|r| r.address == a) {
                let _ = self.metrics.state.remove_label_values(&[&a.to_string()]);
            }
        }
        tracing::info!(
            addresses = %join(&self.cfg.addresses),
            interface = %self.cfg.interface,
            table = self.cfg.table,
            protocol = self.cfg.protocol,
            "announce settings reloaded"
        );
    }

    fn publish(&self) {
        let s = status_of(&self.cfg, &self.gate, &self.installed, self.up);
        self.status.send_if_modified(|old| {
            if *old == s {
                false
            } else {
                *old = s;
                true
            }
        });
    }
}

/// Sleep until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
