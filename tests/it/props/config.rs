//! The LB config: valid files round-trip, mutated files fail with every problem at a key
//! path, and no text panics the parser.

use std::net::SocketAddr;
use std::time::Duration;

use apilb::config::raw::{
    FileConfig, RawBackend, RawDnsTtl, RawHealth, RawListener, RawMetrics, RawTcp, RawTimeouts,
    RawTrack, RawVip,
};
use apilb::config::{BackendAddress, Config, Error, Problem};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_yaml::Value;

use super::{cases, yaml};

/// The sections a config's key paths start with.
pub(crate) const SECTIONS: &[&str] = &[
    "listen",
    "backends",
    "balance",
    "maxConnections",
    "forwarding",
    "timeouts",
    "listener",
    "tcp",
    "health",
    "metrics",
    "resolvers",
    "dnsTtl",
    "vip",
];

/// A duration written in one of the units the syntax allows, and its value.
pub(crate) fn duration(min_ms: u64, max_ms: u64) -> impl Strategy<Value = (String, Duration)> {
    (min_ms..=max_ms, 0usize..4).prop_map(|(ms, unit)| {
        // Round down to the unit, but never below the minimum.
        let (text, d) = match unit {
            1 if ms % 1000 == 0 => (format!("{}s", ms / 1000), ms),
            2 if ms % 60_000 == 0 => (format!("{}m", ms / 60_000), ms),
            3 if ms >= 1000 => {
                let s = ms / 1000;
                (format!("{s}s"), s * 1000)
            }
            _ => (format!("{ms}ms"), ms),
        };
        (text, Duration::from_millis(d))
    })
}

/// What a generated valid config says, to compare the checked [`Config`] with.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) raw: FileConfig,
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) backends: Vec<(String, BackendAddress, u32)>,
    pub(crate) max_connections: Option<u64>,
    pub(crate) health_interval: Option<Duration>,
    pub(crate) vrid: Option<u8>,
}

fn listen_addrs() -> impl Strategy<Value = Vec<SocketAddr>> {
    proptest::collection::btree_set((0usize..3, 1u16..=65_535), 1..4).prop_map(|set| {
        set.into_iter()
            .map(|(host, port)| {
                let ip = ["127.0.0.1", "::1", "0.0.0.0"][host];
                SocketAddr::new(ip.parse().expect("literal"), port)
            })
            .collect()
    })
}

fn backend_address(i: usize) -> impl Strategy<Value = (String, BackendAddress)> {
    (0usize..3, 1u16..=65_535).prop_map(move |(kind, port)| match kind {
        0 => {
            let a: SocketAddr = format!("10.0.{}.{}:{port}", i / 200, i % 200 + 1)
                .parse()
                .expect("literal");
            (a.to_string(), BackendAddress::Ip(a))
        }
        1 => {
            let a: SocketAddr = format!("[fd00::{:x}]:{port}", i + 1)
                .parse()
                .expect("literal");
            (a.to_string(), BackendAddress::Ip(a))
        }
        _ => {
            let host = format!("master-{i}.example.internal");
            (format!("{host}:{port}"), BackendAddress::Dns { host, port })
        }
    })
}

fn backends() -> impl Strategy<Value = Vec<(RawBackend, (String, BackendAddress, u32))>> {
    (1usize..5).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                (
                    backend_address(i),
                    proptest::option::of(1u32..=1000),
                    proptest::option::of(duration(500, 5_000)),
                )
                    .prop_map(move |((text, addr), weight, interval)| {
                        let name = format!("b{i}");
                        let raw = RawBackend {
                            name: Some(name.as_str().into()),
                            address: Some(text.into()),
                            weight: weight.map(Into::into),
                            // An override above the global fastInterval (at most 500ms).
                            health: interval.map(|(t, _)| RawHealth {
                                interval: Some(t.into()),
                                ..RawHealth::default()
                            }),
                        };
                        (raw, (name, addr, weight.unwrap_or(1)))
                    })
            })
            .collect::<Vec<_>>()
    })
}

fn health() -> impl Strategy<Value = Option<(RawHealth, Duration)>> {
    proptest::option::of(
        (
            select(vec!["none", "tcp"]),
            duration(500, 10_000),
            duration(10, 500),
            duration(10, 5_000),
            (1u32..=100, 1u32..=100, 0u32..=100),
            duration(0, 120_000),
            select(vec!["keep", "close"]),
        )
            .prop_map(
                |(kind, interval, fast, timeout, (rise, fall, passive), slow, on_down)| {
                    let raw = RawHealth {
                        kind: Some(kind.into()),
                        interval: Some(interval.0.into()),
                        fast_interval: Some(fast.0.into()),
                        timeout: Some(timeout.0.into()),
                        rise: Some(rise.into()),
                        fall: Some(fall.into()),
                        passive_fall: Some(passive.into()),
                        slow_start: Some(slow.0.into()),
                        on_down: Some(on_down.into()),
                        ..RawHealth::default()
                    };
                    (raw, interval.1)
                },
            ),
    )
}

/// A valid `vip` section, and its VRID.
fn vip() -> impl Strategy<Value = (RawVip, u8)> {
    (
        (
            select(vec!["eth0", "ens3", "bond0.100"]),
            1u8..=255,
            any::<bool>(),
        ),
        (
            proptest::option::of(1u8..=254),
            proptest::option::of(1u16..=4095),
            proptest::option::of(any::<bool>()),
            proptest::option::of(duration(0, 600_000)),
        ),
        (
            proptest::collection::vec(1u8..=254, 0..3),
            proptest::option::of(select(vec!["keepalived", "rfc9568"])),
            proptest::option::of((1u32..=10_000, proptest::option::of(1u32..=253))),
        ),
    )
        .prop_map(|(head, timing, rest)| {
            let (interface, vrid, dual) = head;
            let (priority, interval_cs, preempt, delay) = timing;
            let (peers, checksum, track) = rest;
            let mut addresses = vec!["10.0.0.100/24".into()];
            if dual {
                addresses.push("fd00::100/64".into());
            }
            let raw = RawVip {
                interface: Some(interface.into()),
                vrid: Some(vrid.into()),
                addresses,
                priority: priority.map(Into::into),
                advert_interval: interval_cs.map(|cs| format!("{}ms", u32::from(cs) * 10).into()),
                preempt: preempt.map(Into::into),
                preempt_delay: delay.map(|d| d.0.into()),
                unicast_peers: peers
                    .into_iter()
                    .map(|last| format!("10.0.0.{last}").into())
                    .collect(),
                checksum: checksum.map(Into::into),
                track: track.map(|(below, weight)| RawTrack {
                    healthy_backends_below: Some(below.into()),
                    weight: weight.map(Into::into),
                    hold: None,
                }),
                handover: None,
            };
            (raw, vrid)
        })
}

/// A valid config with every section present or absent at random.
pub(crate) fn model() -> impl Strategy<Value = Model> {
    let settings = (
        proptest::option::of(select(vec![
            "least-connections",
            "round-robin",
            "random-two",
        ])),
        proptest::option::of(1u64..=10_000_000),
        proptest::option::of(select(vec!["auto", "splice", "copy"])),
        (
            proptest::option::of(duration(1, 10_000)),
            proptest::option::of(duration(1_000, 7_200_000)),
            proptest::option::of(duration(0, 600_000)),
        ),
        (
            proptest::option::of(1u32..=65_535),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        ),
        proptest::option::of(duration(1_000, 600_000)),
    );
    let extras = (
        proptest::option::of((1u16..=65_535, select(vec!["loopback", "any", "off"]))),
        proptest::option::of(proptest::collection::vec(
            (0u8..=255, proptest::option::of(1u16..=65_535)),
            1..3,
        )),
        proptest::option::of((duration(100, 10_000), duration(10_000, 600_000))),
        proptest::option::of(vip()),
    );
    (listen_addrs(), backends(), health(), settings, extras).prop_map(
        |(listen, backends, health, settings, extras)| {
            let (balance, max_conn, forwarding, (connect, idle, drain), listener, keepalive) =
                settings;
            let (metrics, resolvers, dns_ttl, vip) = extras;
            let raw = FileConfig {
                listen: listen.iter().map(|a| a.to_string().into()).collect(),
                backends: backends.iter().map(|(r, _)| r.clone()).collect(),
                balance: balance.map(Into::into),
                max_connections: max_conn.map(Into::into),
                forwarding: forwarding.map(Into::into),
                timeouts: RawTimeouts {
                    connect: connect.map(|d| d.0.into()),
                    idle: idle.map(|d| d.0.into()),
                    drain: drain.map(|d| d.0.into()),
                    ..RawTimeouts::default()
                },
                listener: RawListener {
                    backlog: listener.0.map(Into::into),
                    reuse_port: listener.1.map(Into::into),
                    freebind: listener.2.map(Into::into),
                    ..RawListener::default()
                },
                tcp: RawTcp {
                    keepalive_time: keepalive.clone().map(|d| d.0.into()),
                    keepalive_interval: None,
                    user_timeout: keepalive.map(|d| d.0.into()),
                },
                health: health.as_ref().map(|(h, _)| h.clone()),
                metrics: metrics.map(|(port, admin)| RawMetrics {
                    listen: Some(format!("127.0.0.1:{port}").into()),
                    admin: Some(admin.into()),
                    watch_certificates: Vec::new(),
                    ..RawMetrics::default()
                }),
                resolvers: resolvers.map(|list| {
                    list.into_iter()
                        .map(|(last, port)| match port {
                            Some(p) => format!("127.0.0.{last}:{p}").into(),
                            None => format!("127.0.0.{last}").into(),
                        })
                        .collect()
                }),
                dns_ttl: dns_ttl.map_or_else(RawDnsTtl::default, |(min, max)| RawDnsTtl {
                    min: Some(min.0.into()),
                    max: Some(max.0.into()),
                }),
                vip: vip.as_ref().map(|(v, _)| v.clone()),
                ..FileConfig::default()
            };
            Model {
                raw,
                listen,
                backends: backends.into_iter().map(|(_, m)| m).collect(),
                max_connections: max_conn,
                health_interval: health.map(|(_, d)| d),
                vrid: vip.map(|(_, vrid)| vrid),
            }
        },
    )
}

/// The problems of a config that must not parse.
fn problems(text: &str) -> Option<Vec<Problem>> {
    match Config::from_yaml(text, "lb.yaml") {
        Ok(_) => None,
        Err(Error::Invalid(p)) => Some(p.list),
        Err(other) => panic!("from_yaml gave a non-Invalid error: {other}"),
    }
}

/// Values that are wrong for most keys (and right for a few, which is fine).
fn bad_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            "",
            " ",
            "x",
            "-1",
            "0",
            "1.5",
            "1 hour",
            "99999999999999999999",
            "::",
            "[::1]",
            "true",
            "10.0.0.1",
            "10.0.0.1:0",
            "1h30",
            "ms",
            "/",
            "a b",
            "least",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        any::<bool>().prop_map(Value::Bool),
        "\\PC{0,12}".prop_map(Value::String),
        Just(Value::Sequence(vec![Value::String("x".into())])),
        Just(Value::Mapping(serde_yaml::Mapping::new())),
        Just(Value::Null),
    ]
}

/// Whether a problem at `key` is one that changing `changed` can explain: the same key, or a
/// key of the same section (`dnsTtl.max` for `dnsTtl.min`; the global `health.*` for a
/// backend's `health.*`, whose merged section is checked together).
pub(crate) fn explains(changed: &str, key: &str) -> bool {
    let section = |k: &str| -> String {
        let end = k.find(['.', '[']).map_or(k.len(), |i| i);
        k[..end].to_owned()
    };
    let backend = |k: &str| -> Option<String> {
        k.strip_prefix("backends[")
            .and_then(|r| r.split_once(']'))
            .map(|(i, _)| i.to_owned())
    };
    if key.starts_with(changed) || changed.starts_with(key) {
        return true;
    }
    match (backend(changed), backend(key)) {
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => changed.contains(".health") && key.starts_with("health"),
        _ => section(changed) == section(key),
    }
}

fn assert_located(text: &str, p: &Problem) {
    // Only an unknown top-level key is reported at the document itself; its message names it.
    assert!(
        !p.key.is_empty() || p.message.starts_with("unknown field `"),
        "problem without a key path: {p}\n--- config ---\n{text}"
    );
    let section = p.key.split(['.', '[']).next().unwrap_or("");
    assert!(
        p.key.is_empty() || SECTIONS.contains(&section),
        "problem key {:?} is not a config key path\n--- config ---\n{text}",
        p.key
    );
    assert!(
        p.position.line >= 1 && p.position.column >= 1,
        "problem {p} has no position ({:?})\n--- config ---\n{text}",
        p.position
    );
}

proptest! {
    #![proptest_config(cases(96))]

    /// A valid config, written by serde, reads back to the same raw form and checks into a
    /// config that says what the model says.
    #[test]
    fn valid_config_round_trips(m in model()) {
        let text = serde_yaml::to_string(&m.raw).unwrap();
        let back: FileConfig = serde_yaml::from_str(&text).unwrap();
        prop_assert_eq!(&back, &m.raw, "raw form changed through its text:\n{}", text);
        let c = match Config::from_yaml(&text, "lb.yaml") {
            Ok(c) => c,
            Err(e) => panic!("a valid config was refused:\n{e}\n--- config ---\n{text}"),
        };
        prop_assert_eq!(&c.listen, &m.listen);
        let got: Vec<(String, BackendAddress, u32)> = c
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.address.clone(), b.weight))
            .collect();
        prop_assert_eq!(got, m.backends.clone());
        if let Some(n) = m.max_connections {
            prop_assert_eq!(c.max_connections as u64, n);
        }
        if let Some(d) = m.health_interval {
            prop_assert_eq!(c.health.interval, d);
        }
        prop_assert_eq!(c.vip.as_ref().map(|v| v.vrid), m.vrid);
        // Checking is a function of the text: the same text gives the same config.
        let again = Config::from_yaml(&text, "lb.yaml").unwrap();
        prop_assert_eq!(c, again);
    }

    /// One value replaced by a wrong one: the config is refused with every problem at a key
    /// path and a position, and one of them explained by the changed key (or the value
    /// happened to be valid).
    #[test]
    fn every_problem_names_its_key(m in model(), pick in any::<Index>(), bad in bad_value()) {
        let mut doc = serde_yaml::to_value(&m.raw).unwrap();
        let leaves = yaml::leaves(&doc);
        let path = pick.get(&leaves).clone();
        yaml::set(&mut doc, &path, bad);
        let text = serde_yaml::to_string(&doc).unwrap();
        if let Some(list) = problems(&text) {
            prop_assert!(!list.is_empty());
            for p in &list {
                assert_located(&text, p);
            }
            prop_assert!(
                list.iter().any(|p| explains(&path, &p.key)),
                "changed {path}, but the problems are elsewhere: {:?}\n--- config ---\n{text}",
                list.iter().map(ToString::to_string).collect::<Vec<_>>()
            );
        }
    }

    /// An unknown key anywhere is refused: the problem sits at its parent key path and names it.
    #[test]
    fn unknown_keys_are_named(m in model(), pick in any::<Index>(), name in "[a-z][a-zA-Z]{0,8}") {
        let mut doc = serde_yaml::to_value(&m.raw).unwrap();
        let maps = yaml::mappings(&doc);
        let at = pick.get(&maps).clone();
        let key = format!("zz{name}");
        let full = yaml::add_key(&mut doc, &at, &key, Value::Bool(true));
        // An unknown key's problem is placed at its parent (the document for a top-level
        // key) and names the key itself in the message.
        let unknown = format!("unknown field `{key}`");
        let text = serde_yaml::to_string(&doc).unwrap();
        let list = problems(&text).expect("an unknown key must be refused");
        prop_assert!(
            list.iter().any(|p| p.key == at && p.message.starts_with(&unknown)),
            "unknown key {full} not named: {:?}\n--- config ---\n{text}",
            list.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        for p in &list {
            assert_located(&text, p);
        }
    }

    /// Any text at all: the parser answers without panicking, and a refusal lists at least
    /// one problem.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Some(list) = problems(&text) {
            prop_assert!(!list.is_empty());
        }
    }

    /// Text built from YAML's own punctuation and the config's keys, which reaches deeper
    /// than arbitrary characters.
    #[test]
    fn yaml_shaped_text_never_panics(parts in proptest::collection::vec(select(vec![
        "listen", "backends", "health", "vip", "metrics", ":", " ", "\n", "  ", "- ", "[", "]",
        "{", "}", ",", "\"", "'", "&a", "*a", "<<", "!!str", "#", "127.0.0.1:1", "name", "address",
        "1s", "interval", "?", "|", ">", "~", "null", "[]", "{}",
    ]), 0..60)) {
        let text: String = parts.concat();
        if let Some(list) = problems(&text) {
            prop_assert!(!list.is_empty());
        }
    }
}
