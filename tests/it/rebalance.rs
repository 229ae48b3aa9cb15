//! Rebalancing on loopback: a backend returns and long-lived, client-go-like connections
//! are moved onto it with no request lost, closed with FIN (never RST) on both legs; the
//! operator's trigger (CLI and `POST /rebalance`); the metrics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apilb::config::Config;
use apilb::control::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// What the stand-in apiservers saw end: FIN (EOF) or RST.
#[derive(Default)]
struct ServerTally {
    eofs: AtomicUsize,
    resets: AtomicUsize,
}

/// A stand-in apiserver on a line protocol: `REQ id` is answered `RESP id NAME`; EOF from
/// the client closes the connection (as an apiserver does). `stop` closes the listener and
/// every connection, as a crash would.
struct StandIn {
    addr: SocketAddr,
    stop: CancellationToken,
    tally: Arc<ServerTally>,
}

impl StandIn {
    async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind stand-in");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let tally = Arc::new(ServerTally::default());
        let (name, token, t) = (name.to_owned(), stop.clone(), Arc::clone(&tally));
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    () = token.cancelled() => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => return },
                };
                let (name, token, t) = (name.clone(), token.clone(), Arc::clone(&t));
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r);
                    loop {
                        let mut line = String::new();
                        let got = tokio::select! {
                            () = token.cancelled() => return,
                            g = lines.read_line(&mut line) => g,
                        };
                        match got {
                            Ok(0) => {
                                t.eofs.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Ok(_) => {
                                let id = line.trim().trim_start_matches("REQ ");
                                let answer = format!("RESP {id} {name}\n");
                                if w.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                if e.kind() == std::io::ErrorKind::ConnectionReset {
                                    t.resets.fetch_add(1, Ordering::SeqCst);
                                }
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, stop, tally }
    }
}

/// What the clients saw.
#[derive(Default)]
struct ClientTally {
    /// Requests answered in full.
    ok: AtomicUsize,
    /// Requests answered wrongly or partly, or hit by a reset.
    failed: AtomicUsize,
    /// Requests resent because the connection ended (EOF) before the answer.
    retried: AtomicUsize,
    /// Connections that ended with EOF while idle (a graceful close).
    idle_eofs: AtomicUsize,
    /// Connections that ended with RST.
    resets: AtomicUsize,
}

impl ClientTally {
    fn get(&self) -> [usize; 5] {
        [
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.retried.load(Ordering::SeqCst),
            self.idle_eofs.load(Ordering::SeqCst),
            self.resets.load(Ordering::SeqCst),
        ]
    }
}

/// A client-go-like client from its own loopback address 127.0.1.`i`: one long-lived
/// connection, a request now and then (its full answer read), idle in between, and on EOF
/// an immediate reconnect (resending a request that got no answer, as client-go does for
/// reads).
async fn client(
    i: u8,
    lb: SocketAddr,
    idle: Duration,
    t: Arc<ClientTally>,
    stop: CancellationToken,
) {
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)), 0);
    let mut n = 0u64;
    let mut resend = false;
    'connect: loop {
        if stop.is_cancelled() {
            return;
        }
        let sock = TcpSocket::new_v4().expect("socket");
        sock.bind(local).expect("bind client address");
        let Ok(s) = sock.connect(lb).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        loop {
            if !resend {
                n += 1;
            }
            resend = false;
            let want = format!("RESP {i}-{n} ");
            if w.write_all(format!("REQ {i}-{n}\n").as_bytes())
                .await
                .is_err()
            {
                resend = true;
                continue 'connect;
            }
            let mut line = String::new();
            match tokio::time::timeout(WAIT, r.read_line(&mut line)).await {
                Ok(Ok(0)) => {
                    t.retried.fetch_add(1, Ordering::SeqCst);
                    resend = true;
                    continue 'connect;
                }
                Ok(Ok(_)) if line.starts_with(&want) && line.ends_with('\n') => {
                    t.ok.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    t.resets.fetch_add(1, Ordering::SeqCst);
                    t.failed.fetch_add(1, Ordering::SeqCst);
                    continue 'connect;
                }
                _ => {
                    t.failed.fetch_add(1, Ordering::SeqCst);
                    continue 'connect;
                }
            }
            // Idle, watching for the server's EOF.
            let mut extra = String::new();
            tokio::select! {
                biased;
                g = r.read_line(&mut extra) => {
                    match g {
                        Ok(0) => {
                            t.idle_eofs.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            t.resets.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            t.failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    continue 'connect;
                }
                () = tokio::time::sleep(idle) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn metrics_text(server: &Server) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&server.registry().gather(), &mut buf)
        .expect("encode");
    String::from_utf8(buf).expect("utf-8")
}

fn active(server: &Server, name: &str) -> usize {
    server.backends().find(name).map_or(0, |b| b.active())
}

const HEALTH: &str = "health: {kind: tcp, interval: 100ms, fastInterval: 50ms, timeout: 500ms, rise: 1, fall: 1, slowStart: 1s}\n";

/// Input: B is down while 12 clients connect (all land on A); B comes back. Output: within
/// the wait A and B hold 6 each; exactly the 6 excess connections were closed, each with
/// FIN to the client and to A (no RST anywhere), and every request was answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_backend_gets_its_share_with_no_request_lost() {
    let a = StandIn::start_on("a", "127.0.0.1:0".parse().unwrap()).await;
    let b_addr = dead_addr();
    let yaml = lb_yaml(
        &["127.0.0.1:0".parse().unwrap()],
        &[("a", a.addr), ("b", b_addr)],
        &format!(
            "{HEALTH}rebalance: {{after: 1s, warmup: 1s, minAge: 1s, quiet: 100ms, maxRate: 20, perClient: 1m}}\n"
        ),
    );
    let config = Config::from_yaml(&yaml, "test.yaml").expect("valid");
    let server = Server::start(config, Path::new("test.yaml"))
        .await
        .expect("start");
    let lb = server.local_addrs()[0];
    wait_until(WAIT, "b down", || async {
        server
            .backends()
            .find("b")
            .is_some_and(|b| b.state() == apilb::backend::State::Down)
    })
    .await;

    let tally = Arc::new(ClientTally::default());
    let stop = CancellationToken::new();
    for i in 1..=12 {
        tokio::spawn(client(
            i,
            lb,
            Duration::from_millis(400),
            Arc::clone(&tally),
            stop.clone(),
        ));
    }
    wait_until(WAIT, "12 clients on a, each answered", || async {
        active(&server, "a") == 12 && tally.get()[0] >= 12
    })
    .await;
    let before = tally.get();
    assert_eq!(
        before[1..],
        [0, 0, 0, 0],
        "no trouble before the move: {before:?}"
    );

    let b = StandIn::start_on("b", b_addr).await;
    wait_until(Duration::from_secs(30), "6 and 6", || async {
        active(&server, "a") == 6 && active(&server, "b") == 6
    })
    .await;
    // A moment for any further (wrong) close to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((active(&server, "a"), active(&server, "b")), (6, 6));
    stop.cancel();

    let m = metrics_text(&server);
    let closes = sample(&m, "apilb_rebalance_closes_total{backend=\"a\"}").unwrap_or(0.0);
    assert_eq!(closes, 6.0, "exactly the excess was moved\n{m}");
    assert_eq!(
        sample(&m, "apilb_connections_closed_total{reason=\"rebalance\"}"),
        Some(6.0)
    );
    assert_eq!(
        sample(&m, "apilb_rebalance_close_age_seconds_count"),
        Some(6.0)
    );
    let [ok, failed, retried, idle_eofs, resets] = tally.get();
    assert_eq!(
        (failed, resets),
        (0, 0),
        "no request lost, no RST seen by a client"
    );
    assert_eq!(idle_eofs, 6, "each moved client saw a clean EOF while idle");
    assert!(
        retried <= 1,
        "{retried} requests met a close (the L4 race is microseconds wide)"
    );
    assert!(ok > before[0]);
    assert_eq!(a.tally.resets.load(Ordering::SeqCst), 0, "a saw no RST");
    assert!(
        a.tally.eofs.load(Ordering::SeqCst) >= 6,
        "a saw a FIN for each moved connection"
    );
    assert_eq!(b.tally.resets.load(Ordering::SeqCst), 0);
    let status = server.rebalance().status();
    assert_eq!((status.state.as_str(), status.closes), ("idle", 6));
    assert!((status.skew - 1.0).abs() < 1e-9, "{status:?}");
    a.stop.cancel();
    b.stop.cancel();
}

/// With automatic rebalancing off, skew stays; `apilb backend rebalance` moves the excess
/// now, `apilb status` shows the state, `POST /rebalance` answers 202 with the status, and
/// the rebalance metrics are present and promtool-clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_trigger_moves_connections_and_metrics_show_it() {
    let a = StandIn::start_on("a", "127.0.0.1:0".parse().unwrap()).await;
    let b_addr = dead_addr();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let yaml = lb_yaml(
        &[listen],
        &[("a", a.addr), ("b", b_addr)],
        &format!(
            "{HEALTH}metrics: {{listen: \"{metrics}\"}}\n\
             rebalance: {{enabled: false, warmup: 0s, minAge: 0s, quiet: 100ms}}\n"
        ),
    );
    let lb = LbProcess::spawn_with(&yaml, |c| {
        c.env("RUST_LOG", "info,apilb::rebalance=debug,apilb::proxy=debug");
    });
    wait_listening(listen).await;
    wait_listening(metrics).await;
    let tally = Arc::new(ClientTally::default());
    let stop = CancellationToken::new();
    for i in 21..=26 {
        tokio::spawn(client(
            i,
            listen,
            Duration::from_millis(400),
            Arc::clone(&tally),
            stop.clone(),
        ));
    }
    let active_of = |body: &str, name: &str| {
        sample(
            body,
            &format!("apilb_backend_active_connections{{backend=\"{name}\"}}"),
        )
    };
    wait_until(WAIT, "6 clients on a", || async {
        let (_, body) = http_get(metrics, "/metrics").await;
        active_of(&body, "a") == Some(6.0)
    })
    .await;
    let b = StandIn::start_on("b", b_addr).await;
    wait_until(WAIT, "b up", || async {
        let (_, body) = http_get(metrics, "/metrics").await;
        sample(&body, "apilb_backend_state{backend=\"b\",state=\"up\"}") == Some(1.0)
    })
    .await;
    // Automatic rebalancing is off: skew 2 stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(active_of(&body, "a"), Some(6.0));
    assert_eq!(sample(&body, "apilb_backend_skew_ratio"), Some(2.0));
    assert_eq!(
        sample(&body, "apilb_rebalance_state{state=\"idle\"}"),
        Some(1.0)
    );
    let out = apilb_cmd(&["status", "--metrics-address", &metrics.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rebalance: idle  skew: 2.00  above share: 3  moved: 0  (automatic off)"),
        "{text}"
    );

    let out = apilb_cmd(&[
        "backend",
        "rebalance",
        "--metrics-address",
        &metrics.to_string(),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with(
            "rebalance requested (was idle; skew 2.00, 3 connections above their share)"
        ),
        "{said}"
    );
    wait_until(WAIT, "3 and 3", || async {
        let (_, body) = http_get(metrics, "/metrics").await;
        active_of(&body, "a") == Some(3.0) && active_of(&body, "b") == Some(3.0)
    })
    .await;
    wait_until(WAIT, "status: 3 moved, idle", || async {
        let (_, body) = http_get(metrics, "/status").await;
        body.contains("\"state\": \"idle\"") && body.contains("\"closes\": 3")
    })
    .await;
    let (code, body) = http(metrics, "POST", "/rebalance").await;
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"closes\": 3"), "{body}");
    let (code, _) = http(metrics, "GET", "/rebalance").await;
    assert_eq!(code, 405);
    stop.cancel();

    let (_, body) = http_get(metrics, "/metrics").await;
    assert_eq!(
        sample(&body, "apilb_rebalance_closes_total{backend=\"a\"}"),
        Some(3.0)
    );
    assert_eq!(sample(&body, "apilb_backend_skew_ratio"), Some(1.0));
    for series in [
        "apilb_rebalance_skipped_total{reason=\"busy\"}",
        "apilb_rebalance_skipped_total{reason=\"young\"}",
        "apilb_rebalance_skipped_total{reason=\"recent_client\"}",
        "apilb_rebalance_skipped_total{reason=\"no_quiet_moment\"}",
        "apilb_rebalance_state{state=\"waiting\"}",
        "apilb_rebalance_state{state=\"shedding\"}",
        "apilb_rebalance_state{state=\"paused\"}",
        "apilb_rebalance_close_age_seconds_count",
    ] {
        assert!(sample(&body, series).is_some(), "{series} missing");
    }
    let [_, failed, _, _, resets] = tally.get();
    assert_eq!((failed, resets), (0, 0));
    assert!(
        lb.log().contains("rebalance triggered by an operator"),
        "{}",
        lb.log()
    );
    promtool_clean(&body);
    a.stop.cancel();
    b.stop.cancel();
}
