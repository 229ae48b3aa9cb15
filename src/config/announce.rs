//! The `announce:` section: the VIPs as host routes in a kernel table that a routing daemon
//! (BIRD) announces by BGP, written while the proxy has enough healthy backends.
//!
//! Parsing stays pure: whether the interface exists, the sysctls are set and apilb may write
//! routes is checked by [`crate::announce`] before anything is bound.

use std::net::IpAddr;
use std::time::Duration;

use super::Checker;
use super::raw::RawAnnounce;
use super::vip::is_interface_name;
use crate::input::prefixed;

/// Default `announce.interface`: the VIP lives on loopback, so no host answers ARP for it.
pub const DEFAULT_ANNOUNCE_INTERFACE: &str = "lo";
/// Default `announce.table`: the kernel routing table apilb writes its routes into.
pub const DEFAULT_ANNOUNCE_TABLE: u32 = 100;
/// Default `announce.protocol`: the route protocol number apilb's routes carry (248 is
/// unassigned in iproute2's `rt_protos`).
pub const DEFAULT_ANNOUNCE_PROTOCOL: u8 = 248;
/// Default `announce.track.healthyBackendsBelow`: withdraw when no backend is Up.
pub const DEFAULT_ANNOUNCE_BELOW: usize = 1;
/// Default `announce.hold`: how long the proxy must stay healthy before the route comes back.
pub const DEFAULT_ANNOUNCE_HOLD: Duration = Duration::from_secs(2);
/// Default `announce.withdrawDelay`: on SIGTERM, the time between deleting the route and
/// draining, for the routers to move new flows elsewhere.
pub const DEFAULT_WITHDRAW_DELAY: Duration = Duration::from_secs(2);

/// A checked `announce:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// `addresses`: each announced as a host route (/32 or /128).
    pub addresses: Vec<IpAddr>,
    /// `interface`: where the addresses live and the routes point (default
    /// [`DEFAULT_ANNOUNCE_INTERFACE`]).
    pub interface: String,
    /// `table` (default [`DEFAULT_ANNOUNCE_TABLE`]); never the kernel's own 253-255.
    pub table: u32,
    /// `protocol` (default [`DEFAULT_ANNOUNCE_PROTOCOL`]); routes of this table and
    /// protocol are apilb's, and stale ones are removed at start.
    pub protocol: u8,
    /// `track.healthyBackendsBelow`: fewer Up backends than this withdraws the routes
    /// (default [`DEFAULT_ANNOUNCE_BELOW`]).
    pub healthy_backends_below: usize,
    /// `hold`: healthy this long before announcing again (default [`DEFAULT_ANNOUNCE_HOLD`]).
    pub hold: Duration,
    /// `withdrawDelay`: on SIGTERM, wait this long after withdrawing before draining
    /// (default [`DEFAULT_WITHDRAW_DELAY`]).
    pub withdraw_delay: Duration,
}

/// The host prefix length of `ip`: 32 or 128.
pub fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// Kernel tables apilb must not write into, with what they are.
const KERNEL_TABLES: &[(u64, &str)] = &[
    (253, "the kernel's default table"),
    (254, "the kernel's main table"),
    (255, "the kernel's local table"),
];

/// Route protocol numbers apilb must not use, with whose they are: the kernel's own, and
/// those of routing daemons that would take apilb's routes for their own.
const TAKEN_PROTOCOLS: &[(u64, &str)] = &[
    (0, "unspec"),
    (1, "redirect"),
    (2, "kernel"),
    (3, "boot"),
    (4, "static"),
    (11, "zebra (FRR)"),
    (12, "bird"),
];

impl Checker {
    pub(super) fn announce(&mut self, raw: &RawAnnounce) -> Option<AnnounceConfig> {
        let mut ok = true;
        let mut addresses: Vec<IpAddr> = Vec::new();
        if raw.addresses.is_empty() {
            self.problem(
                "announce.addresses",
                "needs at least one address, e.g. [\"10.0.0.100/32\"]",
            );
            ok = false;
        }
        for (i, a) in raw.addresses.iter().enumerate() {
            let key = format!("announce.addresses[{i}]");
            match prefixed(&a.0, true) {
                Err(why) => {
                    self.problem(&key, format!("\"{}\" is not a valid address: {why}", a.0));
                    ok = false;
                }
                Ok(net) if net.prefix_len() != host_prefix(net.addr()) => {
                    self.problem(
                        &key,
                        format!(
                            "\"{}\" is not a host address: announce /32 (IPv4) or /128 (IPv6)",
                            a.0.trim()
                        ),
                    );
                    ok = false;
                }
                Ok(net) => {
                    let ip = net.addr();
                    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                        self.problem(&key, format!("{ip} cannot be announced"));
                        ok = false;
                    } else if addresses.contains(&ip) {
                        self.problem(&key, format!("{ip} is listed twice"));
                        ok = false;
                    } else {
                        addresses.push(ip);
                    }
                }
            }
        }
        let interface = match &raw.interface {
            None => DEFAULT_ANNOUNCE_INTERFACE.to_owned(),
            Some(s) => {
                let name = s.0.trim().to_owned();
                if !is_interface_name(&name) {
                    self.problem(
                        "announce.interface",
                        format!("\"{name}\" is not an interface name (1-15 characters, no /)"),
                    );
                    ok = false;
                }
                name
            }
        };
        let table = match self.number(raw.table.as_ref(), "announce.table", 1, u64::from(u32::MAX))
        {
            Some(t) => match KERNEL_TABLES.iter().find(|(n, _)| *n == t) {
                Some((_, what)) => {
                    self.problem(
                        "announce.table",
                        format!("{t} is {what}; use a table of apilb's own, e.g. 100"),
                    );
                    ok = false;
                    DEFAULT_ANNOUNCE_TABLE
                }
                // In range: at most u32::MAX.
                None => t as u32,
            },
            None => {
                ok &= raw.table.is_none();
                DEFAULT_ANNOUNCE_TABLE
            }
        };
        let protocol = match self.number(raw.protocol.as_ref(), "announce.protocol", 0, 255) {
            Some(p) => match TAKEN_PROTOCOLS.iter().find(|(n, _)| *n == p) {
                Some((_, whose)) => {
                    self.problem(
                        "announce.protocol",
                        format!(
                            "{p} is the protocol number of {whose} routes; use one of apilb's own, e.g. 248"
                        ),
                    );
                    ok = false;
                    DEFAULT_ANNOUNCE_PROTOCOL
                }
                // In range: at most 255.
                None => p as u8,
            },
            None => {
                ok &= raw.protocol.is_none();
                DEFAULT_ANNOUNCE_PROTOCOL
            }
        };
        let below = match &raw.track {
            None => DEFAULT_ANNOUNCE_BELOW,
            Some(t) => {
                let below = self.required(
                    t.healthy_backends_below.as_ref(),
                    "announce.track.healthyBackendsBelow",
                    "is required, e.g. 1",
                );
                match self.number(below, "announce.track.healthyBackendsBelow", 1, 10_000) {
                    Some(n) => n as usize,
                    None => {
                        ok = false;
                        DEFAULT_ANNOUNCE_BELOW
                    }
                }
            }
        };
        let hold = self.duration(raw.hold.as_ref(), "announce.hold", None);
        ok &= raw.hold.is_none() || hold.is_some();
        let delay = self.duration(raw.withdraw_delay.as_ref(), "announce.withdrawDelay", None);
        ok &= raw.withdraw_delay.is_none() || delay.is_some();
        ok.then(|| AnnounceConfig {
            addresses,
            interface,
            table,
            protocol,
            healthy_backends_below: below,
            hold: hold.unwrap_or(DEFAULT_ANNOUNCE_HOLD),
            withdraw_delay: delay.unwrap_or(DEFAULT_WITHDRAW_DELAY),
        })
    }
}
