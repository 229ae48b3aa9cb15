//! The pure core of the rebalancer: given the backends, the open connections and the time,
//! decide the state, the skew and which connections to close now. No sockets, no clock:
//! [`Rebalancer::observe`] and [`Rebalancer::step`] take `now`, so every rule is a table
//! test.
//!
//! Rules (the `rebalance:` keys are in [`RebalanceConfig`]):
//! - Skew is the highest over the mean of connections per unit of weight, over Up backends
//!   ([`skew`]); it is never below 1.
//! - Shedding starts once the skew has stayed above `skew` for `after` (or at once when an
//!   operator triggers it) and continues until no Up backend is above its share (the mean
//!   times its weight, rounded up), counting connections closed in the last
//!   [`RECONNECT_GRACE`] as already placed elsewhere.
//! - Nothing is shed while fewer than two backends are Up, while any backend is flapping
//!   (left Up [`FLAP_LEAVES`] times within [`FLAP_WINDOW`]), or while a backend below its
//!   share has been Up for less than `warmup` (it would receive the moved clients cold) or
//!   is still in its slow start (least-connections would send them back).
//! - Victims come only from backends above their share, fewest bytes per second first; each
//!   must be older than `minAge`, quiet both ways for `quiet` with the server having sent the
//!   last byte, from a client address not moved within `perClient`; a connection that finds
//!   no quiet moment within [`NEVER_QUIET_BOUND`] is left alone.
//! - Closes are paced by token buckets: `maxRate` per second overall, and per backend the
//!   smaller of `maxRate` and [`PER_BACKEND_SHARE`] of its connections (at least one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RebalanceConfig;
use crate::proxy::{ConnId, Connection};

/// A connection closed by the rebalancer is expected back (on another backend) within
/// this long; until its client address shows up in a newer connection it counts towards
/// the total the shares are computed from.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(5);
/// A candidate that finds no quiet moment within this long is skipped for the episode.
pub const NEVER_QUIET_BOUND: Duration = Duration::from_secs(30);
/// Leaving Up this many times within [`FLAP_WINDOW`] makes a backend flapping.
pub const FLAP_LEAVES: usize = 3;
/// See [`FLAP_LEAVES`].
pub const FLAP_WINDOW: Duration = Duration::from_secs(120);
/// Per-backend close rate as a share of its connections per second (at least one per
/// second, at most `maxRate`).
pub const PER_BACKEND_SHARE: f64 = 0.005;

/// What the rebalancer is doing (`apilb_rebalance_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Balanced, or nothing could be moved.
    Idle,
    /// Skewed, waiting for `after` to pass.
    Waiting,
    /// Closing connections on over-loaded backends.
    Shedding,
    /// Skewed, but moving now would hurt (see [`Pause`]).
    Paused,
}

impl State {
    /// Every state, for metrics.
    pub const ALL: [State; 4] = [State::Idle, State::Waiting, State::Shedding, State::Paused];

    /// Its label.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Waiting => "waiting",
            State::Shedding => "shedding",
            State::Paused => "paused",
        }
    }
}

/// Why shedding is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Fewer than two backends are Up.
    TooFewUp,
    /// A backend is flapping.
    Flapping,
    /// A backend that would receive moved clients has not been Up for `warmup`.
    Warming,
}

impl Pause {
    /// For logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Pause::TooFewUp => "fewer than two backends up",
            Pause::Flapping => "a backend is flapping",
            Pause::Warming => "a backend is warming up",
        }
    }
}

/// Why a candidate connection was not closed (`apilb_rebalance_skipped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Bytes moved within `quiet`, or the client spoke last (a request in flight).
    Busy,
    /// Younger than `minAge`.
    Young,
    /// Its client address was moved within `perClient`.
    RecentClient,
    /// No quiet moment within [`NEVER_QUIET_BOUND`].
    NoQuietMoment,
}

impl Skip {
    /// Every reason, for metrics.
    pub const ALL: [Skip; 4] = [
        Skip::Busy,
        Skip::Young,
        Skip::RecentClient,
        Skip::NoQuietMoment,
    ];

    /// Its label.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Busy => "busy",
            Skip::Young => "young",
            Skip::RecentClient => "recent_client",
            Skip::NoQuietMoment => "no_quiet_moment",
        }
    }
}

/// One backend endpoint as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Endpoint name.
    pub name: String,
    /// Configured weight (at least 1).
    pub weight: u32,
    /// Whether it takes new connections.
    pub up: bool,
    /// Up, but its slow start still gives it a reduced weight: moved clients would mostly
    /// land back where they came from.
    pub ramping: bool,
}

/// A connection to close now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The connection.
    pub id: ConnId,
    /// Its backend.
    pub backend: String,
    /// Its age.
    pub age: Duration,
    /// Its client's address.
    pub client: IpAddr,
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The state after the step.
    pub state: State,
    /// Why, when paused.
    pub pause: Option<Pause>,
    /// Highest over mean connections per weight over Up backends (1 when there are none).
    pub skew: f64,
    /// Connections above their backends' shares (what an ideal rebalance moves).
    pub excess: usize,
    /// Close these now.
    pub closes: Vec<Close>,
    /// Candidates passed over, each reason counted once per connection and episode.
    pub skipped: Vec<Skip>,
}

/// Skew of `(weight, connections)` pairs: the highest connections per weight over the
/// mean (total connections over total weight). 1 when there is nothing to compare.
pub fn skew(loads: &[(u32, usize)]) -> f64 {
    let total: usize = loads.iter().map(|l| l.1).sum();
    let weight: u64 = loads.iter().map(|l| u64::from(l.0.max(1))).sum();
    if total == 0 || weight == 0 {
        return 1.0;
    }
    let mean = total as f64 / weight as f64;
    let max = loads
        .iter()
        .map(|&(w, n)| n as f64 / f64::from(w.max(1)))
        .fold(0.0, f64::max);
    (max / mean).max(1.0)
}

/// Each backend's share of `total` connections by weight, rounded up.
fn shares(loads: &[(u32, usize)], total: usize) -> Vec<usize> {
    let weight: u64 = loads.iter().map(|l| u64::from(l.0.max(1))).sum();
    loads
        .iter()
        .map(|&(w, _)| {
            if weight == 0 {
                return 0;
            }
            // Integer ceiling of total * w / weight.
            let num = total as u64 * u64::from(w.max(1));
            num.div_ceil(weight) as usize
        })
        .collect()
}

/// A token bucket holding up to one second of tokens.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// One token to start with: the first close need not wait.
    fn new(now: Instant) -> Self {
        Self {
            tokens: 1.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate.max(1.0));
        self.last = now;
    }

    fn whole(&self) -> usize {
        self.tokens.floor().max(0.0) as usize
    }
}

/// What the core remembers of one backend.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Since when it has been Up; `None` while not Up.
    up_since: Option<Instant>,
    /// When it left Up, within [`FLAP_WINDOW`].
    leaves: VecDeque<Instant>,
}

/// The rebalancer's memory between steps.
#[derive(Debug)]
pub struct Rebalancer {
    tracks: HashMap<String, Track>,
    /// Since when the skew has been above `skew`.
    above_since: Option<Instant>,
    /// An operator asked for a rebalance now.
    triggered: bool,
    /// Shedding started and has not reached the shares yet.
    episode: bool,
    global: Option<Bucket>,
    buckets: HashMap<String, Bucket>,
    /// Client addresses moved, and when.
    moved_clients: HashMap<IpAddr, Instant>,
    /// Candidates found busy, and since when.
    busy_since: HashMap<ConnId, Instant>,
    /// Candidates that found no quiet moment in time.
    given_up: HashSet<ConnId>,
    /// Client addresses closed and when, until they are back or [`RECONNECT_GRACE`] passed.
    pending: VecDeque<(IpAddr, Instant)>,
    /// Skips already reported this episode.
    reported: HashSet<(ConnId, Skip)>,
}

impl Default for Rebalancer {
    fn default() -> Self {
        Self::new()
    }
}

impl Rebalancer {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self {
            tracks: HashMap::new(),
            above_since: None,
            triggered: false,
            episode: false,
            global: None,
            buckets: HashMap::new(),
            moved_clients: HashMap::new(),
            busy_since: HashMap::new(),
            given_up: HashSet::new(),
            pending: VecDeque::new(),
            reported: HashSet::new(),
        }
    }

    /// An operator asks for a rebalance now: shed down to the shares without waiting for
    /// `after` or the skew threshold (pauses and the per-connection rules still hold).
    pub fn trigger(&mut self) {
        self.triggered = true;
    }

    /// A close this core chose did not happen (the connection was busy at that instant):
    /// its client may be chosen again and is not expected back.
    pub fn declined(&mut self, client: IpAddr) {
        self.moved_clients.remove(&client);
        if let Some(i) = self.pending.iter().position(|&(ip, _)| ip == client) {
            self.pending.remove(i);
        }
    }

    /// Note which endpoints are Up at `now` (call on every change of the backend view, so
    /// short flaps are seen). Endpoints not listed are forgotten.
    pub fn observe(&mut self, now: Instant, endpoints: &[(String, bool)]) {
        self.tracks
            .retain(|name, _| endpoints.iter().any(|(n, _)| n == name));
        for (name, up) in endpoints {
            let t = self.tracks.entry(name.clone()).or_default();
            match (t.up_since, *up) {
                (None, true) => t.up_since = Some(now),
                (Some(_), false) => {
                    t.up_since = None;
                    t.leaves.push_back(now);
                }
                _ => {}
            }
        }
    }

    /// Decide at `now`, for `endpoints` (as last observed; they are observed again here)
    /// and the open `conns`.
    pub fn step(
        &mut self,
        now: Instant,
        cfg: &RebalanceConfig,
        endpoints: &[Endpoint],
        conns: &[Connection],
    ) -> Plan {
        let ups: Vec<(String, bool)> = endpoints.iter().map(|e| (e.name.clone(), e.up)).collect();
        self.observe(now, &ups);
        self.forget_old(now, cfg, conns);

        let up: Vec<&Endpoint> = endpoints.iter().filter(|e| e.up).collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for c in conns {
            *count.entry(c.backend.as_str()).or_default() += 1;
        }
        let loads: Vec<(u32, usize)> = up
            .iter()
            .map(|e| (e.weight, count.get(e.name.as_str()).copied().unwrap_or(0)))
            .collect();
        let skew = skew(&loads);
        if skew > cfg.skew {
            self.above_since.get_or_insert(now);
        } else {
            self.above_since = None;
        }
        let total: usize = loads.iter().map(|l| l.1).sum::<usize>() + self.pending.len();
        let share = shares(&loads, total);
        let excess_of: Vec<usize> = loads
            .iter()
            .zip(&share)
            .map(|(&(_, n), &s)| n.saturating_sub(s))
            .collect();
        let excess: usize = excess_of.iter().sum();

        let mut plan = Plan {
            state: State::Idle,
            pause: None,
            skew,
            excess,
            closes: Vec::new(),
            skipped: Vec::new(),
        };
        if excess == 0 {
            self.end_episode();
            return plan;
        }
        let due = cfg.enabled
            && self
                .above_since
                .is_some_and(|t| now.saturating_duration_since(t) >= cfg.after);
        let wanted = self.episode || self.triggered || due;
        let skewed = wanted || (cfg.enabled && self.above_since.is_some());
        if !skewed {
            return plan;
        }
        let warming = up.iter().zip(&loads).zip(&share).any(|((e, l), s)| {
            let cold = || {
                self.tracks.get(&e.name).is_none_or(|t| {
                    t.up_since
                        .is_none_or(|u| now.saturating_duration_since(u) < cfg.warmup)
                })
            };
            l.1 < *s && (e.ramping || cold())
        });
        plan.pause = if up.len() < 2 {
            Some(Pause::TooFewUp)
        } else if self.tracks.values().any(|t| t.leaves.len() >= FLAP_LEAVES) {
            Some(Pause::Flapping)
        } else if warming {
            Some(Pause::Warming)
        } else {
            None
        };
        if plan.pause.is_some() {
            plan.state = State::Paused;
            return plan;
        }
        if !wanted {
            plan.state = State::Waiting;
            return plan;
        }
        if !self.episode {
            self.episode = true;
            self.global = Some(Bucket::new(now));
            self.buckets.clear();
        }
        plan.state = State::Shedding;
        self.choose(now, cfg, &up, &loads, &excess_of, conns, &mut plan);
        plan
    }

    fn end_episode(&mut self) {
        self.episode = false;
        self.triggered = false;
        self.global = None;
        self.buckets.clear();
        self.busy_since.clear();
        self.given_up.clear();
        self.reported.clear();
    }

    fn forget_old(&mut self, now: Instant, cfg: &RebalanceConfig, conns: &[Connection]) {
        let since = |t: Instant| now.saturating_duration_since(t);
        if !self.pending.is_empty() {
            // Back: a connection from the same address opened since the close.
            let back = |ip: IpAddr, at: Instant| {
                conns.iter().any(|c| c.client.ip() == ip && c.since >= at)
            };
            self.pending
                .retain(|&(ip, at)| since(at) < RECONNECT_GRACE && !back(ip, at));
        }
        self.moved_clients
            .retain(|_, &mut t| since(t) < cfg.per_client);
        for t in self.tracks.values_mut() {
            while t.leaves.front().is_some_and(|&l| since(l) >= FLAP_WINDOW) {
                t.leaves.pop_front();
            }
        }
    }

    /// Pick this step's victims from each over-loaded backend within the rate limits.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &mut self,
        now: Instant,
        cfg: &RebalanceConfig,
        up: &[&Endpoint],
        loads: &[(u32, usize)],
        excess_of: &[usize],
        conns: &[Connection],
        plan: &mut Plan,
    ) {
        let open: HashSet<ConnId> = conns.iter().map(|c| c.id).collect();
        self.busy_since.retain(|id, _| open.contains(id));
        self.given_up.retain(|id| open.contains(id));
        let max_rate = f64::from(cfg.max_rate);
        let Some(global) = self.global.as_mut() else {
            return;
        };
        global.refill(now, max_rate);
        // Most over-loaded first, so a tight global budget goes where it matters most.
        let mut order: Vec<usize> = (0..up.len()).filter(|&i| excess_of[i] > 0).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(excess_of[i]));
        for i in order {
            let name = &up[i].name;
            let rate = (loads[i].1 as f64 * PER_BACKEND_SHARE).clamp(1.0, max_rate);
            let bucket = self
                .buckets
                .entry(name.clone())
                .or_insert_with(|| Bucket::new(now));
            bucket.refill(now, rate);
            let global_whole = self.global.as_ref().map_or(0, Bucket::whole);
            let budget = excess_of[i].min(bucket.whole()).min(global_whole);
            if budget == 0 {
                continue;
            }
            let mut candidates: Vec<&Connection> =
                conns.iter().filter(|c| &c.backend == name).collect();
            // Fewest bytes per second first; the oldest first among equals.
            candidates.sort_by(|a, b| {
                traffic(a, now)
                    .total_cmp(&traffic(b, now))
                    .then(a.since.cmp(&b.since))
            });
            let mut chosen = 0;
            for c in candidates {
                if chosen == budget {
                    break;
                }
                match self.verdict(now, cfg, c) {
                    Ok(()) => {
                        chosen += 1;
                        self.moved_clients.insert(c.client.ip(), now);
                        self.pending.push_back((c.client.ip(), now));
                        self.busy_since.remove(&c.id);
                        plan.closes.push(Close {
                            id: c.id,
                            backend: name.clone(),
                            age: now.saturating_duration_since(c.since),
                            client: c.client.ip(),
                        });
                    }
                    Err(skip) => {
                        if self.reported.insert((c.id, skip)) {
                            plan.skipped.push(skip);
                        }
                    }
                }
            }
            if let Some(b) = self.buckets.get_mut(name) {
                b.tokens -= chosen as f64;
            }
            if let Some(g) = self.global.as_mut() {
                g.tokens -= chosen as f64;
            }
        }
    }

    /// Whether `c` may be closed now, or why not.
    fn verdict(&mut self, now: Instant, cfg: &RebalanceConfig, c: &Connection) -> Result<(), Skip> {
        if self.given_up.contains(&c.id) {
            return Err(Skip::NoQuietMoment);
        }
        if now.saturating_duration_since(c.since) < cfg.min_age {
            return Err(Skip::Young);
        }
        if self.moved_clients.contains_key(&c.client.ip()) {
            return Err(Skip::RecentClient);
        }
        let quiet = now.saturating_duration_since(c.last_up) >= cfg.quiet
            && now.saturating_duration_since(c.last_down) >= cfg.quiet
            && c.server_spoke_last();
        if quiet {
            return Ok(());
        }
        let first = *self.busy_since.entry(c.id).or_insert(now);
        if now.saturating_duration_since(first) >= NEVER_QUIET_BOUND {
            self.given_up.insert(c.id);
            return Err(Skip::NoQuietMoment);
        }
        Err(Skip::Busy)
    }
}

/// Bytes per second over the connection's life.
fn traffic(c: &Connection, now: Instant) -> f64 {
    let age = now
        .saturating_duration_since(c.since)
        .as_secs_f64()
        .max(1e-3);
    (c.up + c.down) as f64 / age
}

#[cfg(test)]
mod tests;
