//! The control plane in-process: reload applied slice by slice (only changed checks restart,
//! the metrics endpoint moves), the VIP-less shutdown order, and events reaching metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apilb::config::Config;
use apilb::control::{Control, Server};
use tokio::net::TcpListener;

use crate::support::*;

/// A TCP listener that counts the connections it accepts (each TCP check is one).
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Counting {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Self { addr, accepted }
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, "test.yaml").expect("valid test config")
}

/// Only the checks whose settings changed restart: a restarted check probes again within
/// `fastInterval`, an untouched one waits out its hour-long interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_restarts_only_the_checks_that_changed() {
    let a = Counting::start().await;
    let b = Counting::start().await;
    let yaml = |b_fall: u32| {
        format!(
            "listen: [\"127.0.0.1:0\"]\n\
             health: {{kind: tcp, interval: 1h, fastInterval: 20ms, timeout: 1s}}\n\
             backends:\n  - {{name: a, address: \"{}\"}}\n  - {{name: b, address: \"{}\", health: {{fall: {b_fall}}}}}\n",
            a.addr, b.addr
        )
    };
    let lb = Server::start(config(&yaml(2)), Path::new("test.yaml"))
        .await
        .expect("starts");
    // Each check task probes once at its random offset (at most fastInterval), then waits.
    wait_until(WAIT, "first probes", || async {
        a.count() == 1 && b.count() == 1
    })
    .await;
    assert_eq!(lb.running_checks(), 2);

    let report = lb.reload(config(&yaml(3))).await.expect("reload");
    assert_eq!(report.checks_restarted, ["b"]);
    assert!(report.backends.is_empty(), "{:?}", report.backends);
    wait_until(WAIT, "b probed again after its restart", || async {
        b.count() == 2
    })
    .await;
    // a's check was left alone: no new probe (its next one is an hour away).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.count(), 1, "a's check was not restarted");
    assert_eq!(lb.running_checks(), 2);

    // An unchanged reload restarts nothing.
    let report = lb.reload(config(&yaml(3))).await.expect("reload");
    assert!(report.checks_restarted.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((a.count(), b.count()), (1, 2));
    lb.shutdown(Duration::from_secs(1)).await;
}

/// `metrics.listen` can move on reload: the new address answers, the old one stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_moves_on_reload() {
    let b = EchoBackend::start("b").await;
    let first: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let second: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let yaml = |m: SocketAddr| {
        lb_yaml(
            &["127.0.0.1:0".parse().expect("addr")],
            &[("b", b.addr)],
            &format!("metrics: {{listen: \"{m}\"}}\n"),
        )
    };
    let lb = Server::start(config(&yaml(first)), Path::new("test.yaml"))
        .await
        .expect("starts");
    assert_eq!(lb.admin_addr(), Some(first));
    assert_eq!(http_get(first, "/healthz").await.0, 200);

    // A busy new address is refused and the endpoint stays where it was.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr");
    let err = lb.reload(config(&yaml(busy))).await.expect_err("busy");
    assert!(
        apilb::errors::chain(&err).contains("Address already in use"),
        "{err}"
    );
    assert_eq!(http_get(first, "/healthz").await.0, 200);

    lb.reload(config(&yaml(second))).await.expect("reload");
    assert_eq!(lb.admin_addr(), Some(second));
    assert_eq!(http_get(second, "/healthz").await.0, 200);
    wait_until(WAIT, "old metrics address closed", || async {
        tokio::net::TcpStream::connect(first).await.is_err()
    })
    .await;
    lb.shutdown(Duration::from_secs(1)).await;
}

/// The control loop: a Reload message re-reads the file (a bad file keeps the running
/// config and is counted), Shutdown drains and stops the admin endpoint last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_reload_from_the_file_then_shut_down_in_order() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("apilb.yaml");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let yaml = |name: &str, addr: SocketAddr| {
        lb_yaml(
            &[listen],
            &[(name, addr)],
            &format!("metrics: {{listen: \"{metrics}\"}}\ntimeouts: {{drain: 2s}}\n"),
        )
    };
    std::fs::write(&path, yaml("a", a.addr)).expect("write");
    let lb = Server::start(Config::load(&path).expect("valid"), &path)
        .await
        .expect("starts");
    let m = lb.metrics().clone();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let running = tokio::spawn(lb.run(rx));
    assert_eq!(which_backend(listen).await, "a");

    std::fs::write(&path, "listen: [oops\n").expect("write");
    tx.send(Control::Reload).await.expect("send");
    wait_until(WAIT, "failed reload counted", || async {
        m.reloads.with_label_values(&["failed"]).get() == 1
    })
    .await;
    assert_eq!(which_backend(listen).await, "a", "the running config stays");

    std::fs::write(&path, yaml("b", b.addr)).expect("write");
    tx.send(Control::Reload).await.expect("send");
    wait_until(WAIT, "reload applied", || async {
        m.reloads.with_label_values(&["ok"]).get() == 1
    })
    .await;
    assert_eq!(which_backend(listen).await, "b");

    // An open connection keeps the drain going; meanwhile the listener is closed and the
    // admin endpoint still answers (it stops last).
    let (mut open, _) = connect_tagged(listen).await;
    // Earlier probes' connections may still be closing on a busy machine.
    wait_until(WAIT, "only this connection open", || async {
        let (_, body) = http_get(metrics, "/metrics").await;
        body.lines().any(|l| l == "apilb_connections_active 1")
    })
    .await;
    tx.send(Control::Shutdown).await.expect("send");
    wait_until(WAIT, "listener closed", || async {
        tokio::net::TcpStream::connect(listen).await.is_err()
    })
    .await;
    assert_eq!(
        http_get(metrics, "/healthz").await.0,
        200,
        "admin answers during the drain"
    );
    roundtrip(&mut open, b"still served while draining").await;
    drop(open);
    let report = tokio::time::timeout(WAIT, running)
        .await
        .expect("stops")
        .expect("no panic");
    // At least the held connection was open (a probe of the closing listener may have
    // been accepted just before it closed); none had to be cut.
    assert!(report.open_at_start >= 1, "{report:?}");
    assert_eq!(report.cut, 0);
}
