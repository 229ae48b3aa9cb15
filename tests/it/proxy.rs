//! The data plane in-process, over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use apilb::config::Config;
use apilb::control::Server;
use apilb::health::state::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Start a server on `yaml` with `workers` data-plane workers.
async fn start(workers: usize, yaml: &str) -> Server {
    let config =
        Config::from_yaml(&with_workers(workers, yaml), "test.yaml").expect("valid test config");
    Server::start(config, std::path::Path::new("test.yaml"))
        .await
        .expect("server starts")
}

/// `yaml` with `workers: N` added (reloads keep the running worker count).
fn with_workers(workers: usize, yaml: &str) -> String {
    format!("{yaml}\nworkers: {workers}\n")
}

fn any_port() -> Vec<SocketAddr> {
    vec!["127.0.0.1:0".parse().expect("addr")]
}

/// Deterministic pseudo-random bytes (xorshift), so corruption cannot hide in a pattern.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Send `len` bytes through the LB to an echo backend while reading the echo concurrently;
/// both directions carry every byte, in order.
async fn transfer_exact(workers: usize, forwarding: &str, len: usize) {
    let b = EchoBackend::start("b1").await;
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("b1", b.addr)],
            &format!("forwarding: {forwarding}\n"),
        ),
    )
    .await;
    let (s, name) = connect_tagged(lb.local_addrs()[0]).await;
    assert_eq!(name, "b1");
    let data = payload(len, 0x9e37_79b9_7f4a_7c15);
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        // Uneven chunk sizes exercise partial reads and writes.
        let mut off = 0;
        let mut step = 1;
        while off < sent.len() {
            let end = (off + step).min(sent.len());
            w.write_all(&sent[off..end]).await.expect("write");
            off = end;
            step = (step * 7 + 13) % 200_000 + 1;
        }
        w.shutdown().await.expect("shutdown write");
    });
    let mut got = Vec::with_capacity(len);
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("echo within a minute")
        .expect("read echo");
    writer.await.expect("writer");
    assert_eq!(got.len(), data.len(), "byte count");
    assert!(got == data, "bytes differ");
    lb.shutdown(Duration::from_secs(1)).await;
}

async fn transfers_32_mib_both_ways_byte_exact_with_splice(workers: usize) {
    transfer_exact(workers, "splice", 32 << 20).await;
}

async fn transfers_32_mib_both_ways_byte_exact_with_copy(workers: usize) {
    transfer_exact(workers, "copy", 32 << 20).await;
}

/// auto starts copying and switches to splice mid-stream once a read fills the buffer.
async fn transfers_32_mib_both_ways_byte_exact_with_auto(workers: usize) {
    transfer_exact(workers, "auto", 32 << 20).await;
}

/// Client sends its request and half-closes; the backend sees EOF, and its reply still
/// flows back after that.
async fn client_half_close_reaches_backend_and_reply_still_flows(workers: usize) {
    for forwarding in ["splice", "copy", "auto"] {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let baddr = backend.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = backend.accept().await.expect("accept");
            let mut req = Vec::new();
            s.read_to_end(&mut req).await.expect("read to client's EOF");
            // Only after the client's FIN: answer, a lot, then close.
            let reply = payload(4 << 20, req.len() as u64);
            s.write_all(&reply).await.expect("reply");
            s.shutdown().await.expect("close");
            req
        });
        let lb = start(
            workers,
            &lb_yaml(
                &any_port(),
                &[("b", baddr)],
                &format!("forwarding: {forwarding}\n"),
            ),
        )
        .await;
        let mut c = TcpStream::connect(lb.local_addrs()[0])
            .await
            .expect("connect");
        c.write_all(b"GET /watch").await.expect("write");
        c.shutdown().await.expect("half-close");
        let mut reply = Vec::new();
        tokio::time::timeout(WAIT, c.read_to_end(&mut reply))
            .await
            .expect("reply within the wait")
            .expect("read reply");
        assert_eq!(reply, payload(4 << 20, 10), "{forwarding}");
        assert_eq!(server.await.expect("server"), b"GET /watch");
    }
}

/// The backend half-closes first; the client reads EOF and can still send, and the backend
/// receives it.
async fn backend_half_close_reaches_client_and_client_can_still_send(workers: usize) {
    for forwarding in ["splice", "copy", "auto"] {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let baddr = backend.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = backend.accept().await.expect("accept");
            s.write_all(b"banner").await.expect("write");
            s.shutdown().await.expect("half-close");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.expect("read after own FIN");
            rest
        });
        let lb = start(
            workers,
            &lb_yaml(
                &any_port(),
                &[("b", baddr)],
                &format!("forwarding: {forwarding}\n"),
            ),
        )
        .await;
        let mut c = TcpStream::connect(lb.local_addrs()[0])
            .await
            .expect("connect");
        let mut banner = Vec::new();
        tokio::time::timeout(WAIT, c.read_to_end(&mut banner))
            .await
            .expect("EOF within the wait")
            .expect("read");
        assert_eq!(banner, b"banner");
        let upload = payload(2 << 20, 3);
        c.write_all(&upload).await.expect("send after EOF");
        c.shutdown().await.expect("close");
        let got = tokio::time::timeout(WAIT, server)
            .await
            .expect("server done")
            .expect("server");
        assert!(got == upload, "{forwarding}: upload differs");
    }
}

/// With passive detection off, every connection that the selector sends to the dead
/// backend is retried on the live one; each refusal is counted.
async fn refused_backend_is_skipped_and_counted(workers: usize) {
    let live = EchoBackend::start("live").await;
    let dead = dead_addr();
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("dead", dead), ("live", live.addr)],
            "balance: round-robin
health: {kind: none, passiveFall: 0}
",
        ),
    )
    .await;
    let addr = lb.local_addrs()[0];
    for _ in 0..6 {
        let (mut s, name) = connect_tagged(addr).await;
        assert_eq!(name, "live");
        roundtrip(&mut s, b"ping").await;
    }
    let m = lb.metrics();
    let refused = m
        .connect_failures
        .with_label_values(&["dead", "refused"])
        .get();
    assert!(
        refused >= 3,
        "round-robin tried the dead backend: {refused}"
    );
    let dead_b = lb.backends().find("dead").expect("dead backend");
    assert_eq!(u64::from(dead_b.consecutive_failures()), refused);
    assert_eq!(dead_b.state(), State::Up, "passive detection is off");
    assert_eq!(m.failed.with_label_values(&["no_backend"]).get(), 0);
}

/// Passive detection (default passiveFall 1): the first refusal marks the backend down, and
/// later clients are not sent to it at all.
async fn a_refused_connect_marks_the_backend_down_at_once(workers: usize) {
    let live = EchoBackend::start("live").await;
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("dead", dead_addr()), ("live", live.addr)],
            "balance: round-robin
health: {interval: 1h, fastInterval: 1h}
",
        ),
    )
    .await;
    let addr = lb.local_addrs()[0];
    for _ in 0..6 {
        assert_eq!(which_backend(addr).await, "live");
    }
    let m = lb.metrics();
    assert_eq!(
        m.connect_failures
            .with_label_values(&["dead", "refused"])
            .get(),
        1
    );
    let dead = lb.backends().find("dead").expect("dead");
    assert_eq!(dead.state(), State::Down);
    assert!(dead.health().reason().contains("client connect failed"));
    assert_eq!(
        m.transitions
            .with_label_values(&["dead", "up", "down"])
            .get(),
        1
    );
}

async fn connect_timeout_moves_on_to_the_next_backend(workers: usize) {
    // A listener with a backlog of 1 that never accepts: once its queue is full, further
    // SYNs get no answer, so a connect hangs until the connect timeout.
    let blackhole =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    blackhole
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    blackhole.listen(0).expect("listen");
    let hole: SocketAddr = blackhole
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    // Fill its queue.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(hole)).await
        {
            fillers.push(s);
        }
    }
    let live = EchoBackend::start("live").await;
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("hole", hole), ("live", live.addr)],
            "balance: round-robin\ntimeouts: {connect: 200ms}\n",
        ),
    )
    .await;
    for _ in 0..2 {
        let (_s, name) = connect_tagged(lb.local_addrs()[0]).await;
        assert_eq!(name, "live");
    }
    assert!(
        lb.metrics()
            .connect_failures
            .with_label_values(&["hole", "timeout"])
            .get()
            >= 1
    );
}

async fn all_backends_down_closes_the_client_promptly(workers: usize) {
    let lb = start(
        workers,
        &lb_yaml(&any_port(), &[("a", dead_addr()), ("b", dead_addr())], ""),
    )
    .await;
    let mut c = TcpStream::connect(lb.local_addrs()[0])
        .await
        .expect("connect");
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    let m = lb.metrics();
    assert_eq!(m.failed.with_label_values(&["no_backend"]).get(), 1);
    assert_eq!(
        m.connect_failures
            .with_label_values(&["a", "refused"])
            .get(),
        1
    );
    assert_eq!(
        m.connect_failures
            .with_label_values(&["b", "refused"])
            .get(),
        1
    );
    wait_until(WAIT, "connection released", || async {
        lb.active_connections() == 0
    })
    .await;
}

/// A one-second idle timeout (the shortest allowed) closes a quiet connection after that
/// second, while one that speaks every 300 ms lives on past two timeouts. Real time: the
/// timers run on the data-plane workers' own clocks.
async fn idle_connections_are_closed_and_busy_ones_kept(workers: usize) {
    let b = EchoBackend::start("b").await;
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("b", b.addr)],
            "timeouts: {idle: 1s}\nhealth: {kind: none}\n",
        ),
    )
    .await;
    let addr = lb.local_addrs()[0];
    // Before the idle connection's last byte (its backend's tag), so `at` is no shorter
    // than the time the connection was really quiet.
    let started = tokio::time::Instant::now();
    let (mut idle, _) = connect_tagged(addr).await;
    let (mut busy, _) = connect_tagged(addr).await;
    let idle_closed = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        let n = idle.read(&mut buf).await;
        (n.map_err(|e| e.kind()), started.elapsed())
    });
    // Busy past two idle timeouts, a byte every 300 ms.
    for _ in 0..8 {
        roundtrip(&mut busy, b"x").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (read, at) = idle_closed.await.expect("reader");
    assert_eq!(read, Ok(0), "the idle connection got EOF");
    assert!(
        at >= Duration::from_secs(1) && at < Duration::from_millis(2500),
        "closed after {at:?}, want the idle timeout (1s)"
    );
    roundtrip(&mut busy, b"still here").await;
    assert_eq!(lb.metrics().closed.get("idle_timeout"), 1);
}

/// A backend leg that lives on gets the keepalive of `tcp.keepaliveTime` (set a second
/// after it opened, so short connections skip the calls), seen from outside with `ss`: the
/// kernel runs a keepalive timer on apilb's socket to the backend.
async fn long_lived_backend_legs_get_keepalive(workers: usize) {
    if !have_tool("ss", "iproute2") {
        return;
    }
    let b = EchoBackend::start("b").await;
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("b", b.addr)],
            "tcp: {keepaliveTime: 7s}
health: {kind: none}
",
        ),
    )
    .await;
    let (mut c, _) = connect_tagged(lb.local_addrs()[0]).await;
    let legs = || {
        let out = std::process::Command::new("ss")
            .args(["-tnoH", "state", "established", "dst", &b.addr.to_string()])
            .output()
            .expect("ss");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(WAIT, "a keepalive timer on the backend leg", || async {
        legs().contains("timer:(keepalive,")
    })
    .await;
    let table = legs();
    assert_eq!(table.lines().count(), 1, "{table}");
    roundtrip(&mut c, b"still here").await;
}

async fn max_connections_closes_extra_clients_at_once(workers: usize) {
    let b = EchoBackend::start("b").await;
    let lb = start(
        workers,
        &lb_yaml(&any_port(), &[("b", b.addr)], "maxConnections: 2\n"),
    )
    .await;
    let addr = lb.local_addrs()[0];
    let (mut c1, _) = connect_tagged(addr).await;
    let (mut c2, _) = connect_tagged(addr).await;
    let mut c3 = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut c3, Duration::from_secs(2)).await,
        "third closed"
    );
    assert_eq!(
        lb.metrics()
            .rejected
            .with_label_values(&["max_connections"])
            .get(),
        1
    );
    roundtrip(&mut c1, b"one").await;
    roundtrip(&mut c2, b"two").await;
    drop(c1);
    wait_until(WAIT, "slot freed", || async {
        lb.active_connections() == 1
    })
    .await;
    let (mut c4, _) = connect_tagged(addr).await;
    roundtrip(&mut c4, b"four").await;
}

async fn least_connections_spreads_and_follows_load(workers: usize) {
    let bs = [
        EchoBackend::start("a").await,
        EchoBackend::start("b").await,
        EchoBackend::start("c").await,
    ];
    let lb = start(
        workers,
        &lb_yaml(
            &any_port(),
            &[("a", bs[0].addr), ("b", bs[1].addr), ("c", bs[2].addr)],
            "",
        ),
    )
    .await;
    let addr = lb.local_addrs()[0];
    let mut held: Vec<(TcpStream, String)> = Vec::new();
    for _ in 0..9 {
        held.push(connect_tagged(addr).await);
    }
    let count = |held: &[(TcpStream, String)], n: &str| held.iter().filter(|h| h.1 == n).count();
    for n in ["a", "b", "c"] {
        assert_eq!(count(&held, n), 3, "{n}");
    }
    // Close the three on "a": the next three all go to "a", the least loaded.
    held.retain(|h| h.1 != "a");
    let a = lb
        .backends()
        .snapshot()
        .iter()
        .find(|b| b.name() == "a")
        .cloned()
        .expect("a");
    wait_until(WAIT, "a's connections closed", || async { a.active() == 0 }).await;
    for _ in 0..3 {
        let (s, name) = connect_tagged(addr).await;
        assert_eq!(name, "a");
        held.push((s, name));
    }
    drop(held);
    wait_until(WAIT, "all closed", || async {
        lb.active_connections() == 0
    })
    .await;
}

async fn weighted_round_robin_follows_weights(workers: usize) {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let yaml = format!(
        "listen: [\"127.0.0.1:0\"]\nbackends:\n  - {{name: a, address: \"{}\", weight: 3}}\n  - {{name: b, address: \"{}\"}}\nbalance: round-robin\n",
        a.addr, b.addr
    );
    let lb = start(workers, &yaml).await;
    let mut seq = String::new();
    for _ in 0..8 {
        seq.push_str(&which_backend(lb.local_addrs()[0]).await);
    }
    assert_eq!(seq, "aabaaaba");
}

async fn reload_changes_backends_and_listeners_without_dropping_connections(workers: usize) {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let first: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let lb = start(workers, &lb_yaml(&[first], &[("a", a.addr)], "")).await;
    let (mut old_conn, name) = connect_tagged(first).await;
    assert_eq!(name, "a");

    // Swap a for b and add a second listener; the first listener keeps its socket.
    let second: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let yaml = lb_yaml(&[first, second], &[("b", b.addr)], "");
    let report = lb
        .reload(Config::from_yaml(&with_workers(workers, &yaml), "new.yaml").expect("valid"))
        .await
        .expect("reload");
    assert_eq!(report.backends.added, ["b"]);
    assert_eq!(report.backends.removed, ["a"]);
    assert_eq!(report.proxy.listeners_added, [second]);
    assert!(report.proxy.listeners_removed.is_empty());
    assert_eq!(lb.local_addrs(), [first, second]);
    assert_eq!(which_backend(first).await, "b");
    assert_eq!(which_backend(second).await, "b");
    // The connection to the removed backend still works.
    roundtrip(&mut old_conn, b"still flowing").await;

    // Drop the first listener: it stops accepting, its connection goes on.
    let yaml = lb_yaml(&[second], &[("b", b.addr)], "");
    let report = lb
        .reload(Config::from_yaml(&with_workers(workers, &yaml), "new.yaml").expect("valid"))
        .await
        .expect("reload");
    assert_eq!(report.proxy.listeners_removed, [first]);
    wait_until(WAIT, "first listener closed", || async {
        TcpStream::connect(first).await.is_err()
    })
    .await;
    roundtrip(&mut old_conn, b"and still").await;
}

async fn reload_with_an_unbindable_listener_changes_nothing(workers: usize) {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let first: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let lb = start(workers, &lb_yaml(&[first], &[("a", a.addr)], "")).await;
    // A port someone else holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let yaml = lb_yaml(&[first, taken_addr], &[("b", b.addr)], "");
    let err = lb
        .reload(Config::from_yaml(&with_workers(workers, &yaml), "new.yaml").expect("valid"))
        .await
        .expect_err("bind must fail");
    assert!(err.to_string().contains(&taken_addr.to_string()), "{err}");
    assert_eq!(which_backend(first).await, "a", "old backends still in use");
}

async fn shutdown_drains_then_cuts_at_the_deadline(workers: usize) {
    let b = EchoBackend::start("b").await;
    let lb = start(workers, &lb_yaml(&any_port(), &[("b", b.addr)], "")).await;
    let addr = lb.local_addrs()[0];
    let (mut finishing, _) = connect_tagged(addr).await;
    let (mut lingering, _) = connect_tagged(addr).await;
    let drain = async { lb.shutdown(Duration::from_millis(1500)).await };
    let client = async {
        // Listener closes at once.
        wait_until(WAIT, "listener closed", || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await;
        // Established connections still work during the drain.
        roundtrip(&mut finishing, b"last words").await;
        roundtrip(&mut lingering, b"me too").await;
        drop(finishing);
        // The lingering one is cut at the deadline.
        assert!(closed_within(&mut lingering, WAIT).await);
    };
    let (report, ()) = tokio::join!(drain, client);
    assert_eq!(report.open_at_start, 2);
    assert_eq!(report.cut, 1);
}

/// A DNS-named backend follows the answers of a DNS server the test runs: each address is
/// its own endpoint, changes apply live, and a failing server leaves the last good answer.
async fn dns_named_backends_follow_live_answers(workers: usize) {
    let dns = crate::support::dns::TestDns::start().await;
    // Two stand-ins on the same port of two loopback addresses.
    let (two, three) = loop {
        let two = EchoBackend::start_on("two", "127.0.0.2:0".parse().expect("addr")).await;
        let port = two.addr.port();
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.3", port)) {
            drop(l);
            let three =
                EchoBackend::start_on("three", SocketAddr::from(([127, 0, 0, 3], port))).await;
            break (two, three);
        }
    };
    let port = two.addr.port();
    let name = "api.apilb-test.internal";
    dns.set(name, &["127.0.0.2".parse().expect("ip")], 1);
    let yaml = format!(
        "listen: [\"127.0.0.1:0\"]\nbackends:\n  - {{name: api, address: \"{name}:{port}\"}}\nresolvers: [\"{}\"]\ndnsTtl: {{min: 100ms, max: 1s}}\nhealth: {{kind: tcp, interval: 100ms, fastInterval: 50ms}}\n",
        dns.addr
    );
    let lb = start(workers, &yaml).await;
    let addr = lb.local_addrs()[0];
    wait_until(WAIT, "first answer applied", || async {
        lb.backends().find_all("api").len() == 1
    })
    .await;
    let (mut held, first) = connect_tagged(addr).await;
    assert_eq!(first, "two");
    assert!(
        lb.backends()
            .find(&format!("api/127.0.0.2:{port}"))
            .is_some()
    );

    // The answer changes: new connections follow; the old one keeps flowing.
    dns.set(name, &["127.0.0.3".parse().expect("ip")], 1);
    wait_until(WAIT, "new answer applied", || async {
        lb.backends()
            .find(&format!("api/127.0.0.3:{port}"))
            .is_some()
            && lb.backends().find_all("api").len() == 1
    })
    .await;
    for _ in 0..3 {
        assert_eq!(which_backend(addr).await, "three");
    }
    roundtrip(&mut held, b"still here").await;

    // Two addresses: two endpoints, both used.
    dns.set(
        name,
        &[
            "127.0.0.2".parse().expect("ip"),
            "127.0.0.3".parse().expect("ip"),
        ],
        1,
    );
    wait_until(WAIT, "two endpoints", || async {
        lb.backends().find_all("api").len() == 2
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(which_backend(addr).await);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // The server fails: the last good answer stays, and failures are counted.
    dns.set_failing(true);
    let m = lb.metrics();
    wait_until(WAIT, "a failed lookup counted", || async {
        m.dns_lookups.with_label_values(&["api", "failed"]).get() >= 2
    })
    .await;
    assert_eq!(lb.backends().find_all("api").len(), 2);
    assert_eq!(m.dns_endpoints.with_label_values(&["api"]).get(), 2);
    assert!(["two", "three"].contains(&which_backend(addr).await.as_str()));
    drop(three);
}

async fn ipv6_listener_and_backend(workers: usize) {
    let probe = match std::net::TcpListener::bind("[::1]:0") {
        Ok(probe) => probe,
        Err(e) => {
            crate::support::skip_or_fail(&format!("cannot bind [::1]:0 ({e}): no IPv6 loopback"));
            return;
        }
    };
    drop(probe);
    let b = EchoBackend::start_on("v6", "[::1]:0".parse().expect("addr")).await;
    let lb = start(
        workers,
        &lb_yaml(&["[::1]:0".parse().expect("addr")], &[("v6", b.addr)], ""),
    )
    .await;
    let addr = lb.local_addrs()[0];
    assert!(addr.is_ipv6());
    let (mut s, name) = connect_tagged(addr).await;
    assert_eq!(name, "v6");
    roundtrip(&mut s, b"six").await;
}

async fn reweighting_takes_effect_live(workers: usize) {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let yaml = |wa: u32| {
        format!(
            "listen: [\"{listen}\"]\nbackends:\n  - {{name: a, address: \"{}\", weight: {wa}}}\n  - {{name: b, address: \"{}\"}}\nbalance: round-robin\n",
            a.addr, b.addr
        )
    };
    let lb = start(workers, &yaml(1)).await;
    let report = lb
        .reload(Config::from_yaml(&with_workers(workers, &yaml(4)), "w.yaml").expect("valid"))
        .await
        .expect("reload");
    assert_eq!(report.backends.reweighted, ["a"]);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..10 {
        *counts.entry(which_backend(listen).await).or_insert(0) += 1;
    }
    assert_eq!(counts["a"], 8);
    assert_eq!(counts["b"], 2);
}

/// With `accept: reusePort`, 200 connections from loopback land on all four workers (the
/// kernel hashes the client's port), and with either mode the per-worker counts add up to
/// the accepted total. Byte counters summed over the workers equal the bytes the clients
/// sent and received, exactly.
async fn connections_spread_over_workers_and_sums_are_exact(accept: &str, all_workers: bool) {
    let b = EchoBackend::start("b").await;
    let lb = start(
        4,
        &lb_yaml(
            &any_port(),
            &[("b", b.addr)],
            &format!("listener: {{accept: {accept}}}\nhealth: {{kind: none}}\n"),
        ),
    )
    .await;
    let addr = lb.local_addrs()[0];
    let (mut sent, mut received) = (0u64, 0u64);
    let mut clients = Vec::new();
    for i in 0..200u64 {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let msg = payload(1 + (i as usize * 97) % 5000, i);
            s.write_all(&msg).await.expect("write");
            s.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            tokio::time::timeout(WAIT, s.read_to_end(&mut back))
                .await
                .expect("echo within the wait")
                .expect("read");
            assert_eq!(&back[2..], &msg[..], "tag, then the echo");
            (msg.len() as u64, back.len() as u64)
        }));
    }
    for c in clients {
        let (up, down) = c.await.expect("client");
        sent += up;
        received += down;
    }
    wait_until(WAIT, "every connection closed", || async {
        lb.active_connections() == 0
    })
    .await;
    let m = lb.metrics();
    let per_worker: Vec<u64> = (0..4)
        .map(|w| m.worker_accepted.with_label_values(&[&w.to_string()]).get())
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 200, "{per_worker:?}");
    assert_eq!(m.accepted.total(), 200);
    if all_workers {
        assert!(
            per_worker.iter().all(|&n| n > 0),
            "every worker accepted some: {per_worker:?}"
        );
    }
    assert_eq!(m.bytes.get("client_to_backend"), sent);
    assert_eq!(m.bytes.get("backend_to_client"), received);
    assert_eq!(m.closed.get("eof"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_spreads_connections_over_every_worker() {
    connections_spread_over_workers_and_sums_are_exact("reusePort", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_listener_counts_exactly_across_workers() {
    connections_spread_over_workers_and_sums_are_exact("shared", false).await;
}

/// Every test above, with one worker and with four (more workers than this machine's cores).
macro_rules! for_worker_counts {
    ($($name:ident),* $(,)?) => {
        mod workers_1 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(1).await
                }
            )*
        }
        mod workers_4 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(4).await
                }
            )*
        }
    };
}

for_worker_counts!(
    transfers_32_mib_both_ways_byte_exact_with_splice,
    transfers_32_mib_both_ways_byte_exact_with_copy,
    transfers_32_mib_both_ways_byte_exact_with_auto,
    client_half_close_reaches_backend_and_reply_still_flows,
    backend_half_close_reaches_client_and_client_can_still_send,
    refused_backend_is_skipped_and_counted,
    a_refused_connect_marks_the_backend_down_at_once,
    connect_timeout_moves_on_to_the_next_backend,
    all_backends_down_closes_the_client_promptly,
    idle_connections_are_closed_and_busy_ones_kept,
    long_lived_backend_legs_get_keepalive,
    max_connections_closes_extra_clients_at_once,
    least_connections_spreads_and_follows_load,
    weighted_round_robin_follows_weights,
    reload_changes_backends_and_listeners_without_dropping_connections,
    reload_with_an_unbindable_listener_changes_nothing,
    shutdown_drains_then_cuts_at_the_deadline,
    dns_named_backends_follow_live_answers,
    ipv6_listener_and_backend,
    reweighting_takes_effect_live,
);
