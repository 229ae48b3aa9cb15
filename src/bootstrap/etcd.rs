//! The static Pod manifest of an external etcd member (`DIR/<member>/manifests/etcd.yaml`),
//! as typed serde structs mirroring the subset of core/v1 `Pod` it uses (unknown fields are
//! denied on re-parse). The flags follow kubeadm's own etcd manifest: TLS with client
//! certificate authentication for clients and peers, every member in `--initial-cluster` by
//! its https peer URL, and plain-HTTP metrics on loopback port 2381 (127.0.0.1, or ::1 for an
//! IPv6 member) for the probes, which cannot present a client certificate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Node, https_url};

/// etcd client port.
pub const CLIENT_PORT: u16 = 2379;
/// etcd peer port.
pub const PEER_PORT: u16 = 2380;
/// Plain-HTTP metrics and health port on loopback (kubeadm's).
pub const METRICS_PORT: u16 = 2381;
/// The probe path: `/health` that ignores an alarm-free NOSPACE and answers from the local
/// member (kubeadm's etcd probe before the 3.5.13 `/livez`; also answered by etcd 3.4).
pub const PROBE_PATH: &str = "/health?exclude=NOSPACE&serializable=true";
/// The etcd image: the version kubeadm 1.31.0 deploys.
pub const IMAGE: &str = "registry.k8s.io/etcd:3.5.15-0";
/// Where the member's certificates live on the host.
pub const PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
/// Where the member keeps its data on the host.
pub const DATA_DIR: &str = "/var/lib/etcd";

/// A Pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    /// `v1`.
    pub api_version: String,
    /// `Pod`.
    pub kind: String,
    /// Name, namespace, labels, annotations.
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: PodSpec,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// `etcd`.
    pub name: String,
    /// `kube-system`.
    pub namespace: String,
    /// `component: etcd`, `tier: control-plane`.
    pub labels: BTreeMap<String, String>,
    /// kubeadm's advertise-client-urls annotation.
    pub annotations: BTreeMap<String, String>,
}

/// `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// The etcd container.
    pub containers: Vec<Container>,
    /// etcd listens on the host's addresses.
    pub host_network: bool,
    /// `system-node-critical`.
    pub priority_class_name: String,
    /// `seccompProfile: RuntimeDefault`.
    pub security_context: PodSecurityContext,
    /// Data and certificate host paths.
    pub volumes: Vec<Volume>,
}

/// `spec.securityContext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSecurityContext {
    /// The seccomp profile.
    pub seccomp_profile: SeccompProfile,
}

/// `seccompProfile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompProfile {
    /// `RuntimeDefault`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// A container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// `etcd`.
    pub name: String,
    /// The image.
    pub image: String,
    /// `IfNotPresent`.
    pub image_pull_policy: String,
    /// `etcd --flag=value …`.
    pub command: Vec<String>,
    /// Requests.
    pub resources: Resources,
    /// Restarts a hung member.
    pub liveness_probe: Probe,
    /// Gives a starting member time to catch up.
    pub startup_probe: Probe,
    /// Data and certificates.
    pub volume_mounts: Vec<VolumeMount>,
}

/// `resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// `cpu`, `memory`.
    pub requests: BTreeMap<String, String>,
}

/// A probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// The HTTP check.
    pub http_get: HttpGet,
    /// Seconds before the first check.
    pub initial_delay_seconds: u32,
    /// Seconds between checks.
    pub period_seconds: u32,
    /// Seconds a check may take.
    pub timeout_seconds: u32,
    /// Failures in a row that count.
    pub failure_threshold: u32,
}

/// `httpGet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGet {
    /// `127.0.0.1`.
    pub host: String,
    /// [`PROBE_PATH`].
    pub path: String,
    /// [`METRICS_PORT`].
    pub port: u16,
    /// `HTTP`.
    pub scheme: String,
}

/// `volumeMounts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// Volume name.
    pub name: String,
    /// Path in the container.
    pub mount_path: String,
}

/// `volumes[]` (host paths only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// The host path.
    pub host_path: HostPath,
}

/// `hostPath`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPath {
    /// Path on the host.
    pub path: String,
    /// `DirectoryOrCreate`.
    #[serde(rename = "type")]
    pub type_: String,
}

fn http_url(ip: std::net::IpAddr, port: u16) -> String {
    https_url(ip, port).replacen("https://", "http://", 1)
}

/// The `--initial-cluster` value: every member by its https peer URL.
pub fn initial_cluster(c: &Cluster) -> String {
    c.etcd_members()
        .iter()
        .map(|m| format!("{}={}", m.name, https_url(m.address, PEER_PORT)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The loopback address of `member`'s family (kubeadm's choice for the local listeners).
pub fn loopback(member: &Node) -> std::net::IpAddr {
    if member.address.is_ipv6() {
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    } else {
        std::net::IpAddr::from([127, 0, 0, 1])
    }
}

/// The etcd command line of `member`, as in its manifest.
pub fn command(c: &Cluster, member: &Node) -> Vec<String> {
    let loopback = loopback(member);
    let client = https_url(member.address, CLIENT_PORT);
    let peer = https_url(member.address, PEER_PORT);
    let flags: Vec<(&str, String)> = vec![
        ("name", member.name.clone()),
        ("data-dir", DATA_DIR.into()),
        (
            "listen-client-urls",
            format!("{},{client}", https_url(loopback, CLIENT_PORT)),
        ),
        ("advertise-client-urls", client),
        ("listen-peer-urls", peer.clone()),
        ("initial-advertise-peer-urls", peer),
        ("initial-cluster", initial_cluster(c)),
        ("initial-cluster-state", "new".into()),
        ("initial-cluster-token", format!("{}-etcd", c.name)),
        ("listen-metrics-urls", http_url(loopback, METRICS_PORT)),
        ("cert-file", format!("{PKI_DIR}/server.crt")),
        ("key-file", format!("{PKI_DIR}/server.key")),
        ("client-cert-auth", "true".into()),
        ("trusted-ca-file", format!("{PKI_DIR}/ca.crt")),
        ("peer-cert-file", format!("{PKI_DIR}/peer.crt")),
        ("peer-key-file", format!("{PKI_DIR}/peer.key")),
        ("peer-client-cert-auth", "true".into()),
        ("peer-trusted-ca-file", format!("{PKI_DIR}/ca.crt")),
        ("snapshot-count", "10000".into()),
    ];
    std::iter::once("etcd".to_owned())
        .chain(flags.into_iter().map(|(k, v)| format!("--{k}={v}")))
        .collect()
}

fn probe(member: &Node, initial_delay_seconds: u32, failure_threshold: u32) -> Probe {
    Probe {
        http_get: HttpGet {
            host: loopback(member).to_string(),
            path: PROBE_PATH.into(),
            port: METRICS_PORT,
            scheme: "HTTP".into(),
        },
        initial_delay_seconds,
        period_seconds: 10,
        timeout_seconds: 15,
        failure_threshold,
    }
}

/// The static Pod of `member`.
pub fn manifest(c: &Cluster, member: &Node) -> Pod {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let client = https_url(member.address, CLIENT_PORT);
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            name: "etcd".into(),
            namespace: "kube-system".into(),
            labels: map(&[("component", "etcd"), ("tier", "control-plane")]),
            annotations: map(&[("kubeadm.kubernetes.io/etcd.advertise-client-urls", &client)]),
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "etcd".into(),
                image: IMAGE.into(),
                image_pull_policy: "IfNotPresent".into(),
                command: command(c, member),
                resources: Resources {
                    requests: map(&[("cpu", "100m"), ("memory", "100Mi")]),
                },
                liveness_probe: probe(member, 10, 8),
                startup_probe: probe(member, 10, 24),
                volume_mounts: vec![
                    VolumeMount {
                        name: "etcd-data".into(),
                        mount_path: DATA_DIR.into(),
                    },
                    VolumeMount {
                        name: "etcd-certs".into(),
                        mount_path: PKI_DIR.into(),
                    },
                ],
            }],
            host_network: true,
            priority_class_name: "system-node-critical".into(),
            security_context: PodSecurityContext {
                seccomp_profile: SeccompProfile {
                    type_: "RuntimeDefault".into(),
                },
            },
            volumes: vec![
                Volume {
                    name: "etcd-certs".into(),
                    host_path: HostPath {
                        path: PKI_DIR.into(),
                        type_: "DirectoryOrCreate".into(),
                    },
                },
                Volume {
                    name: "etcd-data".into(),
                    host_path: HostPath {
                        path: DATA_DIR.into(),
                        type_: "DirectoryOrCreate".into(),
                    },
                },
            ],
        },
    }
}

/// Parse a manifest strictly (unknown fields denied).
pub fn parse(text: &str) -> Result<Pod, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(a: &str, b: &str) -> Cluster {
        let text = include_str!("../../config/cluster.yaml").replace(
            "  topology: stacked                # stacked | external",
            &format!("  topology: external\n  members: [{{name: e1, address: \"{a}\"}}, {{name: e2, address: \"{b}\"}}]"),
        );
        Cluster::from_yaml(&text).unwrap()
    }

    #[test]
    fn flags_and_probes_follow_the_member_family() {
        let c = cluster("fd00::21", "10.0.0.22");
        let [v6, v4] = c.etcd_members() else {
            panic!("two members")
        };
        let cmd = command(&c, v6);
        assert!(
            cmd.contains(
                &"--listen-client-urls=https://[::1]:2379,https://[fd00::21]:2379".to_owned()
            ),
            "{cmd:?}"
        );
        assert!(
            cmd.contains(
                &"--initial-cluster=e1=https://[fd00::21]:2380,e2=https://10.0.0.22:2380"
                    .to_owned()
            ),
            "{cmd:?}"
        );
        assert_eq!(
            manifest(&c, v6).spec.containers[0]
                .liveness_probe
                .http_get
                .host,
            "::1"
        );
        assert_eq!(
            manifest(&c, v4).spec.containers[0]
                .startup_probe
                .http_get
                .host,
            "127.0.0.1"
        );
        let text = serde_yaml::to_string(&manifest(&c, v4)).unwrap();
        assert_eq!(parse(&text).unwrap(), manifest(&c, v4));
        assert!(parse(&text.replace("hostNetwork:", "hostPID: true\n  hostNetwork:")).is_err());
    }
}
