use super::*;

fn cfg(addrs: &[&str]) -> VipConfig {
    let yaml = format!(
        "listen: [\"0.0.0.0:6443\"]\nbackends: [{{name: a, address: \"10.0.0.1:6443\"}}]\nvip: {{interface: eth0, vrid: 51, addresses: [{}]}}\n",
        addrs.join(", ")
    );
    crate::config::Config::from_yaml(&yaml, "x")
        .expect("valid")
        .vip
        .expect("vip")
}

fn iface(addrs: &[&str]) -> Interface {
    Interface {
        name: "eth0".into(),
        index: 2,
        mac: [2, 0, 0, 0, 0, 1],
        up: true,
        addresses: addrs
            .iter()
            .map(|a| {
                let (ip, p) = a.split_once('/').expect("prefix");
                VipAddress {
                    ip: ip.parse().expect("ip"),
                    prefix: p.parse().expect("prefix"),
                }
            })
            .collect(),
    }
}

#[test]
fn host_check_accepts_addresses_on_the_subnet() {
    let (s4, s6) = check_interface(
        &cfg(&["10.0.0.100/24", "\"fd00::100/64\""]),
        &iface(&["10.0.0.11/24", "10.0.0.100/24", "fd00::11/64", "fe80::1/64"]),
    )
    .expect("usable");
    assert_eq!(s4, Some("10.0.0.11".parse().expect("a")));
    assert_eq!(s6, Some("fe80::1".parse().expect("a")));
}

#[test]
fn host_check_lists_every_problem() {
    let err = check_interface(
        &cfg(&["10.9.9.100/24", "\"fd00::100/64\""]),
        &iface(&["10.0.0.11/24"]),
    )
    .expect_err("unusable");
    assert_eq!(
        err.to_string(),
        "vip (VRID 51 on eth0): eth0 has no IPv6 link-local address to send adverts from; \
         10.9.9.100 is not on a subnet of eth0 (10.0.0.11/24); VRRP peers and clients could not reach it; \
         fd00::100 is not on a subnet of eth0 (no addresses of that family); VRRP peers and clients could not reach it"
    );
    // A leftover VIP on the interface is not a source address.
    let err = check_interface(&cfg(&["10.0.0.100/24"]), &iface(&["10.0.0.100/24"]))
        .expect_err("no own address");
    assert!(
        err.to_string().contains("no IPv4 address of its own"),
        "{err}"
    );
}
