//! `/status` over the real endpoint: the reason and `consecutiveFailures` of a backend
//! describe its state now, through maintenance, `backend enable` and recovery.

use std::net::SocketAddr;

use crate::support::apiserver::*;
use crate::support::*;

fn backend(s: &apilb::admin::Status, name: &str) -> apilb::admin::BackendStatus {
    s.backends
        .iter()
        .find(|b| b.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {name} in {s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_and_failures_follow_the_state_after_enable() {
    let pki = TestPki::new();
    let servers = [
        FakeApiserver::start("master-1", &pki, true).await,
        FakeApiserver::start("master-2", &pki, true).await,
    ];
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let backends: Vec<(&str, SocketAddr)> =
        servers.iter().map(|s| (s.name.as_str(), s.addr)).collect();
    let extra = format!(
        "{}metrics:\n  listen: \"{metrics}\"\n",
        pki.health_yaml("  interval: 200ms\n  fastInterval: 100ms\n  timeout: 300ms\n")
    );
    let _lb = LbProcess::spawn(&lb_yaml(&[listen], &backends, &extra));
    wait_listening(metrics).await;
    let m = metrics.to_string();
    let status = || async {
        let out = apilb_cmd(&["status", "--json", "--metrics-address", &m]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        serde_json::from_slice::<apilb::admin::Status>(&out.stdout).expect("status JSON")
    };
    wait_until(WAIT, "master-2 passes its checks", || async {
        backend(&status().await, "master-2").reason == "checks pass"
    })
    .await;

    // Maintenance, then the apiserver hangs underneath: the operator's reason shows, the
    // failed checks are counted.
    let out = apilb_cmd(&["backend", "maint", "master-2", "--metrics-address", &m]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    servers[1].set_hang(true);
    wait_until(WAIT, "checks find master-2 down under maint", || async {
        let b = backend(&status().await, "master-2");
        b.checked_state == "down" && b.consecutive_failures >= 2
    })
    .await;
    let b = backend(&status().await, "master-2");
    assert_eq!(
        (b.state.as_str(), b.reason.as_str()),
        ("maint", "maintenance set by operator")
    );

    // Enabled while the checks fail: down, with the checks' reason and count.
    let out = apilb_cmd(&["backend", "enable", "master-2", "--metrics-address", &m]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "master-2: down (0 active connections)\n",
        "{out:?}"
    );
    let b = backend(&status().await, "master-2");
    assert_eq!(
        (b.state.as_str(), b.reason.as_str()),
        ("down", "no answer within 300ms")
    );
    assert!(b.consecutive_failures >= 2, "{b:?}");
    let table = String::from_utf8_lossy(&apilb_cmd(&["status", "--metrics-address", &m]).stdout)
        .into_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with("master-2"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.ends_with("  no answer within 300ms"), "{row}");

    // The cause goes away: no stale failure reason, no failures counted.
    servers[1].set_hang(false);
    wait_until(WAIT, "master-2 up again", || async {
        backend(&status().await, "master-2").state == "up"
    })
    .await;
    let b = backend(&status().await, "master-2");
    assert!(
        b.reason == "2 checks passed" || b.reason == "checks pass",
        "{b:?}"
    );
    assert_eq!(b.consecutive_failures, 0, "{b:?}");

    // Down and refused before maintenance, still refused after: enable shows the refusal,
    // not the operator's earlier reason.
    servers[0].kill().await;
    wait_until(WAIT, "master-1 down", || async {
        backend(&status().await, "master-1").state == "down"
    })
    .await;
    apilb_cmd(&["backend", "maint", "master-1", "--metrics-address", &m]);
    let out = apilb_cmd(&["backend", "enable", "master-1", "--metrics-address", &m]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "master-1: down (0 active connections)\n",
        "{out:?}"
    );
    let b = backend(&status().await, "master-1");
    assert_eq!(
        b.reason, "connect: Connection refused (os error 111)",
        "{b:?}"
    );
    assert!(b.consecutive_failures >= 1, "{b:?}");
}
