//! The VRRP decoder must never panic, and whatever it accepts must re-encode to a packet it
//! accepts again with the same content.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use apilb::vip::packet::{self, ChecksumStyle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = packet::decode_ipv4(data) {
        let again = r.advert.encode(ChecksumStyle::Keepalived, r.src, r.dst);
        let back = packet::decode_vrrp(&again, r.src, r.dst, packet::TTL).expect("re-decodes");
        assert_eq!(back.advert, r.advert);
    }
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let _ = packet::decode_vrrp(data, src, IpAddr::V4(packet::GROUP_V4), packet::TTL);
    let v6: IpAddr = "fe80::1".parse().expect("literal");
    let _ = packet::decode_vrrp(data, v6, IpAddr::V6(packet::GROUP_V6), packet::TTL);
});
