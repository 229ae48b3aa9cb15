//! Process control: signals become [`Control`] messages, and [`supervise`] applies them to a
//! running [`Proxy`] until it has shut down.
//!
//! ```text
//!   SIGHUP ─────────┐
//!   SIGTERM/SIGINT ─┼─> signals() ──Control──> supervise() ──> Proxy::reload / shutdown
//!   (tests) ────────┘                                │
//!                                                    └── Config::load(path) on Reload
//! ```
//!
//! Shutdown follows the HA order: the VIP (if any) is released first (priority-0 advert,
//! addresses removed, so the backup LB takes over within its skew time), then listeners close, established connections get
//! `timeouts.drain` to finish, the rest are cut. A second SIGTERM/SIGINT during the drain
//! cuts them at once.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::proxy::{Proxy, ShutdownReport};
use crate::vip::{self, Vip};

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

/// Map SIGHUP, SIGTERM and SIGINT to [`Control`] messages. The first SIGTERM/SIGINT is a
/// Shutdown, later ones Quit.
pub fn signals() -> std::io::Result<mpsc::Receiver<Control>> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let control = tokio::select! {
                Some(()) = hup.recv() => Control::Reload,
                Some(()) = term.recv() => if stopping { Control::Quit } else { Control::Shutdown },
                Some(()) = int.recv() => if stopping { Control::Quit } else { Control::Shutdown },
                else => break,
            };
            stopping |= control == Control::Shutdown;
            if tx.send(control).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Longest a VIP master waits on a graceful stop for an instant with no open connection
/// before it hands the VIP over (bounded further by `timeouts.drain`).
pub const VIP_RELEASE_IDLE_WAIT: Duration = Duration::from_secs(2);

/// Wait until `proxy` has no open connection, polling every millisecond, for at most
/// `limit`; true if it got there.
async fn wait_idle(proxy: &Proxy, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while proxy.active_connections() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Apply control messages to `proxy` (and `vip`) until it has shut down. `path` is re-read on
/// Reload; `drain` is the running config's drain timeout (updated by each good reload).
pub async fn supervise(
    proxy: &Proxy,
    vip: Option<&Vip>,
    path: &Path,
    mut drain: Duration,
    mut controls: mpsc::Receiver<Control>,
) -> ShutdownReport {
    loop {
        match controls.recv().await {
            Some(Control::Reload) => {
                if let Some(d) = reload(proxy, vip, path).await {
                    drain = d;
                }
            }
            Some(Control::Shutdown) | None => break,
            Some(Control::Quit) => {
                if let Some(v) = vip {
                    v.shutdown().await;
                }
                return proxy.shutdown(Duration::ZERO).await;
            }
        }
    }
    if let Some(v) = vip {
        // Connections open when the VIP moves die (the new master has no socket for them),
        // so a master hands over at an instant when none is open, waiting a bounded time
        // for one while it keeps serving.
        if v.status().state == "master" {
            let limit = drain.min(VIP_RELEASE_IDLE_WAIT);
            if !wait_idle(proxy, limit).await {
                tracing::info!(
                    connections = proxy.active_connections(),
                    "no idle instant within {}; releasing the VIP anyway",
                    humantime::format_duration(limit)
                );
            }
        }
        tracing::info!(
            connections = proxy.active_connections(),
            "shutting down: releasing the VIP first"
        );
        v.shutdown().await;
    }
    tracing::info!(drain = %humantime::format_duration(drain), connections = proxy.active_connections(), "shutting down: draining");
    let shutdown = proxy.shutdown(drain);
    tokio::pin!(shutdown);
    let report = loop {
        tokio::select! {
            report = &mut shutdown => break report,
            c = controls.recv() => match c {
                Some(Control::Quit) => {
                    tracing::warn!("second stop signal: cutting every connection now");
                    proxy.cut_now();
                }
                Some(Control::Reload) => tracing::warn!("reload ignored: shutting down"),
                Some(Control::Shutdown) => {}
                None => {
                    // No more signals can come; just finish the drain.
                    break shutdown.await;
                }
            },
        }
    };
    if report.cut > 0 {
        tracing::warn!(
            cut = report.cut,
            "drain deadline reached: cut the remaining connections"
        );
    }
    tracing::info!(
        drained = report.open_at_start - report.cut.min(report.open_at_start),
        cut = report.cut,
        "stopped"
    );
    report
}

/// Reload from `path`; on any problem keep the running config. Returns the new drain
/// timeout if the reload was applied.
async fn reload(proxy: &Proxy, vip: Option<&Vip>, path: &Path) -> Option<Duration> {
    let metrics = proxy.metrics();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            metrics.reloads.with_label_values(&["failed"]).inc();
            tracing::error!("reload failed, keeping the running config:\n{e}");
            return None;
        }
    };
    let running_vip = vip.map(Vip::config);
    if let Err(e) = vip::live_change(running_vip.as_ref(), config.vip.as_ref()) {
        metrics.reloads.with_label_values(&["failed"]).inc();
        tracing::error!("reload failed, keeping the running config: {e}");
        return None;
    }
    let drain = config.timeouts.drain;
    let new_vip = config.vip.clone();
    match proxy.reload(config) {
        Ok(report) => {
            metrics.reloads.with_label_values(&["ok"]).inc();
            if let (Some(v), Some(new)) = (vip, new_vip) {
                if v.config() != new {
                    tracing::info!(priority = new.priority, "vip settings reloaded");
                    v.reload(new).await;
                }
            }
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(
                added = ?report.backends.added,
                removed = ?report.backends.removed,
                reweighted = ?report.backends.reweighted,
                listeners_added = ?report.listeners_added,
                listeners_removed = ?report.listeners_removed,
                "config reloaded"
            );
            Some(drain)
        }
        Err(e) => {
            metrics.reloads.with_label_values(&["failed"]).inc();
            tracing::error!("reload failed, keeping the running config: {e}");
            None
        }
    }
}
