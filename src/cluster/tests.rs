use super::*;

const EXAMPLE: &str = include_str!("../../config/cluster.yaml");

fn problems(yaml: &str) -> Vec<String> {
    match Cluster::from_yaml(yaml) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

/// The example with one line replaced.
fn example_with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "{from:?} not in the example");
    EXAMPLE.replacen(from, to, 1)
}

#[test]
fn example_file_parses() {
    let c = Cluster::from_yaml(EXAMPLE).unwrap();
    assert_eq!(c.name, "kubernetes");
    assert_eq!(c.kubernetes_version, "v1.31.2");
    assert_eq!(
        c.control_plane_endpoint.url(),
        "https://k8s-api.example.internal:6443"
    );
    assert_eq!(
        c.load_balancer.vips,
        vec!["10.0.0.100".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(c.load_balancer.hosts.len(), 2);
    assert_eq!(c.masters.len(), 3);
    assert_eq!(
        c.masters[2].cert_sans,
        vec![San::Dns("master-3.example.internal".into())]
    );
    assert_eq!(
        c.networking.kubernetes_service_ip(),
        "10.96.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(c.etcd, Etcd::Stacked);
    assert_eq!(c.pki.algorithm, KeyAlgorithm::Rsa2048);
    assert_eq!(c.pki.ca_validity, DEFAULT_CA_VALIDITY);
    assert_eq!(c.pki.cert_validity, DEFAULT_CERT_VALIDITY);
    let names: Vec<&str> = c.machine_names().collect();
    assert_eq!(names, ["master-1", "master-2", "master-3", "lb-1", "lb-2"]);
}

#[test]
fn defaults_for_optional_sections() {
    let c = Cluster::from_yaml(
        "kubernetesVersion: v1.31.0\ncontrolPlaneEndpoint: 10.0.0.100\n\
         loadBalancer: {vip: 10.0.0.100}\nmasters: [{name: cp1, address: 10.0.0.11}]\n",
    )
    .unwrap();
    assert_eq!(c.name, DEFAULT_CLUSTER_NAME);
    assert_eq!(c.control_plane_endpoint.port, DEFAULT_API_SERVER_PORT);
    assert_eq!(c.networking.dns_domain, "cluster.local");
    assert_eq!(c.networking.service_subnets[0].to_string(), "10.96.0.0/12");
    assert!(c.load_balancer.hosts.is_empty());
}

#[test]
fn external_etcd_and_dual_stack() {
    let yaml = example_with(
        "  topology: stacked                # stacked | external\n",
        "  topology: external\n  members: [{name: etcd-1, address: 10.0.0.21}, {name: etcd-2, address: 10.0.0.22}]\n",
    )
    .replace(
        "vip: 10.0.0.100                  # also",
        "vip: [10.0.0.100, 'fd00::100']  # also",
    )
    .replace(
        "serviceSubnet: 10.96.0.0/12,",
        "serviceSubnet: '10.96.0.0/12,fd00:10:96::/108',",
    );
    let c = Cluster::from_yaml(&yaml).unwrap();
    assert_eq!(c.etcd_members().len(), 2);
    assert_eq!(c.load_balancer.vips.len(), 2);
    assert_eq!(c.networking.service_subnets.len(), 2);
    assert_eq!(c.machine_names().count(), 7);
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let err = Cluster::from_yaml(&example_with("clusterName:", "clusterNmae:")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown field `clusterNmae`"), "{msg}");
    let err = Cluster::from_yaml(&example_with(
        "{name: master-1, address: 10.0.0.11}",
        "{name: master-1, adress: 10.0.0.11}",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "<string>:44:5: masters[0].address: is required\n\
         <string>:44:22: masters[0]: unknown field `adress`, expected one of `name`, `address`, `certSANs`, `asn`"
    );
}

#[test]
fn bad_address_names_the_key() {
    assert_eq!(
        problems(&example_with("address: 10.0.0.13", "address: 10.0.0.300")),
        [r#"masters[2].address: "10.0.0.300" is not a valid IP address"#]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = example_with("address: 10.0.0.13", "address: 10.0.0.300")
        .replace("name: master-2", "name: master-1")
        .replace("RSA-2048    #", "RSA-1024    #")
        .replace("serviceSubnet: 10.96.0.0/12", "serviceSubnet: 10.96.0.0/40")
        .replace("certSANs: []", "certSANs: ['bad name']");
    assert_eq!(
        problems(&yaml),
        [
            r#"masters[1].name: duplicate name "master-1" (already used by masters[0])"#,
            r#"masters[2].address: "10.0.0.300" is not a valid IP address"#,
            r#"networking.serviceSubnet: "10.96.0.0/40" is not a valid CIDR: "/40" is not a prefix length (0 to 32)"#,
            r#"pki.encryptionAlgorithm: "RSA-1024" is not one of: RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"#,
            r#"pki.certSANs[0]: "bad name" is neither an IP address nor a valid DNS name"#,
        ]
    );
}

#[test]
fn duplicates_across_sections() {
    let yaml = example_with(
        "{name: lb-2, address: 10.0.0.6}",
        "{name: master-1, address: 10.0.0.12}",
    );
    assert_eq!(
        problems(&yaml),
        [
            r#"loadBalancer.hosts[1].name: duplicate name "master-1" (already used by masters[0])"#,
            "loadBalancer.hosts[1].address: duplicate address 10.0.0.12 (already used by masters[1])",
        ]
    );
}

#[test]
fn vip_rules() {
    assert_eq!(
        problems(&example_with("vip: 10.0.0.100 ", "vip: 10.96.0.10 ")),
        ["loadBalancer.vip: 10.96.0.10 is inside the service subnet 10.96.0.0/12"]
    );
    assert_eq!(
        problems(&example_with("address: 10.0.0.12", "address: 10.0.0.100")),
        [
            "masters[1].address: 10.0.0.100 is the load balancer VIP; the VIP must not be a machine's own address"
        ]
    );
    assert_eq!(
        problems(&example_with("address: 10.0.0.5", "address: 10.0.0.100")),
        [
            "loadBalancer.hosts[0].address: 10.0.0.100 is the load balancer VIP; the VIP must not be a machine's own address"
        ]
    );
    assert_eq!(
        problems(&example_with(
            "controlPlaneEndpoint: k8s-api.example.internal:6443",
            "controlPlaneEndpoint: 10.0.0.99:6443"
        )),
        ["controlPlaneEndpoint: 10.0.0.99 is an IP address but not the load balancer VIP"]
    );
    assert_eq!(
        problems(&example_with(
            "vip: 10.0.0.100 ",
            "vip: [10.0.0.100, 10.0.0.101] "
        )),
        ["loadBalancer.vip[1]: at most one VIP per address family"]
    );
}

#[test]
fn subnet_and_topology_rules() {
    assert_eq!(
        problems(&example_with(
            "podSubnet: 10.244.0.0/16",
            "podSubnet: 10.96.0.0/16"
        )),
        ["networking.podSubnet: 10.96.0.0/16 overlaps the service subnet 10.96.0.0/12"]
    );
    assert_eq!(
        problems(&example_with(
            "serviceSubnet: 10.96.0.0/12",
            "serviceSubnet: 10.96.0.1/12"
        )),
        [
            r#"networking.serviceSubnet: "10.96.0.1/12" is not a valid CIDR: host bits are set (did you mean 10.96.0.0/12?)"#
        ]
    );
    assert_eq!(
        problems(&example_with("topology: stacked ", "topology: external ")),
        ["etcd.members: topology: external needs at least one member"]
    );
    assert_eq!(
        problems(&example_with("topology: stacked ", "topology: local ")),
        [r#"etcd.topology: "local" is not one of: stacked, external"#]
    );
    assert_eq!(
        problems(&example_with(
            "{name: lb-1, address: 10.0.0.5}",
            "{name: lb-1, address: 10.0.0.5, certSANs: [x]}"
        )),
        [
            "loadBalancer.hosts[0].certSANs: is only allowed on masters (use pki.certSANs for every master)"
        ]
    );
    assert_eq!(
        problems(&example_with("{name: master-1,", "{name: rbac,")),
        [r#"masters[0].name: "rbac" is reserved for the output tree"#]
    );
}

#[test]
fn validity_rules() {
    assert_eq!(
        problems(&example_with(
            "certValidity: 8760h",
            "certValidity: 100000h"
        )),
        ["pki.certValidity: is longer than pki.caValidity; leaves would outlive their CA"]
    );
    assert_eq!(
        problems(&example_with("caValidity: 87600h", "caValidity: 1000000h")),
        [r#"pki.caValidity: "1000000h" is too long (at most 876000h, 100 years)"#]
    );
    assert_eq!(
        problems(&example_with("certValidity: 8760h", "certValidity: 10m")),
        [r#"pki.certValidity: "10m" is too short (at least 1h)"#]
    );
    assert_eq!(
        problems(&example_with("caValidity: 87600h", "caValidity: 10 years")),
        [
            r#"pki.caValidity: "10 years" is not a duration: write it without spaces, with the units ms, s, m, h, d (e.g. 1h or 1h30m)"#
        ]
    );
    let c = Cluster::from_yaml(&example_with("caValidity: 87600h", "caValidity: 3650d")).unwrap();
    assert_eq!(c.pki.ca_validity, DEFAULT_CA_VALIDITY);
}

#[test]
fn missing_required_keys() {
    assert_eq!(
        problems("masters: []\n"),
        [
            "kubernetesVersion: is required",
            "controlPlaneEndpoint: is required",
            "loadBalancer: is required",
            "masters: needs at least one master",
        ]
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, example_with("address: 10.0.0.13", "address: nope")).unwrap();
    let msg = Cluster::load(&path).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}:46:31: masters[2].address: \"nope\" is not a valid IP address",
            path.display()
        )
    );
    let missing = dir.path().join("none.yaml");
    let msg = Cluster::load(&missing).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn vrrp_section() {
    let c = Cluster::from_yaml(EXAMPLE).unwrap();
    assert_eq!(
        c.load_balancer.vrrp,
        Some(Vrrp {
            interface: "eth0".into(),
            vrid: 51,
            prefix_length: 24,
            advert_interval: "100ms".into(),
        })
    );
    let bad = example_with("    interface: eth0 ", "    interface: \"\" ")
        .replacen("vrid: 51 ", "vrid: 300 ", 1)
        .replacen("prefixLength: 24 ", "prefixLength: 33 ", 1)
        .replacen("advertInterval: 100ms ", "advertInterval: fast ", 1);
    assert_eq!(
        problems(&bad),
        [
            "loadBalancer.vrrp.interface: is required: the LB hosts' interface on the VIP's subnet, e.g. eth0",
            "loadBalancer.vrrp.vrid: 300 is out of range (1 to 255)",
            "loadBalancer.vrrp.prefixLength: 33 is out of range (1 to 32)",
            "loadBalancer.vrrp.advertInterval: \"fast\" is not a duration: write a number and a unit, e.g. 3s, 250ms or 1h30m",
        ]
    );
}

/// A small description with `loadBalancer` replaced by `lb` (indented by two spaces).
fn with_lb(lb: &str) -> String {
    let vip = if lb.starts_with("  vip:") {
        ""
    } else {
        "  vip: 10.0.0.100\n"
    };
    format!(
        "kubernetesVersion: v1.31.2\ncontrolPlaneEndpoint: 10.0.0.100\nloadBalancer:\n{vip}{lb}masters: [{{name: cp1, address: 10.0.0.11}}]\n"
    )
}

const BGP_HOSTS: &str =
    "  hosts: [{name: lb-1, address: 10.0.0.5}, {name: lb-2, address: 10.0.0.6, asn: 65011}]\n";

#[test]
fn bgp_section() {
    let c = Cluster::from_yaml(&with_lb(&format!(
        "  vip: ['10.0.0.100', 'fd00::100']\n{BGP_HOSTS}  bgp:\n    localAsn: 65010\n    routers: [{{address: 10.0.0.1, asn: 65000}}, {{address: 'fd00::1', asn: 4200000000}}]\n    password: file:/etc/apilb/bgp-password\n"
    )))
    .unwrap();
    let bgp = c.load_balancer.bgp.unwrap();
    assert_eq!(
        bgp,
        Bgp {
            host_asns: vec![65010, 65011],
            routers: vec![
                Router {
                    address: "10.0.0.1".parse().unwrap(),
                    asn: 65000
                },
                Router {
                    address: "fd00::1".parse().unwrap(),
                    asn: 4_200_000_000
                },
            ],
            bfd: true,
            password_file: Some("/etc/apilb/bgp-password".into()),
        }
    );
    assert_eq!(bgp.host_asn(1), Some(65011));
    assert_eq!(bgp.host_asn(2), None);
    assert!(c.load_balancer.vrrp.is_none());

    // Per-host ASNs only, BFD off, no password.
    let c = Cluster::from_yaml(&with_lb(
        "  hosts: [{name: lb-1, address: 10.0.0.5, asn: 65001}]\n  bgp: {routers: [{address: 10.0.0.1, asn: 65000}], bfd: false}\n",
    ))
    .unwrap();
    let bgp = c.load_balancer.bgp.unwrap();
    assert_eq!(bgp.host_asns, [65001]);
    assert!(!bgp.bfd);
    assert_eq!(bgp.password_file, None);
}

#[test]
fn bgp_errors_name_their_key() {
    assert_eq!(
        problems(&with_lb(&format!(
            "{BGP_HOSTS}  vrrp: {{interface: eth0}}\n  bgp: {{localAsn: 65010, routers: [{{address: 10.0.0.1, asn: 65000}}]}}\n"
        ))),
        [
            "loadBalancer.bgp: cannot be used together with loadBalancer.vrrp: VRRP moves the VIP to one active host, BGP announces it from every host; choose one"
        ]
    );
    assert_eq!(
        problems(&with_lb(
            "  hosts: [{name: lb-1, address: 10.0.0.5}, {name: lb-2, address: 10.0.0.6, asn: 0}]\n  bgp:\n    routers:\n      - {address: 10.0.0.300, asn: 65000}\n      - {address: 10.0.0.2, asn: 23456}\n      - {address: 10.0.0.2, asn: 65000}\n      - {asn: big}\n      - {address: 10.0.0.5, asn: 4294967295}\n      - {address: 10.0.0.100, asn: 65000}\n    bfd: yes please\n    password: hunter2\n"
        )),
        [
            "loadBalancer.hosts[0].asn: is required when loadBalancer.bgp.localAsn is not set (the LB host's own AS number)",
            "loadBalancer.hosts[1].asn: 0 is reserved; use 1 to 4294967294",
            "loadBalancer.bgp.routers[0].address: \"10.0.0.300\" is not a valid IP address",
            "loadBalancer.bgp.routers[1].asn: 23456 is AS_TRANS (RFC 6793), not a usable AS number",
            "loadBalancer.bgp.routers[2].address: duplicate router 10.0.0.2 (already loadBalancer.bgp.routers[1])",
            "loadBalancer.bgp.routers[3].address: is required",
            "loadBalancer.bgp.routers[3].asn: \"big\" is not an AS number (1 to 4294967294)",
            "loadBalancer.bgp.routers[4].asn: 4294967295 is reserved; use 1 to 4294967294",
            "loadBalancer.bgp.bfd: \"yes please\" is not true or false",
            "loadBalancer.bgp.password: must be file:/absolute/path (a file holding the TCP-MD5 password; the password itself is not written into the cluster description)",
        ]
    );
    // The password's value is never echoed.
    let err = Cluster::from_yaml(&with_lb(&format!(
        "{BGP_HOSTS}  bgp: {{localAsn: 65010, routers: [{{address: 10.0.0.1, asn: 65000}}], password: hunter2}}\n"
    )))
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(
        problems(&with_lb(&format!(
            "{BGP_HOSTS}  bgp: {{localAsn: 65010, routers: [{{address: 10.0.0.5, asn: 65000}}, {{address: 10.0.0.100, asn: 65000}}]}}\n"
        ))),
        [
            "loadBalancer.bgp.routers[0].address: 10.0.0.5 is the address of loadBalancer.hosts[0]; a router is another machine",
            "loadBalancer.bgp.routers[1].address: 10.0.0.100 is the load balancer VIP",
        ]
    );
    assert_eq!(
        problems(&with_lb(&format!(
            "  vip: ['10.0.0.100', 'fd00::100']\n{BGP_HOSTS}  bgp: {{localAsn: 65010, routers: [{{address: 10.0.0.1, asn: 65000}}]}}\n"
        ))),
        [
            "loadBalancer.bgp.routers: no router of the VIP fd00::100's address family (each router carries the VIPs of its own address family)"
        ]
    );
    assert_eq!(
        problems(&with_lb(&format!(
            "{BGP_HOSTS}  bgp: {{localAsn: 65010, routers: [{{address: 10.0.0.1, asn: 65000}}, {{address: 'fd00::1', asn: 65000}}]}}\n"
        ))),
        [
            "loadBalancer.bgp.routers[1].address: fd00::1 is an IPv6 router but there is no IPv6 VIP (each router carries the VIPs of its own address family)"
        ]
    );
    assert_eq!(
        problems(&with_lb("  bgp: {localAsn: 65010, routers: []}\n")),
        [
            "loadBalancer.bgp: needs the LB hosts in loadBalancer.hosts (each of them announces the VIP)",
            "loadBalancer.bgp.routers: needs at least one router, e.g. [{address: 10.0.0.1, asn: 65000}]",
        ]
    );
    assert_eq!(
        problems(
            &with_lb("  hosts: [{name: lb-1, address: 10.0.0.5, asn: 65001}]\n")
                .replace("address: 10.0.0.11}", "address: 10.0.0.11, asn: 65002}")
        ),
        [
            "loadBalancer.hosts[0].asn: is only used with loadBalancer.bgp",
            "masters[0].asn: is only allowed on LB hosts (loadBalancer.hosts, with loadBalancer.bgp)",
        ]
    );
    let err = Cluster::from_yaml(&with_lb(
        "  hosts: [{name: lb-1, address: 10.0.0.5}]\n  bgp: {localAsn: 65010, routers: [{address: 10.0.0.1, asn: 65000, port: 179}]}\n",
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "loadBalancer.bgp.routers[0]: unknown field `port`, expected `address` or `asn`"
        ),
        "{err}"
    );
}

/// Cluster-description problems print as the LB config's do: `file:line:col: key: problem`,
/// one per line, in file order, syntax and unknown keys included.
#[test]
fn problems_have_the_lb_config_format() {
    let cases: &[(&str, &str)] = &[
        (
            "kubernetesVersion: v1.31.2\ncontrolPlaneEndpoint: 10.0.0.100\nloadBalancer: {vip: 10.0.0.100}\nmasters:\n  - {name: cp1, address: 10.0.0.11}\n  - {name: Cp2, address: 10.0.0.300}\nnetworking: {podSubnet: 10.244.0.0/33}\n",
            "c.yaml:6:12: masters[1].name: \"Cp2\" is not a valid node name (lower-case RFC 1123 subdomain)\n\
             c.yaml:6:26: masters[1].address: \"10.0.0.300\" is not a valid IP address\n\
             c.yaml:7:25: networking.podSubnet: \"10.244.0.0/33\" is not a valid CIDR: \"/33\" is not a prefix length (0 to 32)",
        ),
        (
            "kubernetesVersion: v1.31.2\nclusterNmae: x\ncontrolPlaneEndpoint: \"api_1:6443\"\nloadBalancer: {vip: 10.0.0.100, vrrp: {interface: eth0, advertInterval: 1 second}}\nmasters: [{name: cp1, address: 10.0.0.11}]\n",
            "c.yaml:2:1: unknown field `clusterNmae`, expected one of `clusterName`, `kubernetesVersion`, `controlPlaneEndpoint`, `loadBalancer`, `masters`, `networking`, `etcd`, `pki`\n\
             c.yaml:3:23: controlPlaneEndpoint: \"api_1:6443\" is not a valid host[:port]: \"api_1\" is not a valid host name (label \"api_1\")\n\
             c.yaml:4:73: loadBalancer.vrrp.advertInterval: \"1 second\" is not a duration: write it without spaces, with the units ms, s, m, h, d (e.g. 1h or 1h30m)",
        ),
        // Numbers where text belongs, and text where numbers belong, are checked values too.
        (
            "kubernetesVersion: 1.31\ncontrolPlaneEndpoint: 10.0.0.100\nloadBalancer: {vip: 10.0.0.100, vrrp: {interface: eth0, vrid: abc}}\nmasters: [{name: 7, address: 10.0.0.11}]\n",
            "c.yaml:1:20: kubernetesVersion: \"1.31\" is not a version like v1.31.2\n\
             c.yaml:3:63: loadBalancer.vrrp.vrid: \"abc\" is not a whole number",
        ),
        (
            "masters: [\n",
            "c.yaml:2:1: did not find expected node content, while parsing a flow node",
        ),
        (
            "",
            "c.yaml:1:1: the file is empty; a cluster description needs at least kubernetesVersion, controlPlaneEndpoint, loadBalancer and masters",
        ),
        (
            "kubernetesVersion: v1.31.2\nloadBalancer: {vip: 10.0.0.100}\nmasters: [{name: cp1, address: 10.0.0.11}]\n",
            "c.yaml:1:1: controlPlaneEndpoint: is required",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (src, want)) in cases.iter().enumerate() {
        match Cluster::parse(src, "c.yaml") {
            Ok(c) => failures.push(format!("case {}: expected an error, got {c:?}", i + 1)),
            Err(e) if e.to_string() != *want => {
                failures.push(format!("case {}:\n  want: {want}\n  got:  {e}", i + 1))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Upper case in DNS names (endpoint host, SANs, dnsDomain) is the same name, kept in lower
/// case; node names are Kubernetes object names and stay lower case only.
#[test]
fn dns_names_are_case_insensitive() {
    let c = Cluster::from_yaml(
        &example_with(
            "controlPlaneEndpoint: k8s-api.example.internal:6443",
            "controlPlaneEndpoint: K8s-API.Example.Internal:6443",
        )
        .replace(
            "certSANs: [master-3.example.internal]",
            "certSANs: [Master-3.Example.Internal]",
        )
        .replace("dnsDomain: cluster.local", "dnsDomain: Cluster.Local"),
    )
    .unwrap();
    assert_eq!(
        c.control_plane_endpoint.url(),
        "https://k8s-api.example.internal:6443"
    );
    assert_eq!(
        c.masters[2].cert_sans,
        vec![San::Dns("master-3.example.internal".into())]
    );
    assert_eq!(c.networking.dns_domain, "cluster.local");
}
