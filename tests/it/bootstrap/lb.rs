//! The LB host files: `apilb.yaml` through the LB's own parser (backends are exactly the
//! masters, https /readyz checks with the issued health-client certificate), its TLS files
//! loadable once placed, and the systemd unit (the reference copy in deploy/, checked with
//! `systemd-analyze verify` when present).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use apilb::config::{BackendAddress, CheckKind, Config};

use super::{bootstrap_yaml, read};
use crate::pki::{STACKED, have_tool, loopback_cluster};
use crate::support::repo_path;

#[test]
fn lb_config_is_valid_and_matches_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = loopback_cluster(7, "ECDSA-P256", STACKED);
    let out = bootstrap_yaml(dir.path(), &yaml, &[]);
    for lb in ["lb-1", "lb-2"] {
        let text = read(&out.join(lb).join("apilb.yaml"));
        let cfg = Config::from_yaml(&text, "apilb.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.listen,
            ["127.7.0.100:6443".parse::<SocketAddr>().unwrap()]
        );
        assert!(cfg.listener.freebind);
        let backends: Vec<(String, BackendAddress)> = cfg
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.address.clone()))
            .collect();
        let want: Vec<(String, BackendAddress)> = (1..=3)
            .map(|n| {
                (
                    format!("master-{n}"),
                    BackendAddress::Ip(format!("127.7.0.1{n}:6443").parse().unwrap()),
                )
            })
            .collect();
        assert_eq!(backends, want);
        for b in &cfg.backends {
            let h = &b.health;
            assert_eq!(h.kind, CheckKind::Https);
            assert_eq!(h.path, "/readyz");
            assert_eq!(h.live_path.as_deref(), Some("/livez"));
            let tls = h.tls.as_ref().unwrap();
            assert_eq!(tls.ca, PathBuf::from("/etc/apilb/pki/ca.crt"));
            assert_eq!(
                tls.cert.as_deref(),
                Some(std::path::Path::new("/etc/apilb/pki/apilb-health.crt"))
            );
            assert_eq!(
                tls.key.as_deref(),
                Some(std::path::Path::new("/etc/apilb/pki/apilb-health.key"))
            );
        }
        let m = cfg.metrics.as_ref().unwrap();
        assert_eq!(m.listen, "127.0.0.1:9441".parse::<SocketAddr>().unwrap());
        assert_eq!(
            m.watch_certificates,
            [
                PathBuf::from("/etc/apilb/pki/ca.crt"),
                PathBuf::from("/etc/apilb/pki/apilb-health.crt")
            ]
        );

        // Placed as the README says (here: paths mapped into the bundle), the TLS files load.
        let pki = out.join(lb).join("pki");
        let mapped = text.replace("/etc/apilb/pki", pki.to_str().unwrap());
        let cfg = Config::from_yaml(&mapped, "mapped").unwrap();
        apilb::health::task::load_tls(&cfg).unwrap_or_else(|e| panic!("{lb}: {e:?}"));
        // The health client is signed by the CA that signs the apiservers.
        assert_eq!(
            read(&pki.join("ca.crt")),
            read(&out.join("master-1/pki/ca.crt"))
        );
    }
}

/// Every `apilb.yaml` bootstrap writes (stacked and external etcd, with and without VRRP,
/// IPv4 and dual stack) loads with the LB's own `Config::load`.
#[test]
fn every_written_lb_config_loads() {
    let variants = [
        loopback_cluster(9, "ECDSA-P256", STACKED),
        // VRRP needs a VIP that is not loopback.
        loopback_cluster(9, "ECDSA-P256", STACKED)
            .replace("vip: 127.9.0.100", "vip: 10.9.0.100")
            .replace(
                "loadBalancer:\n",
                "loadBalancer:\n  vrrp: {interface: eth0, vrid: 9, advertInterval: 1s}\n",
            ),
    ];
    let mut loaded = 0;
    for (n, yaml) in variants.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let out = bootstrap_yaml(dir.path(), yaml, &[]);
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path().join("apilb.yaml");
            if !path.exists() {
                continue;
            }
            let cfg = Config::load(&path).unwrap_or_else(|e| panic!("variant {n}: {e}"));
            assert_eq!(cfg.backends.len(), 3, "{}", path.display());
            assert_eq!(cfg.vip.is_some(), n == 1, "{}", path.display());
            loaded += 1;
        }
    }
    assert_eq!(loaded, 4, "two LB hosts per variant");
}

#[test]
fn systemd_unit() {
    let dir = tempfile::tempdir().unwrap();
    let out = bootstrap_yaml(dir.path(), &loopback_cluster(8, "ECDSA-P256", STACKED), &[]);
    let unit = read(&out.join("lb-1/apilb.service"));
    assert_eq!(
        unit,
        read(&repo_path("deploy/apilb.service")),
        "DIR/<lb>/apilb.service is the reference unit"
    );
    for line in [
        "ExecStart=/usr/local/bin/apilb serve --config /etc/apilb/apilb.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "LimitNOFILE=",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "missing {line:?}"
        );
    }
    if !have_tool("systemd-analyze", "systemd_unit") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_apilb");
    let local = dir.path().join("apilb.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/apilb", bin)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
