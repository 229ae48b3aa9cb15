//! VIP failover with VRRPv3 (RFC 9568), interoperable with keepalived, driven by the proxy's
//! health.
//!
//! - [`packet`]: the advert codec (pure).
//! - [`fsm`]: the RFC state machine plus tracking (pure: time in, actions out).
//! - `net`: the privileged sockets: raw VRRP sockets, ARP/NA frames (addresses go through
//!   [`crate::netlink`]).
//! - [`task`]: the tokio task that feeds packets, timers and the healthy-backend count to the
//!   FSM and carries out its actions; [`Vip`] is its handle.
//!
//! Who announces the VIP stays behind the narrow [`Vip`] handle (start, status, reload,
//! shutdown) fed by the backend set's view (what can change live is decided by
//! [`crate::config::diff`]), so another announcer (BGP through a routing
//! daemon) can sit beside VRRP later without touching the proxy or `control`. What this module
//! does not do: virtual MACs, VRRPv2, authentication, sync groups across interfaces.

pub mod fsm;
mod net;
pub mod packet;
pub mod task;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use task::{Vip, VipStatus};

use crate::config::{VipAddress, VipConfig};

/// Why the VIP could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `vip.interface` names no interface in this network namespace.
    #[error("vip.interface: interface \"{0}\" does not exist")]
    NoInterface(String),
    /// The config cannot work on this host (addresses off the interface's subnets, no
    /// source address); every problem is listed.
    #[error("vip (VRID {vrid} on {interface}): {}", problems.join("; "))]
    Unusable {
        /// The interface.
        interface: String,
        /// The VRID.
        vrid: u8,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// A socket could not be opened or set up (needs CAP_NET_RAW).
    #[error("vip (VRID {vrid} on {interface}): {what}: {error}")]
    Socket {
        /// The interface.
        interface: String,
        /// The VRID.
        vrid: u8,
        /// Which step.
        what: &'static str,
        /// The system error.
        error: io::Error,
    },
    /// An rtnetlink request failed (adding addresses needs CAP_NET_ADMIN).
    #[error("vip (on {interface}): {what}: {error}")]
    Netlink {
        /// The interface.
        interface: String,
        /// Which step.
        what: &'static str,
        /// The error.
        error: io::Error,
    },
}

impl From<crate::netlink::Error> for Error {
    fn from(e: crate::netlink::Error) -> Self {
        match e {
            crate::netlink::Error::NoInterface(name) => Error::NoInterface(name),
            crate::netlink::Error::Request {
                interface,
                what,
                error,
            } => Error::Netlink {
                interface,
                what,
                error,
            },
        }
    }
}

impl Error {
    /// Whether the config (or the host it meets) is at fault, rather than the runtime: such
    /// errors exit with the config exit code.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::NoInterface(_) | Error::Unusable { .. })
    }
}

pub use crate::netlink::Interface;

/// Check that `cfg` can work on `iface` (pure): every virtual address lies on a subnet of one
/// of the interface's own addresses, and there is a source address for each family in use
/// (the primary IPv4 address, the IPv6 link-local address). Returns those sources.
pub fn check_interface(
    cfg: &VipConfig,
    iface: &Interface,
) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), Error> {
    let vips: Vec<IpAddr> = cfg.addresses.iter().map(|a| a.ip).collect();
    let own: Vec<&VipAddress> = iface
        .addresses
        .iter()
        .filter(|a| !vips.contains(&a.ip))
        .collect();
    let src4 = own.iter().find_map(|a| match a.ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    });
    let src6 = own.iter().find_map(|a| match a.ip {
        IpAddr::V6(ip) if ip.is_unicast_link_local() => Some(ip),
        _ => None,
    });
    let mut problems = Vec::new();
    let wants4 = cfg.addresses.iter().any(|a| a.ip.is_ipv4());
    let wants6 = cfg.addresses.iter().any(|a| a.ip.is_ipv6());
    if wants4 && src4.is_none() {
        problems.push(format!(
            "{} has no IPv4 address of its own to send adverts from",
            iface.name
        ));
    }
    if wants6 && src6.is_none() {
        problems.push(format!(
            "{} has no IPv6 link-local address to send adverts from",
            iface.name
        ));
    }
    for v in &cfg.addresses {
        let on_subnet = own.iter().any(|o| {
            !matches!(o.ip, IpAddr::V6(ip) if ip.is_unicast_link_local())
                && same_subnet(o.ip, v.ip, o.prefix)
        });
        if !on_subnet {
            let nets: Vec<String> = own
                .iter()
                .filter(|o| o.ip.is_ipv4() == v.ip.is_ipv4())
                .map(ToString::to_string)
                .collect();
            problems.push(format!(
                "{} is not on a subnet of {} ({}); VRRP peers and clients could not reach it",
                v.ip,
                iface.name,
                if nets.is_empty() {
                    "no addresses of that family".to_owned()
                } else {
                    nets.join(", ")
                }
            ));
        }
    }
    let wanted_peer_families: Vec<bool> = cfg.unicast_peers.iter().map(IpAddr::is_ipv4).collect();
    if wanted_peer_families.iter().any(|v4| *v4) && !wants4 {
        problems.push("unicastPeers has IPv4 peers but there is no IPv4 virtual address".into());
    }
    if wanted_peer_families.iter().any(|v4| !*v4) && !wants6 {
        problems.push("unicastPeers has IPv6 peers but there is no IPv6 virtual address".into());
    }
    if !problems.is_empty() {
        return Err(Error::Unusable {
            interface: iface.name.clone(),
            vrid: cfg.vrid,
            problems,
        });
    }
    Ok((src4.filter(|_| wants4), src6.filter(|_| wants6)))
}

/// Whether `a` and `b` share the first `prefix` bits.
pub(crate) fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
