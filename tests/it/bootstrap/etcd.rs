//! The external etcd topology for real on loopback: every generated `etcd.yaml` is parsed,
//! the etcd command line in it is run as a process (the only changes: host paths mapped
//! into the bundle, and 127.0.0.1 listeners moved to the member's own 127.x address so
//! three members fit on one machine), and `etcdctl endpoint health` against the endpoints
//! of the first master's ClusterConfiguration, with its caFile/certFile/keyFile, reports
//! every member healthy. The probe URL of the manifest answers too.
//!
//! Needs `etcd` and `etcdctl` (Debian: etcd-server, etcd-client).
//! Run: `APILB_REQUIRE_PRIVILEGED=1 cargo test --test it bootstrap::etcd`

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use apilb::bootstrap::etcd as manifest;
use apilb::bootstrap::kubeadm::{self, Document};

use super::{bootstrap_yaml, external_etcd, read};
use crate::pki::etcd::{Procs, wait_until};
use crate::pki::{have_tool, loopback_cluster, loopback_net};

/// Map a manifest flag value to this machine.
fn map_value(v: &str, ip: &str, member_dir: &Path, data: &Path) -> String {
    let v = v
        .replace(
            manifest::PKI_DIR,
            member_dir.join("pki/etcd").to_str().unwrap(),
        )
        .replace(manifest::DATA_DIR, data.to_str().unwrap())
        .replace("127.0.0.1", ip);
    // `https://127.0.0.1:2379,https://IP:2379` now names the same URL twice.
    let mut urls: Vec<&str> = Vec::new();
    for u in v.split(',') {
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    urls.join(",")
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn external_etcd_from_the_generated_manifests() {
    const T: &str = "external_etcd_from_the_generated_manifests";
    if !have_tool("etcd", T) || !have_tool("etcdctl", T) {
        return;
    }
    let net = loopback_net();
    let dir = tempfile::tempdir().unwrap();
    let yaml = loopback_cluster(net, "ECDSA-P256", &external_etcd(net));
    let out = bootstrap_yaml(dir.path(), &yaml, &[]);

    let mut procs = Procs(Vec::new());
    let mut probes = Vec::new();
    for n in 1..=3 {
        let name = format!("etcd-{n}");
        let ip = format!("127.{net}.0.2{n}");
        let member_dir = out.join(&name);
        let pod = manifest::parse(&read(&member_dir.join("manifests/etcd.yaml"))).unwrap();
        assert_eq!(pod.kind, "Pod");
        let c = &pod.spec.containers[0];
        assert_eq!(c.command[0], "etcd");
        let flags: Vec<(&str, &str)> = c.command[1..]
            .iter()
            .map(|f| f.strip_prefix("--").unwrap().split_once('=').unwrap())
            .collect();
        let get = |k: &str| {
            flags
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| *v)
                .unwrap()
        };
        assert_eq!(
            get("initial-cluster"),
            format!(
                "etcd-1=https://127.{net}.0.21:2380,etcd-2=https://127.{net}.0.22:2380,etcd-3=https://127.{net}.0.23:2380"
            )
        );
        assert_eq!(get("client-cert-auth"), "true");
        assert_eq!(get("peer-client-cert-auth"), "true");
        assert_eq!(get("initial-cluster-state"), "new");
        // The probe is plain HTTP on the metrics listener, not on the client-cert port.
        let probe = &c.liveness_probe.http_get;
        assert_eq!(
            (probe.host.as_str(), probe.port, probe.scheme.as_str()),
            ("127.0.0.1", 2381, "HTTP")
        );
        assert_eq!(get("listen-metrics-urls"), "http://127.0.0.1:2381");
        probes.push((format!("{ip}:{}", probe.port), probe.path.clone()));

        let data = dir.path().join(format!("{name}.etcd"));
        let args: Vec<String> = flags
            .iter()
            .map(|(k, v)| format!("--{k}={}", map_value(v, &ip, &member_dir, &data)))
            .collect();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        procs.0.push(
            Command::new("etcd")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    // The first master's view: ClusterConfiguration etcd.external, files from its pki/.
    let docs = kubeadm::parse(&read(&out.join("master-1/kubeadm.yaml"))).unwrap();
    let Some(Document::ClusterV1beta4(cc)) = docs.get(1) else {
        panic!("no ClusterConfiguration: {docs:?}")
    };
    let ext = cc.etcd.external.as_ref().unwrap();
    let local = |p: &str| {
        out.join("master-1/pki")
            .join(p.strip_prefix("/etc/kubernetes/pki/").unwrap())
            .to_str()
            .unwrap()
            .to_owned()
    };
    let endpoints = ext.endpoints.join(",");
    let etcdctl = || {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoints])
            .args(["--cacert", &local(&ext.ca_file)])
            .args(["--cert", &local(&ext.cert_file)])
            .args(["--key", &local(&ext.key_file)])
            .args([
                "--dial-timeout",
                "2s",
                "--command-timeout",
                "3s",
                "endpoint",
                "health",
            ])
            .output()
            .unwrap()
    };
    let healthy = wait_until(Duration::from_secs(60), || etcdctl().status.success());
    if !healthy {
        let logs: String = (1..=3)
            .map(|n| {
                format!(
                    "--- etcd-{n}\n{}",
                    std::fs::read_to_string(dir.path().join(format!("etcd-{n}.log")))
                        .unwrap_or_default()
                )
            })
            .collect();
        panic!(
            "etcd never became healthy: {}\n{logs}",
            String::from_utf8_lossy(&etcdctl().stderr)
        );
    }
    let o = etcdctl();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(text.matches("is healthy").count(), 3, "{text}");
    for (addr, path) in probes {
        let r = http_get(&addr, &path);
        assert!(
            r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"),
            "probe {addr}{path}: {r}"
        );
        assert!(r.contains("\"health\":\"true\""), "{r}");
    }
    drop(procs);
}
