//! The `health:` section: active checks, passive detection, slow start and what happens to
//! connections when a backend goes down. Checked per backend, with `backends[].health`
//! overriding the global keys one by one.

use std::path::PathBuf;
use std::time::Duration;

use super::Checker;
use super::raw::RawHealth;

/// Default `health.kind`.
pub const DEFAULT_CHECK_KIND: CheckKind = CheckKind::Tcp;
/// Default `health.path` for `https` checks: the apiserver's readiness endpoint.
pub const DEFAULT_CHECK_PATH: &str = "/readyz";
/// Default `health.interval`: between checks of a steady backend.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default `health.fastInterval`: between checks while a backend is changing state.
pub const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(500);
/// Default `health.timeout`: a check that takes longer fails.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `health.rise`: consecutive passes to become up.
pub const DEFAULT_RISE: u32 = 2;
/// Default `health.fall`: consecutive failures to become down.
pub const DEFAULT_FALL: u32 = 2;
/// Default `health.passiveFall`: consecutive failed client connects that mark a backend
/// down at once (0: passive detection off).
pub const DEFAULT_PASSIVE_FALL: u32 = 1;
/// Default `health.slowStart`: how long a returning backend takes to reach its full share.
pub const DEFAULT_SLOW_START: Duration = Duration::from_secs(30);
/// Default `health.onDown`.
pub const DEFAULT_ON_DOWN: OnDown = OnDown::Keep;

/// What an active check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// No active checks; passive detection only.
    None,
    /// The TCP connect succeeds.
    Tcp,
    /// The TLS handshake succeeds and the chain verifies.
    Tls,
    /// `GET path` over TLS answers 200.
    Https,
}

impl CheckKind {
    pub(super) const NAMES: &[(&str, CheckKind)] = &[
        ("none", CheckKind::None),
        ("tcp", CheckKind::Tcp),
        ("tls", CheckKind::Tls),
        ("https", CheckKind::Https),
    ];
}

/// What happens to a backend's established connections when it goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDown {
    /// They carry on (a backend that is only unreachable to checks may still serve them).
    Keep,
    /// They are closed, so clients reconnect to a live backend at once instead of hanging.
    Close,
}

impl OnDown {
    pub(super) const NAMES: &[(&str, OnDown)] = &[("keep", OnDown::Keep), ("close", OnDown::Close)];
}

/// The checked health settings of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `kind` (default [`DEFAULT_CHECK_KIND`]).
    pub kind: CheckKind,
    /// `path` for https checks (default [`DEFAULT_CHECK_PATH`]).
    pub path: String,
    /// `livePath`: when set, a failing `path` with a passing `livePath` means the apiserver
    /// is shutting down gracefully: the backend drains instead of going down.
    pub live_path: Option<String>,
    /// `interval` (default [`DEFAULT_CHECK_INTERVAL`]).
    pub interval: Duration,
    /// `fastInterval` (default [`DEFAULT_FAST_INTERVAL`]).
    pub fast_interval: Duration,
    /// `timeout` (default [`DEFAULT_CHECK_TIMEOUT`]).
    pub timeout: Duration,
    /// `rise` (default [`DEFAULT_RISE`]).
    pub rise: u32,
    /// `fall` (default [`DEFAULT_FALL`]).
    pub fall: u32,
    /// `passiveFall` (default [`DEFAULT_PASSIVE_FALL`]).
    pub passive_fall: u32,
    /// `slowStart` (default [`DEFAULT_SLOW_START`]; 0s turns it off).
    pub slow_start: Duration,
    /// `onDown` (default [`DEFAULT_ON_DOWN`]).
    pub on_down: OnDown,
    /// `tls`: required for `tls` and `https` checks.
    pub tls: Option<CheckTls>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            kind: DEFAULT_CHECK_KIND,
            path: DEFAULT_CHECK_PATH.to_owned(),
            live_path: None,
            interval: DEFAULT_CHECK_INTERVAL,
            fast_interval: DEFAULT_FAST_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            passive_fall: DEFAULT_PASSIVE_FALL,
            slow_start: DEFAULT_SLOW_START,
            on_down: DEFAULT_ON_DOWN,
            tls: None,
        }
    }
}

/// `health.tls`: how checks verify the apiserver and prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTls {
    /// PEM CA bundle that signs the apiservers' serving certificates.
    pub ca: PathBuf,
    /// Client certificate for mutual TLS (with `key`), so checks work with anonymous
    /// auth off.
    pub cert: Option<PathBuf>,
    /// Client key (with `cert`).
    pub key: Option<PathBuf>,
    /// Name to send as SNI and verify; default: the backend's host.
    pub server_name: Option<String>,
}

impl Checker {
    /// Check `raw` (the global section merged with a backend's overrides); `key` is the
    /// path prefix for problems (`health` or `backends[i].health`). `where_set` maps a key
    /// under `health` to the place it was written.
    pub(super) fn health(
        &mut self,
        raw: &RawHealth,
        where_set: &dyn Fn(&str) -> String,
    ) -> HealthConfig {
        let d = HealthConfig::default();
        let k = |name: &str| where_set(name);
        let kind = self
            .choice(raw.kind.as_ref(), &k("kind"), CheckKind::NAMES)
            .unwrap_or(d.kind);
        let path = match &raw.path {
            Some(p) => self.http_path(&p.0, &k("path")).unwrap_or(d.path.clone()),
            None => d.path.clone(),
        };
        let live_path = raw
            .live_path
            .as_ref()
            .and_then(|p| self.http_path(&p.0, &k("livePath")));
        let ms = Some(Duration::from_millis(10));
        let interval = self
            .duration(raw.interval.as_ref(), &k("interval"), ms)
            .unwrap_or(d.interval);
        let fast_interval = self
            .duration(raw.fast_interval.as_ref(), &k("fastInterval"), ms)
            .unwrap_or(d.fast_interval);
        let timeout = self
            .duration(raw.timeout.as_ref(), &k("timeout"), ms)
            .unwrap_or(d.timeout);
        if fast_interval > interval {
            self.problem(
                &k("fastInterval"),
                format!(
                    "{} is longer than interval ({})",
                    crate::input::format_duration(fast_interval),
                    crate::input::format_duration(interval)
                ),
            );
        }
        let rise = self
            .number(raw.rise.as_ref(), &k("rise"), 1, 100)
            .map_or(d.rise, |n| n as u32);
        let fall = self
            .number(raw.fall.as_ref(), &k("fall"), 1, 100)
            .map_or(d.fall, |n| n as u32);
        let passive_fall = self
            .number(raw.passive_fall.as_ref(), &k("passiveFall"), 0, 100)
            .map_or(d.passive_fall, |n| n as u32);
        let slow_start = self
            .duration(raw.slow_start.as_ref(), &k("slowStart"), None)
            .unwrap_or(d.slow_start);
        let on_down = self
            .choice(raw.on_down.as_ref(), &k("onDown"), OnDown::NAMES)
            .unwrap_or(d.on_down);
        let tls = raw.tls.as_ref().and_then(|t| {
            let ca = match &t.ca {
                Some(ca) if !ca.0.trim().is_empty() => Some(PathBuf::from(ca.0.trim())),
                _ => {
                    self.problem(&k("tls.ca"), "is required: the CA that signs the apiservers' certificates");
                    None
                }
            };
            let cert = t.cert.as_ref().map(|c| PathBuf::from(c.0.trim()));
            let key = t.key.as_ref().map(|c| PathBuf::from(c.0.trim()));
            if cert.is_some() != key.is_some() {
                let missing = if cert.is_some() { "tls.key" } else { "tls.cert" };
                self.problem(&k(missing), "is required too: a client certificate needs its key and the key its certificate");
            }
            let server_name = t.server_name.as_ref().map(|s| s.0.trim().to_owned());
            if let Some(name) = &server_name {
                if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                    self.problem(&k("tls.serverName"), format!("\"{name}\" is not a valid DNS name or IP address"));
                }
            }
            Some(CheckTls {
                ca: ca?,
                cert,
                key,
                server_name,
            })
        });
        if matches!(kind, CheckKind::Tls | CheckKind::Https) && raw.tls.is_none() {
            self.problem(
                &k("tls"),
                format!(
                    "is required for kind {}: set at least tls.ca",
                    if kind == CheckKind::Tls {
                        "tls"
                    } else {
                        "https"
                    }
                ),
            );
        }
        HealthConfig {
            kind,
            path,
            live_path,
            interval,
            fast_interval,
            timeout,
            rise,
            fall,
            passive_fall,
            slow_start,
            on_down,
            tls,
        }
    }

    fn http_path(&mut self, text: &str, key: &str) -> Option<String> {
        let ok = text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if ok {
            Some(text.to_owned())
        } else {
            self.problem(
                key,
                format!("\"{text}\" is not an HTTP path (it must start with '/', without spaces)"),
            );
            None
        }
    }
}
