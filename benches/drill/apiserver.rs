//! The stand-in kube-apiserver: one per process (the drill binary re-executed as
//! `drill apiserver ...`), so the drill can SIGKILL, SIGSTOP and SIGUSR1 it like a real one.
//!
//! HTTPS (rustls + hyper, HTTP/1.1) on one 127.0.0.1 port:
//! - `/readyz`, `/livez`: 200 (`/readyz` 500 once draining);
//! - `/work`: 200, body = the stand-in's name, so clients see which backend answered.
//!
//! Client certificates are requested and verified against the CA but not required (kubeadm
//! default: anonymous /readyz is allowed), so HAProxy's certificate-less checks work too.
//!
//! SIGUSR1 starts a graceful shutdown like kube-apiserver with `--shutdown-delay-duration`:
//! `/readyz` fails at once, everything else is served as before for the delay; then the
//! listener closes, open connections finish their current request (bounded) and the
//! process exits 0. The process also exits when its stdin closes or its parent dies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pki;

/// How long open connections get to finish after the listener closes.
const FINISH_LIMIT: Duration = Duration::from_secs(3);
/// A deadline that does not come during a drill.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);
/// Listen backlog.
const BACKLOG: u32 = 1024;

/// Options of the `apiserver` role.
#[derive(Debug, clap::Args)]
pub(crate) struct Opts {
    /// Name returned in `/work` bodies.
    #[arg(long)]
    name: String,
    /// 127.0.0.1:PORT to listen on.
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// CA that client certificates must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// How long /readyz fails while everything else is served, after SIGUSR1.
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
}

/// Entry point of a stand-in process.
pub(crate) fn main(opts: Opts) -> anyhow::Result<()> {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("{}: cannot set parent-death signal ({e})", opts.name);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = rt.block_on(serve(opts));
    // The stdin reader sits in a blocking thread that never returns: do not wait for it.
    rt.shutdown_background();
    result
}

async fn serve(opts: Opts) -> anyhow::Result<()> {
    let tls = tokio_rustls::TlsAcceptor::from(server_config(&opts)?);
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(opts.listen)
        .with_context(|| format!("bind {}", opts.listen))?;
    let listener = sock.listen(BACKLOG)?;
    let draining = Arc::new(AtomicBool::new(false));
    let closing = CancellationToken::new();
    let conns = TaskTracker::new();
    let name: Arc<str> = opts.name.clone().into();
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 16];
    // The parent reads this line to know the port is bound.
    println_ready();

    // Armed by SIGUSR1; until then a deadline that never comes.
    let delay = tokio::time::sleep(NEVER);
    tokio::pin!(delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _nodelay = tcp.set_nodelay(true);
                conns.spawn(connection(tcp, tls.clone(), name.clone(), draining.clone(), closing.clone()));
            }
            _ = usr1.recv(), if !draining.load(Ordering::SeqCst) => {
                draining.store(true, Ordering::SeqCst);
                eprintln!("{name}: SIGUSR1: /readyz fails from now; exiting in {}", humantime::format_duration(opts.shutdown_delay));
                delay.as_mut().reset(tokio::time::Instant::now() + opts.shutdown_delay);
            }
            () = &mut delay => break,
            r = stdin.read(&mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        }
    }
    // Shutdown delay over: stop listening, let open connections finish what they do.
    drop(listener);
    closing.cancel();
    conns.close();
    if tokio::time::timeout(FINISH_LIMIT, conns.wait())
        .await
        .is_err()
    {
        eprintln!("{name}: connections still open after {FINISH_LIMIT:?}; exiting anyway");
    }
    eprintln!("{name}: graceful shutdown done");
    Ok(())
}

#[allow(clippy::print_stdout)] // The protocol with the parent: one line on stdout.
fn println_ready() {
    println!("ready");
}

/// One client connection: TLS, then HTTP/1.1 until the peer closes or the server closes.
async fn connection(
    tcp: tokio::net::TcpStream,
    tls: tokio_rustls::TlsAcceptor,
    name: Arc<str>,
    draining: Arc<AtomicBool>,
    closing: CancellationToken,
) {
    let stream = tokio::select! {
        s = tls.accept(tcp) => match s {
            Ok(s) => s,
            Err(_) => return,
        },
        () = closing.cancelled() => return,
    };
    let service = service_fn(move |req: Request<Incoming>| {
        let (name, draining) = (name.clone(), draining.clone());
        async move { Ok::<_, std::convert::Infallible>(answer(&req, &name, &draining)) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = closing.cancelled() => {
            // Idle connections close now, busy ones after their current response.
            conn.as_mut().graceful_shutdown();
            let _finished = conn.await;
        }
    }
}

fn answer(req: &Request<Incoming>, name: &str, draining: &AtomicBool) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/readyz" if draining.load(Ordering::SeqCst) => (
            500,
            "[-]shutdown failed: process is shutting down\n".to_owned(),
        ),
        "/readyz" | "/livez" => (200, "ok".to_owned()),
        "/work" => (200, name.to_owned()),
        _ => (404, "not found".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp
}

fn server_config(opts: &Opts) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&opts.cert)
        .with_context(|| format!("read {}", opts.cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&opts.key)
        .with_context(|| format!("read {}", opts.key.display()))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(pki::roots(&opts.ca)?),
        pki::provider(),
    )
    .allow_unauthenticated()
    .build()?;
    let cfg = ServerConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}
