//! One client connection: pick a backend, connect (trying the next one on failure, each
//! backend at most once), then forward until the connection ends.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::accept::WorkerStats;
use super::first::{self, Replay, Verdict};
use super::forward::{self, Activity, End, Mode};
use super::socket::tune_now;
use super::track::Why;
use super::{Settings, Shared};
use crate::backend::{ActiveGuard, Backend, State};
use crate::config::Forwarding;
use crate::metrics::{DOWN, UP};

/// Serve one accepted client. `admission` (its place under `maxConnections`) is held until
/// the connection ends.
pub(crate) async fn run<A: Send + 'static>(
    shared: Arc<Shared>,
    worker: Arc<WorkerStats>,
    client: TcpStream,
    peer: SocketAddr,
    cut: CancellationToken,
    admission: A,
) {
    let span = tracing::debug_span!("conn", %peer);
    async move {
        let shared = &shared;
        // The client leg inherited the listener's TCP options (see socket::bind).
        let settings = shared.settings.load_full();
        let mut tried = Vec::new();
        let confirm = settings.timeouts.first_byte.is_none();
        let connected = tokio::select! {
            c = connect_any(shared, &worker, &settings, &mut tried, confirm) => c,
            () = cut.cancelled() => return,
        };
        let Some((mut backend, mut active)) = admitted(shared, connected) else {
            return;
        };
        let activity = Activity::new();
        if let Some(limit) = settings.timeouts.first_byte {
            let mut replay = Replay::new();
            loop {
                let verdict = first::exchange(
                    &client,
                    &backend,
                    limit,
                    &mut replay,
                    &activity,
                    &worker.pools,
                    &cut,
                )
                .await;
                let (reason, why) = match verdict {
                    Verdict::Forward => {
                        active.backend().answered();
                        break;
                    }
                    // Forwarding sees the cut at once and counts it.
                    Verdict::Cut => break,
                    Verdict::Silent => (
                        "no_first_byte",
                        format!(
                            "no answer to the client's TLS handshake within {}",
                            humantime::format_duration(limit)
                        ),
                    ),
                    Verdict::Closed(e) => ("closed_early", format!("closed before answering: {e}")),
                };
                let failed = Arc::clone(active.backend());
                shared
                    .metrics
                    .connect_failures
                    .with_label_values(&[failed.name(), reason])
                    .inc();
                let (run, transition) = failed.connect_failed(&why);
                if let Some(t) = transition {
                    shared.backends.publish(&failed, t);
                }
                tracing::info!(backend = failed.name(), address = %failed.address(), error = %why, consecutive_failures = run, "backend did not answer; replaying the client's handshake to the next backend");
                drop(active);
                drop(backend);
                let next = tokio::select! {
                    c = connect_any(shared, &worker, &settings, &mut tried, false) => c,
                    () = cut.cancelled() => return,
                };
                let Some((b, a)) = admitted(shared, next) else {
                    return;
                };
                if let Err(e) = forward::write_all(&b, replay.bytes()).await {
                    tracing::debug!(error = %e, "replaying to the next backend failed");
                }
                (backend, active) = (b, a);
            }
        }
        let name = active.backend().name();
        tracing::debug!(backend = %name, "connected");
        let mode = match settings.forwarding {
            Forwarding::Auto => Mode::Auto,
            Forwarding::Splice => Mode::Splice,
            Forwarding::Copy => Mode::Copy,
        };
        // In this worker's connection table (for the rebalancer) until this task ends, with
        // the bytes of the first exchange.
        let entry = worker.conns.insert(peer, Arc::clone(active.backend()));
        let first_up = activity.up.load(std::sync::atomic::Ordering::Relaxed);
        let activity = &entry.tracked.activity;
        if first_up > 0 {
            activity.sent_up(first_up);
        }
        let signal = &entry.tracked.signal;
        // From here on the worker's sweeper raises the cut on this connection; one that
        // came before it was in the table is raised here (same thread, so no gap).
        if cut.is_cancelled() {
            signal.raise(Why::Cut);
        }
        drop(cut);
        drop(tried);
        let end = forward::run(
            &client,
            &backend,
            mode,
            signal,
            &settings.tcp,
            &worker.pools,
            activity,
        )
        .await;
        let up = activity.up.load(std::sync::atomic::Ordering::Relaxed);
        let down = activity.down.load(std::sync::atomic::Ordering::Relaxed);
        let m = &shared.metrics;
        worker.bytes.add(UP, up);
        worker.bytes.add(DOWN, down);
        worker.closed.inc(end.index());
        m.connection_duration
            .observe(activity.age().as_secs_f64());
        match &end {
            End::Client(e) | End::Backend(e) => {
                tracing::debug!(backend = %name, up, down, reason = end.label(), error = %e, "closed")
            }
            _ => tracing::debug!(backend = %name, up, down, reason = end.label(), "closed"),
        }
        drop(active);
        drop(admission);
    }
    .instrument(span)
    .await
}

/// The backend leg, or the client closed with the reason counted.
fn admitted(
    shared: &Shared,
    connected: Result<(TcpStream, ActiveGuard), NoConnection>,
) -> Option<(TcpStream, ActiveGuard)> {
    match connected {
        Ok(c) => Some(c),
        Err(NoConnection::NoBackend) => {
            shared
                .metrics
                .failed
                .with_label_values(&["no_backend"])
                .inc();
            tracing::warn!("no backend accepted the connection; closing the client");
            None
        }
        Err(NoConnection::Local(e)) => {
            shared
                .metrics
                .failed
                .with_label_values(&["local_resources"])
                .inc();
            tracing::debug!(error = %e, "no socket for the backend leg; closing the client");
            None
        }
    }
}

/// Why one connect attempt failed: the `reason` label of
/// `apilb_backend_connect_failures_total`.
fn failure_reason(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable",
        io::ErrorKind::NotFound => "resolve",
        _ => "other",
    }
}

/// Why a client got no backend connection.
enum NoConnection {
    /// Every backend was tried and failed.
    NoBackend,
    /// This process could not make a socket (descriptor or memory limits): not the
    /// backends' fault, so not counted against them.
    Local(io::Error),
}

/// A failed attempt, with blame.
enum AttemptError {
    Local(io::Error),
    Backend(io::Error),
}

/// Try backends in the order the selector picks them, each at most once: first those that
/// are up; then, if none of those connected, those down or draining (fail open), so a client
/// is served while any backend accepts. Backends in maintenance are never tried.
/// `tried` lists the backends this client already tried (each is tried at most once); with
/// `confirm`, a connect ends the backend's run of failures at once, else only its first
/// byte does ([`Backend::answered`]).
async fn connect_any(
    shared: &Shared,
    worker: &WorkerStats,
    settings: &Settings,
    tried: &mut Vec<Arc<Backend>>,
    confirm: bool,
) -> Result<(TcpStream, ActiveGuard), NoConnection> {
    let list = shared.backends.snapshot();
    for phase in [Phase::Up, Phase::FailOpen] {
        loop {
            let now = tokio::time::Instant::now();
            let cands: Vec<_> = list.iter().map(|b| b.candidate(now)).collect();
            let pick = settings.selector.pick(
                &cands,
                |i| !tried.iter().any(|t| Arc::ptr_eq(t, &list[i])) && phase.admits(cands[i].state),
                &mut rand::rng(),
            );
            let Some(i) = pick else { break };
            let backend = &list[i];
            tried.push(Arc::clone(backend));
            let started = tokio::time::Instant::now();
            match connect_one(backend, settings).await {
                Ok(stream) => {
                    let stats = worker.backend(&shared.metrics, backend.name());
                    stats.connections.inc();
                    stats
                        .connect_duration
                        .observe(started.elapsed().as_secs_f64());
                    if phase == Phase::FailOpen {
                        tracing::info!(backend = backend.name(), state = %cands[i].state, "no backend up: connected to one that is not (fail open)");
                    }
                    let active = if confirm {
                        backend.connected()
                    } else {
                        backend.connected_unconfirmed()
                    };
                    return Ok((stream, active));
                }
                Err(AttemptError::Local(e)) => return Err(NoConnection::Local(e)),
                Err(AttemptError::Backend(e)) => {
                    let reason = failure_reason(&e);
                    shared
                        .metrics
                        .connect_failures
                        .with_label_values(&[backend.name(), reason])
                        .inc();
                    let (run, transition) = backend.connect_failed(&e.to_string());
                    if let Some(t) = transition {
                        shared.backends.publish(backend, t);
                    }
                    tracing::info!(backend = backend.name(), address = %backend.address(), error = %e, consecutive_failures = run, "connect failed; trying the next backend");
                }
            }
        }
    }
    Err(NoConnection::NoBackend)
}

/// Which backends a pass of [`connect_any`] may try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Up,
    FailOpen,
}

impl Phase {
    fn admits(self, state: State) -> bool {
        match self {
            Phase::Up => state == State::Up,
            Phase::FailOpen => matches!(state, State::Down | State::Drain),
        }
    }
}

/// One attempt at one backend, bounded by the connect timeout.
async fn connect_one(
    backend: &Arc<Backend>,
    settings: &Settings,
) -> Result<TcpStream, AttemptError> {
    let timeout = settings.timeouts.connect;
    let addr = backend.address();
    let attempt = async {
        let stream = connect_nonblocking(addr).await?;
        if let Err(e) = tune_now(&stream) {
            tracing::debug!(error = %e, "backend socket options");
        }
        Ok(stream)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(AttemptError::Backend(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {}", humantime::format_duration(timeout)),
        ))),
    }
}

/// A non-blocking connect judged by readiness: writable without an error or hang-up means
/// connected, so a successful connect costs no SO_ERROR call (tokio's own connect makes
/// one); the error is read only when the connect failed.
async fn connect_nonblocking(addr: SocketAddr) -> Result<TcpStream, AttemptError> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(AttemptError::Local)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if is_local_shortage(&e) => return Err(AttemptError::Local(e)),
        Err(e) => return Err(AttemptError::Backend(e)),
    }
    let stream = TcpStream::from_std(socket.into()).map_err(AttemptError::Local)?;
    let ready = stream
        .ready(Interest::WRITABLE | Interest::ERROR)
        .await
        .map_err(AttemptError::Backend)?;
    if ready.is_error() || ready.is_write_closed() {
        let e = match stream.take_error() {
            Ok(Some(e)) | Err(e) => e,
            Ok(None) => io::Error::new(io::ErrorKind::ConnectionAborted, "connect failed"),
        };
        return Err(AttemptError::Backend(e));
    }
    Ok(stream)
}

/// Errors from connect(2) itself that mean this host ran out of something (ports,
/// buffers), not that the backend failed.
fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EADDRNOTAVAIL | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN)
    )
}
