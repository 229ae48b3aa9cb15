use super::*;

const GOOD: &str = r#"
listen: ["127.0.0.1:6443", "[::1]:6443"]
backends:
  - name: master-1
    address: "10.0.0.11:6443"
  - name: master-2
    address: "[fd00::12]:6443"
    weight: 3
  - name: master-3
    address: master-3.example.internal:6443
balance: round-robin
maxConnections: 500
forwarding: copy
timeouts:
  connect: 250ms
  idle: 1h
  drain: 0s
listener: {backlog: 128, reusePort: true, freebind: false}
tcp: {keepaliveTime: 30s, keepaliveInterval: 2s, userTimeout: 1m}
resolvers: ["127.0.0.53", "[fd00::53]:5353"]
dnsTtl: {min: 1s}
"#;

fn problems(src: &str) -> String {
    match Config::from_yaml(src, "lb.yaml") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_every_key() {
    let c = Config::from_yaml(GOOD, "lb.yaml").expect("valid");
    assert_eq!(
        c.dns.resolvers,
        [
            "127.0.0.53:53".parse().expect("addr"),
            "[fd00::53]:5353".parse().expect("addr")
        ]
    );
    assert_eq!(c.dns.min_ttl, Duration::from_secs(1));
    assert_eq!(c.dns.max_ttl, DEFAULT_DNS_MAX_TTL);
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[1], "[::1]:6443".parse().expect("addr"));
    assert_eq!(c.backends[0].weight, 1);
    assert_eq!(c.backends[1].weight, 3);
    assert_eq!(
        c.backends[1].address,
        BackendAddress::Ip("[fd00::12]:6443".parse().expect("addr"))
    );
    assert_eq!(
        c.backends[2].address,
        BackendAddress::Dns {
            host: "master-3.example.internal".into(),
            port: 6443
        }
    );
    assert_eq!(c.balance, Balance::RoundRobin);
    assert_eq!(c.max_connections, 500);
    assert_eq!(c.forwarding, Forwarding::Copy);
    assert_eq!(c.timeouts.connect, Duration::from_millis(250));
    assert_eq!(c.timeouts.idle, Duration::from_secs(3600));
    assert_eq!(c.timeouts.drain, Duration::ZERO);
    assert_eq!(
        c.listener,
        ListenerOptions {
            backlog: 128,
            reuse_port: true,
            accept: crate::config::DEFAULT_ACCEPT_MODE,
            freebind: false
        }
    );
    assert_eq!(c.tcp.keepalive_interval, Duration::from_secs(2));
    assert_eq!(c.tcp.user_timeout, Duration::from_secs(60));
}

#[test]
fn defaults_are_the_named_constants() {
    let c = Config::from_yaml(
        "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"127.0.0.1:1\"}]\n",
        "x",
    )
    .expect("valid");
    assert_eq!(c.balance, DEFAULT_BALANCE);
    assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(c.forwarding, DEFAULT_FORWARDING);
    assert_eq!(c.timeouts.connect, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(c.timeouts.idle, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(c.timeouts.drain, DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(c.listener.backlog, DEFAULT_BACKLOG);
    assert!(c.listener.freebind);
    assert!(!c.listener.reuse_port);
    assert_eq!(c.tcp.keepalive_time, DEFAULT_KEEPALIVE_TIME);
    assert_eq!(c.tcp.user_timeout, DEFAULT_USER_TIMEOUT);
    assert_eq!(c.backends[0].weight, DEFAULT_WEIGHT);
    assert_eq!(c.workers, DEFAULT_WORKERS);
    assert_eq!(c.listener.accept, DEFAULT_ACCEPT_MODE);
}

#[test]
fn workers_take_auto_or_a_number() {
    let with = |w: &str| {
        Config::from_yaml(
            &format!(
                "listen: [\"127.0.0.1:6443\"]\nbackends: [{{name: a, address: \"127.0.0.1:1\"}}]\nworkers: {w}\nlistener: {{accept: shared}}\n"
            ),
            "x",
        )
        .expect("valid")
    };
    assert_eq!(with("4").workers, Workers::Count(4));
    assert_eq!(with("4").workers.count(), 4);
    assert_eq!(with("1024").workers.count(), 1024);
    assert_eq!(with("auto").workers, Workers::Auto);
    assert_eq!(
        with("auto").workers.count(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert_eq!(with("1").listener.accept, AcceptMode::Shared);
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../config/apilb.yaml");
    Config::from_yaml(text, "config/apilb.yaml").expect("config/apilb.yaml is valid");
}

/// Each bad config and the exact report it gets.
#[test]
fn bad_configs_get_exact_errors() {
    const HEAD: &str = "listen: [\"127.0.0.1:6443\"]\n";
    let cases: &[(&str, &str)] = &[
        // 1. The issue's own example.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {name: a, address: \"10.0.0.1:6443\"}\n  - name: b\n    address: \"10.0.0.300:6443\"\n",
            "lb.yaml:5:14: backends[1].address: \"10.0.0.300:6443\" is not a valid address: \"10.0.0.300\" is not an IPv4 address",
        ),
        // 2. Unknown top-level key (a typo): reported, and so is what it leaves missing.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackend: []\n",
            "lb.yaml:1:1: backends: needs at least one backend\nlb.yaml:2:1: unknown field `backend`, expected one of `listen`, `backends`, `balance`, `maxConnections`, `forwarding`, `workers`, `timeouts`, `listener`, `tcp`, `health`, `metrics`, `resolvers`, `dnsTtl`, `vip`, `announce`, `rebalance`",
        ),
        // 3. Unknown key inside a backend.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - name: a\n    adress: 10.0.0.1:6443\n",
            "lb.yaml:3:5: backends[0].address: is required\nlb.yaml:4:5: backends[0]: unknown field `adress`, expected one of `name`, `address`, `weight`, `health`",
        ),
        // 4. Missing required key.
        (
            "listen: [\"127.0.0.1:6443\"]\n",
            "lb.yaml:1:1: backends: needs at least one backend",
        ),
        // 5. Empty file.
        (
            "",
            "lb.yaml:1:1: the file is empty; a config needs at least `listen` and `backends`",
        ),
        // 6. Listen without a port.
        (
            "listen: [\"127.0.0.1\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\n",
            "lb.yaml:1:10: listen[0]: \"127.0.0.1\" is not a valid address: a port is missing (write host:port, e.g. 10.0.0.11:6443)",
        ),
        // 7. IPv6 without brackets.
        (
            &format!("{HEAD}backends: [{{name: a, address: \"fd00::1:6443\"}}]\n"),
            "lb.yaml:2:31: backends[0].address: \"fd00::1:6443\" is not a valid address: an IPv6 address needs brackets, e.g. [fd00::11]:6443",
        ),
        // 8. Duplicate backend names and addresses, all reported.
        (
            &format!(
                "{HEAD}backends:\n  - {{name: a, address: \"10.0.0.1:6443\"}}\n  - {{name: a, address: \"10.0.0.1:6443\"}}\n"
            ),
            "lb.yaml:4:12: backends[1].name: \"a\" is used by another backend\nlb.yaml:4:24: backends[1].address: \"10.0.0.1:6443\" is the address of another backend",
        ),
        // 9. Unknown balance.
        (
            &format!(
                "{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\"}}]\nbalance: leastconn\n"
            ),
            "lb.yaml:3:10: balance: \"leastconn\" is not one of least-connections, round-robin, random-two",
        ),
        // 10. Duration without a unit.
        (
            &format!(
                "{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\"}}]\ntimeouts: {{connect: 3}}\n"
            ),
            "lb.yaml:3:21: timeouts.connect: \"3\" is not a duration: it has no unit (write e.g. 3s or 3ms)",
        ),
        // 11. Garbage duration.
        (
            &format!(
                "{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\"}}]\ntimeouts:\n  idle: forever\n"
            ),
            "lb.yaml:4:9: timeouts.idle: \"forever\" is not a duration: write a number and a unit, e.g. 3s, 250ms or 1h30m",
        ),
        // 12. Weight out of range.
        (
            &format!("{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\", weight: 0}}]\n"),
            "lb.yaml:2:56: backends[0].weight: 0 is out of range (1 to 1000)",
        ),
        // 13. maxConnections not a number.
        (
            &format!(
                "{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\"}}]\nmaxConnections: lots\n"
            ),
            "lb.yaml:3:17: maxConnections: \"lots\" is not a whole number",
        ),
        // 14. Empty lists.
        (
            "listen: []\nbackends: []\n",
            "lb.yaml:1:9: listen: needs at least one address, e.g. [\"127.0.0.1:6443\"]\nlb.yaml:2:11: backends: needs at least one backend",
        ),
        // 15. Backend port 0 and a bad port.
        (
            &format!(
                "{HEAD}backends:\n  - {{name: a, address: \"10.0.0.1:0\"}}\n  - {{name: b, address: \"10.0.0.2:http\"}}\n"
            ),
            "lb.yaml:3:24: backends[0].address: \"10.0.0.1:0\" is not a valid address: port 0 cannot be connected to\nlb.yaml:4:24: backends[1].address: \"10.0.0.2:http\" is not a valid address: \"http\" is not a port (1 to 65535)",
        ),
        // 16. Bad host name.
        (
            &format!("{HEAD}backends: [{{name: a, address: \"master_1.example:6443\"}}]\n"),
            "lb.yaml:2:31: backends[0].address: \"master_1.example:6443\" is not a valid address: \"master_1.example\" is not a valid host name (label \"master_1\")",
        ),
        // 17. Bad backend name, bad boolean, backlog out of range.
        (
            &format!(
                "{HEAD}backends: [{{name: \"a b\", address: \"10.0.0.1:6443\"}}]\nlistener: {{reusePort: yes, backlog: 0}}\n"
            ),
            "lb.yaml:2:19: backends[0].name: \"a b\" may only contain letters, digits, '-', '_' and '.'\nlb.yaml:3:23: listener.reusePort: \"yes\" is not true or false\nlb.yaml:3:37: listener.backlog: 0 is out of range (1 to 65535)",
        ),
        // 18. Wrong container type.
        (
            "listen: \"127.0.0.1:6443\"\nbackends: []\n",
            "lb.yaml:1:9: listen: invalid type: string \"127.0.0.1:6443\", expected a sequence",
        ),
        // 19. Timeout too short, unknown forwarding, duplicate listener.
        (
            "listen: [\"127.0.0.1:6443\", \"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\nforwarding: zerocopy\ntimeouts: {idle: 10ms}\n",
            "lb.yaml:1:28: listen[1]: \"127.0.0.1:6443\" is listed twice\nlb.yaml:3:13: forwarding: \"zerocopy\" is not one of auto, splice, copy\nlb.yaml:4:18: timeouts.idle: 10ms is too short (at least 1s)",
        ),
        // 21. Bad resolvers and DNS TTL bounds.
        (
            &format!(
                "{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\"}}]\nresolvers: [\"dns.example\", \"127.0.0.53\"]\ndnsTtl: {{min: 10s, max: 1s}}\n"
            ),
            "lb.yaml:3:13: resolvers[0]: \"dns.example\" is not an IP address or ip:port: a port is missing (write host:port, e.g. 10.0.0.11:6443)\nlb.yaml:4:25: dnsTtl.max: 1s is shorter than dnsTtl.min (10s)",
        ),
        // 22. Metrics address and admin access.
        (
            &format!(
                "{HEAD}backends: [{{name: a, address: \"10.0.0.1:6443\"}}]\nmetrics: {{listen: \"localhost:9441\", admin: everyone}}\n"
            ),
            "lb.yaml:3:19: metrics.listen: \"localhost:9441\" is not a valid address: \"localhost\" is not an IP address\nlb.yaml:3:44: metrics.admin: \"everyone\" is not one of loopback, any, off, mtls",
        ),
        // 23. Unknown keys hide nothing: each is reported, with every other problem.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {name: a, address: \"10.0.0.300:6443\", wieght: 2}\nbalanse: round-robin\ntimeouts: {idle: 1 hour}\nmetrics: {}\n",
            "lb.yaml:3:24: backends[0].address: \"10.0.0.300:6443\" is not a valid address: \"10.0.0.300\" is not an IPv4 address\n\
             lb.yaml:3:43: backends[0]: unknown field `wieght`, expected one of `name`, `address`, `weight`, `health`\n\
             lb.yaml:4:1: unknown field `balanse`, expected one of `listen`, `backends`, `balance`, `maxConnections`, `forwarding`, `workers`, `timeouts`, `listener`, `tcp`, `health`, `metrics`, `resolvers`, `dnsTtl`, `vip`, `announce`, `rebalance`\n\
             lb.yaml:5:18: timeouts.idle: \"1 hour\" is not a duration: write it without spaces, with the units ms, s, m, h, d (e.g. 1h or 1h30m)\n\
             lb.yaml:6:1: metrics.listen: is required, e.g. \"127.0.0.1:9441\"",
        ),
        // 24. A backend without name or address.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - weight: 2\n",
            "lb.yaml:3:5: backends[0].name: is required\nlb.yaml:3:5: backends[0].address: is required",
        ),
        // 25. Upper case in a DNS name is the same name (RFC 1123 names are case-insensitive).
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends:\n  - {name: a, address: \"Master-1.Example:6443\"}\n  - {name: b, address: \"master-1.example:6443\"}\n",
            "lb.yaml:4:24: backends[1].address: \"master-1.example:6443\" is the address of another backend",
        ),
        // 26. Durations in messages are written as they are read.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\nhealth: {interval: 1s, fastInterval: 1500ms}\n",
            "lb.yaml:3:38: health.fastInterval: 1s500ms is longer than interval (1s)",
        ),
        // 27. workers: neither auto nor a number, out of range; an unknown accept mode.
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\nworkers: many\nlistener: {accept: roundRobin}\n",
            "lb.yaml:3:10: workers: \"many\" is neither auto nor a whole number\nlb.yaml:4:20: listener.accept: \"roundRobin\" is not one of reusePort, shared",
        ),
        (
            "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\nworkers: 0\n",
            "lb.yaml:3:10: workers: 0 is out of range (1 to 1024)",
        ),
        // 20. YAML syntax error.
        (
            "listen: [\"127.0.0.1:6443\"\nbackends: []\n",
            "lb.yaml:2:1: did not find expected ',' or ']', while parsing a flow sequence at line 1 column 9",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (src, want)) in cases.iter().enumerate() {
        let got = problems(src);
        if got != *want {
            failures.push(format!("case {}:\n  want: {want}\n  got:  {got}", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn summary_names_are_the_yaml_spellings() {
    assert_eq!(Balance::LeastConnections.to_string(), "least-connections");
    assert_eq!(Balance::RandomTwo.as_str(), "random-two");
    assert_eq!(Forwarding::Splice.to_string(), "splice");
    assert_eq!(AdminAccess::Off.to_string(), "off");
    assert_eq!(CheckKind::Https.to_string(), "https");
    assert_eq!(OnDown::Close.to_string(), "close");
    assert_eq!(ChecksumStyle::Rfc9568.to_string(), "rfc9568");
}

const VIP_HEAD: &str =
    "listen: [\"0.0.0.0:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\n";

#[test]
fn vip_section_parses_with_every_key() {
    let src = format!(
        "{VIP_HEAD}vip:\n  interface: eth0\n  vrid: 51\n  addresses: [\"10.0.0.100/24\", \"fd00::100/64\", 10.0.0.101]\n  priority: 150\n  advertInterval: 50ms\n  preempt: false\n  preemptDelay: 2s\n  unicastPeers: [10.0.0.12, \"fd00::12\"]\n  checksum: rfc9568\n  track: {{healthyBackendsBelow: 2, weight: 60, hold: 500ms}}\n  handover: breakBeforeMake\n"
    );
    let c = Config::from_yaml(&src, "lb.yaml")
        .expect("valid")
        .vip
        .expect("vip");
    assert_eq!(c.interface, "eth0");
    assert_eq!(c.vrid, 51);
    assert_eq!(c.addresses.len(), 3);
    assert_eq!(c.addresses[0].to_string(), "10.0.0.100/24");
    assert_eq!(c.addresses[1].to_string(), "fd00::100/64");
    assert_eq!(c.addresses[2].to_string(), "10.0.0.101/32");
    assert_eq!(c.priority, 150);
    assert_eq!(c.advert_interval, Duration::from_millis(50));
    assert_eq!(c.advert_interval_cs(), 5);
    assert!(!c.preempt);
    assert_eq!(c.preempt_delay, Duration::from_secs(2));
    assert_eq!(c.unicast_peers.len(), 2);
    assert_eq!(c.checksum, ChecksumStyle::Rfc9568);
    assert_eq!(c.handover, Handover::BreakBeforeMake);
    assert_eq!(
        c.track,
        Some(TrackConfig {
            healthy_backends_below: 2,
            weight: 60,
            hold: Duration::from_millis(500)
        })
    );
}

#[test]
fn vip_defaults_are_the_named_constants() {
    let src = format!(
        "{VIP_HEAD}vip: {{interface: eth0, vrid: 7, addresses: [10.0.0.100/24], track: {{healthyBackendsBelow: 1}}}}\n"
    );
    let c = Config::from_yaml(&src, "lb.yaml")
        .expect("valid")
        .vip
        .expect("vip");
    assert_eq!(c.priority, DEFAULT_VIP_PRIORITY);
    assert_eq!(c.advert_interval, DEFAULT_ADVERT_INTERVAL);
    assert_eq!(c.preempt, DEFAULT_PREEMPT);
    assert_eq!(c.preempt_delay, DEFAULT_PREEMPT_DELAY);
    assert_eq!(c.checksum, DEFAULT_CHECKSUM);
    assert_eq!(c.handover, DEFAULT_HANDOVER);
    assert_eq!(DEFAULT_HANDOVER.to_string(), "makeBeforeBreak");
    assert!(c.unicast_peers.is_empty());
    let t = c.track.expect("track");
    assert_eq!(t.weight, DEFAULT_TRACK_WEIGHT);
    assert_eq!(t.hold, DEFAULT_TRACK_HOLD);
    assert!(
        Config::from_yaml(VIP_HEAD, "x")
            .expect("valid")
            .vip
            .is_none()
    );
}

/// Each bad `vip:` section and the exact report it gets.
#[test]
fn bad_vip_sections_get_exact_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "vip: {interface: eth0, vrid: 0, addresses: [10.0.0.100/24]}\n",
            "lb.yaml:3:30: vip.vrid: 0 is out of range (1 to 255)",
        ),
        (
            "vip: {interface: eth0, vrid: 51, addresses: [10.0.0.100/33, 224.0.0.18, fd00::1/64, fd00::1]}\n",
            "lb.yaml:3:46: vip.addresses[0]: \"10.0.0.100/33\" is not a valid address: \"/33\" is not a prefix length (0 to 32)\nlb.yaml:3:61: vip.addresses[1]: \"224.0.0.18\" is not a valid address: 224.0.0.18 cannot be a virtual address\nlb.yaml:3:85: vip.addresses[3]: fd00::1 is listed twice",
        ),
        (
            "vip:\n  interface: eth0\n  vrid: 51\n  addresses: []\n  priority: 255\n  advertInterval: 15ms\n",
            "lb.yaml:6:14: vip.addresses: needs at least one address, e.g. [\"10.0.0.100/24\"]\nlb.yaml:7:13: vip.priority: 255 is out of range (1 to 254)\nlb.yaml:8:19: vip.advertInterval: 15ms is not a whole number of centiseconds (VRRPv3 sends 10 ms units)",
        ),
        (
            "vip:\n  interface: eth0\n  vrid: 51\n  addresses: [10.0.0.100]\n  advertInterval: 41s\n  checksum: cisco\n  unicastPeers: [peer-1]\n  preempt: maybe\n  handover: fast\n",
            "lb.yaml:7:19: vip.advertInterval: 41s is out of range (10ms to 40.95s)\nlb.yaml:8:13: vip.checksum: \"cisco\" is not one of keepalived, rfc9568\nlb.yaml:9:18: vip.unicastPeers[0]: \"peer-1\" is not an IP address\nlb.yaml:10:12: vip.preempt: \"maybe\" is not true or false\nlb.yaml:11:13: vip.handover: \"fast\" is not one of makeBeforeBreak, breakBeforeMake",
        ),
        (
            "vip:\n  interface: \"my/eth0\"\n  vrid: 51\n  addresses: [10.0.0.100]\n  track: {healthyBackendsBelow: 0, weight: 254}\n",
            "lb.yaml:4:14: vip.interface: \"my/eth0\" is not an interface name (1-15 characters, no /)\nlb.yaml:7:33: vip.track.healthyBackendsBelow: 0 is out of range (1 to 10000)\nlb.yaml:7:44: vip.track.weight: 254 is out of range (1 to 253)",
        ),
        (
            "vip: {interface: eth0, vrid: 51, addresses: [10.0.0.100], vmac: true}\n",
            "lb.yaml:3:59: vip: unknown field `vmac`, expected one of `interface`, `vrid`, `addresses`, `priority`, `advertInterval`, `preempt`, `preemptDelay`, `unicastPeers`, `checksum`, `track`, `handover`",
        ),
        (
            "vip: {interface: eth0, addresses: [10.0.0.100]}\n",
            "lb.yaml:3:1: vip.vrid: is required: 1 to 255, the same on every LB host",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (tail, want)) in cases.iter().enumerate() {
        let got = problems(&format!("{VIP_HEAD}{tail}"));
        if got != *want {
            failures.push(format!("case {}:\n  want: {want}\n  got:  {got}", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn metrics_tls_and_mtls() {
    let base = "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\n";
    let ok = Config::from_yaml(
        &format!(
            "{base}metrics: {{listen: \"127.0.0.1:9441\", admin: mtls, tls: {{cert: s.crt, key: s.key, clientCa: ca.crt}}}}\n"
        ),
        "lb.yaml",
    )
    .expect("valid");
    let m = ok.metrics.expect("metrics");
    assert_eq!(m.admin, AdminAccess::Mtls);
    assert_eq!(
        m.tls,
        Some(MetricsTls {
            cert: "s.crt".into(),
            key: "s.key".into(),
            client_ca: Some("ca.crt".into()),
        })
    );
    // HTTPS without client certificates is fine with the other access modes.
    let plain_tls = format!(
        "{base}metrics: {{listen: \"127.0.0.1:9441\", tls: {{cert: s.crt, key: s.key}}}}\n"
    );
    assert!(Config::from_yaml(&plain_tls, "lb.yaml").is_ok());
    assert_eq!(
        problems(&format!(
            "{base}metrics: {{listen: \"127.0.0.1:9441\", admin: mtls}}\n"
        )),
        "lb.yaml:3:44: metrics.admin: mtls needs metrics.tls with cert, key and clientCa"
    );
    assert_eq!(
        problems(&format!(
            "{base}metrics: {{listen: \"127.0.0.1:9441\", admin: mtls, tls: {{cert: s.crt, key: s.key}}}}\n"
        )),
        "lb.yaml:3:50: metrics.tls.clientCa: is required by admin: mtls (the CA that signs apilb-admin client certificates)"
    );
    assert_eq!(
        problems(&format!(
            "{base}metrics: {{listen: \"127.0.0.1:9441\", tls: {{cert: \"\", clientCa: ca.crt}}}}\n"
        )),
        "lb.yaml:3:37: metrics.tls.key: is required: the server certificate's private key (PEM)\n\
         lb.yaml:3:49: metrics.tls.cert: must not be empty"
    );
}

#[test]
fn announce_section_parses_with_every_key() {
    let src = format!(
        "{VIP_HEAD}announce:\n  addresses: [\"10.0.0.100/32\", \"fd00::100/128\", 10.0.0.101]\n  interface: dummy0\n  table: 200\n  protocol: 250\n  track: {{healthyBackendsBelow: 2}}\n  hold: 500ms\n  withdrawDelay: 3s\n"
    );
    let a = Config::from_yaml(&src, "lb.yaml")
        .expect("valid")
        .announce
        .expect("announce");
    assert_eq!(
        a,
        AnnounceConfig {
            addresses: vec![
                "10.0.0.100".parse().expect("ip"),
                "fd00::100".parse().expect("ip"),
                "10.0.0.101".parse().expect("ip"),
            ],
            interface: "dummy0".into(),
            table: 200,
            protocol: 250,
            healthy_backends_below: 2,
            hold: Duration::from_millis(500),
            withdraw_delay: Duration::from_secs(3),
        }
    );
}

#[test]
fn announce_defaults_are_the_named_constants() {
    let src = format!("{VIP_HEAD}announce: {{addresses: [10.0.0.100]}}\n");
    let a = Config::from_yaml(&src, "lb.yaml")
        .expect("valid")
        .announce
        .expect("announce");
    assert_eq!(a.interface, DEFAULT_ANNOUNCE_INTERFACE);
    assert_eq!(a.table, DEFAULT_ANNOUNCE_TABLE);
    assert_eq!(a.protocol, DEFAULT_ANNOUNCE_PROTOCOL);
    assert_eq!(a.healthy_backends_below, DEFAULT_ANNOUNCE_BELOW);
    assert_eq!(a.hold, DEFAULT_ANNOUNCE_HOLD);
    assert_eq!(a.withdraw_delay, DEFAULT_WITHDRAW_DELAY);
    assert!(
        Config::from_yaml(VIP_HEAD, "x")
            .expect("valid")
            .announce
            .is_none()
    );
}

/// The section survives a serialize/parse round trip (`apilb bootstrap` writes it).
#[test]
fn announce_section_round_trips_through_the_raw_schema() {
    let src = format!(
        "{VIP_HEAD}announce:\n  addresses: [\"10.0.0.100/32\"]\n  table: 100\n  protocol: 248\n  track: {{healthyBackendsBelow: 1}}\n  hold: 2s\n  withdrawDelay: 2s\n"
    );
    let raw: raw::FileConfig = serde_yaml::from_str(&src).expect("raw");
    let written = serde_yaml::to_string(&raw).expect("serialize");
    assert!(written.contains("withdrawDelay: 2s"), "{written}");
    assert!(written.contains("healthyBackendsBelow: 1"), "{written}");
    assert_eq!(
        Config::from_yaml(&written, "written").expect("valid"),
        Config::from_yaml(&src, "lb.yaml").expect("valid")
    );
}

/// Each bad `announce:` section and the exact report it gets.
#[test]
fn bad_announce_sections_get_exact_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "announce: {addresses: []}\n",
            "lb.yaml:3:23: announce.addresses: needs at least one address, e.g. [\"10.0.0.100/32\"]",
        ),
        (
            "announce: {addresses: [10.0.0.100/24, \"fd00::1/64\", 10.0.0.300, 224.0.0.18, 127.0.0.1, 10.0.0.101, 10.0.0.101/32]}\n",
            "lb.yaml:3:24: announce.addresses[0]: \"10.0.0.100/24\" is not a host address: announce /32 (IPv4) or /128 (IPv6)\n\
             lb.yaml:3:39: announce.addresses[1]: \"fd00::1/64\" is not a host address: announce /32 (IPv4) or /128 (IPv6)\n\
             lb.yaml:3:53: announce.addresses[2]: \"10.0.0.300\" is not a valid address: \"10.0.0.300\" is not an IP address\n\
             lb.yaml:3:65: announce.addresses[3]: 224.0.0.18 cannot be announced\n\
             lb.yaml:3:77: announce.addresses[4]: 127.0.0.1 cannot be announced\n\
             lb.yaml:3:100: announce.addresses[6]: 10.0.0.101 is listed twice",
        ),
        (
            "announce:\n  addresses: [10.0.0.100]\n  interface: \"my/lo\"\n  table: 254\n  protocol: 12\n",
            "lb.yaml:5:14: announce.interface: \"my/lo\" is not an interface name (1-15 characters, no /)\n\
             lb.yaml:6:10: announce.table: 254 is the kernel's main table; use a table of apilb's own, e.g. 100\n\
             lb.yaml:7:13: announce.protocol: 12 is the protocol number of bird routes; use one of apilb's own, e.g. 248",
        ),
        (
            "announce:\n  addresses: [10.0.0.100]\n  table: 0\n  protocol: 256\n  hold: 2\n  withdrawDelay: soon\n",
            "lb.yaml:5:10: announce.table: 0 is out of range (1 to 4294967295)\n\
             lb.yaml:6:13: announce.protocol: 256 is out of range (0 to 255)\n\
             lb.yaml:7:9: announce.hold: \"2\" is not a duration: it has no unit (write e.g. 2s or 2ms)\n\
             lb.yaml:8:18: announce.withdrawDelay: \"soon\" is not a duration: write a number and a unit, e.g. 3s, 250ms or 1h30m",
        ),
        (
            "announce: {addresses: [10.0.0.100], table: 253, protocol: 2, track: {}}\n",
            "lb.yaml:3:44: announce.table: 253 is the kernel's default table; use a table of apilb's own, e.g. 100\n\
             lb.yaml:3:59: announce.protocol: 2 is the protocol number of kernel routes; use one of apilb's own, e.g. 248\n\
             lb.yaml:3:62: announce.track.healthyBackendsBelow: is required, e.g. 1",
        ),
        (
            "announce: {addresses: [10.0.0.100], track: {healthyBackendsBelow: 0, weight: 10}}\n",
            "lb.yaml:3:67: announce.track.healthyBackendsBelow: 0 is out of range (1 to 10000)\n\
             lb.yaml:3:70: announce.track: unknown field `weight`, expected `healthyBackendsBelow`",
        ),
        (
            "announce: {addresses: [10.0.0.100], vrid: 51}\n",
            "lb.yaml:3:37: announce: unknown field `vrid`, expected one of `addresses`, `interface`, `table`, `protocol`, `track`, `hold`, `withdrawDelay`",
        ),
        (
            "announce: {interface: lo}\n",
            "lb.yaml:3:1: announce.addresses: needs at least one address, e.g. [\"10.0.0.100/32\"]",
        ),
        (
            "vip: {interface: eth0, vrid: 51, addresses: [10.0.0.100/24]}\nannounce: {addresses: [10.0.0.100/32]}\n",
            "lb.yaml:4:11: announce: cannot be used together with `vip`: a host either holds the VIP by VRRP (vip) or announces it as a route to BGP routers (announce); remove one",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (tail, want)) in cases.iter().enumerate() {
        let got = problems(&format!("{VIP_HEAD}{tail}"));
        if got != *want {
            failures.push(format!("case {}:\n  want: {want}\n  got:  {got}", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_announce_example_config_is_valid() {
    let text = include_str!("../../config/announce.yaml");
    let c = Config::from_yaml(text, "config/announce.yaml").expect("config/announce.yaml is valid");
    assert!(c.announce.is_some() && c.vip.is_none());
}

/// Every `rebalance:` key parses; an absent section is all defaults.
#[test]
fn rebalance_section_parses_and_defaults() {
    let head = "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\n";
    let c = Config::from_yaml(head, "lb.yaml").expect("valid");
    assert_eq!(c.rebalance, RebalanceConfig::default());
    assert!(c.rebalance.enabled);
    assert_eq!(c.rebalance.skew, DEFAULT_REBALANCE_SKEW);
    assert_eq!(c.rebalance.after, Duration::from_secs(60));
    assert_eq!(c.rebalance.warmup, Duration::from_secs(90));
    assert_eq!(c.rebalance.min_age, Duration::from_secs(600));
    assert_eq!(c.rebalance.quiet, Duration::from_millis(500));
    assert_eq!(c.rebalance.max_rate, 20);
    assert_eq!(c.rebalance.per_client, Duration::from_secs(1800));
    let src = format!(
        "{head}rebalance:\n  enabled: false\n  skew: 1.5\n  after: 2s\n  warmup: 3s\n  minAge: 4s\n  quiet: 50ms\n  maxRate: 7\n  perClient: 1m\n"
    );
    let c = Config::from_yaml(&src, "lb.yaml").expect("valid");
    assert_eq!(
        c.rebalance,
        RebalanceConfig {
            enabled: false,
            skew: 1.5,
            after: Duration::from_secs(2),
            warmup: Duration::from_secs(3),
            min_age: Duration::from_secs(4),
            quiet: Duration::from_millis(50),
            max_rate: 7,
            per_client: Duration::from_secs(60),
        }
    );
}

/// Bad `rebalance:` values: every problem at once, each naming its key path.
#[test]
fn bad_rebalance_sections_get_exact_errors() {
    let head = "listen: [\"127.0.0.1:6443\"]\nbackends: [{name: a, address: \"10.0.0.1:6443\"}]\n";
    let cases: &[(&str, &str)] = &[
        (
            "rebalance: {skew: 1.0}\n",
            "lb.yaml:3:19: rebalance.skew: 1 must be above 1.0 and at most 100 (skew is highest / mean, never below 1)",
        ),
        (
            "rebalance:\n  skew: lots\n  enabled: maybe\n  quiet: 1ms\n  maxRate: 0\n  perClient: soon\n",
            "lb.yaml:4:9: rebalance.skew: \"lots\" is not a number\nlb.yaml:5:12: rebalance.enabled: \"maybe\" is not true or false\nlb.yaml:6:10: rebalance.quiet: 1ms is too short (at least 10ms)\nlb.yaml:7:12: rebalance.maxRate: 0 is out of range (1 to 10000)\nlb.yaml:8:14: rebalance.perClient: \"soon\" is not a duration: ",
        ),
        (
            "rebalance: {every: 1s}\n",
            "lb.yaml:3:13: rebalance: unknown field `every`, expected one of `enabled`, `skew`, `after`, `warmup`, `minAge`, `quiet`, `maxRate`, `perClient`",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (tail, want)) in cases.iter().enumerate() {
        let got = problems(&format!("{head}{tail}"));
        if !got.starts_with(want) {
            failures.push(format!("case {}:\n  want: {want}\n  got:  {got}", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
