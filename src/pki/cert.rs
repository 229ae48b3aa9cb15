//! Certificates: the three CAs and leaf issuance, with the typestate that a leaf can only be
//! signed by a [`Ca`] (a CA certificate *with* its key), while a [`CaCert`] (certificate only,
//! e.g. an external CA) can only verify. Also the checks applied to existing leaves (chain,
//! validity, EKU via rustls-webpki; subject, SANs and key match via x509-parser).

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::key::PrivateKey;
use super::pem::{self, PemError};
use crate::cluster::San;

/// Why a CA could not be loaded or made, or a certificate not signed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The PEM text or the certificate in it.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A certificate used as a CA is not one.
    #[error("is not a CA certificate (basicConstraints CA:FALSE or absent)")]
    NotCa,
    /// A CA key that is not the private half of its certificate.
    #[error("{base}.key does not match {base}.crt")]
    KeyMismatch {
        /// The CA's base name (`ca`, `etcd/ca` ...).
        base: &'static str,
    },
    /// The system random generator failed (serial numbers).
    #[error("the system random generator failed")]
    Random,
    /// A DNS name rcgen refuses as a SAN.
    #[error("bad DNS SAN {name:?}: {detail}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        detail: String,
    },
    /// Signing failed.
    #[error("cannot sign {what}: {detail}")]
    Sign {
        /// What was being signed, or with what.
        what: String,
        /// What rcgen said.
        detail: String,
    },
}

/// NotBefore is backdated by this much (kubeadm's `CertificateBackdate`), so that a small
/// clock skew between this machine and the nodes does not make fresh certificates invalid.
pub const BACKDATE: Duration = Duration::minutes(5);

/// The three kubeadm CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaKind {
    /// `ca`: CN `kubernetes`.
    Cluster,
    /// `front-proxy-ca`.
    FrontProxy,
    /// `etcd/ca`: CN `etcd-ca`.
    Etcd,
    /// `apilb-admin-ca`: signs the LB hosts' admin endpoint certificates and the operators'
    /// `apilb-admin` client certificate (not a kubeadm CA: not in [`CaKind::ALL`]).
    ApilbAdmin,
}

impl CaKind {
    /// Every kubeadm CA.
    pub const ALL: [CaKind; 3] = [CaKind::Cluster, CaKind::FrontProxy, CaKind::Etcd];

    /// Base name under the pki directory.
    pub fn base(self) -> &'static str {
        match self {
            CaKind::Cluster => "ca",
            CaKind::FrontProxy => "front-proxy-ca",
            CaKind::Etcd => "etcd/ca",
            CaKind::ApilbAdmin => "apilb-admin-ca",
        }
    }

    /// Subject CN (and its one DNS SAN).
    pub fn common_name(self) -> &'static str {
        match self {
            CaKind::Cluster => "kubernetes",
            CaKind::FrontProxy => "front-proxy-ca",
            CaKind::Etcd => "etcd-ca",
            CaKind::ApilbAdmin => "apilb-admin-ca",
        }
    }

    /// kubeadm's name for it (`kubeadm certs check-expiration`).
    pub fn name(self) -> &'static str {
        match self {
            CaKind::Cluster => "ca",
            CaKind::FrontProxy => "front-proxy-ca",
            CaKind::Etcd => "etcd-ca",
            CaKind::ApilbAdmin => "apilb-admin-ca",
        }
    }
}

/// Extended key usage of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server.
    ServerAuth,
    /// TLS client.
    ClientAuth,
}

/// Subject alternative names: DNS names deduplicated and sorted, IPs deduplicated in
/// insertion order (kubeadm's `RemoveDuplicateAltNames`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SanList {
    /// DNS names, sorted.
    pub dns: BTreeSet<String>,
    /// IP addresses, first occurrence order.
    pub ips: Vec<IpAddr>,
}

impl SanList {
    /// Add one name.
    pub fn push(&mut self, san: &San) {
        match san {
            San::Dns(d) => {
                self.dns.insert(d.clone());
            }
            San::Ip(ip) => self.push_ip(*ip),
        }
    }

    /// Add a DNS name.
    pub fn push_dns(&mut self, d: &str) {
        self.dns.insert(d.to_owned());
    }

    /// Add an IP unless present.
    pub fn push_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ips.is_empty()
    }

    /// Every name, DNS first (the order they are written in).
    pub fn iter(&self) -> impl Iterator<Item = San> + '_ {
        self.dns
            .iter()
            .map(|d| San::Dns(d.clone()))
            .chain(self.ips.iter().map(|ip| San::Ip(*ip)))
    }
}

/// What a leaf certificate must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The CA that signs it.
    pub ca: CaKind,
    /// Subject CN.
    pub common_name: String,
    /// Subject O values (Kubernetes groups).
    pub organizations: Vec<String>,
    /// Extended key usages.
    pub usages: Vec<Usage>,
    /// Required subject alternative names.
    pub sans: SanList,
}

impl Profile {
    /// `O=a, O=b, CN=x`, in the order Go writes them.
    pub fn subject(&self) -> String {
        subject_string(&self.organizations, &self.common_name)
    }
}

fn subject_string(orgs: &[String], cn: &str) -> String {
    orgs.iter()
        .map(|o| format!("O={o}"))
        .chain(std::iter::once(format!("CN={cn}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// NotBefore/NotAfter of a certificate to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start (already backdated).
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Window {
    /// kubeadm's rule: `now − 5 min` to `now + validity`.
    pub fn starting(now: OffsetDateTime, validity: std::time::Duration) -> Window {
        let validity = Duration::try_from(validity).unwrap_or(Duration::MAX);
        Window {
            not_before: now - BACKDATE,
            not_after: now.checked_add(validity).unwrap_or(now),
        }
    }
}

/// A certificate as PEM text and DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPem {
    /// DER of the (first) certificate.
    pub der: Vec<u8>,
    /// The PEM text as stored.
    pub pem: String,
}

/// A CA certificate without its key: can verify, cannot sign.
#[derive(Debug, Clone)]
pub struct CaCert {
    kind: CaKind,
    cert: CertPem,
}

/// A CA certificate with its key: the only thing that can sign a leaf.
#[derive(Debug)]
pub struct Ca {
    cert: CaCert,
    key: PrivateKey,
}

fn dn_value(s: &str) -> DnValue {
    match rcgen::string::PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_owned()),
    }
}

/// A random serial in [1, 2^63 − 1), as kubeadm draws it.
fn random_serial() -> Result<SerialNumber, CertError> {
    loop {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| CertError::Random)?;
        let v = u64::from_be_bytes(b) & (u64::MAX >> 1);
        if v != 0 && v != u64::MAX >> 1 {
            let bytes = v.to_be_bytes();
            let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
            return Ok(SerialNumber::from_slice(&bytes[first..]));
        }
    }
}

impl CaCert {
    /// Parse a CA certificate file: the first `CERTIFICATE` block must be a CA.
    pub fn from_pem(kind: CaKind, text: &str) -> Result<CaCert, CertError> {
        let der = pem::first_certificate(text)?;
        let x = pem::parse_certificate(&der)?;
        if !x.is_ca() {
            return Err(CertError::NotCa);
        }
        Ok(CaCert {
            kind,
            cert: CertPem {
                pem: text.to_owned(),
                der,
            },
        })
    }

    /// Which CA.
    pub fn kind(&self) -> CaKind {
        self.kind
    }

    /// The certificate.
    pub fn cert(&self) -> &CertPem {
        &self.cert
    }

    /// The PEM of the single certificate, as kubeadm embeds it in kubeconfigs.
    pub fn single_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.cert.der)
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Result<Vec<u8>, PemError> {
        let x = pem::parse_certificate(&self.cert.der)?;
        Ok(x.tbs_certificate.subject_pki.raw.to_vec())
    }

    /// Every reason why `chain_pem` (leaf first, then intermediates) with `key` is not a
    /// valid `profile` certificate from this CA at `now`; empty when it is.
    pub fn check_leaf(
        &self,
        chain_pem: &str,
        key: Option<&PrivateKey>,
        profile: &Profile,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let ders = match pem::certificates(chain_pem) {
            Ok(d) => d,
            Err(e) => return vec![e.to_string()],
        };
        let leaf_der = CertificateDer::from(ders[0].as_slice());
        let intermediates: Vec<CertificateDer<'_>> = ders[1..]
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let leaf = match webpki::EndEntityCert::try_from(&leaf_der) {
            Ok(l) => l,
            Err(e) => return vec![format!("not a valid X.509 certificate: {e}")],
        };
        let ca_der = CertificateDer::from(self.cert.der.as_slice());
        let anchor = match webpki::anchor_from_trusted_cert(&ca_der) {
            Ok(a) => a,
            Err(e) => return vec![format!("the CA {} cannot be used: {e}", self.kind.base())],
        };
        let unix = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now.unix_timestamp()).unwrap_or(0),
        ));
        for usage in &profile.usages {
            let ku = match usage {
                Usage::ServerAuth => webpki::KeyUsage::server_auth(),
                Usage::ClientAuth => webpki::KeyUsage::client_auth(),
            };
            if let Err(e) = leaf.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                &intermediates,
                unix,
                ku,
                None,
                None,
            ) {
                problems.push(match e {
                    webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                        format!(
                            "is not signed by the CA {}.crt ({})",
                            self.kind.base(),
                            self.kind.common_name()
                        )
                    }
                    webpki::Error::CertExpired { not_after, .. } => {
                        format!("expired at {}", unix_to_string(not_after))
                    }
                    webpki::Error::CertNotValidYet { not_before, .. } => {
                        format!("is not valid before {}", unix_to_string(not_before))
                    }
                    webpki::Error::RequiredEkuNotFoundContext(_) => {
                        format!("lacks the extended key usage {usage:?}")
                    }
                    other => format!("does not verify against {}.crt: {other}", self.kind.base()),
                });
                break;
            }
        }
        let Ok((_, x)) = X509Certificate::from_der(&ders[0]) else {
            problems.push("not a valid X.509 certificate".into());
            return problems;
        };
        let info = CertInfo::from_x509(&x);
        if info.common_name != profile.common_name || info.organizations != profile.organizations {
            problems.push(format!(
                "has subject {:?}, expected {:?}",
                info.subject,
                profile.subject()
            ));
        }
        for san in profile.sans.iter() {
            if !covers(&leaf, &info, &san) {
                problems.push(format!("does not cover the required SAN {san}"));
            }
        }
        if let Some(key) = key {
            if x.tbs_certificate.subject_pki.raw != key.spki_der().as_slice() {
                problems.push("does not match its private key".into());
            }
        }
        problems
    }
}

fn covers(leaf: &webpki::EndEntityCert<'_>, info: &CertInfo, san: &San) -> bool {
    match san {
        San::Ip(ip) => leaf
            .verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into()))
            .is_ok(),
        San::Dns(d) if d.starts_with("*.") => info.sans.contains(san),
        San::Dns(d) => match DnsName::try_from(d.as_str()) {
            Ok(name) => leaf
                .verify_is_valid_for_subject_name(&ServerName::DnsName(name))
                .is_ok(),
            Err(_) => info.sans.contains(san),
        },
    }
}

fn unix_to_string(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map(format_time)
        .unwrap_or_else(|| format!("{}s after the epoch", t.as_secs()))
}

/// `2026-01-02 15:04:05 UTC`.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Ca {
    /// A new self-signed CA with a new key.
    pub fn generate(kind: CaKind, key: PrivateKey, window: Window) -> Result<Ca, CertError> {
        let mut params = CertificateParams::default();
        params.not_before = window.not_before;
        params.not_after = window.not_after;
        params.serial_number = Some(random_serial()?);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, dn_value(kind.common_name()));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.subject_alt_names = vec![SanType::DnsName(kind.common_name().try_into().map_err(
            |e: rcgen::Error| CertError::BadName {
                name: kind.common_name().to_owned(),
                detail: e.to_string(),
            },
        )?)];
        let cert = params
            .self_signed(key.pair())
            .map_err(|e| CertError::Sign {
                what: format!("the {} certificate", kind.base()),
                detail: e.to_string(),
            })?;
        let der = cert.der().to_vec();
        Ok(Ca {
            cert: CaCert {
                kind,
                cert: CertPem {
                    pem: pem::encode("CERTIFICATE", &der),
                    der,
                },
            },
            key,
        })
    }

    /// Pair a CA certificate with its key; they must match.
    pub fn new(cert: CaCert, key: PrivateKey) -> Result<Ca, CertError> {
        if cert.spki_der()? != key.spki_der() {
            return Err(CertError::KeyMismatch {
                base: cert.kind.base(),
            });
        }
        Ok(Ca { cert, key })
    }

    /// The certificate half.
    pub fn cert(&self) -> &CaCert {
        &self.cert
    }

    /// The key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Sign a leaf for `key`. NotAfter is capped at the CA's own NotAfter.
    pub fn issue(
        &self,
        profile: &Profile,
        key: &PrivateKey,
        window: Window,
    ) -> Result<CertPem, CertError> {
        let ca = pem::parse_certificate(&self.cert.cert.der)?;
        let ca_end = ca.validity().not_after.to_datetime();
        let mut params = CertificateParams::default();
        params.not_before = window.not_before;
        params.not_after = window.not_after.min(ca_end);
        params.serial_number = Some(random_serial()?);
        let mut dn = DistinguishedName::new();
        for o in &profile.organizations {
            dn.push(DnType::OrganizationName, dn_value(o));
        }
        dn.push(DnType::CommonName, dn_value(&profile.common_name));
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = profile
            .usages
            .iter()
            .map(|u| match u {
                Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        params.use_authority_key_identifier_extension = true;
        for d in &profile.sans.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into().map_err(
                    |e: rcgen::Error| CertError::BadName {
                        name: d.clone(),
                        detail: e.to_string(),
                    },
                )?));
        }
        for ip in &profile.sans.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(self.cert.cert.der.as_slice()),
            self.key.pair(),
        )
        .map_err(|e| CertError::Sign {
            what: format!("with {}.crt", self.cert.kind.base()),
            detail: e.to_string(),
        })?;
        let cert = params
            .signed_by(key.pair(), &issuer)
            .map_err(|e| CertError::Sign {
                what: format!("a {} certificate", profile.common_name),
                detail: e.to_string(),
            })?;
        let der = cert.der().to_vec();
        Ok(CertPem {
            pem: pem::encode("CERTIFICATE", &der),
            der,
        })
    }
}

/// What the summary and `check-expiration` show about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// `O=…, CN=…`.
    pub subject: String,
    /// Subject CN.
    pub common_name: String,
    /// Subject O values.
    pub organizations: Vec<String>,
    /// SANs in certificate order.
    pub sans: Vec<San>,
    /// NotBefore.
    pub not_before: OffsetDateTime,
    /// NotAfter.
    pub not_after: OffsetDateTime,
}

impl CertInfo {
    /// Read the first certificate of a PEM text.
    pub fn from_pem(text: &str) -> Result<CertInfo, PemError> {
        let der = pem::first_certificate(text)?;
        let x = pem::parse_certificate(&der)?;
        Ok(CertInfo::from_x509(&x))
    }

    fn from_x509(x: &X509Certificate<'_>) -> CertInfo {
        let subject = x.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let organizations: Vec<String> = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect();
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = x.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => sans.push(San::Dns((*d).to_owned())),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            sans.push(San::Ip(IpAddr::from(a)));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            sans.push(San::Ip(IpAddr::from(a)));
                        }
                    }
                    _ => {}
                }
            }
        }
        CertInfo {
            subject: subject_string(&organizations, &common_name),
            common_name,
            organizations,
            sans,
            not_before: x.validity().not_before.to_datetime(),
            not_after: x.validity().not_after.to_datetime(),
        }
    }
}
