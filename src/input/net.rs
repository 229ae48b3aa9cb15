//! Address rules shared by both files: `host:port`, `ip:port`, DNS names and CIDRs.
//!
//! - A DNS name follows RFC 1123 (labels of letters, digits and inner hyphens, 1-63 bytes
//!   each, 253 in all). DNS is case-insensitive, so upper case is accepted and the name is
//!   kept in lower case. (Kubernetes object names, such as node names, must be lower case
//!   too; that is the cluster description's own rule on top of this one.)
//! - `host:port`: `10.0.0.11:6443`, `[fd00::11]:6443` or `name:6443`; an IPv6 address
//!   needs brackets when a port follows. Port 0 is refused where something connects.
//! - A CIDR is `ADDRESS/PREFIX` ([`ipnet`]); a network's host bits must be zero.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// Why a text is not a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than 253 bytes.
    #[error("\"{0}\" is not a valid host name")]
    Length(String),
    /// The last label is all digits: a mistyped IP address, not a name (RFC 1123 2.1).
    #[error("\"{0}\" is not a valid host name (nor an IP address)")]
    Numeric(String),
    /// A label breaks the rules.
    #[error("\"{name}\" is not a valid host name (label \"{label}\")")]
    Label {
        /// The whole name.
        name: String,
        /// The offending label.
        label: String,
    },
}

/// Check `name` against RFC 1123 (a trailing dot is allowed) and return it in lower case.
pub fn dns_name(name: &str) -> Result<String, NameError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 {
        return Err(NameError::Length(name.to_owned()));
    }
    for label in bare.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(NameError::Label {
                name: name.to_owned(),
                label: label.to_owned(),
            });
        }
    }
    if bare
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NameError::Numeric(name.to_owned()));
    }
    Ok(name.to_ascii_lowercase())
}

/// Why a text is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// `host` without `:port`.
    #[error("a port is missing (write host:port, e.g. 10.0.0.11:6443)")]
    NoPort,
    /// `fd00::1:6443`.
    #[error("an IPv6 address needs brackets, e.g. [fd00::11]:6443")]
    Brackets,
    /// `:6443`.
    #[error("the host is missing")]
    NoHost,
    /// Port 0 where something connects.
    #[error("port 0 cannot be connected to")]
    PortZero,
    /// Not a number from 0 to 65535.
    #[error("\"{0}\" is not a port (1 to 65535)")]
    Port(String),
    /// Not an IP address where only one will do.
    #[error("\"{0}\" is not an IP address")]
    NotIp(String),
    /// Digits and dots that are no IPv4 address.
    #[error("\"{0}\" is not an IPv4 address")]
    NotIpv4(String),
    /// Brackets around something that is no IPv6 address.
    #[error("\"{0}\" is not an IPv6 address")]
    NotIpv6(String),
    /// The host is no valid DNS name.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// The host part of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name, in lower case.
    Dns(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

/// Parse `ip:port` or `[ipv6]:port` (no names); port 0 is allowed when `zero_ok` (a
/// listener on an ephemeral port).
pub fn socket_addr(text: &str, zero_ok: bool) -> Result<SocketAddr, AddressError> {
    let t = text.trim();
    let addr = match SocketAddr::from_str(t) {
        Ok(addr) => addr,
        Err(_) => {
            let (host, port) = split_host_port(t)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip = IpAddr::from_str(host).map_err(|_| AddressError::NotIp(host.to_owned()))?;
            SocketAddr::new(ip, port_number(port)?)
        }
    };
    if addr.port() == 0 && !zero_ok {
        return Err(AddressError::PortZero);
    }
    Ok(addr)
}

/// Parse `host:port` where the host is an IP address or a DNS name. With `default_port`,
/// the port may be left out (`name`, `10.0.0.100`, `fd00::100`, `[fd00::100]`).
pub fn host_port(text: &str, default_port: Option<u16>) -> Result<(Host, u16), AddressError> {
    let t = text.trim();
    if let Ok(addr) = SocketAddr::from_str(t) {
        if addr.port() == 0 {
            return Err(AddressError::PortZero);
        }
        return Ok((Host::Ip(addr.ip()), addr.port()));
    }
    if let Some(port) = default_port {
        let inner = t
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(t);
        if let Ok(ip) = IpAddr::from_str(inner) {
            return Ok((Host::Ip(ip), port));
        }
        if !t.contains(':') {
            return Ok((host(t)?, port));
        }
    }
    let (h, port) = split_host_port(t)?;
    let port = match port_number(port)? {
        0 => return Err(AddressError::PortZero),
        p => p,
    };
    Ok((host(h)?, port))
}

/// A host without a port: an IP address (IPv6 possibly bracketed) or a DNS name.
fn host(h: &str) -> Result<Host, AddressError> {
    if let Some(rest) = h.strip_prefix('[') {
        let inner = rest.trim_end_matches(']');
        return Ipv6Addr::from_str(inner)
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| AddressError::NotIpv6(inner.to_owned()));
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ipv4Addr::from_str(h)
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| AddressError::NotIpv4(h.to_owned()));
    }
    Ok(Host::Dns(dns_name(h)?))
}

fn split_host_port(t: &str) -> Result<(&str, &str), AddressError> {
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(AddressError::NoPort);
    };
    if host.contains(':') && !host.starts_with('[') {
        return Err(AddressError::Brackets);
    }
    if host.is_empty() {
        return Err(AddressError::NoHost);
    }
    Ok((host, port))
}

fn port_number(port: &str) -> Result<u16, AddressError> {
    port.parse::<u16>()
        .map_err(|_| AddressError::Port(port.to_owned()))
}

/// Why a text is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/`.
    #[error("a prefix length is missing (write ADDRESS/PREFIX, e.g. 10.96.0.0/12)")]
    NoPrefix,
    /// The address part.
    #[error("\"{0}\" is not an IP address")]
    Address(String),
    /// The prefix part.
    #[error("\"/{text}\" is not a prefix length (0 to {max})")]
    Prefix {
        /// As written.
        text: String,
        /// 32 or 128.
        max: u8,
    },
    /// A network written with host bits.
    #[error("host bits are set (did you mean {0}?)")]
    HostBits(IpNet),
}

/// Parse `ADDRESS/PREFIX`, keeping the address as written (`10.0.0.100/24` is an address
/// with its subnet's length). With `default_full`, a bare address gets a host prefix (/32 or
/// /128).
pub fn prefixed(text: &str, default_full: bool) -> Result<IpNet, CidrError> {
    let t = text.trim();
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None if default_full => (t, None),
        None => return Err(CidrError::NoPrefix),
    };
    let ip = IpAddr::from_str(addr).map_err(|_| CidrError::Address(addr.to_owned()))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| CidrError::Prefix {
                text: p.to_owned(),
                max,
            })?,
    };
    IpNet::new(ip, len).map_err(|_| CidrError::Prefix {
        text: len.to_string(),
        max,
    })
}

/// A network such as `10.96.0.0/12`: host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parse `ADDRESS/PREFIX`. Host bits must be zero (`10.96.0.1/12` is refused, so that a
    /// typo is not silently widened).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let net = prefixed(text, false)?;
        if net.trunc() != net {
            return Err(CidrError::HostBits(net.trunc()));
        }
        Ok(Cidr(net))
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` lies inside this network (same family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }

    /// The `n`th address of the network (kubeadm's service VIP is `nth(1)`), if it fits.
    pub fn nth(&self, n: u32) -> Option<IpAddr> {
        let ip = match self.0.network() {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4).checked_add(n)?)),
            IpAddr::V6(v6) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(v6).checked_add(u128::from(n))?))
            }
        };
        self.contains(ip).then_some(ip)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_case_insensitive_rfc_1123() {
        assert_eq!(
            dns_name("Master-1.Example.INTERNAL"),
            Ok("master-1.example.internal".into())
        );
        assert_eq!(dns_name("a.b."), Ok("a.b.".into()));
        assert_eq!(dns_name("1a"), Ok("1a".into()));
        assert_eq!(dns_name("1.2.3.l"), Ok("1.2.3.l".into()));
        assert_eq!(
            dns_name("10.0.0.300").unwrap_err().to_string(),
            "\"10.0.0.300\" is not a valid host name (nor an IP address)"
        );
        let bad = [
            ("", "\"\" is not a valid host name"),
            (
                "master_1.x",
                "\"master_1.x\" is not a valid host name (label \"master_1\")",
            ),
            ("-a.x", "\"-a.x\" is not a valid host name (label \"-a\")"),
            ("a..b", "\"a..b\" is not a valid host name (label \"\")"),
        ];
        for (name, want) in bad {
            assert_eq!(dns_name(name).unwrap_err().to_string(), want, "{name}");
        }
        assert!(dns_name(&"a".repeat(64)).is_err());
        assert!(dns_name(&["a"; 127].join(".")).is_ok());
        assert!(dns_name(&["a"; 128].join(".")).is_err());
    }

    #[test]
    fn host_port_forms() {
        let ip = |s: &str| Host::Ip(s.parse().unwrap());
        assert_eq!(
            host_port("10.0.0.11:6443", None),
            Ok((ip("10.0.0.11"), 6443))
        );
        assert_eq!(host_port("[fd00::11]:443", None), Ok((ip("fd00::11"), 443)));
        assert_eq!(
            host_port("API.example:6443", None),
            Ok((Host::Dns("api.example".into()), 6443))
        );
        assert_eq!(
            host_port("fd00::100", Some(6443)),
            Ok((ip("fd00::100"), 6443))
        );
        assert_eq!(
            host_port("[fd00::100]", Some(6443)),
            Ok((ip("fd00::100"), 6443))
        );
        assert_eq!(
            host_port("api", Some(6443)),
            Ok((Host::Dns("api".into()), 6443))
        );
        let bad: &[(&str, Option<u16>, AddressError)] = &[
            ("api", None, AddressError::NoPort),
            ("fd00::1:6443", None, AddressError::Brackets),
            (":6443", None, AddressError::NoHost),
            ("10.0.0.1:0", None, AddressError::PortZero),
            ("api:0", Some(1), AddressError::PortZero),
            ("api:99999", Some(1), AddressError::Port("99999".into())),
            (
                "10.0.0.300:1",
                None,
                AddressError::NotIpv4("10.0.0.300".into()),
            ),
            ("[nope]:1", None, AddressError::NotIpv6("nope".into())),
        ];
        for (text, default, want) in bad {
            assert_eq!(host_port(text, *default).as_ref(), Err(want), "{text}");
        }
        assert!(matches!(
            host_port("bad_host:6443", Some(1)),
            Err(AddressError::Name(_))
        ));
        assert_eq!(socket_addr("127.0.0.1:0", true).map(|a| a.port()), Ok(0));
        assert_eq!(
            socket_addr("127.0.0.1:0", false),
            Err(AddressError::PortZero)
        );
        assert_eq!(
            socket_addr("localhost:1", true),
            Err(AddressError::NotIp("localhost".into()))
        );
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.to_string(), "10.96.0.0/12");
        assert_eq!(c.nth(1), Some("10.96.0.1".parse().unwrap()));
        assert!(c.contains("10.111.255.255".parse().unwrap()));
        assert!(!c.contains("10.112.0.0".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        assert_eq!(
            Cidr::parse("10.96.0.1/12").unwrap_err().to_string(),
            "host bits are set (did you mean 10.96.0.0/12?)"
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/33").unwrap_err().to_string(),
            "\"/33\" is not a prefix length (0 to 32)"
        );
        assert_eq!(Cidr::parse("10.0.0.0"), Err(CidrError::NoPrefix));
        assert_eq!(
            Cidr::parse("10.0.0/8"),
            Err(CidrError::Address("10.0.0".into()))
        );
        let v6 = Cidr::parse("fd00:10:96::/108").unwrap();
        assert_eq!(v6.nth(1), Some("fd00:10:96::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert_eq!(Cidr::parse("10.0.0.0/31").unwrap().nth(2), None);
        assert_eq!(
            Cidr::parse("10.0.0.0/31").unwrap().nth(1),
            Some("10.0.0.1".parse().unwrap())
        );
        let a = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(a.overlaps(&Cidr::parse("10.244.0.0/16").unwrap()));
        assert!(!a.overlaps(&Cidr::parse("11.0.0.0/8").unwrap()));
        let p = prefixed("10.0.0.100/24", false).unwrap();
        assert_eq!(
            (p.addr().to_string(), p.prefix_len()),
            ("10.0.0.100".into(), 24)
        );
        assert_eq!(prefixed("fd00::1", true).unwrap().prefix_len(), 128);
    }
}
