//! The LB config: parsed from YAML ([`raw`]), checked into [`Config`], which is all the
//! runtime ever sees.
//!
//! [`Config::from_yaml`] is the testable entry point; [`Config::load`] reads a file. Every
//! problem is collected and reported at once, each with its line, column and key path.
//! Nothing here touches sockets or the environment.

mod announce;
mod check;
pub mod diff;
mod health;
pub mod raw;
mod rebalance;
mod vip;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use announce::*;
pub use check::{Report, Summary, check};
pub use health::*;
use raw::{FileConfig, RawHealth};
pub use rebalance::*;
pub use vip::*;

use crate::input::{Collector, Host, Locations, Scalar, parse_duration};
pub use crate::input::{Position, Problem, Problems};

/// Default balancing algorithm: long-lived watches make least-connections the sane choice.
pub const DEFAULT_BALANCE: Balance = Balance::LeastConnections;
/// Default `maxConnections`: global cap on concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Default `timeouts.connect`: per backend attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `timeouts.idle`: no bytes either way for this long closes the connection. Long,
/// because `kubectl logs -f` and watches sit quiet for minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `timeouts.drain`: how long established connections may finish on shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default backend `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest accepted backend `weight`.
pub const MAX_WEIGHT: u32 = 1000;
/// Default `listener.backlog`.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Default `tcp.keepaliveTime`: idle time before the first keepalive probe.
pub const DEFAULT_KEEPALIVE_TIME: Duration = Duration::from_secs(10);
/// Default `tcp.keepaliveInterval`: time between keepalive probes.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Default `tcp.userTimeout` (TCP_USER_TIMEOUT): unacknowledged data, or unanswered
/// keepalive probes, older than this kill the connection, so a dead peer is noticed in
/// seconds, not the kernel's 15 minutes. With it set, Linux ignores the keepalive probe
/// count, so there is no such setting.
pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_secs(20);
/// Default `forwarding`.
pub const DEFAULT_FORWARDING: Forwarding = Forwarding::Auto;

/// A checked LB config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on (`listen`). Port 0 binds an ephemeral port.
    pub listen: Vec<SocketAddr>,
    /// The apiservers (`backends`), in file order.
    pub backends: Vec<BackendConfig>,
    /// How a backend is chosen for a new connection (`balance`).
    pub balance: Balance,
    /// Global cap on concurrent client connections (`maxConnections`).
    pub max_connections: usize,
    /// How bytes are moved between the legs (`forwarding`).
    pub forwarding: Forwarding,
    /// Data-plane worker threads (`workers`).
    pub workers: Workers,
    /// `timeouts`.
    pub timeouts: Timeouts,
    /// `listener`: listening socket options.
    pub listener: ListenerOptions,
    /// `tcp`: options set on both legs of every connection.
    pub tcp: TcpOptions,
    /// The global `health` section (each backend's own, with overrides, is in
    /// [`BackendConfig::health`]).
    pub health: HealthConfig,
    /// `metrics`: the HTTP endpoint; `None` when the section is absent.
    pub metrics: Option<MetricsConfig>,
    /// `vip`: VRRPv3 failover of the virtual addresses; `None` when the section is absent.
    pub vip: Option<VipConfig>,
    /// `announce`: the VIPs as kernel routes for a BGP daemon; `None` when the section is
    /// absent. Never together with `vip`.
    pub announce: Option<AnnounceConfig>,
    /// `resolvers` and `dnsTtl`: how DNS-named backends are resolved.
    pub dns: DnsConfig,
    /// `rebalance`: moving long-lived connections after a backend returns (defaults when
    /// the section is absent).
    pub rebalance: RebalanceConfig,
}

/// Default `dnsTtl.min`: the floor on how long a DNS answer is used (and the retry delay
/// after a failed lookup).
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(5);
/// Default `dnsTtl.max`: the ceiling on how long a DNS answer is used.
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);

/// How DNS-named backends are resolved: A and AAAA, re-resolved when the answer's TTL runs
/// out, bounded by `min` and `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `resolvers`: DNS servers (port 53 unless given); empty = the system's resolv.conf.
    pub resolvers: Vec<SocketAddr>,
    /// `dnsTtl.min` (default [`DEFAULT_DNS_MIN_TTL`]).
    pub min_ttl: Duration,
    /// `dnsTtl.max` (default [`DEFAULT_DNS_MAX_TTL`]).
    pub max_ttl: Duration,
}

/// `metrics`: where `/metrics` and `/status` are served, and who may change backend
/// states through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `listen`: the HTTP address, e.g. `127.0.0.1:9441`.
    pub listen: SocketAddr,
    /// `admin` (default [`DEFAULT_ADMIN_ACCESS`]).
    pub admin: AdminAccess,
    /// `watchCertificates`: extra certificate files whose expiry is exported.
    pub watch_certificates: Vec<PathBuf>,
    /// `tls`: serve over HTTPS; `None` serves plain HTTP.
    pub tls: Option<MetricsTls>,
}

/// `metrics.tls`: the endpoint's server certificate, and the CA that signs operators' client
/// certificates (required by `admin: mtls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsTls {
    /// `cert`: the server certificate chain (PEM).
    pub cert: PathBuf,
    /// `key`: its private key (PEM).
    pub key: PathBuf,
    /// `clientCa`: the CA whose `apilb-admin` client certificates may change state.
    pub client_ca: Option<PathBuf>,
}

/// Default `metrics.listen` that `apilb status` and `apilb backend` talk to.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9441";
/// Default `metrics.admin`.
pub const DEFAULT_ADMIN_ACCESS: AdminAccess = AdminAccess::Loopback;

/// Who may change backend states through the HTTP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// Clients on loopback addresses only.
    Loopback,
    /// Anyone who can reach the endpoint.
    Any,
    /// Nobody: the endpoint is read-only.
    Off,
    /// Clients presenting a certificate signed by `metrics.tls.clientCa` whose name is
    /// `apilb-admin` (needs `metrics.tls`).
    Mtls,
}

impl AdminAccess {
    const NAMES: &[(&str, AdminAccess)] = &[
        ("loopback", AdminAccess::Loopback),
        ("any", AdminAccess::Any),
        ("off", AdminAccess::Off),
        ("mtls", AdminAccess::Mtls),
    ];
}

/// One backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Unique name, used in logs and by operators.
    pub name: String,
    /// Where it listens.
    pub address: BackendAddress,
    /// Relative share of new connections, 1 to [`MAX_WEIGHT`] (default [`DEFAULT_WEIGHT`]).
    pub weight: u32,
    /// Health checking: the global `health` section with this backend's overrides.
    pub health: HealthConfig,
}

/// A backend address: an IP socket address, or a DNS name and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendAddress {
    /// `10.0.0.11:6443`, `[fd00::11]:6443`.
    Ip(SocketAddr),
    /// `master-1.example.internal:6443`, resolved when connecting.
    Dns {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddress::Ip(addr) => write!(f, "{addr}"),
            BackendAddress::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Fewest active connections relative to weight; ties broken in turn.
    LeastConnections,
    /// Smooth weighted round-robin.
    RoundRobin,
    /// Two random candidates (weighted), the less loaded wins.
    RandomTwo,
}

impl Balance {
    const NAMES: &[(&str, Balance)] = &[
        ("least-connections", Balance::LeastConnections),
        ("round-robin", Balance::RoundRobin),
        ("random-two", Balance::RandomTwo),
    ];
}

/// How bytes are moved between client and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Copy small messages, splice bulk transfers: each direction starts copying and
    /// switches to splice(2) once a read fills the buffer.
    Auto,
    /// splice(2) through a pooled pipe: the bytes never enter user space.
    Splice,
    /// read(2)/write(2) through a buffer held only while data is in flight.
    Copy,
}

impl Forwarding {
    const NAMES: &[(&str, Forwarding)] = &[
        ("auto", Forwarding::Auto),
        ("splice", Forwarding::Splice),
        ("copy", Forwarding::Copy),
    ];
}

/// `workers`: how many data-plane threads accept and forward. Each runs its own
/// single-threaded runtime; a connection stays on the worker that accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per CPU this process may run on (its affinity mask and cgroup quota).
    Auto,
    /// Exactly this many (more than the CPUs is allowed).
    Count(usize),
}

/// Default `workers`.
pub const DEFAULT_WORKERS: Workers = Workers::Auto;
/// The largest `workers` number accepted.
pub const MAX_WORKERS: u64 = 1024;

impl Workers {
    /// The number of worker threads to run.
    pub fn count(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// `listener.accept`: how the workers share one listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptMode {
    /// One SO_REUSEPORT socket per worker: the kernel spreads new connections by a hash of
    /// their addresses, and no two workers wake for the same connection.
    ReusePort,
    /// One socket that every worker accepts from: the first worker to wake takes the
    /// connection.
    Shared,
}

impl AcceptMode {
    const NAMES: &[(&str, AcceptMode)] = &[
        ("reusePort", AcceptMode::ReusePort),
        ("shared", AcceptMode::Shared),
    ];
}

/// Default `listener.accept`.
pub const DEFAULT_ACCEPT_MODE: AcceptMode = AcceptMode::ReusePort;

/// `timeouts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Per backend connect attempt (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect: Duration,
    /// No bytes either way for this long closes the connection (default
    /// [`DEFAULT_IDLE_TIMEOUT`]).
    pub idle: Duration,
    /// On shutdown, how long established connections may finish (default
    /// [`DEFAULT_DRAIN_TIMEOUT`]).
    pub drain: Duration,
    /// How long a new backend leg may leave the client's TLS handshake unanswered before
    /// the client is replayed to another backend (default [`DEFAULT_FIRST_BYTE_TIMEOUT`];
    /// `None` when set to 0s: off).
    pub first_byte: Option<Duration>,
}

/// Default `timeouts.firstByte`: a kube-apiserver answers a TLS ClientHello in
/// milliseconds; one that has not answered in a second is hung or drowning, and the
/// client is better served by another.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(1);

/// `listener`: options of every listening socket. They apply when a listener is bound; a
/// reload that changes them rebinds no existing listener (a warning says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerOptions {
    /// listen(2) backlog (default [`DEFAULT_BACKLOG`]).
    pub backlog: u32,
    /// SO_REUSEPORT, to run several apilb processes on one address (default false).
    pub reuse_port: bool,
    /// IP_FREEBIND / IPV6_FREEBIND, so a backup LB can bind a VIP it does not hold yet
    /// (default true).
    pub freebind: bool,
    /// `accept`: how the workers share an address (default [`DEFAULT_ACCEPT_MODE`]).
    pub accept: AcceptMode,
}

/// `tcp`: options set on both legs of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// TCP_KEEPIDLE (default [`DEFAULT_KEEPALIVE_TIME`]).
    pub keepalive_time: Duration,
    /// TCP_KEEPINTVL (default [`DEFAULT_KEEPALIVE_INTERVAL`]).
    pub keepalive_interval: Duration,
    /// TCP_USER_TIMEOUT (default [`DEFAULT_USER_TIMEOUT`]).
    pub user_timeout: Duration,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`, so it is printed once).
        error: std::io::Error,
    },
    /// The text is not a valid config; every problem found is listed.
    #[error("{0}")]
    Invalid(Problems),
}

/// The YAML spelling of a value of one of the enums above (`least-connections`).
fn yaml_name<T: Copy + PartialEq>(names: &'static [(&'static str, T)], v: T) -> &'static str {
    names
        .iter()
        .find(|(_, x)| *x == v)
        .map_or("?", |(name, _)| *name)
}

/// `as_str` (the YAML spelling) and a `Display` that prints it, for enums with `NAMES`.
macro_rules! yaml_spelling {
    ($($t:ty),*) => {$(
        impl $t {
            /// As written in the config file.
            pub fn as_str(self) -> &'static str {
                yaml_name(Self::NAMES, self)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
yaml_spelling!(
    Balance,
    Forwarding,
    AdminAccess,
    CheckKind,
    OnDown,
    ChecksumStyle,
    Handover
);

impl Config {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    /// Parse and check a config text; `origin` names it in error messages.
    pub fn from_yaml(src: &str, origin: &str) -> Result<Config, Error> {
        Config::parse(src, origin).map(|(config, _)| config)
    }

    /// [`Config::from_yaml`], also returning where each key is written (for problems found
    /// later, such as an unreadable TLS file).
    fn parse(src: &str, origin: &str) -> Result<(Config, Locations), Error> {
        if src.trim().is_empty() {
            return Err(Error::Invalid(Problems::new(
                origin,
                vec![Problem {
                    position: Position { line: 1, column: 1 },
                    key: String::new(),
                    message: "the file is empty; a config needs at least `listen` and `backends`"
                        .into(),
                }],
            )));
        }
        let locations = Locations::index(src);
        let (raw, problems) = crate::input::deserialize::<FileConfig>(src, &locations);
        let Some(raw) = raw else {
            return Err(Error::Invalid(Problems::new(origin, problems)));
        };
        let mut checker = Checker {
            c: Collector::new(locations, problems),
        };
        let config = checker.config(raw);
        let (problems, locations) = checker.c.finish(origin);
        match config {
            Some(config) if problems.list.is_empty() => Ok((config, locations)),
            _ => Err(Error::Invalid(problems)),
        }
    }
}

/// Checks a [`FileConfig`], collecting problems.
struct Checker {
    c: Collector,
}

impl Checker {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.c.push(key, message);
    }

    fn config(&mut self, raw: FileConfig) -> Option<Config> {
        let listen = self.listen(&raw.listen);
        let (backends, health) = self.backends(&raw.backends, raw.health.as_ref());
        let metrics = raw.metrics.as_ref().and_then(|m| self.metrics(m));
        let dns = self.dns(raw.resolvers.as_deref(), &raw.dns_ttl);
        let vip = raw.vip.as_ref().map(|v| self.vip(v));
        let announce = raw.announce.as_ref().map(|a| self.announce(a));
        if raw.vip.is_some() && raw.announce.is_some() {
            self.problem(
                "announce",
                "cannot be used together with `vip`: a host either holds the VIP by VRRP \
                 (vip) or announces it as a route to BGP routers (announce); remove one",
            );
        }
        let rebalance = self.rebalance(raw.rebalance.as_ref());
        let balance = self.choice(raw.balance.as_ref(), "balance", Balance::NAMES);
        let max_connections = self.number(
            raw.max_connections.as_ref(),
            "maxConnections",
            1,
            10_000_000,
        );
        let forwarding = self.choice(raw.forwarding.as_ref(), "forwarding", Forwarding::NAMES);
        let workers = self.workers(raw.workers.as_ref());
        let t = &raw.timeouts;
        let timeouts = Timeouts {
            connect: self
                .duration(
                    t.connect.as_ref(),
                    "timeouts.connect",
                    Some(Duration::from_millis(1)),
                )
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            idle: self
                .duration(
                    t.idle.as_ref(),
                    "timeouts.idle",
                    Some(Duration::from_secs(1)),
                )
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
            drain: self
                .duration(t.drain.as_ref(), "timeouts.drain", None)
                .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            first_byte: match self.duration(t.first_byte.as_ref(), "timeouts.firstByte", None) {
                None => Some(DEFAULT_FIRST_BYTE_TIMEOUT),
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
            },
        };
        let l = &raw.listener;
        let listener = ListenerOptions {
            backlog: self
                .number(l.backlog.as_ref(), "listener.backlog", 1, 65_535)
                .map_or(DEFAULT_BACKLOG, |n| n as u32),
            reuse_port: self
                .boolean(l.reuse_port.as_ref(), "listener.reusePort")
                .unwrap_or(false),
            freebind: self
                .boolean(l.freebind.as_ref(), "listener.freebind")
                .unwrap_or(true),
            accept: self
                .choice(l.accept.as_ref(), "listener.accept", AcceptMode::NAMES)
                .unwrap_or(DEFAULT_ACCEPT_MODE),
        };
        let k = &raw.tcp;
        let second = Some(Duration::from_secs(1));
        let tcp = TcpOptions {
            keepalive_time: self
                .duration(k.keepalive_time.as_ref(), "tcp.keepaliveTime", second)
                .unwrap_or(DEFAULT_KEEPALIVE_TIME),
            keepalive_interval: self
                .duration(
                    k.keepalive_interval.as_ref(),
                    "tcp.keepaliveInterval",
                    second,
                )
                .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL),
            user_timeout: self
                .duration(k.user_timeout.as_ref(), "tcp.userTimeout", second)
                .unwrap_or(DEFAULT_USER_TIMEOUT),
        };
        Some(Config {
            listen: listen?,
            backends: backends?,
            balance: balance.unwrap_or(DEFAULT_BALANCE),
            max_connections: max_connections.map_or(DEFAULT_MAX_CONNECTIONS, |n| n as usize),
            forwarding: forwarding.unwrap_or(DEFAULT_FORWARDING),
            workers: workers.unwrap_or(DEFAULT_WORKERS),
            timeouts,
            listener,
            tcp,
            health,
            metrics,
            dns,
            vip: vip.flatten(),
            announce: announce.flatten(),
            rebalance,
        })
    }

    fn listen(&mut self, raw: &[Scalar]) -> Option<Vec<SocketAddr>> {
        if raw.is_empty() {
            self.problem(
                "listen",
                "needs at least one address, e.g. [\"127.0.0.1:6443\"]",
            );
            return None;
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut seen = HashSet::new();
        for (i, s) in raw.iter().enumerate() {
            let key = format!("listen[{i}]");
            match parse_socket_addr(&s.0) {
                Ok(addr) => {
                    if !seen.insert(addr) {
                        self.problem(&key, format!("\"{addr}\" is listed twice"));
                    }
                    out.push(addr);
                }
                Err(why) => {
                    self.problem(&key, format!("\"{}\" is not a valid address: {why}", s.0))
                }
            }
        }
        (out.len() == raw.len()).then_some(out)
    }

    fn backends(
        &mut self,
        raw: &[raw::RawBackend],
        global: Option<&RawHealth>,
    ) -> (Option<Vec<BackendConfig>>, HealthConfig) {
        let empty = RawHealth::default();
        let global = global.unwrap_or(&empty);
        // The global section is checked once, so its problems are reported once.
        let before = self.c.count();
        let global_health = self.health(global, &|k| format!("health.{k}"));
        let global_ok = self.c.count() == before;
        if raw.is_empty() {
            self.problem("backends", "needs at least one backend");
            return (None, global_health);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for (i, b) in raw.iter().enumerate() {
            let name_key = format!("backends[{i}].name");
            let name = b.name.as_ref().map_or("", |n| n.0.trim());
            let name_ok = if b.name.is_none() {
                self.problem(&name_key, "is required");
                false
            } else if name.is_empty() {
                self.problem(&name_key, "must not be empty");
                false
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.problem(
                    &name_key,
                    format!("\"{name}\" may only contain letters, digits, '-', '_' and '.'"),
                );
                false
            } else if !names.insert(name.to_owned()) {
                self.problem(&name_key, format!("\"{name}\" is used by another backend"));
                false
            } else {
                true
            };
            let addr_key = format!("backends[{i}].address");
            let written = b.address.as_ref().map_or("", |a| a.0.as_str());
            let address = match b.address.as_ref().map(|a| parse_backend_address(&a.0)) {
                None => {
                    self.problem(&addr_key, "is required");
                    None
                }
                Some(Ok(addr)) => {
                    if !addresses.insert(addr.clone()) {
                        self.problem(
                            &addr_key,
                            format!("\"{addr}\" is the address of another backend"),
                        );
                        None
                    } else {
                        Some(addr)
                    }
                }
                Some(Err(why)) => {
                    self.problem(
                        &addr_key,
                        format!("\"{written}\" is not a valid address: {why}"),
                    );
                    None
                }
            };
            let weight = self
                .number(
                    b.weight.as_ref(),
                    &format!("backends[{i}].weight"),
                    1,
                    u64::from(MAX_WEIGHT),
                )
                .map_or(DEFAULT_WEIGHT, |n| n as u32);
            let health = match &b.health {
                // Problems in the merged section are blamed on the backend's own keys
                // when it set them, else on the global key.
                Some(over) if global_ok => {
                    let merged = global.merged(over);
                    self.health(&merged, &|k| {
                        if health_key_set(over, k) {
                            format!("backends[{i}].health.{k}")
                        } else {
                            format!("health.{k}")
                        }
                    })
                }
                Some(over) => self.health(over, &|k| format!("backends[{i}].health.{k}")),
                None => global_health.clone(),
            };
            if let (true, Some(address)) = (name_ok, address) {
                out.push(BackendConfig {
                    name: name.to_owned(),
                    address,
                    weight,
                    health,
                });
            }
        }
        ((out.len() == raw.len()).then_some(out), global_health)
    }

    fn dns(&mut self, resolvers: Option<&[Scalar]>, ttl: &raw::RawDnsTtl) -> DnsConfig {
        let mut list = Vec::new();
        if let Some(resolvers) = resolvers {
            if resolvers.is_empty() {
                self.problem(
                    "resolvers",
                    "is empty; leave it out to use the system's resolv.conf",
                );
            }
            for (i, r) in resolvers.iter().enumerate() {
                let text = r.0.trim();
                let parsed = IpAddr::from_str(text.trim_start_matches('[').trim_end_matches(']'))
                    .map(|ip| SocketAddr::new(ip, 53))
                    .or_else(|_| parse_socket_addr(text));
                match parsed {
                    Ok(a) if a.port() != 0 => list.push(a),
                    Ok(_) => self.problem(&format!("resolvers[{i}]"), "port 0 cannot be asked"),
                    Err(why) => self.problem(
                        &format!("resolvers[{i}]"),
                        format!("\"{text}\" is not an IP address or ip:port: {why}"),
                    ),
                }
            }
        }
        let min_ttl = self
            .duration(
                ttl.min.as_ref(),
                "dnsTtl.min",
                Some(Duration::from_millis(100)),
            )
            .unwrap_or(DEFAULT_DNS_MIN_TTL);
        let max_ttl = self
            .duration(
                ttl.max.as_ref(),
                "dnsTtl.max",
                Some(Duration::from_millis(100)),
            )
            .unwrap_or(DEFAULT_DNS_MAX_TTL);
        if max_ttl < min_ttl {
            self.problem(
                "dnsTtl.max",
                format!(
                    "{} is shorter than dnsTtl.min ({})",
                    crate::input::format_duration(max_ttl),
                    crate::input::format_duration(min_ttl)
                ),
            );
        }
        DnsConfig {
            resolvers: list,
            min_ttl,
            max_ttl,
        }
    }

    fn metrics(&mut self, raw: &raw::RawMetrics) -> Option<MetricsConfig> {
        let written = raw.listen.as_ref().map_or("", |l| l.0.as_str());
        let listen = match raw.listen.as_ref().map(|l| parse_socket_addr(&l.0)) {
            None => {
                self.problem("metrics.listen", "is required, e.g. \"127.0.0.1:9441\"");
                None
            }
            Some(Ok(a)) => Some(a),
            Some(Err(why)) => {
                self.problem(
                    "metrics.listen",
                    format!("\"{written}\" is not a valid address: {why}"),
                );
                None
            }
        };
        let admin = self
            .choice(raw.admin.as_ref(), "metrics.admin", AdminAccess::NAMES)
            .unwrap_or(DEFAULT_ADMIN_ACCESS);
        let mut watch = Vec::new();
        for (i, p) in raw.watch_certificates.iter().enumerate() {
            if p.0.trim().is_empty() {
                self.problem(
                    &format!("metrics.watchCertificates[{i}]"),
                    "must not be empty",
                );
            } else {
                watch.push(PathBuf::from(p.0.trim()));
            }
        }
        let tls = raw.tls.as_ref().and_then(|t| self.metrics_tls(t));
        if admin == AdminAccess::Mtls {
            match &tls {
                None if raw.tls.is_none() => self.problem(
                    "metrics.admin",
                    "mtls needs metrics.tls with cert, key and clientCa",
                ),
                Some(t) if t.client_ca.is_none() => self.problem(
                    "metrics.tls.clientCa",
                    "is required by admin: mtls (the CA that signs apilb-admin client certificates)",
                ),
                _ => {}
            }
        }
        Some(MetricsConfig {
            listen: listen?,
            admin,
            watch_certificates: watch,
            tls,
        })
    }

    fn metrics_tls(&mut self, raw: &raw::RawMetricsTls) -> Option<MetricsTls> {
        let mut file = |s: Option<&Scalar>, key: &str, what: &str| -> Option<PathBuf> {
            match s.map(|s| s.0.trim()) {
                None => {
                    self.problem(key, format!("is required: {what}"));
                    None
                }
                Some("") => {
                    self.problem(key, "must not be empty");
                    None
                }
                Some(p) => Some(PathBuf::from(p)),
            }
        };
        let cert = file(
            raw.cert.as_ref(),
            "metrics.tls.cert",
            "the endpoint's server certificate (PEM)",
        );
        let key = file(
            raw.key.as_ref(),
            "metrics.tls.key",
            "the server certificate's private key (PEM)",
        );
        let client_ca = match raw.client_ca.as_ref() {
            None => None,
            Some(s) => Some(file(Some(s), "metrics.tls.clientCa", "")?),
        };
        Some(MetricsTls {
            cert: cert?,
            key: key?,
            client_ca,
        })
    }

    fn choice<T: Copy>(
        &mut self,
        raw: Option<&Scalar>,
        key: &str,
        names: &[(&str, T)],
    ) -> Option<T> {
        let text = raw?.0.as_str();
        if let Some((_, v)) = names.iter().find(|(n, _)| *n == text) {
            return Some(*v);
        }
        let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        self.problem(
            key,
            format!("\"{text}\" is not one of {}", known.join(", ")),
        );
        None
    }

    /// `raw`, or a problem saying it is required.
    fn required<'a>(
        &mut self,
        raw: Option<&'a Scalar>,
        key: &str,
        message: &str,
    ) -> Option<&'a Scalar> {
        if raw.is_none() {
            self.problem(key, message);
        }
        raw
    }

    /// `workers`: `auto` or a number of threads.
    fn workers(&mut self, raw: Option<&Scalar>) -> Option<Workers> {
        if raw?.0 == "auto" {
            return Some(Workers::Auto);
        }
        let text = raw?.0.as_str();
        if text.parse::<u64>().is_err() {
            self.problem(
                "workers",
                format!("\"{text}\" is neither auto nor a whole number"),
            );
            return None;
        }
        self.number(raw, "workers", 1, MAX_WORKERS)
            .map(|n| Workers::Count(n as usize))
    }

    fn number(&mut self, raw: Option<&Scalar>, key: &str, min: u64, max: u64) -> Option<u64> {
        let text = raw?.0.as_str();
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) => {
                self.problem(key, format!("{n} is out of range ({min} to {max})"));
                None
            }
            Err(_) => {
                self.problem(key, format!("\"{text}\" is not a whole number"));
                None
            }
        }
    }

    fn boolean(&mut self, raw: Option<&Scalar>, key: &str) -> Option<bool> {
        match raw?.0.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.problem(key, format!("\"{other}\" is not true or false"));
                None
            }
        }
    }

    fn duration(
        &mut self,
        raw: Option<&Scalar>,
        key: &str,
        min: Option<Duration>,
    ) -> Option<Duration> {
        let text = raw?.0.as_str();
        match parse_duration(text) {
            Ok(d) => match min {
                Some(min) if d < min => {
                    self.problem(
                        key,
                        format!(
                            "{text} is too short (at least {})",
                            crate::input::format_duration(min)
                        ),
                    );
                    None
                }
                _ => Some(d),
            },
            Err(why) => {
                self.problem(key, format!("\"{text}\" is not a duration: {why}"));
                None
            }
        }
    }
}

/// Whether a backend's `health` override sets key `k` (as named in problems).
fn health_key_set(over: &RawHealth, k: &str) -> bool {
    let tls = over.tls.as_ref();
    match k {
        "kind" => over.kind.is_some(),
        "path" => over.path.is_some(),
        "livePath" => over.live_path.is_some(),
        "interval" => over.interval.is_some(),
        "fastInterval" => over.fast_interval.is_some(),
        "timeout" => over.timeout.is_some(),
        "rise" => over.rise.is_some(),
        "fall" => over.fall.is_some(),
        "passiveFall" => over.passive_fall.is_some(),
        "slowStart" => over.slow_start.is_some(),
        "onDown" => over.on_down.is_some(),
        "tls" => tls.is_some(),
        "tls.ca" => tls.is_some_and(|t| t.ca.is_some()),
        "tls.cert" => tls.is_some_and(|t| t.cert.is_some()),
        "tls.key" => tls.is_some_and(|t| t.key.is_some()),
        "tls.serverName" => tls.is_some_and(|t| t.server_name.is_some()),
        _ => false,
    }
}

/// `ip:port` or `[ipv6]:port` (port 0 allowed: an ephemeral listener).
fn parse_socket_addr(text: &str) -> Result<SocketAddr, crate::input::AddressError> {
    crate::input::socket_addr(text, true)
}

/// A backend address: `ip:port`, `[ipv6]:port` or `dns-name:port`.
fn parse_backend_address(text: &str) -> Result<BackendAddress, crate::input::AddressError> {
    Ok(match crate::input::host_port(text, None)? {
        (Host::Ip(ip), port) => BackendAddress::Ip(SocketAddr::new(ip, port)),
        (Host::Dns(host), port) => BackendAddress::Dns { host, port },
    })
}

#[cfg(test)]
mod tests;
