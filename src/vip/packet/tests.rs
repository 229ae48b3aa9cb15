use super::*;

fn v4(s: &str) -> IpAddr {
    s.parse().expect("addr")
}

/// keepalived 2.2.7 on the wire (vrrp.md 1.1/1.5): VRID 51, priority 150, one VIP
/// 192.168.77.100, 10 cs, sent by 192.168.77.11 to 224.0.0.18.
const KEEPALIVED: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, 0x00, 0x0a, 0x3c, 0x71, 0xc0, 0xa8, 0x4d, 0x64,
];

fn lab_advert() -> Advert {
    Advert {
        vrid: 51,
        priority: 150,
        interval_cs: 10,
        addresses: vec![v4("192.168.77.100")],
    }
}

/// An IPv4 packet around `vrrp`, as a raw socket returns it.
fn ip_packet(vrrp: &[u8], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let total = (20 + vrrp.len()) as u16;
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, ttl, PROTO_VRRP, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let sum = checksum(&[&p]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(vrrp);
    p
}

#[test]
fn encodes_byte_for_byte_what_keepalived_sends() {
    let got = lab_advert().encode(
        ChecksumStyle::Keepalived,
        v4("192.168.77.11"),
        IpAddr::V4(GROUP_V4),
    );
    assert_eq!(got, KEEPALIVED);
}

#[test]
fn checksum_styles_match_the_measured_values() {
    let a = lab_advert();
    let rfc = a.encode(
        ChecksumStyle::Rfc9568,
        v4("192.168.77.11"),
        IpAddr::V4(GROUP_V4),
    );
    assert_eq!(&rfc[6..8], &[0x2a, 0xb4]);
    // Unicast: the pseudo-header carries the peer's address.
    let uni = a.encode(
        ChecksumStyle::Keepalived,
        v4("192.168.77.11"),
        v4("192.168.77.13"),
    );
    assert_eq!(&uni[6..8], &[0x0e, 0xce]);
}

#[test]
fn decodes_keepalived_and_rfc9568_checksums() {
    let p = ip_packet(&KEEPALIVED, [192, 168, 77, 11], [224, 0, 0, 18], 255);
    let r = decode_ipv4(&p).expect("valid");
    assert_eq!(r.advert, lab_advert());
    assert_eq!(r.src, v4("192.168.77.11"));
    assert_eq!(r.checksum, ChecksumStyle::Keepalived);
    let rfc = lab_advert().encode(ChecksumStyle::Rfc9568, r.src, r.dst);
    let p = ip_packet(&rfc, [192, 168, 77, 11], [224, 0, 0, 18], 255);
    let r = decode_ipv4(&p).expect("valid");
    assert_eq!(r.checksum, ChecksumStyle::Rfc9568);
    assert_eq!(r.advert, lab_advert());
}

#[test]
fn ipv6_round_trip_with_pseudo_header() {
    let src: IpAddr = "fe80::1".parse().expect("addr");
    let a = Advert {
        vrid: 7,
        priority: 200,
        interval_cs: 100,
        addresses: vec![
            "fd00::100".parse().expect("a"),
            "fd00::101".parse().expect("a"),
        ],
    };
    let bytes = a.encode(ChecksumStyle::Rfc9568, src, IpAddr::V6(GROUP_V6));
    assert_eq!(bytes.len(), 8 + 32);
    let r = decode_vrrp(&bytes, src, IpAddr::V6(GROUP_V6), 255).expect("valid");
    assert_eq!(r.advert, a);
    // IPv6 has no "without pseudo-header" variant.
    let mut bad = bytes.clone();
    bad[6..8].copy_from_slice(
        &checksum(&[&{
            let mut z = bytes.clone();
            z[6] = 0;
            z[7] = 0;
            z
        }])
        .to_be_bytes(),
    );
    assert_eq!(
        decode_vrrp(&bad, src, IpAddr::V6(GROUP_V6), 255),
        Err(Invalid::Checksum)
    );
}

/// Every hostile variant of the lab packet and the reason it is dropped for.
#[test]
fn bad_packets_are_dropped_by_reason() {
    let good = ip_packet(&KEEPALIVED, [192, 168, 77, 11], [224, 0, 0, 18], 255);
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        f(&mut p);
        decode_ipv4(&p).map(|r| r.advert)
    };
    let fix_v = |p: &mut Vec<u8>| {
        // Recompute the VRRP checksum (keepalived style) after a change.
        p[26] = 0;
        p[27] = 0;
        let n = p.len() - 20;
        let sum = checksum(&[
            &pseudo_header(v4("192.168.77.11"), IpAddr::V4(GROUP_V4), n),
            &p[20..],
        ]);
        p[26..28].copy_from_slice(&sum.to_be_bytes());
    };
    assert_eq!(mutate(&|p| p[8] = 64), Err(Invalid::Ttl));
    assert_eq!(
        mutate(&|p| {
            p[20] = 0x21;
            fix_v(p)
        }),
        Err(Invalid::Version)
    );
    assert_eq!(
        mutate(&|p| {
            p[20] = 0x32;
            fix_v(p)
        }),
        Err(Invalid::Type)
    );
    assert_eq!(mutate(&|p| p[31] ^= 1), Err(Invalid::Checksum));
    assert_eq!(
        mutate(&|p| {
            p[24] = 0;
            p[25] = 0;
            fix_v(p)
        }),
        Err(Invalid::Interval)
    );
    assert_eq!(mutate(&|p| p.truncate(30)), Err(Invalid::Truncated));
    assert_eq!(mutate(&|p| p.truncate(10)), Err(Invalid::Truncated));
    assert_eq!(mutate(&|p| p[9] = 17), Err(Invalid::Protocol));
    assert_eq!(
        mutate(&|p| {
            p.extend_from_slice(&[0, 0, 0, 0]);
            p[3] += 4;
        }),
        Err(Invalid::Length)
    );
    assert_eq!(
        mutate(&|p| {
            p[23] = 2; // count 2, one address present
            fix_v(p)
        }),
        Err(Invalid::Truncated)
    );
    // Decodable but not for us.
    let a = decode_ipv4(&good).expect("valid").advert;
    let ours = [v4("192.168.77.100")];
    assert_eq!(a.check_for(51, &ours), Ok(()));
    assert_eq!(a.check_for(52, &ours), Err(Invalid::Vrid));
    assert_eq!(
        a.check_for(51, &[v4("192.168.77.101")]),
        Err(Invalid::AddressList)
    );
    assert_eq!(
        a.check_for(51, &[v4("192.168.77.100"), v4("192.168.77.101")]),
        Err(Invalid::AddressList)
    );
    // The IPv6 part of a mixed config does not count against an IPv4 advert.
    assert_eq!(
        a.check_for(51, &[v4("192.168.77.100"), "fd00::1".parse().expect("a")]),
        Ok(())
    );
}

#[test]
fn round_trips_every_priority_interval_and_count() {
    let src = v4("10.9.0.1");
    for (prio, cs, n) in [
        (0u8, 1u16, 1usize),
        (1, 4095, 3),
        (254, 100, 20),
        (255, 7, 255),
    ] {
        let a = Advert {
            vrid: 9,
            priority: prio,
            interval_cs: cs,
            addresses: (0..n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 9, 1, i as u8)))
                .collect(),
        };
        for style in [ChecksumStyle::Keepalived, ChecksumStyle::Rfc9568] {
            let bytes = a.encode(style, src, IpAddr::V4(GROUP_V4));
            let p = ip_packet(&bytes, [10, 9, 0, 1], [224, 0, 0, 18], 255);
            assert_eq!(decode_ipv4(&p).expect("round trip").advert, a);
        }
    }
}

#[test]
fn arp_and_na_frames() {
    let mac = [0x02, 0, 0, 0, 0, 0x11];
    let f = gratuitous_arp(mac, Ipv4Addr::new(10, 0, 0, 100));
    assert_eq!(f.len(), 42);
    assert_eq!(&f[12..14], &[0x08, 0x06]);
    assert_eq!(&f[28..32], &[10, 0, 0, 100]);
    assert_eq!(&f[38..42], &[10, 0, 0, 100]);
    let na = unsolicited_na(mac, "fd00::100".parse().expect("a"));
    assert_eq!(na.len(), 32);
    assert_eq!(na[0], 136);
    assert_eq!(&na[26..32], &mac);
}

#[test]
fn decoding_arbitrary_bytes_never_panics() {
    // A cheap deterministic sweep; the fuzz target under fuzz/ goes further.
    let mut x: u32 = 0x1234_5678;
    for len in 0..200 {
        for _ in 0..50 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode_ipv4(&bytes);
            let _ = decode_vrrp(&bytes, v4("10.0.0.1"), IpAddr::V4(GROUP_V4), 255);
            let _ = decode_vrrp(
                &bytes,
                "fe80::1".parse().expect("a"),
                IpAddr::V6(GROUP_V6),
                255,
            );
        }
    }
}
