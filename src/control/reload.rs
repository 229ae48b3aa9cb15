//! Reload: re-read the config, compute the [`ConfigDiff`], do everything that can fail
//! (TLS files, new listeners, a new metrics address) before changing anything, then hand each
//! part its slice. A reload that fails at any step leaves the running config in force.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Server, bind_admin, load_admin_tls, load_tls_blocking, on_answer};
use crate::admin::AdminSettings;
use crate::backend::BackendChanges;
use crate::config::diff::{AnnounceChange, ConfigDiff, NotLive, VipChange};
use crate::config::{self, CheckKind, Config};
use crate::errors::chain;
use crate::health::probe::TlsError;
use crate::proxy::Applied;

/// Why a reload was refused; the running config stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not a valid config.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The change cannot be applied while running.
    #[error(transparent)]
    NotLive(#[from] NotLive),
    /// TLS files for health checks are missing or bad.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    HealthTls(Vec<TlsError>),
    /// The `metrics.tls` files are missing or bad.
    #[error(transparent)]
    AdminTls(#[from] crate::admin::tls::TlsError),
    /// A new listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] crate::proxy::Error),
    /// The new `announce` section does not fit the host.
    #[error(transparent)]
    Announce(#[from] crate::announce::Error),
    /// The new metrics address could not be bound.
    #[error("metrics.listen: cannot listen on {address}")]
    MetricsBind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a reload changed.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Endpoint changes.
    pub backends: BackendChanges,
    /// Listener changes and warnings.
    pub proxy: Applied,
    /// Backends (by config name) whose checks were restarted.
    pub checks_restarted: Vec<String>,
    /// Warnings besides the proxy's.
    pub warnings: Vec<String>,
}

impl Server {
    /// Re-read the config file and apply it; log and count the outcome.
    pub(super) async fn reload_from_file(&self) {
        self.notifier.reloading();
        let result = match Config::load(&self.path) {
            Ok(c) => self.reload(c).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(report) => {
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                for w in report.proxy.warnings.iter().chain(&report.warnings) {
                    tracing::warn!("{w}");
                }
                let addrs = |v: &[std::net::SocketAddr]| {
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                tracing::info!(
                    added = %report.backends.added.join(", "),
                    removed = %report.backends.removed.join(", "),
                    reweighted = %report.backends.reweighted.join(", "),
                    checks_restarted = %report.checks_restarted.join(", "),
                    listeners_added = %addrs(&report.proxy.listeners_added),
                    listeners_removed = %addrs(&report.proxy.listeners_removed),
                    "config reloaded"
                );
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failed"]).inc();
                tracing::error!("reload failed, keeping the running config:\n{}", chain(&e));
            }
        }
        // Running again, with the new config or the old one.
        self.notifier.ready(&self.status_line());
    }

    /// Apply `new` (already checked) without dropping established connections.
    pub async fn reload(&self, new: Config) -> Result<ReloadReport, ReloadError> {
        let mut running = self.config.lock().await;
        let diff = ConfigDiff::new(&running, &new)?;

        // Everything that can fail, before anything changes.
        let tls = load_tls_blocking(&new)
            .await
            .map_err(ReloadError::HealthTls)?;
        let material = tls_material(&new).await;
        // Re-read on every reload, so renewed files on disk apply without a config change.
        let admin_tls = load_admin_tls(&new).await?;
        let mut restart = diff.health.clone();
        for name in material_changed(&super::lock(&self.tls_material), &material) {
            if !restart.contains(&name) {
                restart.push(name);
            }
        }
        if let AnnounceChange::Live(a) = &diff.announce {
            crate::announce::check_host(a).await?;
        }
        let bound = self.proxy.bind(&diff.listeners.added, &new)?;
        let admin_listener = match (&new.metrics, diff.metrics.rebind) {
            (Some(m), true) => {
                Some(
                    bind_admin(m.listen)
                        .await
                        .map_err(|source| ReloadError::MetricsBind {
                            address: m.listen,
                            source,
                        })?,
                )
            }
            _ => None,
        };

        // Commit, slice by slice. Checks see the new TLS before new endpoints appear.
        let mut report = ReloadReport {
            proxy: self.proxy.apply(&new, bound, &diff.listeners),
            ..ReloadReport::default()
        };
        self.checks.set_tls(tls);
        *super::lock(&self.tls_material) = material;
        report.backends = self.backends.update(&new.backends);
        self.checks.sync(&restart);
        report.checks_restarted = restart;
        if diff.dns
            && let Err(e) = self.dns.restart(
                &new.backends,
                &new.dns,
                &self.metrics,
                &on_answer(&self.backends),
            )
        {
            report.warnings.push(format!(
                "DNS-named backends keep their last answers: {}",
                chain(&e)
            ));
        }
        if let (VipChange::Live(v), Some(vip)) = (&diff.vip, &self.vip) {
            tracing::info!(priority = v.priority, "vip settings reloaded");
            vip.reload(v.clone()).await;
        }
        self.admin_state.tls.store(admin_tls);
        if let (AnnounceChange::Live(a), Some(announcer)) = (&diff.announce, &self.announcer) {
            announcer.reload(a.clone()).await;
        }
        if diff.rebalance {
            self.rebalance.set_config(new.rebalance.clone());
        }
        if diff.metrics.settings {
            self.admin_state
                .settings
                .store(std::sync::Arc::new(AdminSettings::of(&new)));
        }
        if diff.metrics.rebind {
            match admin_listener {
                Some(l) => self.spawn_admin(l),
                None => {
                    if let Some(a) = super::lock(&self.admin).take() {
                        tracing::info!(address = %a.address, "metrics endpoint removed");
                        a.stop.cancel();
                    }
                }
            }
        }
        *running = new;
        Ok(report)
    }
}

/// The bytes of every backend's check TLS files (CA, certificate, key), by backend name: a
/// reload restarts the checks of a backend whose files changed on disk (a renewed client
/// certificate) even when its config did not.
pub(super) type TlsMaterial = HashMap<String, Vec<u8>>;

/// Read [`TlsMaterial`] for `config` off the async runtime. Unreadable files count as empty
/// (loading the TLS configs reports them).
pub(super) async fn tls_material(config: &Config) -> TlsMaterial {
    let config = config.clone();
    let read = move || {
        let mut out = HashMap::new();
        for b in &config.backends {
            let Some(tls) = &b.health.tls else { continue };
            if !matches!(b.health.kind, CheckKind::Tls | CheckKind::Https) {
                continue;
            }
            let mut bytes = Vec::new();
            for p in [Some(&tls.ca), tls.cert.as_ref(), tls.key.as_ref()]
                .into_iter()
                .flatten()
            {
                bytes.extend(std::fs::read(p).unwrap_or_default());
                bytes.push(0);
            }
            out.insert(b.name.clone(), bytes);
        }
        out
    };
    super::off_runtime(read).await
}

/// Backends present in both whose material differs.
fn material_changed(old: &TlsMaterial, new: &TlsMaterial) -> Vec<String> {
    let mut names: Vec<String> = new
        .iter()
        .filter(|(name, bytes)| old.get(*name).is_some_and(|o| o != *bytes))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kept_backends_with_other_bytes_restart() {
        let m = |rows: &[(&str, &[u8])]| -> TlsMaterial {
            rows.iter()
                .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
                .collect()
        };
        let old = m(&[("a", b"1"), ("b", b"2"), ("gone", b"3")]);
        let new = m(&[("a", b"1"), ("b", b"2+renewed"), ("new", b"4")]);
        assert_eq!(material_changed(&old, &new), ["b"]);
        assert!(material_changed(&old, &old).is_empty());
    }
}
