//! The load: `clients` tasks that each loop "new TCP connection, TLS handshake, GET /work,
//! read the answer, close" (like kubectl invocations), plus `persistent` keep-alive
//! connections sending one GET /work every 100 ms. Every request is bounded by
//! [`REQUEST_LIMIT`]; every loop stops at a deadline and after a count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

/// Any request (connect + handshake + GET + body) that takes longer failed.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(2);
/// Period of the persistent connections' requests.
pub(crate) const PERSISTENT_PERIOD: Duration = Duration::from_millis(100);
/// Bound on requests per task and run (never reached at drill rates).
const MAX_REQUESTS_PER_TASK: usize = 200_000;
/// The name clients verify, as kubectl does with the kubeconfig's server.
const SERVER_NAME: &str = "kubernetes";

/// Which loop made a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// On a connection opened for it.
    New,
    /// On a keep-alive connection (or a reconnect of one, after a failure).
    Persistent,
}

/// One request.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    /// Start and end, from the start of the load.
    pub(crate) start: Duration,
    pub(crate) end: Duration,
    /// The backend that answered (1-based) or why it failed.
    pub(crate) result: Result<usize, String>,
    /// Persistent only: its connection had been closed under it (server, proxy or reset)
    /// while idle, and this request opened a new one.
    pub(crate) reopened: bool,
}

/// Shape of the load.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) clients: usize,
    pub(crate) persistent: usize,
    /// Pause of each new-connection client between requests.
    pub(crate) pause: Duration,
}

/// Runs the load against `addr` from `t0` until `stop_at`; returns every request.
pub(crate) async fn run(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    p: Params,
    t0: Instant,
    stop_at: Instant,
) -> Vec<Record> {
    let mut set = JoinSet::new();
    for _ in 0..p.clients {
        set.spawn(new_connections(addr, tls.clone(), p.pause, t0, stop_at));
    }
    for _ in 0..p.persistent {
        set.spawn(persistent(addr, tls.clone(), t0, stop_at));
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(v) => out.extend(v),
            Err(e) => eprintln!("warning: a load task failed: {e}"),
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

async fn new_connections(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    pause: Duration,
    t0: Instant,
    stop_at: Instant,
) -> Vec<Record> {
    let mut out = Vec::new();
    // Spread the clients' first requests over one pause.
    sleep(pause.mul_f64(rand::random::<f64>())).await;
    while Instant::now() < stop_at && out.len() < MAX_REQUESTS_PER_TASK {
        let start = Instant::now();
        let result = request_once(addr, &tls).await;
        out.push(Record {
            kind: Kind::New,
            start: start - t0,
            end: Instant::now() - t0,
            result,
            reopened: false,
        });
        sleep(pause).await;
    }
    out
}

/// One kubectl-like request on a new connection: the answering backend's number.
pub(crate) async fn request_once(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
) -> Result<usize, String> {
    let deadline = Instant::now() + REQUEST_LIMIT;
    let mut sender = open(addr, tls, deadline).await?;
    get_work(&mut sender, deadline).await
}

/// A keep-alive connection with one request every [`PERSISTENT_PERIOD`]; after a failure
/// the next request opens a new connection.
async fn persistent(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    t0: Instant,
    stop_at: Instant,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    let mut next = Instant::now() + PERSISTENT_PERIOD.mul_f64(rand::random::<f64>());
    while next < stop_at && out.len() < MAX_REQUESTS_PER_TASK {
        sleep_until(next).await;
        let start = Instant::now();
        let deadline = start + REQUEST_LIMIT;
        // A keep-alive connection the server or proxy already closed is not a failed
        // request: like Go's HTTP transport, open a new one (counted as a reopen).
        let mut reopened = false;
        if conn.as_mut().is_some_and(|s| s.is_closed()) {
            conn = None;
            reopened = true;
        }
        let result = async {
            let sender = match &mut conn {
                Some(s) => s,
                None => conn.insert(open(addr, &tls, deadline).await?),
            };
            get_work(sender, deadline).await
        }
        .await;
        if result.is_err() {
            conn = None;
        }
        out.push(Record {
            kind: Kind::Persistent,
            start: start - t0,
            end: Instant::now() - t0,
            result,
            reopened,
        });
        next = (next + PERSISTENT_PERIOD).max(Instant::now());
    }
    out
}

/// TCP connect, TLS handshake (verifying `kubernetes`), HTTP/1.1 handshake.
async fn open(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    deadline: Instant,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| "timeout in connect".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _nodelay = tcp.set_nodelay(true);
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    let stream = timeout_at(
        deadline,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| "timeout in TLS handshake".to_owned())?
    .map_err(|e| format!("TLS handshake: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // The driver ends when the connection does (its sender dropped or the peer gone).
    tokio::spawn(async move {
        let _ended = conn.await;
    });
    Ok(sender)
}

/// GET /work on an open connection: the answering backend's number.
async fn get_work(
    sender: &mut SendRequest<Empty<Bytes>>,
    deadline: Instant,
) -> Result<usize, String> {
    let req = hyper::Request::get("/work")
        .header(hyper::header::HOST, SERVER_NAME)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let work = async {
        sender.ready().await.map_err(|e| format!("HTTP: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("HTTP body: {e}"))?
            .to_bytes();
        if status != 200 {
            return Err(format!("HTTP status {status}"));
        }
        let text = String::from_utf8_lossy(&body);
        text.strip_prefix('b')
            .and_then(|n| n.trim().parse::<usize>().ok())
            .ok_or_else(|| format!("unexpected body {text:?}"))
    };
    timeout_at(deadline, work)
        .await
        .map_err(|_| "timeout waiting for the response".to_owned())?
}
