//! `apilb issue`: plan the whole PKI of a cluster against what already exists in the output
//! directory, then write only what is new or renewed.
//!
//! Rules (kubeadm's, stricter where safer):
//! - CAs and the SA key pair are the same on every machine that holds them; an existing one is
//!   reused, never regenerated; copies that differ are an error.
//! - A CA certificate without its key anywhere is an *external* CA: nothing it would sign is
//!   generated; every file it must have signed has to exist and verify, and all missing or bad
//!   ones are reported at once.
//! - An existing leaf (or kubeconfig client certificate) that chains to its CA, is valid now,
//!   has the expected subject and every required SAN, and matches its key is kept. Otherwise
//!   it is an error naming the file and the reason, unless `renew` is set: then every leaf is
//!   reissued with its existing key.
//! - Planning collects every problem before anything is written; a second identical run
//!   writes nothing.
//!
//! Key generation (seconds of CPU per RSA key) runs in parallel: with an RSA algorithm the
//! plan is first walked with stand-in ECDSA keys to count the keys it needs, then that many
//! are generated on one thread per core, and the plan is walked again taking them in order.
//! Both walks see the same files, so they make the same decisions; the layout and every
//! decision are those of a sequential run. ECDSA keys are cheap and made inline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::cert::{Ca, CaCert, CaKind, CertInfo, Window};
use super::key::{self, KeyAlgorithm, KeyError, PrivateKey};
use super::kubeconfig::Kubeconfig;
use super::spec::{self, KubeconfigSpec, LeafSpec};
use super::store::{self, PUBLIC_MODE, ReadError, SECRET_MODE, Write};
use super::{Error, pem, rbac};
use crate::cluster::{Cluster, Etcd};

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Reissue every leaf certificate, keeping its key.
    pub renew: bool,
    /// The time to issue and check at.
    pub now: OffsetDateTime,
}

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Newly generated.
    Created,
    /// An existing CA or SA file copied to a machine that lacked it.
    Copied,
    /// Already there and valid; untouched.
    Kept,
    /// Reissued with its existing key (`--renew`).
    Renewed,
}

impl Action {
    /// Lower-case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Copied => "copied",
            Action::Kept => "kept",
            Action::Renewed => "renewed",
        }
    }
}

/// One line of the summary: a certificate or kubeconfig.
#[derive(Debug, Clone)]
pub struct Row {
    /// Path relative to the output directory.
    pub file: PathBuf,
    /// What happened.
    pub action: Action,
    /// The certificate inside.
    pub info: CertInfo,
}

/// The result of a successful run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The output directory.
    pub out: PathBuf,
    /// Certificates and kubeconfigs, in plan order.
    pub rows: Vec<Row>,
    /// Files written.
    pub written: Vec<PathBuf>,
}

/// Issue (or check) the PKI of `cluster` under `out`.
pub fn issue(cluster: &Cluster, out: &Path, opts: Options) -> Result<Report, Error> {
    plan(cluster, out, opts)?.commit(Vec::new())
}

/// A checked plan: what `issue` would write, not yet written. `apilb bootstrap` adds its own
/// files and commits everything at once, so that a failure in either leaves nothing behind.
#[derive(Debug)]
pub struct Plan {
    out: PathBuf,
    rows: Vec<Row>,
    writes: Vec<Write>,
}

/// Plan the PKI of `cluster` under `out` (generating keys and certificates in memory); every
/// problem is collected and nothing is written.
pub fn plan(cluster: &Cluster, out: &Path, opts: Options) -> Result<Plan, Error> {
    preflight(out)?;
    let walk = |keys: KeySource| {
        let mut p = Planner {
            root: out,
            opts,
            writes: Vec::new(),
            rows: Vec::new(),
            problems: Vec::new(),
            cache: HashMap::new(),
            keys,
        };
        p.plan(cluster);
        p
    };
    let alg = cluster.pki.algorithm;
    let p = if matches!(alg, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) {
        walk(KeySource::Inline)
    } else {
        let counted = walk(KeySource::Counting { count: 0 });
        match counted.keys {
            // No key needed (a re-run or a renewal): the stand-ins were never used, so this
            // walk is the plan. With problems, the second walk would find the same ones.
            KeySource::Counting { count } if count > 0 && counted.problems.is_empty() => {
                walk(KeySource::Pool(key::generate_many(alg, count).into_iter()))
            }
            _ => counted,
        }
    };
    if !p.problems.is_empty() {
        return Err(Error::Plan {
            out: out.to_owned(),
            problems: p.problems,
        });
    }
    Ok(Plan {
        out: out.to_owned(),
        rows: p.rows,
        writes: p.writes,
    })
}

impl Plan {
    /// The files to be written, relative to the output directory.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// The text `rel` will have once the plan is committed: the planned content, else what is
    /// on disk now. `Err` for an unreadable file.
    pub fn text(&self, rel: &Path) -> Result<Option<String>, ReadError> {
        match self.writes.iter().rev().find(|w| w.rel == rel) {
            Some(w) => String::from_utf8(w.bytes.clone())
                .map(Some)
                .map_err(|_| ReadError::NotText),
            None => store::read_existing(&self.out, rel),
        }
    }

    /// Write the plan and `extra` (more files under the same directory) in one go.
    pub fn commit(mut self, extra: Vec<Write>) -> Result<Report, Error> {
        self.writes.extend(extra);
        store::write_all(&self.out, &self.writes)?;
        Ok(Report {
            out: self.out,
            rows: self.rows,
            written: self.writes.into_iter().map(|w| w.rel).collect(),
        })
    }
}

/// The output directory, or its closest existing ancestor, must be a directory.
fn preflight(out: &Path) -> Result<(), Error> {
    let mut cur = Some(out);
    while let Some(p) = cur.filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(Error::Output {
                    path: out.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        format!("{} is not a directory", p.display()),
                    ),
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                cur = p.parent()
            }
            Err(source) => {
                return Err(Error::Output {
                    path: out.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// A CA as found or made.
enum CaState {
    /// With its key: can sign.
    Signing(Ca),
    /// Certificate only (external CA).
    External(CaCert),
}

impl CaState {
    fn cert(&self) -> &CaCert {
        match self {
            CaState::Signing(ca) => ca.cert(),
            CaState::External(c) => c,
        }
    }
}

/// Where a CA lives: `dir/<base>.crt`, and `.key` if `with_key`.
struct Placement {
    dir: PathBuf,
    with_key: bool,
}

/// Where the planner takes new keys from.
enum KeySource {
    /// Generate each key when asked, in this thread.
    Inline,
    /// Hand out stand-in ECDSA P-256 keys (fast) and count how many real keys the plan needs.
    Counting {
        /// Keys asked for so far.
        count: usize,
    },
    /// Keys generated in advance, in parallel; generated inline should they run out (if the
    /// files changed between the two walks).
    Pool(std::vec::IntoIter<Result<PrivateKey, KeyError>>),
}

struct Planner<'a> {
    root: &'a Path,
    opts: Options,
    writes: Vec<Write>,
    rows: Vec<Row>,
    problems: Vec<String>,
    cache: HashMap<PathBuf, Option<String>>,
    keys: KeySource,
}

fn pki_dir(machine: &str) -> PathBuf {
    Path::new(machine).join("pki")
}

fn with_ext(dir: &Path, base: &str, ext: &str) -> PathBuf {
    dir.join(format!("{base}.{ext}"))
}

impl Planner<'_> {
    fn problem(&mut self, rel: &Path, msg: impl std::fmt::Display) {
        self.problems.push(format!("{}: {msg}", rel.display()));
    }

    /// Existing text of `rel`, or None; unreadable files become problems (and None).
    fn read(&mut self, rel: &Path) -> Option<String> {
        if let Some(v) = self.cache.get(rel) {
            return v.clone();
        }
        let v = match store::read_existing(self.root, rel) {
            Ok(v) => v,
            Err(e) => {
                self.problem(rel, e);
                None
            }
        };
        self.cache.insert(rel.to_owned(), v.clone());
        v
    }

    fn exists(&mut self, rel: &Path) -> bool {
        self.read(rel).is_some() || self.root.join(rel).symlink_metadata().is_ok()
    }

    fn write(&mut self, rel: PathBuf, text: String, mode: u32, replace: bool) {
        self.cache.insert(rel.clone(), Some(text.clone()));
        self.writes.push(Write {
            rel,
            bytes: text.into_bytes(),
            mode,
            replace,
        });
    }

    fn row(&mut self, file: PathBuf, action: Action, cert_pem: &str) {
        match CertInfo::from_pem(cert_pem) {
            Ok(info) => self.rows.push(Row { file, action, info }),
            Err(e) => self.problem(&file, e),
        }
    }

    fn gen_key(&mut self, rel: &Path, cluster: &Cluster) -> Option<PrivateKey> {
        let alg = cluster.pki.algorithm;
        let key = match &mut self.keys {
            KeySource::Inline => PrivateKey::generate(alg),
            KeySource::Counting { count } => {
                *count += 1;
                PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            }
            KeySource::Pool(pool) => pool.next().unwrap_or_else(|| PrivateKey::generate(alg)),
        };
        match key {
            Ok(k) => Some(k),
            Err(e) => {
                self.problem(rel, e);
                None
            }
        }
    }

    fn plan(&mut self, c: &Cluster) {
        let masters: Vec<PathBuf> = c.masters.iter().map(|m| pki_dir(&m.name)).collect();
        let signing = |dirs: &[PathBuf]| -> Vec<Placement> {
            dirs.iter()
                .map(|d| Placement {
                    dir: d.clone(),
                    with_key: true,
                })
                .collect()
        };
        let cert_only = |dirs: &[PathBuf]| -> Vec<Placement> {
            dirs.iter()
                .map(|d| Placement {
                    dir: d.clone(),
                    with_key: false,
                })
                .collect()
        };
        let lbs: Vec<PathBuf> = c
            .load_balancer
            .hosts
            .iter()
            .map(|h| pki_dir(&h.name))
            .collect();
        let members: Vec<PathBuf> = c.etcd_members().iter().map(|e| pki_dir(&e.name)).collect();

        let mut cluster_places = signing(&masters);
        cluster_places.extend(cert_only(&lbs));
        let cluster_ca = self.ca(c, CaKind::Cluster, &cluster_places);
        let front_ca = self.ca(c, CaKind::FrontProxy, &signing(&masters));
        let etcd_places = match c.etcd {
            Etcd::Stacked => signing(&masters),
            Etcd::External { .. } => {
                let mut v = signing(&members);
                v.extend(cert_only(&masters));
                v
            }
        };
        let etcd_ca = self.ca(c, CaKind::Etcd, &etcd_places);
        self.service_account(c, &masters);
        // The admin endpoint CA: its key only in the operators' directory, its certificate on
        // every LB host (to verify `apilb-admin` clients). Only when there are LB hosts.
        let admin_dir = PathBuf::from(spec::ADMIN_DIR);
        let admin_ca = if lbs.is_empty() {
            None
        } else {
            let mut places = signing(std::slice::from_ref(&admin_dir));
            places.extend(cert_only(&lbs));
            self.ca(c, CaKind::ApilbAdmin, &places)
        };

        let ca_for = |kind: CaKind| -> Option<&CaState> {
            match kind {
                CaKind::Cluster => cluster_ca.as_ref(),
                CaKind::FrontProxy => front_ca.as_ref(),
                CaKind::Etcd => etcd_ca.as_ref(),
                CaKind::ApilbAdmin => admin_ca.as_ref(),
            }
        };
        for m in &c.masters {
            let dir = pki_dir(&m.name);
            for leaf in spec::master_leaves(c, m) {
                if let Some(ca) = ca_for(leaf.profile.ca) {
                    self.leaf(c, &dir, &leaf, ca);
                }
            }
            if let Some(ca) = &cluster_ca {
                for kc in spec::kubeconfigs(c, m) {
                    self.kubeconfig(c, Path::new(&m.name), &kc, ca);
                }
            }
        }
        for e in c.etcd_members() {
            let dir = pki_dir(&e.name);
            if let Some(ca) = &etcd_ca {
                for leaf in spec::etcd_member_leaves(&e.name, e.address) {
                    self.leaf(c, &dir, &leaf, ca);
                }
            }
        }
        for h in &c.load_balancer.hosts {
            if let Some(ca) = &cluster_ca {
                self.leaf(c, &pki_dir(&h.name), &spec::health_client(), ca);
            }
            if let Some(ca) = &admin_ca {
                self.leaf(
                    c,
                    &pki_dir(&h.name),
                    &spec::admin_server(&h.name, h.address),
                    ca,
                );
            }
        }
        if let Some(ca) = &admin_ca {
            self.leaf(c, &admin_dir, &spec::admin_client(), ca);
        }
        self.rbac();
    }

    /// Find, check or make one CA, and plan its copies.
    fn ca(&mut self, c: &Cluster, kind: CaKind, places: &[Placement]) -> Option<CaState> {
        let base = kind.base();
        let before = self.problems.len();
        let mut cert: Option<(PathBuf, String)> = None;
        let mut key: Option<(PathBuf, String)> = None;
        for pl in places {
            let crt_rel = with_ext(&pl.dir, base, "crt");
            if let Some(text) = self.read(&crt_rel) {
                match &cert {
                    Some((first, t)) if t.trim() != text.trim() => {
                        let msg = format!(
                            "differs from {}; a CA must be the same on every machine",
                            first.display()
                        );
                        self.problem(&crt_rel, msg);
                    }
                    Some(_) => {}
                    None => cert = Some((crt_rel, text)),
                }
            }
            if pl.with_key {
                let key_rel = with_ext(&pl.dir, base, "key");
                if let Some(text) = self.read(&key_rel) {
                    match &key {
                        Some((first, t)) if t.trim() != text.trim() => {
                            let msg = format!(
                                "differs from {}; a CA must be the same on every machine",
                                first.display()
                            );
                            self.problem(&key_rel, msg);
                        }
                        Some(_) => {}
                        None => key = Some((key_rel, text)),
                    }
                }
            }
        }
        let generated = cert.is_none() && key.is_none();
        let state = match (cert, key) {
            (None, None) => {
                let rel = with_ext(&places.first()?.dir, base, "key");
                let key = self.gen_key(&rel, c)?;
                let window = Window::starting(self.opts.now, c.pki.ca_validity);
                match Ca::generate(kind, key, window) {
                    Ok(ca) => CaState::Signing(ca),
                    Err(e) => {
                        self.problem(&rel, e);
                        return None;
                    }
                }
            }
            (None, Some((key_rel, _))) => {
                let msg =
                    format!("exists without {base}.crt; restore the certificate or remove the key");
                self.problem(&key_rel, msg);
                return None;
            }
            (Some((crt_rel, crt_text)), key) => {
                let ca_cert = match CaCert::from_pem(kind, &crt_text) {
                    Ok(c) => c,
                    Err(e) => {
                        self.problem(&crt_rel, e);
                        return None;
                    }
                };
                match key {
                    None => CaState::External(ca_cert),
                    Some((key_rel, key_text)) => {
                        let key = match PrivateKey::from_pem(&key_text) {
                            Ok(k) => k,
                            Err(e) => {
                                self.problem(&key_rel, e);
                                return None;
                            }
                        };
                        match Ca::new(ca_cert, key) {
                            Ok(ca) => CaState::Signing(ca),
                            Err(e) => {
                                self.problem(&key_rel, e);
                                return None;
                            }
                        }
                    }
                }
            }
        };
        if self.problems.len() > before {
            return None;
        }
        // Place the copies.
        let crt_text = state.cert().cert().pem.clone();
        for pl in places {
            let crt_rel = with_ext(&pl.dir, base, "crt");
            let action = if self.exists(&crt_rel) {
                Action::Kept
            } else {
                self.write(crt_rel.clone(), crt_text.clone(), PUBLIC_MODE, false);
                if generated {
                    Action::Created
                } else {
                    Action::Copied
                }
            };
            self.row(crt_rel, action, &crt_text);
            if let (true, CaState::Signing(ca)) = (pl.with_key, &state) {
                let key_rel = with_ext(&pl.dir, base, "key");
                if !self.exists(&key_rel) {
                    self.write(key_rel, ca.key().pem().to_owned(), SECRET_MODE, false);
                }
            }
        }
        Some(state)
    }

    /// `sa.key` / `sa.pub`: the same pair on every master.
    fn service_account(&mut self, c: &Cluster, masters: &[PathBuf]) {
        let mut found: Option<(PathBuf, String)> = None;
        for dir in masters {
            let rel = dir.join("sa.key");
            if let Some(text) = self.read(&rel) {
                match &found {
                    Some((first, t)) if t.trim() != text.trim() => {
                        let msg = format!(
                            "differs from {}; the SA key must be the same on every master",
                            first.display()
                        );
                        self.problem(&rel, msg);
                    }
                    Some(_) => {}
                    None => found = Some((rel, text)),
                }
            }
        }
        let key = match found {
            Some((rel, text)) => match PrivateKey::from_pem(&text) {
                Ok(k) => k,
                Err(e) => return self.problem(&rel, e),
            },
            None => {
                if let Some(rel) = masters
                    .iter()
                    .map(|d| d.join("sa.pub"))
                    .find(|r| self.root.join(r).exists())
                {
                    return self.problem(
                        &rel,
                        "exists without sa.key; restore the key or remove sa.pub",
                    );
                }
                let Some(k) = self.gen_key(Path::new("sa.key"), c) else {
                    return;
                };
                k
            }
        };
        let spki = key.spki_der();
        for dir in masters {
            let key_rel = dir.join("sa.key");
            if !self.exists(&key_rel) {
                self.write(key_rel, key.pem().to_owned(), SECRET_MODE, false);
            }
            let pub_rel = dir.join("sa.pub");
            match self.read(&pub_rel) {
                None => self.write(pub_rel, key.public_pem(), SECRET_MODE, false),
                Some(text) => {
                    let matches = pem::decode_all(&text)
                        .ok()
                        .and_then(|b| b.into_iter().find(|(l, _)| l == "PUBLIC KEY"))
                        .is_some_and(|(_, der)| der == spki);
                    if !matches {
                        self.problem(&pub_rel, "is not the public half of sa.key");
                    }
                }
            }
        }
    }

    /// One leaf pair under `dir`.
    fn leaf(&mut self, c: &Cluster, dir: &Path, leaf: &LeafSpec, ca: &CaState) {
        let crt_rel = with_ext(dir, leaf.base, "crt");
        let key_rel = with_ext(dir, leaf.base, "key");
        let crt = self.read(&crt_rel);
        let key_text = self.read(&key_rel);
        let ca_file = format!("{}.crt", leaf.profile.ca.base());
        let signer = match ca {
            CaState::Signing(s) => s,
            CaState::External(ext) => {
                match (crt, key_text) {
                    (Some(crt), Some(key_text)) => {
                        let key = match PrivateKey::from_pem(&key_text) {
                            Ok(k) => Some(k),
                            Err(e) => {
                                self.problem(&key_rel, e);
                                None
                            }
                        };
                        let problems =
                            ext.check_leaf(&crt, key.as_ref(), &leaf.profile, self.opts.now);
                        if problems.is_empty() {
                            self.row(crt_rel.clone(), Action::Kept, &crt);
                        }
                        for pr in problems {
                            self.problem(&crt_rel, pr);
                        }
                    }
                    (crt, key) => {
                        for (rel, present) in [(&crt_rel, crt.is_some()), (&key_rel, key.is_some())]
                        {
                            if !present {
                                let msg = format!(
                                    "is missing; {ca_file} is an external CA (no key), so this file must be provided"
                                );
                                self.problem(rel, msg);
                            }
                        }
                    }
                }
                return;
            }
        };
        let window = Window::starting(self.opts.now, c.pki.cert_validity);
        match (crt, key_text) {
            (None, None) => {
                let Some(key) = self.gen_key(&key_rel, c) else {
                    return;
                };
                match signer.issue(&leaf.profile, &key, window) {
                    Ok(cert) => {
                        self.write(key_rel, key.pem().to_owned(), SECRET_MODE, false);
                        self.write(crt_rel.clone(), cert.pem.clone(), PUBLIC_MODE, false);
                        self.row(crt_rel, Action::Created, &cert.pem);
                    }
                    Err(e) => self.problem(&crt_rel, e),
                }
            }
            (Some(_), None) => self.problem(
                &key_rel,
                format!(
                    "is missing but {} exists; remove the certificate to issue a new pair",
                    crt_rel.display()
                ),
            ),
            (crt, Some(key_text)) => {
                let key = match PrivateKey::from_pem(&key_text) {
                    Ok(k) => k,
                    Err(e) => return self.problem(&key_rel, e),
                };
                let (action, problems) = match &crt {
                    None => (Action::Created, Vec::new()),
                    Some(crt) => (
                        Action::Renewed,
                        signer
                            .cert()
                            .check_leaf(crt, Some(&key), &leaf.profile, self.opts.now),
                    ),
                };
                if let (Some(crt), true, false) = (&crt, problems.is_empty(), self.opts.renew) {
                    self.row(crt_rel, Action::Kept, crt);
                    return;
                }
                if !problems.is_empty() && !self.opts.renew {
                    for pr in problems {
                        self.problem(
                            &crt_rel,
                            format!("{pr} (use --renew to reissue it with the same key)"),
                        );
                    }
                    return;
                }
                match signer.issue(&leaf.profile, &key, window) {
                    Ok(cert) => {
                        self.write(
                            crt_rel.clone(),
                            cert.pem.clone(),
                            PUBLIC_MODE,
                            crt.is_some(),
                        );
                        self.row(crt_rel, action, &cert.pem);
                    }
                    Err(e) => self.problem(&crt_rel, e),
                }
            }
        }
    }

    /// One kubeconfig file in `dir` (a master's directory).
    fn kubeconfig(&mut self, c: &Cluster, dir: &Path, kc: &KubeconfigSpec, ca: &CaState) {
        let rel = dir.join(kc.file);
        let ca_pem = ca.cert().single_pem();
        let user = kc.profile.common_name.clone();
        let existing = self.read(&rel);
        let (key, action) = match existing {
            None => {
                let CaState::Signing(_) = ca else {
                    return self.problem(
                        &rel,
                        "is missing; ca.crt is an external CA (no key), so this file must be provided",
                    );
                };
                let Some(key) = self.gen_key(&rel, c) else {
                    return;
                };
                (key, Action::Created)
            }
            Some(text) => {
                let decoded = match Kubeconfig::from_yaml(&text).and_then(|k| k.decode()) {
                    Ok(d) => d,
                    Err(e) => return self.problem(&rel, e),
                };
                let key = match PrivateKey::from_pem(&decoded.key_pem) {
                    Ok(k) => k,
                    Err(e) => return self.problem(&rel, format!("client-key-data: {e}")),
                };
                let mut problems = Vec::new();
                if decoded.ca_pem.trim() != ca_pem.trim() {
                    problems.push("embeds a different CA than ca.crt".to_owned());
                }
                if decoded.server != kc.server {
                    problems.push(format!(
                        "points at {}, expected {}",
                        decoded.server, kc.server
                    ));
                }
                problems.extend(
                    ca.cert()
                        .check_leaf(&decoded.cert_pem, Some(&key), &kc.profile, self.opts.now)
                        .into_iter()
                        .map(|p| format!("client certificate {p}")),
                );
                let external = matches!(ca, CaState::External(_));
                if problems.is_empty() && (!self.opts.renew || external) {
                    self.row(rel, Action::Kept, &decoded.cert_pem);
                    return;
                }
                if external || !self.opts.renew {
                    let hint = if external {
                        ""
                    } else {
                        " (use --renew to rewrite it with the same key)"
                    };
                    for p in problems {
                        self.problem(&rel, format!("{p}{hint}"));
                    }
                    return;
                }
                (key, Action::Renewed)
            }
        };
        let CaState::Signing(signer) = ca else { return };
        let window = Window::starting(self.opts.now, c.pki.cert_validity);
        let cert = match signer.issue(&kc.profile, &key, window) {
            Ok(cert) => cert,
            Err(e) => return self.problem(&rel, e),
        };
        let file = Kubeconfig::new(&c.name, &kc.server, &user, &ca_pem, &cert.pem, key.pem());
        match file.to_yaml() {
            Ok(text) => {
                self.write(rel.clone(), text, SECRET_MODE, action == Action::Renewed);
                self.row(rel, action, &cert.pem);
            }
            Err(e) => self.problem(&rel, e),
        }
    }

    fn rbac(&mut self) {
        let rel = Path::new("rbac").join(format!("{}.yaml", rbac::NAME));
        let text = match rbac::manifest() {
            Ok(t) => t,
            Err(e) => return self.problem(&rel, e),
        };
        match self.read(&rel) {
            None => self.write(rel, text, PUBLIC_MODE, false),
            Some(existing) if existing == text => {}
            Some(_) => self.problem(
                &rel,
                "exists with different content; remove it to regenerate",
            ),
        }
    }
}
