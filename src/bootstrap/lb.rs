//! The LB host files: `apilb.yaml` (the `apilb serve` config, from typed Serialize structs;
//! the test re-parses it with [`crate::config::Config::from_yaml`]) and `apilb.service`
//! (the systemd unit, the reference copy in `deploy/apilb.service`).
//!
//! The VIP section is not written yet: when `config` gains `vip:`, it is one more field of
//! [`LbConfig`] filled from `loadBalancer.vip` and the host's place in `loadBalancer.hosts`.

use serde::Serialize;

use crate::cluster::{Cluster, DEFAULT_API_SERVER_PORT, Endpoint, San};
use crate::pki::spec::HEALTH_CLIENT_BASE;

/// Where the LB config lives on an LB host.
pub const CONFIG_PATH: &str = "/etc/apilb/apilb.yaml";
/// Where `DIR/<lb-host>/pki/` goes on an LB host.
pub const PKI_DIR: &str = "/etc/apilb/pki";
/// The metrics and admin endpoint (what `apilb status` talks to by default).
pub const METRICS_LISTEN: &str = crate::config::DEFAULT_METRICS_ADDRESS;
/// The systemd unit (also `deploy/apilb.service`).
pub const SYSTEMD_UNIT: &str = include_str!("../../deploy/apilb.service");

/// The subset of the LB config that bootstrap sets; everything else keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LbConfig {
    /// `VIP:port` (one per VIP family).
    pub listen: Vec<String>,
    /// One per master, its apiserver port.
    pub backends: Vec<Backend>,
    /// Long-lived watches: least connections.
    pub balance: String,
    /// `freebind`, so a backup host can bind the VIP before it holds it.
    pub listener: Listener,
    /// https `/readyz` checks with the health-client certificate.
    pub health: Health,
    /// Metrics, status and backend admin on loopback.
    pub metrics: Metrics,
    /// VRRP for the VIP, when the cluster description has `loadBalancer.vrrp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<Vip>,
}

/// `vip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vip {
    /// The interface on the VIP's subnet.
    pub interface: String,
    /// Same on every LB host.
    pub vrid: u8,
    /// `VIP/prefix`, one per family.
    pub addresses: Vec<String>,
    /// The first LB host listed is preferred: 150, then 140, 130... (at least 60).
    pub priority: u8,
    /// From the cluster description.
    pub advert_interval: String,
    /// Lower the priority when this host's proxy has no healthy backend.
    pub track: Track,
}

/// `vip.track`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Track {
    /// 1: with no backend up, this host gives the VIP to a healthier one.
    pub healthy_backends_below: u32,
    /// 100: 150 drops to 50, under every healthy backup.
    pub weight: u32,
}

/// Priority of the LB host at `index` in `loadBalancer.hosts`.
fn priority(index: usize) -> u8 {
    let p = 150usize.saturating_sub(10 * index).max(60);
    u8::try_from(p).unwrap_or(60)
}

/// `backends[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// The master's name.
    pub name: String,
    /// `address:6443`.
    pub address: String,
}

/// `listener`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// IP_FREEBIND.
    pub freebind: bool,
}

/// `health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `https`.
    pub kind: String,
    /// `/readyz`.
    pub path: String,
    /// `/livez`: failing readyz with passing livez drains (apiserver shutdown delay).
    pub live_path: String,
    /// `close`: clients of a dead apiserver reconnect at once.
    pub on_down: String,
    /// CA and client certificate.
    pub tls: HealthTls,
}

/// `health.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthTls {
    /// The cluster CA.
    pub ca: String,
    /// The `apilb-health` client certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
}

/// `metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// `127.0.0.1:9441`.
    pub listen: String,
    /// Certificates whose expiry is exported.
    pub watch_certificates: Vec<String>,
}

/// The LB config of the LB host at `index` in `loadBalancer.hosts` (all listen on the VIP;
/// with VRRP they differ only in priority).
pub fn config(c: &Cluster, index: usize) -> LbConfig {
    let pki = |f: &str| format!("{PKI_DIR}/{f}");
    let port = c.control_plane_endpoint.port;
    LbConfig {
        listen: c
            .load_balancer
            .vips
            .iter()
            .map(|v| {
                Endpoint {
                    host: San::Ip(*v),
                    port,
                }
                .to_string()
            })
            .collect(),
        backends: c
            .masters
            .iter()
            .map(|m| Backend {
                name: m.name.clone(),
                address: Endpoint {
                    host: San::Ip(m.address),
                    port: DEFAULT_API_SERVER_PORT,
                }
                .to_string(),
            })
            .collect(),
        balance: "least-connections".into(),
        listener: Listener { freebind: true },
        health: Health {
            kind: "https".into(),
            path: "/readyz".into(),
            live_path: "/livez".into(),
            on_down: "close".into(),
            tls: HealthTls {
                ca: pki("ca.crt"),
                cert: pki(&format!("{HEALTH_CLIENT_BASE}.crt")),
                key: pki(&format!("{HEALTH_CLIENT_BASE}.key")),
            },
        },
        metrics: Metrics {
            listen: METRICS_LISTEN.into(),
            watch_certificates: vec![pki("ca.crt"), pki(&format!("{HEALTH_CLIENT_BASE}.crt"))],
        },
        vip: c.load_balancer.vrrp.as_ref().map(|v| Vip {
            interface: v.interface.clone(),
            vrid: v.vrid,
            addresses: c
                .load_balancer
                .vips
                .iter()
                .map(|ip| {
                    let len = if ip.is_ipv4() { v.prefix_length } else { 64 };
                    format!("{ip}/{len}")
                })
                .collect(),
            priority: priority(index),
            advert_interval: v.advert_interval.clone(),
            track: Track {
                healthy_backends_below: 1,
                weight: 100,
            },
        }),
    }
}

/// The config as YAML.
pub fn to_yaml(cfg: &LbConfig) -> Result<String, String> {
    serde_yaml::to_string(cfg).map_err(|e| e.to_string())
}
