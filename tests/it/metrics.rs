//! The metrics and status endpoint of a running `apilb serve`, and the `status` and
//! `backend` commands that use it.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::support::apiserver::*;
use crate::support::*;

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

struct Setup {
    pki: TestPki,
    servers: Vec<FakeApiserver>,
    lb: LbProcess,
    listen: SocketAddr,
    metrics: SocketAddr,
}

async fn setup(admin: &str) -> Setup {
    let pki = TestPki::new();
    let servers = vec![
        FakeApiserver::start("master-1", &pki, true).await,
        FakeApiserver::start("master-2", &pki, true).await,
    ];
    let listen = addr();
    let metrics = addr();
    let backends: Vec<(&str, SocketAddr)> =
        servers.iter().map(|s| (s.name.as_str(), s.addr)).collect();
    let extra = format!(
        "{}metrics:\n  listen: \"{metrics}\"\n  admin: {admin}\n  watchCertificates: [\"{}\"]\n",
        pki.health_yaml("  livePath: /livez\n  interval: 200ms\n  fastInterval: 100ms\n"),
        pki.client_cert.display()
    );
    let lb = LbProcess::spawn(&lb_yaml(&[listen], &backends, &extra));
    wait_listening(listen).await;
    wait_listening(metrics).await;
    Setup {
        pki,
        servers,
        lb,
        listen,
        metrics,
    }
}

/// Value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_carry_the_documented_series() {
    let s = setup("loopback").await;
    // Traffic, a check cycle, a transition and a failed reload, so every family has samples.
    let mut c = HttpsConn::open(s.listen, &s.pki).await;
    c.name().await;
    s.servers[0].set_ready(false);
    wait_until(WAIT, "master-1 drains", || async {
        let (_, body) = http_get(s.metrics, "/metrics").await;
        sample(
            &body,
            "apilb_backend_state{backend=\"master-1\",state=\"drain\"}",
        ) == Some(1.0)
    })
    .await;
    s.lb.write_config("not: [valid");
    s.lb.signal(Signal::SIGHUP);
    s.lb.wait_for_log("reload failed").await;
    drop(c);

    let (status, body) = http_get(s.metrics, "/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "apilb_backend_state",
        "apilb_backend_active_connections",
        "apilb_connections_accepted_total",
        "apilb_worker_connections_accepted_total",
        "apilb_connections_closed_total",
        "apilb_bytes_total",
        "apilb_backend_connections_total",
        "apilb_backend_connect_duration_seconds_bucket",
        "apilb_health_checks_total",
        "apilb_health_check_duration_seconds_bucket",
        "apilb_backend_transitions_total",
        "apilb_config_reloads_total",
        "apilb_build_info",
        "apilb_certificate_expiry_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            body.contains(&format!("\n{family}")),
            "{family} missing:\n{body}"
        );
    }
    assert_eq!(
        sample(&body, "apilb_config_reloads_total{result=\"failed\"}"),
        Some(1.0)
    );
    // The total (summed over the workers' shards) is the sum of the per-worker counts.
    let per_worker: f64 = body
        .lines()
        .filter(|l| l.starts_with("apilb_worker_connections_accepted_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let total = sample(&body, "apilb_connections_accepted_total");
    assert!(per_worker >= 1.0, "{body}");
    assert_eq!(total, Some(per_worker));
    assert_eq!(
        sample(
            &body,
            "apilb_backend_transitions_total{backend=\"master-1\",from=\"up\",to=\"drain\"}"
        ),
        Some(1.0)
    );
    // Expiry of the CA and the client certificate, as their notAfter.
    for path in [&s.pki.ca, &s.pki.client_cert] {
        let want = apilb::admin::certificate_not_after(path).expect("parse") as f64;
        let series = format!(
            "apilb_certificate_expiry_timestamp_seconds{{path=\"{}\"}}",
            path.display()
        );
        assert_eq!(sample(&body, &series), Some(want), "{series}");
    }

    promtool_clean(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_and_backend_drain_wait_enable_maint() {
    let s = setup("loopback").await;
    let m = s.metrics.to_string();
    let mut held = HttpsConn::open(s.listen, &s.pki).await;
    let on = held.name().await;

    let out = apilb_cmd(&["status", "--metrics-address", &m]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.starts_with(&format!("apilb {}", env!("CARGO_PKG_VERSION"))),
        "{table}"
    );
    assert!(
        table.contains("BACKEND") && table.contains("STATE"),
        "{table}"
    );
    for name in ["master-1", "master-2"] {
        let row = table.lines().find(|l| l.starts_with(name)).expect("row");
        assert!(row.contains(" up "), "{row}");
        assert!(row.contains("https"), "{row}");
    }

    // drain --wait: progress until the held connection closes.
    let drain = Command::new(env!("CARGO_BIN_EXE_apilb"))
        .args([
            "backend",
            "drain",
            &on,
            "--wait",
            "--deadline",
            "20s",
            "--metrics-address",
            &m,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drain");
    let json = |out: &std::process::Output| -> apilb::admin::Status {
        serde_json::from_slice(&out.stdout).expect("status JSON")
    };
    wait_until(WAIT, "backend drained", || async {
        let st = json(&apilb_cmd(&["status", "--json", "--metrics-address", &m]));
        st.backends
            .iter()
            .any(|b| b.name == on && b.state == "drain")
    })
    .await;
    assert_eq!(
        held.name().await,
        on,
        "drained backend keeps its connection"
    );
    drop(held);
    let out = tokio::task::spawn_blocking(move || drain.wait_with_output())
        .await
        .expect("join")
        .expect("drain output");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(
        printed.starts_with(&format!("{on}: drain (1 active connections)\n")),
        "{printed}"
    );
    assert!(
        printed.trim_end().ends_with(&format!("{on}: drained")),
        "{printed}"
    );

    let out = apilb_cmd(&["backend", "enable", &on, "--metrics-address", &m]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{on}: up (0 active connections)\n")
    );
    // The probes of wait_listening are proxied too; they close within milliseconds.
    wait_until(WAIT, "no connection left on master-2", || async {
        let st = json(&apilb_cmd(&["status", "--json", "--metrics-address", &m]));
        st.backends
            .iter()
            .any(|b| b.name == "master-2" && b.active_connections == 0)
    })
    .await;
    let out = apilb_cmd(&["backend", "maint", "master-2", "--metrics-address", &m]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "master-2: maint (0 active connections)\n"
    );
    let out = apilb_cmd(&["status", "--metrics-address", &m]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with("master-2"))
        .expect("row");
    assert!(row.contains("maint (checks: up)"), "{row}");

    let out = apilb_cmd(&["backend", "drain", "master-9", "--metrics-address", &m]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: apilb at {m} answered 404: no backend named \"master-9\"\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_off_refuses_state_changes_and_unknown_paths_are_404() {
    let s = setup("off").await;
    let (status, body) = http(s.metrics, "POST", "/backends/master-1/drain").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = http(s.metrics, "GET", "/backends/master-1/drain").await;
    assert_eq!(status, 405);
    let (status, _) = http_get(s.metrics, "/nope").await;
    assert_eq!(status, 404);
    let (status, body) = http_get(s.metrics, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[test]
fn status_without_a_running_apilb_says_so() {
    let dead = format!("127.0.0.1:{}", free_port());
    let out = apilb_cmd(&["status", "--metrics-address", &dead]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: cannot reach apilb at {dead}: Connection refused"
        )),
        "{err}"
    );
}

#[test]
fn a_busy_metrics_address_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lb.yaml");
    let listen = addr();
    std::fs::write(
        &path,
        lb_yaml(
            &[listen],
            &[("a", dead_addr())],
            &format!("metrics: {{listen: \"{busy}\"}}\n"),
        ),
    )
    .expect("write");
    let out = apilb_cmd(&["serve", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: metrics.listen: cannot listen on {busy}: Address already in use"
        )),
        "{err}"
    );
    // Nothing was left listening on the proxy address.
    assert!(std::net::TcpStream::connect(listen).is_err());
}
