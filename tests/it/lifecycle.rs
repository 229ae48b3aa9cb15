//! The `apilb serve` process: SIGHUP reload, SIGTERM drain, descriptor exhaustion.

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::net::TcpStream;

use crate::support::*;

fn lb_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_file_and_keeps_the_old_config_on_an_invalid_one() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let addr = lb_addr();
    let lb = LbProcess::spawn(&lb_yaml(&[addr], &[("a", a.addr)], ""));
    wait_listening(addr).await;
    let (mut held, name) = connect_tagged(addr).await;
    assert_eq!(name, "a");

    // A valid file: a is replaced by b; the open connection to a keeps flowing.
    lb.write_config(&lb_yaml(&[addr], &[("b", b.addr)], ""));
    lb.signal(Signal::SIGHUP);
    lb.wait_for_log("config reloaded").await;
    assert_eq!(which_backend(addr).await, "b");
    roundtrip(&mut held, b"after reload").await;

    // An invalid file: reported, and the running config stays.
    lb.write_config(
        "listen: [\"127.0.0.1:1\"]\nbackends:\n  - {name: c, address: \"10.0.0.300:1\"}\n",
    );
    lb.signal(Signal::SIGHUP);
    lb.wait_for_log("reload failed, keeping the running config")
        .await;
    assert!(
        lb.log()
            .contains("backends[0].address: \"10.0.0.300:1\" is not a valid address"),
        "the problem is named"
    );
    assert_eq!(which_backend(addr).await, "b");
    roundtrip(&mut held, b"after a bad reload").await;
    wait_listening(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_drains_and_exits_zero() {
    let a = EchoBackend::start("a").await;
    let addr = lb_addr();
    let mut lb = LbProcess::spawn(&lb_yaml(
        &[addr],
        &[("a", a.addr)],
        "timeouts: {drain: 30s}\n",
    ));
    wait_listening(addr).await;
    let (mut held, _) = connect_tagged(addr).await;
    lb.signal(Signal::SIGTERM);
    lb.wait_for_log("shutting down: draining").await;
    wait_until(WAIT, "listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    // The established connection finishes its work, then closes; the process then exits
    // long before the 30 s drain deadline.
    roundtrip(&mut held, b"finishing").await;
    drop(held);
    assert_eq!(lb.wait_exit(WAIT).await, Some(0));
    assert!(lb.log().contains("cut=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_connections_left_at_the_drain_deadline() {
    let a = EchoBackend::start("a").await;
    let addr = lb_addr();
    let mut lb = LbProcess::spawn(&lb_yaml(
        &[addr],
        &[("a", a.addr)],
        "timeouts: {drain: 1s}\n",
    ));
    wait_listening(addr).await;
    let (mut held, _) = connect_tagged(addr).await;
    lb.signal(Signal::SIGTERM);
    assert!(closed_within(&mut held, WAIT).await, "cut at the deadline");
    assert_eq!(lb.wait_exit(WAIT).await, Some(0));
    assert!(lb.log().contains("drain deadline reached"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_cuts_at_once() {
    let a = EchoBackend::start("a").await;
    let addr = lb_addr();
    let mut lb = LbProcess::spawn(&lb_yaml(
        &[addr],
        &[("a", a.addr)],
        "timeouts: {drain: 1h}\n",
    ));
    wait_listening(addr).await;
    let (mut held, _) = connect_tagged(addr).await;
    lb.signal(Signal::SIGTERM);
    lb.wait_for_log("shutting down: draining").await;
    roundtrip(&mut held, b"still draining").await;
    lb.signal(Signal::SIGTERM);
    assert!(closed_within(&mut held, WAIT).await);
    assert_eq!(lb.wait_exit(WAIT).await, Some(0));
}

/// With a tiny descriptor limit, accept fails with EMFILE: the proxy backs off and logs
/// once per burst instead of spinning, and serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_backs_off_and_recovers() {
    let a = EchoBackend::start("a").await;
    let addr = lb_addr();
    // prlimit (util-linux) caps both soft and hard limits, so apilb cannot raise them.
    let mut lb = LbProcess::spawn_with_nofile(
        &lb_yaml(&[addr], &[("a", a.addr)], "forwarding: copy\n"),
        48,
    );
    wait_listening(addr).await;
    // Each proxied connection takes two descriptors; 40 clients exhaust 48.
    let mut clients = Vec::new();
    for _ in 0..40 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            clients.push(s);
        }
    }
    lb.wait_for_log("accept failed: out of resources").await;
    // Let it back off for a while: still one warning for the whole burst.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lb.log_count("accept failed: out of resources"),
        1,
        "{}",
        lb.log()
    );
    drop(clients);
    // Once descriptors are free, new clients are served again, and the first accept after
    // a quiet second closes the burst in the log.
    wait_until(WAIT, "served again and the burst closed", || async {
        let (mut s, name) = connect_tagged(addr).await;
        assert_eq!(name, "a");
        roundtrip(&mut s, b"recovered").await;
        lb.log().contains("accepting again after errors")
    })
    .await;
    assert!(
        !lb.log().contains("no backend accepted"),
        "local descriptor exhaustion is not blamed on the backend"
    );
    lb.signal(Signal::SIGTERM);
    assert_eq!(lb.wait_exit(WAIT).await, Some(0));
}
