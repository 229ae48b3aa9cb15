//! The BGP lab (issue 13): every LB host active, the VIP announced by BGP from each healthy
//! host through BIRD 2, the router spreading flows over them by ECMP.
//!
//! Eight namespaces on the lab bridge (`tests/support/netns.rs`): `lb-1`, `lb-2`, `lb-3`
//! (nodes 1, 2, 8) each run `apilb serve` with the `apilb.yaml` and BIRD with the
//! `bird.conf` that `apilb bootstrap` wrote from `loadBalancer.bgp` (the lab changes only
//! the PKI paths); `master-1..3` (nodes 3-5) run the stand-in apiservers; node 7 is the
//! router: BIRD 2 with one eBGP session and BFD per LB host, `merge paths on` (one multipath
//! route), IP forwarding and `fib_multipath_hash_policy=1` (L4 hash), ICMP redirects off;
//! node 6 is the client, whose route to the VIP (10.253.0.100, on no subnet) goes through the
//! router. The VIP sits on `lo` of every LB host (arp_ignore=1, arp_announce=2).
//!
//! Who writes the VIP route into kernel table 100 (proto 248) on an LB host:
//! - apilb itself (the `announce:` section), when this build has the runtime half
//!   (`apilb announce --withdraw` exists);
//! - otherwise a STAND-IN in this file ([`StandIn`]), clearly not apilb: a thread per host
//!   that polls apilb's `/status` every 50 ms, adds the route once at least one backend has
//!   been up for `hold` (2 s), deletes it when none is or apilb stops answering (the
//!   ExecStopPost equivalent after kill -9); on SIGTERM the lab deletes the route itself,
//!   waits `withdrawDelay` (2 s) and only then signals apilb. The table says which ran.
//!
//! Drills, each a row of the same table as the VRRP lab (`lab.rs`): 1 spread of 300 new
//! connections; 2 kill -9 apilb on lb-3; 5 lb-3 returns; 3 SIGTERM on lb-2 with
//! established connections on it; 4 every master unreachable from lb-1, then back.
//!
//! Run: `sudo benches/lab/run.sh bgp` or
//! `sudo APILB_REQUIRE_PRIVILEGED=1 cargo test --test it lab_bgp -- --nocapture`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustls::pki_types::ServerName;

use crate::lab::{
    ADMIN, AFTER, Drill, LIMIT, Load, NsProc, PORT, Row, bootstrap_with, client_tls, master_name,
    provenance, row, start_master, table, version, wait_for,
};
use crate::support::netns::{self, Lab, in_ns, node_ip};
use crate::support::{LbProcess, have_tool};

/// The LB hosts' nodes (lb-1, lb-2, lb-3).
const LBS: [u8; 3] = [1, 2, 8];
const CLIENT: u8 = 6;
const ROUTER: u8 = 7;
/// The VIP: on no subnet, reached only through the router.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 253, 0, 100);
const ROUTER_ASN: u32 = 65_000;
const LB_ASN: u32 = 65_010;
/// `announce.hold` and `announce.withdrawDelay` (bootstrap leaves the defaults).
const HOLD: Duration = apilb::config::DEFAULT_ANNOUNCE_HOLD;
const WITHDRAW_DELAY: Duration = apilb::config::DEFAULT_WITHDRAW_DELAY;
const TABLE: u32 = apilb::config::DEFAULT_ANNOUNCE_TABLE;
const PROTO: u8 = apilb::config::DEFAULT_ANNOUNCE_PROTOCOL;
/// New connections of drill 1, and the share each LB host must carry.
const SPREAD_CONNS: usize = 300;
const MIN_SHARE: f64 = 0.15;

fn target() -> SocketAddr {
    SocketAddr::from((VIP, PORT))
}

fn lb_name(k: usize) -> String {
    format!("lb-{}", k + 1)
}

fn cluster_yaml() -> String {
    let hosts: String = (0..3)
        .map(|k| {
            format!(
                "    - {{name: {}, address: {}}}\n",
                lb_name(k),
                node_ip(LBS[k])
            )
        })
        .collect();
    format!(
        "kubernetesVersion: v1.31.2\ncontrolPlaneEndpoint: {VIP}:{PORT}\nloadBalancer:\n  vip: {VIP}\n  hosts:\n{hosts}  bgp:\n    localAsn: {LB_ASN}\n    routers: [{{address: {}, asn: {ROUTER_ASN}}}]\nmasters:\n    - {{name: master-1, address: {}}}\n    - {{name: master-2, address: {}}}\n    - {{name: master-3, address: {}}}\npki: {{encryptionAlgorithm: ECDSA-P256}}\n",
        node_ip(ROUTER),
        node_ip(3),
        node_ip(4),
        node_ip(5),
    )
}

/// Run `ip ARGS` or `ip netns exec NS ...`; panics with its stderr on failure.
fn sh(program: &str, args: &[&str]) {
    let o = Command::new(program).args(args).output().expect("run");
    assert!(
        o.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn sysctl(lab: &Lab, node: u8, settings: &[&str]) {
    let ns = lab.ns(node);
    let mut args = vec!["netns", "exec", &ns, "sysctl", "-qw"];
    args.extend_from_slice(settings);
    sh("ip", &args);
}

/// The router's next hops for the VIP (`ip route show VIP`: one `nexthop via` line per
/// announcing host, or a single `via`).
fn next_hops(lab: &Lab) -> Vec<Ipv4Addr> {
    let o = Command::new("ip")
        .args(["-n", &lab.ns(ROUTER), "route", "show", &VIP.to_string()])
        .output()
        .expect("ip route show");
    let text = String::from_utf8_lossy(&o.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut hops: Vec<Ipv4Addr> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    hops.sort();
    hops
}

fn announcing(lab: &Lab, k: usize) -> bool {
    next_hops(lab).contains(&node_ip(LBS[k]))
}

fn route_text(lab: &Lab) -> String {
    let o = Command::new("ip")
        .args(["-n", &lab.ns(ROUTER), "route", "show", &VIP.to_string()])
        .output()
        .expect("ip route show");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A BIRD daemon in a namespace (`bird -f`), killed on drop.
struct Bird {
    child: Child,
}

impl Bird {
    fn start(lab: &Lab, node: u8, conf: &Path, dir: &Path) -> Bird {
        let o = Command::new("bird")
            .args(["-p", "-c"])
            .arg(conf)
            .output()
            .expect("bird -p");
        assert!(
            o.status.success(),
            "bird -p -c {}: {}",
            conf.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let sock = dir.join(format!("bird-n{node}.ctl"));
        let child = lab
            .command(node, "bird")
            .arg("-f")
            .arg("-c")
            .arg(conf)
            .arg("-s")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bird");
        Bird { child }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BIRD on the router: one eBGP session with BFD per LB host, importing only the VIP,
/// equal paths merged into one multipath kernel route.
fn router_conf() -> String {
    let mut s = format!(
        "router id {r};\nprotocol device {{}}\nprotocol kernel {{\n  merge paths on;\n  ipv4 {{ import none; export all; }};\n}}\n\
         protocol bfd {{ interface \"*\" {{ interval 100 ms; multiplier 3; }}; }}\n\
         template bgp lbs {{\n  local {r} as {ROUTER_ASN};\n  bfd on;\n  hold time 9;\n  graceful restart off;\n  ipv4 {{ import where net ~ [ {VIP}/32 ]; export none; }};\n}}\n",
        r = node_ip(ROUTER)
    );
    for (k, n) in LBS.iter().enumerate() {
        s.push_str(&format!(
            "protocol bgp lb{} from lbs {{ neighbor {} as {LB_ASN}; }}\n",
            k + 1,
            node_ip(*n)
        ));
    }
    s
}

/// apilb's `/status` in namespace `ns`, or `None` when it does not answer.
fn status_in(ns: &str) -> Option<serde_json::Value> {
    let addr: SocketAddr = ADMIN.parse().expect("admin addr");
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /status HTTP/1.1\r\nHost: apilb\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        serde_json::from_str(buf.split_once("\r\n\r\n")?.1).ok()
    })
}

/// `apilb_connections_accepted_total` of the LB in `ns` (0 when it does not answer).
fn accepted(ns: &str) -> f64 {
    let addr: SocketAddr = ADMIN.parse().expect("admin addr");
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: apilb\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(
            buf.lines()
                .filter(|l| l.starts_with("apilb_connections_accepted_total"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
                .sum(),
        )
    })
    .unwrap_or(0.0)
}

/// STAND-IN for apilb's route writer (used only when this build has no `apilb announce`):
/// per LB host, polls apilb's `/status` every 50 ms; the VIP route is added once a backend
/// has been up for [`HOLD`], deleted when none is up or apilb does not answer.
struct StandIn {
    stop: Arc<AtomicBool>,
    /// Per host: the lab has taken over (SIGTERM drill), leave the route alone.
    paused: Arc<Mutex<[bool; 3]>>,
    threads: Vec<JoinHandle<()>>,
}

fn route_cmd(ns: &str, verb: &str) -> bool {
    Command::new("ip")
        .args([
            "-n",
            ns,
            "route",
            verb,
            &format!("{VIP}/32"),
            "dev",
            "lo",
            "table",
            &TABLE.to_string(),
            "proto",
            &PROTO.to_string(),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl StandIn {
    fn start(lab: &Lab) -> StandIn {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(Mutex::new([false; 3]));
        let threads = (0..3)
            .map(|k| {
                let (stop, paused, ns) = (Arc::clone(&stop), Arc::clone(&paused), lab.ns(LBS[k]));
                std::thread::spawn(move || {
                    let mut healthy_since: Option<Instant> = None;
                    let mut announced = false;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        if paused.lock().expect("paused")[k] {
                            healthy_since = None;
                            announced = false;
                            continue;
                        }
                        let up = status_in(&ns).is_some_and(|v| {
                            v["backends"]
                                .as_array()
                                .is_some_and(|b| b.iter().any(|b| b["state"] == "up"))
                        });
                        if up {
                            let since = *healthy_since.get_or_insert_with(Instant::now);
                            if !announced && since.elapsed() >= HOLD {
                                announced = route_cmd(&ns, "replace");
                            }
                        } else {
                            healthy_since = None;
                            if announced || route_cmd(&ns, "del") {
                                route_cmd(&ns, "del");
                                announced = false;
                            }
                        }
                    }
                })
            })
            .collect();
        StandIn {
            stop,
            paused,
            threads,
        }
    }

    fn pause(&self, k: usize, paused: bool) {
        self.paused.lock().expect("paused")[k] = paused;
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether this apilb has the runtime half of issue 13 (`apilb announce --withdraw`).
fn apilb_announces() -> bool {
    Command::new(env!("CARGO_BIN_EXE_apilb"))
        .args(["announce", "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `DIR/lb-N/apilb.yaml` as bootstrap wrote it (with its `announce:` section), PKI paths
/// pointed into the output directory.
fn lb_yaml(out: &Path, host: &str) -> String {
    let text = std::fs::read_to_string(out.join(host).join("apilb.yaml")).expect("apilb.yaml");
    assert!(
        text.contains("\nannounce:\n"),
        "bootstrap wrote an announce section:\n{text}"
    );
    text.replace(
        "/etc/apilb/pki",
        &out.join(host).join("pki").display().to_string(),
    )
}

fn start_lb(lab: &Lab, out: &Path, k: usize) -> LbProcess {
    let filter = std::env::var("APILB_LAB_LOG").unwrap_or_else(|_| "info".to_owned());
    let lb = LbProcess::spawn_in_netns_with(&lab.ns(LBS[k]), &lb_yaml(out, &lb_name(k)), |c| {
        c.env("RUST_LOG", filter);
    });
    wait_for(LIMIT, "apilb serving", || {
        lb.log().contains("apilb serving")
    });
    lb
}

/// The ExecStopPost equivalent after apilb on host `k` died: `apilb announce --withdraw`
/// with its config (apilb's runtime), or deleting the route by hand (stand-in).
fn exec_stop_post(lab: &Lab, k: usize, config: &Path, real: bool) -> String {
    if real {
        let o = lab
            .command(LBS[k], env!("CARGO_BIN_EXE_apilb"))
            .args(["announce", "--withdraw", "--config"])
            .arg(config)
            .output()
            .expect("apilb announce --withdraw");
        assert!(
            o.status.success(),
            "apilb announce --withdraw: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        "apilb announce --withdraw".into()
    } else {
        let ns = lab.ns(LBS[k]);
        sh(
            "ip",
            &[
                "-n",
                &ns,
                "route",
                "flush",
                "table",
                &TABLE.to_string(),
                "proto",
                &PROTO.to_string(),
            ],
        );
        "stand-in: ip route flush table 100 proto 248".into()
    }
}

/// The client ports of established connections to the VIP on host `k`.
fn established_ports(lab: &Lab, k: usize) -> Vec<u16> {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(LBS[k]),
            "ss",
            "-Htn",
            "state",
            "established",
            "( sport = :6443 )",
        ])
        .output()
        .expect("ss");
    let client = node_ip(CLIENT).to_string();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let peer = l.split_whitespace().last()?;
            let (ip, port) = peer.rsplit_once(':')?;
            (ip == client).then(|| port.parse().ok())?
        })
        .collect()
}

/// A keep-alive client connection in the client namespace: `GET /version` every 100 ms on
/// one TLS connection until stopped; its local port and, at the end, (answers, failures).
struct Persistent {
    port: u16,
    handle: JoinHandle<(usize, Vec<String>)>,
}

fn persistent(
    lab: &Lab,
    tls: &Arc<rustls::ClientConfig>,
    stop: &Arc<AtomicBool>,
) -> Option<Persistent> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (tls, stop) = (Arc::clone(tls), Arc::clone(stop));
    let path = format!("/var/run/netns/{}", lab.ns(CLIENT));
    let handle = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let fail = |e: String| (0, vec![e]);
        let tcp = match TcpStream::connect_timeout(&target(), Duration::from_secs(2)) {
            Ok(t) => t,
            Err(e) => return fail(format!("connect: {e}")),
        };
        let _ = tx.send(tcp.local_addr().map(|a| a.port()).unwrap_or(0));
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        let conn = match rustls::ClientConnection::new(
            tls,
            ServerName::IpAddress(std::net::IpAddr::V4(VIP).into()),
        ) {
            Ok(c) => c,
            Err(e) => return fail(e.to_string()),
        };
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let (mut ok, mut errors) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match keep_alive_request(&mut s) {
                Ok(()) => ok += 1,
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.conn.send_close_notify();
        let _ = s.flush();
        (ok, errors)
    });
    let port = rx.recv_timeout(Duration::from_secs(3)).ok()?;
    Some(Persistent { port, handle })
}

/// One `GET /version` on a kept-alive connection: the whole answer by its content-length.
fn keep_alive_request(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> Result<(), String> {
    s.write_all(format!("GET /version HTTP/1.1\r\nHost: {}\r\n\r\n", target()).as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before a whole answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or("no content-length")?;
        if body.len() >= len {
            return if head.starts_with("HTTP/1.1 200") {
                Ok(())
            } else {
                Err(format!("status: {}", head.lines().next().unwrap_or("")))
            };
        }
    }
}

/// Whether a connection to the VIP from inside host `k` is accepted (its listener is open).
fn listening(lab: &Lab, k: usize) -> bool {
    in_ns(&lab.ns(LBS[k]), || {
        TcpStream::connect_timeout(&target(), Duration::from_millis(300)).is_ok()
    })
}

/// Shares of new connections per LB host from accepted-counter deltas.
fn shares(before: &[f64], after: &[f64]) -> Vec<f64> {
    let d: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total: f64 = d.iter().sum();
    d.iter()
        .map(|x| if total > 0.0 { x / total } else { 0.0 })
        .collect()
}

fn all_accepted(lab: &Lab) -> Vec<f64> {
    LBS.iter().map(|n| accepted(&lab.ns(*n))).collect()
}

fn pct(v: &[f64]) -> String {
    v.iter()
        .enumerate()
        .map(|(k, s)| format!("{} {:.0}%", lb_name(k), s * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The five drills of issue 13 on the BGP lab; targets asserted after the table.
#[test]
fn bgp_lab_drills() {
    if !netns::privileged("the BGP lab")
        || !have_tool("kubectl", "kubectl")
        || !have_tool("bird", "bird2")
    {
        return;
    }
    let Some(lab) = Lab::with_nodes("bgp", 8) else {
        return;
    };
    let began = Instant::now();
    let real = apilb_announces();
    let writer = if real {
        "apilb's announce section"
    } else {
        "STAND-IN route writer (apilb has no `announce` runtime in this build)"
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bootstrap_with(dir.path(), &cluster_yaml());
    let kubeconfig = out.join("master-1").join("admin.conf");

    // The network: router forwards with the L4 hash and no redirects; the client reaches the
    // VIP through it; each LB host has the VIP on lo and does not answer ARP for it.
    sysctl(
        &lab,
        ROUTER,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.eth0.send_redirects=0",
        ],
    );
    sysctl(&lab, CLIENT, &["net.ipv4.conf.all.accept_redirects=0"]);
    sh(
        "ip",
        &[
            "-n",
            &lab.ns(CLIENT),
            "route",
            "add",
            &format!("{VIP}/32"),
            "via",
            &node_ip(ROUTER).to_string(),
        ],
    );
    for n in LBS {
        sysctl(
            &lab,
            n,
            &[
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
            ],
        );
        sh(
            "ip",
            &[
                "-n",
                &lab.ns(n),
                "addr",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "lo",
            ],
        );
    }
    let router_file = dir.path().join("router-bird.conf");
    std::fs::write(&router_file, router_conf()).expect("router bird.conf");

    // Processes are declared after the lab, so they are dropped (killed) before it.
    let _masters: Vec<NsProc> = (0..3).map(|i| start_master(&lab, &out, i)).collect();
    let _router = Bird::start(&lab, ROUTER, &router_file, dir.path());
    let _birds: Vec<Bird> = (0..3)
        .map(|k| {
            Bird::start(
                &lab,
                LBS[k],
                &out.join(lb_name(k)).join("bird.conf"),
                dir.path(),
            )
        })
        .collect();
    let mut lbs: Vec<Option<LbProcess>> = (0..3).map(|k| Some(start_lb(&lab, &out, k))).collect();
    let stand_in = (!real).then(|| StandIn::start(&lab));
    let want_all: Vec<Ipv4Addr> = LBS.iter().map(|n| node_ip(*n)).collect();
    netns::poll(
        Duration::from_secs(40),
        "the router has a next hop per LB host",
        || next_hops(&lab) == want_all,
    );
    let route_all = route_text(&lab);
    println!("router: ip route show {VIP}\n{route_all}");
    let tls = client_tls(&kubeconfig, target());
    let mut drills: Vec<Drill> = Vec::new();
    let mut notes_extra: Vec<String> = Vec::new();
    let mut missed: Vec<String> = Vec::new();

    // 1. spread: 300 new connections, each LB host carries at least 15 %.
    let before = all_accepted(&lab);
    let spread_t0 = Instant::now();
    let (tls1, ns) = (Arc::clone(&tls), lab.ns(CLIENT));
    let spread_results: Vec<Result<String, String>> = in_ns(&ns, move || {
        (0..SPREAD_CONNS)
            .map(|_| version(&tls1, target()))
            .collect()
    });
    let spread = shares(&before, &all_accepted(&lab));
    let spread_failed = spread_results.iter().filter(|r| r.is_err()).count();
    let spread_end = Instant::now();
    if spread.iter().any(|s| *s < MIN_SHARE) || spread_failed > 0 {
        missed.push(format!(
            "drill 1: shares {} (each >= 15%), {spread_failed} failed",
            pct(&spread)
        ));
    }

    let load = Load::start(&lab, Arc::clone(&tls), kubeconfig.clone(), target());
    wait_for(LIMIT, "first answers through the VIP", || {
        load.records()
            .iter()
            .any(|r| !r.kubectl && r.result.is_ok())
    });
    std::thread::sleep(Duration::from_secs(2));
    let baseline_end = Instant::now();
    drills.push(Drill {
        n: 0,
        what: "baseline (no failure)".into(),
        t0: baseline_end - Duration::from_secs(2),
        detected: baseline_end - Duration::from_secs(2),
        end: baseline_end,
        note: format!(
            "router: {} nexthop lines for {VIP}",
            route_all.matches("nexthop via").count()
        ),
    });

    // 2. kill -9 apilb on lb-3: the route stays in its table until the ExecStopPost
    // equivalent deletes it; detected = the router's route has lost lb-3.
    let k = 2;
    let config = lbs[k].as_ref().expect("lb").config.clone();
    let t0 = Instant::now();
    lbs[k].as_ref().expect("lb").signal(Signal::SIGKILL);
    wait_for(LIMIT, "apilb on lb-3 exits", || {
        lbs[k]
            .as_mut()
            .expect("lb")
            .child
            .try_wait()
            .expect("wait")
            .is_some()
    });
    let exited = t0.elapsed();
    let how = exec_stop_post(&lab, k, &config, real);
    netns::poll(LIMIT, "the router's route loses lb-3", || {
        !announcing(&lab, k)
    });
    let detected = Instant::now();
    std::thread::sleep(AFTER);
    drills.push(Drill {
        n: 2,
        what: "kill -9 apilb on lb-3".into(),
        t0,
        detected,
        end: Instant::now(),
        note: format!(
            "detected = router lost lb-3's next hop; apilb gone after {} ms, then {how}",
            exited.as_millis()
        ),
    });

    // 5. lb-3 returns (apilb starts again): announced after hold, carries new connections.
    lbs[k] = None;
    let t0 = Instant::now();
    lbs[k] = Some(start_lb(&lab, &out, k));
    netns::poll(LIMIT, "the router's route has lb-3 again", || {
        announcing(&lab, k)
    });
    let detected = Instant::now();
    let before = all_accepted(&lab);
    std::thread::sleep(AFTER);
    let back = shares(&before, &all_accepted(&lab));
    if back[k] < MIN_SHARE {
        missed.push(format!(
            "drill 5: lb-3 carried {:.0}% of new connections",
            back[k] * 100.0
        ));
    }
    drills.push(Drill {
        n: 5,
        what: "lb-3 returns".into(),
        t0,
        detected,
        end: Instant::now(),
        note: format!(
            "detected = next hop back (hold {} s); new connections after: {}",
            HOLD.as_secs(),
            pct(&back)
        ),
    });

    // 3. SIGTERM on lb-2 with established connections on it: the route is withdrawn
    // before its listeners close; requests on those connections finish; new ones go
    // elsewhere.
    let k = 1;
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns: Vec<Persistent> = Vec::new();
    for _ in 0..40 {
        if let Some(p) = persistent(&lab, &tls, &stop) {
            conns.push(p);
        }
        std::thread::sleep(Duration::from_millis(20));
        let on_k = established_ports(&lab, k);
        if conns.iter().filter(|c| on_k.contains(&c.port)).count() >= 3 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let on_k: Vec<u16> = established_ports(&lab, k);
    let t0 = Instant::now();
    if let Some(s) = &stand_in {
        // STAND-IN for apilb's SIGTERM order: withdraw, wait withdrawDelay, then signal.
        s.pause(k, true);
        route_cmd(&lab.ns(LBS[k]), "del");
        let pid = lbs[k].as_ref().expect("lb").child.id();
        std::thread::spawn(move || {
            std::thread::sleep(WITHDRAW_DELAY);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
        });
    } else {
        lbs[k].as_ref().expect("lb").signal(Signal::SIGTERM);
    }
    let mut withdrawn: Option<Duration> = None;
    let mut closed: Option<Duration> = None;
    wait_for(
        Duration::from_secs(30),
        "lb-2 withdrawn and its listeners closed",
        || {
            if withdrawn.is_none() && !announcing(&lab, k) {
                withdrawn = Some(t0.elapsed());
            }
            if closed.is_none() && !listening(&lab, k) {
                closed = Some(t0.elapsed());
            }
            withdrawn.is_some() && closed.is_some()
        },
    );
    let detected = t0 + withdrawn.unwrap_or_default();
    // The established connections keep sending past the close, then end on their own.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut kept = (0usize, 0usize, 0usize);
    let mut kept_errors = Vec::new();
    for c in conns {
        let (ok, errors) = c.handle.join().expect("persistent thread");
        if on_k.contains(&c.port) {
            kept.0 += 1;
            kept.1 += ok;
            kept.2 += errors.len();
            kept_errors.extend(errors);
        }
    }
    wait_for(Duration::from_secs(35), "apilb on lb-2 exits", || {
        lbs[k]
            .as_mut()
            .expect("lb")
            .child
            .try_wait()
            .expect("wait")
            .is_some()
    });
    let exited = t0.elapsed();
    std::thread::sleep(AFTER);
    let (w, c) = (withdrawn.unwrap_or_default(), closed.unwrap_or_default());
    if w >= c {
        missed.push(format!(
            "drill 3: withdrawn after {} ms, not before its listeners closed ({} ms)",
            w.as_millis(),
            c.as_millis()
        ));
    }
    if kept.0 == 0 {
        missed.push("drill 3: no established connection landed on lb-2".into());
    }
    // Issue 13's target (0 failed on the stopping host's established connections) cannot
    // be met by withdrawing a route: from that moment the router hashes those flows over
    // the remaining next hops, whose kernels answer them with a reset (no socket). Printed,
    // not asserted; see benches/lab/README.md.
    let kept_note = if kept.2 > 0 {
        format!(
            "drill 3: {} of {} established connection(s) on lb-2 were reset once the route was withdrawn: {kept_errors:?}",
            kept.2, kept.0
        )
    } else {
        String::new()
    };
    drills.push(Drill {
        n: 3,
        what: "SIGTERM apilb on lb-2".into(),
        t0,
        detected,
        end: Instant::now(),
        note: format!(
            "detected = router lost lb-2; listeners closed after {} ms; {} established conn(s) on lb-2: {} requests, {} failed; exited after {} ms",
            c.as_millis(),
            kept.0,
            kept.1,
            kept.2,
            exited.as_millis()
        ),
    });
    lbs[k] = None;
    if let Some(s) = &stand_in {
        s.pause(k, false);
    }
    lbs[k] = Some(start_lb(&lab, &out, k));
    netns::poll(LIMIT, "lb-2 announced again", || announcing(&lab, k));

    // 4. every master unreachable from lb-1: withdrawn within rise/fall, announced again
    // after hold once they are back.
    let k = 0;
    let masters_ip: Vec<String> = (3..=5).map(|n| format!("{}/32", node_ip(n))).collect();
    let t0 = Instant::now();
    for m in &masters_ip {
        sh(
            "ip",
            &["-n", &lab.ns(LBS[k]), "route", "add", "prohibit", m],
        );
    }
    netns::poll(LIMIT, "lb-1 withdraws", || !announcing(&lab, k));
    let detected = Instant::now();
    std::thread::sleep(AFTER);
    let t1 = Instant::now();
    for m in &masters_ip {
        sh(
            "ip",
            &["-n", &lab.ns(LBS[k]), "route", "del", "prohibit", m],
        );
    }
    for i in 0..3 {
        wait_for(LIMIT, "masters up again in lb-1", || {
            crate::lab::backend_state(&lab, LBS[k], &master_name(i)) == "up"
        });
    }
    let up_again = t1.elapsed();
    netns::poll(LIMIT, "lb-1 announces again", || announcing(&lab, k));
    let reannounced = t1.elapsed();
    if reannounced < HOLD {
        missed.push(format!(
            "drill 4: announced again {} ms after the masters returned, before hold ({} s)",
            reannounced.as_millis(),
            HOLD.as_secs()
        ));
    }
    drills.push(Drill {
        n: 4,
        what: "every master unreachable from lb-1".into(),
        t0,
        detected,
        end: t1,
        note: format!(
            "detected = router lost lb-1; masters back: all up in lb-1 after {} ms, announced again after {} ms (hold {} s)",
            up_again.as_millis(),
            reannounced.as_millis(),
            HOLD.as_secs()
        ),
    });
    // 6. lb-3 as a host dies (its link goes down; apilb, BIRD and the route stay): the
    // router's BFD session times out and BIRD drops the next hop. Last, because the router
    // then waits out BGP's connect retry before it peers with lb-3 again.
    let k = 2;
    let t0 = Instant::now();
    lab.link(LBS[k], false);
    netns::poll(LIMIT, "the router drops lb-3 by BFD", || {
        !announcing(&lab, k)
    });
    let detected = Instant::now();
    std::thread::sleep(AFTER);
    drills.push(Drill {
        n: 6,
        what: "lb-3 host dies (link down)".into(),
        t0,
        detected,
        end: Instant::now(),
        note: format!(
            "detected = router lost lb-3's next hop (BFD {} ms x {})",
            apilb::bootstrap::bird::BFD_INTERVAL_MS,
            apilb::bootstrap::bird::BFD_MULTIPLIER
        ),
    });
    if detected - t0 > Duration::from_secs(1) {
        missed.push(format!(
            "drill 6: BFD took {} ms",
            (detected - t0).as_millis()
        ));
    }

    notes_extra.push(format!(
        "drill 1 (spread): {SPREAD_CONNS} new connections, {spread_failed} failed, in {} ms: {}",
        (spread_end - spread_t0).as_millis(),
        pct(&spread)
    ));

    let records = load.records();
    drop(load);
    drop(stand_in);
    drop(lbs);
    drills.sort_by_key(|d| d.n);
    let rows: Vec<Row> = drills.iter().map(|d| row(d, &records)).collect();
    let table = table(&rows);
    println!(
        "\nBGP lab ({writer}), {:.0} s in all, {}:\n\n{}\n{table}",
        began.elapsed().as_secs_f64(),
        provenance(),
        notes_extra.join("\n")
    );
    for r in rows.iter().filter(|r| !r.errors.is_empty()) {
        println!("drill {} failures (first {}):", r.n, r.errors.len());
        for e in &r.errors {
            println!("  {e}");
        }
    }
    let by = |n: u8| rows.iter().find(|r| r.n == n).expect("row");
    if by(0).failed + by(0).kubectl_failed > 0 {
        missed.push("baseline: failures without any drill".into());
    }
    if !kept_note.is_empty() {
        println!("{kept_note}");
    }
    for n in [2, 3, 4, 5, 6] {
        if by(n).failed_after_detection > 0 {
            missed.push(format!(
                "drill {n}: {} failed new connections after detection",
                by(n).failed_after_detection
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "BGP lab targets missed:\n{}\n\n{table}",
        missed.join("\n")
    );
}
