//! The VRRPv3 decoder, structure-aware: valid adverts round-trip, each field or length
//! broken on its own gives its typed reason, and no bytes at all panic it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use apilb::vip::packet::{
    self, Advert, ChecksumStyle, Invalid, PROTO_VRRP, TTL, decode_ipv4, decode_vrrp,
};
use proptest::prelude::*;
use proptest::sample::Index;

use super::cases;

/// An advert of one family with its source and destination.
#[derive(Debug, Clone)]
struct Sent {
    advert: Advert,
    src: IpAddr,
    dst: IpAddr,
    style: ChecksumStyle,
}

fn sent() -> impl Strategy<Value = Sent> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<bool>(),
        proptest::collection::vec(any::<[u8; 4]>(), 0..20),
        any::<bool>(),
    )
        .prop_map(|(src, group, addrs, rfc)| {
            let src = IpAddr::V4(Ipv4Addr::from(src));
            let dst = if group {
                IpAddr::V4(packet::GROUP_V4)
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))
            };
            let addrs = addrs
                .into_iter()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .collect();
            let style = if rfc {
                ChecksumStyle::Rfc9568
            } else {
                ChecksumStyle::Keepalived
            };
            (src, dst, addrs, style)
        });
    let v6 = (
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<[u8; 16]>(), 0..8),
    )
        .prop_map(|(src, addrs)| {
            let src = IpAddr::V6(Ipv6Addr::from(src));
            let addrs = addrs
                .into_iter()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .collect();
            (
                src,
                IpAddr::V6(packet::GROUP_V6),
                addrs,
                ChecksumStyle::Keepalived,
            )
        });
    (prop_oneof![v4, v6], any::<u8>(), any::<u8>(), 1u16..=0x0fff).prop_map(
        |((src, dst, addresses, style), vrid, priority, interval_cs)| Sent {
            advert: Advert {
                vrid,
                priority,
                interval_cs,
                addresses,
            },
            src,
            dst,
            style,
        },
    )
}

/// `msg` inside an IPv4 header as a raw socket returns it (checksum of the IP header not
/// checked by the decoder, so left 0).
fn ipv4_packet(msg: &[u8], src: IpAddr, dst: IpAddr, ttl: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("ipv4_packet needs IPv4 addresses");
    };
    let total = (20 + msg.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, ttl, PROTO_VRRP, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(msg);
    p
}

/// Whether `msg` also verifies under the other IPv4 checksum style (possible by chance when
/// one byte changes): then the decoder rightly accepts it with that style.
fn other_style_matches(got: ChecksumStyle, s: &Sent) -> bool {
    s.src.is_ipv4() && got != s.style
}

proptest! {
    #![proptest_config(cases(256))]

    /// What is encoded decodes to the same advert, with or without the IPv4 header.
    #[test]
    fn valid_adverts_round_trip(s in sent()) {
        let msg = s.advert.encode(s.style, s.src, s.dst);
        let got = decode_vrrp(&msg, s.src, s.dst, TTL).unwrap();
        prop_assert_eq!(&got.advert, &s.advert);
        prop_assert_eq!(got.src, s.src);
        prop_assert_eq!(got.dst, s.dst);
        if s.style == ChecksumStyle::Keepalived {
            prop_assert_eq!(got.checksum, ChecksumStyle::Keepalived);
        }
        if s.src.is_ipv4() {
            let p = ipv4_packet(&msg, s.src, s.dst, TTL);
            prop_assert_eq!(decode_ipv4(&p).unwrap(), got);
        }
    }

    /// Any one byte changed: refused with a typed reason, unless the change happens to make
    /// the other IPv4 checksum style match (the Internet checksum catches every single-byte
    /// change for the style it was sent with).
    #[test]
    fn one_changed_byte_is_refused(s in sent(), at in any::<Index>(), flip in 1u8..=255) {
        let mut msg = s.advert.encode(s.style, s.src, s.dst);
        let i = at.index(msg.len());
        msg[i] ^= flip;
        match decode_vrrp(&msg, s.src, s.dst, TTL) {
            Err(why) => prop_assert!(Invalid::ALL.contains(&why)),
            Ok(got) => prop_assert!(
                other_style_matches(got.checksum, &s),
                "byte {i} ^ {flip:#04x} accepted: {got:?}"
            ),
        }
    }

    /// Each header field broken alone, with the checksum made right again, gives its own
    /// reason.
    #[test]
    fn each_field_has_its_reason(s in sent(), field in 0usize..5, junk in any::<u8>()) {
        let mut msg = s.advert.encode(s.style, s.src, s.dst);
        let mut ttl = TTL;
        let want = match field {
            0 => {
                ttl = if junk == TTL { 64 } else { junk };
                Invalid::Ttl
            }
            1 => {
                msg[0] = (if junk >> 4 == 3 { 2 } else { junk >> 4 }) << 4 | 1;
                Invalid::Version
            }
            2 => {
                msg[0] = 0x30 | if junk & 0x0f == 1 { 2 } else { junk & 0x0f };
                Invalid::Type
            }
            3 => {
                // Interval 0, keeping the 4 reserved bits as the junk says.
                msg[4] = junk & 0xf0;
                msg[5] = 0;
                Invalid::Interval
            }
            _ => {
                msg[6] ^= 0x01;
                Invalid::Checksum
            }
        };
        if field != 4 {
            reseal(&mut msg, &s);
        }
        match decode_vrrp(&msg, s.src, s.dst, ttl) {
            Err(why) => prop_assert_eq!(why, want),
            // A changed checksum can match the other IPv4 style by chance.
            Ok(got) => prop_assert!(
                field == 4 && other_style_matches(got.checksum, &s),
                "field {field} broken, yet accepted: {got:?}"
            ),
        }
    }

    /// Cut short anywhere: truncated; longer than the address count says: a length mismatch;
    /// the IPv4 total length disagreeing with the packet: refused too.
    #[test]
    fn lengths_are_checked(s in sent(), cut in any::<Index>(), extra in 1usize..40) {
        let msg = s.advert.encode(s.style, s.src, s.dst);
        let short = &msg[..cut.index(msg.len())];
        prop_assert_eq!(decode_vrrp(short, s.src, s.dst, TTL).unwrap_err(), Invalid::Truncated);
        let mut long = msg.clone();
        long.extend(std::iter::repeat_n(0u8, extra));
        prop_assert_eq!(decode_vrrp(&long, s.src, s.dst, TTL).unwrap_err(), Invalid::Length);
        if s.src.is_ipv4() {
            let mut p = ipv4_packet(&msg, s.src, s.dst, TTL);
            let total = u16::from_be_bytes([p[2], p[3]]);
            p[2..4].copy_from_slice(&(total + 1).to_be_bytes());
            prop_assert_eq!(decode_ipv4(&p).unwrap_err(), Invalid::Truncated);
            p[2..4].copy_from_slice(&(total - 1).to_be_bytes());
            prop_assert_eq!(decode_ipv4(&p).unwrap_err(), Invalid::Length);
            let ip_cut = &p[..cut.index(20)];
            prop_assert_eq!(decode_ipv4(ip_cut).unwrap_err(), Invalid::Truncated);
        }
    }

    /// Random bytes, as an IPv4 packet or as a bare VRRP message of either family: an answer,
    /// never a panic.
    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        v4 in any::<bool>(),
        ttl in any::<u8>(),
    ) {
        let _ = decode_ipv4(&bytes);
        let (src, dst) = if v4 {
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(packet::GROUP_V4))
        } else {
            (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(packet::GROUP_V6))
        };
        if let Ok(got) = decode_vrrp(&bytes, src, dst, ttl) {
            // Whatever is accepted re-encodes to the same bytes but the reserved bits.
            let again = got.advert.encode(got.checksum, src, dst);
            prop_assert_eq!(again.len(), bytes.len());
        }
        // An IPv4 header in front, with its lengths right, reaches the VRRP checks.
        let mut p = ipv4_packet(&bytes, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(packet::GROUP_V4), ttl);
        let _ = decode_ipv4(&p);
        p[0] = 0x40 | (ttl & 0x0f);
        let _ = decode_ipv4(&p);
    }
}

/// Recompute the checksum of a changed message the way it was sent.
fn reseal(msg: &mut [u8], s: &Sent) {
    msg[6] = 0;
    msg[7] = 0;
    let sum = match (s.src, s.style) {
        (IpAddr::V4(_), ChecksumStyle::Rfc9568) => packet::checksum(&[msg]),
        _ => packet::checksum(&[&pseudo(s.src, s.dst, msg.len()), msg]),
    };
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
}

/// The pseudo-header, written out here (not taken from the codec) so the test checks the
/// codec against the RFCs rather than against itself.
fn pseudo(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, PROTO_VRRP]);
        }
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, PROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => panic!("mixed families"),
    }
    p
}
