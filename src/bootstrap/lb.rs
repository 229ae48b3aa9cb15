//! The LB host files: `apilb.yaml` (the `apilb serve` config, written by serializing the
//! config module's own file type [`FileConfig`], so the LB schema exists once; bootstrap
//! re-parses it with [`crate::config::Config::from_yaml`] before writing) and
//! `apilb.service` (the systemd unit, the reference copy in `deploy/apilb.service`).

use crate::cluster::{Cluster, DEFAULT_API_SERVER_PORT, Endpoint, San};
use crate::config::raw::{
    FileConfig, RawAnnounce, RawAnnounceTrack, RawBackend, RawHealth, RawHealthTls, RawListener,
    RawMetrics, RawTrack, RawVip, Scalar,
};
use crate::config::{
    Balance, CheckKind, DEFAULT_ANNOUNCE_INTERFACE, DEFAULT_ANNOUNCE_PROTOCOL,
    DEFAULT_ANNOUNCE_TABLE, DEFAULT_CHECK_PATH, OnDown,
};
use crate::pki::spec::HEALTH_CLIENT_BASE;

/// Where the LB config lives on an LB host.
pub const CONFIG_PATH: &str = "/etc/apilb/apilb.yaml";
/// Where `DIR/<lb-host>/pki/` goes on an LB host.
pub const PKI_DIR: &str = "/etc/apilb/pki";
/// The metrics and admin endpoint (what `apilb status` talks to by default).
pub const METRICS_LISTEN: &str = crate::config::DEFAULT_METRICS_ADDRESS;
/// The systemd unit (also `deploy/apilb.service`).
pub const SYSTEMD_UNIT: &str = include_str!("../../deploy/apilb.service");

/// Priority of the LB host at `index` in `loadBalancer.hosts`.
fn priority(index: usize) -> u8 {
    let p = 150usize.saturating_sub(10 * index).max(60);
    u8::try_from(p).unwrap_or(60)
}

/// `vip.track.healthyBackendsBelow`: with no backend up, this host gives the VIP to a
/// healthier one.
const TRACK_BELOW: u32 = 1;
/// `vip.track.weight`: 150 drops to 50, under every healthy backup.
const TRACK_WEIGHT: u32 = 100;

/// The LB config of the LB host at `index` in `loadBalancer.hosts` (all listen on the VIP;
/// with VRRP they differ only in priority), as the config file's own type: listen on the
/// VIPs, the masters as backends, least connections, `freebind`, https `/readyz` checks
/// with the `apilb-health` client (`/livez` to tell a draining apiserver, `onDown: close`),
/// metrics on loopback, VRRP when the description has `loadBalancer.vrrp`, and the
/// `announce:` section when it has `loadBalancer.bgp` (the VIPs as host routes on `lo` in
/// the table and with the protocol that `bird.conf` learns, withdrawn with no backend up).
/// Everything else keeps its default and is not written.
pub fn config(c: &Cluster, index: usize) -> FileConfig {
    let pki = |f: &str| Scalar::from(format!("{PKI_DIR}/{f}"));
    let port = c.control_plane_endpoint.port;
    FileConfig {
        listen: c
            .load_balancer
            .vips
            .iter()
            .map(|v| {
                Scalar::from(
                    Endpoint {
                        host: San::Ip(*v),
                        port,
                    }
                    .to_string(),
                )
            })
            .collect(),
        backends: c
            .masters
            .iter()
            .map(|m| RawBackend {
                name: Some(Scalar::from(m.name.as_str())),
                address: Some(Scalar::from(
                    Endpoint {
                        host: San::Ip(m.address),
                        port: DEFAULT_API_SERVER_PORT,
                    }
                    .to_string(),
                )),
                ..RawBackend::default()
            })
            .collect(),
        balance: Some(Scalar::from(Balance::LeastConnections.as_str())),
        listener: RawListener {
            freebind: Some(Scalar::from(true)),
            ..RawListener::default()
        },
        health: Some(RawHealth {
            kind: Some(Scalar::from(CheckKind::Https.as_str())),
            path: Some(Scalar::from(DEFAULT_CHECK_PATH)),
            live_path: Some(Scalar::from("/livez")),
            on_down: Some(Scalar::from(OnDown::Close.as_str())),
            tls: Some(RawHealthTls {
                ca: Some(pki("ca.crt")),
                cert: Some(pki(&format!("{HEALTH_CLIENT_BASE}.crt"))),
                key: Some(pki(&format!("{HEALTH_CLIENT_BASE}.key"))),
                server_name: None,
            }),
            ..RawHealth::default()
        }),
        metrics: Some(RawMetrics {
            listen: Some(Scalar::from(METRICS_LISTEN)),
            admin: None,
            watch_certificates: vec![pki("ca.crt"), pki(&format!("{HEALTH_CLIENT_BASE}.crt"))],
            tls: None,
        }),
        vip: c.load_balancer.vrrp.as_ref().map(|v| RawVip {
            interface: Some(Scalar::from(v.interface.as_str())),
            vrid: Some(Scalar::from(v.vrid)),
            addresses: c
                .load_balancer
                .vips
                .iter()
                .map(|ip| {
                    let len = if ip.is_ipv4() { v.prefix_length } else { 64 };
                    Scalar::from(format!("{ip}/{len}"))
                })
                .collect(),
            priority: Some(Scalar::from(priority(index))),
            advert_interval: Some(Scalar::from(v.advert_interval.as_str())),
            track: Some(RawTrack {
                healthy_backends_below: Some(Scalar::from(TRACK_BELOW)),
                weight: Some(Scalar::from(TRACK_WEIGHT)),
                hold: None,
            }),
            ..RawVip::default()
        }),
        announce: c.load_balancer.bgp.as_ref().map(|_| RawAnnounce {
            addresses: c
                .load_balancer
                .vips
                .iter()
                .map(|ip| Scalar::from(format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })))
                .collect(),
            interface: Some(Scalar::from(DEFAULT_ANNOUNCE_INTERFACE)),
            table: Some(Scalar::from(DEFAULT_ANNOUNCE_TABLE)),
            protocol: Some(Scalar::from(DEFAULT_ANNOUNCE_PROTOCOL)),
            track: Some(RawAnnounceTrack {
                healthy_backends_below: Some(Scalar::from(TRACK_BELOW)),
            }),
            ..RawAnnounce::default()
        }),
        ..FileConfig::default()
    }
}

/// The config as YAML.
pub fn to_yaml(cfg: &FileConfig) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(cfg)
}
