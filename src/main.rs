//! The `apilb` binary: parse the command line, set up tracing and the runtime, call the
//! library, and map errors to exit codes (64 for bad configuration or input, 1 otherwise).

use std::process::ExitCode;

use clap::Parser;

use apilb::cli::{CertsCommand, Cli, Command, LogFormat, TokenCommand};

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
        Command::Issue {
            cluster,
            out,
            renew,
        } => pki_cmd::issue(&cluster, &out, renew),
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

fn serve(_config: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve: not built yet")
}

fn check_config(_file: &std::path::Path) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(EXIT_CONFIG))
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
            Err(e) => return report(&e, EXIT_CONFIG),
        };
        let opts = pki::Options { renew, now: now() };
        match pki::issue(&cluster, dir, opts) {
            Ok(r) => out(&r.to_string()),
            Err(e) => pki_fail(&e),
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
