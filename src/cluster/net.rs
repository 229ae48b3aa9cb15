//! Small address types for the cluster description: subject alternative names, `host:port`
//! endpoints, and node names. The address, DNS-name and CIDR rules themselves are
//! [`crate::input`]'s, shared with the LB config.

use std::fmt;
use std::net::IpAddr;

use crate::input::{AddressError, Host, NameError, dns_name, host_port};

/// Why a text is not a subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is neither an IP address nor a valid DNS name")]
pub struct SanError(pub String);

/// A subject alternative name: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    /// `IP:…`
    Ip(IpAddr),
    /// `DNS:…` (lower case, RFC 1123 subdomain or `*.` wildcard).
    Dns(String),
}

impl San {
    /// kubeadm's rule: an IP if it parses as one, else a DNS name (RFC 1123, kept in lower
    /// case) or a `*.` wildcard over one. kubeadm drops anything else with a warning; we
    /// refuse it.
    pub fn parse(s: &str) -> Result<San, SanError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => ("*.", rest),
            None => ("", s),
        };
        match dns_name_no_root(name) {
            Ok(name) => Ok(San::Dns(format!("{wildcard}{name}"))),
            Err(_) => Err(SanError(s.to_owned())),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Dns(d) => write!(f, "DNS:{d}"),
        }
    }
}

/// A `host:port` endpoint such as the `controlPlaneEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host part: an IP or a DNS name.
    pub host: San,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// Parse `host[:port]`, `[v6]:port` or a bare IPv6 address; `default_port` fills a missing
    /// port (kubeadm uses the local bind port).
    pub fn parse(s: &str, default_port: u16) -> Result<Endpoint, AddressError> {
        let (host, port) = host_port(s, Some(default_port))?;
        let host = match host {
            Host::Ip(ip) => San::Ip(ip),
            Host::Dns(name) => San::Dns(dns_name_no_root(&name)?),
        };
        Ok(Endpoint { host, port })
    }

    /// `https://host:port`, IPv6 bracketed.
    pub fn url(&self) -> String {
        format!("https://{self}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            San::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]:{}", self.port),
            San::Ip(ip) => write!(f, "{ip}:{}", self.port),
            San::Dns(d) => write!(f, "{d}:{}", self.port),
        }
    }
}

/// `https://` URL for an address and port, IPv6 bracketed.
pub fn https_url(ip: IpAddr, port: u16) -> String {
    Endpoint {
        host: San::Ip(ip),
        port,
    }
    .url()
}

/// A DNS name ([`dns_name`]) without the trailing root dot, which certificates and kubeadm
/// do not take.
pub(crate) fn dns_name_no_root(name: &str) -> Result<String, NameError> {
    if name.ends_with('.') {
        return Err(NameError::Label {
            name: name.to_owned(),
            label: String::new(),
        });
    }
    dns_name(name)
}

/// A Kubernetes object name (node name, cluster name): an RFC 1123 subdomain already in
/// lower case, as the API server requires. Unlike a host name, it may be all digits.
pub fn is_node_name(name: &str) -> bool {
    let syntax_ok = match dns_name_no_root(name) {
        Ok(_) | Err(NameError::Numeric(_)) => true,
        Err(_) => false,
    };
    syntax_ok && name == name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let e = Endpoint::parse("k8s-api.example.internal:6443", 1).unwrap();
        assert_eq!(e.url(), "https://k8s-api.example.internal:6443");
        let e = Endpoint::parse("10.0.0.100", 6443).unwrap();
        assert_eq!(e.to_string(), "10.0.0.100:6443");
        let e = Endpoint::parse("[fd00::100]:443", 6443).unwrap();
        assert_eq!(e.url(), "https://[fd00::100]:443");
        let e = Endpoint::parse("fd00::100", 6443).unwrap();
        assert_eq!(e.port, 6443);
        assert!(Endpoint::parse("Bad_Host:6443", 1).is_err());
        assert_eq!(
            Endpoint::parse("API.Example:6443", 1).unwrap().to_string(),
            "api.example:6443"
        );
        assert!(Endpoint::parse("host:0", 1).is_err());
        assert!(Endpoint::parse("host:99999", 1).is_err());
    }

    #[test]
    fn san_rules_match_kubeadm_vector() {
        // kubeadm's TestGetAPIServerAltNames drops these two: the first for its upper case
        // (DNS names are case-insensitive, so we take it in lower case), the second we refuse.
        assert_eq!(San::parse("1.2.3.L").unwrap(), San::Dns("1.2.3.l".into()));
        assert!(San::parse("invalid,commas,in,DNS").is_err());
        assert!(San::parse("10.0.0.300").is_err());
        assert_eq!(
            San::parse("10.1.245.94").unwrap(),
            San::Ip("10.1.245.94".parse().unwrap())
        );
        assert_eq!(
            San::parse("*.example.com").unwrap(),
            San::Dns("*.example.com".into())
        );
        // DNS is case-insensitive: an upper-case name is the same name, written in lower case.
        assert_eq!(
            San::parse("Upper.Example.com").unwrap(),
            San::Dns("upper.example.com".into())
        );
        assert_eq!(
            San::parse("*.Example.com").unwrap(),
            San::Dns("*.example.com".into())
        );
        assert!(San::parse("example.com.").is_err());
        assert!(is_node_name("master-1"));
        assert!(is_node_name("7"));
        assert!(!is_node_name("Master-1"));
        assert!(!is_node_name("master_1"));
    }
}
