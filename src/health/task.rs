//! The check schedule: one task per backend runs its probe at `interval` while the backend
//! is steady and at `fastInterval` while it is changing state, starting at a random offset
//! so backends are not probed in lockstep. A slow backend never delays another: each has
//! its own task. On reload the tasks are replaced; the health state lives in the
//! [`Backend`] and carries over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rustls::ClientConfig;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::probe::{self, Prober, TlsError};
use super::state::Outcome;
use crate::backend::Backend;
use crate::config::{BackendAddress, CheckKind, Config};
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

/// Runs the checks of every backend.
#[derive(Debug)]
pub struct HealthChecker {
    metrics: Metrics,
    tracker: TaskTracker,
    /// Cancels the current generation of check tasks.
    generation: Mutex<CancellationToken>,
    stop: CancellationToken,
}

impl HealthChecker {
    /// A checker whose tasks run on `tracker` until `stop`.
    pub fn new(metrics: Metrics, tracker: TaskTracker, stop: CancellationToken) -> Self {
        Self {
            metrics,
            tracker,
            generation: Mutex::new(stop.child_token()),
            stop,
        }
    }

    /// Replace every check task with one per backend in `list`.
    pub fn restart(&self, list: &[Arc<Backend>], tls: &TlsConfigs) {
        let next = self.stop.child_token();
        let old = std::mem::replace(
            &mut *self.generation.lock().unwrap_or_else(|e| e.into_inner()),
            next.clone(),
        );
        old.cancel();
        for backend in list {
            let cfg = backend.health_config();
            if cfg.kind == CheckKind::None {
                continue;
            }
            let host = match backend.address() {
                BackendAddress::Ip(a) => a.ip().to_string(),
                BackendAddress::Dns { host, .. } => host.clone(),
            };
            let prober = match Prober::new(&cfg, tls.get(backend.name()).cloned(), &host) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(backend = backend.name(), "health checks off: {e}");
                    continue;
                }
            };
            self.tracker.spawn(check_loop(
                Arc::clone(backend),
                prober,
                self.metrics.clone(),
                next.clone(),
            ));
        }
    }
}

async fn check_loop(
    backend: Arc<Backend>,
    prober: Prober,
    metrics: Metrics,
    stop: CancellationToken,
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
            o = check_once(&backend, &prober) => o,
        };
        metrics.check(backend.name(), outcome.label(), started.elapsed());
        match &outcome {
            Outcome::Pass => {}
            Outcome::Draining(why) | Outcome::Fail(why) | Outcome::Refused(why) => {
                tracing::debug!(backend = backend.name(), outcome = outcome.label(), reason = %why, "check failed");
            }
        }
        backend.on_check(outcome, &metrics);
        let cfg = backend.health_config();
        delay = if backend.health().in_transition() {
            cfg.fast_interval
        } else {
            cfg.interval
        };
    }
}

async fn check_once(backend: &Backend, prober: &Prober) -> Outcome {
    let target: SocketAddr = match backend.address() {
        BackendAddress::Ip(a) => *a,
        BackendAddress::Dns { host, port } => {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(mut addrs) => match addrs.next() {
                    Some(a) => a,
                    None => return Outcome::Fail(format!("{host} has no addresses")),
                },
                Err(e) => return Outcome::Fail(format!("resolving {host}: {e}")),
            }
        }
    };
    prober.probe(target).await
}
