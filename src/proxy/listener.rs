//! Listening sockets (socket2 options) and the accept loop: connection limit, back-off on
//! descriptor exhaustion, one warning per burst of errors.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Shared, conn};
use crate::config::{ListenerOptions, TcpOptions};

/// First pause after an accept error caused by exhausted resources.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept attempts while resources stay exhausted.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A burst of accept errors ends after this long without one.
const BURST_QUIET: Duration = Duration::from_secs(1);

/// Bind a listening socket on `addr` with `opts`. The per-connection `tcp` options are set
/// on the listener too: Linux copies them to every accepted socket, which saves six system
/// calls per client connection.
pub(crate) fn bind(
    addr: SocketAddr,
    opts: &ListenerOptions,
    tcp: &TcpOptions,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        if opts.freebind {
            socket.set_freebind_v6(true)?;
        }
    } else if opts.freebind {
        socket.set_freebind_v4(true)?;
    }
    tune_socket(SockRef::from(&socket), tcp)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(opts.backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Set the per-connection options on one leg (or a listener, whose accepted sockets inherit
/// them): TCP_NODELAY, keepalive and TCP_USER_TIMEOUT.
pub(crate) fn tune(stream: &TcpStream, tcp: &TcpOptions) -> io::Result<()> {
    tune_socket(SockRef::from(stream), tcp)
}

/// As [`tune`], for any socket.
pub(crate) fn tune_socket(sock: SockRef<'_>, tcp: &TcpOptions) -> io::Result<()> {
    sock.set_tcp_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(tcp.keepalive_time)
        .with_interval(tcp.keepalive_interval);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(tcp.user_timeout))?;
    Ok(())
}

/// Errors that mean "out of descriptors or memory": retrying at once would spin.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accept on `listener` until `stop` is cancelled; each connection runs on `tracker`.
pub(crate) async fn accept_loop(
    listener: Arc<TcpListener>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    cut: CancellationToken,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().ok();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut burst = Burst::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some(errors) = burst.ok(Instant::now()) {
                    tracing::info!(listener = ?local, errors, "accepting again after errors");
                    backoff = ACCEPT_BACKOFF_MIN;
                }
                admit(&shared, stream, peer, &cut, &tracker);
            }
            Err(e) if is_resource_exhaustion(&e) => {
                shared
                    .metrics
                    .accept_errors
                    .with_label_values(&["resources"])
                    .inc();
                if burst.error(Instant::now()) {
                    tracing::warn!(listener = ?local, error = %e, "accept failed: out of resources; backing off");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
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
                tracing::debug!(listener = ?local, error = %e, "accept failed");
            }
        }
    }
    tracing::info!(listener = ?local, "stopped accepting");
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
    stream: TcpStream,
    peer: SocketAddr,
    cut: &CancellationToken,
    tracker: &TaskTracker,
) {
    shared.metrics.accepted.inc();
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
    shared.metrics.active.inc();
    let guard = ClientGuard(Arc::clone(shared));
    tracker.spawn(conn::run(guard, stream, peer, cut.clone()));
}

/// Counts one client connection against the limit while alive.
pub(crate) struct ClientGuard(pub(crate) Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.active.dec();
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

#[cfg(test)]
mod socket_tests {
    use super::*;
    use crate::config::{DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIME, DEFAULT_USER_TIMEOUT};

    #[tokio::test]
    async fn listeners_carry_their_options() {
        let opts = ListenerOptions {
            backlog: 16,
            reuse_port: true,
            freebind: true,
        };
        let l = bind("127.0.0.1:0".parse().expect("addr"), &opts, &tcp()).expect("bind");
        let sock = SockRef::from(&l);
        assert!(sock.reuse_address().expect("getsockopt"));
        assert!(sock.reuse_port().expect("getsockopt"));
        assert!(sock.freebind_v4().expect("getsockopt"));
        let plain = ListenerOptions {
            reuse_port: false,
            freebind: false,
            ..opts
        };
        let l = bind("127.0.0.1:0".parse().expect("addr"), &plain, &tcp()).expect("bind");
        let sock = SockRef::from(&l);
        assert!(!sock.reuse_port().expect("getsockopt"));
        assert!(!sock.freebind_v4().expect("getsockopt"));
    }

    #[tokio::test]
    async fn ipv6_listeners_are_v6_only() {
        let opts = ListenerOptions {
            backlog: 16,
            reuse_port: false,
            freebind: true,
        };
        match bind("[::1]:0".parse().expect("addr"), &opts, &tcp()) {
            Ok(l) => {
                let sock = SockRef::from(&l);
                assert!(sock.only_v6().expect("getsockopt"));
                assert!(sock.freebind_v6().expect("getsockopt"));
            }
            // A host without IPv6 loopback cannot run this check.
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                eprintln!("skipped: no ::1 on this host ({e})");
            }
            Err(e) => panic!("bind [::1]:0: {e}"),
        }
    }

    fn tcp() -> TcpOptions {
        TcpOptions {
            keepalive_time: DEFAULT_KEEPALIVE_TIME,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            user_timeout: DEFAULT_USER_TIMEOUT,
        }
    }

    fn assert_tuned(s: &TcpStream, tcp: &TcpOptions) {
        let sock = SockRef::from(s);
        assert!(sock.tcp_nodelay().expect("getsockopt"));
        assert!(sock.keepalive().expect("getsockopt"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("getsockopt"),
            tcp.keepalive_time
        );
        assert_eq!(
            sock.tcp_keepalive_interval().expect("getsockopt"),
            tcp.keepalive_interval
        );
        assert_eq!(
            sock.tcp_user_timeout().expect("getsockopt"),
            Some(tcp.user_timeout)
        );
    }

    #[tokio::test]
    async fn backend_legs_are_tuned() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let s = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let tcp = TcpOptions {
            keepalive_time: Duration::from_secs(7),
            ..tcp()
        };
        tune(&s, &tcp).expect("tune");
        assert_tuned(&s, &tcp);
    }

    /// The client leg is not tuned per connection: it inherits the listener's options.
    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_tcp_options() {
        let tcp = TcpOptions {
            keepalive_time: Duration::from_secs(11),
            keepalive_interval: Duration::from_secs(3),
            user_timeout: Duration::from_secs(13),
        };
        let opts = ListenerOptions {
            backlog: 16,
            reuse_port: false,
            freebind: false,
        };
        let l = bind("127.0.0.1:0".parse().expect("addr"), &opts, &tcp).expect("bind");
        let _c = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = l.accept().await.expect("accept");
        assert_tuned(&accepted, &tcp);
    }
}
