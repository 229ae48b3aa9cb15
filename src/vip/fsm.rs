//! The VRRPv3 state machine (RFC 9568 section 6.4), pure: `(state, event, now) -> actions`.
//!
//! [`Fsm::handle`] takes an [`Event`] and the current time and returns the [`Action`]s the
//! caller must carry out (send an advert, add or remove the addresses, announce them). Timers
//! are deadlines kept here; the caller sleeps until [`Fsm::next_deadline`] and then passes
//! [`Event::Timer`]. Nothing here touches a socket or a clock, so every scenario is a plain
//! test.
//!
//! Beyond the RFC: tracking (the effective priority drops by `weight` while fewer than
//! `healthyBackendsBelow` backends are up, with a hold time as hysteresis), keepalived's
//! `preempt_delay`, a fault path when the addresses cannot be added, and a make-before-break
//! hand-over:
//!
//! - A stopping master sends priority 0 but keeps the addresses (so the proxy keeps
//!   accepting on them) until one advert interval after it hears the new master's first
//!   advert (keepalived announces just after that advert), or until [`release_bound`]
//!   passes; only then does it remove them and go to Initialize. It repeats the priority-0
//!   advert every interval until it hears the new master, in case one is lost.
//! - A new master adds the addresses and announces them *before* its first advert, so when
//!   the old master (seeing that advert) lets go, clients already follow the new MAC.
//!
//! Between those two points both hosts hold the addresses for a moment; that is harmless
//! because clients follow the newest gratuitous ARP / unsolicited NA, which is the new
//! master's. Without this, a SYN sent in the skew time (nobody holds the address) is
//! dropped and the client retries it only after TCP's 1 s initial retransmission timeout.
//! The price: a connection the old master accepted just before clients follow the new MAC,
//! whose request was not sent yet, is reset by the new master. `handover: breakBeforeMake`
//! ([`Handover`]) takes the other side of that trade: keepalived's order, remove the
//! addresses and then send priority 0.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Handover, TrackConfig};

/// After taking over, the announcements are repeated this much later (keepalived's
/// `garp_master_delay` default), for switches and hosts that missed the first burst.
pub const ANNOUNCE_REPEAT: Duration = Duration::from_secs(5);
/// After the addresses could not be added, wait at least this long before trying again.
pub const FAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Priority of the address owner (goes master at once); never reached through config.
pub const OWNER_PRIORITY: u8 = 255;
/// A stopping master waits for the new master's first advert at most this many advert
/// intervals (a backup takes over within one: its skew time).
pub const RELEASE_ADVERTS: u32 = 3;
/// ... and never longer than this, whatever the interval (the caller's stop is bounded).
pub const RELEASE_LIMIT: Duration = Duration::from_secs(2);

/// How long a stopping master with advert interval `interval` keeps the addresses while it
/// waits for the new master: [`RELEASE_ADVERTS`] intervals, at most [`RELEASE_LIMIT`].
pub fn release_bound(interval: Duration) -> Duration {
    (interval * RELEASE_ADVERTS).min(RELEASE_LIMIT)
}

/// RFC states. `Initialize` is both "not started" and "stopped".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not taking part.
    Initialize,
    /// Watching the master's adverts.
    Backup,
    /// Holding the addresses and advertising.
    Master,
}

impl State {
    /// Every state, for metric labels.
    pub const ALL: [State; 3] = [State::Initialize, State::Backup, State::Master];

    /// Lower-case name for logs, metrics and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings the machine runs with; all may change live through [`Event::Reconfigure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Configured priority (1-254, or 255 for an owner).
    pub priority: u8,
    /// Our Advertisement_Interval.
    pub interval: Duration,
    /// Preempt_Mode.
    pub preempt: bool,
    /// Wait this long after first seeing a lower-priority master before preempting it.
    pub preempt_delay: Duration,
    /// Priority tracking of the proxy's healthy backends.
    pub track: Option<TrackConfig>,
    /// Our primary address on the interface, the tie-breaker between equal priorities.
    pub local: IpAddr,
    /// The order of a graceful stop as master.
    pub handover: Handover,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Leave Initialize (the addresses were checked and the sockets are open).
    Start,
    /// Graceful stop: tell the backups (priority 0) and release the addresses once the new
    /// master is heard (or [`release_bound`] passes).
    Stop,
    /// The earliest deadline ([`Fsm::next_deadline`]) has passed.
    Timer,
    /// A valid advert for our VRID and address list from another router.
    Advert {
        /// Sender's address.
        from: IpAddr,
        /// Sender's priority.
        priority: u8,
        /// Sender's Max Advertise Interval.
        interval: Duration,
    },
    /// The proxy has this many healthy backends now.
    Healthy(usize),
    /// Adding the addresses failed (permission, interface gone): give up mastership for now.
    AddressFailure,
    /// New settings (a reload).
    Reconfigure(Params),
}

/// Why a transition happened (a log and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Start-up.
    Startup,
    /// No advert from a master within Master_Down_Interval (or Skew_Time after a
    /// priority-0 advert).
    MasterDown,
    /// Address owner start-up.
    Owner,
    /// A router with a higher priority (or equal priority and higher address) is master.
    Preempted,
    /// Graceful stop: the new master was heard.
    Shutdown,
    /// Graceful stop: no new master was heard within [`release_bound`].
    ShutdownUnanswered,
    /// The addresses could not be added.
    AddressFailure,
}

impl Reason {
    /// Label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::MasterDown => "master_down",
            Reason::Owner => "owner",
            Reason::Preempted => "preempted",
            Reason::Shutdown => "shutdown",
            Reason::ShutdownUnanswered => "shutdown_unanswered",
            Reason::AddressFailure => "address_failure",
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one advert with this priority (to the group or every unicast peer).
    SendAdvert {
        /// 0 on shutdown, else the effective priority.
        priority: u8,
    },
    /// Put the virtual addresses on the interface.
    AddAddresses,
    /// Take them off.
    RemoveAddresses,
    /// Send gratuitous ARPs / unsolicited NAs for every address.
    Announce,
    /// The state changed (log, count, update status).
    Transition {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// Another master was seen while we were master (a healed partition or a config
    /// mismatch); resolved by the RFC rules.
    SplitBrain {
        /// The other master.
        peer: IpAddr,
        /// Its priority.
        peer_priority: u8,
        /// Whether we gave way.
        yielded: bool,
    },
    /// The effective priority changed through tracking.
    PriorityChanged {
        /// Old effective priority.
        from: u8,
        /// New effective priority.
        to: u8,
    },
}

/// One virtual router.
#[derive(Debug, Clone)]
pub struct Fsm {
    params: Params,
    state: State,
    master_adver_interval: Duration,
    adver_at: Option<Instant>,
    down_at: Option<Instant>,
    announce_at: Option<Instant>,
    /// While a stopping master waits for the new one: when it lets go at the latest.
    release_at: Option<Instant>,
    /// While releasing: whether the new master has been heard.
    heard: bool,
    /// When a lower-priority master was first seen (for `preempt_delay`).
    lower_master_since: Option<Instant>,
    /// Tracking: whether the priority is lowered now.
    degraded: bool,
    /// Tracking: the side of the threshold the count is on, and since when, while it
    /// disagrees with `degraded`.
    track_pending: Option<(bool, Instant)>,
    master: Option<IpAddr>,
}

impl Fsm {
    /// A machine in Initialize.
    pub fn new(params: Params) -> Self {
        let mai = params.interval;
        Self {
            params,
            state: State::Initialize,
            master_adver_interval: mai,
            adver_at: None,
            down_at: None,
            announce_at: None,
            release_at: None,
            heard: false,
            lower_master_since: None,
            degraded: false,
            track_pending: None,
            master: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The priority sent in adverts and compared against others'.
    pub fn priority(&self) -> u8 {
        let p = self.params.priority;
        match (self.degraded, self.params.track) {
            (true, Some(t)) if p != OWNER_PRIORITY => p.saturating_sub(t.weight).max(1),
            _ => p,
        }
    }

    /// Whether a stopping master is waiting for the new master before it lets go of the
    /// addresses (the state is still Master).
    pub fn releasing(&self) -> bool {
        self.release_at.is_some()
    }

    /// The master as far as we know: us, the sender of the last accepted advert, or none.
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// The settings in force.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Master_Down_Interval for our current priority and the learned interval.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew()
    }

    /// Skew_Time = (256 - Priority) x Master_Adver_Interval / 256.
    pub fn skew(&self) -> Duration {
        let nanos =
            self.master_adver_interval.as_nanos() * (256 - u128::from(self.priority())) / 256;
        Duration::from_nanos(nanos as u64)
    }

    /// When [`Event::Timer`] should be delivered next.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.adver_at,
            self.down_at,
            self.announce_at,
            self.release_at,
            self.track_pending
                .and_then(|(_, since)| self.params.track.map(|t| since + t.hold)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Apply `event` at `now`; the actions to carry out, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => self.start(now, &mut out),
            Event::Stop => self.stop(now, &mut out),
            Event::Timer => self.timer(now, &mut out),
            Event::Advert {
                from,
                priority,
                interval,
            } => self.advert(from, priority, interval, now, &mut out),
            Event::Healthy(n) => self.healthy(n, now, &mut out),
            Event::AddressFailure => {
                if self.state == State::Master && !self.releasing() {
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveAddresses);
                    self.become_backup(now, Reason::AddressFailure, &mut out);
                    self.down_at = Some(now + self.master_down_interval().max(FAULT_BACKOFF));
                }
            }
            Event::Reconfigure(p) => self.reconfigure(p, now, &mut out),
        }
        out
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        // An earlier run may have crashed holding the addresses.
        out.push(Action::RemoveAddresses);
        if self.params.priority == OWNER_PRIORITY {
            self.become_master(now, Reason::Owner, out);
        } else {
            self.become_backup(now, Reason::Startup, out);
        }
    }

    fn stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize => {}
            // Already waiting for the new master.
            State::Master if self.releasing() => {}
            // keepalived's order: nothing accepted after this point can be cut by the switch.
            State::Master if self.params.handover == Handover::BreakBeforeMake => {
                out.push(Action::RemoveAddresses);
                out.push(Action::SendAdvert { priority: 0 });
                self.leave(Reason::Shutdown, out);
            }
            State::Master => {
                // Make before break: keep the addresses until the new master is heard.
                out.push(Action::SendAdvert { priority: 0 });
                self.adver_at = Some(now + self.params.interval);
                self.announce_at = None;
                self.release_at = Some(now + release_bound(self.params.interval));
            }
            State::Backup => self.finish_stop(Reason::Shutdown, out),
        }
    }

    /// Leave for Initialize, releasing the addresses if we hold them.
    fn finish_stop(&mut self, reason: Reason, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::RemoveAddresses);
        }
        self.leave(reason, out);
    }

    /// Go to Initialize and forget every timer and the master; the addresses are the
    /// caller's business.
    fn leave(&mut self, reason: Reason, out: &mut Vec<Action>) {
        self.transition(State::Initialize, reason, out);
        self.adver_at = None;
        self.down_at = None;
        self.announce_at = None;
        self.release_at = None;
        self.heard = false;
        self.master = None;
    }

    fn timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some((want, since)) = self.track_pending {
            if self.params.track.is_some_and(|t| now >= since + t.hold) {
                self.set_degraded(want, now, out);
            }
        }
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if self.down_at.is_some_and(|t| now >= t) {
                    self.become_master(now, Reason::MasterDown, out);
                }
            }
            State::Master if self.releasing() => {
                if self.release_at.is_some_and(|t| now >= t) {
                    let master = self.master;
                    if self.heard {
                        self.finish_stop(Reason::Shutdown, out);
                        self.master = master;
                    } else {
                        self.finish_stop(Reason::ShutdownUnanswered, out);
                    }
                } else if self.adver_at.is_some_and(|t| now >= t) {
                    out.push(Action::SendAdvert { priority: 0 });
                    self.adver_at = Some(now + self.params.interval);
                }
            }
            State::Master => {
                if self.adver_at.is_some_and(|t| now >= t) {
                    out.push(Action::SendAdvert {
                        priority: self.priority(),
                    });
                    self.adver_at = Some(now + self.params.interval);
                }
                if self.announce_at.is_some_and(|t| now >= t) {
                    out.push(Action::Announce);
                    self.announce_at = None;
                }
            }
        }
    }

    fn advert(
        &mut self,
        from: IpAddr,
        priority: u8,
        interval: Duration,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let local = self.priority();
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if priority == 0 {
                    self.down_at = Some(now + self.skew());
                    return;
                }
                let lower = self.params.preempt && priority < local;
                let delaying = lower && {
                    let since = *self.lower_master_since.get_or_insert(now);
                    now < since + self.params.preempt_delay
                };
                if !lower || delaying {
                    if !lower {
                        self.lower_master_since = None;
                    }
                    self.master_adver_interval = interval;
                    self.down_at = Some(now + self.master_down_interval());
                    self.master = Some(from);
                }
                // Else: a lower-priority master and we preempt: let the timer run out.
            }
            State::Master if self.releasing() => {
                // Any advert but a priority-0 one comes from the new master. apilb adds and
                // announces before its first advert, but keepalived 2.2.7 advertises first
                // and adds the addresses and announces them right after: hold on for one
                // more interval (within the bound), then let go.
                if priority != 0 && !self.heard {
                    self.heard = true;
                    self.master = Some(from);
                    self.adver_at = None;
                    let linger = now + self.params.interval;
                    self.release_at = self.release_at.map(|t| t.min(linger));
                }
            }
            State::Master => {
                if priority == 0 {
                    out.push(Action::SendAdvert { priority: local });
                    self.adver_at = Some(now + self.params.interval);
                    return;
                }
                let yields = priority > local || (priority == local && from > self.params.local);
                out.push(Action::SplitBrain {
                    peer: from,
                    peer_priority: priority,
                    yielded: yields,
                });
                if yields {
                    out.push(Action::RemoveAddresses);
                    self.master_adver_interval = interval;
                    self.become_backup(now, Reason::Preempted, out);
                    self.master = Some(from);
                } else {
                    // Assert ourselves at once (as keepalived does) so the other side gives
                    // way without waiting for our next advert, and announce again: the other
                    // master has announced itself (a new master announces before its first
                    // advert), so clients now send to its MAC, and it is about to remove the
                    // addresses; without this they would stall on a stale ARP / neighbour
                    // entry until it expires (seconds).
                    out.push(Action::SendAdvert { priority: local });
                    out.push(Action::Announce);
                    self.adver_at = Some(now + self.params.interval);
                }
            }
        }
    }

    fn healthy(&mut self, n: usize, now: Instant, out: &mut Vec<Action>) {
        let Some(track) = self.params.track else {
            return;
        };
        let want = n < track.healthy_backends_below;
        if want == self.degraded {
            self.track_pending = None;
            return;
        }
        match self.track_pending {
            Some((w, _)) if w == want => {}
            _ => self.track_pending = Some((want, now)),
        }
        if track.hold.is_zero() {
            self.set_degraded(want, now, out);
        }
    }

    fn set_degraded(&mut self, degraded: bool, now: Instant, out: &mut Vec<Action>) {
        self.track_pending = None;
        if degraded == self.degraded {
            return;
        }
        let from = self.priority();
        self.degraded = degraded;
        let to = self.priority();
        if from != to {
            out.push(Action::PriorityChanged { from, to });
            self.priority_changed(now, out);
        }
    }

    /// After the effective priority changed: a master tells the backups at once, so a
    /// better one can preempt without waiting for the next advert.
    fn priority_changed(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Master && !self.releasing() {
            out.push(Action::SendAdvert {
                priority: self.priority(),
            });
            self.adver_at = Some(now + self.params.interval);
        }
    }

    fn reconfigure(&mut self, p: Params, now: Instant, out: &mut Vec<Action>) {
        let before = self.priority();
        if p.track.is_none() {
            self.degraded = false;
            self.track_pending = None;
        }
        let interval_changed = p.interval != self.params.interval;
        self.params = p;
        let after = self.priority();
        if before != after {
            out.push(Action::PriorityChanged {
                from: before,
                to: after,
            });
            self.priority_changed(now, out);
        } else if interval_changed && self.state == State::Master && !self.releasing() {
            self.adver_at = Some(now + self.params.interval);
        }
    }

    fn become_master(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        // Addresses and announcements before the advert: a stopping or preempted master lets
        // go when it hears this advert, and by then clients already follow our MAC.
        out.push(Action::AddAddresses);
        out.push(Action::Announce);
        out.push(Action::SendAdvert {
            priority: self.priority(),
        });
        self.transition(State::Master, reason, out);
        self.adver_at = Some(now + self.params.interval);
        self.announce_at = Some(now + ANNOUNCE_REPEAT);
        self.down_at = None;
        self.lower_master_since = None;
        self.master = Some(self.params.local);
    }

    fn become_backup(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        if self.state == State::Initialize {
            self.master_adver_interval = self.params.interval;
        }
        self.transition(State::Backup, reason, out);
        self.adver_at = None;
        self.announce_at = None;
        self.master = None;
        self.down_at = Some(now + self.master_down_interval());
    }

    fn transition(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        if self.state != to {
            out.push(Action::Transition {
                from: self.state,
                to,
                reason,
            });
            self.state = to;
        }
    }
}

#[cfg(test)]
mod tests;
