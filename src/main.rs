//! The `apilb` binary: parse the command line, set up tracing and the runtime, call the
//! library, and map errors to exit codes (64 for bad configuration or input, 1 otherwise).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use apilb::cli::{Cli, Command, LogFormat};
use apilb::config::Config;
use apilb::control;
use apilb::metrics::Metrics;
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
        Command::Serve { config } => serve(config),
        Command::CheckConfig { file } => check_config(&file),
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
        let proxy = Proxy::start(config, metrics)?;
        tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "apilb serving");
        control::supervise(&proxy, &path, drain, controls).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `apilb check-config`: every problem on stderr and exit 64, or a summary and exit 0.
#[allow(clippy::print_stdout)]
fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(c) => {
            println!(
                "{}: ok ({} listener(s), {} backend(s), balance {:?})",
                path.display(),
                c.listen.len(),
                c.backends.len(),
                c.balance
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
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
