//! Human-readable output: the `apilb issue` summary, `apilb certs check-expiration` (a table
//! like kubeadm's) and `apilb ca-cert-hash` (kubeadm's discovery pin).

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::cert::{CaKind, CertInfo, format_time};
use super::issue::Report;
use super::kubeconfig::Kubeconfig;
use super::pem::{self, FileError, PemError};
use super::{Error, spec};

/// Render rows as left-aligned columns separated by three spaces.
fn table(f: &mut fmt::Formatter<'_>, header: &[&str], rows: &[Vec<String>]) -> fmt::Result {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |f: &mut fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| -> fmt::Result {
        let mut out = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   "));
            }
        }
        writeln!(f, "{}", out.trim_end())
    };
    line(f, &mut header.iter().copied())?;
    for r in rows {
        line(f, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let sans: Vec<String> = r.info.sans.iter().map(ToString::to_string).collect();
                vec![
                    r.file.display().to_string(),
                    r.action.as_str().to_owned(),
                    r.info.subject.clone(),
                    format_time(r.info.not_after),
                    if sans.is_empty() {
                        "-".into()
                    } else {
                        sans.join(",")
                    },
                ]
            })
            .collect();
        table(f, &["FILE", "ACTION", "SUBJECT", "EXPIRES", "SANS"], &rows)?;
        writeln!(
            f,
            "\n{} file(s) written under {}",
            self.written.len(),
            self.out.display()
        )
    }
}

/// kubeadm's short residual time: `45s`, `10m`, `23h`, `364d`, `9y`, or `<invalid>`.
pub fn residual(now: OffsetDateTime, until: OffsetDateTime) -> String {
    let secs = (until - now).whole_seconds();
    match secs {
        s if s < 0 => "<invalid>".into(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// One line of `check-expiration`.
#[derive(Debug, Clone)]
pub struct ExpirationRow {
    /// kubeadm's name (`apiserver`, `admin.conf`, `etcd-server` …).
    pub name: String,
    /// NotAfter.
    pub expires: OffsetDateTime,
    /// Signing CA, for leaves.
    pub ca: Option<CaKind>,
    /// Whether its CA (or it, for a CA) has no key here.
    pub external: bool,
}

/// `apilb certs check-expiration --dir DIR/<machine>`.
#[derive(Debug, Clone)]
pub struct ExpirationReport {
    /// The time of the check.
    pub now: OffsetDateTime,
    /// Leaves and kubeconfigs found.
    pub certs: Vec<ExpirationRow>,
    /// CAs found.
    pub cas: Vec<ExpirationRow>,
}

impl fmt::Display for ExpirationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: OffsetDateTime| -> String {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{} {:02}, {} {:02}:{:02} UTC",
                &t.month().to_string()[..3],
                t.day(),
                t.year(),
                t.hour(),
                t.minute()
            )
        };
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let certs: Vec<Vec<String>> = self
            .certs
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    when(r.expires),
                    residual(self.now, r.expires),
                    r.ca.map(|c| c.name().to_owned()).unwrap_or_default(),
                    yes(r.external),
                ]
            })
            .collect();
        table(
            f,
            &[
                "CERTIFICATE",
                "EXPIRES",
                "RESIDUAL TIME",
                "CERTIFICATE AUTHORITY",
                "EXTERNALLY MANAGED",
            ],
            &certs,
        )?;
        writeln!(f)?;
        let cas: Vec<Vec<String>> = self
            .cas
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    when(r.expires),
                    residual(self.now, r.expires),
                    yes(r.external),
                ]
            })
            .collect();
        table(
            f,
            &[
                "CERTIFICATE AUTHORITY",
                "EXPIRES",
                "RESIDUAL TIME",
                "EXTERNALLY MANAGED",
            ],
            &cas,
        )
    }
}

fn read_text(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8(b).map(Some).map_err(|_| {
            Error::File(FileError {
                path: path.to_owned(),
                problem: PemError::NotText,
            })
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether the key of the CA whose certificate `crt_text` is at `<dir>/pki/<base>.crt` is
/// at hand for `apilb issue`: in `dir` itself, or, as in the output tree of `apilb issue`,
/// in a sibling machine directory holding the same CA certificate (an LB host's directory
/// gets `ca.crt` without its key, but the masters beside it have the key). A CA whose key
/// is in neither place is externally managed.
fn ca_key_at_hand(dir: &Path, base: &str, crt_text: &str) -> bool {
    let key = format!("{base}.key");
    let crt = format!("{base}.crt");
    if dir.join("pki").join(&key).exists() {
        return true;
    }
    let Some(Ok(siblings)) = dir.parent().map(std::fs::read_dir) else {
        return false;
    };
    siblings.flatten().any(|entry| {
        let pki = entry.path().join("pki");
        entry.path() != dir
            && pki.join(&key).is_file()
            && std::fs::read_to_string(pki.join(&crt))
                .is_ok_and(|other| other.trim() == crt_text.trim())
    })
}

/// Scan one machine directory of the output tree (its `/etc/kubernetes`, or an LB host's
/// `/etc/apilb`).
pub fn check_expiration(dir: &Path, now: OffsetDateTime) -> Result<ExpirationReport, Error> {
    if !dir.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let pki = dir.join("pki");
    let bad = |path: PathBuf, problem: PemError| Error::File(FileError { path, problem });
    let mut cas = Vec::new();
    let mut external = std::collections::HashMap::new();
    for kind in CaKind::ALL {
        let crt = pki.join(format!("{}.crt", kind.base()));
        if let Some(text) = read_text(&crt)? {
            let info = CertInfo::from_pem(&text).map_err(|e| bad(crt.clone(), e))?;
            let ext = !ca_key_at_hand(dir, kind.base(), &text);
            external.insert(kind, ext);
            cas.push(ExpirationRow {
                name: kind.name().into(),
                expires: info.not_after,
                ca: None,
                external: ext,
            });
        }
    }
    let mut certs = Vec::new();
    let kubeconfigs = [
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
    ];
    for name in kubeconfigs {
        let path = dir.join(name);
        if let Some(text) = read_text(&path)? {
            let d = Kubeconfig::from_yaml(&text)
                .and_then(|k| k.decode())
                .map_err(|problem| Error::Kubeconfig {
                    path: path.clone(),
                    problem,
                })?;
            let info = CertInfo::from_pem(&d.cert_pem).map_err(|e| bad(path.clone(), e))?;
            certs.push(ExpirationRow {
                name: name.into(),
                expires: info.not_after,
                ca: Some(CaKind::Cluster),
                external: external.get(&CaKind::Cluster).copied().unwrap_or(true),
            });
        }
    }
    let leaves: [(&str, &str, CaKind); 8] = [
        ("apiserver", "apiserver", CaKind::Cluster),
        (
            "apiserver-etcd-client",
            "apiserver-etcd-client",
            CaKind::Etcd,
        ),
        (
            "apiserver-kubelet-client",
            "apiserver-kubelet-client",
            CaKind::Cluster,
        ),
        (
            "etcd-healthcheck-client",
            "etcd/healthcheck-client",
            CaKind::Etcd,
        ),
        ("etcd-peer", "etcd/peer", CaKind::Etcd),
        ("etcd-server", "etcd/server", CaKind::Etcd),
        (
            "front-proxy-client",
            "front-proxy-client",
            CaKind::FrontProxy,
        ),
        (
            spec::HEALTH_CLIENT_BASE,
            spec::HEALTH_CLIENT_BASE,
            CaKind::Cluster,
        ),
    ];
    for (name, base, ca) in leaves {
        let path = pki.join(format!("{base}.crt"));
        if let Some(text) = read_text(&path)? {
            let info = CertInfo::from_pem(&text).map_err(|e| bad(path.clone(), e))?;
            certs.push(ExpirationRow {
                name: name.into(),
                expires: info.not_after,
                ca: Some(ca),
                external: external.get(&ca).copied().unwrap_or(true),
            });
        }
    }
    certs.sort_by(|a, b| a.name.cmp(&b.name));
    if certs.is_empty() && cas.is_empty() {
        return Err(Error::NothingToCheck {
            path: dir.to_owned(),
        });
    }
    Ok(ExpirationReport { now, certs, cas })
}

/// kubeadm's discovery hash of a CA certificate file: `sha256:<hex of SHA-256(SPKI DER)>`
/// over the first `CERTIFICATE` block.
pub fn ca_cert_hash(path: &Path) -> Result<String, Error> {
    let text = pem::read_text(path)?;
    ca_cert_hash_pem(&text).map_err(|problem| {
        Error::File(FileError {
            path: path.to_owned(),
            problem,
        })
    })
}

/// [`ca_cert_hash`] of PEM text.
pub fn ca_cert_hash_pem(text: &str) -> Result<String, PemError> {
    let der = pem::first_certificate(text)?;
    let x = pem::parse_certificate(&der)?;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        x.tbs_certificate.subject_pki.raw,
    );
    Ok(format!(
        "sha256:{}",
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm's pubkeypin_test.go vector.
    #[test]
    fn kubeadm_ca_hash_vector() {
        let pem = include_str!("../../tests/fixtures/kubeadm-keypins-test.crt");
        assert_eq!(
            ca_cert_hash_pem(pem).unwrap(),
            "sha256:345959acb2c3b2feb87d281961c893f62a314207ef02599f1cc4a5fb255480b3"
        );
    }

    #[test]
    fn residual_times() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let d = time::Duration::seconds;
        assert_eq!(residual(now, now + d(59)), "59s");
        assert_eq!(residual(now, now + d(3599)), "59m");
        assert_eq!(residual(now, now + d(86_399)), "23h");
        assert_eq!(residual(now, now + d(364 * 86_400)), "364d");
        assert_eq!(residual(now, now + d(3651 * 86_400)), "10y");
        assert_eq!(residual(now, now - d(1)), "<invalid>");
    }
}
