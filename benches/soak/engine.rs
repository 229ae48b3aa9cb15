//! The soak under faults (issue 16), shared by `benches/soak` (release apilb, 10 min by
//! default) and the CI test `tests/it/soak.rs` (debug apilb, about 60 s).
//!
//! One apilb in front of three in-process stand-in backends on 127.0.0.1 (each sends its
//! name, then echoes), with mixed traffic whose every byte is checked against the pseudo-random
//! stream it was generated from: bulk transfers, short connections and long-lived streams.
//! Meanwhile, each on its own clock: SIGHUP alternating a valid and an invalid config, b1
//! killed and restarted, b2 hung (stops accepting and reading; the kernel still completes
//! handshakes) and resumed, a connection flood above `maxConnections`, and apilb's soft
//! descriptor limit lowered to what it holds (`prlimit --pid`) so that accept hits EMFILE.
//!
//! Every fault opens a window (plus a grace period for the proxy to notice the recovery);
//! every failed client operation is attributed to a window that can explain it, by time and
//! by the backend it was on. [`Report::problems`] lists what the soak promises and did not
//! keep. Every loop is bounded by the run's end or a timeout; all traffic is on loopback.

#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub(crate) mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The apilb binary.
    pub(crate) apilb: PathBuf,
    /// How long the traffic and the faults run.
    pub(crate) duration: Duration,
    /// `maxConnections` of the proxy (the flood opens this many plus [`Plan::flood_extra`]).
    pub(crate) max_connections: usize,
    /// Connections the flood opens beyond `maxConnections`.
    pub(crate) flood_extra: usize,
    /// Clients each moving [`Plan::bulk_bytes`] per connection.
    pub(crate) bulk_clients: usize,
    pub(crate) bulk_bytes: usize,
    /// Clients looping connect, 256 bytes each way, close.
    pub(crate) short_clients: usize,
    /// Long-lived streams sending 512 bytes every 100 ms.
    pub(crate) streams: usize,
    /// Where apilb's log goes.
    pub(crate) log: PathBuf,
}

/// The backends: b0 is never faulted, b1 is killed and restarted, b2 hangs and resumes.
const BACKENDS: [&str; 3] = ["b0", "b1", "b2"];
const KILLED: &str = "b1";
const HUNG: &str = "b2";
/// How long a client waits for a connect, the backend's name or an echo.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// After a fault ends, how long its effects may still explain a failure (health checks
/// need a few intervals to bring a backend back).
const GRACE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------
// Stand-in backends

/// An in-process stand-in: sends `"<name>\n"` and echoes. Killed = the listener and every
/// connection dropped; hung = nothing accepted or read until resumed.
struct StandIn {
    name: &'static str,
    addr: SocketAddr,
    hung: watch::Sender<bool>,
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl StandIn {
    async fn start(name: &'static str, port: u16) -> anyhow::Result<Arc<Self>> {
        let listener = bind(name, SocketAddr::from(([127, 0, 0, 1], port)))?;
        let (hung, _) = watch::channel(false);
        let s = Arc::new(Self {
            name,
            addr: listener.local_addr()?,
            hung,
            tasks: Mutex::new(None),
        });
        s.serve(listener);
        Ok(s)
    }

    /// Accept and echo on `listener` until killed.
    fn serve(&self, listener: tokio::net::TcpListener) {
        let mut set = JoinSet::new();
        let tag = format!("{}\n", self.name);
        let hung = self.hung.subscribe();
        set.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                wait_resumed(&mut hung.clone()).await;
                let Ok((s, _)) = listener.accept().await else {
                    sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = s.set_nodelay(true);
                conns.spawn(echo(s, tag.clone(), hung.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        *self.tasks.lock().unwrap_or_else(|e| e.into_inner()) = Some(set);
    }

    /// Drop the listener and every connection.
    fn kill(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            // Dropping a JoinSet aborts its tasks; the accept task's own JoinSet of
            // connections goes with it.
            t.take();
        }
    }

    /// Listen again on the same port.
    fn restart(&self) -> anyhow::Result<()> {
        self.serve(bind(self.name, self.addr)?);
        Ok(())
    }

    fn hang(&self, on: bool) {
        self.hung.send_replace(on);
    }
}

/// Bind `addr` with SO_REUSEADDR, so a restart can take the same port back.
fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(addr)
        .with_context(|| format!("{name}: bind {addr}"))?;
    Ok(sock.listen(1024)?)
}

async fn wait_resumed(hung: &mut watch::Receiver<bool>) {
    // Ends when the flag is false (at once if it is); a closed channel ends it too.
    let _ = hung.wait_for(|h| !*h).await;
}

async fn echo(mut s: TcpStream, tag: String, mut hung: watch::Receiver<bool>) {
    if s.write_all(tag.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        wait_resumed(&mut hung).await;
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_resumed(&mut hung).await;
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = s.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The proxy process

/// apilb, killed when dropped.
struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    listen: SocketAddr,
    metrics: SocketAddr,
}

impl Proxy {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("apilb.yaml")
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn write_config(&self, yaml: &str) -> anyhow::Result<()> {
        let tmp = self.dir.path().join("apilb.yaml.tmp");
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, self.config_path())?;
        Ok(())
    }

    fn signal(&self, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .with_context(|| format!("{sig} to apilb"))
    }

    /// `prlimit --pid` on apilb's soft open-file limit (hard limit kept).
    fn set_nofile_soft(&self, soft: u64, hard: u64) -> anyhow::Result<()> {
        let out = Command::new("prlimit")
            .arg(format!("--pid={}", self.pid()))
            .arg(format!("--nofile={soft}:{hard}"))
            .output()
            .context("run prlimit (util-linux)")?;
        if !out.status.success() {
            bail!(
                "prlimit --nofile={soft}:{hard}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn nofile(&self) -> anyhow::Result<(u64, u64)> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))?;
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .context("no open-files line in /proc/PID/limits")?;
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        match nums[..] {
            [soft, hard, ..] => Ok((soft, hard)),
            _ => bail!("cannot read the open-files limits: {line}"),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(
    listen: SocketAddr,
    metrics: SocketAddr,
    backends: &[SocketAddr],
    max: usize,
    variant: Variant,
) -> String {
    let mut t = format!("listen: [\"{listen}\"]\nbackends:\n");
    for (name, addr) in BACKENDS.iter().zip(backends) {
        t += &format!("  - {{name: {name}, address: \"{addr}\"}}\n");
    }
    let balance = match variant {
        Variant::A => "least-connections",
        Variant::B => "round-robin",
        // Refused by the checker: the reload must keep the running config.
        Variant::Invalid => "sideways",
    };
    t += &format!(
        "balance: {balance}\nmaxConnections: {max}\ntimeouts: {{connect: 1s, drain: 1s}}\n\
         health: {{kind: tcp, interval: 500ms, fastInterval: 100ms, timeout: 300ms, rise: 2, \
         fall: 2, passiveFall: 1, slowStart: 0s}}\n\
         metrics: {{listen: \"{metrics}\"}}\n"
    );
    t
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    A,
    B,
    Invalid,
}

/// One scrape of the metrics endpoint: `name{labels}` -> value.
async fn scrape(addr: SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut s = timeout(OP_TIMEOUT, TcpStream::connect(addr)).await??;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    timeout(OP_TIMEOUT, s.read_to_end(&mut body)).await??;
    let text = String::from_utf8_lossy(&body);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.rsplit_once(' ') {
            if let Ok(v) = v.parse::<f64>() {
                out.insert(k.to_owned(), v);
            }
        }
    }
    if out.is_empty() {
        bail!("no metrics in the answer of {addr}");
    }
    Ok(out)
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Wait (10 s at most) until the metric `key` is at least `want`.
async fn wait_metric(addr: SocketAddr, key: &str, want: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if metric(&scrape(addr).await?, key) >= want {
            return Ok(());
        }
        sleep(Duration::from_millis(50)).await;
    }
    bail!("{key} did not reach {want} within 10 s")
}

/// Wait (10 s at most) until the metric `key` is at most `want`.
async fn wait_metric_at_most(addr: SocketAddr, key: &str, want: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if metric(&scrape(addr).await?, key) <= want {
            return Ok(());
        }
        sleep(Duration::from_millis(50)).await;
    }
    bail!("{key} did not fall to {want} within 10 s")
}

// ---------------------------------------------------------------------------------------
// Faults and failures

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cause {
    BackendKilled,
    BackendHung,
    Emfile,
    Flood,
}

impl Cause {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Cause::BackendKilled => "backend b1 killed",
            Cause::BackendHung => "backend b2 hung",
            Cause::Emfile => "EMFILE window (descriptor limit lowered)",
            Cause::Flood => "flood over maxConnections",
        }
    }

    /// Whether a failure of a connection on `backend` (None: failed before the backend
    /// sent its name) can be this fault's doing.
    fn explains(self, backend: Option<&str>) -> bool {
        match self {
            Cause::BackendKilled => backend.is_none_or(|b| b == KILLED),
            Cause::BackendHung => backend.is_none_or(|b| b == HUNG),
            // New descriptors fail: new connections, and a leg that needs a new pipe.
            Cause::Emfile => true,
            // Over the limit, new connections are closed at once.
            Cause::Flood => backend.is_none(),
        }
    }
}

#[derive(Debug, Clone)]
struct Window {
    cause: Cause,
    start: Instant,
    end: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) class: &'static str,
    pub(crate) backend: Option<String>,
    pub(crate) what: String,
    /// The fault that explains it (set when the run ends); `None` = unexplained.
    pub(crate) cause: Option<Cause>,
    started: Instant,
    ended: Instant,
}

/// What every task records into.
struct Book {
    t0: Instant,
    windows: Mutex<Vec<Window>>,
    failures: Mutex<Vec<Failure>>,
    ops: Mutex<BTreeMap<&'static str, u64>>,
    bytes_checked: AtomicU64,
    bytes_corrupted: AtomicU64,
    stop: AtomicBool,
}

impl Book {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            windows: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            ops: Mutex::new(BTreeMap::new()),
            bytes_checked: AtomicU64::new(0),
            bytes_corrupted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn open(&self, cause: Cause) -> usize {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        w.push(Window {
            cause,
            start: Instant::now(),
            end: None,
        });
        w.len() - 1
    }

    fn close(&self, i: usize) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = w.get_mut(i) {
            w.end = Some(Instant::now());
        }
    }

    fn ok(&self, class: &'static str) {
        *self
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(class)
            .or_default() += 1;
    }

    fn fail(&self, class: &'static str, backend: Option<&str>, what: String, started: Instant) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Failure {
                class,
                backend: backend.map(str::to_owned),
                what,
                cause: None,
                started,
                ended: Instant::now(),
            });
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The cause that explains `f`, if any: a window overlapping it (extended by the grace
    /// period) whose fault can act on the backend it was on; the backend's own fault first.
    fn attribute(&self, f: &Failure, windows: &[Window]) -> Option<Cause> {
        if f.what.starts_with(CORRUPT) {
            return None;
        }
        let mut found: Vec<Cause> = windows
            .iter()
            .filter(|w| {
                let end = w.end.unwrap_or(f.ended) + GRACE;
                w.start <= f.ended && f.started <= end && w.cause.explains(f.backend.as_deref())
            })
            .map(|w| w.cause)
            .collect();
        found.sort();
        found.first().copied()
    }
}

// ---------------------------------------------------------------------------------------
// Traffic

/// A reproducible byte stream (xorshift64*), so the receiver checks every byte without
/// keeping what was sent.
#[derive(Clone)]
struct Pattern(u64);

impl Pattern {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

/// How a failure that is corruption starts, so that no fault window explains it.
const CORRUPT: &str = "corrupted";

/// Connect through the proxy and read the backend's name.
async fn connect(lb: SocketAddr) -> Result<(TcpStream, String), String> {
    let s = match timeout(OP_TIMEOUT, TcpStream::connect(lb)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect: timed out".into()),
    };
    let _ = s.set_nodelay(true);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    match timeout(OP_TIMEOUT, r.read_line(&mut line)).await {
        Ok(Ok(0)) => return Err("closed before the backend's name".into()),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("reading the backend's name: {e}")),
        Err(_) => return Err("no backend name within the timeout".into()),
    }
    let name = line.trim_end();
    if !r.buffer().is_empty() || !BACKENDS.contains(&name) {
        return Err(format!("{CORRUPT}: {line:?} instead of a backend's name"));
    }
    Ok((r.into_inner(), name.to_owned()))
}

/// Send `len` bytes of `seed`'s pattern and check the echo; `Err` with what went wrong.
async fn exchange(book: &Book, s: &mut TcpStream, seed: u64, len: usize) -> Result<(), String> {
    let (mut r, mut w) = s.split();
    let send = async {
        let mut p = Pattern::new(seed);
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            p.fill(&mut buf[..n]);
            w.write_all(&buf[..n])
                .await
                .map_err(|e| format!("write: {e}"))?;
            left -= n;
        }
        Ok::<(), String>(())
    };
    let recv = async {
        let mut p = Pattern::new(seed);
        let mut buf = vec![0u8; 16 * 1024];
        let mut want = vec![0u8; 16 * 1024];
        let mut left = len;
        while left > 0 {
            let n = match timeout(OP_TIMEOUT, r.read(&mut buf[..left.min(16 * 1024)])).await {
                Ok(Ok(0)) => return Err(format!("closed with {left} bytes of echo missing")),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => return Err(format!("no echo within {OP_TIMEOUT:?}")),
            };
            p.fill(&mut want[..n]);
            let bad = buf[..n]
                .iter()
                .zip(&want[..n])
                .filter(|(a, b)| a != b)
                .count();
            book.bytes_checked.fetch_add(n as u64, Ordering::Relaxed);
            if bad > 0 {
                book.bytes_corrupted
                    .fetch_add(bad as u64, Ordering::Relaxed);
                return Err(format!("{CORRUPT}: {bad} bytes differ"));
            }
            left -= n;
        }
        Ok(())
    };
    // The first error ends both halves: a writer blocked on a full socket to a hung
    // backend must not outlive the reader's timeout.
    tokio::try_join!(send, recv).map(|_| ())
}

fn seed(book: &Book, salt: u64) -> u64 {
    (book.t0.elapsed().as_nanos() as u64) ^ salt.rotate_left(32)
}

async fn bulk_client(book: Arc<Book>, lb: SocketAddr, id: u64, bytes: usize) {
    while !book.stopped() {
        let started = Instant::now();
        let (mut s, backend) = match connect(lb).await {
            Ok(x) => x,
            Err(e) => {
                book.fail("bulk", None, e, started);
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match exchange(&book, &mut s, seed(&book, id), bytes).await {
            Ok(()) => book.ok("bulk"),
            Err(e) => book.fail("bulk", Some(&backend), e, started),
        }
    }
}

async fn short_client(book: Arc<Book>, lb: SocketAddr, id: u64) {
    let mut n = 0u64;
    while !book.stopped() {
        n += 1;
        let started = Instant::now();
        let (mut s, backend) = match connect(lb).await {
            Ok(x) => x,
            Err(e) => {
                book.fail("short", None, e, started);
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match exchange(&book, &mut s, seed(&book, id * 1_000_003 + n), 256).await {
            Ok(()) => book.ok("short"),
            Err(e) => book.fail("short", Some(&backend), e, started),
        }
        sleep(Duration::from_millis(5)).await;
    }
}

async fn stream_client(book: Arc<Book>, lb: SocketAddr, id: u64) {
    while !book.stopped() {
        let started = Instant::now();
        let (mut s, backend) = match connect(lb).await {
            Ok(x) => x,
            Err(e) => {
                book.fail("stream", None, e, started);
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut k = 0u64;
        while !book.stopped() {
            k += 1;
            let at = Instant::now();
            if let Err(e) = exchange(&book, &mut s, seed(&book, id ^ k), 512).await {
                book.fail("stream", Some(&backend), e, at);
                break;
            }
            book.ok("stream message");
            sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fault loops

async fn sleep_or_stop(book: &Book, d: Duration) {
    let end = Instant::now() + d;
    while !book.stopped() && Instant::now() < end {
        sleep(Duration::from_millis(20).min(end - Instant::now())).await;
    }
}

async fn kill_loop(book: Arc<Book>, b: Arc<StandIn>) -> anyhow::Result<u64> {
    let mut cycles = 0;
    sleep_or_stop(&book, Duration::from_secs(4)).await;
    while !book.stopped() {
        let w = book.open(Cause::BackendKilled);
        b.kill();
        sleep_or_stop(&book, Duration::from_secs(3)).await;
        b.restart()?;
        book.close(w);
        cycles += 1;
        sleep_or_stop(&book, Duration::from_secs(6)).await;
    }
    Ok(cycles)
}

async fn hang_loop(book: Arc<Book>, b: Arc<StandIn>) -> u64 {
    let mut cycles = 0;
    sleep_or_stop(&book, Duration::from_secs(7)).await;
    while !book.stopped() {
        let w = book.open(Cause::BackendHung);
        b.hang(true);
        sleep_or_stop(&book, Duration::from_secs(3)).await;
        b.hang(false);
        book.close(w);
        cycles += 1;
        sleep_or_stop(&book, Duration::from_secs(9)).await;
    }
    cycles
}

/// What the flood saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct FloodStats {
    pub(crate) rounds: u64,
    pub(crate) opened: u64,
    /// Not served: closed by the proxy before any backend byte (over the limit), or no
    /// backend name in time (landed on the hung backend).
    pub(crate) refused: u64,
}

async fn flood_loop(book: Arc<Book>, lb: SocketAddr, count: usize) -> FloodStats {
    let mut stats = FloodStats::default();
    sleep_or_stop(&book, Duration::from_secs(10)).await;
    while !book.stopped() {
        let w = book.open(Cause::Flood);
        let mut set = JoinSet::new();
        for _ in 0..count {
            set.spawn(async move {
                let r = connect(lb).await;
                // Hold an admitted connection while the others arrive.
                sleep(Duration::from_secs(1)).await;
                r.is_ok()
            });
        }
        while let Some(r) = set.join_next().await {
            stats.opened += 1;
            if !matches!(r, Ok(true)) {
                stats.refused += 1;
            }
        }
        book.close(w);
        stats.rounds += 1;
        sleep_or_stop(&book, Duration::from_secs(14)).await;
    }
    stats
}

#[derive(Debug, Default, Clone)]
pub(crate) struct EmfileStats {
    pub(crate) rounds: u64,
    /// The limits set, as `soft` values.
    pub(crate) limits: Vec<u64>,
}

async fn emfile_loop(book: Arc<Book>, proxy: Arc<Proxy>) -> anyhow::Result<EmfileStats> {
    let mut stats = EmfileStats::default();
    let (soft, hard) = proxy.nofile()?;
    sleep_or_stop(&book, Duration::from_secs(16)).await;
    while !book.stopped() {
        let held = fd_count(proxy.pid())? as u64;
        let w = book.open(Cause::Emfile);
        proxy.set_nofile_soft(held, hard)?;
        stats.limits.push(held);
        sleep_or_stop(&book, Duration::from_secs(2)).await;
        proxy.set_nofile_soft(soft, hard)?;
        book.close(w);
        stats.rounds += 1;
        sleep_or_stop(&book, Duration::from_secs(18)).await;
    }
    Ok(stats)
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ReloadStats {
    pub(crate) valid_sent: u64,
    pub(crate) invalid_sent: u64,
    /// `apilb_config_reloads_total` moved as expected after each SIGHUP.
    pub(crate) counted: u64,
    /// Invalid reloads after which a new connection was still served.
    pub(crate) still_serving: u64,
    /// Invalid reloads after which the probe failed (each one is also a failure to
    /// attribute: landing on the hung backend, say).
    pub(crate) probe_failures: u64,
    pub(crate) mismatches: Vec<String>,
}

async fn reload_loop(
    book: Arc<Book>,
    proxy: Arc<Proxy>,
    backends: Vec<SocketAddr>,
    max: usize,
) -> anyhow::Result<ReloadStats> {
    let mut stats = ReloadStats::default();
    let mut i = 0u64;
    sleep_or_stop(&book, Duration::from_secs(2)).await;
    while !book.stopped() {
        i += 1;
        let variant = match i % 4 {
            1 => Variant::B,
            3 => Variant::A,
            _ => Variant::Invalid,
        };
        let before = scrape(proxy.metrics).await?;
        proxy.write_config(&config_yaml(
            proxy.listen,
            proxy.metrics,
            &backends,
            max,
            variant,
        ))?;
        proxy.signal(nix::sys::signal::Signal::SIGHUP)?;
        let (key, sent) = if variant == Variant::Invalid {
            stats.invalid_sent += 1;
            (
                "apilb_config_reloads_total{result=\"failed\"}",
                stats.invalid_sent,
            )
        } else {
            stats.valid_sent += 1;
            (
                "apilb_config_reloads_total{result=\"ok\"}",
                stats.valid_sent,
            )
        };
        let want = metric(&before, key) + 1.0;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = false;
        while Instant::now() < deadline {
            let m = scrape(proxy.metrics).await?;
            if metric(&m, key) >= want {
                seen = true;
                break;
            }
            sleep(Duration::from_millis(50)).await;
        }
        if seen {
            stats.counted += 1;
        } else {
            stats.mismatches.push(format!(
                "reload {i} ({variant:?}): {key} did not reach {want} (sent {sent})"
            ));
        }
        if variant == Variant::Invalid {
            // The old config still serves: a new connection reaches a backend.
            let started = Instant::now();
            match connect(proxy.listen).await {
                Ok(_) => stats.still_serving += 1,
                Err(e) => {
                    stats.probe_failures += 1;
                    book.fail("probe after invalid reload", None, e, started);
                }
            }
        }
        sleep_or_stop(&book, Duration::from_secs(2)).await;
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------
// Sampling /proc

fn fd_count(pid: i32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list /proc/{pid}/fd"))?
        .count())
}

/// apilb's descriptors: all, and how many of them are pipes (the splice pool keeps up to 256
/// idle pipes for reuse, so pipes may outnumber the start's; every other kind may not).
fn fds(pid: i32) -> anyhow::Result<(usize, usize)> {
    let mut all = 0;
    let mut pipes = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list /proc/{pid}/fd"))?
    {
        let Ok(e) = e else { continue };
        all += 1;
        // A descriptor closed between the listing and the readlink is simply not counted
        // as a pipe.
        if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("pipe:")) {
            pipes += 1;
        }
    }
    Ok((all, pipes))
}

/// `VmRSS` in KiB and `Threads` from /proc/PID/status.
fn status(pid: i32) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("Threads:")?))
}

/// One sample of the proxy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Seconds since the traffic started.
    pub(crate) at: f64,
    pub(crate) rss_kib: u64,
    pub(crate) threads: u64,
    pub(crate) fds: usize,
    /// Of `fds`, pipes.
    pub(crate) pipes: usize,
    pub(crate) tasks: f64,
    pub(crate) active: f64,
}

async fn sample(proxy: &Proxy, t0: Instant) -> anyhow::Result<Sample> {
    let (rss_kib, threads) = status(proxy.pid())?;
    let (fds, pipes) = fds(proxy.pid())?;
    let m = scrape(proxy.metrics).await?;
    Ok(Sample {
        at: t0.elapsed().as_secs_f64(),
        rss_kib,
        threads,
        fds,
        pipes,
        tasks: metric(&m, "apilb_runtime_alive_tasks"),
        active: metric(&m, "apilb_connections_active"),
    })
}

/// The idle proxy's steady state: the least of each count over 2 s of samples, since a
/// health check in flight holds a socket and a task for a moment.
async fn quiet(proxy: &Proxy, t0: Instant) -> anyhow::Result<Sample> {
    let mut best = sample(proxy, t0).await?;
    for _ in 0..40 {
        sleep(Duration::from_millis(50)).await;
        let s = sample(proxy, t0).await?;
        if s.fds - s.pipes < best.fds - best.pipes {
            best.fds = s.fds - s.pipes + best.pipes;
        }
        best.tasks = best.tasks.min(s.tasks);
        best.threads = best.threads.min(s.threads);
        best.rss_kib = best.rss_kib.min(s.rss_kib);
    }
    Ok(best)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

// ---------------------------------------------------------------------------------------
// The run

/// Everything the soak measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) duration: Duration,
    pub(crate) ops: BTreeMap<&'static str, u64>,
    pub(crate) bytes_checked: u64,
    pub(crate) bytes_corrupted: u64,
    pub(crate) failures: Vec<Failure>,
    /// Failures by the cause that explains them; `None` = unexplained.
    pub(crate) by_cause: BTreeMap<Option<Cause>, u64>,
    pub(crate) windows: BTreeMap<Cause, u64>,
    pub(crate) kill_cycles: u64,
    pub(crate) hang_cycles: u64,
    pub(crate) flood: FloodStats,
    pub(crate) emfile: EmfileStats,
    pub(crate) reloads: ReloadStats,
    /// `apilb_connections_rejected_total{reason="max_connections"}` at the end.
    pub(crate) rejected_max: f64,
    /// `apilb_accept_errors_total{kind="resources"}` at the end.
    pub(crate) accept_resource_errors: f64,
    pub(crate) baseline: Sample,
    pub(crate) warm: Sample,
    pub(crate) end: Sample,
    pub(crate) peak_rss_kib: u64,
    /// RSS slope after the warm-up, KiB per minute.
    pub(crate) rss_slope_kib_per_min: f64,
    /// Alive-task slope after the warm-up, per minute (the same load throughout).
    pub(crate) tasks_slope_per_min: f64,
    pub(crate) samples: Vec<Sample>,
    pub(crate) exited_early: Option<String>,
}

/// Bounds the report is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// RSS at the end may exceed RSS after the warm-up by at most this much.
    pub(crate) rss_growth_kib: u64,
}

impl Report {
    /// Every promise the run did not keep (empty when it passed).
    pub(crate) fn problems(&self, bounds: Bounds) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(e) = &self.exited_early {
            p.push(format!("apilb exited during the soak: {e}"));
        }
        if self.bytes_corrupted != 0 {
            p.push(format!("{} bytes corrupted", self.bytes_corrupted));
        }
        if self.bytes_checked == 0 {
            p.push("no bytes were checked".into());
        }
        if let Some(n) = self.by_cause.get(&None) {
            p.push(format!("{n} failed operations no fault explains"));
        }
        for class in ["bulk", "short", "stream message"] {
            if self.ops.get(class).copied().unwrap_or(0) == 0 {
                p.push(format!("no {class} operation succeeded"));
            }
        }
        if self.kill_cycles == 0
            || self.hang_cycles == 0
            || self.flood.rounds == 0
            || self.emfile.rounds == 0
        {
            p.push(format!(
                "a fault never ran: kill {}, hang {}, flood {}, emfile {}",
                self.kill_cycles, self.hang_cycles, self.flood.rounds, self.emfile.rounds
            ));
        }
        if self.flood.rounds > 0 && self.rejected_max == 0.0 {
            p.push("the flood never hit maxConnections".into());
        }
        if self.emfile.rounds > 0 && self.accept_resource_errors == 0.0 {
            p.push("accept never hit EMFILE".into());
        }
        let r = &self.reloads;
        if r.invalid_sent == 0 || r.valid_sent == 0 {
            p.push("reloads of both kinds were not sent".into());
        }
        if r.counted != r.valid_sent + r.invalid_sent {
            p.push(format!("reload counters disagree: {:?}", r.mismatches));
        }
        // A probe that failed is in the failure list, attributed to a fault or unexplained.
        if r.still_serving == 0 || r.still_serving + r.probe_failures != r.invalid_sent {
            p.push(format!(
                "after {} invalid reloads: {} probes served, {} failed",
                r.invalid_sent, r.still_serving, r.probe_failures
            ));
        }
        let (end, start) = (&self.end, &self.baseline);
        if end.fds - end.pipes != start.fds - start.pipes {
            p.push(format!(
                "descriptors other than pooled pipes: {} at the end, {} at the start",
                end.fds - end.pipes,
                start.fds - start.pipes
            ));
        }
        let pooled = end.pipes.checked_sub(start.pipes);
        if !pooled.is_some_and(|n| n % 2 == 0 && n <= 2 * 256) {
            p.push(format!(
                "pipe descriptors: {} at the end, {} at the start: not whole pipes added to a \
                 pool capped at 256",
                end.pipes, start.pipes
            ));
        }
        if self.end.tasks > self.baseline.tasks {
            p.push(format!(
                "runtime tasks: {} at the end, {} at the start",
                self.end.tasks, self.baseline.tasks
            ));
        }
        if self.end.threads > self.baseline.threads.max(self.warm.threads) {
            p.push(format!(
                "threads: {} at the end, {} at the start, {} after the warm-up",
                self.end.threads, self.baseline.threads, self.warm.threads
            ));
        }
        if self.end.active != 0.0 {
            p.push(format!(
                "{} connections still active at the end",
                self.end.active
            ));
        }
        let growth = self.end.rss_kib.saturating_sub(self.warm.rss_kib);
        if growth > bounds.rss_growth_kib {
            p.push(format!(
                "RSS grew {growth} KiB after the warm-up (bound {} KiB)",
                bounds.rss_growth_kib
            ));
        }
        p
    }

    /// The report as markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| what | value |\n| --- | --- |");
        let _ = writeln!(s, "| traffic time | {:.0} s |", self.duration.as_secs_f64());
        for (k, v) in &self.ops {
            let _ = writeln!(s, "| {k} ok | {v} |");
        }
        let _ = writeln!(s, "| bytes checked | {} |", self.bytes_checked);
        let _ = writeln!(s, "| **bytes corrupted** | **{}** |", self.bytes_corrupted);
        let _ = writeln!(
            s,
            "| faults | b1 killed {}x, b2 hung {}x, flood {}x ({} conns, {} not served), EMFILE {}x (soft limits {:?}), reloads {} valid + {} invalid |",
            self.kill_cycles,
            self.hang_cycles,
            self.flood.rounds,
            self.flood.opened,
            self.flood.refused,
            self.emfile.rounds,
            self.emfile.limits,
            self.reloads.valid_sent,
            self.reloads.invalid_sent
        );
        let _ = writeln!(
            s,
            "| reloads counted / invalid then still serving | {} / {} of {} ({} probes failed, attributed below) |",
            self.reloads.counted,
            self.reloads.still_serving,
            self.reloads.invalid_sent,
            self.reloads.probe_failures
        );
        let _ = writeln!(
            s,
            "| rejected (maxConnections) / accept EMFILE errors | {} / {} |",
            self.rejected_max, self.accept_resource_errors
        );
        let total: u64 = self.by_cause.values().sum();
        let _ = writeln!(s, "| failed operations | {total} |");
        for (cause, n) in &self.by_cause {
            let label = cause.map_or("**unexplained**", Cause::label);
            let _ = writeln!(s, "| &nbsp; {label} | {n} |");
        }
        let _ = writeln!(
            s,
            "| descriptors start / end (of which pooled splice pipes) | {} ({}) / {} ({}) |",
            self.baseline.fds, self.baseline.pipes, self.end.fds, self.end.pipes
        );
        let _ = writeln!(
            s,
            "| runtime tasks start / warm / end | {} / {} / {} (slope {:+.1}/min) |",
            self.baseline.tasks, self.warm.tasks, self.end.tasks, self.tasks_slope_per_min
        );
        let _ = writeln!(
            s,
            "| threads start / warm / end | {} / {} / {} |",
            self.baseline.threads, self.warm.threads, self.end.threads
        );
        let _ = writeln!(
            s,
            "| RSS start / warm / peak / end | {} / {} / {} / {} KiB |",
            self.baseline.rss_kib, self.warm.rss_kib, self.peak_rss_kib, self.end.rss_kib
        );
        let _ = writeln!(
            s,
            "| RSS slope after warm-up | {:+.1} KiB/min |",
            self.rss_slope_kib_per_min
        );
        s
    }

    /// The failures no fault explains, one per line.
    pub(crate) fn unexplained_lines(&self) -> Vec<String> {
        self.failures
            .iter()
            .filter(|f| f.cause.is_none())
            .map(|f| format!("{} on {:?}: {}", f.class, f.backend, f.what))
            .collect()
    }
}

/// Run the soak.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Report> {
    // Ports below the ephemeral range: a killed backend's port must still be free when it
    // restarts, which a client socket of the load could otherwise take.
    let mut ports = common::PortPicker::new();
    let mut standins = Vec::new();
    for name in BACKENDS {
        standins.push(StandIn::start(name, ports.pick()?).await?);
    }
    let addrs: Vec<SocketAddr> = standins.iter().map(|s| s.addr).collect();
    let dir = tempfile::tempdir()?;
    let listen = SocketAddr::from(([127, 0, 0, 1], ports.pick()?));
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], ports.pick()?));
    std::fs::write(
        dir.path().join("apilb.yaml"),
        config_yaml(
            listen,
            metrics_addr,
            &addrs,
            plan.max_connections,
            Variant::A,
        ),
    )?;
    let log = std::fs::File::create(&plan.log)
        .with_context(|| format!("create {}", plan.log.display()))?;
    let child = Command::new(&plan.apilb)
        .args(["serve", "--config"])
        .arg(dir.path().join("apilb.yaml"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", plan.apilb.display()))?;
    let proxy = Arc::new(Proxy {
        child,
        dir,
        listen,
        metrics: metrics_addr,
    });

    // Ready: every backend up, as the metrics say.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = scrape(metrics_addr).await {
            let up = BACKENDS
                .iter()
                .filter(|b| {
                    metric(
                        &m,
                        &format!("apilb_backend_state{{backend=\"{b}\",state=\"up\"}}"),
                    ) == 1.0
                })
                .count();
            if up == BACKENDS.len() {
                break;
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "apilb not ready with 3 backends up within 30 s (log: {})",
                plan.log.display()
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    // Prime: one valid reload, one short and one bulk exchange, so that what is started
    // once and kept (the first reload's and the first splice's resources) is in the
    // baseline, and only growth with the number of faults and connections shows.
    let primer = Book::new();
    let before = scrape(metrics_addr).await?;
    proxy.signal(nix::sys::signal::Signal::SIGHUP)?;
    let key = "apilb_config_reloads_total{result=\"ok\"}";
    wait_metric(metrics_addr, key, metric(&before, key) + 1.0).await?;
    for len in [256, 1 << 20] {
        let (mut s, _) = connect(listen)
            .await
            .map_err(|e| anyhow::anyhow!("priming connection: {e}"))?;
        exchange(&primer, &mut s, 7, len)
            .await
            .map_err(|e| anyhow::anyhow!("priming exchange: {e}"))?;
    }
    wait_metric_at_most(metrics_addr, "apilb_connections_active", 0.0).await?;
    let t0 = Instant::now();
    let baseline = quiet(&proxy, t0).await?;

    let book = Arc::new(Book::new());
    let mut traffic = JoinSet::new();
    for i in 0..plan.bulk_clients {
        traffic.spawn(bulk_client(
            Arc::clone(&book),
            listen,
            i as u64,
            plan.bulk_bytes,
        ));
    }
    for i in 0..plan.short_clients {
        traffic.spawn(short_client(Arc::clone(&book), listen, 100 + i as u64));
    }
    for i in 0..plan.streams {
        traffic.spawn(stream_client(Arc::clone(&book), listen, 200 + i as u64));
    }
    let kill = tokio::spawn(kill_loop(Arc::clone(&book), Arc::clone(&standins[1])));
    let hang = tokio::spawn(hang_loop(Arc::clone(&book), Arc::clone(&standins[2])));
    let flood = tokio::spawn(flood_loop(
        Arc::clone(&book),
        listen,
        plan.max_connections + plan.flood_extra,
    ));
    let emfile = tokio::spawn(emfile_loop(Arc::clone(&book), Arc::clone(&proxy)));
    let reload = tokio::spawn(reload_loop(
        Arc::clone(&book),
        Arc::clone(&proxy),
        addrs.clone(),
        plan.max_connections,
    ));

    // Sample once a second until the end; the warm-up is the first fifth of the run.
    let mut samples = Vec::new();
    let end = t0 + plan.duration;
    let mut exited_early = None;
    while Instant::now() < end {
        sleep(Duration::from_secs(1).min(end.saturating_duration_since(Instant::now()))).await;
        match sample(&proxy, t0).await {
            Ok(s) => samples.push(s),
            Err(e) => {
                if std::fs::metadata(format!("/proc/{}", proxy.pid())).is_err() {
                    exited_early = Some(format!("{e:#}"));
                    break;
                }
            }
        }
    }
    book.stop.store(true, Ordering::Relaxed);
    standins[2].hang(false);
    let kill_cycles = kill.await??;
    let hang_cycles = hang.await?;
    let flood = flood.await?;
    let emfile = emfile.await??;
    let reloads = reload.await??;
    // Clients end at their next step; a stalled one within its operation timeout.
    let drained = timeout(OP_TIMEOUT * 3, async {
        while traffic.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        traffic.abort_all();
    }

    // Back to idle: no client connection, then the descriptors and tasks of the start.
    let settle = Instant::now() + Duration::from_secs(20);
    let mut last = sample(&proxy, t0).await?;
    while Instant::now() < settle {
        if last.active == 0.0
            && last.fds - last.pipes == baseline.fds - baseline.pipes
            && last.tasks <= baseline.tasks
            && last.threads <= baseline.threads
        {
            break;
        }
        sleep(Duration::from_millis(100)).await;
        last = sample(&proxy, t0).await?;
    }
    let m = scrape(metrics_addr).await?;

    let warm_at = plan.duration.as_secs_f64() / 5.0;
    let warm = samples
        .iter()
        .find(|s| s.at >= warm_at)
        .copied()
        .unwrap_or(baseline);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm_at).collect();
    let rss_slope = slope(
        &after
            .iter()
            .map(|s| (s.at / 60.0, s.rss_kib as f64))
            .collect::<Vec<_>>(),
    );
    let tasks_slope = slope(
        &after
            .iter()
            .map(|s| (s.at / 60.0, s.tasks))
            .collect::<Vec<_>>(),
    );
    let windows = book
        .windows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut failures = book
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut by_cause = BTreeMap::new();
    for f in &mut failures {
        let cause = book.attribute(f, &windows);
        f.cause = cause;
        *by_cause.entry(cause).or_insert(0) += 1;
        let at = f.started.duration_since(t0).as_secs_f64();
        f.what = match cause {
            Some(c) => format!("at {at:.1}s: {} ({})", f.what, c.label()),
            None => format!("at {at:.1}s: {} [unexplained]", f.what),
        };
    }
    let mut window_counts = BTreeMap::new();
    for w in &windows {
        *window_counts.entry(w.cause).or_insert(0) += 1;
    }
    let ops = book.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Report {
        duration: plan.duration,
        ops,
        bytes_checked: book.bytes_checked.load(Ordering::Relaxed),
        bytes_corrupted: book.bytes_corrupted.load(Ordering::Relaxed),
        failures,
        by_cause,
        windows: window_counts,
        kill_cycles,
        hang_cycles,
        flood,
        emfile,
        reloads,
        rejected_max: metric(
            &m,
            "apilb_connections_rejected_total{reason=\"max_connections\"}",
        ),
        accept_resource_errors: metric(&m, "apilb_accept_errors_total{kind=\"resources\"}"),
        baseline,
        warm,
        end: last,
        peak_rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        rss_slope_kib_per_min: rss_slope,
        tasks_slope_per_min: tasks_slope,
        samples,
        exited_early,
    })
}

/// `path` relative to the crate root.
pub(crate) fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
