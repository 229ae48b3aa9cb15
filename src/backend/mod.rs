//! Backends at run time: the live set the proxy picks from, with per-backend connection
//! counts and passive failure counts, swapped atomically on reload.
//!
//! [`BackendSet`] owns the list; [`select`] decides which backend takes a connection. A
//! backend removed by a reload stays alive (through `Arc`) for as long as its established
//! connections last.

pub mod select;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::config::{BackendAddress, BackendConfig};
use select::Candidate;

/// One backend and its live counters.
#[derive(Debug)]
pub struct Backend {
    name: String,
    address: BackendAddress,
    weight: AtomicU32,
    active: AtomicUsize,
    total: AtomicU64,
    consecutive_failures: AtomicU32,
}

impl Backend {
    fn new(cfg: &BackendConfig) -> Self {
        Self {
            name: cfg.name.clone(),
            address: cfg.address.clone(),
            weight: AtomicU32::new(cfg.weight),
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn address(&self) -> &BackendAddress {
        &self.address
    }

    /// Current weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Connections proxied to it right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections proxied to it since it was added.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Connect attempts that failed in a row (reset by a successful connect).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Record a failed connect attempt; returns the new run length.
    pub fn connect_failed(&self) -> u32 {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Record a successful connect and count the connection as active until the returned
    /// guard drops.
    pub fn connected(self: &Arc<Self>) -> ActiveGuard {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(self))
    }

    fn candidate(&self) -> Candidate {
        Candidate {
            weight: self.weight(),
            active: self.active(),
        }
    }
}

/// Counts one established connection on its backend while alive.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Backend>);

impl ActiveGuard {
    /// The backend.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The live backends, in config order; readers take a snapshot without locking.
#[derive(Debug)]
pub struct BackendSet {
    current: ArcSwap<Vec<Arc<Backend>>>,
}

/// What a [`BackendSet::update`] changed, by backend name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendChanges {
    /// Newly added (or re-added with a new address).
    pub added: Vec<String>,
    /// Removed (or replaced by a new address); their connections finish on their own.
    pub removed: Vec<String>,
    /// Kept, with a new weight.
    pub reweighted: Vec<String>,
}

impl BackendChanges {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.reweighted.is_empty()
    }
}

impl BackendSet {
    /// A set built from config.
    pub fn new(cfgs: &[BackendConfig]) -> Self {
        let list = cfgs.iter().map(|c| Arc::new(Backend::new(c))).collect();
        Self {
            current: ArcSwap::from_pointee(list),
        }
    }

    /// The backends now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.current.load_full()
    }

    /// Selection views of `list`, in the same order.
    pub fn candidates(list: &[Arc<Backend>]) -> Vec<Candidate> {
        list.iter().map(|b| b.candidate()).collect()
    }

    /// Replace the set with `cfgs`. A backend with the same name and address is kept (with
    /// its counters and connections) and takes the new weight; others are added or dropped.
    pub fn update(&self, cfgs: &[BackendConfig]) -> BackendChanges {
        let old = self.snapshot();
        let mut changes = BackendChanges::default();
        let list: Vec<Arc<Backend>> = cfgs
            .iter()
            .map(|cfg| {
                match old
                    .iter()
                    .find(|b| b.name == cfg.name && b.address == cfg.address)
                {
                    Some(b) => {
                        if b.weight.swap(cfg.weight, Ordering::Relaxed) != cfg.weight {
                            changes.reweighted.push(cfg.name.clone());
                        }
                        Arc::clone(b)
                    }
                    None => {
                        changes.added.push(cfg.name.clone());
                        Arc::new(Backend::new(cfg))
                    }
                }
            })
            .collect();
        for b in old.iter() {
            if !list.iter().any(|n| Arc::ptr_eq(n, b)) {
                changes.removed.push(b.name.clone());
            }
        }
        self.current.store(Arc::new(list));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, port: u16, weight: u32) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            address: BackendAddress::Ip(([127, 0, 0, 1], port).into()),
            weight,
        }
    }

    #[test]
    fn update_keeps_matching_backends_and_their_counters() {
        let set = BackendSet::new(&[cfg("a", 1, 1), cfg("b", 2, 1), cfg("c", 3, 1)]);
        let a = Arc::clone(&set.snapshot()[0]);
        let guard = a.connected();
        let changes = set.update(&[cfg("a", 1, 5), cfg("c", 4, 1), cfg("d", 5, 1)]);
        assert_eq!(
            changes,
            BackendChanges {
                added: vec!["c".into(), "d".into()],
                removed: vec!["b".into(), "c".into()],
                reweighted: vec!["a".into()],
            }
        );
        let now = set.snapshot();
        assert!(Arc::ptr_eq(&now[0], &a));
        assert_eq!(now[0].weight(), 5);
        assert_eq!(now[0].active(), 1);
        drop(guard);
        assert_eq!(a.active(), 0);
        assert_eq!(a.total(), 1);
    }

    #[test]
    fn failures_reset_on_connect() {
        let set = BackendSet::new(&[cfg("a", 1, 1)]);
        let a = Arc::clone(&set.snapshot()[0]);
        assert_eq!(a.connect_failed(), 1);
        assert_eq!(a.connect_failed(), 2);
        let _g = a.connected();
        assert_eq!(a.consecutive_failures(), 0);
    }
}
