//! Certificates of the drill, made with rcgen at start into a temp dir: a CA, the
//! apiserver serving certificate (SANs 127.0.0.1 and `kubernetes`) and the health client
//! certificate apilb's checks present (mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Paths of the generated PEM files.
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

impl Pki {
    /// Generates everything into `dir`.
    pub(crate) fn generate(dir: &Path) -> anyhow::Result<Self> {
        let ca = ca("drill-kubernetes-ca")?;
        let (server, server_key) = leaf(
            &ca,
            "kube-apiserver",
            &["127.0.0.1", "kubernetes"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client, client_key) = leaf(
            &ca,
            "apilb-health",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
            Ok(p)
        };
        Ok(Self {
            ca: write("ca.crt", &ca.pem())?,
            server_cert: write("apiserver.crt", &server)?,
            server_key: write("apiserver.key", &server_key)?,
            client_cert: write("health-client.crt", &client)?,
            client_key: write("health-client.key", &client_key)?,
        })
    }
}

fn ca(cn: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(p, KeyPair::generate()?)?)
}

/// A leaf certificate and its key, both PEM.
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![eku];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The CA as a root store.
pub(crate) fn roots(ca: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("read {}", ca.display()))? {
        roots.add(c?)?;
    }
    Ok(roots)
}

/// What the load clients use: trust the CA, no client certificate, and no session
/// resumption, so every connection makes a full handshake like a fresh kubectl process.
pub(crate) fn load_client_config(ca: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}
