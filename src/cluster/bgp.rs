//! `loadBalancer.bgp`: instead of moving the VIP with VRRP, every LB host announces it as a
//! route to the network's routers (BGP through BIRD 2, which `apilb bootstrap` configures)
//! while its proxy is healthy, and the routers spread flows over the hosts by ECMP.
//!
//! Checked here without touching the file system: the password is a `file:/path` reference
//! that `apilb bootstrap` reads when it writes `bird.conf`, so the secret never sits in the
//! cluster description nor in anything that prints it.

use std::net::IpAddr;
use std::path::PathBuf;

use super::raw::{RawBgp, RawNode};
use crate::input::Collector;

/// `loadBalancer.bgp.bfd` default: BFD on every session (sub-second failure detection).
pub const DEFAULT_BFD: bool = true;
/// The prefix of `loadBalancer.bgp.password`.
pub const PASSWORD_PREFIX: &str = "file:";
/// AS_TRANS (RFC 6793), a placeholder in the protocol, never an AS of its own.
const AS_TRANS: u32 = 23_456;

/// `loadBalancer.bgp`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bgp {
    /// Each LB host's own AS number, in `loadBalancer.hosts` order: `hosts[i].asn`, else
    /// `localAsn`.
    pub host_asns: Vec<u32>,
    /// The routers every LB host peers with, at least one.
    pub routers: Vec<Router>,
    /// `bfd`, default [`DEFAULT_BFD`].
    pub bfd: bool,
    /// `password: file:/path`: the file holding the TCP-MD5 password, read by `apilb
    /// bootstrap` (never the password itself).
    pub password_file: Option<PathBuf>,
}

impl Bgp {
    /// The AS number of the LB host at `index` in `loadBalancer.hosts`.
    pub fn host_asn(&self, index: usize) -> Option<u32> {
        self.host_asns.get(index).copied()
    }
}

/// One BGP neighbour of every LB host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// Its address (the session's far end).
    pub address: IpAddr,
    /// Its AS number.
    pub asn: u32,
}

/// An AS number: 1 to 4294967294, not AS_TRANS.
fn asn(p: &mut Collector, key: &str, text: &str) -> Option<u32> {
    let text = text.trim();
    match text.parse::<u32>() {
        Ok(0) | Ok(u32::MAX) => {
            p.push(key, format!("{text} is reserved; use 1 to 4294967294"));
            None
        }
        Ok(AS_TRANS) => {
            p.push(
                key,
                format!("{AS_TRANS} is AS_TRANS (RFC 6793), not a usable AS number"),
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            p.push(
                key,
                format!("\"{text}\" is not an AS number (1 to 4294967294)"),
            );
            None
        }
    }
}

/// Check `loadBalancer.bgp` against the LB hosts as written; `None` after pushing problems.
pub(super) fn check(p: &mut Collector, b: &RawBgp, hosts: &[RawNode]) -> Option<Bgp> {
    let before = p.count();
    let local = b
        .local_asn
        .as_deref()
        .and_then(|t| asn(p, "loadBalancer.bgp.localAsn", t));
    if hosts.is_empty() {
        p.push(
            "loadBalancer.bgp",
            "needs the LB hosts in loadBalancer.hosts (each of them announces the VIP)",
        );
    }
    let mut host_asns = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let key = format!("loadBalancer.hosts[{i}].asn");
        match h.asn.as_deref() {
            Some(t) => host_asns.extend(asn(p, &key, t)),
            None if b.local_asn.is_some() => host_asns.extend(local),
            None => p.push(
                &key,
                "is required when loadBalancer.bgp.localAsn is not set (the LB host's own AS number)",
            ),
        }
    }
    let mut routers: Vec<Router> = Vec::new();
    let mut seen: Vec<(usize, IpAddr)> = Vec::new();
    match b.routers.as_deref() {
        None | Some([]) => p.push(
            "loadBalancer.bgp.routers",
            "needs at least one router, e.g. [{address: 10.0.0.1, asn: 65000}]",
        ),
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                let key = format!("loadBalancer.bgp.routers[{i}]");
                let address = p
                    .required(r.address.as_deref(), &format!("{key}.address"))
                    .and_then(|a| super::parse_ip(p, &format!("{key}.address"), a));
                let asn = p
                    .required(r.asn.as_deref(), &format!("{key}.asn"))
                    .and_then(|t| asn(p, &format!("{key}.asn"), t));
                if let Some(a) = address {
                    if let Some((j, _)) = seen.iter().find(|(_, s)| *s == a) {
                        p.push(
                            &format!("{key}.address"),
                            format!("duplicate router {a} (already loadBalancer.bgp.routers[{j}])"),
                        );
                        continue;
                    }
                    seen.push((i, a));
                }
                if let (Some(address), Some(asn)) = (address, asn) {
                    routers.push(Router { address, asn });
                }
            }
        }
    }
    let bfd = match b.bfd.as_deref().map(str::trim) {
        None => DEFAULT_BFD,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            p.push(
                "loadBalancer.bgp.bfd",
                format!("\"{other}\" is not true or false"),
            );
            DEFAULT_BFD
        }
    };
    let password_file = b.password.as_deref().and_then(|t| {
        let path = t.trim().strip_prefix(PASSWORD_PREFIX).map(str::trim);
        match path {
            Some(path) if path.starts_with('/') && path.len() > 1 => Some(PathBuf::from(path)),
            // The value may be the password itself: never echo it.
            _ => {
                p.push(
                    "loadBalancer.bgp.password",
                    "must be file:/absolute/path (a file holding the TCP-MD5 password; the \
                     password itself is not written into the cluster description)",
                );
                None
            }
        }
    });
    (p.count() == before).then_some(Bgp {
        host_asns,
        routers,
        bfd,
        password_file,
    })
}
