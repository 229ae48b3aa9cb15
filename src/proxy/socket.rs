//! Sockets: listening sockets with their socket2 options, and the per-connection TCP
//! options (TCP_NODELAY, keepalive, TCP_USER_TIMEOUT) that accepted sockets inherit from
//! their listener and the backend leg sets itself (TCP_NODELAY at connect, the rest once it
//! is a second old).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::TcpStream;

use crate::config::{AcceptMode, ListenerOptions, TcpOptions};

/// Bind the listening sockets of one address for `workers` workers: one socket, or with
/// `accept: reusePort` and more than one worker, one SO_REUSEPORT socket per worker in one
/// group (the kernel spreads connections over them by a hash of the addresses). Port 0
/// binds an ephemeral port once; the group shares it.
///
/// The first socket of a group binds without SO_REUSEPORT (unless `reusePort` asks for
/// sharing with other processes) and sets it only once bound: a second apilb started on the
/// same address fails with "address in use" instead of silently taking a share of the
/// connections.
pub(crate) fn bind_group(
    addr: SocketAddr,
    opts: &ListenerOptions,
    tcp: &TcpOptions,
    workers: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let per_worker = opts.accept == AcceptMode::ReusePort && workers > 1;
    let first = bind_one(addr, opts, tcp, per_worker)?;
    let mut group = vec![first];
    if per_worker {
        let bound = group[0].local_addr()?;
        for _ in 1..workers {
            let mut joining = *opts;
            joining.reuse_port = true;
            group.push(bind_one(bound, &joining, tcp, false)?);
        }
    }
    Ok(group)
}

/// Bind one listening socket on `addr` with `opts`. The per-connection `tcp` options are set
/// on the listener too: Linux copies them to every accepted socket, which saves six system
/// calls per client connection. `group_after_bind` sets SO_REUSEPORT once bound, so the
/// group's later members can join (see [`bind_group`]).
fn bind_one(
    addr: SocketAddr,
    opts: &ListenerOptions,
    tcp: &TcpOptions,
    group_after_bind: bool,
) -> io::Result<std::net::TcpListener> {
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
    if group_after_bind && !opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.listen(i32::try_from(opts.backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Bind one listening socket registered with the current runtime (tests and tools).
#[cfg(test)]
pub(crate) fn bind(
    addr: SocketAddr,
    opts: &ListenerOptions,
    tcp: &TcpOptions,
) -> io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(bind_one(addr, opts, tcp, false)?)
}

/// A backend leg that lives this long gets the options of [`tune_late`]: most API requests
/// are over sooner and skip their three system calls.
pub(crate) const TUNE_LATE_AFTER: Duration = Duration::from_secs(1);

/// The options a backend leg needs from its first byte: TCP_NODELAY (a request must not
/// wait for an ACK of the previous segment).
pub(crate) fn tune_now(stream: &TcpStream) -> io::Result<()> {
    SockRef::from(stream).set_tcp_nodelay(true)
}

/// The options that only matter on a connection that lives on: keepalive and
/// TCP_USER_TIMEOUT. Set on a backend leg once it is [`TUNE_LATE_AFTER`] old, by the
/// connection when its worker's sweeper asks (see `sweep.rs`), with the same effect as at
/// connect for TCP_USER_TIMEOUT (the kernel measures it from the first unacknowledged
/// segment) and a first keepalive probe at most about two seconds later than
/// `tcp.keepaliveTime` on a connection silent since it opened.
pub(crate) fn tune_late(stream: &TcpStream, tcp: &TcpOptions) -> io::Result<()> {
    tune_late_socket(SockRef::from(stream), tcp)
}

/// Every per-connection option, on a listener: its accepted sockets (the client legs)
/// inherit them at no cost per connection.
pub(crate) fn tune_socket(sock: SockRef<'_>, tcp: &TcpOptions) -> io::Result<()> {
    sock.set_tcp_nodelay(true)?;
    tune_late_socket(sock, tcp)
}

fn tune_late_socket(sock: SockRef<'_>, tcp: &TcpOptions) -> io::Result<()> {
    let keepalive = TcpKeepalive::new()
        .with_time(tcp.keepalive_time)
        .with_interval(tcp.keepalive_interval);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(tcp.user_timeout))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_TIME, DEFAULT_USER_TIMEOUT};

    #[tokio::test]
    async fn listeners_carry_their_options() {
        let opts = ListenerOptions {
            backlog: 16,
            reuse_port: true,
            freebind: true,
            accept: AcceptMode::Shared,
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
            accept: AcceptMode::Shared,
        };
        match bind("[::1]:0".parse().expect("addr"), &opts, &tcp()) {
            Ok(l) => {
                let sock = SockRef::from(&l);
                assert!(sock.only_v6().expect("getsockopt"));
                assert!(sock.freebind_v6().expect("getsockopt"));
            }
            // A host without IPv6 loopback cannot run this check; CI must.
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                assert!(
                    std::env::var_os("APILB_REQUIRE_PRIVILEGED").is_none_or(|v| v != "1"),
                    "no ::1 on this host ({e}) and APILB_REQUIRE_PRIVILEGED=1"
                );
                eprintln!("skipped: no ::1 on this host ({e})");
            }
            Err(e) => panic!("bind [::1]:0: {e}"),
        }
    }

    #[tokio::test]
    async fn a_reuse_port_group_shares_one_port_and_keeps_others_out() {
        let opts = ListenerOptions {
            backlog: 16,
            reuse_port: false,
            freebind: false,
            accept: AcceptMode::ReusePort,
        };
        let any = "127.0.0.1:0".parse().expect("addr");
        let group = bind_group(any, &opts, &tcp(), 3).expect("bind");
        assert_eq!(group.len(), 3, "one socket per worker");
        let port = group[0].local_addr().expect("addr").port();
        for l in &group {
            assert_eq!(l.local_addr().expect("addr").port(), port);
            assert!(SockRef::from(l).reuse_port().expect("getsockopt"));
        }
        // A second apilb on the same address is refused, not let into the group.
        let taken = group[0].local_addr().expect("addr");
        let e = bind_group(taken, &opts, &tcp(), 2).expect_err("address in use");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // One worker, or `shared`: one socket.
        assert_eq!(bind_group(any, &opts, &tcp(), 1).expect("bind").len(), 1);
        let shared = ListenerOptions {
            accept: AcceptMode::Shared,
            ..opts
        };
        let one = bind_group(any, &shared, &tcp(), 4).expect("bind");
        assert_eq!(one.len(), 1);
        assert!(!SockRef::from(&one[0]).reuse_port().expect("getsockopt"));
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

    /// A backend leg gets TCP_NODELAY at once, and the other options only when tuned late.
    #[tokio::test]
    async fn backend_legs_are_tuned_now_then_late() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let s = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let tcp = TcpOptions {
            keepalive_time: Duration::from_secs(7),
            ..tcp()
        };
        tune_now(&s).expect("tune");
        let sock = SockRef::from(&s);
        assert!(sock.tcp_nodelay().expect("getsockopt"));
        assert!(!sock.keepalive().expect("getsockopt"), "not yet");
        tune_late(&s, &tcp).expect("tune");
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
            accept: AcceptMode::Shared,
        };
        let l = bind("127.0.0.1:0".parse().expect("addr"), &opts, &tcp).expect("bind");
        let _c = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = l.accept().await.expect("accept");
        assert_tuned(&accepted, &tcp);
    }
}
