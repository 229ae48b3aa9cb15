//! `apilb bootstrap`: from one cluster description, everything each machine needs, consistent
//! by construction: the PKI (the `apilb issue` plan, same reuse and renew rules), each
//! master's kubeadm configuration, the worker join file, external etcd static Pods, the LB
//! hosts' `apilb.yaml` and systemd unit, and a README per host plus `JOIN.md`.
//!
//! - [`kubeadm`]: the kubeadm configuration API as typed serde structs (v1beta4, v1beta3).
//! - [`etcd`]: the external etcd static Pod.
//! - [`lb`]: the LB config and systemd unit.
//! - [`bird`]: BIRD 2's `bird.conf` for LB hosts that announce the VIP by BGP.
//! - [`docs`]: READMEs and `JOIN.md`.
//!
//! [`bootstrap`] plans everything in memory first (the PKI plan, every generated file, the
//! consistency checks), and writes only when there is no problem at all, through the PKI
//! store: staged in the output directory, then moved into place. A second identical run
//! writes nothing: the bootstrap token and certificate key are read back from the existing
//! `kubeadm.yaml` unless given. An existing generated file with other content is an error
//! naming it, unless `overwrite` is set.

pub mod bird;
pub mod docs;
pub mod etcd;
pub mod kubeadm;
pub mod lb;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use self::kubeadm::{ApiVersion, Document, Secrets};
use crate::cluster::{Cluster, San};
use crate::pki::store::{self, PUBLIC_MODE, SECRET_MODE, Write};
use crate::pki::{self, CertInfo};
use crate::token::{self, Token};

/// Name of each master's kubeadm configuration file.
pub const KUBEADM_FILE: &str = "kubeadm.yaml";
/// The worker join file, relative to the output directory.
pub const WORKER_JOIN_FILE: &str = "workers/join.yaml";
/// The join instructions, relative to the output directory.
pub const JOIN_MD: &str = "JOIN.md";

/// Errors of `apilb bootstrap`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKI could not be planned or written.
    #[error(transparent)]
    Pki(#[from] pki::Error),
    /// A bad option value.
    #[error("{option}: {message}")]
    BadOption {
        /// The option (`--token`).
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Planning found problems; nothing was written.
    #[error("nothing written to {} ({} problem{}):{}", out.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    Plan {
        /// The output directory.
        out: PathBuf,
        /// `file: problem`, one per line.
        problems: Vec<String>,
    },
    /// The system random generator failed.
    #[error("cannot generate a bootstrap token or certificate key")]
    Random(#[source] token::Error),
}

impl Error {
    /// Whether the operator's input is at fault (exit 64) rather than the run (exit 1).
    pub fn is_input(&self) -> bool {
        match self {
            Error::Pki(e) => e.is_input(),
            Error::Random(_) => false,
            Error::BadOption { .. } | Error::Plan { .. } => true,
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// kubeadm configuration API version to write.
    pub api: ApiVersion,
    /// The bootstrap token; default: the one in the existing files, else a new one.
    pub token: Option<String>,
    /// The certificate key; default: the one in the existing files, else a new one.
    pub certificate_key: Option<String>,
    /// Reissue leaf certificates keeping their keys (as `apilb issue --renew`).
    pub renew: bool,
    /// Replace generated (non-PKI) files whose content differs.
    pub overwrite: bool,
    /// The time to issue and check at.
    pub now: OffsetDateTime,
}

/// What happened to a generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// New.
    Created,
    /// Already there with the same content.
    Unchanged,
    /// Replaced (`overwrite`).
    Replaced,
}

/// The result of a successful run.
#[derive(Debug)]
pub struct Report {
    /// The PKI part.
    pub pki: pki::Report,
    /// Every generated file (relative to the output directory) and what happened to it.
    pub files: Vec<(PathBuf, FileAction)>,
    /// Things that work but deserve the operator's attention.
    pub warnings: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pki)?;
        writeln!(f)?;
        for (file, action) in &self.files {
            let a = match action {
                FileAction::Created => "created",
                FileAction::Unchanged => "unchanged",
                FileAction::Replaced => "replaced",
            };
            writeln!(f, "{a:<10} {}", file.display())?;
        }
        for w in &self.warnings {
            writeln!(f, "\nwarning: {w}")?;
        }
        writeln!(
            f,
            "\nNext: {} (the order, and each host's README.md)",
            self.pki.out.join(JOIN_MD).display()
        )
    }
}

/// One generated file before it is compared with the disk.
struct File {
    rel: PathBuf,
    text: String,
    mode: u32,
}

/// Generate the whole bundle for `cluster` under `out`.
pub fn bootstrap(cluster: &Cluster, out: &Path, opts: &Options) -> Result<Report, Error> {
    let plan = pki::plan(
        cluster,
        out,
        pki::Options {
            renew: opts.renew,
            now: opts.now,
        },
    )?;
    let mut problems = Vec::new();
    let first = cluster.masters.first().ok_or_else(|| Error::Plan {
        out: out.to_owned(),
        problems: vec!["masters: needs at least one master".into()],
    })?;

    // The CA hash, from the CA as it will be on disk.
    let ca_rel = Path::new(&first.name).join("pki/ca.crt");
    let plan_problem = |e: &dyn fmt::Display| Error::Plan {
        out: out.to_owned(),
        problems: vec![format!("{}: {e}", ca_rel.display())],
    };
    let ca_hash = match plan.text(&ca_rel) {
        Ok(Some(text)) => match pki::report::ca_cert_hash_pem(&text) {
            Ok(h) => h,
            Err(e) => return Err(plan_problem(&e)),
        },
        Ok(None) => return Err(plan_problem(&"is missing")),
        Err(e) => return Err(plan_problem(&e)),
    };

    let (token, certificate_key) = secrets(out, first, opts)?;
    let secrets = Secrets {
        token: &token,
        certificate_key: &certificate_key,
        ca_cert_hash: &ca_hash,
    };

    // The BGP password is read here, once, and goes into bird.conf only.
    let password = match cluster
        .load_balancer
        .bgp
        .as_ref()
        .and_then(|b| b.password_file.as_deref())
    {
        Some(path) => match bird::read_password(path) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
        None => None,
    };
    let files = generate(
        cluster,
        opts.api,
        &secrets,
        password.as_ref(),
        &mut problems,
    );
    problems.extend(topology_problems(cluster));
    problems.extend(certificate_problems(cluster, &plan));
    problems.extend(join_hash_problems(cluster, &plan, &files));

    // Compare with the disk.
    let mut writes = Vec::new();
    let mut actions = Vec::new();
    for f in files {
        let action = match store::read_existing(out, &f.rel) {
            Err(e) => {
                problems.push(format!("{}: {e}", f.rel.display()));
                continue;
            }
            Ok(None) => FileAction::Created,
            Ok(Some(old)) if old == f.text => FileAction::Unchanged,
            Ok(Some(_)) if opts.overwrite => FileAction::Replaced,
            Ok(Some(_)) => {
                problems.push(format!(
                    "{}: exists with different content (edited, or another token, key or CA); \
                     remove it or pass --overwrite to replace it",
                    f.rel.display()
                ));
                continue;
            }
        };
        if action != FileAction::Unchanged {
            writes.push(Write {
                rel: f.rel.clone(),
                bytes: f.text.into_bytes(),
                mode: f.mode,
                replace: action == FileAction::Replaced,
            });
        }
        actions.push((f.rel, action));
    }
    if !problems.is_empty() {
        return Err(Error::Plan {
            out: out.to_owned(),
            problems,
        });
    }
    let pki = plan.commit(writes)?;
    Ok(Report {
        pki,
        files: actions,
        warnings: warnings(cluster, opts.api),
    })
}

/// The minor version of `v1.31.2`.
fn minor(version: &str) -> Option<u32> {
    version.strip_prefix("v1.")?.split('.').next()?.parse().ok()
}

/// Combinations that kubeadm accepts only partly.
pub fn warnings(c: &Cluster, api: ApiVersion) -> Vec<String> {
    use crate::pki::KeyAlgorithm;
    let mut w = Vec::new();
    let alg = c.pki.algorithm;
    let minor = minor(&c.kubernetes_version);
    match api {
        ApiVersion::V1beta3 => {
            if !matches!(alg, KeyAlgorithm::Rsa2048 | KeyAlgorithm::EcdsaP256) {
                w.push(format!(
                    "kubeadm v1beta3 cannot express {}: certificates that kubeadm itself renews will be RSA-2048",
                    alg.as_str()
                ));
            }
        }
        ApiVersion::V1beta4 => {
            if minor.is_some_and(|m| m < 31) {
                w.push(format!(
                    "kubernetesVersion {} with kubeadm.k8s.io/v1beta4: kubeadm before 1.31 cannot read it; use --kubeadm-api v1beta3",
                    c.kubernetes_version
                ));
            }
            if alg == KeyAlgorithm::EcdsaP384 && minor.is_some_and(|m| m < 34) {
                w.push(format!(
                    "encryptionAlgorithm ECDSA-P384 needs kubeadm 1.34 or later (kubernetesVersion is {})",
                    c.kubernetes_version
                ));
            }
        }
    }
    w
}

/// The token and certificate key: given, else read back from the existing files, else new.
fn secrets(
    out: &Path,
    first: &crate::cluster::Master,
    opts: &Options,
) -> Result<(String, String), Error> {
    let mut existing: Vec<Document> = Vec::new();
    for rel in [
        Path::new(&first.name).join(KUBEADM_FILE),
        PathBuf::from(WORKER_JOIN_FILE),
    ] {
        if let Ok(Some(text)) = store::read_existing(out, &rel) {
            // A file that does not parse is not a source; it is reported when compared.
            existing.extend(kubeadm::parse(&text).unwrap_or_default());
        }
    }
    let token = match &opts.token {
        Some(t) => t
            .parse::<Token>()
            .map_err(|e| Error::BadOption {
                option: "--token",
                message: e.to_string(),
            })?
            .to_string(),
        None => match existing
            .iter()
            .filter_map(Document::token)
            .find(|t| t.parse::<Token>().is_ok())
        {
            Some(t) => t.to_owned(),
            None => Token::generate().map_err(Error::Random)?.to_string(),
        },
    };
    let key = match &opts.certificate_key {
        Some(k) if is_certificate_key(k) => k.clone(),
        Some(_) => {
            return Err(Error::BadOption {
                option: "--certificate-key",
                message: "must be 64 lower-case hex characters (32 bytes), as printed by `apilb certificate-key`".into(),
            });
        }
        None => match existing
            .iter()
            .filter_map(Document::certificate_key)
            .find(|k| is_certificate_key(k))
        {
            Some(k) => k.to_owned(),
            None => token::certificate_key().map_err(Error::Random)?,
        },
    };
    Ok((token, key))
}

/// 64 lower-case hex characters.
pub fn is_certificate_key(k: &str) -> bool {
    k.len() == 2 * token::CERTIFICATE_KEY_BYTES
        && k.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A comment line on top of every generated YAML file.
const HEADER: &str = "# Generated by `apilb bootstrap` from the cluster description; re-run it \
                      rather than editing this file.\n";

fn yaml(text: String) -> String {
    format!("{HEADER}{text}")
}

/// Why a generated file could not be made.
#[derive(Debug, thiserror::Error)]
enum GenerateError {
    /// serde_yaml refused a value (in the message, not a `source`, so it is printed once).
    #[error("cannot serialize: {0}")]
    Serialize(serde_yaml::Error),
    /// The LB config bootstrap wrote is one apilb itself would refuse (a bug).
    #[error("not a valid LB config: {0}")]
    LbConfig(crate::config::Error),
}

/// Every generated file, with problems (serialization) pushed to `problems`.
fn generate(
    c: &Cluster,
    api: ApiVersion,
    s: &Secrets<'_>,
    password: Option<&bird::Password>,
    problems: &mut Vec<String>,
) -> Vec<File> {
    let mut files = Vec::new();
    let mut add = |rel: PathBuf, text: Result<String, GenerateError>, mode: u32| match text {
        Ok(text) => files.push(File { rel, text, mode }),
        Err(e) => problems.push(format!("{}: {e}", rel.display())),
    };
    for (i, m) in c.masters.iter().enumerate() {
        let dir = PathBuf::from(&m.name);
        let (docs, readme) = if i == 0 {
            (
                kubeadm::init_documents(api, c, m, s),
                docs::first_master(c, m),
            )
        } else {
            (
                vec![kubeadm::join_document(api, c, Some(m), s)],
                docs::joining_master(c, m),
            )
        };
        add(
            dir.join(KUBEADM_FILE),
            kubeadm::to_yaml(&docs)
                .map(yaml)
                .map_err(GenerateError::Serialize),
            SECRET_MODE,
        );
        add(dir.join("README.md"), Ok(readme), PUBLIC_MODE);
    }
    add(
        PathBuf::from(WORKER_JOIN_FILE),
        kubeadm::to_yaml(&[kubeadm::join_document(api, c, None, s)])
            .map(yaml)
            .map_err(GenerateError::Serialize),
        SECRET_MODE,
    );
    for e in c.etcd_members() {
        let dir = PathBuf::from(&e.name);
        add(
            dir.join("manifests/etcd.yaml"),
            serde_yaml::to_string(&etcd::manifest(c, e))
                .map(yaml)
                .map_err(GenerateError::Serialize),
            SECRET_MODE,
        );
        add(
            dir.join("README.md"),
            Ok(docs::etcd_member(c, e)),
            PUBLIC_MODE,
        );
    }
    for (i, h) in c.load_balancer.hosts.iter().enumerate() {
        let dir = PathBuf::from(&h.name);
        // A generated LB config that apilb itself would refuse is a bug, reported as such.
        let lb_config = lb::to_yaml(&lb::config(c, i))
            .map(yaml)
            .map_err(GenerateError::Serialize)
            .and_then(
                |text| match crate::config::Config::from_yaml(&text, "apilb.yaml") {
                    Ok(_) => Ok(text),
                    Err(e) => Err(GenerateError::LbConfig(e)),
                },
            );
        add(dir.join("apilb.yaml"), lb_config, PUBLIC_MODE);
        add(
            dir.join("apilb.service"),
            Ok(lb::SYSTEMD_UNIT.to_owned()),
            PUBLIC_MODE,
        );
        add(dir.join("README.md"), Ok(docs::lb_host(c, h)), PUBLIC_MODE);
        if let Some(bgp) = &c.load_balancer.bgp {
            // With a password bird.conf is a secret.
            let mode = if password.is_some() {
                SECRET_MODE
            } else {
                PUBLIC_MODE
            };
            add(
                dir.join(bird::BIRD_FILE),
                Ok(bird::config(c, bgp, i, h, password)),
                mode,
            );
        }
    }
    add(PathBuf::from(JOIN_MD), Ok(docs::join_md(c, s)), SECRET_MODE);
    files
}

/// Unique names and addresses across masters, etcd members and LB hosts; no VIP is a
/// machine's own address. (The cluster description checks this already; the bundle relies on
/// it, so it is checked again here, where the files are made.)
fn topology_problems(c: &Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut addrs: HashMap<IpAddr, &str> = HashMap::new();
    let machines = c
        .masters
        .iter()
        .map(|m| (m.name.as_str(), m.address, "master"))
        .chain(
            c.etcd_members()
                .iter()
                .map(|e| (e.name.as_str(), e.address, "etcd member")),
        )
        .chain(
            c.load_balancer
                .hosts
                .iter()
                .map(|h| (h.name.as_str(), h.address, "LB host")),
        );
    for (name, addr, role) in machines {
        if let Some(other) = names.insert(name, role) {
            problems.push(format!("{role} {name}: name already used by a {other}"));
        }
        if let Some(other) = addrs.insert(addr, name) {
            problems.push(format!(
                "{role} {name}: address {addr} already used by {other}"
            ));
        }
        if c.load_balancer.vips.contains(&addr) {
            problems.push(format!(
                "{role} {name}: its own address {addr} is the VIP; the VIP must move between LB hosts"
            ));
        }
    }
    problems
}

/// Whether a certificate's SANs cover `want` (IP exactly; DNS exactly or by a wildcard).
fn covers(sans: &[San], want: &San) -> bool {
    sans.iter().any(|s| match (s, want) {
        (San::Ip(a), San::Ip(b)) => a == b,
        (San::Dns(a), San::Dns(b)) => {
            a.eq_ignore_ascii_case(b)
                || a.strip_prefix("*.").is_some_and(|suffix| {
                    b.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix))
                })
        }
        _ => false,
    })
}

/// Every master's apiserver certificate covers the controlPlaneEndpoint host, the VIPs and
/// every `apiServer.certSANs` entry; with stacked etcd, every etcd server and peer
/// certificate covers `etcd.local.serverCertSANs`/`peerCertSANs`.
fn certificate_problems(c: &Cluster, plan: &pki::Plan) -> Vec<String> {
    let mut problems = Vec::new();
    let mut want: Vec<San> = vec![c.control_plane_endpoint.host.clone()];
    want.extend(c.load_balancer.vips.iter().map(|v| San::Ip(*v)));
    for s in kubeadm::cluster_cert_sans(c) {
        if let Ok(san) = San::parse(&s) {
            if !want.contains(&san) {
                want.push(san);
            }
        }
    }
    let mut check = |rel: PathBuf, want: &[San]| match plan.text(&rel) {
        Ok(Some(text)) => match CertInfo::from_pem(&text) {
            Ok(info) => {
                for w in want {
                    if !covers(&info.sans, w) {
                        problems.push(format!(
                            "{}: does not cover {w}, which the kubeadm configuration names",
                            rel.display()
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("{}: {e}", rel.display())),
        },
        Ok(None) => problems.push(format!("{}: is missing", rel.display())),
        Err(e) => problems.push(format!("{}: {e}", rel.display())),
    };
    let etcd_sans: Vec<San> = kubeadm::ETCD_EXTRA_SANS
        .iter()
        .filter_map(|s| San::parse(s).ok())
        .collect();
    for m in &c.masters {
        let pki = Path::new(&m.name).join("pki");
        check(pki.join("apiserver.crt"), &want);
        if c.etcd == crate::cluster::Etcd::Stacked {
            check(pki.join("etcd/server.crt"), &etcd_sans);
            check(pki.join("etcd/peer.crt"), &etcd_sans);
        }
    }
    problems
}

/// The CA hash in every join file equals that of the CA the joining machine trusts.
fn join_hash_problems(c: &Cluster, plan: &pki::Plan, files: &[File]) -> Vec<String> {
    let mut problems = Vec::new();
    let joins = c
        .masters
        .iter()
        .skip(1)
        .map(|m| (Path::new(&m.name).join(KUBEADM_FILE), m.name.as_str()))
        .chain(
            c.masters
                .first()
                .map(|m| (PathBuf::from(WORKER_JOIN_FILE), m.name.as_str())),
        );
    for (rel, ca_owner) in joins {
        let Some(f) = files.iter().find(|f| f.rel == rel) else {
            continue;
        };
        let ca_rel = Path::new(ca_owner).join("pki/ca.crt");
        let ca_problem = |e: &dyn fmt::Display| format!("{}: {e}", ca_rel.display());
        let ca_hash = match plan.text(&ca_rel) {
            Ok(Some(t)) => match pki::report::ca_cert_hash_pem(&t) {
                Ok(h) => h,
                Err(e) => {
                    problems.push(ca_problem(&e));
                    continue;
                }
            },
            Ok(None) => {
                problems.push(ca_problem(&"is missing"));
                continue;
            }
            Err(e) => {
                problems.push(ca_problem(&e));
                continue;
            }
        };
        match kubeadm::parse(&f.text) {
            Ok(docs) => {
                let hashes: Vec<&String> = docs.iter().flat_map(|d| d.ca_cert_hashes()).collect();
                if hashes.is_empty() || hashes.iter().any(|h| **h != ca_hash) {
                    problems.push(format!(
                        "{}: caCertHashes {hashes:?} differ from {ca_hash} of {}",
                        rel.display(),
                        ca_rel.display()
                    ));
                }
            }
            Err(e) => problems.push(format!("{}: does not re-parse: {e}", rel.display())),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::from_yaml(include_str!("../../config/cluster.yaml")).unwrap()
    }

    #[test]
    fn topology_is_rechecked() {
        let c = cluster();
        assert!(topology_problems(&c).is_empty());
        let mut bad = c.clone();
        let mut m = bad.masters[0].clone();
        m.address = bad.load_balancer.vips[0];
        bad.masters.push(m);
        bad.load_balancer.hosts[1].name = "master-2".into();
        let p = topology_problems(&bad);
        assert_eq!(
            p,
            [
                "master master-1: name already used by a master",
                "master master-1: its own address 10.0.0.100 is the VIP; the VIP must move between LB hosts",
                "LB host master-2: name already used by a master",
            ],
            "{p:#?}"
        );
    }

    #[test]
    fn san_coverage() {
        let sans = [
            San::Dns("*.example.internal".into()),
            San::Dns("k8s".into()),
            San::Ip("10.0.0.100".parse().unwrap()),
        ];
        assert!(covers(&sans, &San::Dns("api.example.internal".into())));
        assert!(!covers(&sans, &San::Dns("a.b.example.internal".into())));
        assert!(!covers(&sans, &San::Dns("example.internal".into())));
        assert!(covers(&sans, &San::Dns("K8S".into())));
        assert!(covers(&sans, &San::Ip("10.0.0.100".parse().unwrap())));
        assert!(!covers(&sans, &San::Ip("10.0.0.101".parse().unwrap())));
    }

    #[test]
    fn certificate_keys() {
        assert!(is_certificate_key(&"ab".repeat(32)));
        assert!(!is_certificate_key(&"AB".repeat(32)));
        assert!(!is_certificate_key(&"ab".repeat(31)));
    }

    #[test]
    fn version_warnings() {
        let mut c = cluster();
        assert!(warnings(&c, ApiVersion::V1beta4).is_empty());
        c.kubernetes_version = "v1.30.4".into();
        assert_eq!(warnings(&c, ApiVersion::V1beta4).len(), 1);
        assert!(warnings(&c, ApiVersion::V1beta3).is_empty());
        c.pki.algorithm = crate::pki::KeyAlgorithm::EcdsaP384;
        assert_eq!(warnings(&c, ApiVersion::V1beta4).len(), 2);
        assert_eq!(warnings(&c, ApiVersion::V1beta3).len(), 1);
    }
}
