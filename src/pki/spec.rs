//! The certificate table: which certificates, kubeconfigs and CA copies every machine of a
//! [`Cluster`] gets, with kubeadm's names, CN/O, usages and SAN rules. Pure: no I/O.

use std::net::IpAddr;

use super::cert::{CaKind, Profile, SanList, Usage};
use crate::cluster::{Cluster, DEFAULT_API_SERVER_PORT, Etcd, Master, San, https_url};

/// Group of `admin.conf` and `apiserver-kubelet-client` (kubeadm ≥ 1.29).
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// Group of `super-admin.conf`.
pub const SYSTEM_MASTERS_GROUP: &str = "system:masters";
/// CN of the LB hosts' health-check client certificate.
pub const HEALTH_CLIENT_CN: &str = "apilb-health";
/// Base name of the LB hosts' health-check client certificate under `pki/`.
pub const HEALTH_CLIENT_BASE: &str = "apilb-health";

/// The output directory (beside the machines') holding the admin CA with its key and the
/// operators' `apilb-admin` client certificate; it goes to operators, not to any host.
pub const ADMIN_DIR: &str = "apilb-admin";
/// Base name of an LB host's admin endpoint server certificate under `pki/`.
pub const ADMIN_SERVER_BASE: &str = "apilb-admin-server";
/// Base name (and CN) of the operators' client certificate under [`ADMIN_DIR`].
pub const ADMIN_CLIENT_BASE: &str = "apilb-admin";

/// kubeadm's apiserver SANs for `master`, plus the controlPlaneEndpoint host, the VIPs, every
/// LB host address, `pki.certSANs` and the master's own `certSANs`.
pub fn apiserver_sans(c: &Cluster, master: &Master) -> SanList {
    let mut s = SanList::default();
    s.push_dns(&master.name);
    for d in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        s.push_dns(d);
    }
    s.push_dns(&format!(
        "kubernetes.default.svc.{}",
        c.networking.dns_domain
    ));
    s.push_ip(c.networking.kubernetes_service_ip());
    s.push_ip(master.address);
    s.push(&c.control_plane_endpoint.host);
    for vip in &c.load_balancer.vips {
        s.push_ip(*vip);
    }
    for h in &c.load_balancer.hosts {
        s.push_ip(h.address);
    }
    for san in c.pki.cert_sans.iter().chain(&master.cert_sans) {
        s.push(san);
    }
    s
}

/// kubeadm's etcd server and peer SANs: name, localhost, address, 127.0.0.1, ::1.
pub fn etcd_sans(name: &str, address: IpAddr) -> SanList {
    let mut s = SanList::default();
    s.push_dns(name);
    s.push_dns("localhost");
    s.push_ip(address);
    s.push(&San::Ip(IpAddr::from([127, 0, 0, 1])));
    s.push(&San::Ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
    s
}

fn client(ca: CaKind, cn: &str, orgs: &[&str]) -> Profile {
    Profile {
        ca,
        common_name: cn.to_owned(),
        organizations: orgs.iter().map(|s| (*s).to_owned()).collect(),
        usages: vec![Usage::ClientAuth],
        sans: SanList::default(),
    }
}

/// A leaf file pair: `<dir>/<base>.crt` and `.key`.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Base name relative to the pki directory (e.g. `etcd/server`).
    pub base: &'static str,
    /// What it must be.
    pub profile: Profile,
}

/// The leaves under a master's `pki/`.
pub fn master_leaves(c: &Cluster, m: &Master) -> Vec<LeafSpec> {
    let mut v = vec![
        LeafSpec {
            base: "apiserver",
            profile: Profile {
                ca: CaKind::Cluster,
                common_name: "kube-apiserver".into(),
                organizations: vec![],
                usages: vec![Usage::ServerAuth],
                sans: apiserver_sans(c, m),
            },
        },
        LeafSpec {
            base: "apiserver-kubelet-client",
            profile: client(
                CaKind::Cluster,
                "kube-apiserver-kubelet-client",
                &[CLUSTER_ADMINS_GROUP],
            ),
        },
        LeafSpec {
            base: "front-proxy-client",
            profile: client(CaKind::FrontProxy, "front-proxy-client", &[]),
        },
        LeafSpec {
            base: "apiserver-etcd-client",
            profile: client(CaKind::Etcd, "kube-apiserver-etcd-client", &[]),
        },
    ];
    if c.etcd == Etcd::Stacked {
        v.extend(etcd_member_leaves(&m.name, m.address));
        v.push(LeafSpec {
            base: "etcd/healthcheck-client",
            profile: client(CaKind::Etcd, "kube-etcd-healthcheck-client", &[]),
        });
    }
    v
}

/// An etcd member's server and peer certificates (CN = node name, serverAuth + clientAuth).
pub fn etcd_member_leaves(name: &str, address: IpAddr) -> Vec<LeafSpec> {
    let both = vec![Usage::ServerAuth, Usage::ClientAuth];
    vec![
        LeafSpec {
            base: "etcd/server",
            profile: Profile {
                ca: CaKind::Etcd,
                common_name: name.to_owned(),
                organizations: vec![],
                usages: both.clone(),
                sans: etcd_sans(name, address),
            },
        },
        LeafSpec {
            base: "etcd/peer",
            profile: Profile {
                ca: CaKind::Etcd,
                common_name: name.to_owned(),
                organizations: vec![],
                usages: both,
                sans: etcd_sans(name, address),
            },
        },
    ]
}

/// The health-check client certificate of an LB host.
pub fn health_client() -> LeafSpec {
    LeafSpec {
        base: HEALTH_CLIENT_BASE,
        profile: client(CaKind::Cluster, HEALTH_CLIENT_CN, &[]),
    }
}

/// The admin endpoint's server certificate of the LB host `name` at `address`: CN the host
/// name; SANs the name, `localhost`, the address, 127.0.0.1 and ::1 (the endpoint listens on
/// loopback by default; clients verify the IP address they connect to).
pub fn admin_server(name: &str, address: IpAddr) -> LeafSpec {
    LeafSpec {
        base: ADMIN_SERVER_BASE,
        profile: Profile {
            ca: CaKind::ApilbAdmin,
            common_name: name.to_owned(),
            organizations: vec![],
            usages: vec![Usage::ServerAuth],
            sans: etcd_sans(name, address),
        },
    }
}

/// The operators' client certificate for `metrics.admin: mtls` (CN `apilb-admin`).
pub fn admin_client() -> LeafSpec {
    LeafSpec {
        base: ADMIN_CLIENT_BASE,
        profile: client(CaKind::ApilbAdmin, crate::admin::tls::ADMIN_NAME, &[]),
    }
}

/// One kubeconfig file beside a master's `pki/`.
#[derive(Debug, Clone)]
pub struct KubeconfigSpec {
    /// File name (`admin.conf`).
    pub file: &'static str,
    /// The client certificate (its CN is the kubeconfig user name).
    pub profile: Profile,
    /// The `server` URL.
    pub server: String,
}

/// kubeadm's five kubeconfigs for `m`: admin, super-admin and kubelet at the
/// controlPlaneEndpoint, controller-manager and scheduler at the master's own address.
pub fn kubeconfigs(c: &Cluster, m: &Master) -> Vec<KubeconfigSpec> {
    let cpe = c.control_plane_endpoint.url();
    let local = https_url(m.address, DEFAULT_API_SERVER_PORT);
    let node_user = format!("system:node:{}", m.name);
    vec![
        KubeconfigSpec {
            file: "admin.conf",
            profile: client(CaKind::Cluster, "kubernetes-admin", &[CLUSTER_ADMINS_GROUP]),
            server: cpe.clone(),
        },
        KubeconfigSpec {
            file: "super-admin.conf",
            profile: client(
                CaKind::Cluster,
                "kubernetes-super-admin",
                &[SYSTEM_MASTERS_GROUP],
            ),
            server: cpe.clone(),
        },
        KubeconfigSpec {
            file: "controller-manager.conf",
            profile: client(CaKind::Cluster, "system:kube-controller-manager", &[]),
            server: local.clone(),
        },
        KubeconfigSpec {
            file: "scheduler.conf",
            profile: client(CaKind::Cluster, "system:kube-scheduler", &[]),
            server: local,
        },
        KubeconfigSpec {
            file: "kubelet.conf",
            profile: client(CaKind::Cluster, &node_user, &["system:nodes"]),
            server: cpe,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm's `TestGetAPIServerAltNames` vector, expressed as a cluster description.
    #[test]
    fn kubeadm_apiserver_san_vector() {
        let c = Cluster::from_yaml(
            "kubernetesVersion: v1.31.0\ncontrolPlaneEndpoint: api.k8s.io:6443\n\
             loadBalancer: {vip: 10.0.0.100}\n\
             masters: [{name: valid-hostname, address: 1.2.3.4}]\n\
             networking: {serviceSubnet: 10.96.0.0/12}\n\
             pki: {certSANs: [10.1.245.94, 10.1.245.95]}\n",
        )
        .unwrap();
        let sans = apiserver_sans(&c, &c.masters[0]);
        let dns: Vec<&str> = sans.dns.iter().map(String::as_str).collect();
        assert_eq!(
            dns,
            [
                "api.k8s.io",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "valid-hostname",
            ]
        );
        let ips: Vec<String> = sans.ips.iter().map(ToString::to_string).collect();
        // kubeadm's expected IPs, plus the VIP that our schema adds right after the CPE host.
        assert_eq!(
            ips,
            [
                "10.96.0.1",
                "1.2.3.4",
                "10.0.0.100",
                "10.1.245.94",
                "10.1.245.95"
            ]
        );
    }

    /// kubeadm's `TestGetEtcdAltNames` base entries.
    #[test]
    fn etcd_san_vector() {
        let s = etcd_sans("myNode".to_lowercase().as_str(), "1.2.3.4".parse().unwrap());
        let all: Vec<String> = s.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            all,
            [
                "DNS:localhost",
                "DNS:mynode",
                "IP:1.2.3.4",
                "IP:127.0.0.1",
                "IP:::1"
            ]
        );
    }

    #[test]
    fn lb_addresses_and_vip_dedup() {
        let c = Cluster::from_yaml(include_str!("../../config/cluster.yaml")).unwrap();
        let s = apiserver_sans(&c, &c.masters[2]);
        let ips: Vec<String> = s.ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            ips,
            [
                "10.96.0.1",
                "10.0.0.13",
                "10.0.0.100",
                "10.0.0.5",
                "10.0.0.6"
            ]
        );
        assert!(s.dns.contains("k8s-api.example.internal"));
        assert!(s.dns.contains("master-3.example.internal"));
        assert!(
            !apiserver_sans(&c, &c.masters[0])
                .dns
                .contains("master-3.example.internal")
        );
    }
}
