//! The LB config file as written: serde types with camelCase keys and unknown keys denied.
//!
//! Values whose checking needs context (addresses, durations, enum names) are kept as
//! [`Scalar`] text here and checked in [`super::Config::from_raw`], so that every such problem
//! is reported at once instead of stopping at the first.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Vec<Scalar>,
    pub(crate) backends: Vec<RawBackend>,
    pub(crate) balance: Option<Scalar>,
    pub(crate) max_connections: Option<Scalar>,
    pub(crate) forwarding: Option<Scalar>,
    #[serde(default)]
    pub(crate) timeouts: RawTimeouts,
    #[serde(default)]
    pub(crate) listener: RawListener,
    #[serde(default)]
    pub(crate) tcp: RawTcp,
    pub(crate) health: Option<RawHealth>,
    pub(crate) metrics: Option<RawMetrics>,
    /// DNS servers for DNS-named backends (default: the system's resolv.conf).
    pub(crate) resolvers: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(crate) dns_ttl: RawDnsTtl,
    pub(crate) vip: Option<RawVip>,
}

/// `dnsTtl:`: bounds on how long a DNS answer is used before asking again.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawDnsTtl {
    pub(crate) min: Option<Scalar>,
    pub(crate) max: Option<Scalar>,
}

/// `vip:`: VRRPv3 failover of the listening addresses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawVip {
    pub(crate) interface: Scalar,
    pub(crate) vrid: Scalar,
    pub(crate) addresses: Vec<Scalar>,
    pub(crate) priority: Option<Scalar>,
    pub(crate) advert_interval: Option<Scalar>,
    pub(crate) preempt: Option<Scalar>,
    pub(crate) preempt_delay: Option<Scalar>,
    #[serde(default)]
    pub(crate) unicast_peers: Vec<Scalar>,
    pub(crate) checksum: Option<Scalar>,
    pub(crate) track: Option<RawTrack>,
}

/// `vip.track:`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawTrack {
    pub(crate) healthy_backends_below: Scalar,
    pub(crate) weight: Option<Scalar>,
    pub(crate) hold: Option<Scalar>,
}

/// `metrics:`: the HTTP endpoint for metrics, status and backend state changes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Scalar,
    pub(crate) admin: Option<Scalar>,
    #[serde(default)]
    pub(crate) watch_certificates: Vec<Scalar>,
}

/// One `backends[]` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub(crate) name: Scalar,
    pub(crate) address: Scalar,
    pub(crate) weight: Option<Scalar>,
    /// Overrides of the global `health` keys for this backend.
    pub(crate) health: Option<RawHealth>,
}

/// `health:` (global) and `backends[].health:` (overrides).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub(crate) kind: Option<Scalar>,
    pub(crate) path: Option<Scalar>,
    pub(crate) live_path: Option<Scalar>,
    pub(crate) interval: Option<Scalar>,
    pub(crate) fast_interval: Option<Scalar>,
    pub(crate) timeout: Option<Scalar>,
    pub(crate) rise: Option<Scalar>,
    pub(crate) fall: Option<Scalar>,
    pub(crate) passive_fall: Option<Scalar>,
    pub(crate) slow_start: Option<Scalar>,
    pub(crate) on_down: Option<Scalar>,
    pub(crate) tls: Option<RawHealthTls>,
}

/// `health.tls:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawHealthTls {
    pub(crate) ca: Option<Scalar>,
    pub(crate) cert: Option<Scalar>,
    pub(crate) key: Option<Scalar>,
    pub(crate) server_name: Option<Scalar>,
}

impl RawHealth {
    /// `self` with every key that `over` sets replaced by `over`'s value.
    pub(crate) fn merged(&self, over: &RawHealth) -> RawHealth {
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
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub(crate) connect: Option<Scalar>,
    pub(crate) idle: Option<Scalar>,
    pub(crate) drain: Option<Scalar>,
}

/// `listener:` socket options applied to every listening socket.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) backlog: Option<Scalar>,
    pub(crate) reuse_port: Option<Scalar>,
    pub(crate) freebind: Option<Scalar>,
}

/// `tcp:` options applied to both legs of every proxied connection.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawTcp {
    pub(crate) keepalive_time: Option<Scalar>,
    pub(crate) keepalive_interval: Option<Scalar>,
    pub(crate) user_timeout: Option<Scalar>,
}

/// Any YAML scalar (string, number, bool) kept as its text.
///
/// `drain: 30` and `drain: "30s"` both arrive here; the checker then says what is wrong
/// with `30` (no unit) instead of serde's "expected a string".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (string, number or boolean)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}
