//! The kubeadm configuration API as typed serde structs (the subset apilb writes), for
//! `kubeadm.k8s.io/v1beta4` (kubeadm ≥ 1.31, the default) and `v1beta3` (kubeadm 1.22–1.30).
//!
//! The two versions share every type except where they differ on the wire: `extraArgs` and
//! `kubeletExtraArgs` are a list of `{name, value}` in v1beta4 ([`ArgList`]) and a map in
//! v1beta3 ([`ArgMap`]); `ClusterConfiguration` has `encryptionAlgorithm` and the validity
//! periods only in v1beta4. Every struct denies unknown fields, so [`parse`] is a strict
//! re-parse of what [`to_yaml`] wrote. No YAML is ever produced from text templates.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, DEFAULT_API_SERVER_PORT, Etcd as EtcdTopology, Master, San};

/// `kind: InitConfiguration`.
pub const INIT_KIND: &str = "InitConfiguration";
/// `kind: ClusterConfiguration`.
pub const CLUSTER_KIND: &str = "ClusterConfiguration";
/// `kind: JoinConfiguration`.
pub const JOIN_KIND: &str = "JoinConfiguration";

/// Which kubeadm configuration API to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiVersion {
    /// `kubeadm.k8s.io/v1beta4` (kubeadm ≥ 1.31).
    #[default]
    V1beta4,
    /// `kubeadm.k8s.io/v1beta3` (kubeadm 1.22–1.30; deprecated since 1.31).
    V1beta3,
}

impl ApiVersion {
    /// The `apiVersion` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta4 => "kubeadm.k8s.io/v1beta4",
            ApiVersion::V1beta3 => "kubeadm.k8s.io/v1beta3",
        }
    }
}

/// Component arguments in the shape of one API version.
pub trait Args: Serialize + DeserializeOwned + Debug + Clone + PartialEq + Default {
    /// Build from `(name, value)` pairs, in order.
    fn from_pairs(pairs: &[(&str, String)]) -> Self;
    /// No arguments (the key is then left out).
    fn is_empty(&self) -> bool;
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<&str>;
}

/// v1beta4 arguments: `[{name, value}]` (duplicates allowed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArgList(pub Vec<Arg>);

/// One v1beta4 argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    /// Flag name without dashes.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl Args for ArgList {
    fn from_pairs(pairs: &[(&str, String)]) -> Self {
        ArgList(
            pairs
                .iter()
                .map(|(n, v)| Arg {
                    name: (*n).to_owned(),
                    value: v.clone(),
                })
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }
}

/// v1beta3 arguments: `{name: value}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ArgMap(pub BTreeMap<String, String>);

impl Args for ArgMap {
    fn from_pairs(pairs: &[(&str, String)]) -> Self {
        ArgMap(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn is_empty_args<A: Args>(a: &A) -> bool {
    a.is_empty()
}

/// `bootstrapTokens[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapToken {
    /// `abcdef.0123456789abcdef`.
    pub token: String,
    /// Shown by `kubeadm token list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Lifetime from `kubeadm init`, e.g. `24h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// `signing`, `authentication`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    /// Extra groups (`system:bootstrappers:…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// `nodeRegistration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "A: Args")]
pub struct NodeRegistration<A: Args> {
    /// Node name; kubeadm defaults it to the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Extra kubelet flags.
    #[serde(default, skip_serializing_if = "is_empty_args")]
    pub kubelet_extra_args: A,
}

/// `localAPIEndpoint` / `controlPlane.localAPIEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiEndpoint {
    /// This master's address.
    pub advertise_address: String,
    /// Its apiserver port.
    pub bind_port: u16,
}

/// `kind: InitConfiguration` (both versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "A: Args")]
pub struct InitConfiguration<A: Args> {
    /// `kubeadm.k8s.io/v1beta4` or `v1beta3`.
    pub api_version: String,
    /// [`INIT_KIND`].
    pub kind: String,
    /// The join token(s) created at init.
    pub bootstrap_tokens: Vec<BootstrapToken>,
    /// This node.
    pub node_registration: NodeRegistration<A>,
    /// This master's apiserver.
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    /// The upload-certs key (64 hex characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
}

/// `apiServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "A: Args")]
pub struct ApiServer<A: Args> {
    /// Extra kube-apiserver flags.
    #[serde(default, skip_serializing_if = "is_empty_args")]
    pub extra_args: A,
    /// Extra SANs of the apiserver certificate.
    #[serde(rename = "certSANs", default, skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
}

/// `etcd` (exactly one of `local` and `external`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "A: Args")]
pub struct Etcd<A: Args> {
    /// Stacked etcd, run by kubeadm on every master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalEtcd<A>>,
    /// An etcd cluster of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalEtcd>,
}

/// `etcd.local`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "A: Args")]
pub struct LocalEtcd<A: Args> {
    /// Where etcd keeps its data.
    pub data_dir: String,
    /// Extra etcd flags.
    #[serde(default, skip_serializing_if = "is_empty_args")]
    pub extra_args: A,
    /// Extra SANs of every member's etcd/server certificate.
    #[serde(
        rename = "serverCertSANs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub server_cert_sans: Vec<String>,
    /// Extra SANs of every member's etcd/peer certificate.
    #[serde(
        rename = "peerCertSANs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub peer_cert_sans: Vec<String>,
}

/// `etcd.external`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalEtcd {
    /// `https://member:2379`.
    pub endpoints: Vec<String>,
    /// The etcd CA.
    pub ca_file: String,
    /// apiserver-etcd-client.crt.
    pub cert_file: String,
    /// apiserver-etcd-client.key.
    pub key_file: String,
}

/// `networking`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    /// Comma-separated CIDRs.
    pub service_subnet: String,
    /// Comma-separated CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<String>,
    /// Cluster DNS domain.
    pub dns_domain: String,
}

/// The v1beta4 `ClusterConfiguration`.
pub mod v1beta4 {
    use serde::{Deserialize, Serialize};

    use super::{ApiServer, ArgList, Etcd, Networking};

    /// `kind: ClusterConfiguration`, `apiVersion: kubeadm.k8s.io/v1beta4`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ClusterConfiguration {
        /// `kubeadm.k8s.io/v1beta4`.
        pub api_version: String,
        /// `ClusterConfiguration`.
        pub kind: String,
        /// Cluster name in kubeconfigs.
        pub cluster_name: String,
        /// `v1.31.2`.
        pub kubernetes_version: String,
        /// The LB: `host:port`.
        pub control_plane_endpoint: String,
        /// `/etc/kubernetes/pki`.
        pub certificates_dir: String,
        /// kube-apiserver.
        pub api_server: ApiServer<ArgList>,
        /// etcd.
        pub etcd: Etcd<ArgList>,
        /// Subnets and DNS domain.
        pub networking: Networking,
        /// Key type of certificates kubeadm makes or renews.
        pub encryption_algorithm: String,
        /// Validity of leaves kubeadm makes or renews, e.g. `8760h0m0s`.
        pub certificate_validity_period: String,
        /// Validity of CAs kubeadm makes.
        pub ca_certificate_validity_period: String,
    }
}

/// The v1beta3 `ClusterConfiguration`.
pub mod v1beta3 {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::{ApiServer, ArgMap, Etcd, Networking};

    /// `kind: ClusterConfiguration`, `apiVersion: kubeadm.k8s.io/v1beta3`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ClusterConfiguration {
        /// `kubeadm.k8s.io/v1beta3`.
        pub api_version: String,
        /// `ClusterConfiguration`.
        pub kind: String,
        /// Cluster name in kubeconfigs.
        pub cluster_name: String,
        /// `v1.29.4`.
        pub kubernetes_version: String,
        /// The LB: `host:port`.
        pub control_plane_endpoint: String,
        /// `/etc/kubernetes/pki`.
        pub certificates_dir: String,
        /// kube-apiserver.
        pub api_server: ApiServer<ArgMap>,
        /// etcd.
        pub etcd: Etcd<ArgMap>,
        /// Subnets and DNS domain.
        pub networking: Networking,
        /// kubeadm feature gates (`PublicKeysECDSA` for ECDSA-P256 keys).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub feature_gates: BTreeMap<String, bool>,
    }
}

/// `discovery`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovery {
    /// Token-based discovery.
    pub bootstrap_token: BootstrapTokenDiscovery,
}

/// `discovery.bootstrapToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapTokenDiscovery {
    /// The token.
    pub token: String,
    /// `host:port` of the apiserver (the controlPlaneEndpoint), no scheme.
    #[serde(rename = "apiServerEndpoint")]
    pub api_server_endpoint: String,
    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo.
    pub ca_cert_hashes: Vec<String>,
}

/// `controlPlane` of a control-plane join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinControlPlane {
    /// This master's apiserver.
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    /// The upload-certs key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
}

/// `kind: JoinConfiguration` (both versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "A: Args")]
pub struct JoinConfiguration<A: Args> {
    /// `kubeadm.k8s.io/v1beta4` or `v1beta3`.
    pub api_version: String,
    /// [`JOIN_KIND`].
    pub kind: String,
    /// This node.
    pub node_registration: NodeRegistration<A>,
    /// How to find and trust the cluster.
    pub discovery: Discovery,
    /// Set for a control-plane join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane>,
}

/// One document of a kubeadm configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// v1beta4 `InitConfiguration`.
    InitV1beta4(InitConfiguration<ArgList>),
    /// v1beta4 `ClusterConfiguration`.
    ClusterV1beta4(v1beta4::ClusterConfiguration),
    /// v1beta4 `JoinConfiguration`.
    JoinV1beta4(JoinConfiguration<ArgList>),
    /// v1beta3 `InitConfiguration`.
    InitV1beta3(InitConfiguration<ArgMap>),
    /// v1beta3 `ClusterConfiguration`.
    ClusterV1beta3(v1beta3::ClusterConfiguration),
    /// v1beta3 `JoinConfiguration`.
    JoinV1beta3(JoinConfiguration<ArgMap>),
}

impl Document {
    /// The bootstrap token the document carries (init: the first of `bootstrapTokens`; join:
    /// the discovery token).
    pub fn token(&self) -> Option<&str> {
        match self {
            Document::InitV1beta4(i) => i.bootstrap_tokens.first().map(|t| t.token.as_str()),
            Document::InitV1beta3(i) => i.bootstrap_tokens.first().map(|t| t.token.as_str()),
            Document::JoinV1beta4(j) => Some(&j.discovery.bootstrap_token.token),
            Document::JoinV1beta3(j) => Some(&j.discovery.bootstrap_token.token),
            _ => None,
        }
    }

    /// The certificate key the document carries.
    pub fn certificate_key(&self) -> Option<&str> {
        match self {
            Document::InitV1beta4(i) => i.certificate_key.as_deref(),
            Document::InitV1beta3(i) => i.certificate_key.as_deref(),
            Document::JoinV1beta4(j) => j.control_plane.as_ref()?.certificate_key.as_deref(),
            Document::JoinV1beta3(j) => j.control_plane.as_ref()?.certificate_key.as_deref(),
            _ => None,
        }
    }

    /// The discovery CA hashes of a join document (empty for others).
    pub fn ca_cert_hashes(&self) -> &[String] {
        match self {
            Document::JoinV1beta4(j) => &j.discovery.bootstrap_token.ca_cert_hashes,
            Document::JoinV1beta3(j) => &j.discovery.bootstrap_token.ca_cert_hashes,
            _ => &[],
        }
    }

    fn to_value(&self) -> Result<serde_yaml::Value, serde_yaml::Error> {
        match self {
            Document::InitV1beta4(d) => serde_yaml::to_value(d),
            Document::ClusterV1beta4(d) => serde_yaml::to_value(d),
            Document::JoinV1beta4(d) => serde_yaml::to_value(d),
            Document::InitV1beta3(d) => serde_yaml::to_value(d),
            Document::ClusterV1beta3(d) => serde_yaml::to_value(d),
            Document::JoinV1beta3(d) => serde_yaml::to_value(d),
        }
    }
}

/// Why a kubeadm configuration file does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not YAML.
    #[error("document {index}: {error}")]
    Yaml {
        /// Which document, from 0.
        index: usize,
        /// serde_yaml's message.
        error: serde_yaml::Error,
    },
    /// A known kind that does not match its schema (unknown or missing field).
    #[error("document {index} ({api} {kind}): {error}")]
    Schema {
        /// Which document, from 0.
        index: usize,
        /// Its `apiVersion`.
        api: String,
        /// Its `kind`.
        kind: String,
        /// serde_yaml's message.
        error: serde_yaml::Error,
    },
    /// A kind or version this module does not write.
    #[error("document {index}: unsupported apiVersion {api:?} / kind {kind:?}")]
    Unsupported {
        /// Which document, from 0.
        index: usize,
        /// Its `apiVersion`.
        api: String,
        /// Its `kind`.
        kind: String,
    },
}

/// Documents as one multi-document YAML text, `---` between documents.
pub fn to_yaml(docs: &[Document]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(&d.to_value()?)?);
    }
    Ok(out)
}

/// Parse a kubeadm configuration file strictly: every document must be one of the kinds and
/// versions above, with no unknown field anywhere.
pub fn parse(text: &str) -> Result<Vec<Document>, ParseError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = serde_yaml::Value::deserialize(de)
            .map_err(|error| ParseError::Yaml { index: i, error })?;
        if v.is_null() {
            continue;
        }
        let field = |k: &str| v.get(k).and_then(serde_yaml::Value::as_str).unwrap_or("");
        let (api, kind) = (field("apiVersion").to_owned(), field("kind").to_owned());
        let strict = |error| ParseError::Schema {
            index: i,
            api: api.clone(),
            kind: kind.clone(),
            error,
        };
        let v4 = ApiVersion::V1beta4.as_str();
        let v3 = ApiVersion::V1beta3.as_str();
        let doc = match (api.as_str(), kind.as_str()) {
            (a, INIT_KIND) if a == v4 => {
                Document::InitV1beta4(serde_yaml::from_value(v).map_err(strict)?)
            }
            (a, CLUSTER_KIND) if a == v4 => {
                Document::ClusterV1beta4(serde_yaml::from_value(v).map_err(strict)?)
            }
            (a, JOIN_KIND) if a == v4 => {
                Document::JoinV1beta4(serde_yaml::from_value(v).map_err(strict)?)
            }
            (a, INIT_KIND) if a == v3 => {
                Document::InitV1beta3(serde_yaml::from_value(v).map_err(strict)?)
            }
            (a, CLUSTER_KIND) if a == v3 => {
                Document::ClusterV1beta3(serde_yaml::from_value(v).map_err(strict)?)
            }
            (a, JOIN_KIND) if a == v3 => {
                Document::JoinV1beta3(serde_yaml::from_value(v).map_err(strict)?)
            }
            _ => {
                return Err(ParseError::Unsupported {
                    index: i,
                    api,
                    kind,
                });
            }
        };
        docs.push(doc);
    }
    Ok(docs)
}

// ---------------------------------------------------------------------------------------------
// Building the documents of a cluster.

/// Where kubeadm keeps the PKI on every master.
pub const CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";
/// etcd data directory (kubeadm's default).
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// Lifetime of the init bootstrap token (kubeadm's default).
pub const TOKEN_TTL: &str = "24h0m0s";
/// kube-apiserver `--shutdown-delay-duration`: on SIGTERM the apiserver keeps serving this
/// long while `/readyz` fails and `/livez` passes, so that the LB (`livePath: /livez`) drains
/// it instead of cutting its clients off.
pub const APISERVER_SHUTDOWN_DELAY: &str = "10s";
/// Extra SANs listed for every member's etcd server and peer certificate: those kubeadm puts
/// in them anyway, so the list holds for every master's issued certificates (checked before
/// writing).
pub const ETCD_EXTRA_SANS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// The secrets and hashes that tie the files of one cluster together.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    /// The bootstrap token (`abcdef.0123456789abcdef`).
    pub token: &'a str,
    /// The upload-certs key (64 hex characters).
    pub certificate_key: &'a str,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo.
    pub ca_cert_hash: &'a str,
}

fn san_text(s: &San) -> String {
    match s {
        San::Ip(ip) => ip.to_string(),
        San::Dns(d) => d.clone(),
    }
}

/// `apiServer.certSANs`: the controlPlaneEndpoint host, the VIPs, every LB host address and
/// `pki.certSANs`, in that order without repeats. A master's own `certSANs` are not here:
/// ClusterConfiguration is cluster-wide; they are in that master's issued certificate.
pub fn cluster_cert_sans(c: &Cluster) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = std::iter::once(san_text(&c.control_plane_endpoint.host))
        .chain(c.load_balancer.vips.iter().map(|v| v.to_string()))
        .chain(c.load_balancer.hosts.iter().map(|h| h.address.to_string()))
        .chain(c.pki.cert_sans.iter().map(san_text));
    for s in all {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Go's `time.Duration` text (`8760h0m0s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
}

/// `https://` URLs of the external etcd members' client ports.
pub fn etcd_endpoints(c: &Cluster) -> Vec<String> {
    c.etcd_members()
        .iter()
        .map(|m| crate::cluster::https_url(m.address, super::etcd::CLIENT_PORT))
        .collect()
}

fn master_node<A: Args>(m: &Master) -> NodeRegistration<A> {
    NodeRegistration {
        name: Some(m.name.clone()),
        kubelet_extra_args: A::from_pairs(&[("node-ip", m.address.to_string())]),
    }
}

fn endpoint(m: &Master) -> ApiEndpoint {
    ApiEndpoint {
        advertise_address: m.address.to_string(),
        bind_port: DEFAULT_API_SERVER_PORT,
    }
}

fn init<A: Args>(api: ApiVersion, m: &Master, s: &Secrets<'_>) -> InitConfiguration<A> {
    InitConfiguration {
        api_version: api.as_str().to_owned(),
        kind: INIT_KIND.to_owned(),
        bootstrap_tokens: vec![BootstrapToken {
            token: s.token.to_owned(),
            description: Some("apilb bootstrap: joins of the other masters and workers".into()),
            ttl: Some(TOKEN_TTL.into()),
            usages: vec!["signing".into(), "authentication".into()],
            groups: vec![crate::token::DEFAULT_GROUP.into()],
        }],
        node_registration: master_node(m),
        local_api_endpoint: endpoint(m),
        certificate_key: Some(s.certificate_key.to_owned()),
    }
}

fn api_server<A: Args>(c: &Cluster) -> ApiServer<A> {
    ApiServer {
        extra_args: A::from_pairs(&[(
            "shutdown-delay-duration",
            APISERVER_SHUTDOWN_DELAY.to_owned(),
        )]),
        cert_sans: cluster_cert_sans(c),
    }
}

fn etcd<A: Args>(c: &Cluster) -> Etcd<A> {
    match &c.etcd {
        EtcdTopology::Stacked => Etcd {
            local: Some(LocalEtcd {
                data_dir: ETCD_DATA_DIR.into(),
                extra_args: A::default(),
                server_cert_sans: ETCD_EXTRA_SANS.iter().map(|s| (*s).to_owned()).collect(),
                peer_cert_sans: ETCD_EXTRA_SANS.iter().map(|s| (*s).to_owned()).collect(),
            }),
            external: None,
        },
        EtcdTopology::External { .. } => Etcd {
            local: None,
            external: Some(ExternalEtcd {
                endpoints: etcd_endpoints(c),
                ca_file: format!("{CERTIFICATES_DIR}/etcd/ca.crt"),
                cert_file: format!("{CERTIFICATES_DIR}/apiserver-etcd-client.crt"),
                key_file: format!("{CERTIFICATES_DIR}/apiserver-etcd-client.key"),
            }),
        },
    }
}

fn networking(c: &Cluster) -> Networking {
    let join = |v: &[crate::cluster::Cidr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    Networking {
        service_subnet: join(&c.networking.service_subnets),
        pod_subnet: (!c.networking.pod_subnets.is_empty()).then(|| join(&c.networking.pod_subnets)),
        dns_domain: c.networking.dns_domain.clone(),
    }
}

/// The `kubeadm init` file of the first master: InitConfiguration and ClusterConfiguration.
pub fn init_documents(api: ApiVersion, c: &Cluster, m: &Master, s: &Secrets<'_>) -> Vec<Document> {
    let cpe = c.control_plane_endpoint.to_string();
    match api {
        ApiVersion::V1beta4 => vec![
            Document::InitV1beta4(init(api, m, s)),
            Document::ClusterV1beta4(v1beta4::ClusterConfiguration {
                api_version: api.as_str().into(),
                kind: CLUSTER_KIND.into(),
                cluster_name: c.name.clone(),
                kubernetes_version: c.kubernetes_version.clone(),
                control_plane_endpoint: cpe,
                certificates_dir: CERTIFICATES_DIR.into(),
                api_server: api_server(c),
                etcd: etcd(c),
                networking: networking(c),
                encryption_algorithm: c.pki.algorithm.as_str().into(),
                certificate_validity_period: go_duration(c.pki.cert_validity),
                ca_certificate_validity_period: go_duration(c.pki.ca_validity),
            }),
        ],
        ApiVersion::V1beta3 => {
            let mut feature_gates = BTreeMap::new();
            if c.pki.algorithm == crate::pki::KeyAlgorithm::EcdsaP256 {
                feature_gates.insert("PublicKeysECDSA".to_owned(), true);
            }
            vec![
                Document::InitV1beta3(init(api, m, s)),
                Document::ClusterV1beta3(v1beta3::ClusterConfiguration {
                    api_version: api.as_str().into(),
                    kind: CLUSTER_KIND.into(),
                    cluster_name: c.name.clone(),
                    kubernetes_version: c.kubernetes_version.clone(),
                    control_plane_endpoint: cpe,
                    certificates_dir: CERTIFICATES_DIR.into(),
                    api_server: api_server(c),
                    etcd: etcd(c),
                    networking: networking(c),
                    feature_gates,
                }),
            ]
        }
    }
}

fn join<A: Args>(
    api: ApiVersion,
    c: &Cluster,
    m: Option<&Master>,
    s: &Secrets<'_>,
) -> JoinConfiguration<A> {
    JoinConfiguration {
        api_version: api.as_str().into(),
        kind: JOIN_KIND.into(),
        node_registration: match m {
            Some(m) => master_node(m),
            None => NodeRegistration {
                name: None,
                kubelet_extra_args: A::default(),
            },
        },
        discovery: Discovery {
            bootstrap_token: BootstrapTokenDiscovery {
                token: s.token.to_owned(),
                api_server_endpoint: c.control_plane_endpoint.to_string(),
                ca_cert_hashes: vec![s.ca_cert_hash.to_owned()],
            },
        },
        control_plane: m.map(|m| JoinControlPlane {
            local_api_endpoint: endpoint(m),
            certificate_key: Some(s.certificate_key.to_owned()),
        }),
    }
}

/// `kubeadm join --config` of another master (`Some`) or of any worker (`None`).
pub fn join_document(
    api: ApiVersion,
    c: &Cluster,
    m: Option<&Master>,
    s: &Secrets<'_>,
) -> Document {
    match api {
        ApiVersion::V1beta4 => Document::JoinV1beta4(join(api, c, m, s)),
        ApiVersion::V1beta3 => Document::JoinV1beta3(join(api, c, m, s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::from_yaml(include_str!("../../config/cluster.yaml")).unwrap()
    }

    const S: Secrets<'static> = Secrets {
        token: "abcdef.0123456789abcdef",
        certificate_key: "00",
        ca_cert_hash: "sha256:00",
    };

    #[test]
    fn extra_args_take_each_versions_shape() {
        let c = cluster();
        let m = &c.masters[1];
        let v4 = to_yaml(&[join_document(ApiVersion::V1beta4, &c, Some(m), &S)]).unwrap();
        assert!(
            v4.contains("kubeletExtraArgs:\n  - name: node-ip\n    value: 10.0.0.12\n"),
            "{v4}"
        );
        let v3 = to_yaml(&[join_document(ApiVersion::V1beta3, &c, Some(m), &S)]).unwrap();
        assert!(
            v3.contains("kubeletExtraArgs:\n    node-ip: 10.0.0.12\n"),
            "{v3}"
        );
        assert_eq!(
            ArgList::from_pairs(&[("a", "1".into())]).get("a"),
            Some("1")
        );
        assert_eq!(ArgMap::from_pairs(&[("a", "1".into())]).get("a"), Some("1"));
    }

    #[test]
    fn worker_join_has_no_control_plane_and_no_name() {
        let c = cluster();
        let d = join_document(ApiVersion::V1beta4, &c, None, &S);
        let Document::JoinV1beta4(j) = &d else {
            panic!("{d:?}")
        };
        assert!(j.control_plane.is_none());
        assert!(j.node_registration.name.is_none());
        assert_eq!(
            j.discovery.bootstrap_token.api_server_endpoint,
            "k8s-api.example.internal:6443"
        );
        assert_eq!(d.certificate_key(), None);
    }

    #[test]
    fn cert_sans_and_durations() {
        let c = cluster();
        assert_eq!(
            cluster_cert_sans(&c),
            [
                "k8s-api.example.internal",
                "10.0.0.100",
                "10.0.0.5",
                "10.0.0.6"
            ]
        );
        assert_eq!(
            go_duration(std::time::Duration::from_secs(8760 * 3600)),
            "8760h0m0s"
        );
        assert_eq!(go_duration(std::time::Duration::from_secs(5400)), "1h30m0s");
    }

    #[test]
    fn parse_skips_empty_documents_and_refuses_unknown_kinds() {
        assert!(parse("").unwrap().is_empty());
        let e = parse("apiVersion: v1\nkind: Pod\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "document 0: unsupported apiVersion \"v1\" / kind \"Pod\""
        );
    }
}
