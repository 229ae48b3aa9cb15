//! Loopback backends. They run in a child process (the bench binary re-executed with
//! `--role-backends`) so that their CPU time is counted apart from the load generator's.
//!
//! Protocol: the first byte a client sends picks what the connection does.
//! - `E` echo: everything read (the first byte included) is written back. Used by the
//!   connection-rate, request/response and idle workloads and by readiness probes.
//! - `D` source: the backend writes an endless stream until the peer goes away (bulk).
//! - `U` sink: the backend reads and discards until EOF.
//!
//! The process exits when its stdin reaches EOF (the harness holds the pipe) or, failing
//! that, when the parent dies (PR_SET_PDEATHSIG).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub(crate) const MODE_ECHO: u8 = b'E';
pub(crate) const MODE_SOURCE: u8 = b'D';
pub(crate) const MODE_SINK: u8 = b'U';

/// Size of one write of the source mode.
const SOURCE_CHUNK: usize = 256 * 1024;
/// Read buffer of echo connections: requests are small, and 10,000 idle ones must be cheap.
const ECHO_BUF: usize = 4 * 1024;
/// Read buffer of sink connections.
const SINK_BUF: usize = 256 * 1024;
/// Listen backlog (the kernel caps it at net.core.somaxconn).
const BACKLOG: u32 = 4096;

/// Entry point of the backends process: bind `count` listeners, print their ports on one
/// line of stdout, serve until stdin closes.
pub(crate) fn main(count: usize) -> anyhow::Result<()> {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("backends: cannot set parent-death signal ({e}); relying on stdin EOF");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("backends: tokio runtime")?;
    rt.block_on(serve(count))
}

async fn serve(count: usize) -> anyhow::Result<()> {
    let source: Arc<[u8]> = vec![0x5a; SOURCE_CHUNK].into();
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = bind().context("backends: bind 127.0.0.1:0")?;
        ports.push(listener.local_addr()?.port().to_string());
        tokio::spawn(accept_loop(listener, source.clone()));
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ports.join(" "))?;
        out.flush()?;
    }
    // Wait for the harness to close our stdin (or die).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

fn bind() -> std::io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    sock.listen(BACKLOG)
}

/// Accepts until the process exits; an accept error (e.g. EMFILE) is reported and backed
/// off from, not fatal.
async fn accept_loop(listener: TcpListener, source: Arc<[u8]>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, source.clone()));
            }
            Err(e) => {
                eprintln!("backends: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection. Errors end the connection: peers (proxies, generator) closing or
/// resetting is the expected way for every mode to end.
async fn handle(mut stream: TcpStream, source: Arc<[u8]>) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; ECHO_BUF];
    let n = match stream.read(&mut buf).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    match buf[0] {
        MODE_SOURCE => {
            drop(buf);
            while stream.write_all(&source).await.is_ok() {}
        }
        MODE_SINK => {
            let mut big = vec![0u8; SINK_BUF];
            while let Ok(n) = stream.read(&mut big).await {
                if n == 0 {
                    break;
                }
            }
        }
        _ => {
            // Echo (also for unknown modes: harmless and easy to debug).
            let mut n = n;
            loop {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
            }
        }
    }
}
