//! A stand-in kube-apiserver: rustls HTTPS on 127.0.0.1 with certificates made at test
//! time, `/readyz` and `/livez` the test flips, `/name` to tell backends apart, optional
//! client-certificate requirement, and a "hung" mode that accepts TCP and never answers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A CA, an apiserver serving certificate (127.0.0.1, `kubernetes`), a health client
/// certificate from the same CA, and one from an unrelated CA. Files live in a temp dir.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
    server_cert_pem: String,
    server_key_pem: String,
    ca_pem: String,
}

fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![eku];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_issuer = ca("test-kubernetes-ca");
        let stranger_ca = ca("some-other-ca");
        let (server_cert_pem, server_key_pem) = leaf(
            &ca_issuer,
            "kube-apiserver",
            &["127.0.0.1", "kubernetes", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) = leaf(
            &ca_issuer,
            "apilb-health",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (stranger_pem, stranger_key_pem) = leaf(
            &stranger_ca,
            "apilb-health",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        let ca_pem = ca_issuer.pem();
        Self {
            ca: write("ca.crt", &ca_pem),
            client_cert: write("health-client.crt", &client_pem),
            client_key: write("health-client.key", &client_key_pem),
            stranger_cert: write("stranger.crt", &stranger_pem),
            stranger_key: write("stranger.key", &stranger_key_pem),
            server_cert_pem,
            server_key_pem,
            ca_pem,
            dir,
        }
    }

    /// A directory laid out as a master's `pki/` (apiserver.crt, apiserver.key, ca.crt),
    /// as the demo's stand-in apiserver reads it.
    pub fn master_pki_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("master-pki");
        std::fs::create_dir_all(&dir).expect("mkdir master-pki");
        std::fs::write(dir.join("apiserver.crt"), &self.server_cert_pem).expect("write");
        std::fs::write(dir.join("apiserver.key"), &self.server_key_pem).expect("write");
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).expect("write");
        dir
    }

    /// The health section for https checks with mutual TLS, as YAML.
    pub fn health_yaml(&self, extra: &str) -> String {
        format!(
            "health:\n  kind: https\n  tls:\n    ca: \"{}\"\n    cert: \"{}\"\n    key: \"{}\"\n{extra}",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }

    fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server cert");
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("key");
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots.add(c.expect("ca")).expect("add ca");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(certs, key).expect("server config"))
    }

    /// A client config that trusts the CA and presents the health client certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.expect("ca")).expect("add ca");
        }
        let chain: Vec<_> = CertificateDer::pem_file_iter(&self.client_cert)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(&self.client_key).expect("key");
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("client config"),
        )
    }
}

/// A stand-in apiserver.
pub struct FakeApiserver {
    pub name: String,
    pub addr: SocketAddr,
    ready: Arc<AtomicBool>,
    live: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeApiserver {
    pub async fn start(name: &str, pki: &TestPki, require_client_cert: bool) -> Self {
        Self::start_on(
            name,
            pki,
            require_client_cert,
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
    }

    pub async fn start_on(
        name: &str,
        pki: &TestPki,
        require_client_cert: bool,
        addr: SocketAddr,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind apiserver");
        let addr = listener.local_addr().expect("addr");
        let ready = Arc::new(AtomicBool::new(true));
        let live = Arc::new(AtomicBool::new(true));
        let hang = Arc::new(AtomicBool::new(false));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(require_client_cert));
        let accept = {
            let (ready, live, hang, tasks) =
                (ready.clone(), live.clone(), hang.clone(), tasks.clone());
            let name = name.to_owned();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let (ready, live, hang) = (ready.clone(), live.clone(), hang.clone());
                    let acceptor = acceptor.clone();
                    let name = name.clone();
                    tasks.lock().await.spawn(async move {
                        if hang.load(Ordering::SeqCst) {
                            // Accept, never answer: hold the socket until aborted.
                            let _held = tcp;
                            std::future::pending::<()>().await;
                            return;
                        }
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service =
                            service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                let (ready, live, hang, name) =
                                    (ready.clone(), live.clone(), hang.clone(), name.clone());
                                async move {
                                    if hang.load(Ordering::SeqCst) {
                                        std::future::pending::<()>().await;
                                    }
                                    let flag = |b: &AtomicBool| {
                                        if b.load(Ordering::SeqCst) { 200 } else { 500 }
                                    };
                                    let (status, body) = match req.uri().path() {
                                        "/readyz" => (flag(&ready), "readyz".to_owned()),
                                        "/livez" => (flag(&live), "livez".to_owned()),
                                        "/name" => (200, name),
                                        _ => (404, "not found".to_owned()),
                                    };
                                    Ok::<_, std::convert::Infallible>(
                                        hyper::Response::builder()
                                            .status(status)
                                            .body(Full::new(Bytes::from(body)))
                                            .expect("response"),
                                    )
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        Self {
            name: name.to_owned(),
            addr,
            ready,
            live,
            hang,
            tasks,
            accept,
        }
    }

    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::SeqCst);
    }

    pub fn set_live(&self, v: bool) {
        self.live.store(v, Ordering::SeqCst);
    }

    /// New connections and requests are accepted and never answered.
    pub fn set_hang(&self, v: bool) {
        self.hang.store(v, Ordering::SeqCst);
    }

    /// Kill it: the listener closes and every connection is dropped.
    pub async fn kill(&self) {
        self.accept.abort();
        self.tasks.lock().await.abort_all();
        // Wait for the listening socket to be gone.
        let addr = self.addr;
        crate::support::wait_until(
            crate::support::WAIT,
            "apiserver port closed",
            || async move { TcpStream::connect(addr).await.is_err() },
        )
        .await;
    }
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut t) = self.tasks.try_lock() {
            t.abort_all();
        }
    }
}

/// An HTTPS connection through the LB (TLS to the apiserver behind it).
pub struct HttpsConn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    _driver: tokio::task::JoinHandle<()>,
}

impl HttpsConn {
    pub async fn open(lb: SocketAddr, pki: &TestPki) -> Self {
        Self::try_open(lb, pki)
            .await
            .expect("HTTPS connection through the LB")
    }

    pub async fn try_open(lb: SocketAddr, pki: &TestPki) -> Result<Self, String> {
        let tcp = TcpStream::connect(lb).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(pki.client_config());
        let name = ServerName::try_from("kubernetes").expect("name");
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            _driver: driver,
        })
    }

    /// GET `path`: status and body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, "kubernetes")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Which apiserver this connection reaches.
    pub async fn name(&mut self) -> String {
        let (status, body) = self.get("/name").await.expect("GET /name");
        assert_eq!(status, 200);
        body
    }
}

/// Which apiserver a new connection through `lb` reaches.
pub async fn apiserver_behind(lb: SocketAddr, pki: &TestPki) -> String {
    HttpsConn::open(lb, pki).await.name().await
}
