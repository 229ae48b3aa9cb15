//! Active checks: TCP connect, TLS handshake with chain verification, and HTTPS `GET` of
//! the readiness path (and the liveness path when readiness fails), with optional mutual
//! TLS. A probe never outlives its timeout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::state::Outcome;
use crate::config::{CheckKind, CheckTls, HealthConfig};

/// Largest response body a check reads; the rest is ignored.
const MAX_BODY: usize = 64 * 1024;

/// Why TLS material for checks could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{key}: {}: {why}", path.display())]
    File {
        /// The config key that names the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the material (e.g. key does not match certificate).
    #[error("{key}: {why}")]
    Rejected {
        /// The config key.
        key: String,
        /// What rustls said.
        why: String,
    },
}

/// Build the rustls client config for checks from `tls` (aws-lc-rs provider). `key` is the
/// config key prefix for errors (e.g. `health.tls`). The files are read with
/// [`crate::pki::pem`]; a key that is not the private half of the certificate is refused.
pub fn client_config(tls: &CheckTls, key: &str) -> Result<Arc<ClientConfig>, TlsError> {
    use crate::pki::pem::{self, FileError, PemError};
    let file_err = |k: &str, e: FileError| TlsError::File {
        key: format!("{key}.{k}"),
        path: e.path,
        why: e.problem.to_string(),
    };
    let cas = pem::read_certificates(&tls.ca).map_err(|e| file_err("ca", e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| TlsError::File {
            key: format!("{key}.ca"),
            path: tls.ca.clone(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected {
            key: key.to_owned(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(k)) => {
            let (chain, private) = pem::read_identity(cert, k).map_err(|e| {
                let which = match e.problem {
                    PemError::KeyMismatch { .. } => "key",
                    _ if e.path == *cert => "cert",
                    _ => "key",
                };
                file_err(which, e)
            })?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| TlsError::Rejected {
                    key: format!("{key}.key"),
                    why: format!("does not go with {}: {e}", cert.display()),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A TLS server name to verify that is neither a DNS name nor an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a valid TLS server name")]
pub struct BadServerName(pub String);

/// Why one HTTP GET of a check failed (its Display is the reason a check reports).
#[derive(Debug, thiserror::Error)]
enum GetError {
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
}

/// Runs the checks of one backend.
#[derive(Debug, Clone)]
pub struct Prober {
    kind: CheckKind,
    path: String,
    live_path: Option<String>,
    timeout: Duration,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    host: String,
}

impl Prober {
    /// A prober for `cfg`; `tls` is the loaded client config (for tls and https kinds),
    /// `host` the backend's host (the default name to verify and send as Host).
    pub fn new(
        cfg: &HealthConfig,
        tls: Option<Arc<ClientConfig>>,
        host: &str,
    ) -> Result<Self, BadServerName> {
        let tls = match tls {
            Some(c) => {
                let name = cfg
                    .tls
                    .as_ref()
                    .and_then(|t| t.server_name.clone())
                    .unwrap_or_else(|| host.to_owned());
                let name = ServerName::try_from(name.clone()).map_err(|_| BadServerName(name))?;
                Some((c, name))
            }
            None => None,
        };
        Ok(Self {
            kind: cfg.kind,
            path: cfg.path.clone(),
            live_path: cfg.live_path.clone(),
            timeout: cfg.timeout,
            tls,
            host: host.to_owned(),
        })
    }

    /// The check kind.
    pub fn kind(&self) -> CheckKind {
        self.kind
    }

    /// Check `target` once, within the timeout.
    pub async fn probe(&self, target: SocketAddr) -> Outcome {
        match tokio::time::timeout(self.timeout, self.probe_inner(target)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Fail(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    async fn probe_inner(&self, target: SocketAddr) -> Outcome {
        let tcp = match TcpStream::connect(target).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Outcome::Refused(format!("connect: {e}"));
            }
            Err(e) => return Outcome::Fail(format!("connect: {e}")),
        };
        let _ = tcp.set_nodelay(true);
        let (config, name) = match (&self.kind, &self.tls) {
            (CheckKind::None | CheckKind::Tcp, _) => return Outcome::Pass,
            (_, Some(tls)) => tls,
            (_, None) => return Outcome::Fail("no TLS settings for this check".into()),
        };
        let connector = TlsConnector::from(Arc::clone(config));
        let stream = match connector.connect(name.clone(), tcp).await {
            Ok(s) => s,
            Err(e) => return Outcome::Fail(format!("TLS: {e}")),
        };
        if self.kind == CheckKind::Tls {
            return Outcome::Pass;
        }
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
            {
                Ok(x) => x,
                Err(e) => return Outcome::Fail(format!("HTTP: {e}")),
            };
        // The connection is driven here, beside the requests: nothing outlives the probe.
        let outcome = async {
            let ready = match self.get(&mut sender, &self.path).await {
                Ok(200) => return Outcome::Pass,
                Ok(status) => format!("GET {} answered {status}", self.path),
                Err(e) => return Outcome::Fail(format!("GET {}: {e}", self.path)),
            };
            let Some(live) = &self.live_path else {
                return Outcome::Fail(ready);
            };
            match self.get(&mut sender, live).await {
                Ok(200) => Outcome::Draining(format!("{ready}, GET {live} answered 200")),
                Ok(status) => Outcome::Fail(format!("{ready}, GET {live} answered {status}")),
                Err(e) => Outcome::Fail(format!("{ready}, GET {live}: {e}")),
            }
        };
        crate::http::drive(conn, outcome).await
    }

    async fn get(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        path: &str,
    ) -> Result<u16, GetError> {
        sender.ready().await?;
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(
                hyper::header::USER_AGENT,
                concat!("apilb/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "*/*")
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        // Read (a bounded part of) the body so the connection can carry the next request.
        let mut body = resp.into_body();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > MAX_BODY {
                    break;
                }
            }
        }
        Ok(status)
    }
}
