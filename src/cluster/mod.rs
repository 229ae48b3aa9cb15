//! The cluster description: one YAML file (see `config/cluster.yaml`) that names the masters,
//! the load balancer, networking, etcd topology and PKI settings of an HA control plane.
//!
//! [`raw`] holds the serde types as written (camelCase, unknown keys rejected); [`Cluster`] is
//! the checked form, built with `TryFrom` after every value has been checked and every
//! problem collected (`masters[2].address: "10.0.0.300" is not a valid IP address`). Parsing
//! never touches the file system: [`Cluster::from_yaml`] takes text, [`Cluster::load`] reads a
//! file and attaches its name to errors. `pki` (`apilb issue`) and `bootstrap` consume it.

mod net;
mod raw;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use self::net::{
    Cidr, Endpoint, San, https_url, is_dns_label, is_dns_subdomain, is_wildcard_dns,
};
use self::raw::{RawCluster, RawNode};
use crate::pki::KeyAlgorithm;

/// Default `clusterName` (kubeadm's).
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
/// Default `networking.serviceSubnet` (kubeadm's).
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
/// Default `networking.dnsDomain` (kubeadm's).
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
/// Port of each master's kube-apiserver (kubeadm's default `bindPort`), also the default
/// port of a `controlPlaneEndpoint` written without one.
pub const DEFAULT_API_SERVER_PORT: u16 = 6443;
/// Default `pki.caValidity`: 10 years, kubeadm's `CACertificateValidityPeriod`.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);
/// Default `pki.certValidity`: 1 year, kubeadm's `CertificateValidityPeriod`.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(8_760 * 3600);
/// Longest accepted `pki.caValidity` / `pki.certValidity` (keeps NotAfter far inside X.509's
/// year-9999 limit).
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 8_760 * 3600);
/// Names that cannot be machine names because the output tree uses them for other things.
pub const RESERVED_NAMES: &[&str] = &["rbac", "workers"];

/// Errors from reading or checking a cluster description.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read cluster description {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the schema (syntax, type or unknown key).
    #[error("{}{message}", origin(file.as_deref()))]
    Syntax {
        /// The file, when read from one.
        file: Option<PathBuf>,
        /// serde_yaml's message, with the key path and line.
        message: String,
    },
    /// The YAML parsed but values are wrong; every problem is listed.
    #[error("{}invalid cluster description ({} problem{}):{}",
        origin(file.as_deref()), problems.len(), if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    Invalid {
        /// The file, when read from one.
        file: Option<PathBuf>,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn origin(file: Option<&Path>) -> String {
    file.map(|f| format!("{}: ", f.display()))
        .unwrap_or_default()
}

impl Error {
    fn with_file(self, path: &Path) -> Error {
        match self {
            Error::Syntax { message, .. } => Error::Syntax {
                file: Some(path.to_owned()),
                message,
            },
            Error::Invalid { problems, .. } => Error::Invalid {
                file: Some(path.to_owned()),
                problems,
            },
            other => other,
        }
    }

    /// The individual problems (empty for read and syntax errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// One problem in a cluster description: the key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `masters[2].address`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A checked cluster description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `clusterName`, default [`DEFAULT_CLUSTER_NAME`]; names the kubeconfig cluster entry.
    pub name: String,
    /// `kubernetesVersion` (`v1.31.2`), required.
    pub kubernetes_version: String,
    /// `controlPlaneEndpoint`: the LB's DNS name or VIP with port (default port
    /// [`DEFAULT_API_SERVER_PORT`]).
    pub control_plane_endpoint: Endpoint,
    /// `loadBalancer`.
    pub load_balancer: LoadBalancer,
    /// `masters`, at least one, in file order (the first one is the `kubeadm init` node).
    pub masters: Vec<Master>,
    /// `networking`.
    pub networking: Networking,
    /// `etcd`.
    pub etcd: Etcd,
    /// `pki`.
    pub pki: PkiSettings,
}

/// `loadBalancer`: the VIP(s) and the LB machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// One VIP, or one per family for dual stack.
    pub vips: Vec<IpAddr>,
    /// The LB machines themselves (may be empty).
    pub hosts: Vec<Node>,
    /// `vrrp`: when set, the LB hosts move the VIP between them with VRRPv3.
    pub vrrp: Option<Vrrp>,
}

/// `loadBalancer.vrrp`: VRRP settings shared by the LB hosts. The first host listed gets
/// the highest priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    /// The LB hosts' interface on the VIP's subnet (the same name on every host).
    pub interface: String,
    /// Virtual router id, 1-255 (default 51).
    pub vrid: u8,
    /// Prefix length of the VIP's IPv4 subnet (default 24); IPv6 VIPs use 64.
    pub prefix_length: u8,
    /// Advertisement interval as written, e.g. `100ms` (default `100ms`).
    pub advert_interval: String,
}

/// A machine with a name and an address (LB host, external etcd member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// RFC 1123 name; also the output directory name.
    pub name: String,
    /// Its address.
    pub address: IpAddr,
}

/// A control-plane machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Node name (kubeadm `nodeRegistration.name`); also the output directory name.
    pub name: String,
    /// Advertise address (kubeadm `localAPIEndpoint.advertiseAddress`).
    pub address: IpAddr,
    /// Extra apiserver SANs for this master only.
    pub cert_sans: Vec<San>,
}

/// `networking`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networking {
    /// `serviceSubnet`, comma-separated for dual stack; default [`DEFAULT_SERVICE_SUBNET`].
    pub service_subnets: Vec<Cidr>,
    /// `podSubnet`, comma-separated for dual stack; optional.
    pub pod_subnets: Vec<Cidr>,
    /// `dnsDomain`, default [`DEFAULT_DNS_DOMAIN`].
    pub dns_domain: String,
}

impl Networking {
    /// The `kubernetes` service IP: index 1 of the first service subnet (kubeadm's rule).
    pub fn kubernetes_service_ip(&self) -> IpAddr {
        // Invariant: checked at parse time that there is a first subnet and that it holds
        // index 1.
        self.service_subnets
            .first()
            .and_then(|c| c.nth(1))
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
}

/// `etcd.topology`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Etcd {
    /// etcd runs on every master (kubeadm `etcd.local`).
    Stacked,
    /// etcd runs on its own machines (kubeadm `etcd.external`), listed in `etcd.members`.
    External {
        /// The etcd machines.
        members: Vec<Node>,
    },
}

/// `pki`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSettings {
    /// `encryptionAlgorithm`, default RSA-2048 (kubeadm's).
    pub algorithm: KeyAlgorithm,
    /// `certSANs`: extra apiserver SANs for every master.
    pub cert_sans: Vec<San>,
    /// `caValidity`, default [`DEFAULT_CA_VALIDITY`].
    pub ca_validity: Duration,
    /// `certValidity`, default [`DEFAULT_CERT_VALIDITY`].
    pub cert_validity: Duration,
}

impl FromStr for Cluster {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cluster, Error> {
        Cluster::from_yaml(s)
    }
}

impl Cluster {
    /// Parse and check a cluster description from YAML text.
    pub fn from_yaml(text: &str) -> Result<Cluster, Error> {
        let raw: RawCluster = serde_yaml::from_str(text).map_err(|e| Error::Syntax {
            file: None,
            message: e.to_string(),
        })?;
        Cluster::try_from(raw)
    }

    /// Read, parse and check a cluster description file; errors name the file.
    pub fn load(path: &Path) -> Result<Cluster, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Cluster::from_yaml(&text).map_err(|e| e.with_file(path))
    }

    /// Every machine with a directory in the output tree: masters, LB hosts, etcd members.
    pub fn machine_names(&self) -> impl Iterator<Item = &str> {
        let etcd: &[Node] = match &self.etcd {
            Etcd::Stacked => &[],
            Etcd::External { members } => members,
        };
        self.masters
            .iter()
            .map(|m| m.name.as_str())
            .chain(self.load_balancer.hosts.iter().map(|h| h.name.as_str()))
            .chain(etcd.iter().map(|e| e.name.as_str()))
    }

    /// The external etcd members, empty for stacked etcd.
    pub fn etcd_members(&self) -> &[Node] {
        match &self.etcd {
            Etcd::Stacked => &[],
            Etcd::External { members } => members,
        }
    }
}

/// Collects problems while checking.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Record a missing required key and return `None`.
    fn required<T>(&mut self, v: Option<T>, key: &str) -> Option<T> {
        if v.is_none() {
            self.push(key, "is required");
        }
        v
    }
}

/// Default `loadBalancer.vrrp.vrid`.
pub const DEFAULT_VRID: u8 = 51;
/// Default `loadBalancer.vrrp.prefixLength` (IPv4).
pub const DEFAULT_VIP_PREFIX: u8 = 24;
/// Default `loadBalancer.vrrp.advertInterval`.
pub const DEFAULT_ADVERT_INTERVAL: &str = "100ms";

fn check_vrrp(p: &mut Problems, v: &raw::RawVrrp) -> Option<Vrrp> {
    let before = p.0.len();
    let interface = match v.interface.as_deref().map(str::trim) {
        None | Some("") => {
            p.push(
                "loadBalancer.vrrp.interface",
                "is required: the LB hosts' interface on the VIP's subnet, e.g. eth0",
            );
            String::new()
        }
        Some(i)
            if i.len() > 15
                || !i
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) =>
        {
            p.push(
                "loadBalancer.vrrp.interface",
                format!("\"{i}\" is not a valid interface name"),
            );
            String::new()
        }
        Some(i) => i.to_owned(),
    };
    let vrid = match v.vrid {
        None => DEFAULT_VRID,
        Some(n @ 1..=255) => n as u8,
        Some(n) => {
            p.push(
                "loadBalancer.vrrp.vrid",
                format!("{n} is out of range (1 to 255)"),
            );
            DEFAULT_VRID
        }
    };
    let prefix_length = match v.prefix_length {
        None => DEFAULT_VIP_PREFIX,
        Some(n @ 1..=32) => n as u8,
        Some(n) => {
            p.push(
                "loadBalancer.vrrp.prefixLength",
                format!("{n} is out of range (1 to 32)"),
            );
            DEFAULT_VIP_PREFIX
        }
    };
    let advert_interval = v
        .advert_interval
        .clone()
        .unwrap_or_else(|| DEFAULT_ADVERT_INTERVAL.to_owned());
    if let Err(e) = crate::config::parse_duration(&advert_interval) {
        p.push(
            "loadBalancer.vrrp.advertInterval",
            format!("\"{advert_interval}\" is not a duration: {e}"),
        );
    }
    (p.0.len() == before).then_some(Vrrp {
        interface,
        vrid,
        prefix_length,
        advert_interval,
    })
}

fn parse_ip(p: &mut Problems, key: &str, s: &str) -> Option<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            p.push(key, format!("{s:?} is not a valid IP address"));
            None
        }
    }
}

fn parse_sans(p: &mut Problems, key: &str, list: &[String]) -> Vec<San> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match San::parse(s) {
            Ok(san) => out.push(san),
            Err(e) => p.push(format!("{key}[{i}]"), e),
        }
    }
    out
}

fn parse_subnets(p: &mut Problems, key: &str, s: &str) -> Vec<Cidr> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match Cidr::parse(part.trim()) {
            Ok(c) => out.push(c),
            Err(e) => p.push(key, e),
        }
    }
    if out.len() == 2 && out[0].network().is_ipv4() == out[1].network().is_ipv4() {
        p.push(key, "a dual-stack list needs one IPv4 and one IPv6 prefix");
    } else if out.len() > 2 {
        p.push(key, "at most two prefixes (one per family)");
    }
    out
}

fn parse_duration(p: &mut Problems, key: &str, s: Option<&str>, default: Duration) -> Duration {
    let Some(s) = s else { return default };
    match humantime::parse_duration(s) {
        Ok(d) if d < Duration::from_secs(3600) => {
            p.push(key, format!("{s:?} is too short (at least 1h)"));
            default
        }
        Ok(d) if d > MAX_VALIDITY => {
            p.push(
                key,
                format!("{s:?} is too long (at most 876000h, 100 years)"),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            p.push(key, format!("{s:?} is not a duration like 8760h ({e})"));
            default
        }
    }
}

/// Check one machine entry; `allow_sans` is false outside `masters`.
fn check_node(p: &mut Problems, key: &str, raw: &RawNode, allow_sans: bool) -> Option<Master> {
    let name = p.required(raw.name.as_deref(), &format!("{key}.name"));
    if let Some(n) = name {
        if !is_dns_subdomain(n) {
            p.push(
                format!("{key}.name"),
                format!("{n:?} is not a valid node name (lower-case RFC 1123 subdomain)"),
            );
        } else if RESERVED_NAMES.contains(&n) {
            p.push(
                format!("{key}.name"),
                format!("{n:?} is reserved for the output tree"),
            );
        }
    }
    let address = p
        .required(raw.address.as_deref(), &format!("{key}.address"))
        .and_then(|a| parse_ip(p, &format!("{key}.address"), a));
    let cert_sans = match (&raw.cert_sans, allow_sans) {
        (Some(list), true) => parse_sans(p, &format!("{key}.certSANs"), list),
        (Some(_), false) => {
            p.push(
                format!("{key}.certSANs"),
                "is only allowed on masters (use pki.certSANs for every master)",
            );
            Vec::new()
        }
        (None, _) => Vec::new(),
    };
    Some(Master {
        name: name?.to_owned(),
        address: address?,
        cert_sans,
    })
}

impl TryFrom<RawCluster> for Cluster {
    type Error = Error;

    fn try_from(raw: RawCluster) -> Result<Cluster, Error> {
        let mut p = Problems::default();

        let name = raw
            .cluster_name
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_owned());
        if !is_dns_subdomain(&name) {
            p.push(
                "clusterName",
                format!("{name:?} is not a valid lower-case RFC 1123 name"),
            );
        }

        let kubernetes_version = p
            .required(raw.kubernetes_version, "kubernetesVersion")
            .unwrap_or_default();
        if !kubernetes_version.is_empty() && !is_version(&kubernetes_version) {
            p.push(
                "kubernetesVersion",
                format!("{kubernetes_version:?} is not a version like v1.31.2"),
            );
        }

        let control_plane_endpoint = p
            .required(
                raw.control_plane_endpoint.as_deref(),
                "controlPlaneEndpoint",
            )
            .and_then(|s| match Endpoint::parse(s, DEFAULT_API_SERVER_PORT) {
                Ok(e) => Some(e),
                Err(e) => {
                    p.push("controlPlaneEndpoint", e);
                    None
                }
            });

        // loadBalancer
        let mut vips = Vec::new();
        let mut lb_hosts = Vec::new();
        let mut vrrp = None;
        match raw.load_balancer {
            None => p.push("loadBalancer", "is required"),
            Some(lb) => {
                match lb.vip.map(raw::OneOrMany::into_vec) {
                    None => p.push("loadBalancer.vip", "is required"),
                    Some(list) if list.is_empty() => {
                        p.push("loadBalancer.vip", "needs at least one address")
                    }
                    Some(list) => {
                        let many = list.len() > 1;
                        for (i, s) in list.iter().enumerate() {
                            let key = if many {
                                format!("loadBalancer.vip[{i}]")
                            } else {
                                "loadBalancer.vip".to_owned()
                            };
                            if let Some(ip) = parse_ip(&mut p, &key, s) {
                                if vips.iter().any(|v: &IpAddr| v.is_ipv4() == ip.is_ipv4()) {
                                    p.push(key, "at most one VIP per address family");
                                } else {
                                    vips.push(ip);
                                }
                            }
                        }
                    }
                }
                if let Some(v) = &lb.vrrp {
                    vrrp = check_vrrp(&mut p, v);
                }
                for (i, h) in lb.hosts.iter().enumerate() {
                    let key = format!("loadBalancer.hosts[{i}]");
                    if let Some(n) = check_node(&mut p, &key, h, false) {
                        lb_hosts.push((
                            key,
                            Node {
                                name: n.name,
                                address: n.address,
                            },
                        ));
                    }
                }
            }
        }

        // masters
        if raw.masters.is_empty() {
            p.push("masters", "needs at least one master");
        }
        let mut masters = Vec::new();
        for (i, m) in raw.masters.iter().enumerate() {
            let key = format!("masters[{i}]");
            if let Some(master) = check_node(&mut p, &key, m, true) {
                masters.push((key, master));
            }
        }

        // networking
        let service_subnets = parse_subnets(
            &mut p,
            "networking.serviceSubnet",
            raw.networking
                .service_subnet
                .as_deref()
                .unwrap_or(DEFAULT_SERVICE_SUBNET),
        );
        if let Some(first) = service_subnets.first() {
            if first.nth(1).is_none() {
                p.push(
                    "networking.serviceSubnet",
                    format!("{first} is too small to hold the kubernetes service IP"),
                );
            }
        }
        let pod_subnets = match raw.networking.pod_subnet.as_deref() {
            Some(s) => parse_subnets(&mut p, "networking.podSubnet", s),
            None => Vec::new(),
        };
        for pod in &pod_subnets {
            for svc in &service_subnets {
                if pod.overlaps(svc) {
                    p.push(
                        "networking.podSubnet",
                        format!("{pod} overlaps the service subnet {svc}"),
                    );
                }
            }
        }
        let dns_domain = raw
            .networking
            .dns_domain
            .unwrap_or_else(|| DEFAULT_DNS_DOMAIN.to_owned());
        if !is_dns_subdomain(&dns_domain) {
            p.push(
                "networking.dnsDomain",
                format!("{dns_domain:?} is not a valid lower-case DNS domain"),
            );
        }

        // etcd
        let mut etcd_members = Vec::new();
        let topology = raw.etcd.topology.as_deref().unwrap_or("stacked");
        let etcd = match topology {
            "stacked" => {
                if raw.etcd.members.is_some() {
                    p.push("etcd.members", "is only allowed with topology: external");
                }
                Some(Etcd::Stacked)
            }
            "external" => {
                match raw.etcd.members.as_deref() {
                    None | Some([]) => p.push(
                        "etcd.members",
                        "topology: external needs at least one member",
                    ),
                    Some(list) => {
                        for (i, m) in list.iter().enumerate() {
                            let key = format!("etcd.members[{i}]");
                            if let Some(n) = check_node(&mut p, &key, m, false) {
                                etcd_members.push((
                                    key,
                                    Node {
                                        name: n.name,
                                        address: n.address,
                                    },
                                ));
                            }
                        }
                    }
                }
                None
            }
            other => {
                p.push(
                    "etcd.topology",
                    format!("{other:?} is not one of: stacked, external"),
                );
                None
            }
        };

        // pki
        let algorithm = match raw.pki.encryption_algorithm.as_deref() {
            None | Some("") => KeyAlgorithm::default(),
            Some(s) => s
                .parse()
                .unwrap_or_else(|e: crate::pki::key::UnknownAlgorithm| {
                    p.push("pki.encryptionAlgorithm", e.to_string());
                    KeyAlgorithm::default()
                }),
        };
        let cert_sans = parse_sans(&mut p, "pki.certSANs", &raw.pki.cert_sans);
        let ca_validity = parse_duration(
            &mut p,
            "pki.caValidity",
            raw.pki.ca_validity.as_deref(),
            DEFAULT_CA_VALIDITY,
        );
        let cert_validity = parse_duration(
            &mut p,
            "pki.certValidity",
            raw.pki.cert_validity.as_deref(),
            DEFAULT_CERT_VALIDITY,
        );
        if cert_validity > ca_validity {
            p.push(
                "pki.certValidity",
                "is longer than pki.caValidity; leaves would outlive their CA",
            );
        }

        // Cross checks: unique names (they are directories) and addresses, VIP placement.
        let mut names: HashMap<&str, &str> = HashMap::new();
        let mut addrs: HashMap<IpAddr, &str> = HashMap::new();
        let all: Vec<(&str, &str, IpAddr)> = masters
            .iter()
            .map(|(k, m)| (k.as_str(), m.name.as_str(), m.address))
            .chain(
                lb_hosts
                    .iter()
                    .chain(etcd_members.iter())
                    .map(|(k, n)| (k.as_str(), n.name.as_str(), n.address)),
            )
            .collect();
        for (key, name, addr) in &all {
            if let Some(first) = names.insert(name, key) {
                p.push(
                    format!("{key}.name"),
                    format!("duplicate name {name:?} (already used by {first})"),
                );
            }
            if let Some(first) = addrs.insert(*addr, key) {
                p.push(
                    format!("{key}.address"),
                    format!("duplicate address {addr} (already used by {first})"),
                );
            }
            if vips.contains(addr) {
                p.push(
                    format!("{key}.address"),
                    format!("{addr} is the load balancer VIP; the VIP must not be a machine's own address"),
                );
            }
            for svc in &service_subnets {
                if svc.contains(*addr) {
                    p.push(
                        format!("{key}.address"),
                        format!("{addr} is inside the service subnet {svc}"),
                    );
                }
            }
        }
        for vip in &vips {
            for svc in &service_subnets {
                if svc.contains(*vip) {
                    p.push(
                        "loadBalancer.vip",
                        format!("{vip} is inside the service subnet {svc}"),
                    );
                }
            }
            for pod in &pod_subnets {
                if pod.contains(*vip) {
                    p.push(
                        "loadBalancer.vip",
                        format!("{vip} is inside the pod subnet {pod}"),
                    );
                }
            }
        }
        if let Some(Endpoint {
            host: San::Ip(ip), ..
        }) = &control_plane_endpoint
        {
            if !vips.is_empty() && !vips.contains(ip) {
                p.push(
                    "controlPlaneEndpoint",
                    format!("{ip} is an IP address but not the load balancer VIP"),
                );
            }
        }

        if !p.0.is_empty() {
            return Err(Error::Invalid {
                file: None,
                problems: p.0,
            });
        }
        let (Some(control_plane_endpoint), Some(etcd)) = (
            control_plane_endpoint,
            etcd.or_else(|| {
                Some(Etcd::External {
                    members: etcd_members.into_iter().map(|(_, n)| n).collect(),
                })
            }),
        ) else {
            // Invariant: every `None` above pushed a problem, so we returned already.
            return Err(Error::Invalid {
                file: None,
                problems: vec![Problem {
                    key: String::new(),
                    message: "internal: incomplete description".into(),
                }],
            });
        };
        Ok(Cluster {
            name,
            kubernetes_version,
            control_plane_endpoint,
            load_balancer: LoadBalancer {
                vips,
                hosts: lb_hosts.into_iter().map(|(_, n)| n).collect(),
                vrrp,
            },
            masters: masters.into_iter().map(|(_, m)| m).collect(),
            networking: Networking {
                service_subnets,
                pod_subnets,
                dns_domain,
            },
            etcd,
            pki: PkiSettings {
                algorithm,
                cert_sans,
                ca_validity,
                cert_validity,
            },
        })
    }
}

/// `v` MAJOR `.` MINOR `.` PATCH, optionally followed by a pre-release/build suffix.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests;
