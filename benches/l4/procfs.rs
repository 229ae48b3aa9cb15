//! CPU time and memory of processes and of the machine, read from /proc, plus the `Meter`
//! that snapshots proxy, generator and backends at the edges of a measured window.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::process::Command;
use std::sync::OnceLock;

use tokio::time::Instant;

/// A process id as /proc spells it.
pub(crate) type Pid = i32;

/// utime + stime of a process, in clock ticks. /proc/PID/stat sums all threads of the
/// process (live and exited), which is what "CPU of the proxy" means here.
pub(crate) fn cpu_ticks(pid: Pid) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let f = fields_after_comm(&stat)?;
    // Fields after ")" start at field 3 (state): utime is field 14, stime field 15.
    Ok(num(&f, 11)? + num(&f, 12)?)
}

/// Resident set size of a process in bytes (VmRSS of /proc/PID/status).
pub(crate) fn rss_bytes(pid: Pid) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("VmRSS"))?;
    Ok(kib * 1024)
}

/// Every descendant of `root` (children, grandchildren, ...), found by scanning /proc.
pub(crate) fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<Pid>().ok())
            else {
                continue;
            };
            if let Ok(ppid) = parent(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    // Bounded: each pid is visited once, and /proc lists finitely many.
    while let Some(p) = stack.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                if k != root && !out.contains(&k) {
                    out.push(k);
                    stack.push(k);
                }
            }
        }
    }
    out
}

fn parent(pid: Pid) -> io::Result<Pid> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let f = fields_after_comm(&stat)?;
    f.get(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("ppid"))
}

/// Clock ticks of the whole machine, summed over all CPUs (/proc/stat).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MachineTicks {
    /// Everything but idle and iowait.
    pub(crate) busy: u64,
    /// Softirq time: with IRQ time accounting it is charged to no process, and on loopback
    /// most of it is the network stack moving our packets.
    pub(crate) softirq: u64,
}

pub(crate) fn machine_ticks() -> io::Result<MachineTicks> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or_else(|| bad("/proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let col = |i: usize| v.get(i).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Ok(MachineTicks {
        busy: total.saturating_sub(col(3) + col(4)),
        softirq: col(6),
    })
}

/// Clock ticks per second (USER_HZ), from `getconf CLK_TCK`; 100 if that fails (the
/// value on every mainstream Linux build).
pub(crate) fn ticks_per_sec() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&hz| hz > 0.0)
            .unwrap_or(100.0)
    })
}

fn fields_after_comm(stat: &str) -> io::Result<Vec<&str>> {
    // comm is in parentheses and may contain spaces or ')' itself: split after the last ')'.
    let i = stat.rfind(')').ok_or_else(|| bad("stat"))?;
    Ok(stat[i + 1..].split_whitespace().collect())
}

fn num(f: &[&str], i: usize) -> io::Result<u64> {
    f.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("stat field"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}"))
}

/// Knows which processes are the proxy, the generator and the backends.
pub(crate) struct Meter {
    proxy: Vec<Pid>,
    generator: Pid,
    backends: Pid,
}

/// CPU counters at one instant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    pub(crate) at: Instant,
    proxy: u64,
    generator: u64,
    backends: u64,
    machine: MachineTicks,
}

/// Seconds of wall time and of CPU time spent by each party during a window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    pub(crate) wall: f64,
    /// CPU seconds of the proxy; 0 when there is no proxy (direct).
    pub(crate) proxy: f64,
    pub(crate) generator: f64,
    pub(crate) backends: f64,
    /// Softirq seconds of the machine (network stack work charged to no process).
    pub(crate) softirq: f64,
    /// Busy CPU seconds of the machine not explained by the four above (other tenants).
    pub(crate) other: f64,
}

impl Meter {
    /// `proxy` lists the proxy's processes (master and workers); empty for direct runs.
    pub(crate) fn new(proxy: Vec<Pid>, backends: Pid) -> Self {
        Self {
            proxy,
            generator: std::process::id() as Pid,
            backends,
        }
    }

    pub(crate) fn has_proxy(&self) -> bool {
        !self.proxy.is_empty()
    }

    pub(crate) fn snap(&self) -> Usage {
        // A process that vanished counts as 0 more ticks; the caller notices a dead proxy
        // through failed connections.
        let sum = |pids: &[Pid]| pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).sum();
        Usage {
            at: Instant::now(),
            proxy: sum(&self.proxy),
            generator: cpu_ticks(self.generator).unwrap_or(0),
            backends: cpu_ticks(self.backends).unwrap_or(0),
            machine: machine_ticks().unwrap_or_default(),
        }
    }

    /// Summed RSS of the proxy's processes, if there is a proxy.
    pub(crate) fn proxy_rss(&self) -> Option<u64> {
        if self.proxy.is_empty() {
            return None;
        }
        Some(self.proxy.iter().map(|&p| rss_bytes(p).unwrap_or(0)).sum())
    }
}

impl Usage {
    pub(crate) fn until(&self, end: &Usage) -> Window {
        let hz = ticks_per_sec();
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
        let proxy = d(self.proxy, end.proxy);
        let generator = d(self.generator, end.generator);
        let backends = d(self.backends, end.backends);
        let busy = d(self.machine.busy, end.machine.busy);
        let softirq = d(self.machine.softirq, end.machine.softirq);
        Window {
            wall: end.at.duration_since(self.at).as_secs_f64(),
            proxy,
            generator,
            backends,
            softirq,
            other: (busy - proxy - generator - backends - softirq).max(0.0),
        }
    }
}
