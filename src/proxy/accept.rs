//! The accept loop: admission against `maxConnections`, back-off on descriptor exhaustion
//! with one warning per burst of errors, and a guard that counts each admitted client until
//! its connection ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pool::Pools;
use super::{Shared, conn};
use crate::metrics::{Metrics, Shard};

/// First pause after an accept error caused by exhausted resources.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept attempts while resources stay exhausted.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A burst of accept errors ends after this long without one.
const BURST_QUIET: Duration = Duration::from_secs(1);

/// Errors that mean "out of descriptors or memory": retrying at once would spin.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One worker's counters: written by that worker's tasks only, summed when scraped.
#[derive(Debug)]
pub(crate) struct WorkerStats {
    pub(crate) index: usize,
    /// `apilb_worker_connections_accepted_total{worker}`.
    accepted_here: prometheus::IntCounter,
    accepted: Arc<Shard>,
    pub(crate) bytes: Arc<Shard>,
    pub(crate) closed: Arc<Shard>,
    /// Per-backend handles, resolved once per worker instead of a label lookup (hash, read
    /// lock, reference count) per connection. Only this worker's tasks take the lock.
    backends: Mutex<HashMap<String, BackendStats>>,
    /// This worker's open connections (for the rebalancer); the table's number is the
    /// worker's index.
    pub(crate) conns: Arc<super::ConnTable>,
    /// This worker's pipes and buffers (a pool per worker: taking one never contends with
    /// another core).
    pub(crate) pools: Pools,
}

/// A backend's per-connection metrics, resolved.
#[derive(Debug, Clone)]
pub(crate) struct BackendStats {
    pub(crate) connections: prometheus::IntCounter,
    pub(crate) connect_duration: prometheus::Histogram,
}

impl WorkerStats {
    pub(crate) fn new(index: usize, metrics: &Metrics) -> Self {
        Self {
            index,
            accepted_here: metrics
                .worker_accepted
                .with_label_values(&[&index.to_string()]),
            accepted: metrics.accepted.shard(),
            bytes: metrics.bytes.shard(),
            closed: metrics.closed.shard(),
            backends: Mutex::new(HashMap::new()),
            conns: Arc::new(super::ConnTable::new(
                u16::try_from(index).unwrap_or(u16::MAX),
            )),
            pools: Pools::default(),
        }
    }

    /// `backend`'s handles.
    pub(crate) fn backend(&self, metrics: &Metrics, backend: &str) -> BackendStats {
        let mut map = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(backend) {
            return b.clone();
        }
        let b = BackendStats {
            connections: metrics.backend_connections.with_label_values(&[backend]),
            connect_duration: metrics.connect_duration.with_label_values(&[backend]),
        };
        map.insert(backend.to_owned(), b.clone());
        b
    }
}

/// Accept on `listener` until `stop` is cancelled; each connection runs on `tracker`, on
/// the worker this loop runs on.
pub(crate) async fn accept_loop(
    listener: Arc<TcpListener>,
    burst: Arc<SharedBurst>,
    worker: Arc<WorkerStats>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    cut: CancellationToken,
    tracker: TaskTracker,
) {
    let local = match listener.local_addr() {
        Ok(a) => a.to_string(),
        Err(_) => "?".to_owned(),
    };
    let mut backoff = ACCEPT_BACKOFF_MIN;
    // Registered once, not once per accepted connection.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stopped => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some(errors) = burst.ok(Instant::now()) {
                    tracing::info!(listener = %local, errors, "accepting again after errors");
                    backoff = ACCEPT_BACKOFF_MIN;
                }
                worker.accepted_here.inc();
                worker.accepted.inc(0);
                admit(&shared, &worker, stream, peer, &cut, &tracker);
            }
            Err(e) if is_resource_exhaustion(&e) => {
                shared
                    .metrics
                    .accept_errors
                    .with_label_values(&["resources"])
                    .inc();
                if burst.error(Instant::now()) {
                    tracing::warn!(listener = %local, error = %e, "accept failed: out of resources; backing off");
                }
                tokio::select! {
                    () = &mut stopped => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            Err(e) => {
                // ECONNABORTED and friends: the client gave up before we accepted.
                shared
                    .metrics
                    .accept_errors
                    .with_label_values(&["other"])
                    .inc();
                tracing::debug!(listener = %local, error = %e, "accept failed");
            }
        }
    }
    tracing::debug!(listener = %local, worker = worker.index, "stopped accepting");
}

/// The burst state of one listening address, shared by its accept loops on every worker so
/// the process warns once per burst, not once per worker. A successful accept outside a
/// burst reads one flag and takes no lock.
#[derive(Debug, Default)]
pub(crate) struct SharedBurst {
    active: AtomicBool,
    burst: std::sync::Mutex<Burst>,
}

impl SharedBurst {
    fn error(&self, now: Instant) -> bool {
        self.active.store(true, Ordering::Relaxed);
        self.lock().error(now)
    }

    fn ok(&self, now: Instant) -> Option<u64> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        let mut b = self.lock();
        let ended = b.ok(now);
        if ended.is_some() {
            self.active.store(false, Ordering::Relaxed);
        }
        ended
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Burst> {
        self.burst.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A run of accept errors: it starts with the first error and ends at the first successful
/// accept that comes [`BURST_QUIET`] after the last error. Warnings are logged once per
/// burst, so a proxy flapping at its descriptor limit does not flood the log.
#[derive(Debug, Default)]
struct Burst {
    errors: u64,
    last: Option<Instant>,
}

impl Burst {
    /// Record an error; true if it starts a burst.
    fn error(&mut self, now: Instant) -> bool {
        self.errors += 1;
        self.last.replace(now).is_none()
    }

    /// Record a successful accept; the burst's error count if this ends it.
    fn ok(&mut self, now: Instant) -> Option<u64> {
        let last = self.last?;
        if now.duration_since(last) < BURST_QUIET {
            return None;
        }
        self.last = None;
        Some(std::mem::take(&mut self.errors))
    }
}

/// Count the connection against `maxConnections` and start it, or close it at once.
fn admit(
    shared: &Arc<Shared>,
    worker: &Arc<WorkerStats>,
    stream: TcpStream,
    peer: SocketAddr,
    cut: &CancellationToken,
    tracker: &TaskTracker,
) {
    let max = shared.settings.load().max_connections;
    let before = shared.active.fetch_add(1, Ordering::AcqRel);
    if before >= max {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        shared
            .metrics
            .rejected
            .with_label_values(&["max_connections"])
            .inc();
        tracing::debug!(%peer, max, "connection limit reached; closing");
        drop(stream);
        return;
    }
    let guard = ClientGuard(Arc::clone(shared));
    tracker.spawn(conn::run(
        Arc::clone(shared),
        Arc::clone(worker),
        stream,
        peer,
        cut.clone(),
        guard,
    ));
}

/// Counts one client connection against the limit while alive.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_warns_once_and_ends_after_a_quiet_spell() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = Burst::default();
        assert_eq!(b.ok(ms(0)), None, "no burst, nothing to end");
        assert!(b.error(ms(10)), "first error starts a burst");
        assert!(!b.error(ms(20)));
        // Accepts in between errors do not end it.
        assert_eq!(b.ok(ms(30)), None);
        assert!(!b.error(ms(500)));
        assert_eq!(b.ok(ms(1499)), None);
        assert_eq!(b.ok(ms(1500)), Some(3));
        assert!(b.error(ms(1600)), "a new burst");
    }
}
