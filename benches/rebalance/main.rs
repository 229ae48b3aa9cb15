//! Rebalance drill (issue 14): three stand-in apiservers that stream events on long-lived
//! connections and answer requests; `--clients` client-go-like clients (one long-lived
//! connection each, a request now and then, reconnect at once on EOF); one backend is
//! stopped, then restored; every second the drill records connections per backend (as the
//! stand-ins count them), skew, closes seen by clients and client-visible failures.
//!
//! Modes, one after the other with the same load and events:
//! - `apilb`: apilb with rebalancing (short drill timings, see [`apilb_config`]);
//! - `haproxy`: HAProxy `balance leastconn` (places new connections only);
//! - `maxage`: a least-connections proxy built into the drill that closes every connection
//!   at a fixed age (with jitter), like Envoy's `max_downstream_connection_duration`.
//!
//! Run: `benches/rebalance/run.sh` (builds apilb in release), or
//! `cargo bench --bench rebalance -- --help`. See benches/rebalance/README.md.

#![allow(clippy::print_stdout)] // The report goes to stdout by design.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// Rebalance drill: apilb vs HAProxy leastconn vs a max-connection-age timer.
#[derive(Debug, Parser)]
#[command(name = "rebalance-drill")]
struct Args {
    /// Modes, comma-separated: apilb, haproxy, maxage.
    #[arg(long, value_delimiter = ',', default_value = "apilb,haproxy,maxage")]
    modes: Vec<String>,
    /// Long-lived clients.
    #[arg(long, default_value_t = 300)]
    clients: usize,
    /// Load before backend 3 stops.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    before: Duration,
    /// How long a stopped backend stays down.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    down: Duration,
    /// Rolling restart: b1, b2 and b3 are each stopped for `--down`, one after the other,
    /// `--rolling-gap` apart; the drill watches for `--observe` after b3 is back.
    #[arg(long)]
    rolling: bool,
    /// Time between one backend's restore and the next one's stop, with `--rolling`.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    rolling_gap: Duration,
    /// How long the drill watches after backend 3 is back.
    #[arg(long, default_value = "70s", value_parser = humantime::parse_duration)]
    observe: Duration,
    /// The `maxage` proxy's connection age limit (each connection gets +-20 % jitter).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_age: Duration,
    /// Each stand-in sends an event on each connection this often.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    event_every: Duration,
    /// The apilb binary.
    #[arg(long, default_value = "target/release/apilb")]
    apilb_bin: PathBuf,
    /// The haproxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy_bin: PathBuf,
    /// Where the markdown report goes (also printed).
    #[arg(long, default_value = "benches/rebalance/results.md")]
    results: PathBuf,
    /// Where proxy configs, logs and per-second CSVs go.
    #[arg(long, default_value = "target/rebalance-drill")]
    logs: PathBuf,
}

const BACKENDS: usize = 3;

/// One stop or restore of the drill.
#[derive(Debug, Clone, Copy)]
struct Step {
    at: Duration,
    backend: usize,
    restore: bool,
}

/// The stops and restores of a run, in time order: b3 alone, or each backend in turn.
fn schedule(args: &Args) -> Vec<Step> {
    let order: Vec<usize> = if args.rolling {
        (0..BACKENDS).collect()
    } else {
        vec![BACKENDS - 1]
    };
    let mut steps = Vec::new();
    let mut at = args.before;
    for backend in order {
        steps.push(Step {
            at,
            backend,
            restore: false,
        });
        at += args.down;
        steps.push(Step {
            at,
            backend,
            restore: true,
        });
        at += args.rolling_gap;
    }
    steps
}

/// When the last backend comes back: what the drill measures from.
fn last_restore(args: &Args) -> Duration {
    schedule(args).last().map_or(args.before, |s| s.at)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.logs)
        .with_context(|| format!("create {}", args.logs.display()))?;
    raise_nofile();
    let mut results = Vec::new();
    for mode in &args.modes {
        eprintln!("== {mode}");
        let r = run_mode(&args, mode)
            .await
            .with_context(|| format!("mode {mode}"))?;
        eprintln!("{}", r.summary_row());
        results.push(r);
    }
    let report = report(&args, &results);
    print!("{report}");
    std::fs::write(&args.results, &report)
        .with_context(|| format!("write {}", args.results.display()))?;
    Ok(())
}

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ignored = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

// ---------------------------------------------------------------------------------------
// Stand-in apiservers.

/// One stand-in: counts its open connections; `stop` closes the listener and every
/// connection (a crash or restart), `start` listens again on the same address.
struct StandIn {
    name: String,
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    stop: Mutex<CancellationToken>,
    event_every: Duration,
}

impl StandIn {
    async fn new(name: &str, event_every: Duration) -> anyhow::Result<Arc<Self>> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let s = Arc::new(Self {
            name: name.to_owned(),
            addr: l.local_addr()?,
            open: Arc::new(AtomicUsize::new(0)),
            stop: Mutex::new(CancellationToken::new()),
            event_every,
        });
        s.serve(l);
        Ok(s)
    }

    fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).cancel();
    }

    async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        let l = TcpListener::bind(self.addr).await?;
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = CancellationToken::new();
        self.serve(l);
        Ok(())
    }

    fn serve(self: &Arc<Self>, l: TcpListener) {
        let token = self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    () = token.cancelled() => return,
                    r = l.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let (me, token) = (Arc::clone(&me), token.clone());
                tokio::spawn(async move {
                    me.open.fetch_add(1, Ordering::SeqCst);
                    me.conn(s, token).await;
                    me.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    /// Events every `event_every` (random phase) and an answer to every request, until
    /// the client's EOF or a stop.
    async fn conn(&self, s: TcpStream, token: CancellationToken) {
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r);
        let phase = Duration::from_millis(rand_below(self.event_every.as_millis() as u64));
        let mut next = Instant::now() + phase;
        let mut seq = 0u64;
        loop {
            let mut line = String::new();
            tokio::select! {
                () = token.cancelled() => return,
                g = lines.read_line(&mut line) => match g {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let id = line.trim().trim_start_matches("REQ ");
                        let answer = format!("RESP {id} {}\n", self.name);
                        if w.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                },
                () = tokio::time::sleep_until(next) => {
                    seq += 1;
                    let event = format!("EVENT {seq} {} {}\n", self.name, "x".repeat(200));
                    if w.write_all(event.as_bytes()).await.is_err() {
                        return;
                    }
                    next += self.event_every;
                }
            }
        }
    }
}

fn rand_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() % n.max(1)
}

// ---------------------------------------------------------------------------------------
// Clients.

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests with no (or a wrong) answer.
    failed: AtomicU64,
    /// Event lines cut off by EOF.
    truncated: AtomicU64,
    /// Connections ended by EOF (closes seen by clients).
    eofs: AtomicU64,
    resets: AtomicU64,
}

impl Tally {
    fn snap(&self) -> [u64; 5] {
        [
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.truncated.load(Ordering::SeqCst),
            self.eofs.load(Ordering::SeqCst),
            self.resets.load(Ordering::SeqCst),
        ]
    }
}

/// A client-go-like client from 127.1.x.y: one connection, a request every 4-10 s whose
/// answer must come within 10 s, events in between; on EOF reconnect at once and resume.
async fn client(i: usize, lb: SocketAddr, t: Arc<Tally>, stop: CancellationToken) {
    let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        let Ok(sock) = TcpSocket::new_v4() else {
            return;
        };
        if sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)).is_err() {
            return;
        }
        let s = match sock.connect(lb).await {
            Ok(s) => s,
            Err(_) => {
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut outstanding: Option<(String, Instant)> = None;
        let mut next_req = Instant::now() + Duration::from_millis(4000 + rand_below(6000));
        loop {
            let mut line = String::new();
            let deadline = outstanding
                .as_ref()
                .map_or(next_req, |(_, at)| *at + Duration::from_secs(10));
            tokio::select! {
                () = stop.cancelled() => return,
                g = r.read_line(&mut line) => match g {
                    Ok(0) => {
                        t.eofs.fetch_add(1, Ordering::SeqCst);
                        if outstanding.is_some() {
                            t.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                    Ok(_) if !line.ends_with('\n') => {
                        t.truncated.fetch_add(1, Ordering::SeqCst);
                        t.eofs.fetch_add(1, Ordering::SeqCst);
                        if outstanding.is_some() {
                            t.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                    Ok(_) => {
                        if line.starts_with("RESP ") {
                            match outstanding.take() {
                                Some((want, _)) if line.starts_with(&want) => {
                                    t.ok.fetch_add(1, Ordering::SeqCst);
                                }
                                _ => {
                                    t.failed.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            next_req = Instant::now() + Duration::from_millis(4000 + rand_below(6000));
                        }
                    }
                    Err(_) => {
                        t.resets.fetch_add(1, Ordering::SeqCst);
                        if outstanding.is_some() {
                            t.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    if outstanding.is_some() {
                        // No answer within 10 s: a failure; the connection is dropped.
                        t.failed.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    n += 1;
                    let id = format!("{i}-{n}");
                    if w.write_all(format!("REQ {id}\n").as_bytes()).await.is_err() {
                        break;
                    }
                    outstanding = Some((format!("RESP {id} "), Instant::now()));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Proxies.

struct Proxy {
    child: Option<Child>,
    stop: CancellationToken,
    /// Connections the proxy itself closed (maxage only).
    closed: Arc<AtomicU64>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(c) = self.child.as_mut() {
            let _ignored = c.kill();
            let _ignored = c.wait();
        }
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// apilb's config for the drill: TCP checks every 200 ms, and rebalancing with timings
/// scaled down so a run takes about a minute (production defaults: after 60s, warmup 90s,
/// minAge 10m, perClient 30m).
fn apilb_config(listen: SocketAddr, backends: &[Arc<StandIn>]) -> String {
    let mut s = format!("listen: [\"{listen}\"]\nbackends:\n");
    for b in backends {
        s.push_str(&format!(
            "  - {{name: {}, address: \"{}\"}}\n",
            b.name, b.addr
        ));
    }
    s.push_str(
        "health: {kind: tcp, interval: 200ms, fastInterval: 100ms, timeout: 500ms, rise: 2, fall: 1, slowStart: 2s}\n\
         rebalance: {after: 5s, warmup: 5s, minAge: 5s, quiet: 500ms, maxRate: 20, perClient: 10m}\n",
    );
    s
}

fn haproxy_config(listen: SocketAddr, backends: &[Arc<StandIn>]) -> String {
    let mut s = format!(
        "global\n    maxconn 9000\n\ndefaults\n    mode tcp\n    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n\n\
         frontend fe\n    bind {listen}\n    default_backend be\n\n\
         backend be\n    balance leastconn\n"
    );
    for b in backends {
        s.push_str(&format!(
            "    server {} {} check inter 200ms fall 1 rise 2\n",
            b.name, b.addr
        ));
    }
    s
}

async fn start_proxy(
    args: &Args,
    mode: &str,
    listen: SocketAddr,
    backends: &[Arc<StandIn>],
) -> anyhow::Result<Proxy> {
    let dir = args.logs.join(mode);
    std::fs::create_dir_all(&dir)?;
    let stop = CancellationToken::new();
    let closed = Arc::new(AtomicU64::new(0));
    let child = match mode {
        "apilb" | "haproxy" => {
            let (cfg, mut cmd) = if mode == "apilb" {
                let cfg = dir.join("apilb.yaml");
                std::fs::write(&cfg, apilb_config(listen, backends))?;
                let mut c = Command::new(&args.apilb_bin);
                c.arg("serve")
                    .arg("--config")
                    .arg(&cfg)
                    .env("RUST_LOG", "info");
                (cfg, c)
            } else {
                let cfg = dir.join("haproxy.cfg");
                std::fs::write(&cfg, haproxy_config(listen, backends))?;
                let mut c = Command::new(&args.haproxy_bin);
                c.arg("-db").arg("-f").arg(&cfg);
                (cfg, c)
            };
            let log = std::fs::File::create(dir.join(format!("{mode}.log")))?;
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {mode} with {}", cfg.display()))?;
            Some(child)
        }
        "maxage" => {
            let l = TcpListener::bind(listen).await?;
            tokio::spawn(maxage_proxy(
                l,
                backends.iter().map(|b| b.addr).collect(),
                args.max_age,
                Arc::clone(&closed),
                stop.clone(),
            ));
            None
        }
        other => bail!("unknown mode {other:?} (apilb, haproxy, maxage)"),
    };
    let p = Proxy {
        child,
        stop,
        closed,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(listen).await.is_err() {
        if Instant::now() >= deadline {
            bail!("{mode} not listening on {listen}");
        }
        sleep(Duration::from_millis(50)).await;
    }
    Ok(p)
}

/// Least connections over backends that accept, each connection closed (FIN both ways,
/// whatever is in flight) at `max_age` +-20 %.
async fn maxage_proxy(
    l: TcpListener,
    backends: Vec<SocketAddr>,
    max_age: Duration,
    closed: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let active: Arc<Vec<AtomicUsize>> =
        Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
    loop {
        let (c, _) = tokio::select! {
            () = stop.cancelled() => return,
            r = l.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let (backends, active, closed, stop) = (
            backends.clone(),
            Arc::clone(&active),
            Arc::clone(&closed),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut order: Vec<usize> = (0..backends.len()).collect();
            order.sort_by_key(|&i| active[i].load(Ordering::SeqCst));
            let mut chosen = None;
            for i in order {
                if let Ok(Ok(b)) =
                    tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(backends[i]))
                        .await
                {
                    chosen = Some((i, b));
                    break;
                }
            }
            let Some((i, mut b)) = chosen else { return };
            active[i].fetch_add(1, Ordering::SeqCst);
            let mut c = c;
            let jitter = max_age.as_millis() as u64 / 5;
            let age = max_age - Duration::from_millis(jitter)
                + Duration::from_millis(rand_below(2 * jitter.max(1)));
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut c, &mut b) => {}
                () = sleep(age) => {
                    closed.fetch_add(1, Ordering::SeqCst);
                    let _ignored = c.shutdown().await;
                    let _ignored = b.shutdown().await;
                    // Let both peers close, then drop.
                    let _ignored = tokio::time::timeout(Duration::from_secs(5), tokio::io::copy_bidirectional(&mut c, &mut b)).await;
                }
                () = stop.cancelled() => {}
            }
            active[i].fetch_sub(1, Ordering::SeqCst);
        });
    }
}

// ---------------------------------------------------------------------------------------
// One run.

struct Second {
    t: f64,
    per: [usize; BACKENDS],
    skew: f64,
    eofs: u64,
    failed: u64,
}

struct RunResult {
    mode: String,
    seconds: Vec<Second>,
    /// Seconds from the restore until skew <= 1.1 (first such second), if ever.
    balanced_after: Option<f64>,
    /// Connections closed (seen by clients) after the restore.
    moved: u64,
    /// The ideal: connections above their shares at the restore.
    ideal: usize,
    failed_after: u64,
    truncated_after: u64,
    resets_after: u64,
    failed_down: u64,
    final_per: [usize; BACKENDS],
}

impl RunResult {
    fn summary_row(&self) -> String {
        format!(
            "| {} | {} | {} / {} | {} | {} | {} | {:?} | {} |",
            self.mode,
            self.balanced_after
                .map_or("never".to_owned(), |s| format!("{s:.0} s")),
            self.moved,
            self.ideal,
            self.failed_after,
            self.truncated_after,
            self.resets_after,
            self.final_per,
            self.failed_down,
        )
    }
}

fn skew(per: &[usize]) -> f64 {
    let total: usize = per.iter().sum();
    if total == 0 {
        return 1.0;
    }
    let mean = total as f64 / per.len() as f64;
    *per.iter().max().unwrap_or(&0) as f64 / mean
}

async fn run_mode(args: &Args, mode: &str) -> anyhow::Result<RunResult> {
    let mut backends = Vec::new();
    for i in 1..=BACKENDS {
        backends.push(StandIn::new(&format!("b{i}"), args.event_every).await?);
    }
    let listen = free_addr()?;
    let proxy = start_proxy(args, mode, listen, &backends).await?;
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    for i in 0..args.clients {
        tokio::spawn(client(i, listen, Arc::clone(&tally), stop.clone()));
        if i % 50 == 49 {
            sleep(Duration::from_millis(100)).await;
        }
    }
    let start = Instant::now();
    let mut seconds = Vec::new();
    let mut csv = String::from("t,b1,b2,b3,skew,closes,failed\n");
    let per = |b: &[Arc<StandIn>]| -> [usize; BACKENDS] {
        let mut out = [0; BACKENDS];
        for (o, s) in out.iter_mut().zip(b) {
            *o = s.open.load(Ordering::SeqCst);
        }
        out
    };
    let steps = schedule(args);
    let mut next_step = 0;
    let restore_at = last_restore(args);
    let end_at = restore_at + args.observe;
    let mut at_restore = [0u64; 5];
    let mut at_stop = [0u64; 5];
    let mut ideal = 0;
    let mut prev = tally.snap();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let t = start.elapsed();
        while let Some(step) = steps.get(next_step).filter(|st| t >= st.at).copied() {
            let name = &backends[step.backend].name;
            if !step.restore {
                if next_step == 0 {
                    at_stop = tally.snap();
                }
                backends[step.backend].stop();
                eprintln!("  {:.0}s: {name} stopped", t.as_secs_f64());
            } else {
                let p = per(&backends);
                if next_step + 1 == steps.len() {
                    let total: usize = p.iter().sum();
                    let share = total.div_ceil(BACKENDS);
                    ideal = p.iter().map(|&n| n.saturating_sub(share)).sum();
                    at_restore = tally.snap();
                }
                backends[step.backend].start().await?;
                eprintln!("  {:.0}s: {name} restored with {p:?} open", t.as_secs_f64());
            }
            next_step += 1;
        }
        let now = tally.snap();
        let p = per(&backends);
        let s = Second {
            t: t.as_secs_f64(),
            per: p,
            skew: skew(&p),
            eofs: now[3] - prev[3],
            failed: now[1] - prev[1],
        };
        csv.push_str(&format!(
            "{:.0},{},{},{},{:.3},{},{}\n",
            s.t, p[0], p[1], p[2], s.skew, s.eofs, s.failed
        ));
        seconds.push(s);
        prev = now;
        if t >= end_at {
            break;
        }
    }
    stop.cancel();
    let end = tally.snap();
    std::fs::write(args.logs.join(format!("{mode}.csv")), csv)?;
    let restore_t = restore_at.as_secs_f64();
    let balanced_after = seconds
        .iter()
        .filter(|s| s.t >= restore_t && s.per[2] > 0)
        .find(|s| s.skew <= 1.1)
        .map(|s| s.t - restore_t);
    let final_per = seconds.last().map_or([0; BACKENDS], |s| s.per);
    if mode == "maxage" {
        eprintln!(
            "  maxage closed {} connections at their age limit",
            proxy.closed.load(Ordering::SeqCst)
        );
    }
    drop(proxy);
    for b in &backends {
        b.stop();
    }
    sleep(Duration::from_millis(500)).await;
    Ok(RunResult {
        mode: mode.to_owned(),
        seconds,
        balanced_after,
        moved: end[3] - at_restore[3],
        ideal,
        failed_after: end[1] - at_restore[1],
        truncated_after: end[2] - at_restore[2],
        resets_after: end[4] - at_restore[4],
        failed_down: at_restore[1] - at_stop[1],
        final_per,
    })
}

fn report(args: &Args, results: &[RunResult]) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut s = String::new();
    let events = if args.rolling {
        format!(
            "rolling restart: b1, b2 and b3 each stopped for {}, one after the other with {} between a restore and the next stop, from {}; \"restore\" below is b3's, the last",
            humantime::format_duration(args.down),
            humantime::format_duration(args.rolling_gap),
            humantime::format_duration(args.before),
        )
    } else {
        format!(
            "b3 stopped at {}, restored {} later",
            humantime::format_duration(args.before),
            humantime::format_duration(args.down),
        )
    };
    s.push_str(&format!(
        "# Rebalance drill results\n\nCommit `{commit}`, {date}. {} clients, 3 stand-ins (an event every {} per connection, a request every 4-10 s per client); {events}; watched for {} after the restore. `maxage` closes at {} +-20 %.\n\n",
        args.clients,
        humantime::format_duration(args.event_every),
        humantime::format_duration(args.observe),
        humantime::format_duration(args.max_age),
    ));
    s.push_str("| mode | skew <= 1.1 after restore | moved / ideal | failed requests after restore | truncated events | resets | connections at end (b1, b2, b3) | failed while b3 was down |\n|---|---|---|---|---|---|---|---|\n");
    for r in results {
        s.push_str(&r.summary_row());
        s.push('\n');
    }
    s.push_str("\n\"moved\" counts connections that clients saw closed after the restore; \"ideal\" is the excess above the mean at the restore. Failures while a backend was down (\"failed while b3 was down\": from the first stop to the last restore) are the crashes' (requests in flight on the stopped backend), the same for every mode.\n");
    for r in results {
        s.push_str(&format!(
            "\n## {} every 5 s after the restore\n\n| t (s) | b1 | b2 | b3 | skew | closes | failed |\n|---|---|---|---|---|---|---|\n",
            r.mode
        ));
        let restore_t = last_restore(args).as_secs_f64();
        let mut closes_acc = 0;
        let mut failed_acc = 0;
        for sec in &r.seconds {
            if sec.t + 0.5 < restore_t {
                continue;
            }
            closes_acc += sec.eofs;
            failed_acc += sec.failed;
            let rel = (sec.t - restore_t).round() as i64;
            if rel % 5 == 0 {
                s.push_str(&format!(
                    "| {rel} | {} | {} | {} | {:.2} | {closes_acc} | {failed_acc} |\n",
                    sec.per[0], sec.per[1], sec.per[2], sec.skew
                ));
            }
        }
    }
    let _ignored = std::io::stderr().flush();
    s
}
