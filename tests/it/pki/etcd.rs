//! A real three-member etcd cluster on loopback with the issued stacked-etcd certificates,
//! client and peer certificate authentication on; `etcdctl endpoint health` with the
//! healthcheck-client and the apiserver-etcd-client certificates, and a client certificate
//! from another CA refused.
//!
//! Needs `etcd` and `etcdctl` (Debian: etcd-server, etcd-client).
//! Run: `APILB_REQUIRE_PRIVILEGED=1 cargo test --test it pki::etcd`

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{STACKED, have_tool, issue, loopback_cluster, loopback_net};

/// Kills and reaps the processes when dropped, also when the test panics.
pub(crate) struct Procs(pub(crate) Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on `ip` (bound and released; the kernel does not hand it out again at once).
pub(crate) fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 200 ms until it returns true or `limit` passes.
pub(crate) fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn etcdctl(endpoints: &str, pki: &Path, cert: &str) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoints,
            "--cacert",
            pki.join("etcd/ca.crt").to_str().unwrap(),
            "--cert",
            pki.join(format!("{cert}.crt")).to_str().unwrap(),
            "--key",
            pki.join(format!("{cert}.key")).to_str().unwrap(),
            "--dial-timeout",
            "2s",
            "--command-timeout",
            "3s",
            "endpoint",
            "health",
        ])
        .output()
        .unwrap()
}

#[test]
fn three_member_etcd_with_issued_certificates() {
    if !have_tool("etcd", "three_member_etcd_with_issued_certificates")
        || !have_tool("etcdctl", "three_member_etcd_with_issued_certificates")
    {
        return;
    }
    let net = loopback_net();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    issue(&loopback_cluster(net, "ECDSA-P256", STACKED), &out, false).unwrap();
    let other = dir.path().join("other");
    issue(&loopback_cluster(net, "ECDSA-P256", STACKED), &other, false).unwrap();

    let members: Vec<(String, IpAddr, u16, u16)> = (1..=3)
        .map(|n| {
            let ip: IpAddr = format!("127.{net}.0.1{n}").parse().unwrap();
            (format!("master-{n}"), ip, free_port(ip), free_port(ip))
        })
        .collect();
    let initial: Vec<String> = members
        .iter()
        .map(|(n, ip, _, peer)| format!("{n}=https://{ip}:{peer}"))
        .collect();
    let mut procs = Procs(Vec::new());
    for (name, ip, client, peer) in &members {
        let pki = out.join(name).join("pki");
        let p = |f: &str| pki.join(f).to_str().unwrap().to_owned();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", name])
            .args([
                "--data-dir",
                dir.path().join(format!("{name}.etcd")).to_str().unwrap(),
            ])
            .args(["--listen-client-urls", &format!("https://{ip}:{client}")])
            .args(["--advertise-client-urls", &format!("https://{ip}:{client}")])
            .args(["--listen-peer-urls", &format!("https://{ip}:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("https://{ip}:{peer}"),
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "apilb-test",
            ])
            .args([
                "--cert-file",
                &p("etcd/server.crt"),
                "--key-file",
                &p("etcd/server.key"),
            ])
            .args(["--client-cert-auth", "--trusted-ca-file", &p("etcd/ca.crt")])
            .args([
                "--peer-cert-file",
                &p("etcd/peer.crt"),
                "--peer-key-file",
                &p("etcd/peer.key"),
            ])
            .args([
                "--peer-client-cert-auth",
                "--peer-trusted-ca-file",
                &p("etcd/ca.crt"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        procs.0.push(child);
    }
    let endpoints: Vec<String> = members
        .iter()
        .map(|(_, ip, c, _)| format!("https://{ip}:{c}"))
        .collect();
    let endpoints = endpoints.join(",");
    let pki1 = out.join("master-1/pki");
    let healthy = wait_until(Duration::from_secs(60), || {
        etcdctl(&endpoints, &pki1, "etcd/healthcheck-client")
            .status
            .success()
    });
    if !healthy {
        let logs: String = members
            .iter()
            .map(|(n, ..)| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(dir.path().join(format!("{n}.log")))
                        .unwrap_or_default()
                )
            })
            .collect();
        let last = etcdctl(&endpoints, &pki1, "etcd/healthcheck-client");
        panic!(
            "etcd never became healthy: {}\n{logs}",
            String::from_utf8_lossy(&last.stderr)
        );
    }
    // Every member healthy, with both client certificates of every master.
    for n in 1..=3 {
        let pki = out.join(format!("master-{n}/pki"));
        for cert in ["etcd/healthcheck-client", "apiserver-etcd-client"] {
            let o = etcdctl(&endpoints, &pki, cert);
            assert!(
                o.status.success(),
                "master-{n} {cert}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            assert_eq!(text.matches("is healthy").count(), 3, "{text}");
        }
    }
    // A client certificate from another CA (trusting our etcd CA for the server) is refused.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(mixed.join("etcd")).unwrap();
    std::fs::copy(pki1.join("etcd/ca.crt"), mixed.join("etcd/ca.crt")).unwrap();
    for f in ["crt", "key"] {
        std::fs::copy(
            other.join(format!("master-1/pki/etcd/healthcheck-client.{f}")),
            mixed.join(format!("client.{f}")),
        )
        .unwrap();
    }
    let o = etcdctl(&endpoints, &mixed, "client");
    assert!(
        !o.status.success(),
        "a foreign client certificate must be refused"
    );
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("is unhealthy"), "{text}");
    drop(procs);
}
