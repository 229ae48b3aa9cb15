//! What the host must offer before apilb announces: the interface is up, the process holds
//! CAP_NET_ADMIN, no other interface holds a VIP, and a VIP on one interface (usually `lo`)
//! that lies in a subnet another interface is connected to is not answered for by ARP there
//! (`net.ipv4.conf.all.arp_ignore=1`, `arp_announce=2`); IPv6 is enabled where an IPv6 VIP
//! goes (Linux answers neighbour solicitations only for addresses of the asking interface, so
//! IPv6 needs no ARP-like sysctl). [`problems`] is pure: the edge gathers [`Facts`].

use std::net::IpAddr;

use crate::config::{AnnounceConfig, VipAddress};
use crate::netlink::Interface;
use crate::vip::same_subnet;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// What the host looks like, as far as announcing cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `announce.interface`.
    pub interface: Interface,
    /// Every other interface: name and addresses.
    pub others: Vec<(String, Vec<VipAddress>)>,
    /// Whether the process holds CAP_NET_ADMIN (effective).
    pub net_admin: bool,
}

/// A sysctl reader: `(family, interface or "all", key)` to its value, `None` if unreadable;
/// e.g. `("ipv4", "all", "arp_ignore")` reads `net.ipv4.conf.all.arp_ignore`.
pub type Sysctl<'a> = &'a dyn Fn(&str, &str, &str) -> Option<i64>;

/// Every reason `cfg` cannot be announced on the host `facts` and `sysctl` describe, each
/// naming the sysctl, capability or interface to change.
pub fn problems(cfg: &AnnounceConfig, facts: &Facts, sysctl: Sysctl<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let iface = &facts.interface;
    if !facts.net_admin {
        out.push(
            "writing routes needs the capability CAP_NET_ADMIN, which this process does not \
             have (run as root, or give the unit AmbientCapabilities=CAP_NET_ADMIN)"
                .to_owned(),
        );
    }
    if !iface.up {
        out.push(format!(
            "{} is down (ip link set {} up)",
            iface.name, iface.name
        ));
    }
    for &vip in &cfg.addresses {
        if let Some((other, _)) = facts
            .others
            .iter()
            .find(|(_, addrs)| addrs.iter().any(|a| a.ip == vip))
        {
            out.push(format!(
                "{vip} is on {other}, not on {}: remove it there or set announce.interface: {other}",
                iface.name
            ));
            continue;
        }
        match vip {
            IpAddr::V4(_) => out.extend(arp_problems(vip, facts, sysctl)),
            IpAddr::V6(_) => {
                for scope in ["all", iface.name.as_str()] {
                    if sysctl("ipv6", scope, "disable_ipv6") == Some(1) {
                        out.push(format!(
                            "{vip} cannot be added to {}: net.ipv6.conf.{scope}.disable_ipv6 is 1 \
                             (set it to 0)",
                            iface.name
                        ));
                    }
                }
            }
        }
    }
    out
}

/// For an IPv4 VIP living on the announce interface: each other interface connected to a
/// subnet that holds it would answer ARP for it (and source ARP requests from it) unless
/// `arp_ignore >= 1` and `arp_announce >= 2` (the kernel uses the larger of `all` and the
/// interface's own value).
fn arp_problems(vip: IpAddr, facts: &Facts, sysctl: Sysctl<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, addrs) in &facts.others {
        let Some(net) = addrs
            .iter()
            .find(|a| a.ip.is_ipv4() && a.prefix < 32 && same_subnet(a.ip, vip, a.prefix))
        else {
            continue;
        };
        for (key, want) in [("arp_ignore", 1), ("arp_announce", 2)] {
            let all = sysctl("ipv4", "all", key);
            let own = sysctl("ipv4", name, key);
            let effective = all.max(own);
            if effective.is_none_or(|v| v < want) {
                let now = effective.map_or_else(|| "unreadable".to_owned(), |v| v.to_string());
                out.push(format!(
                    "{vip} on {} is in {name}'s subnet ({net}), so {name} would answer ARP for \
                     it: set net.ipv4.conf.all.{key}={want} (now {now})",
                    facts.interface.name
                ));
            }
        }
    }
    out
}

/// Whether the `CapEff:` line of `/proc/self/status` (`status`) holds CAP_NET_ADMIN.
pub fn has_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Read a sysctl of this process's network namespace from /proc/sys.
pub fn read_sysctl(family: &str, scope: &str, key: &str) -> Option<i64> {
    // Built from parts: an interface name may hold a dot (eth0.100), which the dotted
    // sysctl name would turn into a path separator.
    let path = std::path::Path::new("/proc/sys/net")
        .join(family)
        .join("conf")
        .join(scope)
        .join(key);
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn cfg(addresses: &[&str]) -> AnnounceConfig {
        AnnounceConfig {
            addresses: addresses.iter().map(|a| a.parse().expect("ip")).collect(),
            interface: "lo".into(),
            table: 100,
            protocol: 248,
            healthy_backends_below: 1,
            hold: Duration::from_secs(2),
            withdraw_delay: Duration::from_secs(2),
        }
    }

    fn addr(s: &str) -> VipAddress {
        let (ip, prefix) = s.split_once('/').expect("cidr");
        VipAddress {
            ip: ip.parse().expect("ip"),
            prefix: prefix.parse().expect("prefix"),
        }
    }

    fn facts(others: &[(&str, &[&str])]) -> Facts {
        Facts {
            interface: Interface {
                name: "lo".into(),
                index: 1,
                mac: [0; 6],
                up: true,
                addresses: vec![addr("127.0.0.1/8")],
            },
            others: others
                .iter()
                .map(|(n, a)| ((*n).to_owned(), a.iter().map(|s| addr(s)).collect()))
                .collect(),
            net_admin: true,
        }
    }

    fn sysctls(values: &[(&str, i64)]) -> impl Fn(&str, &str, &str) -> Option<i64> {
        let map: HashMap<String, i64> = values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        move |f, s, k| map.get(&format!("net.{f}.conf.{s}.{k}")).copied()
    }

    #[test]
    fn a_vip_in_a_connected_subnet_needs_the_arp_sysctls() {
        let f = facts(&[("eth0", &["10.0.0.11/24"])]);
        let off = sysctls(&[
            ("net.ipv4.conf.all.arp_ignore", 0),
            ("net.ipv4.conf.all.arp_announce", 0),
            ("net.ipv4.conf.eth0.arp_ignore", 0),
            ("net.ipv4.conf.eth0.arp_announce", 0),
        ]);
        assert_eq!(
            problems(&cfg(&["10.0.0.100"]), &f, &off),
            [
                "10.0.0.100 on lo is in eth0's subnet (10.0.0.11/24), so eth0 would answer ARP for it: set net.ipv4.conf.all.arp_ignore=1 (now 0)",
                "10.0.0.100 on lo is in eth0's subnet (10.0.0.11/24), so eth0 would answer ARP for it: set net.ipv4.conf.all.arp_announce=2 (now 0)",
            ]
        );
        let on = sysctls(&[
            ("net.ipv4.conf.all.arp_ignore", 1),
            ("net.ipv4.conf.all.arp_announce", 2),
        ]);
        assert!(problems(&cfg(&["10.0.0.100"]), &f, &on).is_empty());
        // The interface's own value counts too (the kernel takes the larger).
        let own = sysctls(&[
            ("net.ipv4.conf.all.arp_ignore", 0),
            ("net.ipv4.conf.eth0.arp_ignore", 1),
            ("net.ipv4.conf.all.arp_announce", 2),
        ]);
        assert!(problems(&cfg(&["10.0.0.100"]), &f, &own).is_empty());
    }

    #[test]
    fn a_vip_outside_every_connected_subnet_needs_no_sysctl() {
        let f = facts(&[("eth0", &["10.0.0.11/24"])]);
        assert!(problems(&cfg(&["192.0.2.100", "fd00::100"]), &f, &sysctls(&[])).is_empty());
    }

    #[test]
    fn capability_interface_and_ipv6_problems_are_all_named() {
        let mut f = facts(&[("eth0", &["10.0.0.11/24", "10.0.0.101/24"])]);
        f.net_admin = false;
        f.interface.up = false;
        let s = sysctls(&[("net.ipv6.conf.lo.disable_ipv6", 1)]);
        assert_eq!(
            problems(&cfg(&["10.0.0.101", "fd00::100"]), &f, &s),
            [
                "writing routes needs the capability CAP_NET_ADMIN, which this process does not have (run as root, or give the unit AmbientCapabilities=CAP_NET_ADMIN)",
                "lo is down (ip link set lo up)",
                "10.0.0.101 is on eth0, not on lo: remove it there or set announce.interface: eth0",
                "fd00::100 cannot be added to lo: net.ipv6.conf.lo.disable_ipv6 is 1 (set it to 0)",
            ]
        );
    }

    #[test]
    fn cap_net_admin_is_read_from_capeff() {
        assert!(has_net_admin("Name:\tapilb\nCapEff:\t0000000000001000\n"));
        assert!(has_net_admin("CapEff:\t000001ffffffffff\n"));
        assert!(!has_net_admin("CapEff:\t0000000000000400\n"));
        assert!(!has_net_admin("no such line"));
    }
}
