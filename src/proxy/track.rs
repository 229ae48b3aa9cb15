//! The table of open connections, for the control plane: which client is on which backend,
//! since when, how much it moved and when it was last active; and each connection's
//! [`Signal`], by which the rest of the process tells it to end: idle, cut at the end of a
//! drain, its backend down (`onDown: close`), or shed gracefully (see [`crate::rebalance`]).
//!
//! A table is sharded by owner: each data-plane worker owns a [`ConnTable`] (numbered by
//! the worker) and readers take [`ConnTable::snapshot`] of all of them. A connection takes the table's lock once when it opens and once when it closes;
//! per message it only does the relaxed atomic stores of [`Activity`], so no lock is on the
//! forwarding path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
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
    /// What is asked of it, raised from outside its task.
    pub(crate) signal: Signal,
    /// Its backend's [`Backend::closings`] when it was established.
    closings: u64,
    /// Whether [`Why::Tune`] was raised (once per connection).
    tune_raised: AtomicBool,
}

/// What the rest of the process asks of a connection through its [`Signal`]: to end, for
/// one of four reasons, or to tune its backend leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Why {
    /// The end of a drain.
    Cut = 1,
    /// Its backend went down with `onDown: close`.
    Kill = 2,
    /// No byte either way for `timeouts.idle`.
    Idle = 4,
    /// The rebalancer asks it to close gracefully; honoured only at a quiet instant.
    Shed = 8,
    /// Not an end: it lived [`TUNE_LATE_AFTER`](super::socket::TUNE_LATE_AFTER), so its
    /// backend leg takes the options of [`tune_late`](super::socket::tune_late).
    Tune = 16,
}

impl Why {
    /// In the order they are answered when several are raised.
    pub(crate) const ALL: [Why; 5] = [Why::Cut, Why::Kill, Why::Idle, Why::Shed, Why::Tune];
}

/// The reasons raised for one connection to end and the waker of its task: raising one is
/// an atomic or and a wake-up, and a connection's forwarding loop checks it on each wake-up
/// with one atomic load and a waker registration on memory no other connection touches.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicU8,
    waker: AtomicWaker,
}

impl Signal {
    /// Raise `why` and wake the connection.
    pub(crate) fn raise(&self, why: Why) {
        self.raised.fetch_or(why as u8, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Forget `why`: a shed that could not be honoured, or a tune done.
    pub(crate) fn clear(&self, why: Why) {
        self.raised.fetch_and(!(why as u8), Ordering::AcqRel);
    }

    /// The first reason raised, or pending with the task registered for the next one.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Why> {
        if let Some(w) = self.first() {
            return Poll::Ready(w);
        }
        self.waker.register(cx.waker());
        // Raised between the check and the registration: not lost.
        self.first().map_or(Poll::Pending, Poll::Ready)
    }

    /// Ready once `why` is raised, whatever else is; the task is registered either way.
    pub(crate) fn poll_raised(&self, cx: &mut Context<'_>, why: Why) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.raised.load(Ordering::Acquire) & (why as u8) != 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn first(&self) -> Option<Why> {
        let raised = self.raised.load(Ordering::Acquire);
        Why::ALL.into_iter().find(|w| raised & (*w as u8) != 0)
    }
}

/// Whether a connection whose last byte moved at `last` is idle at `now` for `idle`.
pub(crate) fn idle_at(last: Instant, idle: Duration, now: Instant) -> bool {
    now.saturating_duration_since(last) >= idle
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
            activity: Activity::new(),
            signal: Signal::default(),
            closings: backend.closings(),
            tune_raised: AtomicBool::new(false),
            backend,
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
                t.signal.raise(Why::Shed);
                true
            }
            None => false,
        }
    }

    /// Raise `why` on every open connection.
    pub(crate) fn raise_all(&self, why: Why) {
        self.raise_where(why, |_| true);
    }

    /// Raise [`Why::Idle`] on the connections idle at `now` for `idle`; how many.
    pub(crate) fn raise_idle(&self, idle: Duration, now: Instant) -> usize {
        self.raise_where(Why::Idle, |t| idle_at(t.activity.last(), idle, now))
    }

    /// Raise [`Why::Tune`] once on each connection established at or before `born`; how
    /// many now.
    pub(crate) fn raise_tune(&self, born: Instant) -> usize {
        self.raise_where(Why::Tune, |t| {
            t.activity.since() <= born
                && !t.tune_raised.load(Ordering::Relaxed)
                && !t.tune_raised.swap(true, Ordering::Relaxed)
        })
    }

    /// Raise [`Why::Kill`] on the connections whose backend closed its connections since
    /// they were established; how many.
    pub(crate) fn raise_closed(&self) -> usize {
        self.raise_where(Why::Kill, |t| t.backend.closings() != t.closings)
    }

    /// Raise `why` on the open connections `pick` chooses; how many.
    fn raise_where(&self, why: Why, mut pick: impl FnMut(&Tracked) -> bool) -> usize {
        let mut n = 0;
        for t in lock(&self.open).values() {
            if pick(t) {
                t.signal.raise(why);
                n += 1;
            }
        }
        n
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

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;
    use crate::backend::BackendSet;
    use crate::config::{BackendAddress, BackendConfig, HealthConfig};

    fn set() -> BackendSet {
        let cfg = |name: &str, port: u16| BackendConfig {
            name: name.into(),
            address: BackendAddress::Ip(([127, 0, 0, 1], port).into()),
            weight: 1,
            health: HealthConfig::default(),
        };
        BackendSet::new(&[cfg("a", 1), cfg("b", 2)]).0
    }

    fn raised(t: &Tracked) -> Option<Why> {
        match t.signal.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(w) => Some(w),
            Poll::Pending => None,
        }
    }

    fn client(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_is_raised_only_past_the_timeout_of_the_last_byte() {
        let set = set();
        let table = Arc::new(ConnTable::new(0));
        let a = set.find("a").expect("a");
        let quiet = table.insert(client(1), Arc::clone(&a));
        tokio::time::advance(Duration::from_secs(5)).await;
        let busy = table.insert(client(2), a);
        let idle = Duration::from_secs(5);
        assert_eq!(table.raise_idle(idle, Instant::now()), 1);
        assert_eq!(raised(&quiet.tracked), Some(Why::Idle));
        assert_eq!(raised(&busy.tracked), None);
        // A byte moved resets its clock.
        tokio::time::advance(Duration::from_secs(4)).await;
        busy.tracked.activity.sent_up(1);
        tokio::time::advance(Duration::from_secs(4)).await;
        table.raise_idle(idle, Instant::now());
        assert_eq!(raised(&busy.tracked), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        table.raise_idle(idle, Instant::now());
        assert_eq!(raised(&busy.tracked), Some(Why::Idle));
    }

    #[test]
    fn a_closing_kills_the_connections_established_before_it_only() {
        let set = set();
        let table = Arc::new(ConnTable::new(0));
        let (a, b) = (set.find("a").expect("a"), set.find("b").expect("b"));
        let mut closings = set.watch_closings();
        let old = table.insert(client(1), Arc::clone(&a));
        let other = table.insert(client(2), b);
        set.close_connections(&a);
        assert!(closings.has_changed().expect("open"));
        closings.mark_unchanged();
        let new = table.insert(client(3), a);
        assert_eq!(table.raise_closed(), 1);
        assert_eq!(raised(&old.tracked), Some(Why::Kill));
        assert_eq!(raised(&other.tracked), None, "another backend's");
        assert_eq!(raised(&new.tracked), None, "established after the closing");
    }

    #[tokio::test(start_paused = true)]
    async fn tune_is_raised_once_on_connections_old_enough() {
        let set = set();
        let table = Arc::new(ConnTable::new(0));
        let a = set.find("a").expect("a");
        let old = table.insert(client(1), Arc::clone(&a));
        tokio::time::advance(Duration::from_secs(1)).await;
        let young = table.insert(client(2), a);
        let born = Instant::now() - Duration::from_secs(1);
        assert_eq!(table.raise_tune(born), 1);
        assert_eq!(raised(&old.tracked), Some(Why::Tune));
        assert_eq!(raised(&young.tracked), None);
        old.tracked.signal.clear(Why::Tune);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(table.raise_tune(Instant::now() - Duration::from_secs(1)), 1);
        assert_eq!(raised(&old.tracked), None, "once only");
        assert_eq!(raised(&young.tracked), Some(Why::Tune));
    }

    #[test]
    fn reasons_are_answered_in_order_and_a_shed_can_be_forgotten() {
        let s = Signal::default();
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(s.poll(cx).is_pending());
        s.raise(Why::Shed);
        assert_eq!(s.poll(cx), Poll::Ready(Why::Shed));
        s.clear(Why::Shed);
        assert!(s.poll(cx).is_pending());
        s.raise(Why::Idle);
        s.raise(Why::Cut);
        assert_eq!(s.poll(cx), Poll::Ready(Why::Cut));
        assert!(s.poll_raised(cx, Why::Idle).is_ready());
        assert!(s.poll_raised(cx, Why::Kill).is_pending());
    }

    #[test]
    fn a_raise_wakes_the_registered_task_and_a_cut_reaches_every_connection() {
        let set = set();
        let table = Arc::new(ConnTable::new(0));
        let a = set.find("a").expect("a");
        let entries: Vec<Entry> = (1..=3)
            .map(|p| table.insert(client(p), Arc::clone(&a)))
            .collect();
        let (waker, count) = counting_waker();
        for e in &entries {
            assert!(
                e.tracked
                    .signal
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        table.raise_all(Why::Cut);
        assert_eq!(count.load(Ordering::SeqCst), 3);
        for e in &entries {
            assert_eq!(raised(&e.tracked), Some(Why::Cut));
        }
        assert!(table.shed(entries[0].tracked.id));
        drop(entries);
        assert!(table.is_empty());
    }

    fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(Arc::clone(&n)))), n)
    }
}
