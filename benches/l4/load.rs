//! The load generator: one async function per workload. Each is bounded in time (the
//! measured window plus per-operation timeouts) and in count (per-client op caps).

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use crate::backend::{MODE_ECHO, MODE_SOURCE};
use crate::procfs::{Meter, Window};
use crate::proxy::Targets;

/// Size of requests and replies of the rate and request/response workloads.
const MSG: usize = 64;
/// Size of each ping of the idle workload.
const IDLE_PING: usize = 16;
/// Read buffer of bulk streams.
const BULK_BUF: usize = 256 * 1024;
/// Any single connect, request or reply that takes longer is an error.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed operation, so a refusing proxy is not hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Cap on operations per client and window (a bound, never reached in practice).
const MAX_OPS_PER_CLIENT: u64 = 20_000_000;
/// Connections opened in parallel by the idle workload.
const IDLE_OPENERS: usize = 128;
/// Time allowed to open all idle connections.
const IDLE_OPEN_LIMIT: Duration = Duration::from_secs(120);
/// Time the proxy gets to settle before its RSS is read again.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Workload {
    /// Backend-to-client bulk transfer over 1 stream.
    Bulk1,
    /// Backend-to-client bulk transfer over 8 concurrent streams.
    Bulk8,
    /// Connect, small request, small reply, close; N concurrent clients.
    Rate,
    /// Small request/response on N persistent connections.
    Rr,
    /// Many idle connections: proxy RSS per connection.
    Idle,
}

impl Workload {
    pub(crate) const ALL: [Workload; 5] = [
        Workload::Bulk1,
        Workload::Bulk8,
        Workload::Rate,
        Workload::Rr,
        Workload::Idle,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Workload::Bulk1 => "bulk1",
            Workload::Bulk8 => "bulk8",
            Workload::Rate => "rate",
            Workload::Rr => "rr",
            Workload::Idle => "idle",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Parses one name of `--workloads`; `bulk` stands for both bulk1 and bulk8.
pub(crate) fn parse_workloads(s: &str) -> Result<Vec<Workload>, String> {
    if s == "bulk" {
        return Ok(vec![Workload::Bulk1, Workload::Bulk8]);
    }
    Workload::from_str(s).map(|w| vec![w])
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.label() == s)
            .ok_or_else(|| {
                format!("unknown workload {s:?} (one of bulk, bulk1, bulk8, rate, rr, idle)")
            })
    }
}

/// Knobs of the workloads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) duration: Duration,
    pub(crate) clients: usize,
    pub(crate) idle_conns: usize,
}

/// What one run of a workload measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) window: Window,
    /// Bytes received by the generator (bulk).
    pub(crate) bytes: u64,
    /// Completed connections (rate, idle) or requests (rr).
    pub(crate) ops: u64,
    /// Latency of each completed operation, microseconds.
    pub(crate) lat_us: Vec<u32>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Proxy RSS before and after opening the idle connections.
    pub(crate) rss: Option<(u64, u64)>,
}

/// Runs `w` once against `targets`.
pub(crate) async fn run(
    w: Workload,
    p: Params,
    targets: Arc<Targets>,
    meter: &Meter,
) -> anyhow::Result<Outcome> {
    match w {
        Workload::Bulk1 => bulk(targets, 1, p.duration, meter).await,
        Workload::Bulk8 => bulk(targets, 8, p.duration, meter).await,
        Workload::Rate => rate(targets, p.clients, p.duration, meter).await,
        Workload::Rr => rr(targets, p.clients, p.duration, meter).await,
        Workload::Idle => idle(targets, p.idle_conns, meter).await,
    }
}

/// Per-client tallies, merged at the end.
struct Tally {
    ops: u64,
    bytes: u64,
    lat_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new(lat_capacity: usize) -> Self {
        Self {
            ops: 0,
            bytes: 0,
            lat_us: Vec::with_capacity(lat_capacity),
            errors: 0,
            first_error: None,
        }
    }

    fn ok(&mut self, since: Instant) {
        self.ops += 1;
        let us = since.elapsed().as_micros();
        self.lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    fn error(&mut self, e: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn merge_into(self, out: &mut Outcome) {
        out.ops += self.ops;
        out.bytes += self.bytes;
        out.lat_us.extend(self.lat_us);
        out.errors += self.errors;
        if out.first_error.is_none() {
            out.first_error = self.first_error;
        }
    }
}

async fn collect(set: &mut JoinSet<Tally>, out: &mut Outcome) -> anyhow::Result<()> {
    while let Some(r) = set.join_next().await {
        r.context("generator task failed")?.merge_into(out);
    }
    Ok(())
}

async fn connect(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "operation timed out")
}

/// Bulk: `streams` connections each ask for an endless stream and read it for `dur`.
async fn bulk(
    targets: Arc<Targets>,
    streams: usize,
    dur: Duration,
    meter: &Meter,
) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(streams);
    for _ in 0..streams {
        let addr = targets.pick();
        let open = async {
            let mut s = connect(addr).await?;
            s.write_all(&[MODE_SOURCE]).await?;
            Ok::<_, io::Error>(s)
        };
        let s = timeout(OP_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
            .with_context(|| format!("bulk: open stream to {addr}"))?;
        conns.push(s);
    }
    let start = meter.snap();
    let deadline = start.at + dur;
    let mut set = JoinSet::new();
    for s in conns {
        set.spawn(bulk_reader(s, deadline));
    }
    let mut out = Outcome::default();
    collect(&mut set, &mut out).await?;
    out.window = start.until(&meter.snap());
    Ok(out)
}

async fn bulk_reader(mut s: TcpStream, deadline: Instant) -> Tally {
    let mut t = Tally::new(0);
    let mut buf = vec![0u8; BULK_BUF];
    loop {
        match timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break, // the window is over
            Ok(Ok(0)) => {
                t.error("bulk: stream ended early");
                break;
            }
            Ok(Ok(n)) => t.bytes += n as u64,
            Ok(Err(e)) => {
                t.error(format!("bulk: read: {e}"));
                break;
            }
        }
    }
    t
}

/// Connection rate: `clients` loops of connect, 64-byte request, 64-byte reply, close.
async fn rate(
    targets: Arc<Targets>,
    clients: usize,
    dur: Duration,
    meter: &Meter,
) -> anyhow::Result<Outcome> {
    let start = meter.snap();
    let deadline = start.at + dur;
    let mut set = JoinSet::new();
    for _ in 0..clients {
        set.spawn(rate_client(targets.clone(), deadline));
    }
    let mut out = Outcome::default();
    collect(&mut set, &mut out).await?;
    out.window = start.until(&meter.snap());
    Ok(out)
}

async fn rate_client(targets: Arc<Targets>, deadline: Instant) -> Tally {
    let mut t = Tally::new(1 << 14);
    let req = [MODE_ECHO; MSG];
    let mut reply = [0u8; MSG];
    for _ in 0..MAX_OPS_PER_CLIENT {
        let began = Instant::now();
        if began >= deadline {
            break;
        }
        let addr = targets.pick();
        let op = async {
            let mut s = connect(addr).await?;
            s.write_all(&req).await?;
            s.read_exact(&mut reply).await?;
            Ok::<_, io::Error>(())
            // `s` is dropped here: the close is part of the operation.
        };
        match timeout(OP_TIMEOUT, op).await {
            Ok(Ok(())) => t.ok(began),
            Ok(Err(e)) => {
                t.error(format!("rate: {e}"));
                sleep(ERROR_PAUSE).await;
            }
            Err(_) => t.error("rate: operation timed out"),
        }
    }
    t
}

/// Request/response: `clients` persistent connections, one 64-byte request in flight each.
async fn rr(
    targets: Arc<Targets>,
    clients: usize,
    dur: Duration,
    meter: &Meter,
) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let addr = targets.pick();
        let s = timeout(OP_TIMEOUT, connect(addr))
            .await
            .unwrap_or_else(|_| Err(timed_out()))
            .with_context(|| format!("rr: connect to {addr}"))?;
        conns.push(s);
    }
    let start = meter.snap();
    let deadline = start.at + dur;
    let mut set = JoinSet::new();
    for s in conns {
        set.spawn(rr_client(s, deadline));
    }
    let mut out = Outcome::default();
    collect(&mut set, &mut out).await?;
    out.window = start.until(&meter.snap());
    Ok(out)
}

async fn rr_client(mut s: TcpStream, deadline: Instant) -> Tally {
    let mut t = Tally::new(1 << 16);
    let req = [MODE_ECHO; MSG];
    let mut reply = [0u8; MSG];
    for _ in 0..MAX_OPS_PER_CLIENT {
        let began = Instant::now();
        if began >= deadline {
            break;
        }
        let op = async {
            s.write_all(&req).await?;
            s.read_exact(&mut reply).await?;
            Ok::<_, io::Error>(())
        };
        match timeout(OP_TIMEOUT, op).await {
            Ok(Ok(())) => t.ok(began),
            Ok(Err(e)) => {
                // The connection is unusable now; this client is done.
                t.error(format!("rr: {e}"));
                break;
            }
            Err(_) => {
                t.error("rr: request timed out");
                break;
            }
        }
    }
    t
}

/// Idle: open `n` connections (each does one echo, so the backend leg exists and has
/// carried data), let the proxy settle, and compare its RSS with before.
async fn idle(targets: Arc<Targets>, n: usize, meter: &Meter) -> anyhow::Result<Outcome> {
    let rss_before = meter.proxy_rss();
    let start = meter.snap();
    let deadline = start.at + IDLE_OPEN_LIMIT;
    let openers = IDLE_OPENERS.min(n.max(1));
    let mut set = JoinSet::new();
    for i in 0..openers {
        let share = n / openers + usize::from(i < n % openers);
        set.spawn(idle_opener(targets.clone(), share, deadline));
    }
    let mut held = Vec::with_capacity(n);
    let mut out = Outcome::default();
    while let Some(r) = set.join_next().await {
        let (conns, tally) = r.context("generator task failed")?;
        held.extend(conns);
        tally.merge_into(&mut out);
    }
    if held.is_empty() {
        bail!(
            "idle: no connection could be opened ({})",
            out.first_error.as_deref().unwrap_or("no error recorded")
        );
    }
    sleep(IDLE_SETTLE).await;
    let rss_after = meter.proxy_rss();
    out.window = start.until(&meter.snap());
    out.ops = held.len() as u64;
    out.rss = rss_before.zip(rss_after);
    drop(held);
    Ok(out)
}

async fn idle_opener(
    targets: Arc<Targets>,
    count: usize,
    deadline: Instant,
) -> (Vec<TcpStream>, Tally) {
    let mut conns = Vec::with_capacity(count);
    let mut t = Tally::new(count);
    let ping = [MODE_ECHO; IDLE_PING];
    let mut back = [0u8; IDLE_PING];
    for _ in 0..count {
        let began = Instant::now();
        if began >= deadline {
            t.error("idle: ran out of time opening connections");
            break;
        }
        let addr = targets.pick();
        let op = async {
            let mut s = connect(addr).await?;
            s.write_all(&ping).await?;
            s.read_exact(&mut back).await?;
            Ok::<_, io::Error>(s)
        };
        match timeout(OP_TIMEOUT, op).await {
            Ok(Ok(s)) => {
                t.ok(began);
                conns.push(s);
            }
            Ok(Err(e)) => {
                t.error(format!("idle: {e}"));
                sleep(ERROR_PAUSE).await;
            }
            Err(_) => t.error("idle: open timed out"),
        }
    }
    (conns, t)
}
