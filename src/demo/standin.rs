//! A stand-in kube-apiserver for the demo: HTTPS with the issued apiserver certificate,
//! client certificates from the cluster CA required, `/readyz`, `/livez`, `/healthz`,
//! `/version`, and `/watch`, a stream that stays open like a watch. It can be stopped,
//! started again on the same address, drained like kube-apiserver with
//! `--shutdown-delay-duration` (readyz fails, livez passes, then it exits), or hung.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long a draining stand-in keeps serving (with readyz failing) before it exits.
pub const DRAIN_DELAY: Duration = Duration::from_secs(10);

/// Why a stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Its certificate, key or CA could not be loaded.
    #[error("{}: {why}", path.display())]
    Pki {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Its address could not be bound.
    #[error("stand-in apiserver {name}: cannot listen on {addr}: {source}")]
    Bind {
        /// Its name.
        name: String,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

const SERVING: u8 = 0;
const DRAINING: u8 = 1;
const HUNG: u8 = 2;

/// What a stand-in is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not listening.
    Stopped,
    /// Answering everything.
    Serving,
    /// readyz fails, livez passes; it exits after [`DRAIN_DELAY`].
    Draining,
    /// Accepting connections and never answering.
    Hung,
}

/// One stand-in apiserver.
pub struct Standin {
    name: String,
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicU64>,
    running: Mutex<Option<Running>>,
    /// Stopped runs whose tasks were aborted but may not have dropped their sockets yet:
    /// [`start`](Standin::start) waits for them before it binds the address again.
    closing: Mutex<Vec<Running>>,
}

struct Running {
    accept: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<JoinSet<()>>>,
    drain_timer: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Abort the listener, every connection and the drain timer. Aborting only asks: each
    /// task drops its socket when the runtime next gets to it ([`closed`](Self::closed)).
    fn abort(&self) {
        self.accept.abort();
        lock(&self.conns).abort_all();
        if let Some(t) = &self.drain_timer {
            t.abort();
        }
    }

    /// Returns once the listening socket and every connection are closed.
    async fn closed(self) {
        // An aborted task's future, and the listener in it, is dropped before its handle
        // resolves. Connections are awaited after it, so none accepted meanwhile is missed.
        let _ = self.accept.await;
        let mut conns = std::mem::take(&mut *lock(&self.conns));
        conns.shutdown().await;
    }
}

impl std::fmt::Debug for Standin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standin")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("mode", &self.mode())
            .finish()
    }
}

impl Standin {
    /// A stand-in named `name` for `addr`, with the PEM files of a master's `pki/` dir.
    pub fn new(name: &str, addr: SocketAddr, pki: &Path) -> Result<Self, Error> {
        Ok(Self {
            name: name.to_owned(),
            addr,
            tls: server_config(pki)?,
            mode: Arc::new(AtomicU8::new(SERVING)),
            requests: Arc::new(AtomicU64::new(0)),
            running: Mutex::new(None),
            closing: Mutex::new(Vec::new()),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Client connections it holds open now (hung ones included).
    pub fn open_connections(&self) -> usize {
        let running = lock(&self.running);
        let Some(r) = running.as_ref() else { return 0 };
        let mut conns = lock(&r.conns);
        while conns.try_join_next().is_some() {}
        conns.len()
    }

    /// What it is doing.
    pub fn mode(&self) -> Mode {
        if lock(&self.running).is_none() {
            return Mode::Stopped;
        }
        match self.mode.load(Ordering::SeqCst) {
            DRAINING => Mode::Draining,
            HUNG => Mode::Hung,
            _ => Mode::Serving,
        }
    }

    /// Start listening (again) and serving. A running (serving, draining or hung) stand-in
    /// is stopped first, and its listener and connections are closed before the address is
    /// bound again, so a restart never finds its own old socket in the way.
    pub async fn start(self: &Arc<Self>) -> Result<(), Error> {
        self.stop();
        let closing = std::mem::take(&mut *lock(&self.closing));
        for r in closing {
            r.closed().await;
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                name: self.name.clone(),
                addr: self.addr,
                source,
            })?;
        self.mode.store(SERVING, Ordering::SeqCst);
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn(accept_loop(Arc::clone(self), listener, Arc::clone(&conns)));
        *lock(&self.running) = Some(Running {
            accept,
            conns,
            drain_timer: None,
        });
        Ok(())
    }

    /// Stop at once, like a killed process: the listener and every connection close.
    pub fn stop(&self) {
        if let Some(r) = lock(&self.running).take() {
            r.abort();
            lock(&self.closing).push(r);
        }
    }

    /// Shut down gracefully: readyz fails while livez passes and requests are still served,
    /// for [`DRAIN_DELAY`]; then stop.
    pub fn drain(self: &Arc<Self>) {
        let mut running = lock(&self.running);
        let Some(r) = running.as_mut() else { return };
        self.mode.store(DRAINING, Ordering::SeqCst);
        let me = Arc::downgrade(self);
        r.drain_timer = Some(tokio::spawn(async move {
            tokio::time::sleep(DRAIN_DELAY).await;
            if let Some(me) = me.upgrade() {
                // This aborts this timer too, which is done by then.
                me.stop();
            }
        }));
    }

    /// Hang: connections are accepted and never answered, and requests in progress stall.
    pub fn hang(&self) {
        if lock(&self.running).is_some() {
            self.mode.store(HUNG, Ordering::SeqCst);
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn server_config(pki: &Path) -> Result<Arc<ServerConfig>, Error> {
    let err = |path: &Path, why: String| Error::Pki {
        path: path.to_owned(),
        why,
    };
    let cert_path = pki.join("apiserver.crt");
    let key_path = pki.join("apiserver.key");
    let ca_path = pki.join("ca.crt");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| err(&cert_path, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| err(&key_path, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&ca_path).map_err(|e| err(&ca_path, e.to_string()))? {
        let ca = ca.map_err(|e| err(&ca_path, e.to_string()))?;
        roots.add(ca).map_err(|e| err(&ca_path, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| err(&ca_path, e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&cert_path, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| err(&key_path, e.to_string()))?;
    Ok(Arc::new(config))
}

async fn accept_loop(me: Arc<Standin>, listener: TcpListener, conns: Arc<Mutex<JoinSet<()>>>) {
    let acceptor = TlsAcceptor::from(Arc::clone(&me.tls));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let me = Arc::clone(&me);
        let acceptor = acceptor.clone();
        lock(&conns).spawn(async move {
            if me.mode.load(Ordering::SeqCst) == HUNG {
                let _held = tcp;
                std::future::pending::<()>().await;
                return;
            }
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| {
                let me = Arc::clone(&me);
                async move { Ok::<_, Infallible>(me.answer(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
        // Reap finished connections so the set does not grow.
        while lock(&conns).try_join_next().is_some() {}
    }
}

type DemoBody = BoxBody<Bytes, Infallible>;

impl Standin {
    async fn answer(&self, req: Request<Incoming>) -> Response<DemoBody> {
        if self.mode.load(Ordering::SeqCst) == HUNG {
            std::future::pending::<()>().await;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let draining = self.mode.load(Ordering::SeqCst) == DRAINING;
        let path = req.uri().path();
        match path {
            "/readyz" if draining => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "[-]shutdown failed: process is shutting down\nreadyz check failed\n",
            ),
            "/readyz" | "/livez" | "/healthz" => text(StatusCode::OK, "ok"),
            "/version" => text(
                StatusCode::OK,
                &format!(
                    "{{\n  \"major\": \"1\",\n  \"minor\": \"31\",\n  \"gitVersion\": \"v1.31.2-apilb-demo\",\n  \"platform\": \"linux/amd64\",\n  \"servedBy\": \"{}\"\n}}\n",
                    self.name
                ),
            ),
            "/watch" => Response::builder()
                .status(StatusCode::OK)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(
                    Ticker {
                        name: self.name.clone(),
                        n: 0,
                        interval: tokio::time::interval(Duration::from_secs(1)),
                    }
                    .boxed(),
                )
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
            _ => text(
                StatusCode::NOT_FOUND,
                &format!(
                    "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"the demo apiserver {} only serves /readyz, /livez, /healthz, /version and /watch\",\"code\":404}}\n",
                    self.name
                ),
            ),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<DemoBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *resp.status_mut() = status;
    resp
}

/// A body that yields one JSON event a second, forever: a stand-in for a watch.
struct Ticker {
    name: String,
    n: u64,
    interval: tokio::time::Interval,
}

impl Body for Ticker {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.interval.poll_tick(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.n += 1;
                let line = format!(
                    "{{\"type\":\"MODIFIED\",\"object\":{{\"servedBy\":\"{}\",\"event\":{}}}}}\n",
                    self.name, self.n
                );
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
            }
        }
    }
}
