//! The VIP task: feeds timers, packets and the healthy-backend count to the [`Fsm`] and carries
//! out its actions through `net`. [`Vip`] is the handle `main` and `control` hold.
//!
//! ```text
//!   raw socket ──packet──┐
//!   deadline ───Timer────┼──> Fsm::handle ──actions──> send advert / add, remove addresses /
//!   backend View ─count──┤                             GARP+NA / metrics, status
//!   Vip handle ──cmd─────┘ (reload, stop)
//! ```
//! The select is biased towards the timer, so a flood of packets (valid or not) never delays
//! our own adverts; but before a backup acts on its due down timer it reads the packets
//! already queued (at most [`QUEUED_BEFORE_TIMER`]), so a master's advert that arrived while
//! the process was starved still counts.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fsm::{Action, Event, Fsm, Params, Reason, State};
use super::net::Sockets;
use super::packet::{Advert, Invalid, Received};
use super::{Error, Interface, check_interface};
use crate::backend::View;
use crate::config::{Handover, VipConfig};
use crate::metrics::VipMetrics;

/// Gratuitous ARPs / NAs per address in one announcement burst (keepalived's
/// `garp_master_repeat` default).
pub const ANNOUNCE_BURST: usize = 5;
/// At most this many packets already queued are read before a backup's due down timer is
/// acted on.
const QUEUED_BEFORE_TIMER: usize = 64;
/// Longest [`Vip::shutdown`] waits for the hand-over (priority-0 advert, the new master
/// heard or [`super::fsm::RELEASE_LIMIT`] passed, addresses removed).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The healthy-backend count source: the backend set's view, whose Up endpoints are
/// counted each time it changes.
pub type Healthy = watch::Receiver<View>;

/// The VIP as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VipStatus {
    /// `initialize`, `backup` or `master`.
    pub state: String,
    /// VRID.
    pub vrid: u8,
    /// Interface.
    pub interface: String,
    /// The virtual addresses.
    pub addresses: Vec<String>,
    /// Effective priority (after tracking).
    pub priority: u8,
    /// Configured priority.
    pub configured_priority: u8,
    /// The master as far as we know (our own address when master).
    pub master: Option<IpAddr>,
}

enum Command {
    Reconfigure(Box<VipConfig>),
    Stop(oneshot::Sender<()>),
}

/// A running VRRP instance.
#[derive(Debug)]
pub struct Vip {
    cmd: mpsc::Sender<Command>,
    status: watch::Receiver<VipStatus>,
    config: std::sync::Mutex<VipConfig>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Reconfigure(_) => "Reconfigure",
            Command::Stop(_) => "Stop",
        })
    }
}

impl Vip {
    /// Check `cfg` against the host (interface exists, addresses on its subnets), open the
    /// sockets, remove leftover addresses and start as backup. Must run inside the runtime.
    pub async fn start(
        cfg: VipConfig,
        healthy: Healthy,
        metrics: VipMetrics,
        tracker: &TaskTracker,
    ) -> Result<Vip, Error> {
        let (conn, handle) = crate::netlink::connect().map_err(|error| Error::Netlink {
            interface: cfg.interface.clone(),
            what: "opening rtnetlink",
            error,
        })?;
        // The netlink connection runs beside the VIP task and ends with it (the runner
        // holds the guard).
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
        let iface = crate::netlink::interface(&handle, &cfg.interface).await?;
        let (src4, src6) = check_interface(&cfg, &iface)?;
        let sockets = Sockets::open(&cfg, &iface, src4, src6)?;
        let local = src4
            .map(IpAddr::V4)
            .or(src6.map(IpAddr::V6))
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let fsm = Fsm::new(params(&cfg, local));
        let (status_tx, status) = watch::channel(status_of(&cfg, &fsm));
        let (cmd, cmd_rx) = mpsc::channel(4);
        if !iface.up {
            tracing::warn!(interface = %iface.name, "vip: the interface is down");
        }
        let runner = Runner {
            cfg: cfg.clone(),
            fsm,
            handle,
            _netlink: conn_guard,
            iface,
            sockets,
            metrics,
            healthy,
            status: status_tx,
            send_error_logged: false,
        };
        tracker.spawn(runner.run(cmd_rx));
        Ok(Vip {
            cmd,
            status,
            config: std::sync::Mutex::new(cfg),
        })
    }

    /// The current state.
    pub fn status(&self) -> VipStatus {
        self.status.borrow().clone()
    }

    /// Watch the state (the status line systemd shows).
    pub fn subscribe(&self) -> watch::Receiver<VipStatus> {
        self.status.clone()
    }

    /// Wait until the state is `state` (tests, drills).
    pub async fn wait_state(&self, state: State) {
        let mut rx = self.status.clone();
        let _ = rx.wait_for(|s| s.state == state.as_str()).await;
    }

    /// Apply the live-changeable settings of `new` (priority, interval, preemption,
    /// tracking). The caller has checked that the change is live ([`crate::config::diff`]).
    pub async fn reload(&self, new: VipConfig) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = new.clone();
        let _ = self.cmd.send(Command::Reconfigure(Box::new(new))).await;
    }

    /// The config in force.
    pub fn config(&self) -> VipConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Graceful stop. Make before break (the default `handover`): a master sends a
    /// priority-0 advert and keeps the addresses (the proxy keeps accepting on them) until
    /// one advert interval after it hears the new master's first advert, or until
    /// [`super::fsm::release_bound`] passes, then removes them. Break before make: it
    /// removes them, then sends priority 0. Returns once they are gone.
    /// Call it before the listeners close. Bounded by [`STOP_TIMEOUT`].
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Stop(tx)).await.is_ok()
            && tokio::time::timeout(STOP_TIMEOUT, rx).await.is_err()
        {
            tracing::warn!("vip: stop did not finish within {STOP_TIMEOUT:?}");
        }
    }
}

/// Check `cfg` against the host without starting anything: the interface exists and the
/// addresses fit its subnets.
pub async fn check_host(cfg: &VipConfig) -> Result<(), Error> {
    let (conn, handle) = crate::netlink::connect().map_err(|error| Error::Netlink {
        interface: cfg.interface.clone(),
        what: "opening rtnetlink",
        error,
    })?;
    // The connection is driven here, beside the one request: nothing outlives the check.
    let iface =
        crate::http::drive(conn, crate::netlink::interface(&handle, &cfg.interface)).await?;
    check_interface(cfg, &iface).map(|_| ())
}

fn params(cfg: &VipConfig, local: IpAddr) -> Params {
    Params {
        priority: cfg.priority,
        interval: cfg.advert_interval,
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        track: cfg.track,
        local,
        handover: cfg.handover,
    }
}

fn status_of(cfg: &VipConfig, fsm: &Fsm) -> VipStatus {
    VipStatus {
        state: fsm.state().as_str().to_owned(),
        vrid: cfg.vrid,
        interface: cfg.interface.clone(),
        addresses: cfg.addresses.iter().map(ToString::to_string).collect(),
        priority: fsm.priority(),
        configured_priority: cfg.priority,
        master: fsm.master(),
    }
}

struct Runner {
    cfg: VipConfig,
    fsm: Fsm,
    handle: rtnetlink::Handle,
    /// Ends the netlink connection's task when the runner ends.
    _netlink: tokio_util::sync::DropGuard,
    iface: Interface,
    sockets: Sockets,
    metrics: VipMetrics,
    healthy: Healthy,
    status: watch::Sender<VipStatus>,
    send_error_logged: bool,
}

impl Runner {
    async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let own = self.sockets.sources();
        self.metrics.priority.set(i64::from(self.fsm.priority()));
        tracing::info!(
            vrid = self.cfg.vrid,
            interface = %self.cfg.interface,
            priority = self.cfg.priority,
            interval = ?self.cfg.advert_interval,
            "vip: starting as backup"
        );
        let acts = self.fsm.handle(Event::Start, Instant::now());
        self.execute(acts).await;
        self.track_now().await;
        // False once the backend set is gone (the process is stopping).
        let mut healthy_open = true;
        // Set once a stop has begun: whom to tell when the addresses are released. The
        // command channel is not read any more then.
        let mut stopping: Option<Option<oneshot::Sender<()>>> = None;
        loop {
            if stopping.is_some() && self.fsm.state() == State::Initialize {
                if let Some(Some(done)) = stopping.take() {
                    let _ = done.send(());
                }
                return;
            }
            let deadline = self.fsm.next_deadline();
            let acts = tokio::select! {
                biased;
                () = sleep_until(deadline) => {
                    // A backup's down timer must not beat adverts that are already waiting
                    // in the socket (a starved process on a busy host wakes up late with
                    // both due): read those first, so the timer fires only if no master
                    // spoke. Bounded by what is queued now.
                    if self.fsm.state() == State::Backup {
                        for _ in 0..QUEUED_BEFORE_TIMER {
                            let Some(pkt) = self.sockets.try_recv() else { break };
                            let acts = match pkt {
                                Ok(pkt) => self.packet(pkt, &own),
                                Err(_) => break,
                            };
                            self.execute(acts).await;
                        }
                    }
                    self.fsm.handle(Event::Timer, Instant::now())
                }
                cmd = cmds.recv(), if stopping.is_none() => match cmd {
                    Some(Command::Reconfigure(cfg)) => {
                        let p = params(&cfg, self.fsm.params().local);
                        self.cfg = *cfg;
                        let acts = self.fsm.handle(Event::Reconfigure(p), Instant::now());
                        self.execute(acts).await;
                        // Tracking may have been turned on: give it the count now.
                        self.track_now().await;
                        Vec::new()
                    }
                    Some(Command::Stop(done)) => {
                        stopping = Some(Some(done));
                        self.stop()
                    }
                    None => {
                        // The handle is gone without a stop (process exit): release anyway.
                        stopping = Some(None);
                        self.stop()
                    }
                },
                r = self.healthy.changed(), if healthy_open => match r {
                    Ok(()) if self.cfg.track.is_some() => {
                        let n = self.healthy.borrow_and_update().up();
                        self.fsm.handle(Event::Healthy(n), Instant::now())
                    }
                    Ok(()) => Vec::new(),
                    Err(_) => {
                        healthy_open = false;
                        Vec::new()
                    }
                },
                pkt = self.sockets.recv() => match pkt {
                    Ok(pkt) => self.packet(pkt, &own),
                    Err(e) => {
                        tracing::warn!(error = %e, "vip: receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Vec::new()
                    }
                },
            };
            self.execute(acts).await;
        }
    }

    /// Feed the current healthy count to the FSM, when tracking is on.
    async fn track_now(&mut self) {
        if self.cfg.track.is_some() {
            let n = self.healthy.borrow_and_update().up();
            let acts = self.fsm.handle(Event::Healthy(n), Instant::now());
            self.execute(acts).await;
        }
    }

    /// Check a received packet and hand a valid advert to the FSM.
    fn packet(&mut self, pkt: Result<Received, Invalid>, own: &[IpAddr]) -> Vec<Action> {
        let r = match pkt {
            Ok(r) if own.contains(&r.src) => return Vec::new(),
            Ok(r) => r,
            Err(why) => {
                self.invalid(why, None);
                return Vec::new();
            }
        };
        let valid =
            if !self.cfg.unicast_peers.is_empty() && !self.cfg.unicast_peers.contains(&r.src) {
                Err(Invalid::UnknownPeer)
            } else {
                let ours: Vec<IpAddr> = self.cfg.addresses.iter().map(|a| a.ip).collect();
                r.advert.check_for(self.cfg.vrid, &ours)
            };
        match valid {
            Ok(()) => {
                self.metrics.adverts_received.inc();
                self.fsm.handle(
                    Event::Advert {
                        from: r.src,
                        priority: r.advert.priority,
                        interval: Duration::from_millis(10 * u64::from(r.advert.interval_cs)),
                    },
                    Instant::now(),
                )
            }
            Err(why) => {
                self.invalid(why, Some(r.src));
                Vec::new()
            }
        }
    }

    /// Begin the graceful stop; its first actions.
    fn stop(&mut self) -> Vec<Action> {
        let acts = self.fsm.handle(Event::Stop, Instant::now());
        if self.fsm.releasing() {
            tracing::info!(
                vrid = self.cfg.vrid,
                "vip: sending priority 0; keeping the addresses until the new master is heard (at most {:?})",
                super::fsm::release_bound(self.fsm.params().interval)
            );
        }
        acts
    }

    fn invalid(&self, why: Invalid, from: Option<IpAddr>) {
        self.metrics
            .invalid
            .with_label_values(&[why.as_str()])
            .inc();
        if why != Invalid::Vrid {
            tracing::debug!(reason = %why, from = ?from, "vip: dropped a VRRP packet");
        }
    }

    /// Carry out `acts` in order; an address failure feeds back into the FSM.
    async fn execute(&mut self, acts: Vec<Action>) {
        let started = Instant::now();
        let mut queue = std::collections::VecDeque::from(acts);
        let mut took_over = false;
        while let Some(act) = queue.pop_front() {
            match act {
                Action::SendAdvert { priority } => self.send(priority),
                Action::AddAddresses => {
                    if let Err(e) = crate::netlink::add_addresses(
                        &self.handle,
                        &self.iface,
                        &self.cfg.addresses,
                    )
                    .await
                    {
                        self.metrics
                            .address_errors
                            .with_label_values(&["add"])
                            .inc();
                        tracing::error!("{e}");
                        let more = self.fsm.handle(Event::AddressFailure, Instant::now());
                        queue.clear();
                        queue.extend(more);
                    }
                }
                Action::RemoveAddresses => {
                    if let Err(e) = crate::netlink::remove_addresses(
                        &self.handle,
                        &self.iface,
                        &self.cfg.addresses,
                    )
                    .await
                    {
                        self.metrics
                            .address_errors
                            .with_label_values(&["remove"])
                            .inc();
                        tracing::error!("{e}");
                    }
                }
                Action::Announce => {
                    for _ in 0..ANNOUNCE_BURST {
                        if let Err(e) = self.sockets.announce(&self.cfg.addresses) {
                            tracing::warn!(error = %e, "vip: gratuitous ARP/NA failed");
                            break;
                        }
                    }
                }
                Action::Transition { from, to, reason } => {
                    self.metrics.set_state(to);
                    self.metrics
                        .transitions
                        .with_label_values(&[from.as_str(), to.as_str(), reason.as_str()])
                        .inc();
                    took_over |= to == State::Master;
                    tracing::info!(
                        vrid = self.cfg.vrid,
                        priority = self.fsm.priority(),
                        "vip: {from} -> {to} ({})",
                        reason.as_str()
                    );
                    match (from, reason) {
                        (State::Master, Reason::Shutdown)
                            if self.fsm.params().handover == Handover::BreakBeforeMake =>
                        {
                            tracing::info!(
                                "vip: addresses released, then priority 0 sent (handover: breakBeforeMake)"
                            )
                        }
                        (State::Master, Reason::Shutdown) => tracing::info!(
                            master = %self.fsm.master().map(|m| m.to_string()).unwrap_or_default(),
                            "vip: the new master was heard; addresses released"
                        ),
                        (State::Master, Reason::ShutdownUnanswered) => tracing::warn!(
                            "vip: no new master heard within {:?}; addresses released",
                            super::fsm::release_bound(self.fsm.params().interval)
                        ),
                        _ => {}
                    }
                }
                Action::SplitBrain {
                    peer,
                    peer_priority,
                    yielded,
                } => {
                    self.metrics
                        .split_brain
                        .with_label_values(&[if yielded { "yielded" } else { "kept" }])
                        .inc();
                    tracing::warn!(
                        %peer,
                        peer_priority,
                        priority = self.fsm.priority(),
                        yielded,
                        "vip: two masters seen (split brain)"
                    );
                }
                Action::PriorityChanged { from, to } => {
                    self.metrics.priority.set(i64::from(to));
                    tracing::warn!(
                        "vip: priority {from} -> {to} (healthy-backend tracking or reload)"
                    );
                }
            }
        }
        if took_over && self.fsm.state() == State::Master {
            let d = started.elapsed();
            self.metrics.takeover.observe(d.as_secs_f64());
            tracing::info!(took = ?d, "vip: addresses added and announced");
        }
        let s = status_of(&self.cfg, &self.fsm);
        self.status.send_if_modified(|old| {
            let changed = *old != s;
            *old = s;
            changed
        });
    }

    fn send(&mut self, priority: u8) {
        let advert = Advert {
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.cfg.advert_interval_cs(),
            addresses: self.cfg.addresses.iter().map(|a| a.ip).collect(),
        };
        let (sent, err) = self.sockets.send(&advert);
        self.metrics.adverts_sent.inc_by(sent as u64);
        match err {
            Some(e) => {
                self.metrics.send_errors.inc();
                // Once per streak: a down link fails every send.
                if !self.send_error_logged {
                    tracing::warn!(error = %e, "vip: advert not sent");
                    self.send_error_logged = true;
                }
            }
            None => self.send_error_logged = false,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
