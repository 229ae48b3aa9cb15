//! Failure drill (issue 3, "Done when"): apilb and HAProxy in turn in front of 3 stand-in
//! apiservers under kubectl-like load, while backend 1 is killed, hung or drained.
//!
//! Run it through `benches/drill/run.sh` (installs HAProxy, builds apilb), or directly with
//! `cargo bench --bench drill -- --help`. See benches/drill/README.md for what is counted.
//!
//! Layout: `pki` (certificates), `apiserver` (the stand-in, run as a child process),
//! `process` (child guards, the events' signals), `proxy` (configs, readiness), `load`
//! (the clients), `report` (counting and markdown).

mod apiserver;
#[path = "../common/mod.rs"]
mod common;
mod load;
mod pki;
mod process;
mod proxy;
mod report;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rustls::ClientConfig;
use tokio::time::{Instant, sleep, sleep_until};

use crate::pki::Pki;
use crate::process::{StandIn, StandInSpec};
use crate::proxy::{ProxyKind, Setup};
use crate::report::{AFFECTED, Run};

/// Stand-in apiservers behind every proxy.
const BACKENDS: usize = 3;
/// How long the proxy gets to route to a restarted or resumed backend again.
const BACK_LIMIT: Duration = Duration::from_secs(60);
/// How long a draining stand-in may take to exit beyond its shutdown delay.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// What happens to backend 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Event {
    /// SIGKILL: the process and its listener are gone.
    Kill,
    /// SIGSTOP for the rest of the window: TCP still completes through the kernel backlog,
    /// nothing answers; SIGCONT afterwards.
    Hung,
    /// SIGUSR1: a graceful shutdown (readyz fails, livez passes, served for the delay,
    /// then exit).
    Drain,
}

impl Event {
    pub(crate) const ALL: [Event; 3] = [Event::Kill, Event::Hung, Event::Drain];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Event::Kill => "kill",
            Event::Hung => "hung",
            Event::Drain => "drain",
        }
    }
}

/// apilb vs HAProxy while one of three apiservers is killed, hung or drained under load.
#[derive(Debug, Parser)]
#[command(name = "drill")]
struct Args {
    #[command(subcommand)]
    role: Option<Role>,

    /// Proxies, comma-separated: apilb, haproxy.
    #[arg(long, value_delimiter = ',', default_value = "apilb,haproxy")]
    proxies: Vec<ProxyKind>,

    /// Events, comma-separated: kill, hung, drain.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "kill,hung,drain"
    )]
    events: Vec<Event>,

    /// Clients looping new connection + TLS + GET /work + close.
    #[arg(long, default_value_t = 32)]
    clients: usize,

    /// Keep-alive connections sending one GET /work every 100 ms.
    #[arg(long, default_value_t = 6)]
    persistent: usize,

    /// Pause of each new-connection client between its requests.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pause: Duration,

    /// Load before the event.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    before: Duration,

    /// Load after the event (a hung backend stays stopped this long).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,

    /// The stand-ins' --shutdown-delay-duration: how long a draining one keeps serving.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,

    /// apilb binary [default: target/release/apilb of this crate].
    #[arg(long)]
    apilb_bin: Option<PathBuf>,

    /// RUST_LOG for apilb (its log is kept per run, see --logs).
    #[arg(long, default_value = "apilb=debug")]
    apilb_log: String,

    /// HAProxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy_bin: PathBuf,

    /// Where proxy and stand-in logs go [default: target/drill of this crate].
    #[arg(long)]
    logs: Option<PathBuf>,

    /// Markdown results file [default: benches/drill/results.md of this crate].
    #[arg(long)]
    results: Option<PathBuf>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Internal: run as a stand-in apiserver.
    #[command(hide = true)]
    Apiserver(apiserver::Opts),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Role::Apiserver(opts)) = args.role {
        return match apiserver::main(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("apiserver: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    common::run_until_interrupted(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let setup = Setup {
        apilb: args
            .apilb_bin
            .clone()
            .unwrap_or_else(|| manifest.join("target/release/apilb")),
        haproxy: args.haproxy_bin.clone(),
        apilb_log: args.apilb_log.clone(),
    };
    let mut proxies = Vec::new();
    for &p in &args.proxies {
        let bin = match p {
            ProxyKind::Apilb => &setup.apilb,
            ProxyKind::Haproxy => &setup.haproxy,
        };
        match common::find_executable(bin) {
            Some(_) if !proxies.contains(&p) => proxies.push(p),
            Some(_) => {}
            None => eprintln!("skipping {p}: binary {} not found", bin.display()),
        }
    }
    if proxies.is_empty() || args.events.is_empty() {
        bail!("nothing to run (no proxy binary found, or no event)");
    }
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let logs = args
        .logs
        .clone()
        .unwrap_or_else(|| manifest.join("target/drill"));
    proxy::mkdir(&logs)?;
    let certs = tempfile::Builder::new()
        .prefix("apilb-drill-")
        .tempdir()
        .context("temp dir")?;
    let pki = Pki::generate(certs.path())?;
    let tls = pki::load_client_config(&pki.ca)?;
    let exe = std::env::current_exe().context("path of the drill binary")?;

    let mut ports = common::PortPicker::new();
    let addrs: Vec<SocketAddr> = (0..BACKENDS)
        .map(|_| ports.pick().map(|p| SocketAddr::from(([127, 0, 0, 1], p))))
        .collect::<anyhow::Result<_>>()?;
    let specs: Vec<StandInSpec> = addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| StandInSpec {
            exe: exe.clone(),
            name: format!("b{}", i + 1),
            addr,
            shutdown_delay: args.shutdown_delay,
            log: logs.join(format!("b{}.log", i + 1)),
        })
        .collect();
    for s in &specs {
        // Fresh logs per drill.
        let _absent = std::fs::remove_file(&s.log);
    }
    let mut standins: Vec<StandIn> = specs
        .iter()
        .map(|s| StandIn::start(s, &pki))
        .collect::<anyhow::Result<_>>()?;

    let params = load::Params {
        clients: args.clients,
        persistent: args.persistent,
        pause: args.pause,
    };
    let mut header = vec![
        format!(
            "date: {}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        ),
        format!("machine: {}", machine()),
        format!(
            "commit: {} (of the tree the harness ran in)",
            common::commit()
        ),
        format!(
            "versions: {}; {}",
            common::version(&setup.apilb, "--version"),
            common::version(&setup.haproxy, "-v")
        ),
        format!(
            "load: {} clients looping new TCP + TLS + GET /work + close ({} pause), {} keep-alive \
             connections with a GET every {:?}; every request bounded by {:?}; {} of load before \
             the event, {} after; a fresh proxy process per event",
            args.clients,
            humantime::format_duration(args.pause),
            args.persistent,
            load::PERSISTENT_PERIOD,
            load::REQUEST_LIMIT,
            humantime::format_duration(args.before),
            humantime::format_duration(args.window),
        ),
        format!(
            "stand-ins: {BACKENDS} processes, rustls + hyper on 127.0.0.1; drain = SIGUSR1 with a \
             {} shutdown delay",
            humantime::format_duration(args.shutdown_delay)
        ),
    ];
    eprintln!("{}", header.join("\n"));
    let drill_started = Instant::now();

    let mut runs = Vec::new();
    for &p in &proxies {
        for &e in &args.events {
            // Backend 1 must be alive and answering before each event.
            if standins[0].guard().exited().is_some() {
                standins[0] = StandIn::start(&specs[0], &pki)?;
            }
            let dir = logs.join(format!("{p}-{}", e.label()));
            proxy::mkdir(&dir)?;
            let listen = SocketAddr::from(([127, 0, 0, 1], ports.pick()?));
            let mut guard = proxy::start(p, &setup, &pki, &addrs, listen, &dir, &tls).await?;
            let log = guard.output_path().display().to_string();
            let mut run = one_event(
                p,
                e,
                &args,
                params,
                &tls,
                listen,
                &mut standins,
                &specs,
                &pki,
            )
            .await
            .with_context(|| format!("{p} / {}", e.label()))?;
            if let Some(status) = guard.exited() {
                run.note = Some(format!("{p} exited ({status}) during the run"));
            }
            run.log = log;
            drop(guard);
            let s = run.stats();
            eprintln!(
                "{p} {}: new-connection failures after the event {} of {}, in flight {}, \
                 persistent {}, b1 back after {:?}",
                e.label(),
                s.new_failed,
                s.new_after,
                s.in_flight_failed,
                s.persistent_failed,
                run.back_after
            );
            runs.push(run);
        }
    }
    drop(standins);
    header.push(format!(
        "drill took {:.0} s",
        drill_started.elapsed().as_secs_f64()
    ));

    let configs = format!(
        "apilb (`RUST_LOG={}`):\n\n```yaml\n{}```\n\nHAProxy (`haproxy -db -f FILE`):\n\n```\n{}```\n",
        args.apilb_log,
        proxy::apilb_config(listen_example(), &addrs, &pki)
            .replace(&certs.path().display().to_string(), "$TMP"),
        proxy::haproxy_config(listen_example(), &addrs)
    );
    let text = report::render(&header, &runs, &configs);
    let path = args
        .results
        .clone()
        .unwrap_or_else(|| manifest.join("benches/drill/results.md"));
    std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    writeln!(stdout, "(written to {})", path.display())?;
    Ok(())
}

fn listen_example() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6443))
}

/// Load, the event on backend 1 while it runs, then recovery of backend 1.
#[allow(clippy::too_many_arguments)]
async fn one_event(
    proxy: ProxyKind,
    event: Event,
    args: &Args,
    params: load::Params,
    tls: &Arc<ClientConfig>,
    listen: SocketAddr,
    standins: &mut [StandIn],
    specs: &[StandInSpec],
    pki: &Pki,
) -> anyhow::Result<Run> {
    let t0 = Instant::now();
    let stop_at = t0 + args.before + args.window;
    let cpu_start = busy_ticks();
    let load = tokio::spawn(load::run(listen, tls.clone(), params, t0, stop_at));
    sleep_until(t0 + args.before).await;
    let b1 = &mut standins[AFFECTED - 1];
    // The event instant is when the event has taken effect: the process is reaped (kill),
    // stopped (hung), or has been sent SIGUSR1 (drain; it flips /readyz on receipt).
    match event {
        Event::Kill => b1.kill().await?,
        Event::Hung => b1.stop().await?,
        Event::Drain => b1.drain()?,
    }
    let event_at = t0.elapsed();
    eprintln!(
        "{proxy} {}: event at +{:.2}s",
        event.label(),
        event_at.as_secs_f64()
    );
    let records = load.await.context("load task")?;
    let busy = match (cpu_start, busy_ticks()) {
        (Some(a), Some(b)) if b.1 > a.1 => (b.0 - a.0) as f64 / (b.1 - a.1) as f64,
        _ => 0.0,
    };

    // Recovery: bring backend 1 back and time how long until the proxy uses it again.
    let mut note = None;
    match event {
        Event::Kill => standins[AFFECTED - 1] = StandIn::start(&specs[AFFECTED - 1], pki)?,
        Event::Hung => standins[AFFECTED - 1].resume()?,
        Event::Drain => {
            let b1 = standins[AFFECTED - 1].guard();
            match b1.wait_exit(EXIT_LIMIT).await {
                Ok(status) if status.success() => {}
                Ok(status) => note = Some(format!("draining b1 exited with {status}")),
                Err(e) => note = Some(format!("{e:#}; killed")),
            }
            standins[AFFECTED - 1] = StandIn::start(&specs[AFFECTED - 1], pki)?;
        }
    }
    let back_after = back_in_rotation(listen, tls).await;
    Ok(Run {
        proxy,
        event,
        records,
        event_at,
        back_after,
        busy,
        log: String::new(),
        note,
    })
}

/// Sends requests through the proxy (one at a time, every 50 ms) until backend 1 answers
/// one; the time that took, or `None` after [`BACK_LIMIT`].
async fn back_in_rotation(listen: SocketAddr, tls: &Arc<ClientConfig>) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < BACK_LIMIT {
        if load::request_once(listen, tls).await == Ok(AFFECTED) {
            return Some(started.elapsed());
        }
        sleep(Duration::from_millis(50)).await;
    }
    None
}

/// (busy, total) clock ticks of the machine from /proc/stat.
fn busy_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|s| s.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs, Linux {}, load average at start {}",
        kernel.trim(),
        load.join(" ")
    )
}
