//! `apilb issue` and friends, end to end.
//!
//! Run: `cargo test --test it pki` (add `APILB_REQUIRE_PRIVILEGED=1` to make missing tools
//! fail rather than skip).

mod check;
mod cli;
pub(crate) mod etcd;
mod kubectl;
mod reader;
mod rules;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apilb::cluster::Cluster;
use apilb::pki::{self, Options};
use time::OffsetDateTime;

/// Whether `tool` is on PATH. When absent, the calling test skips (or fails under
/// `APILB_REQUIRE_PRIVILEGED=1`) through `support::skip_or_fail`, and this returns false.
pub(crate) fn have_tool(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        crate::support::skip_or_fail(&format!(
            "{test}: `{tool}` not on PATH (apt-get install the package; see .ci/run)"
        ));
    }
    found
}

/// A cluster description with every machine on `127.<net>.0.x`, so that the real-process
/// tests can bind the addresses. `extra` is appended verbatim.
pub(crate) fn loopback_cluster(net: u8, alg: &str, etcd: &str) -> String {
    format!(
        "clusterName: kubernetes
kubernetesVersion: v1.31.2
controlPlaneEndpoint: k8s-api.test.internal:6443
loadBalancer:
  vip: 127.{net}.0.100
  hosts:
    - {{name: lb-1, address: 127.{net}.0.5}}
    - {{name: lb-2, address: 127.{net}.0.6}}
masters:
  - {{name: master-1, address: 127.{net}.0.11}}
  - {{name: master-2, address: 127.{net}.0.12}}
  - {{name: master-3, address: 127.{net}.0.13, certSANs: [master-3.test.internal]}}
networking: {{serviceSubnet: 10.96.0.0/12, podSubnet: 10.244.0.0/16, dnsDomain: cluster.local}}
{etcd}
pki:
  encryptionAlgorithm: {alg}
  certSANs: [extra.test.internal, 192.0.2.7]
  caValidity: 87600h
  certValidity: 8760h
"
    )
}

/// Stacked etcd section.
pub(crate) const STACKED: &str = "etcd: {topology: stacked}";

/// Issue through the library at `now`.
pub(crate) fn issue_at(
    yaml: &str,
    out: &Path,
    renew: bool,
    now: OffsetDateTime,
) -> Result<pki::Report, pki::Error> {
    let c = Cluster::from_yaml(yaml).unwrap();
    pki::issue(&c, out, Options { renew, now })
}

/// Issue through the library now.
pub(crate) fn issue(yaml: &str, out: &Path, renew: bool) -> Result<pki::Report, pki::Error> {
    issue_at(yaml, out, renew, OffsetDateTime::now_utc())
}

/// The `apilb` binary.
pub(crate) fn apilb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apilb"))
}

/// Run `apilb args…`.
pub(crate) fn run(args: &[&str]) -> Output {
    apilb().args(args).output().unwrap()
}

/// Every file under `dir`: relative path -> (bytes, mode).
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(
                    rel,
                    (
                        std::fs::read(&p).unwrap(),
                        meta.permissions().mode() & 0o777,
                    ),
                );
            }
        }
    }
    out
}

/// A `127.N.0.0/16` network number for this test process, distinct per call, so that
/// parallel runs and tests do not collide on addresses.
pub(crate) fn loopback_net() -> u8 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // In u32: in u8 the sum overflowed (a debug-build panic) for some process ids.
    let base = std::process::id() % 100;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    50 + u8::try_from(base.wrapping_add(n.wrapping_mul(7)) % 200).expect("below 200")
}

/// Any process id and any number of calls give a network number in 50..250 (the sum once
/// overflowed a u8 for some process ids).
#[test]
fn loopback_nets_stay_in_range() {
    for _ in 0..300 {
        let n = loopback_net();
        assert!((50..250).contains(&n), "{n}");
    }
}
