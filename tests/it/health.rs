//! Health checks against stand-in apiservers (rustls HTTPS on 127.0.0.1): states, routing
//! at each step, hung backends, onDown close, slow start, mutual TLS.

use std::net::SocketAddr;
use std::time::Duration;

use apilb::config::Config;
use apilb::control::Server;
use apilb::health::state::{Admin, State};

use crate::support::apiserver::*;
use crate::support::*;

async fn start(yaml: &str) -> Server {
    let config = Config::from_yaml(yaml, "test.yaml").expect("valid test config");
    Server::start(config, std::path::Path::new("test.yaml"))
        .await
        .expect("server starts")
}

fn lb_for(servers: &[&FakeApiserver], extra: &str) -> String {
    let backends: Vec<(&str, SocketAddr)> =
        servers.iter().map(|s| (s.name.as_str(), s.addr)).collect();
    lb_yaml(&["127.0.0.1:0".parse().expect("addr")], &backends, extra)
}

/// What `POST /backends/NAME/ACTION` does: set the override and publish the transition.
fn operator(lb: &Server, b: &std::sync::Arc<apilb::backend::Backend>, admin: Option<Admin>) {
    if let Some(t) = b.set_admin(admin, tokio::time::Instant::now()) {
        lb.backends().publish(b, t);
    }
}

async fn wait_state(lb: &Server, name: &str, want: State, limit: Duration) {
    let b = lb.backends().find(name).expect("backend");
    wait_until(limit, &format!("{name} {want}"), || async {
        b.state() == want
    })
    .await;
}

/// up -> drain -> down -> up, with where new and existing connections go at each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_drain_down_up_with_exact_routing() {
    let pki = TestPki::new();
    let m1 = FakeApiserver::start("master-1", &pki, true).await;
    let m2 = FakeApiserver::start("master-2", &pki, true).await;
    let extra = pki.health_yaml(
        "  livePath: /livez\n  interval: 100ms\n  fastInterval: 50ms\n  timeout: 500ms\n  slowStart: 0s\n",
    );
    let lb = start(&lb_for(
        &[&m1, &m2],
        &format!("balance: round-robin\n{extra}"),
    ))
    .await;
    let addr = lb.local_addrs()[0];

    // Up: new connections reach both.
    let mut names = std::collections::BTreeSet::new();
    let mut on_m1 = None;
    for _ in 0..4 {
        let mut c = HttpsConn::open(addr, &pki).await;
        let n = c.name().await;
        if n == "master-1" && on_m1.is_none() {
            on_m1 = Some(c);
        }
        names.insert(n);
    }
    assert_eq!(names.len(), 2);
    let mut on_m1 = on_m1.expect("a connection on master-1");

    // Graceful apiserver shutdown: readyz fails, livez passes -> drain.
    m1.set_ready(false);
    wait_state(&lb, "master-1", State::Drain, WAIT).await;
    for _ in 0..4 {
        assert_eq!(
            apiserver_behind(addr, &pki).await,
            "master-2",
            "no new connections while draining"
        );
    }
    assert_eq!(
        on_m1.name().await,
        "master-1",
        "existing connection keeps flowing"
    );

    // It exits: down. Its connection is gone with it (the server closed it).
    m1.kill().await;
    wait_state(&lb, "master-1", State::Down, WAIT).await;
    for _ in 0..4 {
        assert_eq!(apiserver_behind(addr, &pki).await, "master-2");
    }

    // It comes back on the same port: up after `rise` passes, and takes connections again.
    let m1 = FakeApiserver::start_on("master-1", &pki, true, m1.addr).await;
    wait_state(&lb, "master-1", State::Up, WAIT).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(apiserver_behind(addr, &pki).await);
    }
    assert!(seen.contains("master-1"), "{seen:?}");
    let m = lb.metrics();
    for (from, to) in [("up", "drain"), ("drain", "down"), ("down", "up")] {
        assert_eq!(
            m.transitions
                .with_label_values(&["master-1", from, to])
                .get(),
            1,
            "{from} -> {to}"
        );
    }
    drop(m1);
}

/// A backend that accepts TCP and never answers is marked down within
/// fall x fastInterval + timeout (plus one interval for the first failure to be seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_backend_is_marked_down_in_bounded_time() {
    let pki = TestPki::new();
    let m1 = FakeApiserver::start("master-1", &pki, true).await;
    let m2 = FakeApiserver::start("master-2", &pki, true).await;
    let extra =
        pki.health_yaml("  interval: 400ms\n  fastInterval: 100ms\n  timeout: 300ms\n  fall: 2\n");
    let lb = start(&lb_for(&[&m1, &m2], &extra)).await;
    let addr = lb.local_addrs()[0];
    wait_until(WAIT, "first checks passed", || async {
        lb.metrics()
            .checks
            .with_label_values(&["master-1", "pass"])
            .get()
            > 0
    })
    .await;
    m1.set_hang(true);
    let hung_at = tokio::time::Instant::now();
    wait_state(&lb, "master-1", State::Down, WAIT).await;
    let took = hung_at.elapsed();
    // interval (first failing check starts) + fall x timeout + (fall-1) x fastInterval.
    let bound = Duration::from_millis(400 + 2 * 300 + 100);
    assert!(
        took <= bound + Duration::from_millis(400),
        "down after {took:?}, bound {bound:?}"
    );
    let b = lb.backends().find("master-1").expect("b");
    assert!(
        b.health().reason().contains("no answer within 300ms"),
        "{}",
        b.health().reason()
    );
    for _ in 0..3 {
        assert_eq!(apiserver_behind(addr, &pki).await, "master-2");
    }
}

/// onDown: close cuts a dead backend's connections so clients reconnect at once; the default
/// (keep) leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_down_close_cuts_established_connections() {
    for (mode, cut) in [("close", true), ("keep", false)] {
        let pki = TestPki::new();
        let m1 = FakeApiserver::start("master-1", &pki, true).await;
        let extra = pki.health_yaml(&format!(
            "  interval: 100ms\n  fastInterval: 50ms\n  timeout: 200ms\n  onDown: {mode}\n"
        ));
        let lb = start(&lb_for(&[&m1], &extra)).await;
        let mut conn = HttpsConn::open(lb.local_addrs()[0], &pki).await;
        assert_eq!(conn.name().await, "master-1");
        // Checks fail (hung for new connections) while the established one still works.
        m1.set_ready(false);
        wait_state(&lb, "master-1", State::Down, WAIT).await;
        let r = tokio::time::timeout(WAIT, conn.get("/name"))
            .await
            .expect("bounded");
        if cut {
            assert!(r.is_err(), "closed by onDown: {r:?}");
            assert_eq!(lb.metrics().closed.get("backend_down"), 1);
        } else {
            assert_eq!(r.expect("kept").1, "master-1");
        }
    }
}

/// A returning backend gets a ramped share during slow start rather than every new
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_returning_backend() {
    let pki = TestPki::new();
    let m1 = FakeApiserver::start("master-1", &pki, true).await;
    let m2 = FakeApiserver::start("master-2", &pki, true).await;
    let extra = pki.health_yaml(
        "  interval: 100ms\n  fastInterval: 50ms\n  timeout: 300ms\n  slowStart: 1h\n",
    );
    let lb = start(&lb_for(&[&m1, &m2], &extra)).await;
    let addr = lb.local_addrs()[0];
    // Load m2 with 20 connections while m1 is out.
    m1.set_ready(false);
    wait_state(&lb, "master-1", State::Down, WAIT).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut c = HttpsConn::open(addr, &pki).await;
        assert_eq!(c.name().await, "master-2");
        held.push(c);
    }
    // m1 returns: without slow start, least-connections would send the next 20 all to m1.
    m1.set_ready(true);
    wait_state(&lb, "master-1", State::Up, WAIT).await;
    let mut to_m1 = 0;
    for _ in 0..20 {
        let mut c = HttpsConn::open(addr, &pki).await;
        if c.name().await == "master-1" {
            to_m1 += 1;
        }
        held.push(c);
    }
    // At 5 % of its weight (the floor at the start of a 1 h ramp), m1 with k connections
    // competes as 20k: it takes its first, then only when m2 reaches 20 x that.
    assert!((1..=2).contains(&to_m1), "slow start share: {to_m1} of 20");
    let b = lb.backends().find("master-1").expect("b");
    assert_eq!(b.active(), to_m1);
}

/// Mutual-TLS checks pass with the CA's client certificate and fail with a stranger's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_checks_pass_with_the_right_certificate_only() {
    let pki = TestPki::new();
    let m1 = FakeApiserver::start("master-1", &pki, true).await;
    let good = pki.health_yaml("  interval: 100ms\n  fastInterval: 50ms\n");
    let lb = start(&lb_for(&[&m1], &good)).await;
    wait_until(WAIT, "a passing check", || async {
        lb.metrics()
            .checks
            .with_label_values(&["master-1", "pass"])
            .get()
            >= 2
    })
    .await;
    assert_eq!(
        lb.backends().find("master-1").expect("b").state(),
        State::Up
    );

    let bad = format!(
        "health:\n  kind: https\n  interval: 100ms\n  fastInterval: 50ms\n  tls:\n    ca: \"{}\"\n    cert: \"{}\"\n    key: \"{}\"\n",
        pki.ca.display(),
        pki.stranger_cert.display(),
        pki.stranger_key.display()
    );
    let lb2 = start(&lb_for(&[&m1], &bad)).await;
    wait_state(&lb2, "master-1", State::Down, WAIT).await;
    let reason = lb2
        .backends()
        .find("master-1")
        .expect("b")
        .health()
        .reason()
        .to_owned();
    assert!(
        reason.contains("GET /readyz") || reason.contains("TLS"),
        "{reason}"
    );

    // tls kind: the handshake alone; a server name the certificate does not cover fails.
    let wrong_name = format!(
        "health:\n  kind: tls\n  interval: 100ms\n  fastInterval: 50ms\n  tls:\n    ca: \"{}\"\n    cert: \"{}\"\n    key: \"{}\"\n    serverName: not-the-apiserver\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let lb3 = start(&lb_for(&[&m1], &wrong_name)).await;
    wait_state(&lb3, "master-1", State::Down, WAIT).await;
    let reason = lb3
        .backends()
        .find("master-1")
        .expect("b")
        .health()
        .reason()
        .to_owned();
    assert!(
        reason.contains("TLS") && reason.contains("not valid for name"),
        "{reason}"
    );
}

/// Operator overrides: drain keeps connections and takes no new ones; maint takes none;
/// enable returns the checked state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_drain_and_maint() {
    let pki = TestPki::new();
    let m1 = FakeApiserver::start("master-1", &pki, true).await;
    let m2 = FakeApiserver::start("master-2", &pki, true).await;
    let lb = start(&lb_for(&[&m1, &m2], "health: {kind: tcp, slowStart: 0s}\n")).await;
    let addr = lb.local_addrs()[0];
    let b1 = lb.backends().find("master-1").expect("b");
    let m = lb.metrics();
    let mut c = HttpsConn::open(addr, &pki).await;
    // Least-connections with both idle: the first goes to master-1 or master-2.
    let first = c.name().await;
    let b = lb.backends().find(&first).expect("b");
    operator(&lb, &b, Some(Admin::Drain));
    assert_eq!(b.state(), State::Drain);
    // The control plane hears of it and the state series follows.
    wait_until(WAIT, "drain state series", || async {
        m.backend_state
            .with_label_values(&[first.as_str(), "drain"])
            .get()
            == 1
    })
    .await;
    let other = if first == "master-1" {
        "master-2"
    } else {
        "master-1"
    };
    for _ in 0..3 {
        assert_eq!(apiserver_behind(addr, &pki).await, other);
    }
    assert_eq!(
        c.name().await,
        first,
        "drained backend keeps its connection"
    );
    operator(&lb, &b, None);
    assert_eq!(b.state(), State::Up);
    operator(&lb, &b1, Some(Admin::Maint));
    for _ in 0..3 {
        assert_eq!(apiserver_behind(addr, &pki).await, "master-2");
    }
}

/// Every backend down: clients are still sent to them (fail open) rather than refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_when_every_backend_is_down() {
    let pki = TestPki::new();
    let m1 = FakeApiserver::start("master-1", &pki, true).await;
    let extra = pki.health_yaml("  interval: 100ms\n  fastInterval: 50ms\n");
    let lb = start(&lb_for(&[&m1], &extra)).await;
    // readyz fails (no livePath): down, but it still accepts connections.
    m1.set_ready(false);
    wait_state(&lb, "master-1", State::Down, WAIT).await;
    assert_eq!(
        apiserver_behind(lb.local_addrs()[0], &pki).await,
        "master-1"
    );
}

#[test]
fn bad_health_settings_get_exact_errors() {
    let head =
        "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {name: a, address: \"10.0.0.1:6443\"}\n";
    let cases = [
        (
            "health: {kind: http}\n",
            "t.yaml:4:16: health.kind: \"http\" is not one of none, tcp, tls, https",
        ),
        (
            "health: {kind: https}\n",
            "t.yaml:4:1: health.tls: is required for kind https: set at least tls.ca",
        ),
        (
            "health:\n  kind: https\n  tls: {cert: /x.crt}\n",
            "t.yaml:6:3: health.tls.ca: is required: the CA that signs the apiservers' certificates\nt.yaml:6:3: health.tls.key: is required too: a client certificate needs its key and the key its certificate",
        ),
        (
            "health: {interval: 1s, fastInterval: 2s, rise: 0, path: readyz, onDown: kill}\n",
            "t.yaml:4:38: health.fastInterval: 2s is longer than interval (1s)\nt.yaml:4:48: health.rise: 0 is out of range (1 to 100)\nt.yaml:4:57: health.path: \"readyz\" is not an HTTP path (it must start with '/', without spaces)\nt.yaml:4:73: health.onDown: \"kill\" is not one of keep, close",
        ),
    ];
    for (extra, want) in cases {
        let err = Config::from_yaml(&format!("{head}{extra}"), "t.yaml").expect_err("invalid");
        assert_eq!(err.to_string(), want, "{extra}");
    }
    // A backend's override is blamed on its own key.
    let over = "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - name: a\n    address: \"10.0.0.1:6443\"\n    health: {fall: lots}\n";
    let err = Config::from_yaml(over, "t.yaml").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "t.yaml:5:20: backends[0].health.fall: \"lots\" is not a whole number"
    );
}

#[tokio::test]
async fn unreadable_tls_files_are_named() {
    let yaml = "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {name: a, address: \"10.0.0.1:6443\"}\nhealth:\n  kind: https\n  tls: {ca: /nonexistent/ca.crt}\n";
    let config = Config::from_yaml(yaml, "t.yaml").expect("valid");
    let err = Server::start(config, std::path::Path::new("t.yaml"))
        .await
        .expect_err("bad tls");
    assert!(err.is_config(), "a config-stage error: exit 64");
    assert_eq!(
        err.to_string(),
        "health.tls.ca: /nonexistent/ca.crt: No such file or directory (os error 2)"
    );
}
