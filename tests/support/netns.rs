//! A throwaway lab of network namespaces for the VIP tests and the HA lab: a switch namespace
//! with a bridge and N nodes (`n1`, `n2`, ...; three by default), each with `eth0` at
//! 10.251.0.(10+i)/24. Nothing is
//! created in the host's namespace; everything is deleted on drop, even after a failure.
//!
//! Needs root. [`Lab::new`] returns `None` (after printing why) when not root, and panics
//! instead when `APILB_REQUIRE_PRIVILEGED=1`.

use std::fs::File;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lab subnet's VIP.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 100);

/// Node `i`'s own address.
pub fn node_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 251, 0, 10 + i)
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Lab {
    pub prefix: String,
    nodes: u8,
}

fn run(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether privileged tests can run; when not, skips (or fails under
/// APILB_REQUIRE_PRIVILEGED=1) through [`super::skip_or_fail`].
pub fn privileged(what: &str) -> bool {
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        return true;
    }
    super::skip_or_fail(&format!(
        "{what} needs root (network namespaces, raw sockets)"
    ));
    false
}

impl Lab {
    /// Three nodes.
    pub fn new(tag: &str) -> Option<Lab> {
        Self::with_nodes(tag, 3)
    }

    /// `nodes` nodes (1-89, so addresses stay below the VIP).
    pub fn with_nodes(tag: &str, nodes: u8) -> Option<Lab> {
        assert!((1..90).contains(&nodes), "1-89 nodes");
        if !privileged("the VIP lab") || !super::have_tool("ip", "iproute2") {
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let lab = Lab {
            prefix: format!("apilbt-{}-{n}-{tag}", std::process::id()),
            nodes,
        };
        let sw = lab.ns_name("sw");
        run(&["netns", "add", &sw]);
        run(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        run(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 1..=nodes {
            let ns = lab.ns(i);
            run(&["netns", "add", &ns]);
            // Node i is nsid i in the switch namespace ([`Lab::monitor_addresses`]); set
            // before the veth pair, which would assign one otherwise.
            run(&["-n", &sw, "netns", "set", &ns, &i.to_string()]);
            let port = format!("p{i}");
            run(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            run(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            run(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", node_ip(i)),
                "dev",
                "eth0",
            ]);
            run(&["-n", &ns, "link", "set", "eth0", "up"]);
            run(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        Some(lab)
    }

    fn ns_name(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    /// Node `i`'s namespace name.
    pub fn ns(&self, i: u8) -> String {
        self.ns_name(&format!("n{i}"))
    }

    /// Whether node `i` has `ip` on eth0.
    pub fn has_addr(&self, i: u8, ip: Ipv4Addr) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns(i), "-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {ip}/"))
    }

    /// Whether node `i` has the IPv6 address `ip` on eth0.
    pub fn has_addr6(&self, i: u8, ip: std::net::Ipv6Addr) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns(i), "-6", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet6 {ip}/"))
    }

    /// Give node `i` an IPv6 address on eth0 (no duplicate address detection, so it is
    /// usable at once).
    pub fn add_addr6(&self, i: u8, cidr: &str) {
        run(&[
            "-n",
            &self.ns(i),
            "addr",
            "add",
            cidr,
            "dev",
            "eth0",
            "nodad",
        ]);
    }

    /// Wait until node `i`'s IPv6 link-local address has passed duplicate address
    /// detection (VRRP over IPv6 sends from it).
    pub fn wait_link_local(&self, i: u8) {
        poll(
            Duration::from_secs(10),
            "IPv6 link-local address ready",
            || {
                let out = Command::new("ip")
                    .args([
                        "-n",
                        &self.ns(i),
                        "-6",
                        "-o",
                        "addr",
                        "show",
                        "dev",
                        "eth0",
                        "scope",
                        "link",
                    ])
                    .output()
                    .expect("ip addr");
                let text = String::from_utf8_lossy(&out.stdout);
                text.contains("inet6 fe80") && !text.contains("tentative")
            },
        );
    }

    /// Node `i`'s eth0 MAC address (`aa:bb:...`).
    pub fn mac(&self, i: u8) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(i), "-o", "link", "show", "dev", "eth0"])
            .output()
            .expect("ip link");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in: {text}"))
            .to_owned()
    }

    /// The MAC node `i`'s neighbour table has for `ip` on eth0, if any.
    pub fn neighbour(&self, i: u8, ip: IpAddr) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.ns(i),
                "neigh",
                "show",
                &ip.to_string(),
                "dev",
                "eth0",
            ])
            .output()
            .expect("ip neigh");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned)
    }

    /// Set node `i`'s eth0 up or down.
    pub fn link(&self, i: u8, up: bool) {
        run(&[
            "-n",
            &self.ns(i),
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    /// A command run inside node `i` (`ip netns exec`, which execs: the child's pid is the
    /// program's).
    pub fn command(&self, i: u8, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i), program]);
        c
    }
}

impl Lab {
    /// Start watching every node's address changes, in the order the kernel makes them:
    /// one `ip monitor address all-nsid` in the switch namespace, where node `i` is nsid `i`,
    /// so a single netlink socket sees them all. Returns once the monitor is listening.
    pub fn monitor_addresses(&self) -> AddressMonitor {
        let mut child = Command::new("ip")
            .args([
                "-n",
                &self.ns_name("sw"),
                "-o",
                "monitor",
                "address",
                "all-nsid",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ip monitor");
        let stdout = child.stdout.take().expect("stdout piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("monitor lock").push(line);
            }
        });
        let mon = AddressMonitor { child, lines };
        // A marker event proves the monitor listens before the caller acts. The process
        // subscribes some time after it starts, so the marker is toggled until one is seen
        // (a readiness handshake, bounded).
        let marker = "10.251.255.1/32";
        let start = Instant::now();
        loop {
            run(&["-n", &self.ns(1), "addr", "add", marker, "dev", "lo"]);
            run(&["-n", &self.ns(1), "addr", "del", marker, "dev", "lo"]);
            let seen = Instant::now();
            while seen.elapsed() < Duration::from_millis(100) {
                if mon.lines().iter().any(|l| l.contains("10.251.255.1/32")) {
                    return mon;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "ip monitor not listening after 5 s"
            );
        }
    }
}

/// One address change seen by an [`AddressMonitor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrEvent {
    /// The node.
    pub node: u8,
    /// Added (true) or removed.
    pub added: bool,
    /// The address.
    pub ip: IpAddr,
}

/// Address changes of every lab node, in kernel order; stopped on drop.
pub struct AddressMonitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl AddressMonitor {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("monitor lock").clone()
    }

    /// The changes of `ip` so far, in order.
    pub fn events(&self, ip: IpAddr) -> Vec<AddrEvent> {
        self.lines()
            .iter()
            .filter_map(|l| parse_addr_event(l))
            .filter(|e| e.ip == ip)
            .collect()
    }

    /// Wait until `want` is among the changes of its address; all of them so far.
    pub fn wait_for(&self, want: &AddrEvent) -> Vec<AddrEvent> {
        poll(
            Duration::from_secs(5),
            &format!("address event {want:?}"),
            || self.events(want.ip).contains(want),
        );
        self.events(want.ip)
    }
}

impl Drop for AddressMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[nsid 2]Deleted 2: eth0    inet 10.251.0.100/24 ...` -> node 2, removed, 10.251.0.100.
fn parse_addr_event(line: &str) -> Option<AddrEvent> {
    let rest = line.strip_prefix("[nsid ")?;
    let (node, rest) = rest.split_once(']')?;
    let node = node.parse().ok()?;
    let added = !rest.starts_with("Deleted ");
    let mut words = rest.split_whitespace();
    words.find(|w| *w == "inet" || *w == "inet6")?;
    let ip = words.next()?.split('/').next()?.parse().ok()?;
    Some(AddrEvent { node, added, ip })
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns_name("sw")])
            .output();
    }
}

/// Run `f` on a fresh thread inside namespace `ns` (setns affects only that thread; sockets
/// made there stay in `ns`).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// A TCP server in `ns` on `addr` that sends "ok\n" to every connection.
pub fn tag_server(ns: &str, addr: SocketAddr) {
    let listener = in_ns(ns, move || {
        std::net::TcpListener::bind(addr).expect("bind backend")
    });
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let _ = std::io::Write::write_all(&mut s, b"ok\n");
        }
    });
}

/// One connection from `ns` to `addr`: true if "ok\n" came back within 300 ms.
pub fn reaches(ns: &str, addr: SocketAddr) -> bool {
    in_ns(ns, move || {
        let t = Duration::from_millis(300);
        let Ok(mut s) = TcpStream::connect_timeout(&addr, t) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(t));
        let mut buf = [0u8; 3];
        std::io::Read::read_exact(&mut s, &mut buf).is_ok() && &buf == b"ok\n"
    })
}

/// Poll `cond` every 5 ms until it holds or `limit` passes; how long it took.
pub fn poll(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// GET `path` from `addr` inside `ns`; the body.
pub fn http_get_in(ns: &str, addr: SocketAddr, path: &str) -> String {
    let path = path.to_owned();
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        std::io::Write::write_all(&mut s, req.as_bytes()).expect("write");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).expect("read");
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    })
}

/// The value of metric line `name` (with labels) in a Prometheus text body, or 0.
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// keepalived in one lab node (VRRPv3, VRID 51, the lab's [`VIP`]/24 on eth0, 100 ms
/// adverts, starting as backup), its log captured; killed on drop.
pub struct Keepalived {
    child: Child,
    log_path: std::path::PathBuf,
}

impl Keepalived {
    pub fn start(lab: &Lab, i: u8, priority: u8, dir: &std::path::Path) -> Keepalived {
        let conf = dir.join(format!("ka-{i}-{priority}.conf"));
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  vrrp_version 3\n  router_id n{i}\n}}\nvrrp_instance VI {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
            ),
        )
        .expect("write keepalived.conf");
        let log_path = dir.join(format!("ka-{i}-{priority}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = lab
            .command(i, "keepalived")
            .args(["-n", "-l", "-D", "-P", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join(format!("ka-{i}.pid")))
            .arg("-r")
            .arg(dir.join(format!("ka-vrrp-{i}.pid")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn keepalived");
        Keepalived { child, log_path }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Send `sig` to keepalived.
    pub fn signal(&self, sig: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, sig);
    }

    /// SIGTERM (priority 0, the VIP removed at once) and wait for the exit.
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        poll(Duration::from_secs(5), "keepalived exits", || {
            self.child.try_wait().expect("wait").is_some()
        });
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
