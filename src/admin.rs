//! The HTTP endpoint (hyper): `GET /` (the status page, `admin/page.html`), `GET /metrics`
//! (Prometheus text), `GET /status` (JSON), `GET /healthz`, and
//! `POST /backends/NAME/{drain,maint,enable}` for operators (NAME is a configured backend,
//! which covers every endpoint of a DNS-named one, or one endpoint).
//!
//! State changes (every method but GET and HEAD) are allowed from loopback clients only
//! unless `metrics.admin` says otherwise: `any`, `off`, or `mtls` (a client certificate
//! signed by `metrics.tls.clientCa` named `apilb-admin`, see [`tls`]); [`authorize`] is that
//! one rule. With `metrics.tls` the endpoint speaks HTTPS only. Requests are bounded: a
//! request head over [`MAX_HEAD_BYTES`] gets 431 from hyper, a body over [`MAX_BODY_BYTES`]
//! 413; a state change takes no parameters, so its body must be empty or the JSON `{}`.
//! Every refusal is a 4xx with a one-line reason and changes nothing.
//!
//! Per-backend connection gauges and certificate expiry are refreshed at scrape time, so
//! they are never stale and cost nothing between scrapes.

pub mod client;
pub mod tls;

pub use self::client::{ClientFiles, Endpoint, EndpointUrl, OptionsError};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::io::{AsyncRead, AsyncWrite};

use self::tls::{AdminTls, Client};

use crate::backend::{Backend, BackendSet};
use crate::config::{AdminAccess, CheckKind, Config};
use crate::health::state::Admin as AdminOverride;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// `/status`: the whole picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// apilb version.
    pub version: String,
    /// Bound listener addresses.
    pub listeners: Vec<SocketAddr>,
    /// Client connections open now.
    pub active_connections: usize,
    /// The backends, in config order.
    pub backends: Vec<BackendStatus>,
    /// The VRRP instance, when the config has a `vip` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<crate::vip::VipStatus>,
    /// Route announcement, when the config has an `announce` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<crate::announce::AnnounceStatus>,
    /// The rebalancer: skew and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<crate::rebalance::RebalanceStatus>,
}

/// One backend in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// Name.
    pub name: String,
    /// Address as configured.
    pub address: String,
    /// What clients see: up, drain, down, maint.
    pub state: String,
    /// What checks say, ignoring an operator's override.
    pub checked_state: String,
    /// Why it is in its state.
    pub reason: String,
    /// Seconds since the last active check finished; `None` before the first.
    pub last_check_seconds_ago: Option<f64>,
    /// Check kind: none, tcp, tls, https.
    pub check: String,
    /// Configured weight.
    pub weight: u32,
    /// Connections open now.
    pub active_connections: usize,
    /// Connections since it was added.
    pub total_connections: u64,
    /// Checks that did not pass, or failed client connects, in a row (the longer run).
    pub consecutive_failures: u32,
}

impl BackendStatus {
    fn of(b: &Backend) -> Self {
        let h = b.health();
        let check = match b.health_config().kind {
            CheckKind::None => "none",
            CheckKind::Tcp => "tcp",
            CheckKind::Tls => "tls",
            CheckKind::Https => "https",
        };
        Self {
            name: b.name().to_owned(),
            address: b.address().to_string(),
            state: h.state().to_string(),
            checked_state: h.checked_state().to_string(),
            reason: h.reason(),
            last_check_seconds_ago: h.last_check().map(|t| t.elapsed().as_secs_f64()),
            check: check.to_owned(),
            weight: b.weight(),
            active_connections: b.active(),
            total_connections: b.total(),
            consecutive_failures: h.consecutive_failures(),
        }
    }
}

/// The status of a running process.
pub fn status(state: &AdminState) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listeners: state.proxy.local_addrs(),
        active_connections: state.proxy.active_connections(),
        backends: state
            .backends
            .snapshot()
            .iter()
            .map(|b| BackendStatus::of(b))
            .collect(),
        vip: state.vip.as_deref().map(crate::vip::Vip::status),
        announce: state
            .announcer
            .as_deref()
            .map(crate::announce::Announcer::status),
        rebalance: Some(state.rebalance.status()),
    }
}

/// The endpoint's own settings, swapped whole on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Who may change backend states.
    pub access: AdminAccess,
    /// Certificate files whose expiry is exported.
    pub certificates: Vec<PathBuf>,
}

impl AdminSettings {
    /// The settings `config` asks for.
    pub fn of(config: &Config) -> Self {
        Self {
            access: config
                .metrics
                .as_ref()
                .map_or(AdminAccess::Loopback, |m| m.admin),
            certificates: certificate_paths(config),
        }
    }
}

/// What the endpoint serves from.
#[derive(Debug)]
pub struct AdminState {
    /// The data plane (listeners, open connections).
    pub proxy: Arc<Proxy>,
    /// The backends.
    pub backends: Arc<BackendSet>,
    /// The registry the metrics are in.
    pub registry: Registry,
    /// The metrics refreshed at scrape time.
    pub metrics: Metrics,
    /// The VRRP instance, if any.
    pub vip: Option<Arc<crate::vip::Vip>>,
    /// The route announcer, if any.
    pub announcer: Option<Arc<crate::announce::Announcer>>,
    /// The rebalancer.
    pub rebalance: Arc<crate::rebalance::Rebalance>,
    /// Access and watched certificates.
    pub settings: ArcSwap<AdminSettings>,
    /// `metrics.tls` as loaded; `None` serves plain HTTP. Swapped whole on reload: new
    /// connections use the new material.
    pub tls: ArcSwapOption<AdminTls>,
}

/// Longest request head (request line and headers) the endpoint reads; longer gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest request body the endpoint reads; longer gets 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve the endpoint on `listener` until `stop`.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "metrics and status endpoint listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics endpoint accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        let stop = stop.clone();
        let tls = state.tls.load_full();
        tracker.spawn(async move {
            match tls {
                None => serve_connection(stream, state, peer, Client::Anonymous, stop).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        tls.acceptor().accept(stream),
                    );
                    let stream = tokio::select! {
                        () = stop.cancelled() => return,
                        r = handshake => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "metrics endpoint TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "metrics endpoint TLS handshake timed out");
                                return;
                            }
                        },
                    };
                    let client = tls.identify(stream.get_ref().1.peer_certificates());
                    serve_connection(stream, state, peer, client, stop).await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// One HTTP/1.1 connection (plain or TLS) until it ends or `stop`.
async fn serve_connection<S>(
    stream: S,
    state: Arc<AdminState>,
    peer: SocketAddr,
    client: Client,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(client);
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        let client = Arc::clone(&client);
        async move { Ok::<_, Infallible>(handle(&state, req, peer, &client).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(error = %e, %peer, "metrics endpoint connection");
        },
        () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
}

/// Whether a request can change state: every method but GET and HEAD. Such requests pass
/// [`authorize`] before they are routed (so a new state-changing route is covered).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Whether a client may change state under `access`: the one rule for `POST /backends/...`
/// and any other state-changing route. `Err` is the reason, for a 403.
pub fn authorize(access: AdminAccess, peer: SocketAddr, client: &Client) -> Result<(), String> {
    match access {
        AdminAccess::Any => Ok(()),
        AdminAccess::Loopback if peer.ip().is_loopback() => Ok(()),
        AdminAccess::Loopback => Err(format!(
            "state changes are allowed from loopback only (metrics.admin: loopback), not from {}",
            peer.ip()
        )),
        AdminAccess::Off => Err("state changes are turned off (metrics.admin: off)".into()),
        AdminAccess::Mtls => match client {
            Client::Admin => Ok(()),
            Client::Anonymous => Err(format!(
                "state changes need a client certificate named {} signed by metrics.tls.clientCa \
                 (metrics.admin: mtls); none was presented",
                tls::ADMIN_NAME
            )),
            Client::Refused(why) => Err(format!("{why} (metrics.admin: mtls)")),
        },
    }
}

async fn handle(
    state: &Arc<AdminState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    client: &Client,
) -> Response<Full<Bytes>> {
    if changes_state(req.method()) {
        if let Err(why) = authorize(state.settings.load().access, peer, client) {
            tracing::info!(%peer, method = %req.method(), path = req.uri().path(), reason = %why, "admin request refused");
            return text(StatusCode::FORBIDDEN, &format!("forbidden: {why}\n"));
        }
    }
    let (head, body) = req.into_parts();
    let path = head.uri.path().trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match (&head.method, parts.as_slice()) {
        (&Method::GET, []) => page(),
        (&Method::GET, ["metrics"]) => metrics(state).await,
        (&Method::GET, ["status"]) => json(StatusCode::OK, &status(state)),
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok\n"),
        (&Method::POST, ["backends", name, action]) => {
            if let Err(refusal) = no_parameters(body).await {
                return refusal;
            }
            change(state, name, action, peer)
        }
        (&Method::POST, ["rebalance"]) => {
            if let Err(refusal) = no_parameters(body).await {
                return refusal;
            }
            rebalance_now(state, peer)
        }
        (_, [] | ["metrics" | "status" | "healthz" | "rebalance"]) | (_, ["backends", _, _]) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /metrics, /status, POST /backends/NAME/{drain,maint,enable}, POST /rebalance\n",
        ),
    }
}

/// The status page: one self-contained HTML file (no external assets) whose script reads
/// `/status` and `/metrics` and builds the DOM from them as text.
const PAGE: &str = include_str!("admin/page.html");

fn page() -> Response<Full<Bytes>> {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(
            hyper::header::CONTENT_SECURITY_POLICY,
            POLICY.get_or_init(|| page_policy(PAGE)).as_str(),
        )
        .header(hyper::header::CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "encoding\n"))
}

/// The Content-Security-Policy of `page`: only its own inline `<script>` and `<style>`
/// elements run (by their SHA-256), and requests go back to this origin only, so markup
/// that ever slipped into the page could neither run script nor load anything.
fn page_policy(page: &str) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let hashes = |tag: &str| -> String {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        page.split(open.as_str())
            .skip(1)
            .filter_map(|rest| rest.split_once(close.as_str()).map(|(body, _)| body))
            .map(|body| {
                let hash = STANDARD.encode(digest(&SHA256, body.as_bytes()).as_ref());
                format!(" 'sha256-{hash}'")
            })
            .collect()
    };
    format!(
        "default-src 'none'; script-src{}; style-src{}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    )
}

/// `POST /rebalance`: run the rebalancer's gentle procedure now; answers its status. The
/// caller is authorized before routing ([`authorize`]).
fn rebalance_now(state: &AdminState, peer: SocketAddr) -> Response<Full<Bytes>> {
    tracing::info!(%peer, "rebalance requested by operator");
    state.rebalance.trigger();
    json(StatusCode::ACCEPTED, &state.rebalance.status())
}

/// Read a state change's body (bounded): it must be empty or a JSON object without members,
/// since the route takes no parameters. `Err` is the 4xx to send.
async fn no_parameters(body: Incoming) -> Result<(), Response<Full<Bytes>>> {
    use http_body_util::{BodyExt, Limited};
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is over {MAX_BODY_BYTES} bytes\n"),
            ));
        }
        Err(e) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                &format!("request body cannot be read: {e}\n"),
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(()),
        Ok(_) => Err(text(
            StatusCode::BAD_REQUEST,
            "this request takes no parameters: send no body or {}\n",
        )),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            &format!("request body is not JSON: {e}\n"),
        )),
    }
}

fn change(state: &AdminState, name: &str, action: &str, peer: SocketAddr) -> Response<Full<Bytes>> {
    let admin = match action {
        "drain" => Some(AdminOverride::Drain),
        "maint" => Some(AdminOverride::Maint),
        "enable" => None,
        other => {
            return text(
                StatusCode::NOT_FOUND,
                &format!("unknown action {other:?}: use drain, maint or enable\n"),
            );
        }
    };
    let backends = state.backends.find_all(name);
    if backends.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no backend named {name:?}\n"),
        );
    }
    let mut out = Vec::with_capacity(backends.len());
    for backend in backends {
        if let Some(t) = backend.set_admin(admin, tokio::time::Instant::now()) {
            state.backends.publish(&backend, t);
        }
        tracing::info!(backend = backend.name(), action, %peer, "backend state set by operator");
        out.push(BackendStatus::of(&backend));
    }
    json(StatusCode::OK, &out)
}

async fn metrics(state: &Arc<AdminState>) -> Response<Full<Bytes>> {
    let m = &state.metrics;
    // Gauges of what the data plane counts anyway, read at scrape time instead of kept in
    // step per connection.
    m.active
        .set(i64::try_from(state.proxy.active_connections()).unwrap_or(i64::MAX));
    for b in state.backends.snapshot().iter() {
        m.backend_active
            .with_label_values(&[b.name()])
            .set(i64::try_from(b.active()).unwrap_or(i64::MAX));
    }
    // Certificate files are read off the async runtime.
    let st = Arc::clone(state);
    if let Err(e) = tokio::task::spawn_blocking(move || refresh_certificates(&st)).await {
        tracing::warn!(error = %e, "certificate expiry refresh failed");
    }
    let mut out = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut out) {
        Ok(()) => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(out)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "encoding\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// Every certificate file the running config references or watches.
pub fn certificate_paths(config: &Config) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        if !paths.iter().any(|x| x == p) {
            paths.push(p.to_owned());
        }
    };
    let healths = std::iter::once(&config.health).chain(config.backends.iter().map(|b| &b.health));
    for h in healths {
        if let Some(tls) = &h.tls {
            add(&tls.ca);
            if let Some(c) = &tls.cert {
                add(c);
            }
        }
    }
    if let Some(m) = &config.metrics {
        for p in &m.watch_certificates {
            add(p);
        }
    }
    paths
}

/// notAfter of the first certificate in a PEM file, as Unix seconds.
pub fn certificate_not_after(path: &Path) -> Result<i64, crate::pki::pem::FileError> {
    crate::pki::pem::certificate_not_after(path).map(time::OffsetDateTime::unix_timestamp)
}

fn refresh_certificates(state: &AdminState) {
    let m = &state.metrics;
    m.certificate_expiry.reset();
    for path in &state.settings.load().certificates {
        let label = path.display().to_string();
        match certificate_not_after(path) {
            Ok(t) => m
                .certificate_expiry
                .with_label_values(&[label.as_str()])
                .set(t as f64),
            Err(e) => {
                m.certificate_errors
                    .with_label_values(&[label.as_str()])
                    .inc();
                tracing::debug!(path = %label, error = %e, "certificate expiry");
            }
        }
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            Response::builder()
                .status(status)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(bytes)))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "encoding\n"))
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Why a request to a running apilb failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address.
    #[error("cannot reach apilb at {address}: {why} (is `metrics.listen` set to this address?)")]
    Unreachable {
        /// The endpoint address.
        address: SocketAddr,
        /// Why.
        why: String,
    },
    /// It answered with an error status.
    #[error("apilb at {address} answered {status}: {body}")]
    Refused {
        /// The endpoint address.
        address: SocketAddr,
        /// HTTP status.
        status: u16,
        /// Its explanation.
        body: String,
    },
    /// It answered something that is not the expected JSON.
    #[error("apilb at {address} sent an unreadable answer: {why}")]
    Garbled {
        /// The endpoint address.
        address: SocketAddr,
        /// Why.
        why: String,
    },
}

async fn request(endpoint: &Endpoint, method: Method, path: &str) -> Result<Bytes, ClientError> {
    let address = endpoint.address;
    let unreachable = |why: String| ClientError::Unreachable { address, why };
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (status, body) = match &endpoint.tls {
        None => exchange(stream, address, method, path).await?,
        Some(config) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            let stream = connector
                .connect(endpoint.server_name(), stream)
                .await
                .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))?;
            exchange(stream, address, method, path).await?
        }
    };
    if !status.is_success() {
        return Err(ClientError::Refused {
            address,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    Ok(body)
}

/// One request on `stream` (plain or TLS): the status and the whole body.
async fn exchange<S>(
    stream: S,
    address: SocketAddr,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Bytes), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Empty};
    let unreachable = |why: String| ClientError::Unreachable { address, why };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok::<_, ClientError>((status, body))
    };
    // The connection is driven beside the exchange: nothing outlives the request.
    crate::http::drive(conn, exchange).await
}

/// `GET /status` of the apilb at `endpoint`.
pub async fn fetch_status(endpoint: impl Into<Endpoint>) -> Result<Status, ClientError> {
    let endpoint = endpoint.into();
    let body = request(&endpoint, Method::GET, "/status").await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Garbled {
        address: endpoint.address,
        why: e.to_string(),
    })
}

/// `POST /backends/NAME/ACTION` to the apilb at `endpoint`: the status of every endpoint
/// of that backend after the change (one, or one per address of a DNS-named backend).
pub async fn set_backend(
    endpoint: impl Into<Endpoint>,
    name: &str,
    action: &str,
) -> Result<Vec<BackendStatus>, ClientError> {
    let endpoint = endpoint.into();
    let body = request(
        &endpoint,
        Method::POST,
        &format!("/backends/{name}/{action}"),
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Garbled {
        address: endpoint.address,
        why: e.to_string(),
    })
}

/// `POST /rebalance` to the apilb at `endpoint`: the rebalancer's status when it took the
/// request (the procedure runs on from there).
pub async fn rebalance(
    endpoint: &Endpoint,
) -> Result<crate::rebalance::RebalanceStatus, ClientError> {
    let body = request(endpoint, Method::POST, "/rebalance").await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Garbled {
        address: endpoint.address,
        why: e.to_string(),
    })
}

/// How `apilb backend drain --wait` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// No connection is left.
    Drained,
    /// The backend left the config while draining.
    Removed,
    /// Connections were still open at the deadline.
    Deadline {
        /// How many.
        open: usize,
    },
}

/// Poll the apilb at `address` every `every` until the endpoints in `changed` (as
/// [`set_backend`] returned them) have no connection left, or `deadline` passes. `progress`
/// hears each new count.
pub async fn wait_drained(
    endpoint: impl Into<Endpoint>,
    changed: &[BackendStatus],
    deadline: std::time::Duration,
    every: std::time::Duration,
    mut progress: impl FnMut(usize),
) -> Result<DrainEnd, ClientError> {
    let endpoint = endpoint.into();
    let until = tokio::time::Instant::now() + deadline;
    let mut last: usize = changed.iter().map(|b| b.active_connections).sum();
    loop {
        if last == 0 {
            return Ok(DrainEnd::Drained);
        }
        if tokio::time::Instant::now() >= until {
            return Ok(DrainEnd::Deadline { open: last });
        }
        tokio::time::sleep(every).await;
        let s = fetch_status(endpoint.clone()).await?;
        let endpoints: Vec<&BackendStatus> = s
            .backends
            .iter()
            .filter(|b| changed.iter().any(|c| c.name == b.name))
            .collect();
        if endpoints.is_empty() {
            return Ok(DrainEnd::Removed);
        }
        let now: usize = endpoints.iter().map(|b| b.active_connections).sum();
        if now != last {
            progress(now);
        }
        last = now;
    }
}

/// The status as a table for people.
pub fn status_table(s: &Status) -> String {
    let listeners: Vec<String> = s.listeners.iter().map(ToString::to_string).collect();
    let mut out = format!(
        "apilb {}  listeners: {}  active connections: {}\n\n",
        s.version,
        listeners.join(", "),
        s.active_connections
    );
    if let Some(v) = &s.vip {
        out.push_str(&format!(
            "vip: VRID {} on {} {}  state: {}  priority: {} (configured {})  master: {}\n\n",
            v.vrid,
            v.interface,
            v.addresses.join(", "),
            v.state,
            v.priority,
            v.configured_priority,
            v.master
                .map_or_else(|| "unknown".to_owned(), |m| m.to_string())
        ));
    }
    if let Some(a) = &s.announce {
        out.push_str(&format!(
            "announce: {} dev {} table {} proto {}  state: {}  routes: {}  backends up: {} (withdraw below {})\n\n",
            a.addresses.join(", "),
            a.interface,
            a.table,
            a.protocol,
            a.state,
            if a.announced.is_empty() {
                "none".to_owned()
            } else {
                a.announced.join(", ")
            },
            a.up,
            a.healthy_backends_below
        ));
    }
    if let Some(r) = &s.rebalance {
        let pause = r
            .pause
            .as_ref()
            .map_or(String::new(), |p| format!(" ({p})"));
        out.push_str(&format!(
            "rebalance: {}{}  skew: {:.2}  above share: {}  moved: {}{}\n\n",
            r.state,
            pause,
            r.skew,
            r.excess,
            r.closes,
            if r.enabled { "" } else { "  (automatic off)" }
        ));
    }
    let header = [
        "BACKEND",
        "ADDRESS",
        "STATE",
        "CHECK",
        "LAST CHECK",
        "ACTIVE",
        "TOTAL",
        "WEIGHT",
        "REASON",
    ];
    let rows: Vec<[String; 9]> = s
        .backends
        .iter()
        .map(|b| {
            let state = if b.state == b.checked_state {
                b.state.clone()
            } else {
                format!("{} (checks: {})", b.state, b.checked_state)
            };
            [
                b.name.clone(),
                b.address.clone(),
                state,
                b.check.clone(),
                b.last_check_seconds_ago
                    .map_or("-".into(), |s| format!("{s:.1}s ago")),
                b.active_connections.to_string(),
                b.total_connections.to_string(),
                b.weight.to_string(),
                b.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod authorize_tests {
    use super::*;

    #[test]
    fn one_rule_for_every_state_change() {
        let lo = SocketAddr::from(([127, 0, 0, 1], 1));
        let far = SocketAddr::from(([10, 0, 0, 9], 1));
        let refused = Client::Refused("the client certificate names x, not apilb-admin".into());
        for (access, peer, client, ok) in [
            (AdminAccess::Any, far, &Client::Anonymous, true),
            (AdminAccess::Loopback, lo, &Client::Anonymous, true),
            (AdminAccess::Loopback, far, &Client::Admin, false),
            (AdminAccess::Off, lo, &Client::Admin, false),
            (AdminAccess::Mtls, lo, &Client::Anonymous, false),
            (AdminAccess::Mtls, far, &Client::Admin, true),
            (AdminAccess::Mtls, lo, &refused, false),
        ] {
            assert_eq!(
                authorize(access, peer, client).is_ok(),
                ok,
                "{access} from {peer} with {client:?}"
            );
        }
        assert_eq!(
            authorize(AdminAccess::Mtls, lo, &refused),
            Err("the client certificate names x, not apilb-admin (metrics.admin: mtls)".into())
        );
        assert!(changes_state(&Method::POST) && changes_state(&Method::DELETE));
        assert!(!changes_state(&Method::GET) && !changes_state(&Method::HEAD));
    }
}
