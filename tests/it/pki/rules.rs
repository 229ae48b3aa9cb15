//! Re-running, renewing and external-CA rules, through the library (fast, no processes).

use std::path::Path;

use apilb::pki::{Action, Error};
use time::OffsetDateTime;

use super::{STACKED, issue, issue_at, loopback_cluster, loopback_net, snapshot};

fn cluster() -> String {
    loopback_cluster(loopback_net(), "ECDSA-P256", STACKED)
}

fn problems(e: Error) -> Vec<String> {
    match e {
        Error::Plan { problems, .. } => problems,
        other => panic!("expected a plan error, got {other}"),
    }
}

#[test]
fn second_identical_run_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    issue(&yaml, &out, false).unwrap();
    let before = snapshot(&out);
    let mtimes: Vec<_> = before
        .keys()
        .map(|p| std::fs::metadata(out.join(p)).unwrap().modified().unwrap())
        .collect();
    let report = issue(&yaml, &out, false).unwrap();
    assert!(report.written.is_empty(), "{:?}", report.written);
    assert!(report.rows.iter().all(|r| r.action == Action::Kept));
    assert_eq!(snapshot(&out), before);
    let after: Vec<_> = before
        .keys()
        .map(|p| std::fs::metadata(out.join(p)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(mtimes, after);
}

#[test]
fn new_master_gets_the_same_cas_and_sa_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    issue(&yaml, &out, false).unwrap();
    let before = snapshot(&out);
    let net_line = yaml
        .lines()
        .find(|l| l.contains("name: master-2"))
        .unwrap()
        .to_owned();
    let master4 = net_line
        .replace("master-2", "master-4")
        .replace(".0.12}", ".0.14}");
    let grown = yaml.replace(&net_line, &format!("{net_line}\n{master4}"));
    let report = issue(&grown, &out, false).unwrap();
    let after = snapshot(&out);
    // Nothing existing changed; master-4 has copies of the shared files.
    for (p, v) in &before {
        assert_eq!(&after[p], v, "{}", p.display());
    }
    for f in [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.key",
        "etcd/ca.key",
        "sa.key",
        "sa.pub",
    ] {
        assert_eq!(
            after[&Path::new("master-4/pki").join(f)],
            after[&Path::new("master-1/pki").join(f)],
            "{f}"
        );
    }
    let copied = report
        .rows
        .iter()
        .filter(|r| r.action == Action::Copied)
        .count();
    assert_eq!(copied, 3, "three CA certificates copied to master-4");
    // Adding a master changes no existing apiserver SANs (they are per master), so all kept.
    assert!(
        report.written.iter().all(|p| p.starts_with("master-4")),
        "{:?}",
        report.written
    );
}

#[test]
fn mismatched_leaf_is_an_error_until_renew_and_keeps_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    issue(&yaml, &out, false).unwrap();
    let before = snapshot(&out);
    // A new SAN for every master: the existing apiserver certificates no longer cover it.
    let changed = yaml.replace(
        "certSANs: [extra.test.internal, 192.0.2.7]",
        "certSANs: [extra.test.internal, 192.0.2.7, new.test.internal]",
    );
    let p = problems(issue(&changed, &out, false).unwrap_err());
    assert_eq!(
        p,
        (1..=3)
            .map(|n| format!("master-{n}/pki/apiserver.crt: does not cover the required SAN DNS:new.test.internal (use --renew to reissue it with the same key)"))
            .collect::<Vec<_>>()
    );
    assert_eq!(snapshot(&out), before, "nothing written on error");

    let report = issue(&changed, &out, true).unwrap();
    let after = snapshot(&out);
    for (path, v) in &before {
        let name = path.display().to_string();
        if name.ends_with(".key")
            || name.ends_with("sa.pub")
            || name.starts_with("rbac")
            || name.ends_with("/ca.crt")
            || name.ends_with("-ca.crt")
        {
            assert_eq!(&after[path], v, "{name} must be kept");
        }
    }
    // Every leaf (and kubeconfig) reissued, keys kept.
    assert!(
        report
            .rows
            .iter()
            .filter(|r| !r.file.to_string_lossy().contains("ca.crt"))
            .all(|r| r.action == Action::Renewed)
    );
    let api = std::fs::read_to_string(out.join("master-1/pki/apiserver.crt")).unwrap();
    let info = apilb::pki::CertInfo::from_pem(&api).unwrap();
    assert!(
        info.sans
            .contains(&apilb::cluster::San::Dns("new.test.internal".into()))
    );
    for n in 1..=3 {
        let conf = Path::new(&format!("master-{n}")).join("admin.conf");
        assert_ne!(
            after[&conf], before[&conf],
            "kubeconfig client cert renewed"
        );
    }
    // And then a plain run keeps everything.
    assert!(issue(&changed, &out, false).unwrap().written.is_empty());
}

#[test]
fn expired_leaves_are_reported_then_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    let two_years_ago = OffsetDateTime::now_utc() - time::Duration::days(730);
    issue_at(&yaml, &out, false, two_years_ago).unwrap();
    let p = problems(issue(&yaml, &out, false).unwrap_err());
    // 7 leaves + 5 kubeconfigs per master, 2 per LB host (health client, admin server), the
    // operators' admin client; the 10-year CAs are still valid.
    assert_eq!(p.len(), 3 * 12 + 2 * 2 + 1, "{p:#?}");
    assert!(p.iter().all(|l| l.contains("expired at ")), "{p:#?}");
    assert!(
        p.iter()
            .any(|l| l.starts_with("master-2/pki/etcd/peer.crt: expired at ")),
        "{p:#?}"
    );
    issue(&yaml, &out, true).unwrap();
    assert!(issue(&yaml, &out, false).unwrap().written.is_empty());
}

#[test]
fn existing_file_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    issue(&yaml, &out, false).unwrap();
    let pki1 = out.join("master-1/pki");
    let pki2 = out.join("master-2/pki");

    // A CA copy that differs between masters (its leaves are then not checked).
    let other = dir.path().join("other");
    issue(&yaml, &other, false).unwrap();
    std::fs::copy(
        other.join("master-1/pki/front-proxy-ca.crt"),
        pki2.join("front-proxy-ca.crt"),
    )
    .unwrap();
    // A leaf signed by another CA (renew would fix it; without, it is reported).
    std::fs::copy(
        other.join("master-1/pki/apiserver-etcd-client.crt"),
        pki1.join("apiserver-etcd-client.crt"),
    )
    .unwrap();
    // A certificate whose key is gone, and a key that does not match its certificate.
    std::fs::remove_file(pki1.join("apiserver-kubelet-client.key")).unwrap();
    std::fs::copy(
        other.join("master-1/pki/apiserver.key"),
        pki1.join("apiserver.key"),
    )
    .unwrap();
    // A kubeconfig pointing elsewhere.
    let admin = std::fs::read_to_string(out.join("master-3/admin.conf")).unwrap();
    std::fs::write(
        out.join("master-3/admin.conf"),
        admin.replace(
            "https://k8s-api.test.internal:6443",
            "https://10.9.9.9:6443",
        ),
    )
    .unwrap();
    let before = snapshot(&out);
    let p = problems(issue(&yaml, &out, false).unwrap_err());
    assert_eq!(
        p,
        [
            "master-2/pki/front-proxy-ca.crt: differs from master-1/pki/front-proxy-ca.crt; a CA must be the same on every machine",
            "master-1/pki/apiserver.crt: does not match its private key (use --renew to reissue it with the same key)",
            "master-1/pki/apiserver-kubelet-client.key: is missing but master-1/pki/apiserver-kubelet-client.crt exists; remove the certificate to issue a new pair",
            "master-1/pki/apiserver-etcd-client.crt: is not signed by the CA etcd/ca.crt (etcd-ca) (use --renew to reissue it with the same key)",
            "master-1/pki/apiserver-etcd-client.crt: does not match its private key (use --renew to reissue it with the same key)",
            "master-3/admin.conf: points at https://10.9.9.9:6443, expected https://k8s-api.test.internal:6443 (use --renew to rewrite it with the same key)",
        ]
    );
    assert_eq!(snapshot(&out), before, "nothing written on error");
}

#[test]
fn external_ca_generates_nothing_and_reports_all_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    issue(&yaml, &out, false).unwrap();
    for n in 1..=3 {
        std::fs::remove_file(out.join(format!("master-{n}/pki/ca.key"))).unwrap();
    }
    // Everything present and valid: accepted, nothing written.
    let report = issue(&yaml, &out, false).unwrap();
    assert!(report.written.is_empty());

    // Remove files the external CA would have had to sign: all reported at once; the other
    // CAs (front-proxy, etcd) still have keys, so their leaves are generated as usual - but
    // only if the plan has no problems, so nothing at all is written here.
    std::fs::remove_file(out.join("master-2/pki/apiserver.crt")).unwrap();
    std::fs::remove_file(out.join("master-2/pki/apiserver.key")).unwrap();
    std::fs::remove_file(out.join("master-3/super-admin.conf")).unwrap();
    std::fs::remove_file(out.join("lb-2/pki/apilb-health.crt")).unwrap();
    std::fs::remove_file(out.join("master-1/pki/front-proxy-client.crt")).unwrap();
    std::fs::remove_file(out.join("master-1/pki/front-proxy-client.key")).unwrap();
    let before = snapshot(&out);
    let p = problems(issue(&yaml, &out, false).unwrap_err());
    let ext = "is missing; ca.crt is an external CA (no key), so this file must be provided";
    assert_eq!(
        p,
        [
            format!("master-2/pki/apiserver.crt: {ext}"),
            format!("master-2/pki/apiserver.key: {ext}"),
            format!("master-3/super-admin.conf: {ext}"),
            format!("lb-2/pki/apilb-health.crt: {ext}"),
        ]
    );
    assert_eq!(snapshot(&out), before);
    // --renew cannot sign with an external CA either.
    assert!(issue(&yaml, &out, true).is_err());
}

#[test]
fn key_without_ca_certificate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = cluster();
    issue(&yaml, &out, false).unwrap();
    for n in 1..=3 {
        std::fs::remove_file(out.join(format!("master-{n}/pki/etcd/ca.crt"))).unwrap();
    }
    let p = problems(issue(&yaml, &out, false).unwrap_err());
    assert_eq!(
        p,
        [
            "master-1/pki/etcd/ca.key: exists without etcd/ca.crt; restore the certificate or remove the key"
        ]
    );
}

#[test]
fn external_etcd_topology() {
    let net = loopback_net();
    let etcd = format!(
        "etcd:\n  topology: external\n  members:\n    - {{name: etcd-1, address: 127.{net}.0.21}}\n    - {{name: etcd-2, address: 127.{net}.0.22}}"
    );
    let yaml = loopback_cluster(net, "ECDSA-P256", &etcd);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    issue(&yaml, &out, false).unwrap();
    let files = snapshot(&out);
    let names: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
    for n in 1..=2 {
        for f in [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "peer.crt",
            "peer.key",
        ] {
            assert!(
                names.contains(&format!("etcd-{n}/pki/etcd/{f}")),
                "etcd-{n} {f}: {names:?}"
            );
        }
    }
    for n in 1..=3 {
        assert!(names.contains(&format!("master-{n}/pki/etcd/ca.crt")));
        assert!(names.contains(&format!("master-{n}/pki/apiserver-etcd-client.crt")));
        for absent in [
            "etcd/ca.key",
            "etcd/server.crt",
            "etcd/peer.crt",
            "etcd/healthcheck-client.crt",
        ] {
            assert!(
                !names.contains(&format!("master-{n}/pki/{absent}")),
                "{absent}"
            );
        }
    }
    assert_eq!(
        files[Path::new("etcd-1/pki/etcd/ca.crt")],
        files[Path::new("master-1/pki/etcd/ca.crt")]
    );
    let server = apilb::pki::CertInfo::from_pem(
        &String::from_utf8(files[Path::new("etcd-2/pki/etcd/server.crt")].0.clone()).unwrap(),
    )
    .unwrap();
    assert_eq!(server.common_name, "etcd-2");
    let sans: Vec<String> = server.sans.iter().map(ToString::to_string).collect();
    assert_eq!(
        sans,
        [
            "DNS:etcd-2",
            "DNS:localhost",
            &format!("IP:127.{net}.0.22"),
            "IP:127.0.0.1",
            "IP:::1"
        ]
    );
    assert!(issue(&yaml, &out, false).unwrap().written.is_empty());
}

/// RSA keys come from a pool generated in parallel after a counting walk of the plan: a
/// re-run needs no key (the counting walk is the plan), a new master needs only its own keys,
/// and every key goes to exactly one file, distinct from all others.
#[test]
fn rsa_keys_from_the_parallel_pool() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let yaml = loopback_cluster(loopback_net(), "RSA-2048", STACKED);
    let first = issue(&yaml, &out, false).unwrap();
    let again = issue(&yaml, &out, false).unwrap();
    assert!(again.written.is_empty(), "{:?}", again.written);
    let line = yaml
        .lines()
        .find(|l| l.contains("name: master-2"))
        .unwrap()
        .to_owned();
    let master4 = line
        .replace("master-2", "master-4")
        .replace(".0.12}", ".0.14}");
    let grown = yaml.replace(&line, &format!("{line}\n{master4}"));
    let report = issue(&grown, &out, false).unwrap();
    assert!(
        report.written.iter().all(|p| p.starts_with("master-4")),
        "{:?}",
        report.written
    );
    // The grown tree passes the planner's own checks (chain, SANs, key match): a third run
    // keeps every file.
    let kept = issue(&grown, &out, false).unwrap();
    assert!(kept.written.is_empty(), "{:?}", kept.written);
    assert!(kept.rows.iter().all(|r| r.action == Action::Kept));
    // Keys: shared ones (CAs, SA) identical across masters, every other one distinct.
    let files = snapshot(&out);
    let mut leaf_keys = std::collections::HashMap::new();
    for (p, (bytes, mode)) in &files {
        let name = p.display().to_string();
        if !name.ends_with(".key") {
            continue;
        }
        assert_eq!(*mode, 0o600, "{name}");
        assert!(
            bytes.starts_with(b"-----BEGIN RSA PRIVATE KEY-----\n"),
            "{name}"
        );
        let shared = ["ca.key", "front-proxy-ca.key", "sa.key"]
            .iter()
            .any(|s| name.ends_with(&format!("/pki/{s}")))
            || name.ends_with("etcd/ca.key");
        if !shared {
            if let Some(other) = leaf_keys.insert(bytes.clone(), name.clone()) {
                panic!("{name} and {other} have the same key");
            }
        }
    }
    // 7 per master, 2 per LB host, the admin CA's and the admin client's.
    assert_eq!(
        leaf_keys.len(),
        4 * 7 + 2 * 2 + 2,
        "{:?}",
        leaf_keys.values()
    );
    // 27 per master, 6 per LB host, 4 in apilb-admin/, the RBAC manifest.
    assert_eq!(first.written.len(), 3 * 27 + 2 * 6 + 4 + 1);
}
