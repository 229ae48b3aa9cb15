//! The health state machine of one backend: pure, with time passed in.
//!
//! ```text
//!            fall x Fail / Refused / passiveFall connect failures
//!   Up ───────────────────────────────────────────────────────────> Down
//!   │ ^                                                              │ ^
//!   │ └──────────────── rise x Pass (slow start begins) ─────────────┘ │
//!   │ fall x Draining (readyz fails, livez passes)                      │
//!   └──────────────> Drain ── fall x Fail / Refused ────────────────────┘
//!                      └──── rise x Pass ──> Up
//! ```
//! An operator's override (`drain`, `maint`) hides the checked state until `enable`; checks
//! keep running underneath so the backend returns with a current state.
//!
//! The reason and the failure count always describe the state now: the override while one
//! is set, else the latest check (a failure below `fall`, the failure that holds it down, or
//! the passes counting towards `rise`), never a cause that has since gone away.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// What clients see of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes new connections.
    Up,
    /// Takes no new connections; established ones continue until they end.
    Drain,
    /// Failed; takes new connections only when every backend is down (fail open).
    Down,
    /// Set by an operator: no new connections.
    Maint,
}

impl State {
    /// Lower-case name, as in metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Drain => "drain",
            State::Down => "down",
            State::Maint => "maint",
        }
    }

    /// Every state, for metrics that label each.
    pub const ALL: [State; 4] = [State::Up, State::Drain, State::Down, State::Maint];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason while an operator's `maint` is set.
const MAINT_REASON: &str = "maintenance set by operator";
/// The reason while an operator's `drain` is set.
const DRAIN_REASON: &str = "drained by operator";

/// An operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// No new connections; existing ones finish.
    Drain,
    /// Out of service.
    Maint,
}

/// The result of one active check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Readiness failed while liveness passed: a graceful apiserver shutdown.
    Draining(String),
    /// Failed (bad status, timeout, TLS failure).
    Fail(String),
    /// Nothing listens: the connection was refused. Down at once.
    Refused(String),
}

impl Outcome {
    /// The `outcome` label of check metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Draining(_) => "draining",
            Outcome::Fail(_) => "fail",
            Outcome::Refused(_) => "refused",
        }
    }
}

/// A change of the state clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why, for logs and status.
    pub reason: String,
}

/// Thresholds the machine applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passes to come up.
    pub rise: u32,
    /// Consecutive failures to go down (or draining results to drain).
    pub fall: u32,
    /// Consecutive failed client connects that mark down at once; 0 = off.
    pub passive_fall: u32,
    /// Ramp-up time after coming back; zero = off.
    pub slow_start: Duration,
}

/// The health of one backend.
#[derive(Debug, Clone)]
pub struct Health {
    checked: State,
    admin: Option<Admin>,
    passes: u32,
    /// Failed or draining results in a row, towards `fall` (from up) or past it.
    fails: u32,
    /// Checks in a row that did not pass (fail, refused, or readyz failing), for status.
    failed_checks: u32,
    passive_fails: u32,
    /// Why the checks (or failed client connects) say what they say.
    checked_reason: String,
    /// When the backend last came up from down or drain (slow start runs from here).
    up_since: Option<Instant>,
    last_check: Option<Instant>,
}

impl Health {
    /// A new backend is presumed up, so clients are served from the first moment; a dead
    /// one is caught by its first check or first failed connect.
    pub fn new() -> Self {
        Self {
            checked: State::Up,
            admin: None,
            passes: 0,
            fails: 0,
            failed_checks: 0,
            passive_fails: 0,
            checked_reason: "starting".into(),
            up_since: None,
            last_check: None,
        }
    }

    /// What clients see.
    pub fn state(&self) -> State {
        match self.admin {
            Some(Admin::Maint) => State::Maint,
            Some(Admin::Drain) => State::Drain,
            None => self.checked,
        }
    }

    /// The state checks say, ignoring any override.
    pub fn checked_state(&self) -> State {
        self.checked
    }

    /// Why the backend is in the state clients see: the operator's override while one is
    /// set, else what the latest checks say.
    pub fn reason(&self) -> String {
        match self.admin {
            Some(Admin::Maint) => MAINT_REASON.to_owned(),
            Some(Admin::Drain) => DRAIN_REASON.to_owned(),
            None => self.checked_reason.clone(),
        }
    }

    /// The longer run of checks that did not pass and of failed client connects, each
    /// counted since the last success of its kind (a passing check ends both).
    pub fn consecutive_failures(&self) -> u32 {
        self.failed_checks.max(self.passive_fails)
    }

    /// When the last check finished.
    pub fn last_check(&self) -> Option<Instant> {
        self.last_check
    }

    /// True while the backend is between states: a failure or a pass that has not yet
    /// reached its threshold. Checks then run at the fast interval.
    pub fn in_transition(&self) -> bool {
        match self.checked {
            State::Up => self.fails > 0,
            _ => self.passes > 0,
        }
    }

    /// Share of its weight the backend gets now, in (0, 1]: ramps linearly over slow start
    /// after coming back, never below 5 %.
    pub fn slow_start_factor(&self, now: Instant, slow_start: Duration) -> f64 {
        match self.up_since {
            Some(since) if !slow_start.is_zero() && self.state() == State::Up => {
                let f =
                    now.saturating_duration_since(since).as_secs_f64() / slow_start.as_secs_f64();
                f.clamp(0.05, 1.0)
            }
            _ => 1.0,
        }
    }

    /// Feed one check result.
    pub fn on_check(
        &mut self,
        outcome: Outcome,
        now: Instant,
        t: &Thresholds,
    ) -> Option<Transition> {
        self.last_check = Some(now);
        let before = self.state();
        match outcome {
            Outcome::Pass => {
                self.fails = 0;
                self.failed_checks = 0;
                self.passive_fails = 0;
                self.passes = self.passes.saturating_add(1);
                if self.checked == State::Up {
                    self.passes = 0;
                    "checks pass".clone_into(&mut self.checked_reason);
                } else if self.passes >= t.rise {
                    self.checked_reason = format!("{} checks passed", self.passes);
                    self.passes = 0;
                    self.checked = State::Up;
                    self.up_since = Some(now);
                } else {
                    self.checked_reason =
                        format!("coming back: {} of {} checks passed", self.passes, t.rise);
                }
            }
            Outcome::Refused(why) => {
                self.passes = 0;
                self.fails = self.fails.saturating_add(1);
                self.failed_checks = self.failed_checks.saturating_add(1);
                self.go_down(why);
            }
            Outcome::Fail(why) => {
                self.passes = 0;
                self.fails = self.fails.saturating_add(1);
                self.failed_checks = self.failed_checks.saturating_add(1);
                if self.checked == State::Down || self.fails >= t.fall {
                    self.go_down(why);
                } else {
                    self.checked_reason = format!(
                        "{why} ({} of {} failed checks to go down)",
                        self.fails, t.fall
                    );
                }
            }
            Outcome::Draining(why) => {
                self.passes = 0;
                self.failed_checks = self.failed_checks.saturating_add(1);
                match self.checked {
                    State::Up => {
                        self.fails = self.fails.saturating_add(1);
                        if self.fails >= t.fall {
                            self.checked = State::Drain;
                            self.checked_reason = why;
                        } else {
                            self.checked_reason = format!(
                                "{why} ({} of {} such checks to drain)",
                                self.fails, t.fall
                            );
                        }
                    }
                    // Down stays down until it passes: an apiserver that is starting has
                    // the same readyz-fails, livez-passes signature.
                    State::Down | State::Drain | State::Maint => self.checked_reason = why,
                }
            }
        }
        self.transition(before)
    }

    /// Feed one failed client connect; `passive_fall` in a row mark the backend down.
    pub fn on_connect_failure(&mut self, why: &str, t: &Thresholds) -> Option<Transition> {
        let before = self.state();
        self.passive_fails = self.passive_fails.saturating_add(1);
        if t.passive_fall > 0 && self.passive_fails >= t.passive_fall && self.checked != State::Down
        {
            self.passes = 0;
            self.go_down(format!("client connect failed: {why}"));
        }
        self.transition(before)
    }

    /// A client connect succeeded.
    pub fn on_connect_success(&mut self) {
        self.passive_fails = 0;
    }

    /// Set or clear the operator's override. Clearing it returns the checked state, with
    /// the checks' own reason.
    pub fn set_admin(&mut self, admin: Option<Admin>, now: Instant) -> Option<Transition> {
        let before = self.state();
        self.admin = admin;
        if admin.is_none() && self.checked == State::Up && before != State::Up {
            // Back from maintenance or a drain at `now`: ramp up like any returning backend.
            self.up_since = Some(now);
        }
        self.transition(before).map(|mut t| {
            if admin.is_none() {
                t.reason = format!("enabled by operator; checks: {}", t.reason);
            }
            t
        })
    }

    fn go_down(&mut self, why: String) {
        self.checked = State::Down;
        self.up_since = None;
        self.checked_reason = why;
    }

    fn transition(&self, before: State) -> Option<Transition> {
        let after = self.state();
        (after != before).then(|| Transition {
            from: before,
            to: after,
            reason: self.reason(),
        })
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        rise: 2,
        fall: 2,
        passive_fall: 1,
        slow_start: Duration::from_secs(30),
    };

    fn fail() -> Outcome {
        Outcome::Fail("HTTP 500".into())
    }

    fn states(h: &mut Health, outcomes: Vec<Outcome>) -> Vec<State> {
        let now = Instant::now();
        outcomes
            .into_iter()
            .map(|o| {
                h.on_check(o, now, &T);
                h.state()
            })
            .collect()
    }

    #[test]
    fn up_goes_down_after_fall_failures_and_back_after_rise_passes() {
        // Input: fail, pass, fail, fail, pass, pass. Output: down only after 2 in a row,
        // up only after 2 passes in a row.
        let mut h = Health::new();
        use State::*;
        assert_eq!(
            states(
                &mut h,
                vec![
                    fail(),
                    Outcome::Pass,
                    fail(),
                    fail(),
                    Outcome::Pass,
                    Outcome::Pass
                ]
            ),
            [Up, Up, Up, Down, Down, Up]
        );
    }

    #[test]
    fn refused_is_down_at_once() {
        let mut h = Health::new();
        let t = h.on_check(
            Outcome::Refused("connection refused".into()),
            Instant::now(),
            &T,
        );
        assert_eq!(
            t,
            Some(Transition {
                from: State::Up,
                to: State::Down,
                reason: "connection refused".into()
            })
        );
    }

    #[test]
    fn readyz_failing_with_livez_passing_drains_then_down_when_it_exits() {
        let mut h = Health::new();
        let d = || Outcome::Draining("readyz 500, livez 200".into());
        use State::*;
        assert_eq!(states(&mut h, vec![d(), d(), d()]), [Up, Drain, Drain]);
        // The apiserver exits: refused.
        assert_eq!(
            states(&mut h, vec![Outcome::Refused("refused".into())]),
            [Down]
        );
        // Starting again: readyz fails, livez passes - still down; then ready.
        assert_eq!(
            states(&mut h, vec![d(), Outcome::Pass, Outcome::Pass]),
            [Down, Down, Up]
        );
    }

    #[test]
    fn drain_comes_back_up_when_ready_again() {
        let mut h = Health::new();
        let d = || Outcome::Draining("readyz 500".into());
        use State::*;
        assert_eq!(
            states(&mut h, vec![d(), d(), Outcome::Pass, Outcome::Pass]),
            [Up, Drain, Drain, Up]
        );
    }

    #[test]
    fn passive_failures_mark_down_and_a_check_brings_it_back() {
        let mut h = Health::new();
        let t = h.on_connect_failure("refused", &T);
        assert_eq!(t.map(|t| t.to), Some(State::Down));
        assert!(h.reason().contains("client connect failed"));
        use State::*;
        assert_eq!(
            states(&mut h, vec![Outcome::Pass, Outcome::Pass]),
            [Down, Up]
        );
        // passiveFall 3: two failures are not enough; a success resets the count.
        let t3 = Thresholds {
            passive_fall: 3,
            ..T
        };
        assert_eq!(h.on_connect_failure("x", &t3), None);
        assert_eq!(h.on_connect_failure("x", &t3), None);
        h.on_connect_success();
        assert_eq!(h.on_connect_failure("x", &t3), None);
        // passiveFall 0: off.
        let off = Thresholds {
            passive_fall: 0,
            ..T
        };
        for _ in 0..10 {
            assert_eq!(h.on_connect_failure("x", &off), None);
        }
    }

    #[test]
    fn transitions_are_flagged_for_fast_checks() {
        let mut h = Health::new();
        assert!(!h.in_transition());
        h.on_check(fail(), Instant::now(), &T);
        assert!(h.in_transition());
        h.on_check(fail(), Instant::now(), &T);
        assert!(!h.in_transition(), "steady down");
        h.on_check(Outcome::Pass, Instant::now(), &T);
        assert!(h.in_transition());
    }

    #[test]
    fn operator_override_hides_checks_until_enabled() {
        let mut h = Health::new();
        let t = h
            .set_admin(Some(Admin::Maint), Instant::now())
            .expect("transition");
        assert_eq!((t.from, t.to), (State::Up, State::Maint));
        // Checks still count underneath.
        states(&mut h, vec![fail(), fail()]);
        assert_eq!(h.state(), State::Maint);
        assert_eq!(h.checked_state(), State::Down);
        let t = h.set_admin(None, Instant::now()).expect("transition");
        assert_eq!((t.from, t.to), (State::Maint, State::Down));
        let t = h.set_admin(Some(Admin::Drain), Instant::now());
        assert_eq!(t.map(|t| t.to), Some(State::Drain));
    }

    /// One thing that happens to a backend, for the table tests.
    enum Step {
        Check(Outcome),
        ConnectFailed,
        Connected,
        Operator(Option<Admin>),
    }

    fn timeout() -> Step {
        Step::Check(Outcome::Fail("no answer within 500ms".into()))
    }

    fn pass() -> Step {
        Step::Check(Outcome::Pass)
    }

    fn refused() -> Step {
        Step::Check(Outcome::Refused("connection refused".into()))
    }

    fn draining() -> Step {
        Step::Check(Outcome::Draining(
            "readyz HTTP 500 while livez passes".into(),
        ))
    }

    #[test]
    fn reason_and_failure_count_describe_the_state_now() {
        use Step::*;
        // Input: steps from a new backend (rise 2, fall 2, passiveFall 1).
        // Output: the state clients see, the reason, and consecutive failures.
        let cases: Vec<(&str, Vec<Step>, State, &str, u32)> = vec![
            ("new", vec![], State::Up, "starting", 0),
            ("passing", vec![pass()], State::Up, "checks pass", 0),
            (
                "one timeout below fall",
                vec![pass(), timeout()],
                State::Up,
                "no answer within 500ms (1 of 2 failed checks to go down)",
                1,
            ),
            (
                "down by timeouts",
                vec![timeout(), timeout()],
                State::Down,
                "no answer within 500ms",
                2,
            ),
            (
                "still down: the count goes on",
                vec![timeout(), timeout(), timeout()],
                State::Down,
                "no answer within 500ms",
                3,
            ),
            (
                "down, now refused: the reason is the latest",
                vec![timeout(), timeout(), refused()],
                State::Down,
                "connection refused",
                3,
            ),
            (
                "down, the cause gone: no stale failure",
                vec![timeout(), timeout(), pass()],
                State::Down,
                "coming back: 1 of 2 checks passed",
                0,
            ),
            (
                "back up",
                vec![timeout(), timeout(), pass(), pass()],
                State::Up,
                "2 checks passed",
                0,
            ),
            (
                "draining below fall",
                vec![draining()],
                State::Up,
                "readyz HTTP 500 while livez passes (1 of 2 such checks to drain)",
                1,
            ),
            (
                "drained by the apiserver",
                vec![draining(), draining()],
                State::Drain,
                "readyz HTTP 500 while livez passes",
                2,
            ),
            (
                "down by a failed client connect",
                vec![ConnectFailed],
                State::Down,
                "client connect failed: connection refused",
                1,
            ),
            (
                "a connect succeeds again, checks still say down",
                vec![timeout(), timeout(), ConnectFailed, Connected],
                State::Down,
                "no answer within 500ms",
                2,
            ),
            (
                "maintenance",
                vec![Operator(Some(Admin::Maint)), timeout(), timeout()],
                State::Maint,
                "maintenance set by operator",
                2,
            ),
            (
                "operator drain",
                vec![Operator(Some(Admin::Drain))],
                State::Drain,
                "drained by operator",
                0,
            ),
            (
                "enabled while checks fail: the checks' reason, not the operator's",
                vec![Operator(Some(Admin::Maint)), refused(), Operator(None)],
                State::Down,
                "connection refused",
                1,
            ),
            (
                "enabled after the cause went away in maintenance",
                vec![
                    timeout(),
                    timeout(),
                    Operator(Some(Admin::Maint)),
                    pass(),
                    pass(),
                    pass(),
                    Operator(None),
                ],
                State::Up,
                "checks pass",
                0,
            ),
        ];
        for (name, steps, state, reason, failures) in cases {
            let mut h = Health::new();
            let now = Instant::now();
            for step in steps {
                match step {
                    Check(o) => {
                        h.on_check(o, now, &T);
                    }
                    ConnectFailed => {
                        h.on_connect_failure("connection refused", &T);
                    }
                    Connected => h.on_connect_success(),
                    Operator(a) => {
                        h.set_admin(a, now);
                    }
                }
            }
            assert_eq!(
                (h.state(), h.reason().as_str(), h.consecutive_failures()),
                (state, reason, failures),
                "{name}"
            );
        }
    }

    #[test]
    fn enabling_logs_the_state_checks_found() {
        let mut h = Health::new();
        h.set_admin(Some(Admin::Maint), Instant::now());
        h.on_check(
            Outcome::Refused("connection refused".into()),
            Instant::now(),
            &T,
        );
        assert_eq!(
            h.set_admin(None, Instant::now()),
            Some(Transition {
                from: State::Maint,
                to: State::Down,
                reason: "enabled by operator; checks: connection refused".into()
            })
        );
    }

    #[test]
    fn slow_start_ramps_after_coming_back() {
        let t0 = Instant::now();
        let mut h = Health::new();
        assert_eq!(
            h.slow_start_factor(t0, T.slow_start),
            1.0,
            "not on first start"
        );
        h.on_check(Outcome::Refused("x".into()), t0, &T);
        h.on_check(Outcome::Pass, t0, &T);
        h.on_check(Outcome::Pass, t0, &T);
        assert_eq!(h.state(), State::Up);
        assert_eq!(h.slow_start_factor(t0, T.slow_start), 0.05);
        let f = h.slow_start_factor(t0 + Duration::from_secs(15), T.slow_start);
        assert!((f - 0.5).abs() < 1e-9, "{f}");
        assert_eq!(
            h.slow_start_factor(t0 + Duration::from_secs(31), T.slow_start),
            1.0
        );
        assert_eq!(h.slow_start_factor(t0, Duration::ZERO), 1.0, "off");
    }

    /// Every rise/fall pair from 1 to 4: the transition happens on exactly the rise-th or
    /// fall-th result in a row, a result of the other kind restarts the count, and the
    /// transition is reported once.
    #[test]
    fn rise_and_fall_thresholds_table() {
        let t0 = Instant::now();
        for rise in 1..=4u32 {
            for fall in 1..=4u32 {
                let t = Thresholds {
                    rise,
                    fall,
                    passive_fall: 0,
                    slow_start: Duration::ZERO,
                };
                let case = format!("rise {rise}, fall {fall}");
                let mut h = Health::new();
                let mut now = t0;
                let mut feed = |h: &mut Health, o: Outcome| {
                    now += Duration::from_secs(1);
                    h.on_check(o, now, &t)
                };
                // fall - 1 failures, a pass (resets), fall - 1 failures: still up.
                for round in 0..2 {
                    for _ in 1..fall {
                        assert_eq!(feed(&mut h, fail()), None, "{case}, round {round}");
                    }
                    assert_eq!(h.state(), State::Up, "{case}");
                    if round == 0 {
                        assert_eq!(feed(&mut h, Outcome::Pass), None, "{case}");
                    }
                }
                // The fall-th failure in a row: down, reported once.
                let tr = feed(&mut h, fail()).expect("down on the fall-th failure");
                assert_eq!((tr.from, tr.to), (State::Up, State::Down), "{case}");
                assert_eq!(feed(&mut h, fail()), None, "{case}: reported once");
                // rise - 1 passes, a failure (resets), rise - 1 passes: still down.
                for round in 0..2 {
                    for _ in 1..rise {
                        assert_eq!(feed(&mut h, Outcome::Pass), None, "{case}, round {round}");
                    }
                    assert_eq!(h.state(), State::Down, "{case}");
                    if round == 0 {
                        assert_eq!(feed(&mut h, fail()), None, "{case}");
                    }
                }
                let tr = feed(&mut h, Outcome::Pass).expect("up on the rise-th pass");
                assert_eq!((tr.from, tr.to), (State::Down, State::Up), "{case}");
                assert_eq!(feed(&mut h, Outcome::Pass), None, "{case}: reported once");
                // Draining results count like failures toward fall, and end in Drain.
                let d = || Outcome::Draining("readyz 500, livez 200".into());
                for _ in 1..fall {
                    assert_eq!(feed(&mut h, d()), None, "{case}");
                }
                let tr = feed(&mut h, d()).expect("drain on the fall-th draining result");
                assert_eq!((tr.from, tr.to), (State::Up, State::Drain), "{case}");
            }
        }
    }

    /// Slow start after coming back (from down or drain) over a 40 s ramp: the share at each
    /// offset, the 5 % floor, and a fresh ramp after going down mid-way.
    #[test]
    fn slow_start_table() {
        let s = Duration::from_secs(40);
        let t = Thresholds {
            rise: 1,
            fall: 1,
            passive_fall: 0,
            slow_start: s,
        };
        let ms = Duration::from_millis;
        // (offset after coming back, share of weight)
        let table = [
            (ms(0), 0.05),
            (ms(1000), 0.05),
            (ms(2000), 0.05),
            (ms(4000), 0.1),
            (ms(10_000), 0.25),
            (ms(20_000), 0.5),
            (ms(39_999), 0.999_975),
            (ms(40_000), 1.0),
            (ms(600_000), 1.0),
        ];
        let t0 = Instant::now();
        let down: [fn() -> Outcome; 2] = [
            || Outcome::Refused("refused".into()),
            || Outcome::Draining("readyz 500".into()),
        ];
        for how in down {
            let mut h = Health::new();
            h.on_check(how(), t0, &t);
            assert_ne!(h.state(), State::Up);
            assert_eq!(
                h.slow_start_factor(t0 + ms(5000), s),
                1.0,
                "not up: no ramp"
            );
            let back = t0 + ms(7000);
            h.on_check(Outcome::Pass, back, &t);
            assert_eq!(h.state(), State::Up);
            for (offset, want) in table {
                let got = h.slow_start_factor(back + offset, s);
                assert!((got - want).abs() < 1e-9, "{offset:?}: {got} != {want}");
            }
            // Checks passing while up do not restart the ramp.
            h.on_check(Outcome::Pass, back + ms(20_000), &t);
            let got = h.slow_start_factor(back + ms(20_000), s);
            assert!((got - 0.5).abs() < 1e-9, "{got}");
            // Down mid-ramp and back: a new ramp from the new time.
            h.on_check(Outcome::Refused("refused".into()), back + ms(21_000), &t);
            let again = back + ms(25_000);
            h.on_check(Outcome::Pass, again, &t);
            assert_eq!(h.slow_start_factor(again, s), 0.05);
            let got = h.slow_start_factor(again + ms(30_000), s);
            assert!((got - 0.75).abs() < 1e-9, "{got}");
            // An operator drain hides the ramp; enabling starts a new one from that time
            // (the backend took no new connections meanwhile).
            h.set_admin(Some(Admin::Drain), again + ms(30_000));
            assert_eq!(h.slow_start_factor(again + ms(40_000), s), 1.0);
            let enabled = again + ms(50_000);
            h.set_admin(None, enabled);
            assert_eq!(h.slow_start_factor(enabled, s), 0.05);
            let got = h.slow_start_factor(enabled + ms(10_000), s);
            assert!((got - 0.25).abs() < 1e-9, "{got}");
        }
    }
}
