//! Least privilege: once `apilb serve` has started (listeners bound, the VIP's raw sockets
//! and netlink open), it keeps only the capabilities the running config still needs
//! ([`needed`]) and drops every other one from all five sets (effective, permitted,
//! inheritable, bounding, ambient), then sets `no_new_privs`, also when started as root.
//!
//! What is kept, and why ([`needed`] is the one rule; later sections add theirs there):
//! - `vip:` keeps CAP_NET_RAW (VRRP and gratuitous ARP/NA sockets) and CAP_NET_ADMIN
//!   (adding and removing the addresses) for as long as the process runs.
//! - `announce:` keeps CAP_NET_ADMIN (adding and deleting its routes, and its addresses).
//! - A `listen` or `metrics.listen` port below 1024 keeps CAP_NET_BIND_SERVICE, so that a
//!   reload can rebind it (a changed address, a listener dropped and added back). A reload
//!   that adds the first port below 1024 to a config that had none fails to bind and is
//!   refused like any bind failure (the old config keeps serving); restart to apply it.
//! - Nothing else: a plain proxy on high ports keeps no capability at all.
//!
//! Capabilities belong to threads, not to the process: [`drop_to`] applies the same sets on
//! the calling thread, on every runtime worker and on every idle blocking-pool thread (each
//! occupied at once by a rendezvous, so none is missed), and threads started later inherit
//! them. It then reads every thread's `/proc/self/task/TID/status`; a blocking thread that was
//! busy during the gather is gathered again once idle (for at most 5 s), and any thread still
//! holding more is reported by id and name.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use caps::{CapSet, Capability, CapsHashSet};

use crate::config::Config;

/// The capabilities `config` needs after start (see the module docs).
pub fn needed(config: &Config) -> CapsHashSet {
    let mut keep = CapsHashSet::new();
    if config.vip.is_some() {
        keep.insert(Capability::CAP_NET_RAW);
        keep.insert(Capability::CAP_NET_ADMIN);
    }
    if config.announce.is_some() {
        keep.insert(Capability::CAP_NET_ADMIN);
    }
    let privileged_port = |p: u16| p != 0 && p < 1024;
    let ports = config
        .listen
        .iter()
        .map(std::net::SocketAddr::port)
        .chain(config.metrics.as_ref().map(|m| m.listen.port()));
    if ports.into_iter().any(privileged_port) {
        keep.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    keep
}

/// Why the capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A capability call failed on one thread.
    #[error("dropping capabilities ({step}): {why}")]
    Caps {
        /// Which set.
        step: &'static str,
        /// The kernel's answer.
        why: String,
    },
    /// Threads still hold capabilities beyond the kept ones after the drop.
    #[error("threads {} still hold capabilities beyond {}", .threads.join(", "), names(.kept))]
    Leftover {
        /// Thread ids, each with its name.
        threads: Vec<String>,
        /// What was to be kept.
        kept: CapsHashSet,
    },
}

/// Comma-separated capability names (`none` for the empty set), sorted.
pub fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Reduce the calling thread to `keep` in every set (bounding first, while CAP_SETPCAP may
/// still be effective), then set `no_new_privs`. Without CAP_SETPCAP (an unprivileged
/// start) the bounding set cannot shrink; `no_new_privs` then stops it from mattering.
fn drop_this_thread(keep: &CapsHashSet) -> Result<(), Error> {
    let fail = |step: &'static str| {
        move |e: caps::errors::CapsError| Error::Caps {
            step,
            why: e.to_string(),
        }
    };
    let permitted = caps::read(None, CapSet::Permitted).map_err(fail("reading permitted"))?;
    if permitted.contains(&Capability::CAP_SETPCAP) {
        let bounding = caps::read(None, CapSet::Bounding).map_err(fail("reading bounding"))?;
        caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP)
            .map_err(fail("raising CAP_SETPCAP"))?;
        for cap in bounding.difference(keep) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(fail("bounding"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(fail("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(fail("inheritable"))?;
    let kept: CapsHashSet = permitted.intersection(keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(fail("effective"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(fail("permitted"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| Error::Caps {
        step: "no_new_privs",
        why: e.to_string(),
    })
}

/// Longest the threads are waited for to gather.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// A meeting point for `n` threads: each waits until all have arrived (or the timeout).
struct Rendezvous {
    arrived: Mutex<usize>,
    all: Condvar,
    n: usize,
}

impl Rendezvous {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Rendezvous {
            arrived: Mutex::new(0),
            all: Condvar::new(),
            n,
        })
    }

    fn arrive(&self) {
        let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        *arrived += 1;
        self.all.notify_all();
        let deadline = std::time::Instant::now() + GATHER_TIMEOUT;
        while *arrived < self.n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            arrived = match self.all.wait_timeout(arrived, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// Keep only `keep` on every thread of the process (see the module docs). Call from the
/// runtime's `block_on` thread once start-up is done; `single_threaded` are the other
/// runtimes whose one thread must drop too (the data-plane workers).
pub async fn drop_to(
    keep: CapsHashSet,
    single_threaded: &[tokio::runtime::Handle],
) -> Result<(), Error> {
    drop_this_thread(&keep)?;
    let handle = tokio::runtime::Handle::current();
    let mut waits = Vec::new();
    // Every single-threaded runtime (the data-plane workers): one task runs on its thread.
    for h in single_threaded {
        let keep = keep.clone();
        waits.push(h.spawn(async move { drop_this_thread(&keep) }));
    }
    // Every worker: as many tasks as workers, each holding its thread until all have come.
    let workers = handle.metrics().num_workers();
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        let meet = Rendezvous::new(workers);
        for _ in 0..workers {
            let (keep, meet) = (keep.clone(), Arc::clone(&meet));
            waits.push(tokio::spawn(async move {
                let r = drop_this_thread(&keep);
                meet.arrive();
                r
            }));
        }
    }
    // Every idle blocking thread: see `drop_blocking_pool`.
    drop_blocking_pool(&keep).await?;
    for w in waits {
        joined(w.await)?;
    }
    // A blocking thread that was busy (a certificate read, a config file) during the
    // gather kept its sets: gather the pool again once it is idle, for a bounded time.
    let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    let mut leftover = threads_holding_more(&keep);
    while !leftover.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(REGATHER_PAUSE).await;
        drop_blocking_pool(&keep).await?;
        leftover = threads_holding_more(&keep);
    }
    if leftover.is_empty() {
        Ok(())
    } else {
        Err(Error::Leftover {
            threads: leftover,
            kept: keep,
        })
    }
}

/// Pause between two gathers of the blocking pool while a thread still holds more.
const REGATHER_PAUSE: Duration = Duration::from_millis(20);

/// Drop on every idle blocking-pool thread: more blocking tasks at once than threads exist,
/// each holding its thread until all have come, so the pool hands every idle thread one
/// (and starts new ones, which inherit the dropped sets from this thread).
async fn drop_blocking_pool(keep: &CapsHashSet) -> Result<(), Error> {
    let threads = thread_ids().len();
    let meet = Rendezvous::new(threads);
    let mut waits = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (keep, meet) = (keep.clone(), Arc::clone(&meet));
        waits.push(tokio::task::spawn_blocking(move || {
            let r = drop_this_thread(&keep);
            meet.arrive();
            r
        }));
    }
    for w in waits {
        joined(w.await)?;
    }
    Ok(())
}

/// A drop task's own result, or its failure to run.
fn joined(r: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    r.map_err(|e| Error::Caps {
        step: "thread task",
        why: e.to_string(),
    })?
}

fn thread_ids() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Threads whose effective or permitted set holds a capability outside `keep`.
fn threads_holding_more(keep: &CapsHashSet) -> Vec<String> {
    let allowed: u64 = keep.iter().map(|c| c.bitmask()).fold(0, |a, b| a | b);
    let mut out = Vec::new();
    for tid in thread_ids() {
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
            continue; // the thread ended
        };
        let over = ["CapEff:", "CapPrm:"]
            .iter()
            .any(|field| status_mask(&status, field).is_some_and(|m| m & !allowed != 0));
        if over {
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .map_or("?", str::trim);
            out.push(format!("{tid} ({name})"));
        }
    }
    out
}

/// A hexadecimal capability mask line (`CapEff:\t0000000000003000`) of a status file.
pub fn status_mask(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The bits of a set of capabilities, as `/proc` shows them.
pub fn mask(set: &HashSet<Capability>) -> u64 {
    set.iter().map(|c| c.bitmask()).fold(0, |a, b| a | b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_yaml(
            &format!("backends: [{{name: a, address: \"127.0.0.1:6443\"}}]\n{extra}"),
            "t",
        )
        .expect("valid config")
    }

    #[test]
    fn the_rule_keeps_only_what_the_config_needs() {
        assert!(needed(&config("listen: [\"127.0.0.1:6443\"]\n")).is_empty());
        let low = needed(&config("listen: [\"127.0.0.1:443\"]\n"));
        assert_eq!(names(&low), "CAP_NET_BIND_SERVICE");
        let low_metrics = needed(&config(
            "listen: [\"127.0.0.1:6443\"]\nmetrics: {listen: \"127.0.0.1:99\"}\n",
        ));
        assert_eq!(names(&low_metrics), "CAP_NET_BIND_SERVICE");
        let vip = needed(&config(
            "listen: [\"10.0.0.100:6443\"]\nvip: {interface: eth0, vrid: 51, addresses: [10.0.0.100/24], priority: 100}\n",
        ));
        assert_eq!(names(&vip), "CAP_NET_ADMIN, CAP_NET_RAW");
        let announce = needed(&config(
            "listen: [\"10.0.0.100:6443\"]\nannounce: {addresses: [10.0.0.100/32]}\n",
        ));
        assert_eq!(names(&announce), "CAP_NET_ADMIN");
    }

    #[test]
    fn status_masks_parse() {
        let s = "Name:\tapilb\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n";
        assert_eq!(status_mask(s, "CapEff:"), Some(0x3000));
        assert_eq!(status_mask(s, "CapBnd:"), None);
        let set: CapsHashSet = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW]
            .into_iter()
            .collect();
        assert_eq!(mask(&set), 0x3000);
    }
}
