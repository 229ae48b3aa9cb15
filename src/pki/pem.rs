//! The one PEM/X.509 reader of the crate (pki, the admin endpoint's expiry metrics and the
//! health probes' TLS files all read through it), and PEM encoding with 64-column lines and
//! `\n` endings (as Go's `encoding/pem`).
//!
//! Decoding finds every block in a text; text between blocks is ignored. Blocks with headers
//! are refused, as kubeadm refuses certificates with PEM headers. File readers return a
//! [`FileError`] that names the file and the problem.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What is wrong with a PEM text or the certificate or key in it.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file cannot be read (the OS error is the message).
    #[error("{0}")]
    Io(io::Error),
    /// The file is empty.
    #[error("is empty")]
    Empty,
    /// The file is not UTF-8 text.
    #[error("is not text (PEM expected)")]
    NotText,
    /// No `-----BEGIN` line at all.
    #[error("holds no PEM block")]
    NoPem,
    /// A block has `Key: value` headers (encrypted keys, OpenSSL legacy).
    #[error("{label} block has PEM headers")]
    Headers {
        /// The block label.
        label: String,
    },
    /// A block has no `-----END` line.
    #[error("{label} block is not terminated")]
    Unterminated {
        /// The block label.
        label: String,
    },
    /// A block's body is not base64.
    #[error("{label} block is not valid base64")]
    Base64 {
        /// The block label.
        label: String,
    },
    /// PEM, but no `CERTIFICATE` block.
    #[error("no CERTIFICATE block")]
    NoCertificate,
    /// A `CERTIFICATE` block that X.509 parsing refuses.
    #[error("not a valid X.509 certificate: {0}")]
    NotCertificate(String),
    /// PEM, but no private key block.
    #[error("no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block")]
    NoKey,
    /// A private key block whose contents cannot be loaded.
    #[error("cannot load the key: {0}")]
    BadKey(String),
    /// A key of a type the PKI does not issue with.
    #[error("unsupported key type {0} (only RSA and ECDSA P-256/P-384)")]
    UnsupportedKey(String),
    /// The key is not the private half of the certificate's public key.
    #[error("does not match the certificate in {}", cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
    },
}

/// A PEM file that cannot be used: the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: PemError,
}

impl FileError {
    fn new(path: &Path, problem: PemError) -> FileError {
        FileError {
            path: path.to_owned(),
            problem,
        }
    }
}

/// Read a PEM file as text; empty and non-text files are errors.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::new(path, PemError::Io(e)))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FileError::new(path, PemError::Empty));
    }
    String::from_utf8(bytes).map_err(|_| FileError::new(path, PemError::NotText))
}

/// Every `CERTIFICATE` of a PEM file, in order (at least one), each a valid X.509 certificate.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let text = read_text(path)?;
    let ders = certificates(&text).map_err(|e| FileError::new(path, e))?;
    for der in &ders {
        parse_certificate(der).map_err(|e| FileError::new(path, e))?;
    }
    Ok(ders.into_iter().map(CertificateDer::from).collect())
}

/// The first private key of a PEM file (`RSA PRIVATE KEY`, `EC PRIVATE KEY` or
/// `PRIVATE KEY`; other blocks such as `EC PARAMETERS` are skipped). Any key type rustls can
/// use is accepted; it must load.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    let text = read_text(path)?;
    let key = private_key(&text).map_err(|e| FileError::new(path, e))?;
    rcgen::KeyPair::try_from(&key)
        .map_err(|e| FileError::new(path, PemError::BadKey(e.to_string())))?;
    Ok(key)
}

/// A client identity: the certificate chain of `cert` and the key of `key`, which must be
/// the private half of the first certificate's public key.
pub fn read_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FileError> {
    let chain = read_certificates(cert)?;
    let private = read_private_key(key)?;
    let spki = chain
        .first()
        .map(|c| parse_certificate(c).map(|x| x.tbs_certificate.subject_pki.raw.to_vec()))
        .transpose()
        .map_err(|e| FileError::new(cert, e))?;
    let pair = rcgen::KeyPair::try_from(&private)
        .map_err(|e| FileError::new(key, PemError::BadKey(e.to_string())))?;
    if spki.as_deref() != Some(rcgen::PublicKeyData::subject_public_key_info(&pair).as_slice()) {
        return Err(FileError::new(
            key,
            PemError::KeyMismatch {
                cert: cert.to_owned(),
            },
        ));
    }
    Ok((chain, private))
}

/// NotAfter of the first certificate of a PEM file.
pub fn certificate_not_after(path: &Path) -> Result<OffsetDateTime, FileError> {
    let text = read_text(path)?;
    let der = first_certificate(&text).map_err(|e| FileError::new(path, e))?;
    let x = parse_certificate(&der).map_err(|e| FileError::new(path, e))?;
    Ok(x.validity().not_after.to_datetime())
}

/// Parse DER as an X.509 certificate.
pub fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, PemError> {
    X509Certificate::from_der(der)
        .map(|(_, x)| x)
        .map_err(|e| PemError::NotCertificate(e.to_string()))
}

/// One PEM block.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // Invariant: base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Every block in `text` as (label, DER); text between blocks is ignored.
pub fn decode_all(text: &str) -> Result<Vec<(String, Vec<u8>)>, PemError> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim_end()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        let mut closed = false;
        for body in lines.by_ref() {
            let body = body.trim();
            if body == end {
                closed = true;
                break;
            }
            if body.contains(':') {
                return Err(PemError::Headers {
                    label: label.to_owned(),
                });
            }
            b64.push_str(body);
        }
        if !closed {
            return Err(PemError::Unterminated {
                label: label.to_owned(),
            });
        }
        let der = STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| PemError::Base64 {
                label: label.to_owned(),
            })?;
        out.push((label.to_owned(), der));
    }
    Ok(out)
}

/// The DER of every `CERTIFICATE` block, in order; at least one.
pub fn certificates(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = decode_all(text)?;
    if blocks.is_empty() && text.trim().is_empty() {
        return Err(PemError::Empty);
    }
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, d)| d)
        .collect();
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// The DER of the first `CERTIFICATE` block.
pub fn first_certificate(text: &str) -> Result<Vec<u8>, PemError> {
    certificates(text)?
        .into_iter()
        .next()
        .ok_or(PemError::NoCertificate)
}

/// The first private key block of `text`.
pub fn private_key(text: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    let blocks = decode_all(text)?;
    if blocks.is_empty() && text.trim().is_empty() {
        return Err(PemError::Empty);
    }
    let (label, der) = blocks
        .into_iter()
        .find(|(l, _)| {
            matches!(
                l.as_str(),
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY"
            )
        })
        .ok_or(PemError::NoKey)?;
    Ok(match label.as_str() {
        "RSA PRIVATE KEY" => PrivatePkcs1KeyDer::from(der).into(),
        "EC PRIVATE KEY" => PrivateSec1KeyDer::from(der).into(),
        _ => PrivatePkcs8KeyDer::from(der).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_line_length() {
        let der: Vec<u8> = (0..=255u8).collect();
        let text = encode("CERTIFICATE", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(certificates(&text).unwrap(), vec![der]);
        assert!(matches!(
            certificates("nothing"),
            Err(PemError::NoCertificate)
        ));
        assert!(matches!(certificates(" \n"), Err(PemError::Empty)));
        assert!(matches!(
            decode_all("-----BEGIN X-----\nAAAA\n"),
            Err(PemError::Unterminated { .. })
        ));
        assert_eq!(
            decode_all("-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n-----END X-----\n")
                .unwrap_err()
                .to_string(),
            "X block has PEM headers"
        );
    }

    #[test]
    fn file_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let empty = p("empty.crt", "");
        let e = read_certificates(&empty).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: is empty", empty.display()));
        let junk = p("junk.crt", "hello\n");
        let e = read_certificates(&junk).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: no CERTIFICATE block", junk.display())
        );
        let not_x509 = p("bad.crt", &encode("CERTIFICATE", b"\x30\x03\x02\x01\x00"));
        let e = read_certificates(&not_x509).unwrap_err();
        assert!(matches!(e.problem, PemError::NotCertificate(_)), "{e}");
        let e = read_private_key(&junk).unwrap_err();
        assert!(matches!(e.problem, PemError::NoKey), "{e}");
        let e = certificate_not_after(&dir.path().join("missing.crt")).unwrap_err();
        assert!(matches!(e.problem, PemError::Io(_)), "{e}");

        // A real pair, then a key that is not the certificate's.
        let ka = rcgen::KeyPair::generate().unwrap();
        let kb = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 6);
        let cert = params.self_signed(&ka).unwrap();
        let crt = p("a.crt", &cert.pem());
        let key_a = p("a.key", &ka.serialize_pem());
        let key_b = p("b.key", &kb.serialize_pem());
        let (chain, _) = read_identity(&crt, &key_a).unwrap();
        assert_eq!(chain.len(), 1);
        let e = read_identity(&crt, &key_b).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: does not match the certificate in {}",
                key_b.display(),
                crt.display()
            )
        );
        let na = certificate_not_after(&crt).unwrap();
        assert_eq!(na, rcgen::date_time_ymd(2031, 5, 6));
    }
}
