//! The LB config file as written: serde types with camelCase keys and unknown keys denied.
//! This is the one schema of the file: [`super::Config`] is checked from it, and
//! `apilb bootstrap` writes LB hosts' configs by serializing it (keys left out are `None`
//! or empty and are not written).
//!
//! Values whose checking needs context (addresses, durations, enum names) are kept as
//! [`Scalar`] text here and checked by [`super::Config::from_yaml`], so that every such
//! problem is reported at once instead of stopping at the first.

use serde::{Deserialize, Serialize};

pub use crate::input::Scalar;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: Vec<Scalar>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<Scalar>,
    /// Data-plane worker threads: `auto` (one per CPU available) or a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Scalar>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub timeouts: RawTimeouts,
    #[serde(default, skip_serializing_if = "is_default")]
    pub listener: RawListener,
    #[serde(default, skip_serializing_if = "is_default")]
    pub tcp: RawTcp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<RawHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RawMetrics>,
    /// DNS servers for DNS-named backends (default: the system's resolv.conf).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolvers: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub dns_ttl: RawDnsTtl,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<RawVip>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce: Option<RawAnnounce>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RawRebalance>,
}

/// `rebalance:`: moving long-lived connections off over-loaded backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRebalance {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_age: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_client: Option<Scalar>,
}

/// `announce:`: the VIPs as kernel routes that a routing daemon announces by BGP, while the
/// proxy is healthy (instead of `vip:`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAnnounce {
    #[serde(default)]
    pub addresses: Vec<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<RawAnnounceTrack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdraw_delay: Option<Scalar>,
}

/// `announce.track:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAnnounceTrack {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_backends_below: Option<Scalar>,
}

/// `dnsTtl:`: bounds on how long a DNS answer is used before asking again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDnsTtl {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Scalar>,
}

/// `vip:`: VRRPv3 failover of the listening addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawVip {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrid: Option<Scalar>,
    #[serde(default)]
    pub addresses: Vec<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advert_interval: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preempt: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preempt_delay: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unicast_peers: Vec<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<RawTrack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover: Option<Scalar>,
}

/// `vip.track:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTrack {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_backends_below: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<Scalar>,
}

/// `metrics:`: the HTTP endpoint for metrics, status and backend state changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch_certificates: Vec<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawMetricsTls>,
}

/// `metrics.tls:`: serve the endpoint over HTTPS, and whose client certificates it trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMetricsTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<Scalar>,
}

/// One `backends[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackend {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Scalar>,
    /// Overrides of the global `health` keys for this backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<RawHealth>,
}

/// `health:` (global) and `backends[].health:` (overrides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHealth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_path: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_interval: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_fall: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_down: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawHealthTls>,
}

/// `health.tls:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHealthTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<Scalar>,
}

impl RawHealth {
    /// `self` with every key that `over` sets replaced by `over`'s value.
    pub fn merged(&self, over: &RawHealth) -> RawHealth {
        fn pick(a: &Option<Scalar>, b: &Option<Scalar>) -> Option<Scalar> {
            b.clone().or_else(|| a.clone())
        }
        let tls = match (&self.tls, &over.tls) {
            (None, None) => None,
            (a, b) => {
                let a = a.clone().unwrap_or_default();
                let b = b.clone().unwrap_or_default();
                Some(RawHealthTls {
                    ca: pick(&a.ca, &b.ca),
                    cert: pick(&a.cert, &b.cert),
                    key: pick(&a.key, &b.key),
                    server_name: pick(&a.server_name, &b.server_name),
                })
            }
        };
        RawHealth {
            kind: pick(&self.kind, &over.kind),
            path: pick(&self.path, &over.path),
            live_path: pick(&self.live_path, &over.live_path),
            interval: pick(&self.interval, &over.interval),
            fast_interval: pick(&self.fast_interval, &over.fast_interval),
            timeout: pick(&self.timeout, &over.timeout),
            rise: pick(&self.rise, &over.rise),
            fall: pick(&self.fall, &over.fall),
            passive_fall: pick(&self.passive_fall, &over.passive_fall),
            slow_start: pick(&self.slow_start, &over.slow_start),
            on_down: pick(&self.on_down, &over.on_down),
            tls,
        }
    }
}

/// `timeouts:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<Scalar>,
}

/// `listener:` socket options applied to every listening socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawListener {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_port: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freebind: Option<Scalar>,
    /// How workers share a listening address: `reusePort` or `shared`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept: Option<Scalar>,
}

/// `tcp:` options applied to both legs of every proxied connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTcp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_interval: Option<Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_timeout: Option<Scalar>,
}

/// Whether a section is all defaults (and so is not written).
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
