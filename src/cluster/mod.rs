//! The cluster description: one YAML file (see `config/cluster.yaml`) that names the masters,
//! the load balancer, networking, etcd topology and PKI settings of an HA control plane.
//!
//! [`raw`] holds the serde types as written (camelCase, unknown keys rejected); [`Cluster`] is
//! the checked form, built after every value has been checked and every problem collected,
//! each reported as the LB config's are ([`crate::input`]):
//! `cluster.yaml:33:30: masters[2].address: "10.0.0.300" is not a valid IP address`. Parsing
//! never touches the file system: [`Cluster::parse`] takes text and the name to report it
//! under, [`Cluster::load`] reads a file. `pki` (`apilb issue`) and `bootstrap` consume it.

mod bgp;
mod net;
mod raw;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use self::bgp::{Bgp, DEFAULT_BFD, PASSWORD_PREFIX, Router};
pub use self::net::{Endpoint, San, SanError, https_url, is_node_name};
use self::raw::{RawCluster, RawNode};
pub use crate::input::{Cidr, Problem, Problems};
use crate::input::{Collector, Locations, Scalar};
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
pub const RESERVED_NAMES: &[&str] = &["rbac", "workers", crate::pki::spec::ADMIN_DIR];

/// Errors from reading or checking a cluster description.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a `source`, so it is printed once).
        error: std::io::Error,
    },
    /// The text is not a valid cluster description (syntax, unknown keys, bad values);
    /// every problem found is listed, one per line.
    #[error("{0}")]
    Invalid(Problems),
}

impl Error {
    /// The individual problems (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Invalid(p) => &p.list,
            Error::Read { .. } => &[],
        }
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
    /// `bgp`: when set, every LB host announces the VIP to these routers (ECMP); never
    /// together with `vrrp`.
    pub bgp: Option<Bgp>,
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
    /// Parse and check a cluster description from YAML text (problems name it `<string>`).
    pub fn from_yaml(text: &str) -> Result<Cluster, Error> {
        Cluster::parse(text, "<string>")
    }

    /// Parse and check a cluster description; `origin` names it in problems.
    pub fn parse(text: &str, origin: &str) -> Result<Cluster, Error> {
        let locations = Locations::index(text);
        let (raw, problems) = if text.trim().is_empty() {
            (None, vec![empty_file()])
        } else {
            crate::input::deserialize::<RawCluster>(text, &locations)
        };
        let mut c = Collector::new(locations, problems);
        let cluster = raw.and_then(|raw| check(raw, &mut c));
        let (problems, _) = c.finish(origin);
        match cluster {
            Some(cluster) if problems.list.is_empty() => Ok(cluster),
            _ => Err(Error::Invalid(problems)),
        }
    }

    /// Read, parse and check a cluster description file; problems name the file.
    pub fn load(path: &Path) -> Result<Cluster, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Read {
            path: path.to_owned(),
            error,
        })?;
        Cluster::parse(&text, &path.display().to_string())
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

fn empty_file() -> Problem {
    Problem {
        position: crate::input::Position { line: 1, column: 1 },
        key: String::new(),
        message: "the file is empty; a cluster description needs at least kubernetesVersion, \
                  controlPlaneEndpoint, loadBalancer and masters"
            .into(),
    }
}

/// Default `loadBalancer.vrrp.vrid`.
pub const DEFAULT_VRID: u8 = 51;
/// Default `loadBalancer.vrrp.prefixLength` (IPv4).
pub const DEFAULT_VIP_PREFIX: u8 = 24;
/// Default `loadBalancer.vrrp.advertInterval`.
pub const DEFAULT_ADVERT_INTERVAL: &str = "100ms";

fn check_vrrp(p: &mut Collector, v: &raw::RawVrrp) -> Option<Vrrp> {
    let before = p.count();
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
    let vrid =
        number(p, "loadBalancer.vrrp.vrid", v.vrid.as_deref(), 1, 255).unwrap_or(DEFAULT_VRID);
    let prefix_length = number(
        p,
        "loadBalancer.vrrp.prefixLength",
        v.prefix_length.as_deref(),
        1,
        32,
    )
    .unwrap_or(DEFAULT_VIP_PREFIX);
    let advert_interval = v
        .advert_interval
        .as_deref()
        .unwrap_or(DEFAULT_ADVERT_INTERVAL)
        .trim()
        .to_owned();
    if let Err(e) = crate::input::parse_duration(&advert_interval) {
        p.push(
            "loadBalancer.vrrp.advertInterval",
            format!("\"{advert_interval}\" is not a duration: {e}"),
        );
    }
    (p.count() == before).then_some(Vrrp {
        interface,
        vrid,
        prefix_length,
        advert_interval,
    })
}

/// A whole number from `min` to `max`, if written.
fn number(p: &mut Collector, key: &str, text: Option<&str>, min: u8, max: u8) -> Option<u8> {
    let text = text?.trim();
    match text.parse::<u64>() {
        Ok(n) if (u64::from(min)..=u64::from(max)).contains(&n) => u8::try_from(n).ok(),
        Ok(n) => {
            p.push(key, format!("{n} is out of range ({min} to {max})"));
            None
        }
        Err(_) => {
            p.push(key, format!("{text:?} is not a whole number"));
            None
        }
    }
}

fn parse_ip(p: &mut Collector, key: &str, s: &str) -> Option<IpAddr> {
    match s.trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            p.push(key, format!("{s:?} is not a valid IP address"));
            None
        }
    }
}

fn parse_sans(p: &mut Collector, key: &str, list: &[Scalar]) -> Vec<San> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match San::parse(s) {
            Ok(san) => out.push(san),
            Err(e) => p.push(&format!("{key}[{i}]"), e.to_string()),
        }
    }
    out
}

fn parse_subnets(p: &mut Collector, key: &str, s: &str) -> Vec<Cidr> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        match Cidr::parse(part) {
            Ok(c) => out.push(c),
            Err(e) => p.push(key, format!("\"{part}\" is not a valid CIDR: {e}")),
        }
    }
    if out.len() == 2 && out[0].network().is_ipv4() == out[1].network().is_ipv4() {
        p.push(key, "a dual-stack list needs one IPv4 and one IPv6 prefix");
    } else if out.len() > 2 {
        p.push(key, "at most two prefixes (one per family)");
    }
    out
}

fn parse_validity(p: &mut Collector, key: &str, s: Option<&str>, default: Duration) -> Duration {
    let Some(s) = s else { return default };
    match crate::input::parse_duration(s) {
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
            p.push(key, format!("{s:?} is not a duration: {e}"));
            default
        }
    }
}

/// Check one machine entry; `allow_sans` is false outside `masters`. `asn` is checked by
/// [`bgp::check`] on LB hosts and rejected on every other machine.
fn check_node(p: &mut Collector, key: &str, raw: &RawNode, allow_sans: bool) -> Option<Master> {
    if raw.asn.is_some() && !key.starts_with("loadBalancer.hosts") {
        p.push(
            &format!("{key}.asn"),
            "is only allowed on LB hosts (loadBalancer.hosts, with loadBalancer.bgp)",
        );
    }
    let name = p.required(raw.name.as_deref(), &format!("{key}.name"));
    if let Some(n) = name {
        if !is_node_name(n) {
            p.push(
                &format!("{key}.name"),
                format!("{n:?} is not a valid node name (lower-case RFC 1123 subdomain)"),
            );
        } else if RESERVED_NAMES.contains(&n) {
            p.push(
                &format!("{key}.name"),
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
                &format!("{key}.certSANs"),
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

/// Check every value of `raw`, collecting problems into `p`; the cluster when there is
/// none.
fn check(raw: RawCluster, p: &mut Collector) -> Option<Cluster> {
    {
        let name = raw
            .cluster_name
            .as_deref()
            .unwrap_or(DEFAULT_CLUSTER_NAME)
            .to_owned();
        if !is_node_name(&name) {
            p.push(
                "clusterName",
                format!("{name:?} is not a valid lower-case RFC 1123 name"),
            );
        }

        let kubernetes_version = p
            .required(raw.kubernetes_version.as_deref(), "kubernetesVersion")
            .unwrap_or_default()
            .to_owned();
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
                    p.push(
                        "controlPlaneEndpoint",
                        format!("{s:?} is not a valid host[:port]: {e}"),
                    );
                    None
                }
            });

        // loadBalancer
        let mut vips = Vec::new();
        let mut lb_hosts = Vec::new();
        let mut vrrp = None;
        let mut bgp = None;
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
                            if let Some(ip) = parse_ip(p, &key, s) {
                                if vips.iter().any(|v: &IpAddr| v.is_ipv4() == ip.is_ipv4()) {
                                    p.push(&key, "at most one VIP per address family");
                                } else {
                                    vips.push(ip);
                                }
                            }
                        }
                    }
                }
                if let Some(v) = &lb.vrrp {
                    vrrp = check_vrrp(p, v);
                }
                match &lb.bgp {
                    Some(_) if lb.vrrp.is_some() => p.push(
                        "loadBalancer.bgp",
                        "cannot be used together with loadBalancer.vrrp: VRRP moves the VIP to \
                         one active host, BGP announces it from every host; choose one",
                    ),
                    Some(b) => bgp = bgp::check(p, b, &lb.hosts),
                    None => {
                        for (i, h) in lb.hosts.iter().enumerate() {
                            if h.asn.is_some() {
                                p.push(
                                    &format!("loadBalancer.hosts[{i}].asn"),
                                    "is only used with loadBalancer.bgp",
                                );
                            }
                        }
                    }
                }
                for (i, h) in lb.hosts.iter().enumerate() {
                    let key = format!("loadBalancer.hosts[{i}]");
                    if let Some(n) = check_node(p, &key, h, false) {
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
            if let Some(master) = check_node(p, &key, m, true) {
                masters.push((key, master));
            }
        }

        // networking
        let service_subnets = parse_subnets(
            p,
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
            Some(s) => parse_subnets(p, "networking.podSubnet", s),
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
        let written = raw
            .networking
            .dns_domain
            .as_deref()
            .unwrap_or(DEFAULT_DNS_DOMAIN)
            .to_owned();
        let dns_domain = match net::dns_name_no_root(&written) {
            Ok(d) => d,
            Err(e) => {
                p.push(
                    "networking.dnsDomain",
                    format!("{written:?} is not a valid DNS domain: {e}"),
                );
                written
            }
        };

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
                            if let Some(n) = check_node(p, &key, m, false) {
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
            Some(s) => match s.parse::<KeyAlgorithm>() {
                Ok(a) => a,
                Err(e) => {
                    p.push("pki.encryptionAlgorithm", e.to_string());
                    KeyAlgorithm::default()
                }
            },
        };
        let cert_sans = parse_sans(p, "pki.certSANs", &raw.pki.cert_sans);
        let ca_validity = parse_validity(
            p,
            "pki.caValidity",
            raw.pki.ca_validity.as_deref(),
            DEFAULT_CA_VALIDITY,
        );
        let cert_validity = parse_validity(
            p,
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
                    &format!("{key}.name"),
                    format!("duplicate name {name:?} (already used by {first})"),
                );
            }
            if let Some(first) = addrs.insert(*addr, key) {
                p.push(
                    &format!("{key}.address"),
                    format!("duplicate address {addr} (already used by {first})"),
                );
            }
            if vips.contains(addr) {
                p.push(
                    &format!("{key}.address"),
                    format!("{addr} is the load balancer VIP; the VIP must not be a machine's own address"),
                );
            }
            for svc in &service_subnets {
                if svc.contains(*addr) {
                    p.push(
                        &format!("{key}.address"),
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
        if let Some(b) = &bgp {
            for (i, r) in b.routers.iter().enumerate() {
                let key = format!("loadBalancer.bgp.routers[{i}].address");
                if let Some((other, _, _)) = all.iter().find(|(_, _, a)| *a == r.address) {
                    p.push(
                        &key,
                        format!(
                            "{} is the address of {other}; a router is another machine",
                            r.address
                        ),
                    );
                }
                if vips.contains(&r.address) {
                    p.push(&key, format!("{} is the load balancer VIP", r.address));
                }
                if !vips.is_empty() && !vips.iter().any(|v| v.is_ipv4() == r.address.is_ipv4()) {
                    p.push(
                        &key,
                        format!(
                            "{} is an {family} router but there is no {family} VIP (each router carries the VIPs of its own address family)",
                            r.address,
                            family = if r.address.is_ipv4() { "IPv4" } else { "IPv6" }
                        ),
                    );
                }
            }
            for vip in &vips {
                if !b
                    .routers
                    .iter()
                    .any(|r| r.address.is_ipv4() == vip.is_ipv4())
                {
                    p.push(
                        "loadBalancer.bgp.routers",
                        format!(
                            "no router of the VIP {vip}'s address family (each router carries the VIPs of its own address family)"
                        ),
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

        // Every `None` here pushed a problem above.
        let control_plane_endpoint = control_plane_endpoint?;
        let etcd = etcd.unwrap_or_else(|| Etcd::External {
            members: etcd_members.into_iter().map(|(_, n)| n).collect(),
        });
        Some(Cluster {
            name,
            kubernetes_version,
            control_plane_endpoint,
            load_balancer: LoadBalancer {
                vips,
                hosts: lb_hosts.into_iter().map(|(_, n)| n).collect(),
                vrrp,
                bgp,
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
