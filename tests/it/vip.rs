//! VIP failover in network namespaces (root) plus host checks at start-up (no root).
//!
//! Run: `sudo APILB_REQUIRE_PRIVILEGED=1 cargo test --test it vip`. Without root the
//! namespace tests print why they skip; with APILB_REQUIRE_PRIVILEGED=1 they fail instead.
//! keepalived comes from `apt-get install keepalived`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use apilb::vip::packet::{self, Advert, ChecksumStyle};
use nix::sys::signal::Signal;

use crate::support::netns::{
    self, AddrEvent, AddressMonitor, Keepalived, Lab, VIP, http_get_in, in_ns, metric, node_ip,
    poll, reaches,
};
use crate::support::{LbProcess, have_tool};

const PORT: u16 = 6443;
const BACKEND_PORT: u16 = 7000;
const ADMIN: &str = "127.0.0.1:9441";
const LIMIT: Duration = Duration::from_secs(5);

fn vip_addr() -> SocketAddr {
    SocketAddr::from((VIP, PORT))
}

fn admin() -> SocketAddr {
    ADMIN.parse().expect("addr")
}

/// An LB config for a lab node: listen on the VIP (freebind), the backend in n3.
fn lb_yaml(priority: u8) -> String {
    format!(
        "listen: [\"{VIP}:{PORT}\"]\nbackends: [{{name: b, address: \"{}:{BACKEND_PORT}\"}}]\nmetrics: {{listen: \"{ADMIN}\"}}\ntimeouts: {{drain: 1s}}\nvip:\n  interface: eth0\n  vrid: 51\n  addresses: [\"{VIP}/24\"]\n  priority: {priority}\n  advertInterval: 100ms\n",
        node_ip(3)
    )
}

/// As [`lb_yaml`], with unicast adverts to `peer` instead of multicast.
fn lb_yaml_unicast(priority: u8, peer: u8) -> String {
    format!(
        "{}  unicastPeers: [\"{}\"]\n",
        lb_yaml(priority),
        node_ip(peer)
    )
}

fn lab_with_backend(tag: &str) -> Option<Lab> {
    let lab = Lab::new(tag)?;
    netns::tag_server(&lab.ns(3), SocketAddr::from((node_ip(3), BACKEND_PORT)));
    Some(lab)
}

/// Start apilb on node `i` and wait until its VRRP is running (log line).
fn start_lb(lab: &Lab, i: u8, priority: u8) -> LbProcess {
    let lb = LbProcess::spawn_in_netns(&lab.ns(i), &lb_yaml(priority));
    poll(LIMIT, "apilb vip started", || {
        lb.log().contains("initialize -> backup")
    });
    lb
}

fn client_reaches_vip(lab: &Lab) {
    let ns = lab.ns(3);
    poll(LIMIT, "client in n3 connects through the VIP", || {
        reaches(&ns, vip_addr())
    });
}

fn vip_status(lab: &Lab, i: u8) -> String {
    http_get_in(&lab.ns(i), admin(), "/status")
}

/// Wait until node `old` has removed `ip`, and assert that node `new` had added it before
/// (make before break: both hold it for a moment, never neither). IPv4 only: the kernel
/// orders IPv4 address notifications as it makes the changes, IPv6 additions not.
fn assert_make_before_break(mon: &AddressMonitor, ip: IpAddr, new: u8, old: u8, logs: &str) {
    let events = mon.wait_for(&AddrEvent {
        node: old,
        added: false,
        ip,
    });
    let added = events.iter().position(|e| e.node == new && e.added);
    let removed = events.iter().position(|e| e.node == old && !e.added);
    assert!(
        matches!((added, removed), (Some(a), Some(r)) if a < r),
        "n{new} adds {ip} before n{old} removes it; kernel order: {events:?}\n{logs}"
    );
}

/// The stopping LB's log shows the make-before-break hand-over: priority 0 sent, the new
/// master heard, then the addresses released (not the bound running out).
fn assert_handed_over(log: &str) {
    let sent = log.find("vip: sending priority 0; keeping the addresses");
    let heard = log.find("vip: the new master was heard; addresses released");
    assert!(
        matches!((sent, heard), (Some(s), Some(h)) if s < h),
        "hand-over in the log:\n{log}"
    );
    assert!(log.contains("master -> initialize (shutdown)"), "{log}");
    assert!(!log.contains("shutdown_unanswered"), "{log}");
}

fn kill(lb: &mut LbProcess, sig: Signal) {
    lb.signal(sig);
    poll(LIMIT, "apilb exits", || {
        lb.child.try_wait().expect("wait").is_some()
    });
}

/// Two apilb instances: kill -9, SIGTERM and link loss of the master each move the VIP to
/// the backup, and a client in n3 connects through it again; the restarted higher priority
/// LB takes the VIP back (preemption).
#[test]
fn two_apilb_fail_over_kill_term_and_link_down() {
    let Some(lab) = lab_with_backend("pair") else {
        return;
    };
    let mut a = start_lb(&lab, 1, 150);
    let _b = start_lb(&lab, 2, 100);
    poll(LIMIT, "n1 holds the VIP", || lab.has_addr(1, VIP));
    assert!(!lab.has_addr(2, VIP));
    client_reaches_vip(&lab);
    assert!(vip_status(&lab, 2).contains("\"state\": \"backup\""));

    // 1. kill -9: the VIP stays on the dead node (as with keepalived); the backup takes it
    // after Master_Down_Interval and the client follows its gratuitous ARP.
    kill(&mut a, Signal::SIGKILL);
    let took = poll(LIMIT, "n2 holds the VIP after kill -9", || {
        lab.has_addr(2, VIP)
    });
    assert!(took < Duration::from_millis(1500), "{took:?}");
    client_reaches_vip(&lab);

    // The restarted node removes the leftover address, then preempts: it adds the address
    // and announces it before its first advert, and n2 lets go on that advert.
    let mon = lab.monitor_addresses();
    let mut a = start_lb(&lab, 1, 150);
    poll(LIMIT, "n1 takes the VIP back", || {
        lab.has_addr(1, VIP) && !lab.has_addr(2, VIP)
    });
    assert_make_before_break(&mon, IpAddr::V4(VIP), 1, 2, &a.log());
    client_reaches_vip(&lab);

    // 2. SIGTERM: priority 0 first; n1 keeps the VIP (and serves on it) until it hears n2's
    // first advert as master, n2 having added the address and announced it before that.
    let mon = lab.monitor_addresses();
    lab_signal_and_wait(&mut a, Signal::SIGTERM);
    assert!(!lab.has_addr(1, VIP), "a graceful stop releases the VIP");
    assert!(lab.has_addr(2, VIP), "n2 holds the VIP once n1 has exited");
    assert_make_before_break(&mon, IpAddr::V4(VIP), 2, 1, &a.log());
    client_reaches_vip(&lab);
    assert!(a.log().contains("releasing the VIP first"));
    assert_handed_over(&a.log());

    // 3. Link down on the master.
    let a = start_lb(&lab, 1, 150);
    poll(LIMIT, "n1 takes the VIP back", || {
        lab.has_addr(1, VIP) && !lab.has_addr(2, VIP)
    });
    lab.link(1, false);
    poll(LIMIT, "n2 holds the VIP after link down", || {
        lab.has_addr(2, VIP)
    });
    client_reaches_vip(&lab);
    // Link back: two masters for a moment; the RFC rules leave the VIP with priority 150 only.
    lab.link(1, true);
    poll(LIMIT, "split brain resolved towards n1", || {
        lab.has_addr(1, VIP) && !lab.has_addr(2, VIP)
    });
    client_reaches_vip(&lab);
    drop(a);
}

/// `handover: breakBeforeMake`: on SIGTERM the master removes the VIP first and only then
/// sends priority 0, so the backup adds it after the removal (kernel order), never before;
/// the client reaches the VIP on the backup.
#[test]
fn break_before_make_releases_before_the_backup_takes_over() {
    let Some(lab) = lab_with_backend("bbm") else {
        return;
    };
    let yaml = format!("{}  handover: breakBeforeMake\n", lb_yaml(150));
    let mut a = LbProcess::spawn_in_netns(&lab.ns(1), &yaml);
    poll(LIMIT, "apilb vip started", || {
        a.log().contains("initialize -> backup")
    });
    let _b = start_lb(&lab, 2, 100);
    poll(LIMIT, "n1 holds the VIP", || lab.has_addr(1, VIP));
    client_reaches_vip(&lab);

    let mon = lab.monitor_addresses();
    lab_signal_and_wait(&mut a, Signal::SIGTERM);
    let events = mon.wait_for(&AddrEvent {
        node: 2,
        added: true,
        ip: IpAddr::V4(VIP),
    });
    let removed = events.iter().position(|e| e.node == 1 && !e.added);
    let added = events.iter().position(|e| e.node == 2 && e.added);
    assert!(
        matches!((removed, added), (Some(r), Some(a)) if r < a),
        "n1 removes the VIP before n2 adds it; kernel order: {events:?}\n{}",
        a.log()
    );
    // Its last lines may still be in the pipe after the exit.
    poll(LIMIT, "the break-before-make log line", || {
        a.log()
            .contains("vip: addresses released, then priority 0 sent (handover: breakBeforeMake)")
    });
    let log = a.log();
    assert!(!log.contains("keeping the addresses"), "{log}");
    assert!(log.contains("master -> initialize (shutdown)"), "{log}");
    client_reaches_vip(&lab);
}

/// Unicast peers: the same failover with adverts sent to the peer's address only.
#[test]
fn two_apilb_fail_over_with_unicast_peers() {
    let Some(lab) = lab_with_backend("ucast") else {
        return;
    };
    let start = |i: u8, priority: u8, peer: u8| {
        let lb = LbProcess::spawn_in_netns(&lab.ns(i), &lb_yaml_unicast(priority, peer));
        poll(LIMIT, "apilb vip started", || {
            lb.log().contains("initialize -> backup")
        });
        lb
    };
    let mut a = start(1, 150, 2);
    let _b = start(2, 100, 1);
    poll(LIMIT, "n1 holds the VIP", || lab.has_addr(1, VIP));
    // The backup hears the master's unicast adverts: it stays backup.
    poll(LIMIT, "n2 backup", || {
        vip_status(&lab, 2).contains("\"state\": \"backup\"")
    });
    assert!(!lab.has_addr(2, VIP));
    client_reaches_vip(&lab);

    kill(&mut a, Signal::SIGKILL);
    let took = poll(LIMIT, "n2 holds the VIP after kill -9", || {
        lab.has_addr(2, VIP)
    });
    assert!(took < Duration::from_millis(1500), "{took:?}");
    client_reaches_vip(&lab);

    let a = start(1, 150, 2);
    poll(LIMIT, "n1 takes the VIP back", || {
        lab.has_addr(1, VIP) && !lab.has_addr(2, VIP)
    });
    client_reaches_vip(&lab);
    drop(a);
}

/// An IPv6 VIP (VRRPv3 over IPv6 multicast, unsolicited neighbour advertisements): kill -9
/// of the master moves it to the backup and a client reaches it again; the restarted master
/// preempts, and a SIGTERM hands it over make-before-break, as with IPv4.
#[test]
fn ipv6_vip_fails_over() {
    let Some(lab) = lab_with_backend("v6") else {
        return;
    };
    let vip6: std::net::Ipv6Addr = "fd51::100".parse().expect("ip");
    for i in 1..=3 {
        lab.add_addr6(i, &format!("fd51::1{i}/64"));
    }
    for i in 1..=3 {
        lab.wait_link_local(i);
    }
    let yaml = |priority: u8| {
        format!(
            "listen: [\"[{vip6}]:{PORT}\"]\nbackends: [{{name: b, address: \"{}:{BACKEND_PORT}\"}}]\nmetrics: {{listen: \"{ADMIN}\"}}\ntimeouts: {{drain: 1s}}\nvip:\n  interface: eth0\n  vrid: 52\n  addresses: [\"{vip6}/64\"]\n  priority: {priority}\n  advertInterval: 100ms\n",
            node_ip(3)
        )
    };
    let start = |i: u8, priority: u8| {
        let lb = LbProcess::spawn_in_netns(&lab.ns(i), &yaml(priority));
        poll(LIMIT, "apilb vip started", || {
            lb.log().contains("initialize -> backup")
        });
        lb
    };
    let vip = SocketAddr::from((vip6, PORT));
    let mut a = start(1, 150);
    let b = start(2, 100);
    poll(LIMIT, "n1 holds the IPv6 VIP", || lab.has_addr6(1, vip6));
    poll(LIMIT, "n2 backup", || {
        vip_status(&lab, 2).contains("\"state\": \"backup\"")
    });
    assert!(!lab.has_addr6(2, vip6));
    poll(LIMIT, "client reaches the IPv6 VIP", || {
        reaches(&lab.ns(3), vip)
    });

    kill(&mut a, Signal::SIGKILL);
    poll(LIMIT, "n2 holds the IPv6 VIP after kill -9", || {
        lab.has_addr6(2, vip6)
    });
    poll(LIMIT, "client reaches the IPv6 VIP again", || {
        reaches(&lab.ns(3), vip)
    });

    let mut a = start(1, 150);
    poll(LIMIT, "n1 takes the IPv6 VIP back", || {
        lab.has_addr6(1, vip6) && !lab.has_addr6(2, vip6)
    });
    poll(LIMIT, "client reaches the IPv6 VIP on n1", || {
        reaches(&lab.ns(3), vip)
    });

    // The kernel reports an IPv6 address addition from its DAD worker, after the call
    // returned (even with nodad), so `ip monitor` cannot order n2's addition against n1's
    // removal as it does for IPv4; the old master's log and the client's neighbour entry
    // show the hand-over instead.
    lab_signal_and_wait(&mut a, Signal::SIGTERM);
    assert!(!lab.has_addr6(1, vip6), "a graceful stop releases the VIP");
    assert!(lab.has_addr6(2, vip6));
    assert_handed_over(&a.log());
    assert!(
        b.log().contains("backup -> master (master_down)"),
        "{}",
        b.log()
    );
    poll(LIMIT, "client reaches the IPv6 VIP on n2", || {
        reaches(&lab.ns(3), vip)
    });
    assert_eq!(
        lab.neighbour(3, IpAddr::V6(vip6)),
        Some(lab.mac(2)),
        "the client follows n2's unsolicited NA"
    );
}

fn lab_signal_and_wait(lb: &mut LbProcess, sig: Signal) {
    kill(lb, sig);
    assert_eq!(
        lb.child.try_wait().expect("wait").and_then(|s| s.code()),
        Some(0)
    );
}

/// keepalived with the same VRID, both ways: apilb backs up a keepalived master and takes
/// over when it stops; keepalived backs up an apilb master and takes over when it stops.
#[test]
fn interoperates_with_keepalived_both_ways() {
    let Some(lab) = lab_with_backend("ka") else {
        return;
    };
    if !have_tool("keepalived", "keepalived") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // keepalived 150 on n1 is master; apilb 100 on n2 is backup and accepts its adverts.
    let mut ka = Keepalived::start(&lab, 1, 150, dir.path());
    poll(LIMIT, "keepalived holds the VIP", || lab.has_addr(1, VIP));
    let mut lb = start_lb(&lab, 2, 100);
    std::thread::sleep(Duration::from_millis(800)); // more than apilb's down interval
    assert!(
        !lab.has_addr(2, VIP),
        "apilb stays backup behind keepalived"
    );
    let status = vip_status(&lab, 2);
    assert!(status.contains("\"state\": \"backup\""), "{status}");
    assert!(
        status.contains(&format!("\"master\": \"{}\"", node_ip(1))),
        "{status}"
    );
    let m = http_get_in(&lab.ns(2), admin(), "/metrics");
    assert!(metric(&m, "apilb_vip_adverts_received_total") >= 5.0, "{m}");
    assert_eq!(
        metric(&m, "apilb_vip_invalid_packets_total{reason=\"checksum\"}"),
        0.0
    );

    // keepalived stops gracefully (priority 0): apilb takes over.
    ka.stop();
    poll(LIMIT, "apilb holds the VIP", || lab.has_addr(2, VIP));
    client_reaches_vip(&lab);

    // keepalived 50 starts while apilb (100) is master: it must stay backup.
    let mut ka = Keepalived::start(&lab, 1, 50, dir.path());
    poll(LIMIT, "keepalived enters BACKUP", || {
        ka.log().contains("Entering BACKUP STATE")
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !lab.has_addr(1, VIP),
        "keepalived accepts apilb's adverts:\n{}",
        ka.log()
    );
    assert!(lab.has_addr(2, VIP));

    // apilb stops gracefully: keepalived takes over after its skew time, while apilb still
    // holds the VIP (two holders for a moment); apilb lets go when it hears keepalived's
    // first advert, and the client follows keepalived's gratuitous ARP.
    client_reaches_vip(&lab);
    assert_eq!(lab.neighbour(3, IpAddr::V4(VIP)), Some(lab.mac(2)));
    let mon = lab.monitor_addresses();
    lab_signal_and_wait(&mut lb, Signal::SIGTERM);
    assert!(lab.has_addr(1, VIP));
    assert!(ka.log().contains("Entering MASTER STATE"), "{}", ka.log());
    assert_make_before_break(&mon, IpAddr::V4(VIP), 1, 2, &(lb.log() + &ka.log()));
    assert_handed_over(&lb.log());
    assert_eq!(
        lab.neighbour(3, IpAddr::V4(VIP)),
        Some(lab.mac(1)),
        "the client follows keepalived's gratuitous ARP"
    );
    ka.stop();
}

/// A backup starved of CPU (SIGSTOP for longer than its down interval, as on a busy host)
/// wakes up with its down timer due and the master's adverts queued: it reads those first
/// and stays backup; it never takes the VIP (which would make a split brain and move the
/// clients twice).
#[test]
fn a_starved_backup_reads_queued_adverts_before_its_timer() {
    let Some(lab) = lab_with_backend("starve") else {
        return;
    };
    let _a = start_lb(&lab, 1, 150);
    poll(LIMIT, "n1 holds the VIP", || lab.has_addr(1, VIP));
    let b = start_lb(&lab, 2, 100);
    std::thread::sleep(Duration::from_millis(500));
    let mon = lab.monitor_addresses();
    for _ in 0..3 {
        b.signal(Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(800)); // > 361 ms, its down interval
        b.signal(Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(300));
    }
    let events: Vec<AddrEvent> = mon
        .events(IpAddr::V4(VIP))
        .into_iter()
        .filter(|e| e.node == 2)
        .collect();
    assert_eq!(events, vec![], "n2 never held the VIP:\n{}", b.log());
    assert!(!b.log().contains("backup -> master"), "{}", b.log());
    assert!(lab.has_addr(1, VIP));
}

/// Hostile adverts from n3, faster than the advert interval: nothing changes (the master
/// keeps the VIP, the backup never takes over), and each is counted by reason.
#[test]
fn bad_packets_change_nothing_and_are_counted() {
    let Some(lab) = lab_with_backend("bad") else {
        return;
    };
    let _a = start_lb(&lab, 1, 150);
    let b = start_lb(&lab, 2, 100);
    poll(LIMIT, "n1 holds the VIP", || lab.has_addr(1, VIP));
    std::thread::sleep(Duration::from_millis(500));

    let src = IpAddr::V4(node_ip(3));
    let group = IpAddr::V4(packet::GROUP_V4);
    let ours = |priority: u8, addrs: Vec<IpAddr>, vrid: u8| Advert {
        vrid,
        priority,
        interval_cs: 10,
        addresses: addrs,
    };
    let vip = vec![IpAddr::V4(VIP)];
    let good = ours(254, vip.clone(), 51).encode(ChecksumStyle::Keepalived, src, group);
    let mut bad_sum = good.clone();
    bad_sum[7] ^= 0xff;
    let mut v2 = good.clone();
    v2[0] = 0x21;
    let wrong_list = ours(254, vec![IpAddr::V4(Ipv4Addr::new(10, 251, 0, 101))], 51).encode(
        ChecksumStyle::Keepalived,
        src,
        group,
    );
    let two = ours(
        254,
        vec![IpAddr::V4(VIP), IpAddr::V4(Ipv4Addr::new(10, 251, 0, 101))],
        51,
    )
    .encode(ChecksumStyle::Keepalived, src, group);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("ttl", good.clone(), 64),
        ("checksum", bad_sum, 255),
        ("version", v2, 255),
        ("address_list", wrong_list, 255),
        ("address_list", two, 255),
        ("truncated", good[..6].to_vec(), 255),
        ("length", [good.clone(), vec![0, 0]].concat(), 255),
    ];
    const EACH: usize = 25;
    let ns = lab.ns(3);
    in_ns(&ns, move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )
        .expect("raw socket");
        s.bind_device(Some(b"eth0")).expect("bind to eth0");
        s.set_multicast_if_v4(&node_ip(3)).expect("multicast if");
        let dst = socket2::SockAddr::from(SocketAddr::from((packet::GROUP_V4, 0)));
        for _ in 0..EACH {
            for (_, bytes, ttl) in &cases {
                s.set_multicast_ttl_v4(*ttl).expect("ttl");
                s.send_to(bytes, &dst).expect("send");
            }
            std::thread::sleep(Duration::from_millis(40)); // faster than the 100 ms adverts
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(lab.has_addr(1, VIP), "the master kept the VIP");
    assert!(!lab.has_addr(2, VIP), "the backup never took over");
    assert!(!b.log().contains("backup -> master"), "{}", b.log());
    let m = http_get_in(&lab.ns(2), admin(), "/metrics");
    for (reason, want) in [
        ("ttl", EACH),
        ("checksum", EACH),
        ("version", EACH),
        ("address_list", 2 * EACH),
        ("truncated", EACH),
        ("length", EACH),
    ] {
        let got = metric(
            &m,
            &format!("apilb_vip_invalid_packets_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(got, want as f64, "{reason}:\n{m}");
    }
    let s = vip_status(&lab, 2);
    assert!(s.contains("\"state\": \"backup\""), "{s}");
}

/// Host checks run before anything is bound, with a clear error and exit code 64.
#[tokio::test]
async fn unusable_vip_configs_exit_64_before_binding() {
    let port = crate::support::free_port();
    let cases = [
        (
            "apilbnope0",
            "10.251.9.100/24",
            "vip.interface: interface \"apilbnope0\" does not exist",
        ),
        (
            "lo",
            "10.251.9.100/24",
            "10.251.9.100 is not on a subnet of lo",
        ),
    ];
    for (iface, addr, want) in cases {
        let yaml = format!(
            "listen: [\"127.0.0.1:{port}\"]\nbackends: [{{name: b, address: \"127.0.0.1:1\"}}]\nvip: {{interface: {iface}, vrid: 51, addresses: [\"{addr}\"]}}\n"
        );
        let mut lb = LbProcess::spawn(&yaml);
        assert_eq!(lb.wait_exit(Duration::from_secs(10)).await, Some(64));
        assert!(lb.log().contains(want), "{}", lb.log());
        assert!(
            !lb.log().contains("listening"),
            "nothing was bound: {}",
            lb.log()
        );
    }
}
