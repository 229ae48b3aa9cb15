//! What each subcommand does, for `main.rs`: [`run`] takes a parsed [`Command`] and returns
//! `Ok` or a [`Failure`] that says what to print on stderr and which exit code to use (64
//! for bad configuration or input, 1 for runtime failures). Results meant for people and
//! scripts go to stdout here; logs go through tracing.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::admin::{self, DrainEnd};
use crate::cli::{BackendAction, CertsCommand, Command, TokenCommand};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::control::{self, Signals, off_runtime};
use crate::errors::chain;
use crate::{pki, token};

/// Exit code for configuration and usage errors (sysexits EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: u8 = 1;

/// How a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print on stderr, ending in a newline.
    pub message: String,
}

impl Failure {
    /// A bad config or input, printed as it is (problem lists carry their own positions).
    fn config(message: impl std::fmt::Display) -> Self {
        Self {
            code: EXIT_CONFIG,
            message: format!("{message}\n"),
        }
    }

    /// `err` and its sources once, as `error: a: b: c`.
    fn error(err: &(dyn std::error::Error + 'static), code: u8) -> Self {
        Self {
            code,
            message: format!("error: {}\n", chain(err)),
        }
    }
}

/// Run one command to its end.
pub async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config } => serve(&config.path()).await,
        Command::CheckConfig { file } => off_runtime(move || check_config(&file.path())).await,
        Command::Announce {
            withdraw: _,
            config,
        } => announce_withdraw(&config.path()).await,
        Command::Demo {
            dir,
            listen,
            metrics_address,
            no_input,
        } => {
            demo(crate::demo::DemoOptions {
                dir,
                listen,
                metrics: metrics_address,
                interactive: !no_input,
            })
            .await
        }
        Command::DemoApiserver { listen, pki, name } => {
            crate::demo::serve_standin(&name, listen, &pki)
                .await
                .map_err(|e| {
                    let code = if e.is_config() {
                        EXIT_CONFIG
                    } else {
                        EXIT_FAILURE
                    };
                    Failure::error(&e, code)
                })
        }
        Command::Status {
            metrics_address,
            tls,
            json,
        } => status(endpoint(metrics_address, &tls)?, json).await,
        Command::Backend {
            action,
            metrics_address,
            tls,
        } => backend(endpoint(metrics_address, &tls)?, action).await,
        Command::Issue {
            cluster,
            out,
            renew,
        } => {
            off_runtime(move || {
                let cluster = load_cluster(&cluster)?;
                let opts = pki::Options { renew, now: now() };
                let r = pki::issue(&cluster, &out, opts).map_err(|e| pki_failure(&e))?;
                print(&r.to_string())
            })
            .await
        }
        Command::Bootstrap {
            cluster,
            out,
            kubeadm_api,
            token,
            certificate_key,
            renew,
            overwrite,
        } => {
            off_runtime(move || {
                let cluster = load_cluster(&cluster)?;
                let opts = crate::bootstrap::Options {
                    api: kubeadm_api.into(),
                    token,
                    certificate_key,
                    renew,
                    overwrite,
                    now: now(),
                };
                let r = crate::bootstrap::bootstrap(&cluster, &out, &opts).map_err(|e| {
                    let code = if e.is_input() {
                        EXIT_CONFIG
                    } else {
                        EXIT_FAILURE
                    };
                    Failure::error(&e, code)
                })?;
                print(&r.to_string())
            })
            .await
        }
        Command::Certs {
            command: CertsCommand::CheckExpiration { dir },
        } => {
            off_runtime(move || {
                let r = pki::check_expiration(&dir, now()).map_err(|e| pki_failure(&e))?;
                print(&r.to_string())
            })
            .await
        }
        Command::Token {
            command: TokenCommand::Create { ttl },
        } => token_create(ttl),
        Command::Token {
            command: TokenCommand::SecretManifest { token, ttl },
        } => {
            let t: token::Token = token
                .parse()
                .map_err(|e: token::Error| Failure::error(&e, EXIT_CONFIG))?;
            let manifest = t
                .secret_manifest(ttl, now())
                .map_err(|e| Failure::error(&e, EXIT_FAILURE))?;
            print(&manifest)
        }
        Command::CaCertHash { file } => {
            off_runtime(move || {
                let h = pki::ca_cert_hash(&file).map_err(|e| pki_failure(&e))?;
                print(&format!("{h}\n"))
            })
            .await
        }
        Command::CertificateKey => {
            let k = token::certificate_key().map_err(|e| Failure::error(&e, EXIT_FAILURE))?;
            print(&format!("{k}\n"))
        }
        Command::Completions { shell } => {
            let script = crate::assets::completion_script(shell);
            print(&String::from_utf8_lossy(&script))
        }
        Command::GenerateAssets { dir } => {
            off_runtime(move || {
                let written =
                    crate::assets::generate(&dir).map_err(|e| Failure::error(&e, EXIT_FAILURE))?;
                print(&written.to_string())
            })
            .await
        }
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::error(&e, EXIT_FAILURE))
}

fn pki_failure(e: &pki::Error) -> Failure {
    Failure::error(
        e,
        if e.is_input() {
            EXIT_CONFIG
        } else {
            EXIT_FAILURE
        },
    )
}

/// A cluster description that cannot be used fails like check-config: one
/// `file:line:col: key: problem` per line.
fn load_cluster(path: &Path) -> Result<Cluster, Failure> {
    Cluster::load(path).map_err(Failure::config)
}

/// `apilb serve`: check the config, start every part, run until a stop signal.
async fn serve(path: &Path) -> Result<(), Failure> {
    let p = path.to_owned();
    let config = off_runtime(move || Config::load(&p))
        .await
        .map_err(Failure::config)?;
    let signals =
        Signals::new().map_err(|e| Failure::error(&control::Error::Signals(e), EXIT_FAILURE))?;
    match control::run(config, path, signals).await {
        Ok(_) => Ok(()),
        Err(e @ control::Error::HealthTls(_)) => {
            // Report them as check-config does, each at the key that names the file (the
            // file was just read; if it changed meanwhile, report what serve saw).
            let p = path.to_owned();
            let report = off_runtime(move || crate::config::check(&p)).await;
            Err(if report.is_ok() {
                Failure::config(format!("{}: {e}", path.display()))
            } else {
                Failure::config(report)
            })
        }
        Err(e @ (control::Error::Vip(_) | control::Error::Announce(_))) => Err(Failure {
            code: if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            },
            message: format!("{}: {}\n", path.display(), chain(&e)),
        }),
        Err(e) => Err(Failure::error(&e, EXIT_FAILURE)),
    }
}

/// `apilb announce --withdraw`: delete every route of the config's announce table and
/// protocol; a config without an `announce` section has none.
async fn announce_withdraw(path: &Path) -> Result<(), Failure> {
    let p = path.to_owned();
    let config = off_runtime(move || Config::load(&p))
        .await
        .map_err(Failure::config)?;
    let Some(a) = config.announce else {
        return print(&format!(
            "{}: no announce section: no routes to withdraw\n",
            path.display()
        ));
    };
    match crate::announce::withdraw(&a).await {
        Ok(n) => print(&format!(
            "withdrew {n} route(s) from table {} proto {}\n",
            a.table, a.protocol
        )),
        Err(e) => Err(Failure {
            code: if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            },
            message: format!("{}: {}\n", path.display(), chain(&e)),
        }),
    }
}

/// `apilb check-config`: every problem on stderr and exit 64, or a summary and exit 0.
fn check_config(path: &Path) -> Result<(), Failure> {
    let report = crate::config::check(path);
    if report.is_ok() {
        print(&format!("{report}\n"))
    } else {
        Err(Failure::config(report))
    }
}

/// `apilb demo`: until Ctrl-C (SIGINT), SIGTERM or `quit`.
async fn demo(opts: crate::demo::DemoOptions) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::error(&control::Error::Signals(e), EXIT_FAILURE))?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    crate::demo::run(opts, stop).await.map_err(|e| {
        let code = if e.is_config() {
            EXIT_CONFIG
        } else {
            EXIT_FAILURE
        };
        Failure::error(&e, code)
    })
}

/// The endpoint `apilb status` and `apilb backend` talk to; bad TLS files are a usage error.
fn endpoint(
    url: admin::EndpointUrl,
    tls: &crate::cli::AdminTlsArgs,
) -> Result<admin::Endpoint, Failure> {
    admin::Endpoint::new(url, &tls.files()).map_err(|e| Failure::error(&e, EXIT_CONFIG))
}

/// `apilb status`.
async fn status(address: admin::Endpoint, json: bool) -> Result<(), Failure> {
    let s = admin::fetch_status(address)
        .await
        .map_err(|e| Failure::error(&e, EXIT_FAILURE))?;
    if json {
        let text =
            serde_json::to_string_pretty(&s).map_err(|e| Failure::error(&e, EXIT_FAILURE))?;
        print(&format!("{text}\n"))
    } else {
        print(&admin::status_table(&s))
    }
}

/// `apilb backend drain|maint|enable NAME [--wait]`, `apilb backend rebalance`.
async fn backend(address: admin::Endpoint, action: BackendAction) -> Result<(), Failure> {
    let fail = |e: admin::ClientError| Failure::error(&e, EXIT_FAILURE);
    let (name, verb, wait) = match &action {
        BackendAction::Rebalance => {
            let s = admin::rebalance(&address).await.map_err(fail)?;
            return print(&format!(
                "rebalance requested (was {}; skew {:.2}, {} connections above their share)\n",
                s.state, s.skew, s.excess
            ));
        }
        BackendAction::Drain {
            name,
            wait,
            deadline,
        } => (name, "drain", wait.then_some(*deadline)),
        BackendAction::Maint { name } => (name, "maint", None),
        BackendAction::Enable { name } => (name, "enable", None),
    };
    let changed = admin::set_backend(address.clone(), name, verb)
        .await
        .map_err(fail)?;
    for b in &changed {
        print(&format!(
            "{}: {} ({} active connections)\n",
            b.name, b.state, b.active_connections
        ))?;
    }
    let Some(deadline) = wait else {
        return Ok(());
    };
    let end = admin::wait_drained(
        address,
        &changed,
        deadline,
        Duration::from_millis(500),
        |n| {
            let _ = print(&format!("{name}: {n} active connections\n"));
        },
    )
    .await
    .map_err(fail)?;
    match end {
        DrainEnd::Drained => print(&format!("{name}: drained\n")),
        DrainEnd::Removed => print(&format!("{name}: removed from the config\n")),
        DrainEnd::Deadline { open } => {
            print(&format!(
                "{name}: {open} connections still open after {}\n",
                humantime::format_duration(deadline)
            ))?;
            Err(Failure {
                code: EXIT_FAILURE,
                message: String::new(),
            })
        }
    }
}

/// `apilb token create`.
fn token_create(ttl: Duration) -> Result<(), Failure> {
    let t = token::Token::generate().map_err(|e| Failure::error(&e, EXIT_FAILURE))?;
    let expires = time::Duration::try_from(ttl)
        .ok()
        .and_then(|d| now().checked_add(d))
        .filter(|_| !ttl.is_zero());
    match expires {
        Some(at) => {
            tracing::info!(token_id = t.id(), expires = %crate::logging::Rfc3339(at), "token created; pass the same --ttl to `token secret-manifest`")
        }
        None => tracing::info!(token_id = t.id(), "token created without expiry"),
    }
    print(&format!("{t}\n"))
}
