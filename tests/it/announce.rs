//! Route announcement (`announce:`) in a network namespace the test creates: routes added,
//! deleted and cleaned up after a crash (checked with `ip -n NS route show table 100`), the
//! routes following the backends going down and up, SIGHUP changing `addresses` live, the
//! SIGTERM order (route gone while the listener still serves, then the drain), `apilb
//! announce --withdraw` as the unit's ExecStopPost runs it, and the host-check errors.
//!
//! Run: `sudo APILB_REQUIRE_PRIVILEGED=1 cargo test --test it announce`. Without root the
//! tests print why they skip; with APILB_REQUIRE_PRIVILEGED=1 they fail instead.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::netns::{Lab, http_get_in, in_ns, metric, poll, reaches};
use crate::support::{LbProcess, promtool_clean, repo_path};

const PORT: u16 = 6443;
const ADMIN: &str = "127.0.0.1:9441";
const LIMIT: Duration = Duration::from_secs(10);
/// The VIPs: in eth0's subnet (10.251.0.0/24), so the ARP sysctls matter.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 101);

fn admin() -> SocketAddr {
    ADMIN.parse().expect("addr")
}

/// A stand-in backend inside a namespace: sends "ok\n" to each connection until stopped
/// (its listening socket is then closed, so TCP checks fail); can be started again.
struct Standin {
    ns: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Standin {
    fn start(ns: &str, addr: SocketAddr) -> Standin {
        let mut s = Standin {
            ns: ns.to_owned(),
            addr,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        s.up();
        s
    }

    fn up(&mut self) {
        self.stop = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let listener = in_ns(&self.ns, move || {
            TcpListener::bind(addr).expect("bind stand-in")
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::clone(&self.stop);
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = std::io::Write::write_all(&mut s, b"ok\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    fn down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("stand-in thread");
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.down();
    }
}

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sysctl(ns: &str, name: &str, value: &str) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{name}={value}"),
        ])
        .output()
        .expect("run sysctl");
    assert!(out.status.success(), "sysctl {name}: {out:?}");
}

/// `ip -n NS route show table 100`, one route per line (empty while the kernel has no
/// such table: no route was ever added to it).
fn table(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", "table", "100"])
        .output()
        .expect("run ip");
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("FIB table does not exist") {
        return String::new();
    }
    assert!(out.status.success(), "ip route show table 100: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn announced(ns: &str, vip: Ipv4Addr) -> bool {
    table(ns)
        .lines()
        .any(|l| l.trim() == format!("{vip} dev lo proto 248 scope link"))
}

/// A node config: listen on the VIP, TCP checks of the stand-in every 100 ms (one failure
/// marks it down, one success up), `addresses` announced from lo with a 300 ms hold.
fn lb_yaml(backend: SocketAddr, addresses: &[Ipv4Addr], withdraw_delay: &str) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}/32\"")).collect();
    format!(
        "listen: [\"0.0.0.0:{PORT}\"]\nbackends: [{{name: b, address: \"{backend}\"}}]\n\
         health: {{kind: tcp, interval: 100ms, fastInterval: 100ms, timeout: 100ms, rise: 1, fall: 1}}\n\
         metrics: {{listen: \"{ADMIN}\"}}\ntimeouts: {{drain: 1s}}\n\
         announce:\n  addresses: [{}]\n  table: 100\n  protocol: 248\n  hold: 300ms\n  withdrawDelay: {withdraw_delay}\n",
        list.join(", ")
    )
}

/// One node with the ARP sysctls set and a stand-in backend on its loopback.
fn node(tag: &str) -> Option<(Lab, Standin)> {
    let lab = Lab::with_nodes(tag, 1)?;
    let ns = lab.ns(1);
    sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "1");
    sysctl(&ns, "net.ipv4.conf.all.arp_announce", "2");
    let backend = Standin::start(&ns, SocketAddr::from(([127, 0, 0, 1], 7001)));
    Some((lab, backend))
}

fn metrics(ns: &str) -> String {
    http_get_in(ns, admin(), "/metrics")
}

fn exit(lb: &mut LbProcess, sig: Signal) -> Option<i32> {
    lb.signal(sig);
    poll(LIMIT, "apilb exits", || {
        lb.child.try_wait().expect("wait").is_some()
    });
    lb.child.try_wait().expect("wait").and_then(|s| s.code())
}

/// A stale route of ours (a crash) is removed at start and a foreign one in the same table
/// is left; the route comes when the backend is Up for the hold, goes at once when it goes
/// down, comes back when it returns; metrics and /status follow.
#[test]
fn routes_follow_the_backends_and_stale_ones_are_removed() {
    let Some((lab, mut backend)) = node("follow") else {
        return;
    };
    let ns = lab.ns(1);
    ip(
        &ns,
        &[
            "route",
            "add",
            "10.251.0.200/32",
            "dev",
            "lo",
            "table",
            "100",
            "proto",
            "248",
        ],
    );
    ip(
        &ns,
        &[
            "route",
            "add",
            "10.251.0.201/32",
            "dev",
            "lo",
            "table",
            "100",
            "proto",
            "static",
        ],
    );

    let mut lb = LbProcess::spawn_in_netns(&ns, &lb_yaml(backend.addr, &[VIP], "0s"));
    poll(LIMIT, "the VIP is announced", || announced(&ns, VIP));
    let t = table(&ns);
    assert!(!t.contains("10.251.0.200"), "stale route removed:\n{t}");
    assert!(
        t.contains("10.251.0.201 dev lo proto static"),
        "foreign route kept:\n{t}"
    );
    assert!(
        ip(&ns, &["-4", "addr", "show", "dev", "lo"]).contains(&format!("inet {VIP}/32")),
        "the VIP was added to lo"
    );
    assert!(
        lb.log().contains("removed routes an earlier run left"),
        "{}",
        lb.log()
    );
    let m = metrics(&ns);
    assert_eq!(
        metric(&m, &format!("apilb_announce_state{{address=\"{VIP}\"}}")),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            &format!("apilb_announce_transitions_total{{address=\"{VIP}\",reason=\"healthy\"}}")
        ),
        1.0
    );
    let status: apilb::admin::Status =
        serde_json::from_str(&http_get_in(&ns, admin(), "/status")).expect("status JSON");
    let a = status.announce.expect("announce in /status");
    assert_eq!(
        (a.state.as_str(), a.announced),
        ("announced", vec![VIP.to_string()])
    );
    assert_eq!((a.table, a.protocol, a.up), (100, 248, 1));

    promtool_clean(&m);

    backend.down();
    let gone = Instant::now();
    poll(LIMIT, "the route is withdrawn", || !announced(&ns, VIP));
    let m = metrics(&ns);
    assert_eq!(
        metric(&m, &format!("apilb_announce_state{{address=\"{VIP}\"}}")),
        0.0
    );
    assert_eq!(
        metric(
            &m,
            &format!("apilb_announce_transitions_total{{address=\"{VIP}\",reason=\"unhealthy\"}}")
        ),
        1.0
    );
    backend.up();
    let back = poll(LIMIT, "the route is announced again", || {
        announced(&ns, VIP)
    });
    assert!(
        back >= Duration::from_millis(300),
        "announced again only after the 300 ms hold, took {back:?} ({:?} since down)",
        gone.elapsed()
    );
    assert_eq!(exit(&mut lb, Signal::SIGTERM), Some(0));
    let t = table(&ns);
    assert!(!t.contains(&VIP.to_string()), "withdrawn on stop:\n{t}");
    assert!(t.contains("10.251.0.201"), "foreign route kept:\n{t}");
    assert_eq!(lb.log_count("announce: route added"), 2, "{}", lb.log());
}

/// SIGHUP adds an address (its route and its place on lo) and removes one, live.
#[test]
fn sighup_changes_the_addresses_live() {
    let Some((lab, backend)) = node("reload") else {
        return;
    };
    let ns = lab.ns(1);
    let lb = LbProcess::spawn_in_netns(&ns, &lb_yaml(backend.addr, &[VIP], "0s"));
    poll(LIMIT, "the VIP is announced", || announced(&ns, VIP));

    lb.write_config(&lb_yaml(backend.addr, &[VIP, VIP2], "0s"));
    lb.signal(Signal::SIGHUP);
    poll(LIMIT, "the second VIP is announced", || {
        announced(&ns, VIP2)
    });
    assert!(announced(&ns, VIP));
    assert!(ip(&ns, &["-4", "addr", "show", "dev", "lo"]).contains(&format!("inet {VIP2}/32")));

    lb.write_config(&lb_yaml(backend.addr, &[VIP2], "0s"));
    lb.signal(Signal::SIGHUP);
    poll(LIMIT, "the first VIP is withdrawn", || !announced(&ns, VIP));
    assert!(announced(&ns, VIP2));
    let m = metrics(&ns);
    assert_eq!(
        metric(
            &m,
            &format!("apilb_announce_transitions_total{{address=\"{VIP}\",reason=\"reload\"}}")
        ),
        1.0
    );
    assert!(
        !m.contains(&format!("apilb_announce_state{{address=\"{VIP}\"}}")),
        "a removed address leaves no state series:\n{m}"
    );

    // A reload the host cannot take (the ARP sysctl is gone) keeps the running section.
    sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "0");
    lb.write_config(&lb_yaml(backend.addr, &[VIP], "0s"));
    lb.signal(Signal::SIGHUP);
    poll(LIMIT, "the reload fails", || {
        lb.log().contains("reload failed")
    });
    assert!(
        lb.log().contains("net.ipv4.conf.all.arp_ignore=1 (now 0)"),
        "{}",
        lb.log()
    );
    assert!(announced(&ns, VIP2) && !announced(&ns, VIP));
}

/// SIGTERM deletes the route first; during `withdrawDelay` the listener still serves new
/// connections; only then does it close.
#[test]
fn sigterm_withdraws_before_the_listener_closes() {
    let Some((lab, backend)) = node("term") else {
        return;
    };
    let ns = lab.ns(1);
    let mut lb = LbProcess::spawn_in_netns(&ns, &lb_yaml(backend.addr, &[VIP], "1s"));
    let vip = SocketAddr::from((VIP, PORT));
    poll(LIMIT, "the VIP is announced", || announced(&ns, VIP));
    assert!(reaches(&ns, vip));

    lb.signal(Signal::SIGTERM);
    // Observations in order: when the route was first seen gone, whether a new connection
    // was served after that, and when the listener was first seen closed.
    let start = Instant::now();
    let (mut route_gone, mut served_after, mut closed) = (None, false, None);
    while closed.is_none() && start.elapsed() < LIMIT {
        let present = announced(&ns, VIP);
        let serves = reaches(&ns, vip);
        match (route_gone, present, serves) {
            (None, true, false) => panic!("the listener closed while the route was still there"),
            (None, false, _) => {
                route_gone = Some(start.elapsed());
                served_after = serves;
            }
            (Some(_), _, true) => served_after = true,
            (Some(_), _, false) => closed = Some(start.elapsed()),
            (None, true, true) => {}
        }
    }
    let (route_gone, closed) = (
        route_gone.expect("the route went"),
        closed.expect("the listener closed"),
    );
    assert!(
        served_after,
        "a new connection was served after the route went"
    );
    assert!(
        closed - route_gone >= Duration::from_millis(700),
        "the listener stayed open for about withdrawDelay after the route went: route gone at {route_gone:?}, closed at {closed:?}"
    );
    poll(LIMIT, "apilb exits", || {
        lb.child.try_wait().expect("wait").is_some()
    });
    let log = lb.log();
    let withdrawn = log
        .find("shutting down: routes withdrawn first")
        .expect("withdraw line");
    let draining = log.find("shutting down: draining").expect("drain line");
    assert!(withdrawn < draining, "{log}");
    assert!(
        log.contains("reason=\"shutdown\"") || log.contains("reason=shutdown"),
        "{log}"
    );
}

/// After kill -9 the route stays; the unit's ExecStopPost (`apilb announce --withdraw`)
/// deletes it, and does nothing (successfully) when there is nothing to delete.
#[test]
fn exec_stop_post_withdraws_after_a_crash() {
    let Some((lab, backend)) = node("crash") else {
        return;
    };
    let ns = lab.ns(1);
    let mut lb = LbProcess::spawn_in_netns(&ns, &lb_yaml(backend.addr, &[VIP], "0s"));
    poll(LIMIT, "the VIP is announced", || announced(&ns, VIP));
    exit(&mut lb, Signal::SIGKILL);
    assert!(announced(&ns, VIP), "a crash leaves the route");

    let unit = std::fs::read_to_string(repo_path("deploy/apilb.service")).expect("unit");
    let line = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStopPost=-"))
        .find(|l| l.contains(" announce --withdraw"))
        .expect("an ExecStopPost line running apilb announce --withdraw");
    let args: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == "/etc/apilb/apilb.yaml" {
                lb.config.display().to_string()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let run = || {
        lab.command(1, env!("CARGO_BIN_EXE_apilb"))
            .args(&args)
            .output()
            .expect("run apilb announce")
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "withdrew 1 route(s) from table 100 proto 248\n"
    );
    assert!(!announced(&ns, VIP));
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "withdrew 0 route(s) from table 100 proto 248\n"
    );
}

/// The host checks refuse before anything is bound, exit 64, and name what to change:
/// the ARP sysctls, IPv6 disabled, a missing interface, a missing capability.
#[test]
fn host_check_errors_name_the_sysctl_or_capability() {
    let Some(lab) = Lab::with_nodes("hostchk", 1) else {
        return;
    };
    let ns = lab.ns(1);
    sysctl(&ns, "net.ipv6.conf.lo.disable_ipv6", "1");
    let backend = SocketAddr::from(([127, 0, 0, 1], 7001));
    let run = |yaml: &str, wrap: Option<&[&str]>| -> (Option<i32>, String) {
        let mut lb = LbProcess::spawn_in_netns_with(&ns, yaml, |cmd| {
            if let Some(wrap) = wrap {
                // ip netns exec NS WRAP... apilb serve ...
                let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
                let mut c = Command::new("ip");
                c.args(&args[..3]).args(wrap).args(&args[3..]);
                c.env("RUST_LOG", "info")
                    .env("NO_COLOR", "1")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                *cmd = c;
            }
        });
        poll(LIMIT, "apilb exits", || {
            lb.child.try_wait().expect("wait").is_some()
        });
        let code = lb.child.try_wait().expect("wait").and_then(|s| s.code());
        // The stderr reader has the last lines once the pipe closes.
        std::thread::sleep(Duration::from_millis(100));
        (code, lb.log())
    };
    let yaml = format!(
        "listen: [\"127.0.0.1:{PORT}\"]\nbackends: [{{name: b, address: \"{backend}\"}}]\nannounce: {{addresses: [\"{VIP}/32\", \"fd00::100/128\"]}}\n"
    );
    let (code, log) = run(&yaml, None);
    assert_eq!(code, Some(64), "{log}");
    for want in [
        "announce (on lo): 10.251.0.100 on lo is in eth0's subnet (10.251.0.11/24), so eth0 would answer ARP for it: set net.ipv4.conf.all.arp_ignore=1 (now 0)",
        "set net.ipv4.conf.all.arp_announce=2 (now 0)",
        "fd00::100 cannot be added to lo: net.ipv6.conf.lo.disable_ipv6 is 1 (set it to 0)",
    ] {
        assert!(log.contains(want), "{want}\n{log}");
    }
    assert!(!log.contains("listening"), "nothing was bound: {log}");

    let yaml = format!(
        "listen: [\"127.0.0.1:{PORT}\"]\nbackends: [{{name: b, address: \"{backend}\"}}]\nannounce: {{addresses: [\"192.0.2.100/32\"], interface: apilbnope0}}\n"
    );
    let (code, log) = run(&yaml, None);
    assert_eq!(code, Some(64), "{log}");
    assert!(
        log.contains("announce.interface: interface \"apilbnope0\" does not exist"),
        "{log}"
    );

    let yaml = format!(
        "listen: [\"127.0.0.1:{PORT}\"]\nbackends: [{{name: b, address: \"{backend}\"}}]\nannounce: {{addresses: [\"192.0.2.100/32\"]}}\n"
    );
    if crate::support::have_tool("setpriv", "util-linux") {
        let (code, log) = run(
            &yaml,
            Some(&[
                "setpriv",
                "--bounding-set=-net_admin",
                "--inh-caps=-net_admin",
            ]),
        );
        assert_eq!(code, Some(64), "{log}");
        assert!(
            log.contains("writing routes needs the capability CAP_NET_ADMIN, which this process does not have"),
            "{log}"
        );
    }
}
