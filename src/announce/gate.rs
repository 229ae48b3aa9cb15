//! The pure core of route announcement: from the number of Up backends, the threshold and
//! the hold time, decide whether this host offers the VIPs. Withdraw at once when too few
//! backends are Up; announce again only after enough have stayed Up for `hold`. Time is
//! passed in; nothing here touches the kernel.

use std::time::Duration;

use tokio::time::Instant;

/// Whether the routes are in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not offered: the routes are deleted.
    Withdrawn,
    /// Offered: the routes are in the table.
    Announced,
}

impl State {
    /// As shown in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Withdrawn => "withdrawn",
            State::Announced => "announced",
        }
    }
}

/// Why the routes changed: the `reason` label of `apilb_announce_transitions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Enough backends Up for `hold`.
    Healthy,
    /// Fewer backends Up than `track.healthyBackendsBelow`.
    Unhealthy,
    /// The process is stopping.
    Shutdown,
    /// A reload added or removed the address, or moved its route.
    Reload,
}

impl Reason {
    /// Every reason, for pre-registering metric label values.
    pub const ALL: [Reason; 4] = [
        Reason::Healthy,
        Reason::Unhealthy,
        Reason::Shutdown,
        Reason::Reload,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Healthy => "healthy",
            Reason::Unhealthy => "unhealthy",
            Reason::Shutdown => "shutdown",
            Reason::Reload => "reload",
        }
    }
}

/// A decision to change the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

/// The health gate of one `announce` section (all its addresses move together).
#[derive(Debug, Clone)]
pub struct Gate {
    below: usize,
    hold: Duration,
    state: State,
    up: usize,
    /// Since when enough backends have been Up, while withdrawn.
    healthy_since: Option<Instant>,
    stopped: bool,
}

impl Gate {
    /// Withdrawn, with nothing seen yet: the first healthy count starts the hold.
    pub fn new(below: usize, hold: Duration) -> Gate {
        Gate {
            below,
            hold,
            state: State::Withdrawn,
            up: 0,
            healthy_since: None,
            stopped: false,
        }
    }

    /// The state decided last.
    pub fn state(&self) -> State {
        self.state
    }

    /// `up` backends are Up at `now`: the transition to carry out, if any.
    pub fn observe(&mut self, up: usize, now: Instant) -> Option<Transition> {
        self.up = up;
        self.decide(now)
    }

    /// Time passed (the deadline of [`Gate::wake_at`] came): the transition, if any.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        self.decide(now)
    }

    /// When to call [`Gate::tick`] next: the end of the hold, while one runs.
    pub fn wake_at(&self) -> Option<Instant> {
        match (self.state, self.healthy_since) {
            (State::Withdrawn, Some(since)) if !self.stopped => Some(since + self.hold),
            _ => None,
        }
    }

    /// New `track.healthyBackendsBelow` and `hold` (a reload), applied at `now`.
    pub fn set_params(&mut self, below: usize, hold: Duration, now: Instant) -> Option<Transition> {
        self.below = below;
        self.hold = hold;
        self.decide(now)
    }

    /// The process is stopping: withdraw (if announced) and never announce again.
    pub fn stop(&mut self) -> Option<Transition> {
        self.stopped = true;
        self.healthy_since = None;
        self.move_to(State::Withdrawn, Reason::Shutdown)
    }

    fn decide(&mut self, now: Instant) -> Option<Transition> {
        if self.stopped {
            return None;
        }
        let healthy = self.up >= self.below;
        if !healthy {
            self.healthy_since = None;
            return self.move_to(State::Withdrawn, Reason::Unhealthy);
        }
        if self.state == State::Announced {
            return None;
        }
        let since = *self.healthy_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.hold {
            self.healthy_since = None;
            return self.move_to(State::Announced, Reason::Healthy);
        }
        None
    }

    fn move_to(&mut self, to: State, reason: Reason) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        self.state = to;
        Some(Transition { to, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(2);

    /// One step of a scenario: at `at` ms, either `Some(up)` backends are Up or time passes
    /// (`None`); the expected transition.
    type Step = (u64, Option<usize>, Option<(State, Reason)>);

    fn run(below: usize, hold: Duration, steps: &[Step]) {
        let t0 = Instant::now();
        let mut g = Gate::new(below, hold);
        for (i, (at, up, want)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_millis(*at);
            let got = match up {
                Some(n) => g.observe(*n, now),
                None => g.tick(now),
            };
            let got = got.map(|t| (t.to, t.reason));
            assert_eq!(got, *want, "step {i} (at {at} ms, up {up:?})");
        }
    }

    use Reason::*;
    use State::*;

    #[test]
    fn announces_only_after_healthy_for_hold() {
        // Input: 1 Up at 0, still at 1999 ms, 2000 ms. Output: announced at 2000 ms.
        run(
            1,
            HOLD,
            &[
                (0, Some(1), None),
                (1999, None, None),
                (2000, None, Some((Announced, Healthy))),
                (2500, Some(3), None),
            ],
        );
    }

    #[test]
    fn withdraws_at_once_and_the_hold_starts_over() {
        // Input: announced; Up drops to 0 at 5 s; back at 5.5 s, down at 6 s, back at 6.1 s.
        // Output: withdrawn at 5 s; announced again only 2 s after 6.1 s.
        run(
            1,
            HOLD,
            &[
                (0, Some(2), None),
                (2000, None, Some((Announced, Healthy))),
                (5000, Some(0), Some((Withdrawn, Unhealthy))),
                (5500, Some(1), None),
                (6000, Some(0), None),
                (6100, Some(1), None),
                (7600, None, None),
                (8099, None, None),
                (8100, None, Some((Announced, Healthy))),
            ],
        );
    }

    #[test]
    fn the_threshold_counts_up_backends() {
        // Input: below 2; 1 Up never announces; 2 Up announces after hold; 1 Up withdraws.
        run(
            2,
            HOLD,
            &[
                (0, Some(1), None),
                (3000, None, None),
                (3000, Some(2), None),
                (5000, Some(3), Some((Announced, Healthy))),
                (6000, Some(1), Some((Withdrawn, Unhealthy))),
            ],
        );
    }

    #[test]
    fn zero_hold_announces_at_once() {
        run(
            1,
            Duration::ZERO,
            &[
                (0, Some(0), None),
                (10, Some(1), Some((Announced, Healthy))),
            ],
        );
    }

    #[test]
    fn wake_at_is_the_end_of_the_hold() {
        let t0 = Instant::now();
        let mut g = Gate::new(1, HOLD);
        assert_eq!(g.wake_at(), None);
        g.observe(1, t0 + Duration::from_millis(300));
        assert_eq!(g.wake_at(), Some(t0 + Duration::from_millis(2300)));
        g.observe(0, t0 + Duration::from_millis(400));
        assert_eq!(g.wake_at(), None);
    }

    #[test]
    fn stop_withdraws_and_nothing_announces_after() {
        let t0 = Instant::now();
        let mut g = Gate::new(1, Duration::ZERO);
        assert!(g.observe(1, t0).is_some());
        assert_eq!(
            g.stop(),
            Some(Transition {
                to: Withdrawn,
                reason: Shutdown
            })
        );
        assert_eq!(g.observe(3, t0 + HOLD * 2), None);
        assert_eq!(g.wake_at(), None);
        assert_eq!(g.stop(), None);
    }

    #[test]
    fn a_reload_can_raise_the_threshold_or_shorten_the_hold() {
        let t0 = Instant::now();
        let mut g = Gate::new(1, HOLD);
        assert_eq!(g.observe(2, t0), None);
        // Hold shortened to 1 s, 1.5 s into the old hold: announce now.
        assert_eq!(
            g.set_params(1, Duration::from_secs(1), t0 + Duration::from_millis(1500))
                .map(|t| t.to),
            Some(Announced)
        );
        // Threshold raised above the Up count: withdraw now.
        assert_eq!(
            g.set_params(3, HOLD, t0 + Duration::from_secs(2)),
            Some(Transition {
                to: Withdrawn,
                reason: Unhealthy
            })
        );
    }
}
