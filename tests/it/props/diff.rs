//! ConfigDiff: a config against itself changes nothing, and against another config names
//! exactly the slices that differ. The two configs are drawn from a few knobs each, so that
//! they often agree on some and differ on others; the expected slices come from the knobs,
//! not from the configs, so the test does not restate the code.

use std::net::SocketAddr;

use apilb::config::Config;
use apilb::config::diff::{ConfigDiff, VipChange};
use proptest::prelude::*;

use super::cases;

const LISTEN: [&str; 3] = ["127.0.0.1:7001", "127.0.0.1:7002", "[::1]:7003"];
const BALANCE: [&str; 3] = ["least-connections", "round-robin", "random-two"];

/// The knobs one config is written from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Knobs {
    /// Which of [`LISTEN`] (a non-empty subset).
    listen: u8,
    balance: usize,
    max_connections: u32,
    /// Per backend b0..b2.
    weights: [u32; 3],
    /// Per backend, its own `health.interval` in seconds.
    intervals: [u32; 3],
    /// b2 by name (DNS) instead of by address.
    b2_dns: bool,
    resolver: Option<u8>,
    /// `metrics`: port and admin.
    metrics: Option<(u16, &'static str)>,
    idle_s: u32,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        1u8..8,
        0usize..3,
        prop_oneof![Just(100u32), Just(200)],
        [1u32..3, 1u32..3, 1u32..3],
        [1u32..3, 1u32..3, 1u32..3],
        any::<bool>(),
        proptest::option::of(53u8..55),
        proptest::option::of((9441u16..9443, prop_oneof![Just("loopback"), Just("off")])),
        prop_oneof![Just(60u32), Just(3600)],
    )
        .prop_map(
            |(
                listen,
                balance,
                max_connections,
                weights,
                intervals,
                b2_dns,
                resolver,
                metrics,
                idle_s,
            )| {
                Knobs {
                    listen,
                    balance,
                    max_connections,
                    weights,
                    intervals,
                    b2_dns,
                    resolver,
                    metrics,
                    idle_s,
                }
            },
        )
}

impl Knobs {
    fn listen(&self) -> Vec<SocketAddr> {
        (0..3)
            .filter(|i| self.listen & (1 << i) != 0)
            .map(|i| LISTEN[i].parse().expect("literal"))
            .collect()
    }

    fn yaml(&self) -> String {
        let mut t = String::from("listen:\n");
        for a in self.listen() {
            t += &format!("  - \"{a}\"\n");
        }
        t += "backends:\n";
        for i in 0..3 {
            let address = if i == 2 && self.b2_dns {
                "b2.example.internal:6443".to_owned()
            } else {
                format!("10.0.0.{}:6443", i + 1)
            };
            t += &format!(
                "  - {{name: b{i}, address: \"{address}\", weight: {}, health: {{interval: {}s}}}}\n",
                self.weights[i], self.intervals[i]
            );
        }
        t += &format!(
            "balance: {}\nmaxConnections: {}\ntimeouts: {{idle: {}s}}\n",
            BALANCE[self.balance], self.max_connections, self.idle_s
        );
        if let Some(r) = self.resolver {
            t += &format!("resolvers: [\"127.0.0.{r}\"]\n");
        }
        if let Some((port, admin)) = self.metrics {
            t += &format!("metrics: {{listen: \"127.0.0.1:{port}\", admin: {admin}}}\n");
        }
        t
    }

    fn config(&self) -> Config {
        let text = self.yaml();
        Config::from_yaml(&text, "lb.yaml")
            .unwrap_or_else(|e| panic!("knobs gave an invalid config: {e}\n{text}"))
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// A config against itself: nothing to apply.
    #[test]
    fn diff_with_itself_is_empty(k in knobs()) {
        let c = k.config();
        let d = ConfigDiff::new(&c, &c).unwrap();
        prop_assert!(d.is_empty(), "{d:?}");
    }

    /// Each slice is set exactly when its knobs differ.
    #[test]
    fn diff_names_exactly_what_changed(a in knobs(), b in knobs()) {
        let d = ConfigDiff::new(&a.config(), &b.config()).unwrap();
        let (la, lb) = (a.listen(), b.listen());
        let added: Vec<SocketAddr> = lb.iter().filter(|x| !la.contains(x)).copied().collect();
        let removed: Vec<SocketAddr> = la.iter().filter(|x| !lb.contains(x)).copied().collect();
        prop_assert_eq!(&d.listeners.added, &added);
        prop_assert_eq!(&d.listeners.removed, &removed);
        prop_assert!(!d.listeners.tcp_changed && !d.listeners.options_changed);
        prop_assert_eq!(
            d.settings,
            a.balance != b.balance || a.max_connections != b.max_connections || a.idle_s != b.idle_s
        );
        prop_assert_eq!(d.backends, a.weights != b.weights || a.b2_dns != b.b2_dns);
        let health: Vec<String> = (0..3)
            .filter(|&i| a.intervals[i] != b.intervals[i])
            .map(|i| format!("b{i}"))
            .collect();
        prop_assert_eq!(&d.health, &health);
        prop_assert_eq!(d.dns, a.resolver != b.resolver || a.b2_dns != b.b2_dns);
        prop_assert_eq!(&d.vip, &VipChange::Unchanged);
        prop_assert_eq!(d.metrics.rebind, a.metrics.map(|m| m.0) != b.metrics.map(|m| m.0));
        prop_assert_eq!(
            d.metrics.settings,
            a.metrics.map(|m| m.1) != b.metrics.map(|m| m.1)
        );
        prop_assert_eq!(d.is_empty(), a == b);
    }
}
