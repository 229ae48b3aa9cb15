//! The `vip:` section: which addresses VRRPv3 moves between LB hosts, and how.
//!
//! Parsing stays pure: whether the interface exists and the addresses fit its subnets is
//! checked by [`crate::vip`] before anything is bound.

use std::net::IpAddr;
use std::time::Duration;

use super::Checker;
use super::raw::{RawTrack, RawVip};
use crate::input::{CidrError, parse_duration, prefixed};

/// Default `vip.priority` (keepalived's default too).
pub const DEFAULT_VIP_PRIORITY: u8 = 100;
/// Default `vip.advertInterval`: VRRPv3's own default is 1 s; 100 ms detects a dead master in
/// about 0.35 s and was measured stable on 2 vCPUs.
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_millis(100);
/// Default `vip.preempt`.
pub const DEFAULT_PREEMPT: bool = true;
/// Default `vip.preemptDelay`.
pub const DEFAULT_PREEMPT_DELAY: Duration = Duration::ZERO;
/// Default `vip.checksum`: what keepalived sends and expects.
pub const DEFAULT_CHECKSUM: ChecksumStyle = ChecksumStyle::Keepalived;
/// Default `vip.handover`.
pub const DEFAULT_HANDOVER: Handover = Handover::MakeBeforeBreak;
/// Default `vip.track.weight`.
pub const DEFAULT_TRACK_WEIGHT: u8 = 100;
/// Default `vip.track.hold`: how long the healthy-backend count must stay on one side of the
/// threshold before the priority follows it (hysteresis: one failed check moves nothing).
pub const DEFAULT_TRACK_HOLD: Duration = Duration::from_secs(1);

/// How the VRRPv3 checksum of IPv4 adverts is computed when sending. Both are accepted on
/// receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStyle {
    /// With the IPv4 pseudo-header (keepalived's and FRR's default).
    Keepalived,
    /// Over the VRRP message only (RFC 9568, Cisco).
    Rfc9568,
}

impl ChecksumStyle {
    pub(super) const NAMES: &[(&str, ChecksumStyle)] = &[
        ("keepalived", ChecksumStyle::Keepalived),
        ("rfc9568", ChecksumStyle::Rfc9568),
    ];
}

/// The order of a planned hand-over (SIGTERM on the master). Both keep every connection
/// that has sent its request before the switch; they differ on a client connecting in the
/// moment of the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Keep the addresses (and keep accepting on them) until the new master is heard, then
    /// let go: no client waits, but a connection accepted in the last milliseconds before
    /// the clients follow the new master's gratuitous ARP / NA can be reset there, if its
    /// request had not been sent yet.
    MakeBeforeBreak,
    /// keepalived's order: remove the addresses, then send priority 0. No connection is
    /// accepted that the switch could cut, but a SYN sent before the new master announces
    /// itself is dropped and the client resends it after TCP's 1 s retransmission timeout.
    BreakBeforeMake,
}

impl Handover {
    pub(super) const NAMES: &[(&str, Handover)] = &[
        ("makeBeforeBreak", Handover::MakeBeforeBreak),
        ("breakBeforeMake", Handover::BreakBeforeMake),
    ];
}

/// A virtual address and its prefix length, e.g. `10.0.0.100/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipAddress {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length (32 or 128 when written without one).
    pub prefix: u8,
}

impl std::fmt::Display for VipAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// A checked `vip:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// `interface`: where the addresses go and adverts are sent.
    pub interface: String,
    /// `vrid`: virtual router id, 1-255, the same on every LB host (and keepalived peer).
    pub vrid: u8,
    /// `addresses`: moved together as one group.
    pub addresses: Vec<VipAddress>,
    /// `priority`: 1-254 (default [`DEFAULT_VIP_PRIORITY`]); the highest healthy host wins.
    pub priority: u8,
    /// `advertInterval`: 10 ms to 40.95 s in whole centiseconds (default
    /// [`DEFAULT_ADVERT_INTERVAL`]).
    pub advert_interval: Duration,
    /// `preempt` (default [`DEFAULT_PREEMPT`]).
    pub preempt: bool,
    /// `preemptDelay` (default [`DEFAULT_PREEMPT_DELAY`]).
    pub preempt_delay: Duration,
    /// `unicastPeers`: send to each instead of multicast (empty = multicast).
    pub unicast_peers: Vec<IpAddr>,
    /// `checksum` (default [`DEFAULT_CHECKSUM`]).
    pub checksum: ChecksumStyle,
    /// `track`: lower the priority when the proxy has too few healthy backends.
    pub track: Option<TrackConfig>,
    /// `handover` (default [`DEFAULT_HANDOVER`]).
    pub handover: Handover,
}

/// `vip.track`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackConfig {
    /// `healthyBackendsBelow`: fewer Up backends than this lowers the priority.
    pub healthy_backends_below: usize,
    /// `weight`: how much lower (default [`DEFAULT_TRACK_WEIGHT`]); the result stays >= 1.
    pub weight: u8,
    /// `hold`: hysteresis (default [`DEFAULT_TRACK_HOLD`]).
    pub hold: Duration,
}

impl VipConfig {
    /// The advert interval in centiseconds, as sent (1-4095).
    pub fn advert_interval_cs(&self) -> u16 {
        // Checked at parse time to be 1-4095 cs.
        (self.advert_interval.as_millis() / 10) as u16
    }
}

impl Checker {
    pub(super) fn vip(&mut self, raw: &RawVip) -> Option<VipConfig> {
        let interface = raw
            .interface
            .as_ref()
            .map_or(String::new(), |i| i.0.trim().to_owned());
        let iface_ok = if raw.interface.is_none() {
            self.problem("vip.interface", "is required, e.g. eth0");
            false
        } else if !is_interface_name(&interface) {
            self.problem(
                "vip.interface",
                format!("\"{interface}\" is not an interface name (1-15 characters, no /)"),
            );
            false
        } else {
            true
        };
        let vrid = self.required(
            raw.vrid.as_ref(),
            "vip.vrid",
            "is required: 1 to 255, the same on every LB host",
        );
        let vrid = self.number(vrid, "vip.vrid", 1, 255);
        let mut addresses = Vec::new();
        let mut addr_ok = true;
        if raw.addresses.is_empty() {
            self.problem(
                "vip.addresses",
                "needs at least one address, e.g. [\"10.0.0.100/24\"]",
            );
            addr_ok = false;
        }
        for (i, a) in raw.addresses.iter().enumerate() {
            let key = format!("vip.addresses[{i}]");
            match parse_vip_address(&a.0) {
                Ok(v) if addresses.iter().any(|o: &VipAddress| o.ip == v.ip) => {
                    self.problem(&key, format!("{} is listed twice", v.ip));
                    addr_ok = false;
                }
                Ok(v) => addresses.push(v),
                Err(why) => {
                    self.problem(&key, format!("\"{}\" is not a valid address: {why}", a.0));
                    addr_ok = false;
                }
            }
        }
        let priority = self.number(raw.priority.as_ref(), "vip.priority", 1, 254);
        let priority_ok = raw.priority.is_none() || priority.is_some();
        let interval = match raw.advert_interval.as_ref() {
            None => Some(DEFAULT_ADVERT_INTERVAL),
            Some(s) => {
                match parse_duration(&s.0) {
                    Ok(d) if d.subsec_nanos() % 10_000_000 != 0 => {
                        self.problem(
                        "vip.advertInterval",
                        format!("{} is not a whole number of centiseconds (VRRPv3 sends 10 ms units)", s.0),
                    );
                        None
                    }
                    Ok(d) if d < Duration::from_millis(10) || d > Duration::from_millis(40_950) => {
                        self.problem(
                            "vip.advertInterval",
                            format!("{} is out of range (10ms to 40.95s)", s.0),
                        );
                        None
                    }
                    Ok(d) => Some(d),
                    Err(why) => {
                        self.problem(
                            "vip.advertInterval",
                            format!("\"{}\" is not a duration: {why}", s.0),
                        );
                        None
                    }
                }
            }
        };
        let preempt = self.boolean(raw.preempt.as_ref(), "vip.preempt");
        let preempt_ok = raw.preempt.is_none() || preempt.is_some();
        let preempt_delay = self.duration(raw.preempt_delay.as_ref(), "vip.preemptDelay", None);
        let delay_ok = raw.preempt_delay.is_none() || preempt_delay.is_some();
        let mut peers = Vec::new();
        let mut peers_ok = true;
        for (i, p) in raw.unicast_peers.iter().enumerate() {
            match p.0.trim().parse::<IpAddr>() {
                Ok(ip) => peers.push(ip),
                Err(_) => {
                    self.problem(
                        &format!("vip.unicastPeers[{i}]"),
                        format!("\"{}\" is not an IP address", p.0),
                    );
                    peers_ok = false;
                }
            }
        }
        let checksum = self.choice(raw.checksum.as_ref(), "vip.checksum", ChecksumStyle::NAMES);
        let checksum_ok = raw.checksum.is_none() || checksum.is_some();
        let handover = self.choice(raw.handover.as_ref(), "vip.handover", Handover::NAMES);
        let handover_ok = raw.handover.is_none() || handover.is_some();
        let (track, track_ok) = match &raw.track {
            None => (None, true),
            Some(t) => match self.track(t) {
                Some(t) => (Some(t), true),
                None => (None, false),
            },
        };
        let ok = iface_ok
            && addr_ok
            && priority_ok
            && preempt_ok
            && delay_ok
            && peers_ok
            && checksum_ok
            && handover_ok
            && track_ok;
        if !ok {
            return None;
        }
        Some(VipConfig {
            interface,
            vrid: vrid? as u8,
            addresses,
            priority: priority.map_or(DEFAULT_VIP_PRIORITY, |p| p as u8),
            advert_interval: interval?,
            preempt: preempt.unwrap_or(DEFAULT_PREEMPT),
            preempt_delay: preempt_delay.unwrap_or(DEFAULT_PREEMPT_DELAY),
            unicast_peers: peers,
            checksum: checksum.unwrap_or(DEFAULT_CHECKSUM),
            track,
            handover: handover.unwrap_or(DEFAULT_HANDOVER),
        })
    }

    fn track(&mut self, raw: &RawTrack) -> Option<TrackConfig> {
        let below = self.required(
            raw.healthy_backends_below.as_ref(),
            "vip.track.healthyBackendsBelow",
            "is required, e.g. 1",
        );
        let below = self.number(below, "vip.track.healthyBackendsBelow", 1, 10_000);
        let weight = self.number(raw.weight.as_ref(), "vip.track.weight", 1, 253);
        let weight_ok = raw.weight.is_none() || weight.is_some();
        let hold = self.duration(raw.hold.as_ref(), "vip.track.hold", None);
        let hold_ok = raw.hold.is_none() || hold.is_some();
        if !(weight_ok && hold_ok) {
            return None;
        }
        Some(TrackConfig {
            healthy_backends_below: below? as usize,
            weight: weight.map_or(DEFAULT_TRACK_WEIGHT, |w| w as u8),
            hold: hold.unwrap_or(DEFAULT_TRACK_HOLD),
        })
    }
}

/// Whether `name` can be a Linux interface name: 1-15 characters, no `/` (the message for a
/// bad one is "is not an interface name (1-15 characters, no /)").
pub(super) fn is_interface_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains('/')
}

/// Why a text is not a virtual address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum VipAddressError {
    /// Not `ADDRESS[/PREFIX]`.
    #[error(transparent)]
    Syntax(#[from] CidrError),
    /// An address that cannot be moved between hosts.
    #[error("{0} cannot be a virtual address")]
    Unusable(IpAddr),
}

/// `10.0.0.100/24`, `fd00::100/64`, or a bare address (a host prefix).
fn parse_vip_address(text: &str) -> Result<VipAddress, VipAddressError> {
    let net = prefixed(text, true)?;
    let ip = net.addr();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(VipAddressError::Unusable(ip));
    }
    Ok(VipAddress {
        ip,
        prefix: net.prefix_len(),
    })
}
