//! The table of open connections, for the control plane: which client is on which backend,
//! since when, how much it moved and when it was last active, and a per-connection signal
//! to shed it gracefully (see [`crate::rebalance`]).
//!
//! A table is sharded by owner: each data-plane worker owns a [`ConnTable`] (numbered by
//! the worker) and readers take [`ConnTable::snapshot`] of all of them. A connection takes the table's lock once when it opens and once when it closes;
//! per message it only does the relaxed atomic stores of [`Activity`], so no lock is on the
//! forwarding path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::forward::Activity;
use crate::backend::Backend;

/// A connection's id, unique across every table of the process.
pub type ConnId = u64;

/// Bits of a [`ConnId`] below the table number.
const SEQ_BITS: u32 = 48;

/// The number of the table that handed out `id` (the worker's index).
pub(crate) fn table_of(id: ConnId) -> usize {
    usize::try_from(id >> SEQ_BITS).unwrap_or(usize::MAX)
}

/// One open connection as the table holds it.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub(crate) id: ConnId,
    pub(crate) client: SocketAddr,
    pub(crate) backend: Arc<Backend>,
    /// Byte counts and last-byte times, updated by the forwarding code.
    pub(crate) activity: Activity,
    /// Notified to ask the connection to close gracefully; it does so only when quiet.
    pub(crate) shed: Notify,
}

/// One open connection as readers see it: a copy taken at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its id (for [`crate::proxy::Proxy::shed`]).
    pub id: ConnId,
    /// The client's address.
    pub client: SocketAddr,
    /// The backend (endpoint) name it is forwarded to.
    pub backend: String,
    /// When the backend leg was established.
    pub since: Instant,
    /// Time of the last byte from the client (`since` if none yet).
    pub last_up: Instant,
    /// Time of the last byte from the backend (`since` if none yet).
    pub last_down: Instant,
    /// Bytes client to backend so far.
    pub up: u64,
    /// Bytes backend to client so far.
    pub down: u64,
}

impl Connection {
    /// Whether the backend sent the last byte (a response or event fully delivered, no
    /// request in flight). False when neither side sent anything yet, or both at the same
    /// instant.
    pub fn server_spoke_last(&self) -> bool {
        self.last_down > self.last_up
    }
}

/// The open connections of one owner.
#[derive(Debug)]
pub struct ConnTable {
    /// The table number, in the top bits of every id it hands out.
    base: u64,
    next: AtomicU64,
    open: Mutex<HashMap<ConnId, Arc<Tracked>>>,
}

impl ConnTable {
    /// An empty table; `number` must differ between the tables of one process.
    pub fn new(number: u16) -> Self {
        Self {
            base: u64::from(number) << SEQ_BITS,
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Register a connection just established to `backend`; it stays in the table until
    /// the returned entry drops.
    pub(crate) fn insert(self: &Arc<Self>, client: SocketAddr, backend: Arc<Backend>) -> Entry {
        let seq = self.next.fetch_add(1, Ordering::Relaxed) & ((1 << SEQ_BITS) - 1);
        let tracked = Arc::new(Tracked {
            id: self.base | seq,
            client,
            backend,
            activity: Activity::new(),
            shed: Notify::new(),
        });
        lock(&self.open).insert(tracked.id, Arc::clone(&tracked));
        Entry {
            table: Arc::clone(self),
            tracked,
        }
    }

    /// Every open connection, copied now; those being shed (closing gracefully) are left
    /// out.
    pub fn snapshot(&self) -> Vec<Connection> {
        let open: Vec<Arc<Tracked>> = lock(&self.open).values().cloned().collect();
        open.iter()
            .filter(|t| !t.activity.closing())
            .map(|t| {
                let a = &t.activity;
                Connection {
                    id: t.id,
                    client: t.client,
                    backend: t.backend.name().to_owned(),
                    since: a.since(),
                    last_up: a.last_up(),
                    last_down: a.last_down(),
                    up: a.up.load(Ordering::Relaxed),
                    down: a.down.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ask connection `id` to close gracefully (FIN on both legs at a quiet instant). False
    /// if it is not open (any more).
    pub fn shed(&self, id: ConnId) -> bool {
        let tracked = lock(&self.open).get(&id).cloned();
        match tracked {
            Some(t) => {
                t.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in its table: removed when dropped, however the connection ends.
#[derive(Debug)]
pub(crate) struct Entry {
    table: Arc<ConnTable>,
    pub(crate) tracked: Arc<Tracked>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        lock(&self.table.open).remove(&self.tracked.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain data; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
