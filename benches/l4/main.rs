//! End-to-end layer-4 benchmark: apilb against HAProxy and nginx on loopback.
//!
//! Run it through `benches/l4/run.sh` (it installs the peers and builds apilb), or directly
//! with `cargo bench --bench l4 -- --help`. See benches/l4/README.md for what each workload
//! measures and the caveats.
//!
//! Layout: `backend` (echo/source/sink servers, in a child process), `proxy` (configs,
//! process guards, readiness), `load` (the generator), `procfs` (CPU and RSS from /proc),
//! `report` (medians and markdown tables).

mod backend;
#[path = "../common/mod.rs"]
mod common;
mod load;
mod procfs;
mod proxy;
mod report;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::common::PortPicker;
use crate::load::{Params, Workload};
use crate::procfs::Meter;
use crate::proxy::{Bins, ChildGuard, ProxyKind};
use crate::report::Sample;

/// Number of loopback backends behind every proxy.
const BACKENDS: usize = 3;
/// Open-files limit the harness asks for (inherited by backends and proxies).
const NOFILE: u64 = 262_144;

/// apilb vs HAProxy vs nginx, layer 4, on loopback.
#[derive(Debug, Parser)]
#[command(name = "l4")]
struct Args {
    /// Proxies to measure, comma-separated: direct (no proxy), haproxy, nginx,
    /// apilb (forwarding: auto, the default), apilb-splice, apilb-copy.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,haproxy,nginx,apilb,apilb-splice,apilb-copy"
    )]
    proxies: Vec<ProxyKind>,

    /// Workloads, comma-separated: bulk (= bulk1,bulk8), bulk1, bulk8, rate, rr, idle.
    #[arg(long, value_delimiter = ',', default_value = "bulk,rate,rr,idle",
          value_parser = load::parse_workloads)]
    workloads: Vec<Vec<Workload>>,

    /// Measured window of each bulk, rate and rr sample.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Rounds; each round runs every proxy once per workload, in turn. Medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Concurrent clients of the rate workload and connections of the rr workload.
    #[arg(long, default_value_t = 64)]
    clients: usize,

    /// Connections held open by the idle workload.
    #[arg(long, default_value_t = 10_000)]
    idle_conns: usize,

    /// apilb binary [default: target/release/apilb of this crate].
    #[arg(long)]
    apilb_bin: Option<PathBuf>,

    /// A YAML file appended at the top level of apilb's generated config.
    #[arg(long)]
    apilb_extra_config: Option<PathBuf>,

    /// Threads of each proxy: HAProxy's nbthread, nginx's worker_processes and apilb's
    /// workers (unless --apilb-workers says otherwise).
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// apilb's `workers:` (auto or a number) [default: --threads]; `none` leaves the key
    /// out, for binaries older than the per-core data plane.
    #[arg(long)]
    apilb_workers: Option<String>,

    /// HAProxy binary.
    #[arg(long, default_value = "haproxy")]
    haproxy_bin: PathBuf,

    /// nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx_bin: PathBuf,

    /// nginx stream module, loaded when the file exists.
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_stream_module.so")]
    nginx_stream_module: PathBuf,

    /// Markdown results file [default: benches/l4/results.md of this crate].
    #[arg(long)]
    results: Option<PathBuf>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,

    /// Internal: run as the backends process.
    #[arg(long, hide = true)]
    role_backends: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.role_backends {
        return match backend::main(BACKENDS) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("backends: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    common::run_until_interrupted(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let nofile = raise_nofile(NOFILE);
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bins = Bins {
        haproxy: args.haproxy_bin.clone(),
        nginx: args.nginx_bin.clone(),
        nginx_stream_module: args.nginx_stream_module.clone(),
        apilb: args
            .apilb_bin
            .clone()
            .unwrap_or_else(|| manifest.join("target/release/apilb")),
        apilb_extra: match &args.apilb_extra_config {
            Some(p) => {
                Some(std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?)
            }
            None => None,
        },
        nofile,
        threads: args.threads,
        apilb_workers: match args.apilb_workers.as_deref() {
            Some("none") => None,
            Some(w) => Some(w.to_owned()),
            None => Some(args.threads.to_string()),
        },
    };
    let workloads: Vec<Workload> = {
        let mut v: Vec<Workload> = args.workloads.iter().flatten().copied().collect();
        v.dedup();
        v
    };
    let mut proxies = Vec::new();
    for &p in &args.proxies {
        if proxies.contains(&p) {
            continue;
        }
        match bins.resolve(p) {
            Ok(_) => proxies.push(p),
            Err(why) => eprintln!("skipping {p}: {why}"),
        }
    }
    if proxies.is_empty() {
        bail!("no proxy to measure");
    }
    if args.rounds == 0 || args.clients == 0 {
        bail!("--rounds and --clients must be at least 1");
    }
    // A proxied connection costs the proxy 2 descriptors; keep a margin for listeners,
    // logs and the like. Without CAP_SYS_RESOURCE the hard limit may be below 20,000.
    let idle_cap = usize::try_from(nofile.saturating_sub(256) / 2).unwrap_or(usize::MAX);
    let idle_conns = if args.idle_conns > idle_cap {
        eprintln!(
            "warning: RLIMIT_NOFILE is {nofile}: idle connections lowered from {} to {idle_cap} \
             (each costs the proxy 2 descriptors)",
            args.idle_conns
        );
        idle_cap
    } else {
        args.idle_conns
    };
    let params = Params {
        duration: args.duration,
        clients: args.clients,
        idle_conns,
    };

    let (mut backends, backend_addrs) = spawn_backends()?;
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
        format!("versions: {}", versions(&bins, &proxies)),
        format!(
            "parameters: rounds {}, window {:?}, {} clients (rate, rr), {} idle connections, \
             {BACKENDS} backends, round-robin, RLIMIT_NOFILE {nofile}",
            args.rounds, args.duration, args.clients, idle_conns
        ),
        format!("proxies: {}", list(&proxies)),
        format!(
            "threads: HAProxy nbthread {t}, nginx worker_processes {t}, apilb workers {}",
            bins.apilb_workers
                .as_deref()
                .unwrap_or("(not set: the binary's default)"),
            t = args.threads
        ),
    ];
    if let Some(extra) = &bins.apilb_extra {
        header.push(format!(
            "apilb extra config: {}",
            extra.trim().replace('\n', "; ")
        ));
    }
    eprintln!("{}", header.join("\n"));

    let mut ports = PortPicker::new();
    let mut samples = Vec::new();
    let mut broken: Vec<ProxyKind> = Vec::new();
    for &w in &workloads {
        for round in 1..=args.rounds {
            for &p in &proxies {
                if broken.contains(&p) {
                    continue;
                }
                if let Some(status) = backends.exited() {
                    bail!("the backends process exited ({status})");
                }
                let port = ports.pick()?;
                let mut running = match proxy::start(p, &bins, &backend_addrs, port).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("{p}: cannot start: {e:#}\n{p}: left out of the rest of the run");
                        broken.push(p);
                        samples.push(Sample::failed(w, p, round, format!("{e:#}")));
                        continue;
                    }
                };
                let meter = Meter::new(running.pids(), backends.pid());
                let mut sample = match load::run(w, params, running.targets.clone(), &meter).await {
                    Ok(o) => Sample::from_outcome(w, p, round, o, meter.has_proxy()),
                    Err(e) => Sample::failed(w, p, round, format!("{e:#}")),
                };
                if let Some(status) = running.exited() {
                    // A crash mid-sample: keep what was measured, but say so loudly.
                    sample.errors += 1;
                    sample.note = Some(format!(
                        "{p} exited ({status}) during the sample; its output: {}",
                        running.output_tail()
                    ));
                }
                drop(running);
                eprintln!("{}", sample.summary());
                samples.push(sample);
            }
        }
    }
    if !broken.is_empty() {
        header.push(format!("failed to start (left out): {}", list(&broken)));
    }
    let text = report::render(&header, &proxies, args.rounds, &samples);
    let path = args
        .results
        .clone()
        .unwrap_or_else(|| manifest.join("benches/l4/results.md"));
    std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    writeln!(stdout, "(written to {})", path.display())?;
    Ok(())
}

/// Starts this binary again as the backends process and reads the ports it bound.
fn spawn_backends() -> anyhow::Result<(ChildGuard, Vec<SocketAddr>)> {
    let exe = std::env::current_exe().context("path of the bench binary")?;
    let child = Command::new(exe)
        .arg("--role-backends")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the backends process")?;
    let mut guard = ChildGuard::adopt("backends", child);
    let stdout = guard.child_mut().stdout.take().context("backends stdout")?;
    let mut line = String::new();
    // Bounded: the child prints one line at once, or exits (EOF).
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("read backend ports")?;
    let addrs: Vec<SocketAddr> = line
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok())
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .collect();
    if addrs.len() != BACKENDS {
        bail!("backends process reported {line:?}, expected {BACKENDS} ports");
    }
    Ok((guard, addrs))
}

/// Raises RLIMIT_NOFILE (soft and, as root, hard) towards `want`; returns the soft limit.
fn raise_nofile(want: u64) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_ok() {
        return want;
    }
    let fallback = hard.min(want);
    match setrlimit(Resource::RLIMIT_NOFILE, fallback, hard) {
        Ok(()) => {
            eprintln!("warning: RLIMIT_NOFILE only raised to {fallback} (wanted {want})");
            fallback
        }
        Err(e) => {
            eprintln!("warning: cannot raise RLIMIT_NOFILE ({e}); it stays {soft}");
            soft
        }
    }
}

fn list(proxies: &[ProxyKind]) -> String {
    proxies
        .iter()
        .map(|p| p.label())
        .collect::<Vec<_>>()
        .join(", ")
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

/// First line of each measured binary's version output.
fn versions(bins: &Bins, proxies: &[ProxyKind]) -> String {
    let mut out = Vec::new();
    let mut seen_apilb = false;
    for &p in proxies {
        let Ok(Some(bin)) = bins.resolve(p) else {
            continue;
        };
        let flag = match p {
            ProxyKind::Direct => continue,
            ProxyKind::Haproxy => "-v",
            ProxyKind::Nginx => "-v",
            ProxyKind::Apilb | ProxyKind::ApilbSplice | ProxyKind::ApilbCopy => {
                if seen_apilb {
                    continue;
                }
                seen_apilb = true;
                "--version"
            }
        };
        let v = crate::common::version(&bin, flag);
        out.push(v);
    }
    out.join("; ")
}
