//! systemd's notify protocol, against a NOTIFY_SOCKET datagram socket of the test's own: the
//! order of READY, RELOADING, STOPPING, status lines that follow the backends, and the
//! watchdog.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::*;

/// Every datagram that arrives within `limit`, watchdog pings counted apart.
struct Listener {
    socket: UnixDatagram,
    watchdog: usize,
}

impl Listener {
    /// The next message that is not a lone WATCHDOG=1, within `limit`.
    fn next(&mut self, limit: Duration) -> String {
        let until = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no notification within {limit:?}");
            self.socket
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let n = self.socket.recv(&mut buf).expect("a notification in time");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg == "WATCHDOG=1\n" {
                self.watchdog += 1;
                continue;
            }
            return msg;
        }
    }

    /// Wait until `n` watchdog pings have arrived in all, other messages not expected.
    fn watchdog_pings(&mut self, n: usize, limit: Duration) {
        let until = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while self.watchdog < n {
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} watchdog pings within {limit:?}",
                self.watchdog
            );
            self.socket
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let got = self.socket.recv(&mut buf).expect("a ping in time");
            let msg = String::from_utf8_lossy(&buf[..got]);
            assert_eq!(msg, "WATCHDOG=1\n", "only pings now");
            self.watchdog += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reloading_status_and_stopping_in_order_with_a_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let mut sd = Listener {
        socket: UnixDatagram::bind(&path).expect("bind the notify socket"),
        watchdog: 0,
    };
    let b = EchoBackend::start("b").await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let yaml = lb_yaml(
        &[listen],
        &[("b", b.addr)],
        "health: {kind: tcp, interval: 200ms, fastInterval: 100ms, timeout: 500ms, rise: 1, fall: 1}\n\
         timeouts: {drain: 1s}\n",
    );
    let socket_path = path.clone();
    let mut lb = LbProcess::spawn_with(&yaml, move |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000");
    });

    // READY once listening and checked: the listener accepts at once, the backend counts.
    let ready = tokio::task::block_in_place(|| sd.next(WAIT));
    assert_eq!(ready, "READY=1\nSTATUS=1/1 backends up\n");
    assert!(
        std::net::TcpStream::connect(listen).is_ok(),
        "listening before READY"
    );

    // The status line follows the backends.
    b.stop();
    drop(b);
    let status = tokio::task::block_in_place(|| sd.next(WAIT));
    assert_eq!(status, "STATUS=0/1 backends up\n");

    // A reload is bracketed by RELOADING=1 (with the monotonic time) and READY=1.
    lb.signal(Signal::SIGHUP);
    let reloading = tokio::task::block_in_place(|| sd.next(WAIT));
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading}");
    let again = tokio::task::block_in_place(|| sd.next(WAIT));
    assert!(again.starts_with("READY=1\nSTATUS="), "{again}");

    // The watchdog is fed every 100 ms (WatchdogSec=200ms): ten pings within 1.5 s.
    let started = Instant::now();
    let before = sd.watchdog;
    tokio::task::block_in_place(|| sd.watchdog_pings(before + 10, Duration::from_millis(1500)));
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "not faster than asked"
    );

    lb.signal(Signal::SIGTERM);
    let stopping = tokio::task::block_in_place(|| sd.next(WAIT));
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    assert_eq!(lb.wait_exit(WAIT).await, Some(0));
}

/// Without NOTIFY_SOCKET nothing is sent and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_systemd_nothing_is_sent() {
    let b = EchoBackend::start("b").await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut lb = LbProcess::spawn_with(&lb_yaml(&[listen], &[("b", b.addr)], ""), |cmd| {
        cmd.env_remove("NOTIFY_SOCKET");
    });
    wait_listening(listen).await;
    lb.signal(Signal::SIGTERM);
    assert_eq!(lb.wait_exit(WAIT).await, Some(0));
    assert!(!lb.log().contains("notification not sent"), "{}", lb.log());
}
