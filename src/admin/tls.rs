//! The admin endpoint over HTTPS (`metrics.tls`) and who a client certificate proves to be.
//!
//! The handshake asks for a client certificate (when `clientCa` is set) but does not insist
//! on one and does not judge its chain: `/metrics` and `/status` stay readable for scrapers
//! without a certificate, and a refused certificate gets an HTTP answer that says why rather
//! than a TLS alert. The handshake still checks that the client holds the certificate's key
//! (rustls verifies its CertificateVerify signature). Before any state change the handler
//! asks [`AdminTls::identify`], which verifies the chain against `clientCa` (client-auth
//! usage, validity now) and the name: subject CN or a DNS SAN equal to [`ADMIN_NAME`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio_rustls::TlsAcceptor;

use crate::config::MetricsTls;
use crate::pki::pem::{self, FileError, PemError};

/// The name a client certificate must carry (subject CN or DNS SAN) to change state under
/// `metrics.admin: mtls`.
pub const ADMIN_NAME: &str = "apilb-admin";

/// Why `metrics.tls` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or not what it should be.
    #[error("metrics.tls.{key}: {source}")]
    File {
        /// `cert`, `key` or `clientCa`.
        key: &'static str,
        /// The file and the problem.
        source: FileError,
    },
    /// rustls refused the material.
    #[error("metrics.tls.{key}: {path}: {why}")]
    Rejected {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The loaded `metrics.tls`: the acceptor, and the verifier of operators' certificates.
#[derive(Clone)]
pub struct AdminTls {
    acceptor: TlsAcceptor,
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTls")
            .field("client_ca", &self.clients.is_some())
            .finish_non_exhaustive()
    }
}

/// What a connection's client certificate means for state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// No certificate (or plain HTTP).
    Anonymous,
    /// Signed by `clientCa` and named [`ADMIN_NAME`].
    Admin,
    /// A certificate that does not qualify, and why.
    Refused(String),
}

impl AdminTls {
    /// Read and check the files of `tls` (blocking: call off the runtime).
    pub fn load(tls: &MetricsTls) -> Result<AdminTls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (chain, key) = pem::read_identity(&tls.cert, &tls.key).map_err(|e| {
            let which = match e.problem {
                PemError::KeyMismatch { .. } => "key",
                _ if e.path == tls.cert => "cert",
                _ => "key",
            };
            TlsError::File {
                key: which,
                source: e,
            }
        })?;
        let clients = match &tls.client_ca {
            Some(ca) => Some(client_verifier(ca, &provider)?),
            None => None,
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| rejected("cert", &tls.cert, &e))?;
        let builder = match &clients {
            Some(v) => builder.with_client_cert_verifier(Arc::new(Deferred(Arc::clone(v)))),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| rejected("key", &tls.key, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AdminTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            clients,
        })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Judge the certificate chain a client presented (`None`: it presented none).
    pub fn identify(&self, chain: Option<&[CertificateDer<'_>]>) -> Client {
        let Some((end, intermediates)) = chain.and_then(<[_]>::split_first) else {
            return Client::Anonymous;
        };
        let Some(verifier) = &self.clients else {
            return Client::Refused("metrics.tls has no clientCa to verify it against".into());
        };
        if let Err(e) = verifier.verify_client_cert(end, intermediates, UnixTime::now()) {
            return Client::Refused(format!(
                "the client certificate is not signed by metrics.tls.clientCa ({e})"
            ));
        }
        match certificate_names(end) {
            Ok(names) if names.iter().any(|n| n == ADMIN_NAME) => Client::Admin,
            Ok(names) => Client::Refused(format!(
                "the client certificate names {} (subject CN and DNS SANs), not {ADMIN_NAME}",
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            )),
            Err(e) => Client::Refused(format!("the client certificate cannot be read: {e}")),
        }
    }
}

fn rejected(key: &'static str, path: &Path, e: &dyn std::fmt::Display) -> TlsError {
    TlsError::Rejected {
        key,
        path: path.to_owned(),
        why: e.to_string(),
    }
}

fn client_verifier(
    ca: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let cas = pem::read_certificates(ca).map_err(|source| TlsError::File {
        key: "clientCa",
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in cas {
        roots
            .add(c)
            .map_err(|e| rejected("clientCa", ca, &format!("not a usable CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| rejected("clientCa", ca, &e))
}

/// Subject CNs and DNS SANs of a certificate.
fn certificate_names(der: &CertificateDer<'_>) -> Result<Vec<String>, PemError> {
    use x509_parser::extensions::GeneralName;
    let x = pem::parse_certificate(der)?;
    let mut names: Vec<String> = x
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    Ok(names)
}

/// The handshake side of client authentication: offer it, never require it, check the
/// client's proof of key possession, and leave the chain to [`AdminTls::identify`].
#[derive(Debug)]
struct Deferred(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Judged per request by `AdminTls::identify` before any state change.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
