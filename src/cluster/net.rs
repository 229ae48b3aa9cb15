//! Small address types for the cluster description: CIDRs, subject alternative names,
//! `host:port` endpoints, and the RFC 1123 name rules kubeadm applies.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP prefix such as `10.96.0.0/12`, with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `addr/prefix`. Host bits must be zero (`10.96.0.1/12` is refused, so that a typo
    /// is not silently widened).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected ADDRESS/PREFIX)"))?;
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not a valid CIDR: {addr:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?} is not a valid CIDR: prefix must be 0..={max}"))?;
        let cidr = Cidr { network, prefix };
        let masked = cidr.mask(network);
        if masked != network {
            return Err(format!(
                "{s:?} has host bits set (did you mean {masked}/{prefix}?)"
            ));
        }
        Ok(cidr)
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }

    /// Whether `ip` lies inside this prefix (same family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == self.network
    }

    /// Whether two prefixes share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `n`th address of the prefix (kubeadm's service VIP is `nth(1)`), if it fits.
    pub fn nth(&self, n: u32) -> Option<IpAddr> {
        match self.network {
            IpAddr::V4(v4) => {
                let size = 1u64 << (32 - u32::from(self.prefix));
                (u64::from(n) < size).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(v4) + n)))
            }
            IpAddr::V6(v6) => {
                let host_bits = 128 - u32::from(self.prefix);
                let fits = host_bits >= 32 || u128::from(n) < (1u128 << host_bits);
                fits.then(|| IpAddr::V6(Ipv6Addr::from(u128::from(v6) + u128::from(n))))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A subject alternative name: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    /// `IP:…`
    Ip(IpAddr),
    /// `DNS:…` (lower case, RFC 1123 subdomain or `*.` wildcard).
    Dns(String),
}

impl San {
    /// kubeadm's rule: an IP if it parses as one, else a DNS name if it is a valid RFC 1123
    /// subdomain or wildcard. kubeadm drops anything else with a warning; we refuse it.
    pub fn parse(s: &str) -> Result<San, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        if is_dns_subdomain(s) || is_wildcard_dns(s) {
            return Ok(San::Dns(s.to_owned()));
        }
        Err(format!(
            "{s:?} is neither an IP address nor a valid lower-case DNS name"
        ))
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
    pub fn parse(s: &str, default_port: u16) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("{s:?} is not a valid host[:port] ({why})");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(bad("brackets hold no IPv6 address"));
            }
            (h, port)
        } else if s.parse::<Ipv6Addr>().is_ok() {
            (s, None)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("port must be 1..=65535"))?,
        };
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            San::Ip(ip)
        } else if is_dns_subdomain(host) {
            San::Dns(host.to_owned())
        } else {
            return Err(bad(
                "host is neither an IP address nor a lower-case DNS name",
            ));
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

/// RFC 1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, 1..=63 chars.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// `*.` followed by an RFC 1123 subdomain.
pub fn is_wildcard_dns(s: &str) -> bool {
    s.strip_prefix("*.").is_some_and(is_dns_subdomain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_contains_nth() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.nth(1), Some("10.96.0.1".parse().unwrap()));
        assert!(c.contains("10.111.255.255".parse().unwrap()));
        assert!(!c.contains("10.112.0.0".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        let e = Cidr::parse("10.96.0.1/12").unwrap_err();
        assert!(e.contains("did you mean 10.96.0.0/12"), "{e}");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
        let v6 = Cidr::parse("fd00:10:96::/108").unwrap();
        assert_eq!(v6.nth(1), Some("fd00:10:96::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert_eq!(Cidr::parse("10.0.0.0/31").unwrap().nth(2), None);
        let a = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(a.overlaps(&Cidr::parse("10.244.0.0/16").unwrap()));
    }

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
        assert!(Endpoint::parse("host:0", 1).is_err());
        assert!(Endpoint::parse("host:99999", 1).is_err());
    }

    #[test]
    fn san_rules_match_kubeadm_vector() {
        // kubeadm's TestGetAPIServerAltNames drops these two; we refuse them.
        assert!(San::parse("1.2.3.L").is_err());
        assert!(San::parse("invalid,commas,in,DNS").is_err());
        assert_eq!(
            San::parse("10.1.245.94").unwrap(),
            San::Ip("10.1.245.94".parse().unwrap())
        );
        assert_eq!(
            San::parse("*.example.com").unwrap(),
            San::Dns("*.example.com".into())
        );
        assert!(San::parse("Upper.example.com").is_err());
    }
}
