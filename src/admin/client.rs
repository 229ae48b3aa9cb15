//! Where `apilb status` and `apilb backend` find a running apilb: `ADDR`, `http://ADDR` or
//! `https://ADDR`, with `--ca` (the CA that signed the endpoint's certificate) and, for
//! `metrics.admin: mtls`, `--cert`/`--key` (an `apilb-admin` client certificate).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::pki::pem::{self, PemError};

/// An endpoint address as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointUrl {
    /// `https://` was written.
    pub https: bool,
    /// `false` when no scheme was written.
    pub explicit: bool,
    /// Host and port.
    pub address: SocketAddr,
}

impl FromStr for EndpointUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (https, explicit, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, true, r)
        } else {
            (false, false, s)
        };
        let rest = rest.trim_end_matches('/');
        let address = rest.parse::<SocketAddr>().map_err(|_| {
            format!(
                "\"{s}\" is not ADDR, http://ADDR or https://ADDR (ADDR an IP address and port)"
            )
        })?;
        Ok(EndpointUrl {
            https,
            explicit,
            address,
        })
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.explicit, self.https) {
            (_, true) => write!(f, "https://{}", self.address),
            (true, false) => write!(f, "http://{}", self.address),
            (false, false) => write!(f, "{}", self.address),
        }
    }
}

/// TLS files for the client (`--ca`, `--cert`, `--key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// `--ca`: verifies the endpoint's certificate.
    pub ca: Option<PathBuf>,
    /// `--cert`: the client certificate.
    pub cert: Option<PathBuf>,
    /// `--key`: its private key.
    pub key: Option<PathBuf>,
}

/// Why the client's TLS options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// TLS files were given for a plain `http://` address.
    #[error("--ca, --cert and --key are for https:// addresses, and {0} is http://")]
    PlainWithTls(EndpointUrl),
    /// HTTPS without a CA to check the endpoint against.
    #[error(
        "{0}: https needs --ca, the CA that signed the endpoint's certificate (metrics.tls.cert)"
    )]
    NoCa(EndpointUrl),
    /// `--cert` without `--key` or the other way round.
    #[error("--cert and --key go together")]
    HalfIdentity,
    /// A file cannot be used.
    #[error("{flag}: {source}")]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The problem.
        source: pem::FileError,
    },
    /// rustls refused the material.
    #[error("{flag}: {why}")]
    Rejected {
        /// The flag.
        flag: &'static str,
        /// Why.
        why: String,
    },
}

/// A running apilb's endpoint: its address, and TLS settings when it speaks HTTPS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host and port.
    pub address: SocketAddr,
    /// The TLS client config (`None`: plain HTTP).
    pub tls: Option<Arc<ClientConfig>>,
}

impl From<SocketAddr> for Endpoint {
    fn from(address: SocketAddr) -> Self {
        Endpoint { address, tls: None }
    }
}

impl Endpoint {
    /// The endpoint at `url` with `files` (read now). TLS is used for `https://` and for a
    /// bare address given with TLS files.
    pub fn new(url: EndpointUrl, files: &ClientFiles) -> Result<Endpoint, OptionsError> {
        let any_file = files.ca.is_some() || files.cert.is_some() || files.key.is_some();
        let https = url.https || (!url.explicit && any_file);
        if !https {
            if any_file {
                return Err(OptionsError::PlainWithTls(url));
            }
            return Ok(Endpoint::from(url.address));
        }
        let ca = files.ca.as_ref().ok_or(OptionsError::NoCa(url))?;
        let cas = pem::read_certificates(ca).map_err(|source| OptionsError::File {
            flag: "--ca",
            source,
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in cas {
            roots.add(c).map_err(|e| OptionsError::Rejected {
                flag: "--ca",
                why: format!("{}: not a usable CA certificate: {e}", ca.display()),
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OptionsError::Rejected {
                flag: "--ca",
                why: e.to_string(),
            })?
            .with_root_certificates(roots);
        let config = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => {
                let (chain, private) = pem::read_identity(cert, key).map_err(|e| {
                    let flag = match e.problem {
                        PemError::KeyMismatch { .. } => "--key",
                        _ if e.path == *cert => "--cert",
                        _ => "--key",
                    };
                    OptionsError::File { flag, source: e }
                })?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    OptionsError::Rejected {
                        flag: "--key",
                        why: e.to_string(),
                    }
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(OptionsError::HalfIdentity),
        };
        Ok(Endpoint {
            address: url.address,
            tls: Some(Arc::new(config)),
        })
    }

    /// The name the endpoint's certificate must carry: its IP address.
    pub(super) fn server_name(&self) -> ServerName<'static> {
        ServerName::IpAddress(self.address.ip().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_scheme() {
        let u: EndpointUrl = "https://127.0.0.1:9441/".parse().expect("https");
        assert!(u.https && u.explicit);
        assert_eq!(u.to_string(), "https://127.0.0.1:9441");
        let u: EndpointUrl = "[::1]:9441".parse().expect("bare");
        assert!(!u.https && !u.explicit);
        let u: EndpointUrl = "http://10.0.0.1:80".parse().expect("http");
        assert!(!u.https && u.explicit);
        let e = "https://lb-1:9441"
            .parse::<EndpointUrl>()
            .expect_err("name");
        assert!(e.contains("not ADDR, http://ADDR or https://ADDR"), "{e}");
    }

    #[test]
    fn tls_files_need_https_and_a_ca() {
        let plain: EndpointUrl = "http://127.0.0.1:1".parse().expect("url");
        let files = ClientFiles {
            ca: Some("/nonexistent/ca.crt".into()),
            ..ClientFiles::default()
        };
        assert!(matches!(
            Endpoint::new(plain, &files),
            Err(OptionsError::PlainWithTls(_))
        ));
        let https: EndpointUrl = "https://127.0.0.1:1".parse().expect("url");
        assert!(matches!(
            Endpoint::new(https, &ClientFiles::default()),
            Err(OptionsError::NoCa(_))
        ));
        let e = Endpoint::new(https, &files).expect_err("missing file");
        assert!(
            e.to_string().starts_with("--ca: /nonexistent/ca.crt:"),
            "{e}"
        );
    }
}
