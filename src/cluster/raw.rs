//! The cluster description exactly as written in YAML: serde types with camelCase keys and
//! unknown keys rejected. Values stay strings here so that [`super::Cluster`]'s `TryFrom`
//! can check all of them and report every problem at once, with its key path.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) cluster_name: Option<String>,
    pub(crate) kubernetes_version: Option<String>,
    pub(crate) control_plane_endpoint: Option<String>,
    pub(crate) load_balancer: Option<RawLoadBalancer>,
    #[serde(default)]
    pub(crate) masters: Vec<RawNode>,
    #[serde(default)]
    pub(crate) networking: RawNetworking,
    #[serde(default)]
    pub(crate) etcd: RawEtcd,
    #[serde(default)]
    pub(crate) pki: RawPki,
}

/// `loadBalancer`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawLoadBalancer {
    pub(crate) vip: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) hosts: Vec<RawNode>,
    pub(crate) vrrp: Option<RawVrrp>,
}

/// `loadBalancer.vrrp`: how the LB hosts move the VIP between them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub(crate) interface: Option<String>,
    pub(crate) vrid: Option<u64>,
    pub(crate) prefix_length: Option<u64>,
    pub(crate) advert_interval: Option<String>,
}

/// A scalar or a list of scalars (`vip: 10.0.0.100` or `vip: [10.0.0.100, fd00::100]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A machine: master, LB host or external etcd member.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) name: Option<String>,
    pub(crate) address: Option<String>,
    /// Only meaningful on masters; rejected elsewhere by the checker.
    #[serde(default, rename = "certSANs")]
    pub(crate) cert_sans: Option<Vec<String>>,
}

/// `networking`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworking {
    pub(crate) service_subnet: Option<String>,
    pub(crate) pod_subnet: Option<String>,
    pub(crate) dns_domain: Option<String>,
}

/// `etcd`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawEtcd {
    pub(crate) topology: Option<String>,
    pub(crate) members: Option<Vec<RawNode>>,
}

/// `pki`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawPki {
    pub(crate) encryption_algorithm: Option<String>,
    #[serde(default, rename = "certSANs")]
    pub(crate) cert_sans: Vec<String>,
    pub(crate) ca_validity: Option<String>,
    pub(crate) cert_validity: Option<String>,
}
