//! The cluster description exactly as written in YAML: serde types with camelCase keys and
//! unknown keys rejected. Values stay [`Scalar`] text here (a number where a name belongs
//! is the checker's problem, not serde's), so that the checker can check all of them and
//! report every problem at once, with its position and key path.

use serde::Deserialize;

use crate::input::Scalar;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub(crate) cluster_name: Option<Scalar>,
    pub(crate) kubernetes_version: Option<Scalar>,
    pub(crate) control_plane_endpoint: Option<Scalar>,
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
    pub(crate) bgp: Option<RawBgp>,
}

/// `loadBalancer.bgp`: every LB host announces the VIP to these routers (ECMP).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawBgp {
    pub(crate) local_asn: Option<Scalar>,
    pub(crate) routers: Option<Vec<RawRouter>>,
    pub(crate) bfd: Option<Scalar>,
    pub(crate) password: Option<Scalar>,
}

/// One entry of `loadBalancer.bgp.routers`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub(crate) address: Option<Scalar>,
    pub(crate) asn: Option<Scalar>,
}

/// `loadBalancer.vrrp`: how the LB hosts move the VIP between them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub(crate) interface: Option<Scalar>,
    pub(crate) vrid: Option<Scalar>,
    pub(crate) prefix_length: Option<Scalar>,
    pub(crate) advert_interval: Option<Scalar>,
}

/// A scalar or a list of scalars (`vip: 10.0.0.100` or `vip: [10.0.0.100, fd00::100]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<Scalar> {
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
    pub(crate) name: Option<Scalar>,
    pub(crate) address: Option<Scalar>,
    /// Only meaningful on masters; rejected elsewhere by the checker.
    #[serde(default, rename = "certSANs")]
    pub(crate) cert_sans: Option<Vec<Scalar>>,
    /// Only meaningful on LB hosts with `loadBalancer.bgp`; rejected elsewhere.
    pub(crate) asn: Option<Scalar>,
}

/// `networking`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNetworking {
    pub(crate) service_subnet: Option<Scalar>,
    pub(crate) pod_subnet: Option<Scalar>,
    pub(crate) dns_domain: Option<Scalar>,
}

/// `etcd`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawEtcd {
    pub(crate) topology: Option<Scalar>,
    pub(crate) members: Option<Vec<RawNode>>,
}

/// `pki`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawPki {
    pub(crate) encryption_algorithm: Option<Scalar>,
    #[serde(default, rename = "certSANs")]
    pub(crate) cert_sans: Vec<Scalar>,
    pub(crate) ca_validity: Option<Scalar>,
    pub(crate) cert_validity: Option<Scalar>,
}
