//! What a reload changes: [`ConfigDiff::new`] compares the running and the new [`Config`]
//! without touching anything and returns one typed slice per part of the process (listeners,
//! connection settings, backends, per-backend checks, DNS, VIP, metrics endpoint), or why the
//! new config cannot be applied while running. Each part applies only its slice, so only the
//! checks that changed restart.

use std::net::SocketAddr;

use super::{AnnounceConfig, BackendAddress, Config, VipConfig};

/// Why a new config cannot replace the running one without a restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; restart apilb to apply it")]
pub struct NotLive {
    /// What changed.
    pub what: String,
}

/// Listener changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerChanges {
    /// Addresses to bind, in config order.
    pub added: Vec<SocketAddr>,
    /// Addresses to close.
    pub removed: Vec<SocketAddr>,
    /// `tcp` changed: kept listeners are retuned (accepted sockets inherit the options).
    pub tcp_changed: bool,
    /// `listener` (backlog, reusePort, freebind, accept) changed: applies to new listeners
    /// only.
    pub options_changed: bool,
    /// `workers` changed: the running workers stay until restart.
    pub workers_changed: bool,
}

/// What happens to the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsChange {
    /// `metrics.listen` changed, or the section was added or removed: the endpoint moves.
    pub rebind: bool,
    /// `metrics.admin`, `metrics.watchCertificates` or `metrics.tls` changed.
    pub settings: bool,
}

/// What the VIP is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VipChange {
    /// No `vip` section, or the same one.
    Unchanged,
    /// The settings that can change live (priority, interval, preemption, tracking) did.
    Live(VipConfig),
}

/// What the route announcer is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceChange {
    /// No `announce` section, or the same one.
    Unchanged,
    /// The section changed: every key of it applies live.
    Live(AnnounceConfig),
}

/// A reload, sliced by the part of the process that applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Listeners to bind and close.
    pub listeners: ListenerChanges,
    /// `balance`, `maxConnections`, `forwarding`, `timeouts` or `tcp` changed: new
    /// connections read new settings.
    pub settings: bool,
    /// The backend list (names, addresses, weights, order) changed.
    pub backends: bool,
    /// Backends present before and after whose check settings changed (including their
    /// TLS files): only their checks restart.
    pub health: Vec<String>,
    /// DNS watches restart: `resolvers` or `dnsTtl` changed, or the DNS-named backends did.
    pub dns: bool,
    /// The VIP's slice.
    pub vip: VipChange,
    /// The route announcer's slice.
    pub announce: AnnounceChange,
    /// The metrics endpoint's slice.
    pub metrics: MetricsChange,
    /// `rebalance` changed: the rebalancer takes the new settings at its next step.
    pub rebalance: bool,
}

impl ConfigDiff {
    /// Compare `old` (running) with `new`.
    pub fn new(old: &Config, new: &Config) -> Result<ConfigDiff, NotLive> {
        let vip = vip_change(old.vip.as_ref(), new.vip.as_ref())?;
        let announce = announce_change(old.announce.as_ref(), new.announce.as_ref())?;
        let listeners = ListenerChanges {
            added: new
                .listen
                .iter()
                .filter(|a| !old.listen.contains(a))
                .copied()
                .collect(),
            removed: old
                .listen
                .iter()
                .filter(|a| !new.listen.contains(a))
                .copied()
                .collect(),
            tcp_changed: old.tcp != new.tcp,
            options_changed: old.listener != new.listener,
            workers_changed: old.workers.count() != new.workers.count(),
        };
        let settings = old.balance != new.balance
            || old.max_connections != new.max_connections
            || old.forwarding != new.forwarding
            || old.timeouts != new.timeouts
            || old.tcp != new.tcp;
        let shape = |c: &Config| -> Vec<(String, BackendAddress, u32)> {
            c.backends
                .iter()
                .map(|b| (b.name.clone(), b.address.clone(), b.weight))
                .collect()
        };
        let backends = shape(old) != shape(new);
        let health = new
            .backends
            .iter()
            .filter(|n| {
                old.backends
                    .iter()
                    .any(|o| o.name == n.name && o.health != n.health)
            })
            .map(|b| b.name.clone())
            .collect();
        let dns_named = |c: &Config| -> Vec<(String, BackendAddress)> {
            c.backends
                .iter()
                .filter(|b| matches!(b.address, BackendAddress::Dns { .. }))
                .map(|b| (b.name.clone(), b.address.clone()))
                .collect()
        };
        let dns = old.dns != new.dns || dns_named(old) != dns_named(new);
        let metrics = MetricsChange {
            rebind: old.metrics.as_ref().map(|m| m.listen)
                != new.metrics.as_ref().map(|m| m.listen),
            settings: old
                .metrics
                .as_ref()
                .map(|m| (m.admin, &m.watch_certificates, &m.tls))
                != new
                    .metrics
                    .as_ref()
                    .map(|m| (m.admin, &m.watch_certificates, &m.tls)),
        };
        Ok(ConfigDiff {
            listeners,
            settings,
            backends,
            health,
            dns,
            vip,
            announce,
            metrics,
            rebalance: old.rebalance != new.rebalance,
        })
    }

    /// True when the new config changes nothing that runs.
    pub fn is_empty(&self) -> bool {
        self.listeners == ListenerChanges::default()
            && !self.settings
            && !self.backends
            && self.health.is_empty()
            && !self.dns
            && !self.rebalance
            && self.vip == VipChange::Unchanged
            && self.announce == AnnounceChange::Unchanged
            && self.metrics == MetricsChange::default()
    }
}

/// The interface, VRID, addresses, peers and checksum style are what VRRP peers match on:
/// changing them, or adding or removing the section, needs a restart.
fn vip_change(old: Option<&VipConfig>, new: Option<&VipConfig>) -> Result<VipChange, NotLive> {
    let (old, new) = match (old, new) {
        (None, None) => return Ok(VipChange::Unchanged),
        (Some(_), None) => return Err(not_live("vip: the vip section was removed")),
        (None, Some(_)) => return Err(not_live("vip: a vip section was added")),
        (Some(o), Some(n)) => (o, n),
    };
    let mut changed = Vec::new();
    if old.interface != new.interface {
        changed.push(format!(
            "vip.interface ({} -> {})",
            old.interface, new.interface
        ));
    }
    if old.vrid != new.vrid {
        changed.push(format!("vip.vrid ({} -> {})", old.vrid, new.vrid));
    }
    if old.addresses != new.addresses {
        changed.push("vip.addresses".into());
    }
    if old.unicast_peers != new.unicast_peers {
        changed.push("vip.unicastPeers".into());
    }
    if old.checksum != new.checksum {
        changed.push("vip.checksum".into());
    }
    if !changed.is_empty() {
        return Err(not_live(&format!(
            "vip: {} cannot change while running",
            changed.join(", ")
        )));
    }
    Ok(if old == new {
        VipChange::Unchanged
    } else {
        VipChange::Live(new.clone())
    })
}

/// Every key of the section applies live; adding or removing the section (switching a
/// running host between announcing and not) needs a restart.
fn announce_change(
    old: Option<&AnnounceConfig>,
    new: Option<&AnnounceConfig>,
) -> Result<AnnounceChange, NotLive> {
    match (old, new) {
        (None, None) => Ok(AnnounceChange::Unchanged),
        (Some(_), None) => Err(not_live("announce: the announce section was removed")),
        (None, Some(_)) => Err(not_live("announce: an announce section was added")),
        (Some(o), Some(n)) if o == n => Ok(AnnounceChange::Unchanged),
        (Some(_), Some(n)) => Ok(AnnounceChange::Live(n.clone())),
    }
}

fn not_live(what: &str) -> NotLive {
    NotLive {
        what: what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let yaml = format!(
            "listen: [\"127.0.0.1:6443\"]\n\
             backends:\n  - {{name: a, address: \"127.0.0.1:7001\"}}\n  - {{name: b, address: \"127.0.0.1:7002\"}}\n{extra}"
        );
        Config::from_yaml(&yaml, "t.yaml").expect("valid")
    }

    fn diff(old: &str, new: &str) -> Result<ConfigDiff, NotLive> {
        ConfigDiff::new(&config(old), &config(new))
    }

    const VIP: &str =
        "vip: {interface: eth0, vrid: 51, priority: 150, addresses: [\"10.0.0.100/24\"]}\n";

    #[test]
    fn every_announce_key_is_live_and_the_section_itself_is_not() {
        const A: &str = "announce: {addresses: [10.0.0.100]}\n";
        assert!(diff(A, A).expect("live").is_empty());
        for new in [
            "announce: {addresses: [10.0.0.100, 10.0.0.101]}\n",
            "announce: {addresses: [10.0.0.100], interface: dummy0}\n",
            "announce: {addresses: [10.0.0.100], table: 101, protocol: 249}\n",
            "announce: {addresses: [10.0.0.100], hold: 1s, withdrawDelay: 0s}\n",
            "announce: {addresses: [10.0.0.100], track: {healthyBackendsBelow: 2}}\n",
        ] {
            let d = diff(A, new).expect("live");
            assert_eq!(
                d.announce,
                AnnounceChange::Live(config(new).announce.expect("announce")),
                "{new}"
            );
            let only = ConfigDiff {
                announce: AnnounceChange::Unchanged,
                ..d
            };
            assert!(only.is_empty(), "only the announce slice: {only:?}");
        }
        assert_eq!(
            diff(A, "").expect_err("refused").to_string(),
            "announce: the announce section was removed; restart apilb to apply it"
        );
        assert_eq!(
            diff("", A).expect_err("refused").to_string(),
            "announce: an announce section was added; restart apilb to apply it"
        );
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let d = diff("", "").expect("live");
        assert!(d.is_empty(), "{d:?}");
        let d = diff(VIP, VIP).expect("live");
        assert!(d.is_empty(), "{d:?}");
    }

    /// One row per kind of change: which slices it touches and nothing else.
    #[test]
    fn each_change_touches_only_its_slice() {
        let base = ConfigDiff::new(&config(""), &config("")).expect("live");
        let rows: &[(&str, &str, ConfigDiff)] = &[
            (
                "balance",
                "balance: round-robin\n",
                ConfigDiff {
                    settings: true,
                    ..base.clone()
                },
            ),
            (
                "timeouts",
                "timeouts: {idle: 2h}\n",
                ConfigDiff {
                    settings: true,
                    ..base.clone()
                },
            ),
            (
                "tcp",
                "tcp: {userTimeout: 5s}\n",
                ConfigDiff {
                    settings: true,
                    listeners: ListenerChanges {
                        tcp_changed: true,
                        ..ListenerChanges::default()
                    },
                    ..base.clone()
                },
            ),
            (
                "listener options",
                "listener: {backlog: 16}\n",
                ConfigDiff {
                    listeners: ListenerChanges {
                        options_changed: true,
                        ..ListenerChanges::default()
                    },
                    ..base.clone()
                },
            ),
            (
                "global health: every backend's checks",
                "health: {interval: 7s}\n",
                ConfigDiff {
                    health: vec!["a".into(), "b".into()],
                    ..base.clone()
                },
            ),
            (
                "metrics added",
                "metrics: {listen: \"127.0.0.1:9441\"}\n",
                ConfigDiff {
                    metrics: MetricsChange {
                        rebind: true,
                        settings: true,
                    },
                    ..base.clone()
                },
            ),
            (
                "resolvers",
                "resolvers: [\"127.0.0.53\"]\n",
                ConfigDiff {
                    dns: true,
                    ..base.clone()
                },
            ),
            (
                "rebalance",
                "rebalance: {skew: 1.5}\n",
                ConfigDiff {
                    rebalance: true,
                    ..base.clone()
                },
            ),
        ];
        for (what, extra, want) in rows {
            let got = diff("", extra).expect(what);
            assert_eq!(&got, want, "{what}");
        }
    }

    #[test]
    fn per_backend_health_restarts_only_that_backend() {
        let old = Config::from_yaml(
            "listen: [\"127.0.0.1:6443\"]\nhealth: {kind: tcp}\nbackends:\n  - {name: a, address: \"127.0.0.1:7001\"}\n  - {name: b, address: \"127.0.0.1:7002\"}\n",
            "t.yaml",
        )
        .expect("valid");
        let new = Config::from_yaml(
            "listen: [\"127.0.0.1:6443\"]\nhealth: {kind: tcp}\nbackends:\n  - {name: a, address: \"127.0.0.1:7001\"}\n  - {name: b, address: \"127.0.0.1:7002\", health: {fall: 5}}\n  - {name: c, address: \"127.0.0.1:7003\"}\n",
            "t.yaml",
        )
        .expect("valid");
        let d = ConfigDiff::new(&old, &new).expect("live");
        assert_eq!(
            d.health,
            ["b"],
            "a is unchanged, c is new (started, not restarted)"
        );
        assert!(d.backends);
        assert!(!d.dns && !d.settings);
    }

    #[test]
    fn listeners_added_and_removed_in_config_order() {
        let old = Config::from_yaml(
            "listen: [\"127.0.0.1:6443\", \"127.0.0.1:6444\"]\nbackends: [{name: a, address: \"127.0.0.1:7001\"}]\n",
            "t.yaml",
        )
        .expect("valid");
        let new = Config::from_yaml(
            "listen: [\"127.0.0.1:6446\", \"127.0.0.1:6444\", \"127.0.0.1:6445\"]\nbackends: [{name: a, address: \"127.0.0.1:7001\"}]\n",
            "t.yaml",
        )
        .expect("valid");
        let d = ConfigDiff::new(&old, &new).expect("live");
        assert_eq!(
            d.listeners.added,
            [
                "127.0.0.1:6446".parse().expect("a"),
                "127.0.0.1:6445".parse().expect("a")
            ]
        );
        assert_eq!(d.listeners.removed, ["127.0.0.1:6443".parse().expect("a")]);
        assert!(!d.backends && !d.settings);
    }

    #[test]
    fn dns_backends_and_weights() {
        let d = diff("", "").expect("live");
        assert!(!d.dns);
        let old = config("");
        let mut new = old.clone();
        new.backends[1].weight = 7;
        let d = ConfigDiff::new(&old, &new).expect("live");
        assert!(d.backends && !d.dns);
        new.backends[1].address = BackendAddress::Dns {
            host: "m.example".into(),
            port: 6443,
        };
        let d = ConfigDiff::new(&old, &new).expect("live");
        assert!(d.backends && d.dns);
    }

    #[test]
    fn vip_identity_needs_a_restart_and_the_rest_is_live() {
        let d = diff(VIP, &VIP.replace("priority: 150", "priority: 90")).expect("live");
        match d.vip {
            VipChange::Live(v) => assert_eq!(v.priority, 90),
            VipChange::Unchanged => panic!("priority is live"),
        }
        let e = diff(
            VIP,
            &VIP.replace("eth0", "eth1").replace("vrid: 51", "vrid: 52"),
        )
        .expect_err("not live");
        assert_eq!(
            e.to_string(),
            "vip: vip.interface (eth0 -> eth1), vip.vrid (51 -> 52) cannot change while running; restart apilb to apply it"
        );
        assert_eq!(
            diff(VIP, "").expect_err("removed").to_string(),
            "vip: the vip section was removed; restart apilb to apply it"
        );
        assert_eq!(
            diff("", VIP).expect_err("added").to_string(),
            "vip: a vip section was added; restart apilb to apply it"
        );
    }

    /// Generated pairs of configs: a config compared with itself changes nothing, and two
    /// configs that differ in anything the runtime uses differ in at least one slice (a
    /// field the diff forgot fails here). Half the pairs differ in one knob only, so every
    /// field is also seen changing alone.
    #[test]
    fn generated_pairs_differ_exactly_when_some_slice_does() {
        let mut seed: u64 = std::env::var("APILB_DIFF_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_d1ff);
        eprintln!("seed {seed} (APILB_DIFF_SEED={seed} replays it)");
        let mut next = move |n: usize| -> usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        // Each knob: its choices ("" = left out).
        let knobs: Vec<Vec<&str>> = vec![
            vec![
                "listen: [\"127.0.0.1:6443\"]\n",
                "listen: [\"127.0.0.1:6443\", \"127.0.0.1:6444\"]\n",
                "listen: [\"127.0.0.1:6444\"]\n",
            ],
            vec!["", "balance: round-robin\n", "balance: random-two\n"],
            vec!["", "maxConnections: 10\n"],
            vec!["", "forwarding: copy\n", "forwarding: splice\n"],
            vec!["", "workers: 3\n", "workers: 1024\n"],
            vec![
                "",
                "timeouts: {idle: 2h}\n",
                "timeouts: {connect: 1s, drain: 5s}\n",
            ],
            vec![
                "",
                "listener: {backlog: 16}\n",
                "listener: {reusePort: true}\n",
                "listener: {accept: shared}\n",
            ],
            vec!["", "tcp: {userTimeout: 5s}\n"],
            vec![
                "",
                "health: {interval: 7s}\n",
                "health: {kind: tcp, rise: 3}\n",
            ],
            vec![
                "",
                "metrics: {listen: \"127.0.0.1:9441\"}\n",
                "metrics: {listen: \"127.0.0.1:9442\", admin: any}\n",
                "metrics: {listen: \"127.0.0.1:9441\", watchCertificates: [/etc/a.crt]}\n",
            ],
            vec!["", "resolvers: [\"127.0.0.53\"]\n", "dnsTtl: {min: 1s}\n"],
            vec![
                "",
                "vip: {interface: eth0, vrid: 51, addresses: [\"10.0.0.100/24\"]}\n",
                "vip: {interface: eth0, vrid: 51, priority: 90, addresses: [\"10.0.0.100/24\"]}\n",
            ],
            // Backends @a, @b, @c: absent, by IP, by IP with weight 3, by DNS name, with a
            // health override, with checks off.
            vec![
                "",
                "@a",
                "@a|weight: 3",
                "@a|dns",
                "@a|health: {fall: 4}",
                "@a|health: {kind: none}",
            ],
            vec![
                "",
                "@b",
                "@b|weight: 3",
                "@b|dns",
                "@b|health: {fall: 4}",
                "@b|health: {kind: none}",
            ],
            vec![
                "",
                "@c",
                "@c|weight: 3",
                "@c|dns",
                "@c|health: {fall: 4}",
                "@c|health: {kind: none}",
            ],
        ];
        let build = |genes: &[usize]| -> Config {
            let mut yaml = String::new();
            let mut backends = String::new();
            for (knob, &g) in knobs.iter().zip(genes) {
                let v = knob[g];
                let Some(backend) = v.strip_prefix('@') else {
                    yaml.push_str(v);
                    continue;
                };
                match backend.split_once('|') {
                    None => backends.push_str(&format!(
                        "  - {{name: {backend}, address: \"127.0.0.1:70{}\"}}\n",
                        backend.as_bytes()[0]
                    )),
                    Some((name, "dns")) => backends.push_str(&format!(
                        "  - {{name: {name}, address: \"{name}.example:6443\"}}\n"
                    )),
                    Some((name, extra)) => backends.push_str(&format!(
                        "  - {{name: {name}, address: \"127.0.0.1:70{}\", {extra}}}\n",
                        name.as_bytes()[0]
                    )),
                }
            }
            if backends.is_empty() {
                backends.push_str("  - {name: z, address: \"127.0.0.1:7009\"}\n");
            }
            yaml.push_str("backends:\n");
            yaml.push_str(&backends);
            match Config::from_yaml(&yaml, "gen.yaml") {
                Ok(c) => c,
                Err(e) => panic!("generated an invalid config:\n{yaml}\n{e}"),
            }
        };
        // The global health section reaches the runtime only through the backends'
        // effective settings, which the comparison covers.
        let runtime = |c: &Config| Config {
            health: Default::default(),
            ..c.clone()
        };
        let mut differing = 0;
        for round in 0..4000 {
            let a_genes: Vec<usize> = knobs.iter().map(|k| next(k.len())).collect();
            let mut b_genes = a_genes.clone();
            if round % 2 == 0 {
                let k = next(knobs.len());
                b_genes[k] = next(knobs[k].len());
            } else {
                b_genes = knobs.iter().map(|k| next(k.len())).collect();
            }
            let (a, b) = (build(&a_genes), build(&b_genes));
            assert!(ConfigDiff::new(&a, &a).expect("itself").is_empty());
            match ConfigDiff::new(&a, &b) {
                Ok(d) => {
                    assert_eq!(
                        d.is_empty(),
                        runtime(&a) == runtime(&b),
                        "{a:#?}\n{b:#?}\n{d:#?}"
                    );
                    differing += usize::from(!d.is_empty());
                    // Swapping the two adds what was removed and removes what was added.
                    let back = ConfigDiff::new(&b, &a).expect("live both ways");
                    assert_eq!(back.listeners.added, d.listeners.removed);
                    assert_eq!(back.listeners.removed, d.listeners.added);
                }
                Err(e) => {
                    assert!(a.vip != b.vip, "only the vip section refuses: {e}");
                    assert!(ConfigDiff::new(&b, &a).is_err(), "refused both ways");
                }
            }
        }
        assert!(
            differing > 1500,
            "the generator varies configs: {differing}"
        );
    }
}
