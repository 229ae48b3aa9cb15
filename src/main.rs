//! The `apilb` binary: parse the command line, set up tracing and the runtime, call the
//! library, and map errors to exit codes (64 for bad configuration or input, 1 otherwise).

use std::process::ExitCode;

use clap::Parser;

use apilb::cli::{Cli, Command, LogFormat};

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

fn serve(_config: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve: not built yet")
}

fn check_config(_file: &std::path::Path) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(EXIT_CONFIG))
}
