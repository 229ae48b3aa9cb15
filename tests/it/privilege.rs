//! Least privilege (issue 16): a running `apilb serve` keeps only the capabilities its
//! config needs, in every thread and every set, read from `/proc/PID/task/*/status`; and it
//! serves when started as `nobody`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::netns::{Lab, VIP, node_ip, poll, reaches, tag_server};
use crate::support::{
    EchoBackend, LbProcess, connect_tagged, free_port, lb_yaml, skip_or_fail, wait_listening,
};

const NET_BIND_SERVICE: u64 = 1 << 10;
const NET_ADMIN: u64 = 1 << 12;
const NET_RAW: u64 = 1 << 13;

/// Capability masks of one thread.
#[derive(Debug, PartialEq, Eq)]
struct Caps {
    eff: u64,
    prm: u64,
    inh: u64,
    bnd: u64,
    amb: u64,
    no_new_privs: bool,
}

/// Every thread of process `pid`.
fn thread_caps(pid: u32) -> Vec<Caps> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let path = entry.expect("entry").path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue; // the thread ended
        };
        let mask = |f: &str| apilb::privilege::status_mask(&status, f).expect(f);
        out.push(Caps {
            eff: mask("CapEff:"),
            prm: mask("CapPrm:"),
            inh: mask("CapInh:"),
            bnd: mask("CapBnd:"),
            amb: mask("CapAmb:"),
            no_new_privs: status.contains("NoNewPrivs:\t1"),
        });
    }
    assert!(!out.is_empty());
    out
}

/// Every thread holds exactly `keep` in effective, permitted and bounding, nothing
/// inheritable or ambient, and has no_new_privs.
fn assert_only(pid: u32, keep: u64) {
    let want = Caps {
        eff: keep,
        prm: keep,
        inh: 0,
        bnd: keep,
        amb: 0,
        no_new_privs: true,
    };
    let threads = thread_caps(pid);
    assert!(
        threads.iter().all(|c| *c == want),
        "want {want:x?} in every thread, got {threads:x?}"
    );
}

fn root(what: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return true;
    }
    skip_or_fail(&format!(
        "{what} needs root (to start apilb with every capability)"
    ));
    false
}

#[tokio::test]
async fn a_plain_high_port_proxy_keeps_no_capability_even_as_root() {
    if !root("dropping every capability") {
        return;
    }
    let backend = EchoBackend::start("a").await;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = LbProcess::spawn(&lb_yaml(
        &[listen],
        &[("a", backend.addr)],
        &format!("metrics: {{listen: \"{metrics}\"}}\n"),
    ));
    lb.wait_for_log("capabilities dropped").await;
    assert!(lb.log().contains("kept=none"), "{}", lb.log());
    assert_only(lb.child.id(), 0);
    // And it still serves.
    let (_s, tag) = connect_tagged(listen).await;
    assert_eq!(tag, "a");
    wait_listening(metrics).await;
}

/// A free port below 1024 on 127.0.0.1.
fn free_low_port() -> u16 {
    (600..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

#[tokio::test]
async fn a_port_below_1024_keeps_only_net_bind_service_and_reloads_onto_another() {
    if !root("binding a port below 1024") {
        return;
    }
    let backend = EchoBackend::start("a").await;
    let low = SocketAddr::from(([127, 0, 0, 1], free_low_port()));
    let lb = LbProcess::spawn(&lb_yaml(&[low], &[("a", backend.addr)], ""));
    lb.wait_for_log("capabilities dropped").await;
    assert_only(lb.child.id(), NET_BIND_SERVICE);
    // The kept capability is what a reload onto another low port needs.
    let other = SocketAddr::from((
        [127, 0, 0, 1],
        (low.port() + 1..1024)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("another free low port"),
    ));
    lb.write_config(&lb_yaml(&[other], &[("a", backend.addr)], ""));
    lb.signal(nix::sys::signal::Signal::SIGHUP);
    lb.wait_for_log("config reloaded").await;
    let (_s, tag) = connect_tagged(other).await;
    assert_eq!(tag, "a");
    assert_only(lb.child.id(), NET_BIND_SERVICE);
}

#[test]
fn vip_keeps_net_raw_and_net_admin_only() {
    let Some(lab) = Lab::new("caps") else {
        return;
    };
    let vip = VIP;
    tag_server(&lab.ns(3), SocketAddr::from((node_ip(3), 7000)));
    let yaml = format!(
        "listen: [\"{vip}:6443\"]\nbackends: [{{name: b, address: \"{}:7000\"}}]\n\
         vip:\n  interface: eth0\n  vrid: 51\n  addresses: [\"{vip}/24\"]\n  priority: 200\n  advertInterval: 100ms\n",
        node_ip(3)
    );
    let lb = LbProcess::spawn_in_netns(&lab.ns(1), &yaml);
    poll(
        Duration::from_secs(10),
        "apilb dropped its capabilities",
        || lb.log().contains("capabilities dropped"),
    );
    assert_only(lb.child.id(), NET_RAW | NET_ADMIN);
    // With only those it still takes the VIP (netlink) and answers there (raw adverts).
    poll(Duration::from_secs(10), "the VIP serves", || {
        reaches(&lab.ns(3), SocketAddr::from((vip, 6443)))
    });
    assert_only(lb.child.id(), NET_RAW | NET_ADMIN);
}

#[tokio::test]
async fn it_serves_as_nobody_with_a_high_port_config() {
    if !root("switching to nobody") {
        return;
    }
    if !crate::support::have_tool("setpriv", "util-linux") {
        return;
    }
    let backend = EchoBackend::start("a").await;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let yaml = lb_yaml(
        &[listen],
        &[("a", backend.addr)],
        &format!("metrics: {{listen: \"{metrics}\"}}\n"),
    );
    let lb = LbProcess::spawn_with(&yaml, |cmd| {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        // The config must be readable by nobody.
        let config = args
            .iter()
            .skip_while(|a| *a != "--config")
            .nth(1)
            .expect("--config PATH");
        let config = std::path::Path::new(config);
        use std::os::unix::fs::PermissionsExt;
        let dir = config.parent().expect("config dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o644))
            .expect("chmod config");
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(program)
        .args(args);
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        *cmd = c;
    });
    lb.wait_for_log("capabilities dropped").await;
    let pid = lb.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(uid.split_whitespace().all(|u| u == "65534"), "Uid:{uid}");
    let threads = thread_caps(pid);
    assert!(
        threads
            .iter()
            .all(|c| c.eff == 0 && c.prm == 0 && c.amb == 0 && c.no_new_privs),
        "{threads:x?}"
    );
    let (_s, tag) = connect_tagged(listen).await;
    assert_eq!(tag, "a");
    let (code, body) = crate::support::http_get(metrics, "/status").await;
    assert_eq!(code, 200, "{body}");
}
