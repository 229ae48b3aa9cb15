//! The `apilb` binary: exit codes, exact messages for bad input, nothing written on failure,
//! and the token / hash / certificate-key / check-expiration commands.

use std::path::Path;

use super::{STACKED, loopback_cluster, loopback_net, run, snapshot};

const EXAMPLE: &str = include_str!("../../../config/cluster.yaml");

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Run `apilb issue` on `yaml`; expect exit 64 with exactly `problem` and no output dir.
fn expect_bad_cluster(yaml: &str, problem: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = dir.path().join("out");
    let o = run(&[
        "issue",
        "--cluster",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    // The LB config's format: `FILE:LINE:COL: key: problem`.
    let e = stderr(&o);
    let rest = e
        .strip_prefix(&format!("{}:", file.display()))
        .unwrap_or_else(|| panic!("{e}"));
    let [line, col, message] = rest.splitn(3, ':').collect::<Vec<_>>()[..] else {
        panic!("{e}")
    };
    assert!(
        line.parse::<usize>().is_ok() && col.parse::<usize>().is_ok(),
        "{e}"
    );
    assert_eq!(message, format!(" {problem}\n"));
    assert!(stdout(&o).is_empty());
    assert!(!out.exists(), "nothing written");
}

#[test]
fn bad_inputs_exit_64_with_the_key_and_nothing_written() {
    expect_bad_cluster(
        &EXAMPLE.replace(
            "{name: master-2, address: 10.0.0.12}",
            "{name: master-1, address: 10.0.0.12}",
        ),
        r#"masters[1].name: duplicate name "master-1" (already used by masters[0])"#,
    );
    expect_bad_cluster(
        &EXAMPLE.replace(
            "{name: master-2, address: 10.0.0.12}",
            "{name: master-2, address: 10.0.0.11}",
        ),
        "masters[1].address: duplicate address 10.0.0.11 (already used by masters[0])",
    );
    expect_bad_cluster(
        &EXAMPLE.replace("address: 10.0.0.13", "address: 10.0.0.300"),
        r#"masters[2].address: "10.0.0.300" is not a valid IP address"#,
    );
    expect_bad_cluster(
        &EXAMPLE.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.0.0/33"),
        r#"networking.podSubnet: "10.244.0.0/33" is not a valid CIDR: "/33" is not a prefix length (0 to 32)"#,
    );
    expect_bad_cluster(
        &EXAMPLE.replace("vip: 10.0.0.100 ", "vip: 10.100.0.1 "),
        "loadBalancer.vip: 10.100.0.1 is inside the service subnet 10.96.0.0/12",
    );
    expect_bad_cluster(
        &EXAMPLE.replace(
            "encryptionAlgorithm: RSA-2048",
            "encryptionAlgorithm: ED25519",
        ),
        r#"pki.encryptionAlgorithm: "ED25519" is not one of: RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"#,
    );
}

#[test]
fn unknown_key_and_missing_file_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, EXAMPLE.replace("dnsDomain:", "dnsDomian:")).unwrap();
    let o = run(&[
        "issue",
        "--cluster",
        file.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "{}:49:69: networking: unknown field `dnsDomian`",
            file.display()
        )),
        "{e}"
    );
    let o = run(&[
        "issue",
        "--cluster",
        "/nonexistent/c.yaml",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        "/nonexistent/c.yaml: cannot read: No such file or directory (os error 2)\n"
    );
}

#[test]
fn unwritable_output_exit_64_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        loopback_cluster(loopback_net(), "ECDSA-P256", STACKED),
    )
    .unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("out");
    let o = run(&[
        "issue",
        "--cluster",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "error: cannot write to the output directory {}: {} is not a directory\n",
            out.display(),
            blocker.display()
        )
    );
    assert_eq!(std::fs::read(&blocker).unwrap(), b"x");
}

#[test]
fn mismatched_existing_file_exit_64_then_renew() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    let yaml = loopback_cluster(loopback_net(), "ECDSA-P256", STACKED);
    std::fs::write(&file, &yaml).unwrap();
    let out = dir.path().join("out");
    let args = [
        "issue",
        "--cluster",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.starts_with("FILE "), "{table}");
    assert!(table.contains("master-1/pki/apiserver.crt"), "{table}");
    assert!(table.contains("DNS:k8s-api.test.internal"), "{table}");
    assert!(
        table
            .trim_end()
            .ends_with(&format!("file(s) written under {}", out.display())),
        "{table}"
    );
    // Change master-3's extra SAN: its apiserver certificate no longer covers it.
    std::fs::write(
        &file,
        yaml.replace("master-3.test.internal", "m3.test.internal"),
    )
    .unwrap();
    let before = snapshot(&out);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        format!(
            "error: nothing written to {} (1 problem):\n  master-3/pki/apiserver.crt: does not cover the required SAN DNS:m3.test.internal (use --renew to reissue it with the same key)\n",
            out.display()
        )
    );
    assert_eq!(snapshot(&out), before);
    let mut renew = args.to_vec();
    renew.push("--renew");
    let o = run(&renew);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("renewed"));
}

#[test]
fn check_expiration_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    super::issue(
        &loopback_cluster(loopback_net(), "ECDSA-P256", STACKED),
        &out,
        false,
    )
    .unwrap();
    // An external front-proxy CA: its key is on no machine of the tree.
    for n in 1..=3 {
        std::fs::remove_file(out.join(format!("master-{n}/pki/front-proxy-ca.key"))).unwrap();
    }
    let o = run(&[
        "certs",
        "check-expiration",
        "--dir",
        out.join("master-1").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("CERTIFICATE ") && lines[0].ends_with("EXTERNALLY MANAGED"),
        "{text}"
    );
    let names: Vec<&str> = lines[1..13]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "admin.conf",
            "apiserver",
            "apiserver-etcd-client",
            "apiserver-kubelet-client",
            "controller-manager.conf",
            "etcd-healthcheck-client",
            "etcd-peer",
            "etcd-server",
            "front-proxy-client",
            "kubelet.conf",
            "scheduler.conf",
            "super-admin.conf",
        ]
    );
    let fp = lines
        .iter()
        .find(|l| l.starts_with("front-proxy-client"))
        .unwrap();
    assert!(
        fp.contains(" 364d ") && fp.contains("front-proxy-ca") && fp.ends_with("yes"),
        "{fp}"
    );
    let api = lines.iter().find(|l| l.starts_with("apiserver ")).unwrap();
    assert!(api.contains(" ca ") && api.ends_with("no"), "{api}");
    assert!(text.contains("\nCERTIFICATE AUTHORITY   EXPIRES"), "{text}");
    let ca = lines.iter().rev().find(|l| l.starts_with("ca ")).unwrap();
    assert!(ca.contains(" 9y ") && ca.ends_with("no"), "{ca}");
    let o = run(&[
        "certs",
        "check-expiration",
        "--dir",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(64));
}

/// Issue 18: an LB host's directory has `ca.crt` without its key (by design), yet its CA and
/// `apilb-health` certificate are apilb's own: the masters beside it in the tree hold the
/// key. Only a CA whose key is on no machine of the tree is externally managed.
#[test]
fn check_expiration_on_an_lb_host() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    super::issue(
        &loopback_cluster(loopback_net(), "ECDSA-P256", STACKED),
        &out,
        false,
    )
    .unwrap();
    let check = |machine: &Path| {
        let o = run(&[
            "certs",
            "check-expiration",
            "--dir",
            machine.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let row = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row: {text}"))
            .split("   ")
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let text = check(&out.join("lb-1"));
    let health = row(&text, "apilb-health");
    assert_eq!(health.len(), 5, "{health:?}");
    assert_eq!(health[2], "364d", "{text}");
    assert_eq!(
        (health[3].as_str(), health[4].as_str()),
        ("ca", "no"),
        "{text}"
    );
    let ca = row(text.split("\n\n").nth(1).unwrap(), "ca");
    assert_eq!(ca.last().map(String::as_str), Some("no"), "{text}");
    // Nothing else on an LB host.
    assert_eq!(text.lines().count(), 5, "{text}");

    // The same files alone (copied to the LB host, or from an external CA): no CA key at
    // hand anywhere, so both are externally managed.
    let alone = dir.path().join("alone");
    std::fs::create_dir_all(alone.join("lb-1/pki")).unwrap();
    for f in ["ca.crt", "apilb-health.crt", "apilb-health.key"] {
        std::fs::copy(out.join("lb-1/pki").join(f), alone.join("lb-1/pki").join(f)).unwrap();
    }
    let text = check(&alone.join("lb-1"));
    assert_eq!(row(&text, "apilb-health")[4], "yes", "{text}");
    let ca = row(text.split("\n\n").nth(1).unwrap(), "ca");
    assert_eq!(ca.last().map(String::as_str), Some("yes"), "{text}");
}

#[test]
fn tokens_hash_and_certificate_key() {
    let o = run(&["token", "create", "--ttl", "2h"]);
    assert!(o.status.success());
    let token = stdout(&o).trim_end().to_owned();
    let ok = token.len() == 23
        && token.as_bytes()[6] == b'.'
        && token
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 6 || b.is_ascii_lowercase() || b.is_ascii_digit());
    assert!(ok, "{token:?}");
    let o = run(&["token", "secret-manifest", &token]);
    assert!(o.status.success());
    let m: serde_yaml::Value = serde_yaml::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        m["metadata"]["name"].as_str().unwrap(),
        format!("bootstrap-token-{}", &token[..6])
    );
    assert_eq!(m["type"].as_str().unwrap(), "bootstrap.kubernetes.io/token");
    assert_eq!(
        m["stringData"]["token-secret"].as_str().unwrap(),
        &token[7..]
    );
    let o = run(&["token", "secret-manifest", "ABCDEF.0123456789abcdef"]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(
        stderr(&o),
        "error: \"ABCDEF.0123456789abcdef\" is not a bootstrap token (expected [a-z0-9]{6}.[a-z0-9]{16})\n"
    );

    let vector =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubeadm-keypins-test.crt");
    let o = run(&["ca-cert-hash", vector.to_str().unwrap()]);
    assert_eq!(
        stdout(&o),
        "sha256:345959acb2c3b2feb87d281961c893f62a314207ef02599f1cc4a5fb255480b3\n"
    );
    let o = run(&["ca-cert-hash", "Cargo.toml"]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(stderr(&o), "error: Cargo.toml: no CERTIFICATE block\n");

    let o = run(&["certificate-key"]);
    let key = stdout(&o);
    assert_eq!(key.len(), 65);
    assert!(
        key.trim_end()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(key, stdout(&run(&["certificate-key"])));
}

/// The CA hash agrees with openssl's pipeline from kubeadm's docs.
#[test]
fn ca_cert_hash_matches_openssl() {
    if !super::have_tool("openssl", "ca_cert_hash_matches_openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    super::issue(
        &loopback_cluster(loopback_net(), "ECDSA-P384", STACKED),
        &out,
        false,
    )
    .unwrap();
    let ca = out.join("master-1/pki/ca.crt");
    let ours = stdout(&run(&["ca-cert-hash", ca.to_str().unwrap()]));
    let sh = format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* //'",
        ca.display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &sh])
        .output()
        .unwrap();
    assert_eq!(
        ours,
        format!("sha256:{}", String::from_utf8(o.stdout).unwrap())
    );
}
