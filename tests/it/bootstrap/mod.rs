//! `apilb bootstrap`, end to end: golden files for config/cluster.yaml, a strict re-parse of
//! every generated kubeadm document and etcd manifest, the LB config through the LB's own
//! parser, re-runs that change nothing, bad inputs that write nothing, and the external etcd
//! topology brought up for real from the generated manifests.
//!
//! Run: `cargo test --test it bootstrap` (`APILB_REQUIRE_PRIVILEGED=1` makes missing tools
//! fail rather than skip; `APILB_UPDATE_GOLDEN=1` rewrites the golden files).

mod bird;
mod etcd;
mod golden;
mod lb;

use std::path::{Path, PathBuf};
use std::process::Output;

use apilb::bootstrap::kubeadm::{self, Document};

use crate::pki::{loopback_cluster, run, snapshot};

/// A fixed token and certificate key, so that outputs can be compared.
pub(crate) const TOKEN: &str = "abcdef.0123456789abcdef";
pub(crate) const CERT_KEY: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Run `apilb bootstrap --cluster <file> --out <out> extra…`.
pub(crate) fn bootstrap(cluster: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "bootstrap",
        "--cluster",
        cluster.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Write `yaml` as a cluster file in `dir` and bootstrap into `dir/out`; panics on failure.
pub(crate) fn bootstrap_yaml(dir: &Path, yaml: &str, extra: &[&str]) -> PathBuf {
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = dir.join("out");
    let o = bootstrap(&file, &out, extra);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// External etcd with three members on `127.<net>.0.2x`.
pub(crate) fn external_etcd(net: u8) -> String {
    format!(
        "etcd:\n  topology: external\n  members:\n    - {{name: etcd-1, address: 127.{net}.0.21}}\n    - {{name: etcd-2, address: 127.{net}.0.22}}\n    - {{name: etcd-3, address: 127.{net}.0.23}}"
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Every kubeadm file of a bundle re-parses strictly into the typed structs, and writing
/// the parsed documents again gives the same text (nothing dropped or renamed).
#[test]
fn every_kubeadm_document_reparses_strictly() {
    for api in ["v1beta4", "v1beta3"] {
        for etcd in [crate::pki::STACKED.to_owned(), external_etcd(1)] {
            let dir = tempfile::tempdir().unwrap();
            let yaml = loopback_cluster(1, "ECDSA-P256", &etcd);
            let out = bootstrap_yaml(dir.path(), &yaml, &["--kubeadm-api", api]);
            let files = [
                "master-1/kubeadm.yaml",
                "master-2/kubeadm.yaml",
                "master-3/kubeadm.yaml",
                "workers/join.yaml",
            ];
            for f in files {
                let text = read(&out.join(f));
                let docs = kubeadm::parse(&text).unwrap_or_else(|e| panic!("{api} {f}: {e}"));
                let body = text.split_once('\n').unwrap().1;
                assert_eq!(kubeadm::to_yaml(&docs).unwrap(), body, "{api} {f}");
                let want = format!("kubeadm.k8s.io/{api}");
                for d in &docs {
                    let v: serde_yaml::Value =
                        serde_yaml::from_str(&kubeadm::to_yaml(std::slice::from_ref(d)).unwrap())
                            .unwrap();
                    assert_eq!(v["apiVersion"].as_str(), Some(want.as_str()), "{f}");
                }
            }
            let init = kubeadm::parse(&read(&out.join("master-1/kubeadm.yaml"))).unwrap();
            assert_eq!(init.len(), 2);
            match (api, &init[0], &init[1]) {
                ("v1beta4", Document::InitV1beta4(i), Document::ClusterV1beta4(c)) => {
                    assert_eq!(i.bootstrap_tokens.len(), 1);
                    assert_eq!(c.encryption_algorithm, "ECDSA-P256");
                    assert_eq!(c.control_plane_endpoint, "k8s-api.test.internal:6443");
                    assert!(c.api_server.cert_sans.contains(&"127.1.0.100".to_owned()));
                    assert_eq!(c.etcd.local.is_some(), etcd.contains("stacked"));
                    if let Some(x) = &c.etcd.external {
                        assert_eq!(
                            x.endpoints,
                            [
                                "https://127.1.0.21:2379",
                                "https://127.1.0.22:2379",
                                "https://127.1.0.23:2379"
                            ]
                        );
                        assert_eq!(x.cert_file, "/etc/kubernetes/pki/apiserver-etcd-client.crt");
                    }
                }
                ("v1beta3", Document::InitV1beta3(i), Document::ClusterV1beta3(c)) => {
                    assert_eq!(
                        i.node_registration
                            .kubelet_extra_args
                            .0
                            .get("node-ip")
                            .map(String::as_str),
                        Some("127.1.0.11")
                    );
                    assert_eq!(c.feature_gates.get("PublicKeysECDSA"), Some(&true));
                }
                other => panic!("unexpected documents for {api}: {other:?}"),
            }
            for m in ["master-1", "master-2", "master-3"] {
                let ca = out.join(m).join("pki/ca.crt");
                let hash = apilb::pki::ca_cert_hash(&ca).unwrap();
                if m != "master-1" {
                    let docs = kubeadm::parse(&read(&out.join(m).join("kubeadm.yaml"))).unwrap();
                    assert_eq!(docs[0].ca_cert_hashes(), std::slice::from_ref(&hash), "{m}");
                    assert_eq!(docs[0].token(), init[0].token());
                    assert_eq!(docs[0].certificate_key(), init[0].certificate_key());
                }
            }
        }
    }
}

/// Unknown fields, kinds and version-specific fields in the wrong version are refused.
#[test]
fn strict_parse_refuses_what_kubeadm_would_not_get_from_us() {
    let dir = tempfile::tempdir().unwrap();
    let out = bootstrap_yaml(
        dir.path(),
        &loopback_cluster(2, "ECDSA-P256", crate::pki::STACKED),
        &[],
    );
    let text = read(&out.join("master-1/kubeadm.yaml"));
    let bad = text.replace("clusterName:", "unknownField: 1\nclusterName:");
    let e = kubeadm::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("unknownField"), "{e}");
    let v3 = text.replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3");
    assert!(
        kubeadm::parse(&v3).is_err(),
        "v1beta4 arg lists and encryptionAlgorithm are not v1beta3"
    );
    let kind = text.replace("kind: InitConfiguration", "kind: UpgradeConfiguration");
    assert!(
        kubeadm::parse(&kind)
            .unwrap_err()
            .to_string()
            .contains("UpgradeConfiguration")
    );
}

/// A second identical run changes no byte (the token and certificate key are read back); a
/// different token is refused naming the file, and `--overwrite` replaces only what differs.
#[test]
fn rerun_is_byte_identical_and_a_different_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = loopback_cluster(3, "ECDSA-P256", &external_etcd(3));
    let out = bootstrap_yaml(dir.path(), &yaml, &[]);
    let first = snapshot(&out);
    let cluster = dir.path().join("cluster.yaml");
    let o = bootstrap(&cluster, &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("unchanged  master-1/kubeadm.yaml"));
    assert_eq!(snapshot(&out), first, "a second run must change nothing");
    // Modes: secrets 0600, the rest 0644.
    for (f, mode) in [
        ("master-1/kubeadm.yaml", 0o600),
        ("workers/join.yaml", 0o600),
        ("JOIN.md", 0o600),
        ("master-1/README.md", 0o644),
        ("lb-1/apilb.yaml", 0o644),
        ("etcd-1/manifests/etcd.yaml", 0o600),
    ] {
        assert_eq!(first[Path::new(f)].1, mode, "{f}");
    }

    let o = bootstrap(&cluster, &out, &["--token", TOKEN]);
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    for f in [
        "master-1/kubeadm.yaml",
        "master-2/kubeadm.yaml",
        "workers/join.yaml",
        "JOIN.md",
    ] {
        assert!(
            err.contains(&format!("{f}: exists with different content")),
            "{err}"
        );
    }
    assert!(!err.contains("README.md"), "{err}");
    assert_eq!(snapshot(&out), first, "a refused run must write nothing");

    let o = bootstrap(&cluster, &out, &["--token", TOKEN, "--overwrite"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = snapshot(&out);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| first.get(*k) != Some(*v))
        .map(|(k, _)| k.display().to_string())
        .collect();
    assert_eq!(
        changed,
        [
            "JOIN.md",
            "master-1/kubeadm.yaml",
            "master-2/kubeadm.yaml",
            "master-3/kubeadm.yaml",
            "workers/join.yaml"
        ]
    );
    assert!(read(&out.join("workers/join.yaml")).contains(TOKEN));
}

/// Bad input: exit 64, a message naming the problem, and nothing written.
#[test]
fn bad_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = loopback_cluster(4, "ECDSA-P256", crate::pki::STACKED);
    let file = dir.path().join("cluster.yaml");
    let out = dir.path().join("out");
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            good.clone(),
            vec!["--token", "ABCDEF.0123456789abcdef"],
            "--token: \"ABCDEF.0123456789abcdef\" is not a bootstrap token",
        ),
        (
            good.clone(),
            vec!["--certificate-key", "abc"],
            "--certificate-key: must be 64 lower-case hex characters",
        ),
        (
            good.replace("127.4.0.12}", "127.4.0.11}"),
            vec![],
            "masters[1].address: duplicate address 127.4.0.11",
        ),
        (
            good.replace("address: 127.4.0.5}", "address: 127.4.0.100}"),
            vec![],
            "is the load balancer VIP",
        ),
        (
            good.replace("kubernetesVersion: v1.31.2\n", ""),
            vec![],
            "kubernetesVersion: is required",
        ),
    ];
    for (yaml, extra, want) in cases {
        std::fs::write(&file, yaml).unwrap();
        let o = bootstrap(&file, &out, &extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(!out.exists(), "nothing may be written for {want:?}");
    }
    // A generated file that is in the way (a directory) is a problem found before writing.
    std::fs::write(&file, &good).unwrap();
    std::fs::create_dir_all(out.join("master-2/kubeadm.yaml")).unwrap();
    let before = snapshot(&out);
    let o = bootstrap(&file, &out, &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("master-2/kubeadm.yaml"));
    assert_eq!(snapshot(&out), before);
    assert!(!out.join("master-1").exists(), "no PKI either");
}

/// An existing apiserver certificate that lacks the VIP (issued for another description)
/// stops the run before anything is written, naming the file.
#[test]
fn apiserver_certificate_without_the_vip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = loopback_cluster(5, "ECDSA-P256", crate::pki::STACKED);
    let out = bootstrap_yaml(dir.path(), &yaml, &[]);
    let before = snapshot(&out);
    let moved = yaml.replace("vip: 127.5.0.100", "vip: 127.5.0.200");
    std::fs::write(dir.path().join("cluster.yaml"), moved).unwrap();
    let o = bootstrap(&dir.path().join("cluster.yaml"), &out, &[]);
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("master-1/pki/apiserver.crt") && err.contains("127.5.0.200"),
        "{err}"
    );
    assert_eq!(snapshot(&out), before);
}

/// The README of each host and JOIN.md carry the commands in order, with the exact values.
#[test]
fn readmes_and_join_md() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = loopback_cluster(6, "ECDSA-P256", &external_etcd(6));
    let out = bootstrap_yaml(
        dir.path(),
        &yaml,
        &["--token", TOKEN, "--certificate-key", CERT_KEY],
    );
    let hash = apilb::pki::ca_cert_hash(&out.join("master-1/pki/ca.crt")).unwrap();
    let join = read(&out.join("JOIN.md"));
    let order = [
        "## 1. etcd members: etcd-1, etcd-2, etcd-3",
        "## 2. Load balancers: lb-1, lb-2",
        "## 3. First master: master-1",
        "## 4. Other masters",
        "## 5. Workers",
    ];
    let mut at = 0;
    for h in order {
        let i = join[at..]
            .find(h)
            .unwrap_or_else(|| panic!("{h:?} missing or out of order:\n{join}"));
        at += i;
    }
    assert!(join.contains(&format!("kubeadm join k8s-api.test.internal:6443 --token {TOKEN} \\\n  --discovery-token-ca-cert-hash {hash} \\\n  --control-plane --certificate-key {CERT_KEY} \\\n  --apiserver-advertise-address 127.6.0.12")), "{join}");
    assert!(join.contains(&format!("kubeadm join k8s-api.test.internal:6443 --token {TOKEN} \\\n  --discovery-token-ca-cert-hash {hash}\n```")), "{join}");
    let m1 = read(&out.join("master-1/README.md"));
    let init = m1
        .find("kubeadm init --config /root/apilb/kubeadm.yaml --upload-certs")
        .unwrap();
    assert!(
        m1.find("cp -a /root/apilb/pki /etc/kubernetes/pki")
            .unwrap()
            < init
    );
    assert!(m1.find("apply -f /root/apilb/apilb-health.yaml").unwrap() > init);
    let m2 = read(&out.join("master-2/README.md"));
    assert!(m2.contains("kubeadm join --config /root/apilb/kubeadm.yaml"));
    assert!(
        !m2.contains("kubelet.conf /etc/kubernetes"),
        "a joining master must not get kubelet.conf"
    );
    assert!(read(&out.join("lb-1/README.md")).contains("systemctl enable --now apilb"));
    assert!(read(&out.join("etcd-2/README.md")).contains("/etc/kubernetes/manifests/etcd.yaml"));
    for f in [
        "master-1/README.md",
        "master-2/README.md",
        "lb-1/README.md",
        "etcd-1/README.md",
    ] {
        let t = read(&out.join(f));
        assert!(
            !t.contains(TOKEN) && !t.contains(CERT_KEY),
            "{f} must hold no secret"
        );
    }
}
