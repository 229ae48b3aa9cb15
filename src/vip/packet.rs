//! The VRRPv3 advertisement codec (RFC 9568 section 5), plus the gratuitous ARP and
//! unsolicited neighbour advertisement frames sent on takeover. Pure: bytes in, values out.
//!
//! IPv4 adverts arrive on a raw socket with their IP header, so [`decode_ipv4`] checks TTL,
//! total length and protocol too. IPv6 raw sockets strip the header; [`decode_vrrp`] takes
//! the addresses and hop limit from the socket's ancillary data instead.
//!
//! Checksums: IPv6 always uses the IPv6 pseudo-header. For IPv4, keepalived and FRR include an
//! IPv4 pseudo-header, RFC 9568 does not; both are accepted on receive and the sender picks
//! with [`ChecksumStyle`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::config::ChecksumStyle;

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// IPv4 VRRP multicast group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 VRRP multicast group.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit adverts are sent with and must arrive with (proves the sender is
/// on-link).
pub const TTL: u8 = 255;
/// Version 3, type 1 (advertisement).
const VERSION_TYPE: u8 = 0x31;
/// VRRP header length before the addresses.
const HEADER_LEN: usize = 8;
/// Most addresses one advert may carry (the count is one byte).
pub const MAX_ADDRESSES: usize = 255;

/// One VRRPv3 advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual router id.
    pub vrid: u8,
    /// Sender's priority; 0 = "the master is leaving".
    pub priority: u8,
    /// Max Advertise Interval in centiseconds (12 bits).
    pub interval_cs: u16,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

/// A decoded advert and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Source address (the sender's primary or link-local address).
    pub src: IpAddr,
    /// Destination address (the group or our unicast address).
    pub dst: IpAddr,
    /// The advert.
    pub advert: Advert,
    /// Which IPv4 checksum style matched (always `Keepalived` for IPv6: the pseudo-header).
    pub checksum: ChecksumStyle,
}

/// Why a packet was dropped. The label names the reason in `apilb_vip_invalid_packets_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Invalid {
    /// Shorter than the headers say.
    #[error("truncated")]
    Truncated,
    /// A length field disagrees with the packet (IP total length, address count).
    #[error("length mismatch")]
    Length,
    /// TTL / hop limit not 255: not sent on-link.
    #[error("TTL/hop limit is not 255")]
    Ttl,
    /// Not VRRP version 3.
    #[error("not VRRP version 3")]
    Version,
    /// Not an advertisement.
    #[error("not an advertisement (type)")]
    Type,
    /// Neither checksum style matches.
    #[error("bad checksum")]
    Checksum,
    /// Max Advertise Interval of 0.
    #[error("advert interval 0")]
    Interval,
    /// Another virtual router (normal on a shared LAN; counted, never logged).
    #[error("other VRID")]
    Vrid,
    /// The address list differs from ours (count or members): keepalived drops these too.
    #[error("address list differs from ours")]
    AddressList,
    /// Not an IPv4 packet, or not protocol 112.
    #[error("not an IPv4 VRRP packet")]
    Protocol,
    /// Not from a configured unicast peer.
    #[error("sender is not a unicast peer")]
    UnknownPeer,
}

impl Invalid {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [Invalid; 11] = [
        Invalid::Truncated,
        Invalid::Length,
        Invalid::Ttl,
        Invalid::Version,
        Invalid::Type,
        Invalid::Checksum,
        Invalid::Interval,
        Invalid::Vrid,
        Invalid::AddressList,
        Invalid::Protocol,
        Invalid::UnknownPeer,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Truncated => "truncated",
            Invalid::Length => "length",
            Invalid::Ttl => "ttl",
            Invalid::Version => "version",
            Invalid::Type => "type",
            Invalid::Checksum => "checksum",
            Invalid::Interval => "interval",
            Invalid::Vrid => "vrid",
            Invalid::AddressList => "address_list",
            Invalid::Protocol => "protocol",
            Invalid::UnknownPeer => "unknown_peer",
        }
    }
}

impl Advert {
    /// The VRRP message (no IP header) with its checksum for `src` -> `dst`. `style` only
    /// matters for IPv4. The address family must match `src`; mixed lists are a caller bug
    /// and are filtered to `src`'s family.
    pub fn encode(&self, style: ChecksumStyle, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let addrs: Vec<IpAddr> = self
            .addresses
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == src.is_ipv4())
            .take(MAX_ADDRESSES)
            .collect();
        let mut out = Vec::with_capacity(HEADER_LEN + addrs.len() * 16);
        out.push(VERSION_TYPE);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(addrs.len() as u8);
        let interval = self.interval_cs & 0x0fff;
        out.extend_from_slice(&interval.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in &addrs {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let sum = match (src, dst, style) {
            (IpAddr::V4(_), _, ChecksumStyle::Rfc9568) => checksum(&[&out]),
            _ => checksum(&[&pseudo_header(src, dst, out.len()), &out]),
        };
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Whether this advert is for our virtual router: same VRID and exactly our address list
    /// (order ignored), as keepalived requires.
    pub fn check_for(&self, vrid: u8, ours: &[IpAddr]) -> Result<(), Invalid> {
        if self.vrid != vrid {
            return Err(Invalid::Vrid);
        }
        let family: Vec<&IpAddr> = match self.addresses.first() {
            Some(first) => ours
                .iter()
                .filter(|a| a.is_ipv4() == first.is_ipv4())
                .collect(),
            None => return Err(Invalid::AddressList),
        };
        if family.len() != self.addresses.len()
            || family.iter().any(|a| !self.addresses.contains(a))
        {
            return Err(Invalid::AddressList);
        }
        Ok(())
    }
}

/// Decode an IPv4 packet as read from a raw protocol-112 socket (IP header included).
pub fn decode_ipv4(packet: &[u8]) -> Result<Received, Invalid> {
    if packet.len() < 20 {
        return Err(Invalid::Truncated);
    }
    if packet[0] >> 4 != 4 || packet[9] != PROTO_VRRP {
        return Err(Invalid::Protocol);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 || packet.len() < ihl {
        return Err(Invalid::Truncated);
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total != packet.len() {
        return Err(if total > packet.len() {
            Invalid::Truncated
        } else {
            Invalid::Length
        });
    }
    let src = IpAddr::V4(Ipv4Addr::new(
        packet[12], packet[13], packet[14], packet[15],
    ));
    let dst = IpAddr::V4(Ipv4Addr::new(
        packet[16], packet[17], packet[18], packet[19],
    ));
    decode_vrrp(&packet[ihl..], src, dst, packet[8])
}

/// Decode a VRRP message whose IP header the socket already stripped (IPv6), given the
/// addresses and TTL / hop limit it arrived with.
pub fn decode_vrrp(msg: &[u8], src: IpAddr, dst: IpAddr, ttl: u8) -> Result<Received, Invalid> {
    if msg.len() < HEADER_LEN {
        return Err(Invalid::Truncated);
    }
    let count = usize::from(msg[3]);
    let width = if src.is_ipv4() { 4 } else { 16 };
    let want = HEADER_LEN + count * width;
    if msg.len() < want {
        return Err(Invalid::Truncated);
    }
    if msg.len() != want {
        return Err(Invalid::Length);
    }
    if ttl != TTL {
        return Err(Invalid::Ttl);
    }
    if msg[0] >> 4 != 3 {
        return Err(Invalid::Version);
    }
    if msg[0] & 0x0f != 1 {
        return Err(Invalid::Type);
    }
    let with_pseudo = checksum(&[&pseudo_header(src, dst, msg.len()), msg]) == 0;
    let style = if with_pseudo {
        ChecksumStyle::Keepalived
    } else if src.is_ipv4() && checksum(&[msg]) == 0 {
        ChecksumStyle::Rfc9568
    } else {
        return Err(Invalid::Checksum);
    };
    let interval_cs = u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff;
    if interval_cs == 0 {
        return Err(Invalid::Interval);
    }
    let addresses = msg[HEADER_LEN..]
        .chunks_exact(width)
        .map(|c| match <[u8; 4]>::try_from(c) {
            Ok(b) => IpAddr::V4(Ipv4Addr::from(b)),
            Err(_) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(b))
            }
        })
        .collect();
    Ok(Received {
        src,
        dst,
        advert: Advert {
            vrid: msg[1],
            priority: msg[2],
            interval_cs,
            addresses,
        },
        checksum: style,
    })
}

/// The pseudo-header for `len` bytes of protocol 112 from `src` to `dst` (RFC 8200 8.1 for
/// IPv6; the TCP/UDP-style one for IPv4). A family mismatch gives the IPv4 form of
/// unspecified addresses, which no correct packet matches.
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, PROTO_VRRP]);
        }
        (s, d) => {
            let v4 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.octets(),
                IpAddr::V6(_) => [0; 4],
            };
            p.extend_from_slice(&v4(s));
            p.extend_from_slice(&v4(d));
            p.extend_from_slice(&[0, PROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    p
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`; each part but the
/// last must have an even length (true for the pseudo-headers).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A gratuitous ARP request for `ip` from `mac`, as a whole Ethernet frame (broadcast;
/// sender = target = `ip`, target MAC ff:ff:ff:ff:ff:ff, as keepalived sends).
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement (ICMPv6 type 136, Override set) for `ip` with a
/// target link-layer address option. The checksum is left 0: the kernel fills it in on raw
/// ICMPv6 sockets.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[136, 0, 0, 0]);
    m.extend_from_slice(&[0x20, 0, 0, 0]); // O flag
    m.extend_from_slice(&ip.octets());
    m.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    m.extend_from_slice(&mac);
    m
}

#[cfg(test)]
mod tests;
