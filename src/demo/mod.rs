//! `apilb demo`: the whole system on loopback, with no root and no config. It issues a PKI
//! for a three-master demo cluster (the same code as `apilb issue`), starts three stand-in
//! apiservers in-process with the issued certificates, and puts the load balancer in front
//! with mutual-TLS `/readyz` checks; then it lets the user stop, drain, hang and restart the
//! stand-ins and watch the load balancer react.

mod hint;
pub mod standin;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::admin;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::control::{Control, Server};
use crate::pki;
use standin::{Mode, Standin};

/// Default load balancer address of the demo.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6443);
/// Default metrics address of the demo.
pub const DEFAULT_METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9441);
/// The stand-in masters listen on 127.0.0.11-13 at the apiserver port.
const MASTERS: [(&str, [u8; 4]); 3] = [
    ("master-1", [127, 0, 0, 11]),
    ("master-2", [127, 0, 0, 12]),
    ("master-3", [127, 0, 0, 13]),
];
const APISERVER_PORT: u16 = 6443;
/// The demo's LB host name in the issued tree.
const LB_HOST: &str = "lb";

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the PKI and the LB config go; a temporary directory (removed at the end) if
    /// `None`.
    pub dir: Option<PathBuf>,
    /// The LB address; when it is the default and busy, a free port is used instead.
    pub listen: SocketAddr,
    /// The metrics address; when it is the default and busy, a free port is used instead.
    pub metrics: SocketAddr,
    /// Read commands from standard input.
    pub interactive: bool,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A working directory or port could not be had.
    #[error("{0}")]
    Setup(String),
    /// Issuing the PKI failed.
    #[error("issuing the demo PKI in {}: {source}", dir.display())]
    Pki {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: pki::Error,
    },
    /// A stand-in apiserver could not start.
    #[error(transparent)]
    Standin(#[from] standin::Error),
    /// The load balancer could not start.
    #[error("starting the load balancer")]
    Start(#[source] crate::control::Error),
    /// Standard output could not be written.
    #[error("writing to standard output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// Whether bad input (files, flags) is at fault rather than the runtime.
    pub fn is_config(&self) -> bool {
        match self {
            Error::Standin(standin::Error::Pki { .. }) => true,
            Error::Start(e) => e.is_config(),
            _ => false,
        }
    }
}

/// Run the demo until `shutdown` resolves (Ctrl-C) or the user types `quit`.
pub async fn run(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let (dir, _temp) = match &opts.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("apilb-demo-")
                .tempdir()
                .map_err(|e| Error::Setup(format!("creating a temporary directory: {e}")))?;
            (t.path().to_owned(), Some(t))
        }
    };
    let listen = pick_port(opts.listen, DEFAULT_LISTEN, "--listen")?;
    let metrics_addr = pick_port(opts.metrics, DEFAULT_METRICS, "--metrics-address")?;

    // 1. The PKI, exactly as `apilb issue` makes it.
    let cluster = Cluster::from_yaml(&cluster_yaml(listen))
        .map_err(|e| Error::Setup(format!("the demo cluster description: {e}")))?;
    let report = pki::issue(
        &cluster,
        &dir,
        pki::Options {
            renew: false,
            now: time::OffsetDateTime::now_utc(),
        },
    )
    .map_err(|source| Error::Pki {
        dir: dir.clone(),
        source,
    })?;

    // 2. Three stand-in apiservers with the issued certificates.
    let mut masters = Vec::new();
    for (name, ip) in MASTERS {
        let addr = SocketAddr::from((ip, APISERVER_PORT));
        let s = Arc::new(Standin::new(name, addr, &dir.join(name).join("pki"))?);
        s.start().await?;
        masters.push(s);
    }

    // 3. The load balancer in front, with its config written beside the PKI.
    let lb_yaml = lb_yaml(listen, metrics_addr, &dir.join(LB_HOST).join("pki"));
    let lb_path = dir.join(LB_HOST).join("apilb.yaml");
    std::fs::write(&lb_path, &lb_yaml)
        .map_err(|e| Error::Setup(format!("writing {}: {e}", lb_path.display())))?;
    let config = Config::from_yaml(&lb_yaml, &lb_path.display().to_string())
        .map_err(|e| Error::Setup(format!("the demo LB config: {e}")))?;
    // The same process wiring as `apilb serve`; the demo talks to it over its endpoint.
    let server = Server::start(config, &lb_path)
        .await
        .map_err(Error::Start)?;
    let (controls, controls_rx) = mpsc::channel(4);
    let lb = server.run(controls_rx);
    tokio::pin!(lb);

    let mut out = std::io::stdout();
    writeln!(
        out,
        "{}",
        banner(
            &dir,
            listen,
            metrics_addr,
            report.rows.len(),
            opts.dir.is_none()
        )
    )?;
    out.flush()?;

    // 4. Commands until Ctrl-C or quit.
    tokio::pin!(shutdown);
    let mut lines = opts
        .interactive
        .then(|| BufReader::new(tokio::io::stdin()).lines());
    let mut stopped_early = None;
    loop {
        let line = tokio::select! {
            () = &mut shutdown => break,
            l = next_line(&mut lines) => l,
            report = &mut lb => {
                stopped_early = Some(report);
                break;
            }
        };
        let Some(line) = line else {
            // Standard input closed: keep running until Ctrl-C.
            lines = None;
            continue;
        };
        let reply = command(line.trim(), &masters, metrics_addr).await;
        match reply {
            Reply::Quit => break,
            Reply::Text(t) => {
                writeln!(out, "{t}")?;
                out.flush()?;
            }
        }
    }

    writeln!(out, "stopping: draining the load balancer")?;
    let report = match stopped_early {
        Some(r) => r,
        None => {
            // The receiver lives in `lb`, which runs until it has seen this.
            let _ = controls.send(Control::Shutdown).await;
            lb.await
        }
    };
    for m in &masters {
        m.stop();
    }
    writeln!(
        out,
        "stopped ({} connections open at the end, {} cut){}",
        report.open_at_start,
        report.cut,
        if opts.dir.is_none() {
            format!("; removed {}", dir.display())
        } else {
            String::new()
        }
    )?;
    Ok(())
}

async fn next_line(
    lines: &mut Option<tokio::io::Lines<BufReader<tokio::io::Stdin>>>,
) -> Option<String> {
    match lines {
        Some(l) => l.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// `wanted` if it can be bound; a free port on the same IP if `wanted` is the default and
/// busy; an error otherwise.
fn pick_port(wanted: SocketAddr, default: SocketAddr, flag: &str) -> Result<SocketAddr, Error> {
    match std::net::TcpListener::bind(wanted) {
        Ok(_) => Ok(wanted),
        Err(e) if wanted == default => {
            let any = std::net::TcpListener::bind(SocketAddr::new(wanted.ip(), 0))
                .and_then(|l| l.local_addr())
                .map_err(|e2| {
                    Error::Setup(format!("{wanted} is busy ({e}) and no free port: {e2}"))
                })?;
            Ok(any)
        }
        Err(e) => Err(Error::Setup(format!("{flag} {wanted}: {e}"))),
    }
}

fn cluster_yaml(lb: SocketAddr) -> String {
    let masters: Vec<String> = MASTERS
        .iter()
        .map(|(name, ip)| format!("  - {{name: {name}, address: {}}}\n", Ipv4Addr::from(*ip)))
        .collect();
    format!(
        "clusterName: apilb-demo\n\
         kubernetesVersion: v1.31.2\n\
         controlPlaneEndpoint: \"{lb}\"\n\
         loadBalancer:\n  vip: {ip}\n  hosts: [{{name: {LB_HOST}, address: 127.0.0.2}}]\n\
         masters:\n{masters}\
         etcd: {{topology: stacked}}\n\
         pki: {{encryptionAlgorithm: ECDSA-P256}}\n",
        ip = lb.ip(),
        masters = masters.concat()
    )
}

fn lb_yaml(listen: SocketAddr, metrics: SocketAddr, pki: &Path) -> String {
    let backends: Vec<String> = MASTERS
        .iter()
        .map(|(name, ip)| {
            format!(
                "  - {{name: {name}, address: \"{}\"}}\n",
                SocketAddr::from((*ip, APISERVER_PORT))
            )
        })
        .collect();
    format!(
        "# The LB config `apilb demo` runs (check it: apilb check-config {pki_parent}/apilb.yaml).\n\
         listen: [\"{listen}\"]\n\
         backends:\n{backends}\
         timeouts: {{drain: 2s}}\n\
         health:\n  kind: https\n  path: /readyz\n  livePath: /livez\n  interval: 1s\n  fastInterval: 250ms\n  timeout: 500ms\n  slowStart: 10s\n  onDown: close\n  tls:\n    ca: \"{ca}\"\n    cert: \"{cert}\"\n    key: \"{key}\"\n\
         metrics:\n  listen: \"{metrics}\"\n",
        pki_parent = pki.parent().unwrap_or(pki).display(),
        backends = backends.concat(),
        ca = pki.join("ca.crt").display(),
        cert = pki.join("apilb-health.crt").display(),
        key = pki.join("apilb-health.key").display(),
    )
}

fn banner(dir: &Path, listen: SocketAddr, metrics: SocketAddr, files: usize, temp: bool) -> String {
    let d = dir.display();
    let keep = if temp {
        "; removed at exit, --dir keeps it"
    } else {
        ""
    };
    let kubectl = format!("kubectl --kubeconfig {d}/master-1/admin.conf get --raw");
    let apilb = hint::apilb_command();
    [
        String::new(),
        "apilb demo: a load balancer in front of three stand-in apiservers, all on loopback."
            .to_owned(),
        String::new(),
        format!("  PKI             {d} ({files} files, as `apilb issue` writes them{keep})"),
        format!("  load balancer   https://{listen}  (config: {d}/{LB_HOST}/apilb.yaml)"),
        "  apiservers      master-1 127.0.0.11:6443, master-2 127.0.0.12:6443, master-3 127.0.0.13:6443".to_owned(),
        format!("  health checks   GET /readyz (and /livez to tell a drain) over mutual TLS with {d}/{LB_HOST}/pki/apilb-health.crt"),
        format!("  metrics         http://{metrics}/metrics"),
        String::new(),
        "Try, in another terminal:".to_owned(),
        format!("  {kubectl} /readyz"),
        format!("  {kubectl} /version"),
        format!("  {kubectl} /watch        # a stream that stays open, like a watch"),
        format!("  curl -s http://{metrics}/metrics | grep apilb_backend_state"),
        format!("  {apilb} status --metrics-address {metrics}"),
        String::new(),
        HELP.to_owned(),
        "demo ready".to_owned(),
    ]
    .join("\n")
}

const HELP: &str = "Commands (type them here):
  stop N     kill stand-in N (1-3 or master-N)      start N    start it again
  drain N    graceful shutdown: readyz fails, livez passes, it exits after 10s
  hang N     it accepts connections and never answers
  status     the load balancer's view        help     this        quit    stop everything
Ctrl-C stops everything too.";

enum Reply {
    Text(String),
    Quit,
}

async fn command(line: &str, masters: &[Arc<Standin>], metrics: SocketAddr) -> Reply {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let target = words.next();
    let pick = |t: Option<&str>| -> Result<&Arc<Standin>, String> {
        let t = t.ok_or("which master? 1, 2 or 3")?;
        let name = if t.starts_with("master-") {
            t.to_owned()
        } else {
            format!("master-{t}")
        };
        masters
            .iter()
            .find(|m| m.name() == name)
            .ok_or(format!("no master {t:?}: use 1, 2 or 3"))
    };
    let text = match verb {
        "" => return Reply::Text(String::new()),
        "quit" | "exit" | "q" => return Reply::Quit,
        "help" | "h" | "?" => HELP.to_owned(),
        "status" | "s" => status_text(masters, metrics).await,
        "stop" | "start" | "drain" | "hang" => match pick(target) {
            Err(e) => e,
            Ok(m) => match verb {
                "stop" => {
                    m.stop();
                    format!(
                        "{}: stopped (like kill -9); the load balancer marks it down",
                        m.name()
                    )
                }
                "start" => match m.start().await {
                    Ok(()) => format!(
                        "{}: started; up after 2 passing checks, then ramped over slow start",
                        m.name()
                    ),
                    Err(e) => format!("{}: {e}", m.name()),
                },
                "drain" => {
                    m.drain();
                    format!(
                        "{}: shutting down gracefully: readyz fails, livez passes; exits in {}s",
                        m.name(),
                        standin::DRAIN_DELAY.as_secs()
                    )
                }
                _ => {
                    m.hang();
                    format!("{}: hung: accepts connections, never answers", m.name())
                }
            },
        },
        other => format!("unknown command {other:?}\n{HELP}"),
    };
    Reply::Text(text)
}

async fn status_text(masters: &[Arc<Standin>], metrics: SocketAddr) -> String {
    let mut s = match admin::fetch_status(metrics).await {
        Ok(status) => admin::status_table(&status),
        Err(e) => format!("{e}\n"),
    };
    s.push_str("\nstand-ins: ");
    let parts: Vec<String> = masters
        .iter()
        .map(|m| {
            let mode = match m.mode() {
                Mode::Stopped => "stopped",
                Mode::Serving => "serving",
                Mode::Draining => "draining",
                Mode::Hung => "hung",
            };
            format!("{} {mode} ({} requests)", m.name(), m.requests())
        })
        .collect();
    s.push_str(&parts.join(", "));
    s
}

/// `apilb demo-apiserver` (hidden): one stand-in apiserver until SIGTERM; SIGUSR1 drains it
/// (readyz fails, livez passes) and it returns once the drain has stopped it.
pub async fn serve_standin(name: &str, listen: SocketAddr, pki: &Path) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let standin = Arc::new(Standin::new(name, listen, pki)?);
    let signals =
        |kind| signal(kind).map_err(|e| Error::Setup(format!("installing signal handlers: {e}")));
    let mut term = signals(SignalKind::terminate())?;
    let mut usr1 = signals(SignalKind::user_defined1())?;
    standin.start().await?;
    tracing::info!(name, address = %listen, "stand-in apiserver serving");
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(name, "SIGTERM: stopping");
                standin.stop();
                return Ok(());
            }
            _ = usr1.recv() => {
                tracing::info!(name, delay = %humantime::format_duration(standin::DRAIN_DELAY), "SIGUSR1: draining (readyz fails, livez passes), then stopping");
                standin.drain();
            }
            // The stand-in's mode is a plain atomic: look at it now and then.
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if standin.mode() == Mode::Stopped {
                    tracing::info!(name, "drained: stopped");
                    return Ok(());
                }
            }
        }
    }
}
