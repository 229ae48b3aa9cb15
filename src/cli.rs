//! Command line: the `apilb` subcommands and their flags (clap derive).
//!
//! Parsing only; `main.rs` maps each command to library calls.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Load balancer, VIP failover and PKI bootstrap for kube-apiservers.
#[derive(Debug, Parser)]
#[command(name = "apilb", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax (e.g. `info`, `apilb=debug`); overrides RUST_LOG.
    #[arg(long = "log", global = true, value_name = "FILTER")]
    pub log_filter: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the load balancer in the foreground.
    ///
    /// The config file is checked first, as `check-config` checks it (health-check TLS files
    /// included); a bad one exits 64 before the load balancer serves. Logs go to stderr.
    ///
    /// Signals: SIGHUP re-reads the config file and applies it without dropping connections;
    /// an invalid file is reported and the running config stays. SIGTERM or SIGINT stop
    /// accepting at once and give established connections up to `timeouts.drain` to finish,
    /// then exit; a second SIGTERM or SIGINT cuts them at once.
    ///
    /// Exit codes: 0 after a clean shutdown; 64 for a bad config (nothing is bound); 1 for a
    /// failure while starting or running (e.g. a listen address in use); 2 for a bad command
    /// line.
    Serve {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Parse and validate an LB config file, as `serve` would before binding; print every
    /// problem.
    ///
    /// Each problem is one line, `FILE:LINE:COLUMN: key.path: problem`, on stderr, in file
    /// order; the TLS files that health checks use are read and loaded too. A valid file
    /// prints a one-line summary on stdout.
    ///
    /// Exit codes: 0 when the file is valid; 64 when there is any problem or the file cannot
    /// be read; 2 for a bad command line.
    CheckConfig {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Run the whole system on loopback: a demo PKI, three stand-in apiservers and the load
    /// balancer in front (no root, no config). Type commands to stop, drain, hang and
    /// restart the stand-ins.
    Demo {
        /// Keep the PKI and LB config here instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The load balancer address (a free port is used if the default is busy).
        #[arg(long, value_name = "ADDR", default_value_t = crate::demo::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The metrics and status address (a free port is used if the default is busy).
        #[arg(long, value_name = "ADDR", default_value_t = crate::demo::DEFAULT_METRICS)]
        metrics_address: SocketAddr,
        /// Do not read commands from standard input; run until Ctrl-C.
        #[arg(long)]
        no_input: bool,
    },
    /// One stand-in kube-apiserver of the demo, as its own process (for the HA lab, where
    /// each master is a network namespace). Runs until SIGTERM; SIGUSR1 drains it like a
    /// kube-apiserver shutdown (readyz fails, livez passes, then it exits).
    #[command(hide = true)]
    DemoApiserver {
        /// Where to listen (the master's apiserver address).
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// The master's `pki/` directory (apiserver.crt, apiserver.key, ca.crt).
        #[arg(long, value_name = "DIR")]
        pki: PathBuf,
        /// Its name, as reported in /version (`servedBy`).
        #[arg(long)]
        name: String,
    },
    /// Delete the routes an `announce` section writes (every route of its table and
    /// protocol), for the unit's ExecStopPost after a crash. A config without the section
    /// does nothing.
    #[command(hide = true)]
    Announce {
        /// Delete the routes (the only action).
        #[arg(long, required = true)]
        withdraw: bool,
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Show listeners and backends of a running apilb (from its /status endpoint).
    Status {
        /// The running apilb's `metrics.listen` address: ADDR, http://ADDR or https://ADDR.
        #[arg(long, value_name = "ADDR", default_value = crate::config::DEFAULT_METRICS_ADDRESS)]
        metrics_address: crate::admin::EndpointUrl,
        #[command(flatten)]
        tls: AdminTlsArgs,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a backend's state in a running apilb.
    Backend {
        #[command(subcommand)]
        action: BackendAction,
        /// The running apilb's `metrics.listen` address: ADDR, http://ADDR or https://ADDR.
        #[arg(long, global = true, value_name = "ADDR", default_value = crate::config::DEFAULT_METRICS_ADDRESS)]
        metrics_address: crate::admin::EndpointUrl,
        #[command(flatten)]
        tls: AdminTlsArgs,
    },
    /// Issue the kubeadm control-plane PKI of every master, LB host and etcd member
    /// described in a cluster file, reusing whatever already exists under the output directory.
    Issue {
        /// The cluster description (YAML, see config/cluster.yaml).
        #[arg(long, value_name = "FILE")]
        cluster: PathBuf,
        /// The output directory: one subdirectory per machine.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Reissue every leaf certificate and kubeconfig client certificate, keeping the keys.
        #[arg(long)]
        renew: bool,
    },
    /// Everything each machine needs, from one cluster description: the PKI (as `issue`),
    /// each master's kubeadm configuration, the worker join file, external etcd static Pods,
    /// the LB hosts' apilb config and systemd unit, a README per host and JOIN.md.
    Bootstrap {
        /// The cluster description (YAML, see config/cluster.yaml).
        #[arg(long, value_name = "FILE")]
        cluster: PathBuf,
        /// The output directory: one subdirectory per machine.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// kubeadm configuration API version (v1beta4: kubeadm >= 1.31; v1beta3: 1.22-1.30).
        #[arg(long, value_enum, default_value_t = KubeadmApi::V1beta4)]
        kubeadm_api: KubeadmApi,
        /// Bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`); default: the one in the existing
        /// kubeadm.yaml, else a new one.
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Certificate key for upload-certs (64 hex characters); default: the one in the
        /// existing kubeadm.yaml, else a new one.
        #[arg(long, value_name = "HEX")]
        certificate_key: Option<String>,
        /// Reissue every leaf certificate and kubeconfig client certificate, keeping the keys.
        #[arg(long)]
        renew: bool,
        /// Replace generated files (kubeadm.yaml, READMEs, LB and etcd files) whose content
        /// differs, instead of stopping with an error. Keys and certificates follow `issue`'s
        /// rules regardless.
        #[arg(long)]
        overwrite: bool,
    },
    /// Certificate inspection.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Bootstrap tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print kubeadm's discovery hash (`sha256:<hex>` of the SubjectPublicKeyInfo) of a CA
    /// certificate.
    CaCertHash {
        /// The CA certificate (PEM).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a new certificate key for kubeadm upload-certs (32 random bytes, hex).
    CertificateKey,
    /// Print the shell completion script for SHELL on stdout.
    ///
    /// For bash: `apilb completions bash > /etc/bash_completion.d/apilb` (the Debian
    /// package installs bash, zsh and fish completions already).
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the man pages and the bash, zsh and fish completions under DIR (`DIR/man/`,
    /// `DIR/completions/SHELL/`), for packaging (deploy/deb/build.sh).
    #[command(hide = true)]
    GenerateAssets {
        /// The output directory (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// The LB config file of `serve` and `check-config`: `--config FILE` or just `FILE`.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ConfigFile {
    /// The LB config file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// The LB config file (YAML), instead of `--config FILE`.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

impl ConfigFile {
    /// The file, however it was given.
    pub fn path(&self) -> PathBuf {
        // The group makes exactly one of the two present.
        self.config
            .clone()
            .or_else(|| self.file.clone())
            .unwrap_or_default()
    }
}

/// `apilb bootstrap --kubeadm-api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeadmApi {
    /// kubeadm.k8s.io/v1beta4 (kubeadm 1.31 and later).
    V1beta4,
    /// kubeadm.k8s.io/v1beta3 (kubeadm 1.22 to 1.30).
    V1beta3,
}

impl From<KubeadmApi> for crate::bootstrap::kubeadm::ApiVersion {
    fn from(v: KubeadmApi) -> Self {
        match v {
            KubeadmApi::V1beta4 => Self::V1beta4,
            KubeadmApi::V1beta3 => Self::V1beta3,
        }
    }
}

/// `apilb certs …`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Show when each certificate of one machine's directory expires (like kubeadm's).
    CheckExpiration {
        /// A machine's directory in the `issue` output (its /etc/kubernetes).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `apilb token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) from a CSPRNG.
    Create {
        /// Validity of the token; its expiry time is logged on stderr. Use the same value with
        /// `token secret-manifest`.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Print the `bootstrap-token-<id>` Secret for a token (kubectl apply -f -).
    SecretManifest {
        /// The token.
        #[arg(value_name = "TOKEN")]
        token: String,
        /// Expiry after now; 0s for a token that never expires.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

/// TLS files for talking to an endpoint with `metrics.tls` (any of them means HTTPS).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminTlsArgs {
    /// The CA that signed the endpoint's certificate (`apilb issue` writes
    /// apilb-admin/ca.crt).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A client certificate, for `metrics.admin: mtls` (`apilb issue` writes
    /// apilb-admin/apilb-admin.crt).
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl AdminTlsArgs {
    /// As the admin client takes them.
    pub fn files(&self) -> crate::admin::ClientFiles {
        crate::admin::ClientFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// `apilb backend ...`.
#[derive(Debug, Subcommand)]
pub enum BackendAction {
    /// Take no new connections; existing ones finish.
    Drain {
        /// Backend name.
        name: String,
        /// Wait until its connections reach zero (or the deadline), printing progress.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits at most.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::input::parse_duration)]
        deadline: std::time::Duration,
    },
    /// Out of service: no new connections, checks not counted.
    Maint {
        /// Backend name.
        name: String,
    },
    /// Clear drain or maint: the checked state applies again.
    Enable {
        /// Backend name.
        name: String,
    },
    /// Move long-lived connections off over-loaded backends now (the same gentle procedure
    /// the rebalancer runs on its own after `rebalance.after`).
    Rebalance,
}
