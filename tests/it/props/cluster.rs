//! The cluster description: valid descriptions check into what they say, mutated ones fail
//! with every problem at a key path, and no text panics the parser.

use std::net::IpAddr;

use apilb::cluster::{Cluster, Error, Etcd};
use apilb::config::Problem;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_yaml::Value;

use super::{cases, yaml};

const SECTIONS: &[&str] = &[
    "clusterName",
    "kubernetesVersion",
    "controlPlaneEndpoint",
    "loadBalancer",
    "masters",
    "networking",
    "etcd",
    "pki",
];

/// What a generated description says.
#[derive(Debug, Clone)]
struct Model {
    text: String,
    name: Option<String>,
    version: String,
    vips: Vec<IpAddr>,
    hosts: Vec<(String, IpAddr)>,
    masters: Vec<(String, IpAddr)>,
    etcd: Vec<(String, IpAddr)>,
    vrid: Option<u8>,
    endpoint_port: Option<u16>,
}

fn model() -> impl Strategy<Value = Model> {
    (
        (
            proptest::option::of("[a-z][a-z0-9-]{0,10}[a-z0-9]"),
            (20u32..36, 0u32..20),
            any::<bool>(),
            proptest::option::of(1u16..=65_535),
        ),
        (any::<bool>(), 0usize..3, proptest::option::of(1u8..=255)),
        (1usize..6, proptest::collection::vec(any::<bool>(), 5)),
        (proptest::option::of(1usize..4),),
        (
            proptest::option::of(select(vec![
                "RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256",
            ])),
            proptest::option::of((1u32..=87_600, 1u32..=8_760)),
            any::<bool>(),
        ),
    )
        .prop_map(|(head, lb, masters, etcd, pki)| {
            let (name, (minor, patch), endpoint_by_name, endpoint_port) = head;
            let (dual_stack, hosts, vrid) = lb;
            let (masters, sans) = masters;
            let (etcd,) = etcd;
            let (algorithm, validity, networking) = pki;
            let version = format!("v1.{minor}.{patch}");
            let mut vips: Vec<IpAddr> = vec!["10.0.0.100".parse().expect("literal")];
            if dual_stack {
                vips.push("fd00::100".parse().expect("literal"));
            }
            let hosts: Vec<(String, IpAddr)> = (0..hosts)
                .map(|i| (format!("lb-{i}"), format!("10.0.0.{}", 5 + i).parse().expect("literal")))
                .collect();
            let masters: Vec<(String, IpAddr)> = (0..masters)
                .map(|i| {
                    (format!("master-{i}"), format!("10.0.0.{}", 11 + i).parse().expect("literal"))
                })
                .collect();
            let etcd: Vec<(String, IpAddr)> = (0..etcd.unwrap_or(0))
                .map(|i| (format!("etcd-{i}"), format!("10.0.0.{}", 21 + i).parse().expect("literal")))
                .collect();
            let mut t = String::new();
            if let Some(n) = &name {
                t += &format!("clusterName: {n}\n");
            }
            t += &format!("kubernetesVersion: {version}\n");
            let host = if endpoint_by_name {
                "k8s-api.example.internal".to_owned()
            } else {
                "10.0.0.100".to_owned()
            };
            match endpoint_port {
                Some(p) => t += &format!("controlPlaneEndpoint: \"{host}:{p}\"\n"),
                None => t += &format!("controlPlaneEndpoint: {host}\n"),
            }
            t += "loadBalancer:\n";
            if dual_stack {
                t += "  vip: [10.0.0.100, \"fd00::100\"]\n";
            } else {
                t += "  vip: 10.0.0.100\n";
            }
            if !hosts.is_empty() {
                t += "  hosts:\n";
                for (n, a) in &hosts {
                    t += &format!("    - {{name: {n}, address: \"{a}\"}}\n");
                }
            }
            if let Some(v) = vrid {
                t += &format!(
                    "  vrrp: {{interface: eth0, vrid: {v}, prefixLength: 24, advertInterval: 100ms}}\n"
                );
            }
            t += "masters:\n";
            for (i, (n, a)) in masters.iter().enumerate() {
                if sans[i] {
                    t += &format!(
                        "  - {{name: {n}, address: \"{a}\", certSANs: [{n}.example.internal]}}\n"
                    );
                } else {
                    t += &format!("  - {{name: {n}, address: \"{a}\"}}\n");
                }
            }
            if networking {
                t += "networking: {serviceSubnet: 10.96.0.0/12, podSubnet: 10.244.0.0/16, \
                      dnsDomain: cluster.local}\n";
            }
            if etcd.is_empty() {
                t += "etcd: {topology: stacked}\n";
            } else {
                t += "etcd:\n  topology: external\n  members:\n";
                for (n, a) in &etcd {
                    t += &format!("    - {{name: {n}, address: \"{a}\"}}\n");
                }
            }
            let mut pki = Vec::new();
            if let Some(a) = algorithm {
                pki.push(format!("encryptionAlgorithm: {a}"));
            }
            if let Some((ca, cert)) = validity {
                let ca = ca.max(cert);
                pki.push(format!("caValidity: {ca}h, certValidity: {cert}h"));
            }
            if !pki.is_empty() {
                t += &format!("pki: {{{}}}\n", pki.join(", "));
            }
            Model {
                text: t,
                name,
                version,
                vips,
                hosts,
                masters,
                etcd,
                vrid,
                endpoint_port,
            }
        })
}

fn problems(text: &str) -> Option<Vec<Problem>> {
    match Cluster::from_yaml(text) {
        Ok(_) => None,
        Err(Error::Invalid(p)) => Some(p.list),
        Err(other) => panic!("from_yaml gave a non-Invalid error: {other}"),
    }
}

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
            "Master_1",
            "v1",
            "10.0.0.0/33",
            "rbac",
            "a..b",
            "10.0.0.11",
            "master-0",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<bool>().prop_map(Value::Bool),
        "\\PC{0,12}".prop_map(Value::String),
        Just(Value::Sequence(vec![Value::String("x".into())])),
        Just(Value::Mapping(serde_yaml::Mapping::new())),
        Just(Value::Null),
    ]
}

fn assert_located(text: &str, p: &Problem) {
    // Only an unknown top-level key is reported at the document itself; its message names it.
    assert!(
        !p.key.is_empty() || p.message.starts_with("unknown field `"),
        "problem without a key path: {p}\n--- cluster ---\n{text}"
    );
    let section = p.key.split(['.', '[']).next().unwrap_or("");
    assert!(
        p.key.is_empty() || SECTIONS.contains(&section),
        "problem key {:?} is not a cluster key path\n--- cluster ---\n{text}",
        p.key
    );
    assert!(
        p.position.line >= 1 && p.position.column >= 1,
        "problem {p} has no position\n--- cluster ---\n{text}"
    );
}

/// Machines are one namespace across `masters`, `loadBalancer.hosts` and `etcd.members`
/// (names and addresses must not collide), and the endpoint, VIPs and subnets are checked
/// against each other: a changed value there may be blamed on the other side.
fn explains(changed: &str, key: &str) -> bool {
    let section = |k: &str| k.split(['.', '[']).next().unwrap_or("").to_owned();
    let related = [
        "masters",
        "loadBalancer",
        "etcd",
        "controlPlaneEndpoint",
        "networking",
        "pki",
    ];
    key.starts_with(changed)
        || changed.starts_with(key)
        || section(changed) == section(key)
        || (related.contains(&section(changed).as_str())
            && related.contains(&section(key).as_str()))
}

proptest! {
    #![proptest_config(cases(96))]

    /// A valid description checks into what it says, and its YAML re-written by serde
    /// checks into the same cluster.
    #[test]
    fn valid_cluster_round_trips(m in model()) {
        let c = match Cluster::from_yaml(&m.text) {
            Ok(c) => c,
            Err(e) => panic!("a valid cluster was refused:\n{e}\n--- cluster ---\n{}", m.text),
        };
        prop_assert_eq!(c.name.clone(), m.name.clone().unwrap_or_else(|| "kubernetes".into()));
        prop_assert_eq!(&c.kubernetes_version, &m.version);
        prop_assert_eq!(&c.load_balancer.vips, &m.vips);
        let hosts: Vec<(String, IpAddr)> =
            c.load_balancer.hosts.iter().map(|h| (h.name.clone(), h.address)).collect();
        prop_assert_eq!(hosts, m.hosts.clone());
        let masters: Vec<(String, IpAddr)> =
            c.masters.iter().map(|h| (h.name.clone(), h.address)).collect();
        prop_assert_eq!(masters, m.masters.clone());
        let etcd: Vec<(String, IpAddr)> =
            c.etcd_members().iter().map(|h| (h.name.clone(), h.address)).collect();
        prop_assert_eq!(etcd, m.etcd.clone());
        prop_assert_eq!(matches!(c.etcd, Etcd::Stacked), m.etcd.is_empty());
        prop_assert_eq!(c.load_balancer.vrrp.as_ref().map(|v| v.vrid), m.vrid);
        prop_assert_eq!(c.control_plane_endpoint.port, m.endpoint_port.unwrap_or(6443));
        let rewritten = serde_yaml::to_string(&serde_yaml::from_str::<Value>(&m.text).unwrap())
            .unwrap();
        prop_assert_eq!(Cluster::from_yaml(&rewritten).unwrap(), c);
    }

    /// One value replaced by a wrong one: refused with every problem at a key path and a
    /// position, one of them explained by the change (or the value happened to be valid).
    #[test]
    fn every_problem_names_its_key(m in model(), pick in any::<Index>(), bad in bad_value()) {
        let mut doc: Value = serde_yaml::from_str(&m.text).unwrap();
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
                "changed {path}, but the problems are elsewhere: {:?}\n--- cluster ---\n{text}",
                list.iter().map(ToString::to_string).collect::<Vec<_>>()
            );
        }
    }

    /// An unknown key anywhere is refused: the problem sits at its parent key path and names it.
    #[test]
    fn unknown_keys_are_named(m in model(), pick in any::<Index>(), name in "[a-z][a-zA-Z]{0,8}") {
        let mut doc: Value = serde_yaml::from_str(&m.text).unwrap();
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
            "unknown key {full} not named: {:?}\n--- cluster ---\n{text}",
            list.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        for p in &list {
            assert_located(&text, p);
        }
    }

    /// Any text at all: an answer, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Some(list) = problems(&text) {
            prop_assert!(!list.is_empty());
        }
    }
}
