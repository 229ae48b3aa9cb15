//! The `apilb` binary: parse the command line, set up tracing and the runtime, call the
//! library, and map errors to exit codes (64 for bad configuration or input, 1 otherwise).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use apilb::admin::{self, AdminState};
use apilb::cli::{BackendAction, CertsCommand, Cli, Command, LogFormat, TokenCommand};
use apilb::config::Config;
use apilb::control;
use apilb::metrics::{Metrics, VipMetrics};
use apilb::proxy::Proxy;

/// Exit code for configuration and usage errors (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for runtime failures.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, cli.log_filter.as_deref());
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => serve(config.path()),
        Command::CheckConfig { file } => check_config(&file.path()),
        Command::Demo {
            dir,
            listen,
            metrics_address,
            no_input,
        } => demo(apilb::demo::DemoOptions {
            dir,
            listen,
            metrics: metrics_address,
            interactive: !no_input,
        }),
        Command::DemoApiserver { listen, pki, name } => demo_apiserver(listen, &pki, &name),
        Command::Status {
            metrics_address,
            json,
        } => client(status(metrics_address, json)),
        Command::Backend {
            action,
            metrics_address,
        } => client(backend(metrics_address, action)),
        Command::Issue {
            cluster,
            out,
            renew,
        } => pki_cmd::issue(&cluster, &out, renew),
        Command::Bootstrap {
            cluster,
            out,
            kubeadm_api,
            token,
            certificate_key,
            renew,
            overwrite,
        } => pki_cmd::bootstrap(
            &cluster,
            &out,
            apilb::bootstrap::Options {
                api: kubeadm_api.into(),
                token,
                certificate_key,
                renew,
                overwrite,
                now: time::OffsetDateTime::now_utc(),
            },
        ),
        Command::Certs {
            command: CertsCommand::CheckExpiration { dir },
        } => pki_cmd::check_expiration(&dir),
        Command::Token {
            command: TokenCommand::Create { ttl },
        } => pki_cmd::token_create(ttl),
        Command::Token {
            command: TokenCommand::SecretManifest { token, ttl },
        } => pki_cmd::token_secret_manifest(&token, ttl),
        Command::CaCertHash { file } => pki_cmd::ca_cert_hash(&file),
        Command::CertificateKey => pki_cmd::certificate_key(),
    }
}

fn init_tracing(format: LogFormat, filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|e| {
            eprintln!("warning: bad --log filter {f:?} ({e}); using `info`");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `apilb serve`: check the config, bind, then run until a stop signal.
fn serve(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).context("registering metrics")?;
        let controls = control::signals().context("installing signal handlers")?;
        let drain = config.timeouts.drain;
        let metrics_listen = config.metrics.as_ref().map(|m| m.listen);
        let vip_config = config.vip.clone();
        // Host checks (interface, subnets) before anything is bound.
        if let Some(v) = &vip_config {
            if let Err(e) = apilb::vip::task::check_host(v).await {
                eprintln!("{}: {e}", path.display());
                return Ok(ExitCode::from(if e.is_config() { EXIT_CONFIG } else { EXIT_FAILURE }));
            }
        }
        // The metrics address is bound before the proxy and the VIP start, so a busy port
        // fails the start with nothing to undo.
        let admin_listener = match metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?,
            ),
            None => None,
        };
        let proxy = match Proxy::start(config, metrics) {
            Ok(p) => Arc::new(p),
            Err(e @ apilb::proxy::Error::HealthTls(_)) => {
                eprintln!("{}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            Err(e) => return Err(e.into()),
        };
        let vip = match vip_config {
            Some(v) => {
                let vip_metrics = VipMetrics::new(&registry).context("registering VIP metrics")?;
                let p = Arc::clone(&proxy);
                let healthy: apilb::vip::task::HealthyCount = Arc::new(move || {
                    p.backends()
                        .snapshot()
                        .iter()
                        .filter(|b| b.state() == apilb::health::state::State::Up)
                        .count()
                });
                match apilb::vip::Vip::start(v, healthy, vip_metrics).await {
                    Ok(vip) => Some(Arc::new(vip)),
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        proxy.shutdown(std::time::Duration::ZERO).await;
                        return Ok(ExitCode::from(if e.is_config() { EXIT_CONFIG } else { EXIT_FAILURE }));
                    }
                }
            }
            None => None,
        };
        let stop_admin = CancellationToken::new();
        let admin_task = match admin_listener {
            Some(listener) => {
                let state = Arc::new(AdminState {
                    proxy: Arc::clone(&proxy),
                    registry,
                    vip: vip.clone(),
                });
                Some(tokio::spawn(admin::serve(listener, state, stop_admin.clone())))
            }
            None => None,
        };
        tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "apilb serving");
        control::supervise(&proxy, vip.as_deref(), &path, drain, controls).await;
        stop_admin.cancel();
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `apilb check-config`: every problem on stderr and exit 64, or a summary and exit 0.
#[allow(clippy::print_stdout)]
fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let report = apilb::config::check(path);
    if report.is_ok() {
        println!("{report}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{report}");
        Ok(ExitCode::from(EXIT_CONFIG))
    }
}

/// `apilb demo`: until Ctrl-C (SIGINT) or SIGTERM.
fn demo(opts: apilb::demo::DemoOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing signal handlers")?;
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        apilb::demo::run(opts, stop)
            .await
            .map_err(anyhow::Error::from)
    });
    // A read of standard input may still be pending in a blocking thread: do not wait for it.
    runtime.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

/// `apilb demo-apiserver` (hidden): one stand-in apiserver until SIGTERM (exit 0); SIGUSR1
/// drains it, and the process exits when the drain has stopped it.
fn demo_apiserver(listen: SocketAddr, pki: &Path, name: &str) -> anyhow::Result<ExitCode> {
    use apilb::demo::standin::{DRAIN_DELAY, Mode, Standin};
    use tokio::signal::unix::{SignalKind, signal};
    let standin = match Standin::new(name, listen, pki) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("installing signal handlers")?;
        let mut usr1 = signal(SignalKind::user_defined1()).context("installing signal handlers")?;
        standin.start().await?;
        tracing::info!(name, address = %listen, "stand-in apiserver serving");
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!(name, "SIGTERM: stopping");
                    standin.stop();
                    return Ok(ExitCode::SUCCESS);
                }
                _ = usr1.recv() => {
                    tracing::info!(name, delay = ?DRAIN_DELAY, "SIGUSR1: draining (readyz fails, livez passes), then stopping");
                    standin.drain();
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    if standin.mode() == Mode::Stopped {
                        tracing::info!(name, "drained: stopped");
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
    })
}

/// Run a client command on a small runtime.
fn client(
    fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}

/// `apilb status`.
#[allow(clippy::print_stdout)]
async fn status(address: SocketAddr, json: bool) -> anyhow::Result<ExitCode> {
    let s = admin::fetch_status(address).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", admin::status_table(&s));
    }
    Ok(ExitCode::SUCCESS)
}

/// `apilb backend drain|maint|enable NAME`.
#[allow(clippy::print_stdout)]
async fn backend(address: SocketAddr, action: BackendAction) -> anyhow::Result<ExitCode> {
    let (name, verb, wait) = match &action {
        BackendAction::Drain {
            name,
            wait,
            deadline,
        } => (name, "drain", wait.then_some(*deadline)),
        BackendAction::Maint { name } => (name, "maint", None),
        BackendAction::Enable { name } => (name, "enable", None),
    };
    let changed = admin::set_backend(address, name, verb).await?;
    for b in &changed {
        println!(
            "{}: {} ({} active connections)",
            b.name, b.state, b.active_connections
        );
    }
    let Some(deadline) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let until = tokio::time::Instant::now() + deadline;
    let mut last: usize = changed.iter().map(|b| b.active_connections).sum();
    loop {
        if last == 0 {
            println!("{name}: drained");
            return Ok(ExitCode::SUCCESS);
        }
        if tokio::time::Instant::now() >= until {
            println!(
                "{name}: {last} connections still open after {}",
                humantime::format_duration(deadline)
            );
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let s = admin::fetch_status(address).await?;
        let endpoints: Vec<_> = s
            .backends
            .iter()
            .filter(|b| changed.iter().any(|c| c.name == b.name))
            .collect();
        if endpoints.is_empty() {
            println!("{name}: removed from the config");
            return Ok(ExitCode::SUCCESS);
        }
        let now: usize = endpoints.iter().map(|b| b.active_connections).sum();
        if now != last {
            println!("{name}: {now} active connections");
        }
        last = now;
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: every proxied connection needs two
/// descriptors (and a pipe pair while splicing), far past the usual soft limit of 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}

/// The PKI and token commands: call the library, print results on stdout, problems on stderr.
mod pki_cmd {
    use std::io::Write as _;
    use std::path::Path;
    use std::process::ExitCode;
    use std::time::Duration;

    use apilb::cluster::Cluster;
    use apilb::{pki, token};

    use super::{EXIT_CONFIG, EXIT_FAILURE};

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    /// Print `err` and its sources on stderr once, as `a: b: c`.
    fn report(err: &(dyn std::error::Error + 'static), code: u8) -> anyhow::Result<ExitCode> {
        let mut msg = err.to_string();
        let mut src = err.source();
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        eprintln!("error: {msg}");
        Ok(ExitCode::from(code))
    }

    fn out(text: &str) -> anyhow::Result<ExitCode> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(ExitCode::SUCCESS)
    }

    /// A cluster description that cannot be used: its problems as check-config prints the
    /// LB config's, one `file:line:col: key: problem` per line.
    fn cluster_fail(e: &apilb::cluster::Error) -> anyhow::Result<ExitCode> {
        eprintln!("{e}");
        Ok(ExitCode::from(EXIT_CONFIG))
    }

    fn pki_fail(e: &pki::Error) -> anyhow::Result<ExitCode> {
        report(
            e,
            if e.is_input() {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            },
        )
    }

    pub(super) fn issue(cluster: &Path, dir: &Path, renew: bool) -> anyhow::Result<ExitCode> {
        let cluster = match Cluster::load(cluster) {
            Ok(c) => c,
            Err(e) => return cluster_fail(&e),
        };
        let opts = pki::Options { renew, now: now() };
        match pki::issue(&cluster, dir, opts) {
            Ok(r) => out(&r.to_string()),
            Err(e) => pki_fail(&e),
        }
    }

    pub(super) fn bootstrap(
        cluster: &Path,
        dir: &Path,
        opts: apilb::bootstrap::Options,
    ) -> anyhow::Result<ExitCode> {
        let cluster = match Cluster::load(cluster) {
            Ok(c) => c,
            Err(e) => return cluster_fail(&e),
        };
        match apilb::bootstrap::bootstrap(&cluster, dir, &opts) {
            Ok(r) => out(&r.to_string()),
            Err(e) => report(
                &e,
                if e.is_input() {
                    EXIT_CONFIG
                } else {
                    EXIT_FAILURE
                },
            ),
        }
    }

    pub(super) fn check_expiration(dir: &Path) -> anyhow::Result<ExitCode> {
        match pki::check_expiration(dir, now()) {
            Ok(r) => out(&r.to_string()),
            Err(e) => pki_fail(&e),
        }
    }

    pub(super) fn ca_cert_hash(file: &Path) -> anyhow::Result<ExitCode> {
        match pki::ca_cert_hash(file) {
            Ok(h) => out(&format!("{h}\n")),
            Err(e) => pki_fail(&e),
        }
    }

    pub(super) fn token_create(ttl: Duration) -> anyhow::Result<ExitCode> {
        let t = token::Token::generate()?;
        let expires = time::Duration::try_from(ttl)
            .ok()
            .and_then(|d| now().checked_add(d))
            .filter(|_| !ttl.is_zero());
        match expires {
            Some(at) => {
                tracing::info!(token_id = t.id(), %at, "token created; pass the same --ttl to `token secret-manifest`")
            }
            None => tracing::info!(token_id = t.id(), "token created without expiry"),
        }
        out(&format!("{t}\n"))
    }

    pub(super) fn token_secret_manifest(token: &str, ttl: Duration) -> anyhow::Result<ExitCode> {
        let t: token::Token = match token.parse() {
            Ok(t) => t,
            Err(e) => return report(&e, EXIT_CONFIG),
        };
        out(&t.secret_manifest(ttl, now())?)
    }

    pub(super) fn certificate_key() -> anyhow::Result<ExitCode> {
        out(&format!("{}\n", token::certificate_key()?))
    }
}
