//! Golden files: the whole generated bundle of config/cluster.yaml (everything but the PKI,
//! including the operators' `apilb-admin/` certificates,
//! which is random), for v1beta4 and v1beta3, and the same description with external etcd.
//!
//! The token and certificate key are pinned with `--token` / `--certificate-key`. The CA is
//! generated per run, so its discovery hash is replaced by `sha256:<ca-cert-hash>` before the
//! comparison, after checking that it is the hash of the CA on disk (pinning a CA would need
//! a checked-in CA key, and the hash's correctness is what matters, not its value).
//!
//! `bgp` is the example with `loadBalancer.bgp` instead of `vrrp` (bird.conf, README).
//!
//! Regenerate: `APILB_UPDATE_GOLDEN=1 cargo test --test it bootstrap::golden`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CERT_KEY, TOKEN, bootstrap};
use crate::pki::snapshot;
use crate::support::repo_path;

const HASH_PLACEHOLDER: &str = "sha256:<ca-cert-hash>";

/// The generated non-PKI files of a bundle, with the CA hash replaced.
pub(crate) fn bundle(cluster: &Path, out: &Path, api: &str) -> BTreeMap<PathBuf, String> {
    let o = bootstrap(
        cluster,
        out,
        &[
            "--kubeadm-api",
            api,
            "--token",
            TOKEN,
            "--certificate-key",
            CERT_KEY,
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let hash = apilb::pki::ca_cert_hash(&out.join("master-1/pki/ca.crt")).unwrap();
    let mut files = BTreeMap::new();
    for (rel, (bytes, _)) in snapshot(out) {
        let s = rel.to_str().unwrap();
        // The PKI, the admin certificates and the kubeconfigs embed random keys; bird.conf
        // is compared.
        if s.contains("/pki/")
            || s.starts_with("apilb-admin/")
            || (s.ends_with(".conf") && !s.ends_with("/bird.conf"))
        {
            continue;
        }
        let text = String::from_utf8(bytes).unwrap();
        files.insert(rel, text.replace(&hash, HASH_PLACEHOLDER));
    }
    let join = &files[Path::new("workers/join.yaml")];
    assert!(
        join.contains(HASH_PLACEHOLDER),
        "the CA hash of master-1/pki/ca.crt must be in the join file:\n{join}"
    );
    files
}

pub(crate) fn compare(name: &str, files: &BTreeMap<PathBuf, String>) {
    let root = repo_path("tests/fixtures/golden/bootstrap").join(name);
    if std::env::var("APILB_UPDATE_GOLDEN").as_deref() == Ok("1") {
        let _ = std::fs::remove_dir_all(&root);
        for (rel, text) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        println!("updated golden files in {}", root.display());
        return;
    }
    let golden: BTreeMap<PathBuf, String> = snapshot(&root)
        .into_iter()
        .map(|(k, (v, _))| (k, String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(
        golden.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "golden file set of {name} (APILB_UPDATE_GOLDEN=1 regenerates)"
    );
    for (rel, text) in files {
        assert_eq!(
            &golden[rel],
            text,
            "{name}/{} differs from the golden file (APILB_UPDATE_GOLDEN=1 regenerates)",
            rel.display()
        );
    }
}

#[test]
fn example_cluster_v1beta4() {
    let dir = tempfile::tempdir().unwrap();
    let files = bundle(
        &repo_path("config/cluster.yaml"),
        &dir.path().join("out"),
        "v1beta4",
    );
    compare("v1beta4", &files);
}

#[test]
fn example_cluster_v1beta3() {
    let dir = tempfile::tempdir().unwrap();
    let files = bundle(
        &repo_path("config/cluster.yaml"),
        &dir.path().join("out"),
        "v1beta3",
    );
    compare("v1beta3", &files);
}

#[test]
fn example_cluster_external_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_path("config/cluster.yaml")).unwrap();
    let external = text.replace(
        "  topology: stacked                # stacked | external",
        "  topology: external\n  members:\n    - {name: etcd-1, address: 10.0.0.21}\n    - {name: etcd-2, address: 10.0.0.22}\n    - {name: etcd-3, address: 10.0.0.23}",
    );
    assert_ne!(
        text, external,
        "config/cluster.yaml changed; adjust this test"
    );
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, external).unwrap();
    let files = bundle(&file, &dir.path().join("out"), "v1beta4");
    compare("external-etcd", &files);
}

/// The example with its `vrrp:` block replaced by `bgp` (`bgp_yaml`, indented two spaces).
pub(crate) fn example_with_bgp(bgp_yaml: &str) -> String {
    let text = std::fs::read_to_string(repo_path("config/cluster.yaml")).unwrap();
    let start = text
        .find("  vrrp:\n")
        .expect("a vrrp block in config/cluster.yaml");
    let end = start
        + text[start..]
            .find("advertInterval")
            .and_then(|i| text[start + i..].find('\n').map(|j| i + j + 1))
            .expect("advertInterval ends the vrrp block");
    format!("{}{bgp_yaml}{}", &text[..start], &text[end..])
}

#[test]
fn example_cluster_bgp() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("bgp-password");
    std::fs::write(&password, "s3cret-md5\n").unwrap();
    let yaml = example_with_bgp(&format!(
        "  bgp:\n    localAsn: 65010\n    routers: [{{address: 10.0.0.1, asn: 65000}}, {{address: 10.0.0.2, asn: 65000}}]\n    password: file:{}\n",
        password.display()
    ))
    .replace(
        "{name: lb-2, address: 10.0.0.6}",
        "{name: lb-2, address: 10.0.0.6, asn: 65011}",
    );
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    let files = bundle(&file, &dir.path().join("out"), "v1beta4");
    compare("bgp", &files);
}
