//! Scenario tests: "in state S, events [...] produce actions [...]". Time is an `Instant`
//! advanced by hand; nothing sleeps.

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("addr")
}

fn params(priority: u8) -> Params {
    Params {
        priority,
        interval: MS(100),
        preempt: true,
        preempt_delay: Duration::ZERO,
        track: None,
        local: ip("10.0.0.11"),
        handover: Handover::MakeBeforeBreak,
    }
}

fn advert(from: &str, priority: u8) -> Event {
    Event::Advert {
        from: ip(from),
        priority,
        interval: MS(100),
    }
}

/// Run `fsm` until `until`, delivering Timer at each deadline; every action with its time
/// offset from `t0`.
fn run_until(fsm: &mut Fsm, t0: Instant, until: Instant) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    while let Some(d) = fsm.next_deadline() {
        if d > until {
            break;
        }
        for a in fsm.handle(Event::Timer, d) {
            out.push((d - t0, a));
        }
        // A deadline the timer did not consume would loop here forever: fail instead.
        assert_ne!(
            fsm.next_deadline(),
            Some(d),
            "Timer at its deadline left it armed"
        );
    }
    out
}

fn backup(priority: u8, t0: Instant) -> Fsm {
    let mut f = Fsm::new(params(priority));
    f.handle(Event::Start, t0);
    f
}

fn master(priority: u8, t0: Instant) -> Fsm {
    let mut f = backup(priority, t0);
    let d = f.next_deadline().expect("down timer");
    f.handle(Event::Timer, d);
    assert_eq!(f.state(), State::Master);
    f
}

#[test]
fn timers_follow_the_rfc_formula() {
    // Input: priorities 150 and 100 at 100 ms. Output: the lab's 341.4 and 360.9 ms.
    let t0 = Instant::now();
    assert_eq!(
        backup(150, t0).master_down_interval(),
        Duration::from_nanos(341_406_250)
    );
    assert_eq!(
        backup(100, t0).master_down_interval(),
        Duration::from_nanos(360_937_500)
    );
    assert_eq!(backup(100, t0).skew(), Duration::from_nanos(60_937_500));
}

#[test]
fn start_clears_leftovers_then_backup_then_master_after_the_down_interval() {
    // Input: Start, no adverts. Output: RemoveAddresses, Backup; at 360.9 ms addresses +
    // announce + advert (in that order: make before break), Master; adverts every 100 ms;
    // second announce after 5 s.
    let t0 = Instant::now();
    let mut f = Fsm::new(params(100));
    assert_eq!(
        f.handle(Event::Start, t0),
        vec![
            Action::RemoveAddresses,
            Action::Transition {
                from: State::Initialize,
                to: State::Backup,
                reason: Reason::Startup
            }
        ]
    );
    let acts = run_until(&mut f, t0, t0 + MS(600));
    let mdi = Duration::from_nanos(360_937_500);
    assert_eq!(
        acts[..4],
        [
            (mdi, Action::AddAddresses),
            (mdi, Action::Announce),
            (mdi, Action::SendAdvert { priority: 100 }),
            (
                mdi,
                Action::Transition {
                    from: State::Backup,
                    to: State::Master,
                    reason: Reason::MasterDown
                }
            ),
        ]
    );
    let adverts: Vec<Duration> = acts[4..].iter().map(|(t, _)| *t).collect();
    assert_eq!(adverts, vec![mdi + MS(100), mdi + MS(200)]);
    let later = run_until(&mut f, t0, t0 + mdi + ANNOUNCE_REPEAT);
    assert!(later.contains(&(mdi + ANNOUNCE_REPEAT, Action::Announce)));
    assert_eq!(f.master(), Some(ip("10.0.0.11")));
}

#[test]
fn backup_stays_while_a_better_master_advertises() {
    // Input: Backup 100; adverts from 150 every 100 ms for 2 s. Output: no actions.
    let t0 = Instant::now();
    let mut f = backup(100, t0);
    for i in 0..20 {
        let now = t0 + MS(100 * i);
        assert_eq!(f.handle(advert("10.0.0.12", 150), now), vec![]);
        assert_eq!(run_until(&mut f, t0, now + MS(99)), vec![]);
    }
    assert_eq!(f.state(), State::Backup);
    assert_eq!(f.master(), Some(ip("10.0.0.12")));
}

#[test]
fn priority_zero_leaves_only_the_skew() {
    // Input: Backup 100, advert prio 0 at t. Output: Master at t + 60.9 ms.
    let t0 = Instant::now();
    let mut f = backup(100, t0);
    f.handle(advert("10.0.0.12", 150), t0);
    f.handle(advert("10.0.0.12", 0), t0 + MS(50));
    assert_eq!(
        f.next_deadline(),
        Some(t0 + MS(50) + Duration::from_nanos(60_937_500))
    );
    run_until(&mut f, t0, t0 + MS(120));
    assert_eq!(f.state(), State::Master);
}

#[test]
fn graceful_stop_keeps_the_addresses_until_the_new_master_is_heard() {
    // Input: Master 150; Stop at 400 ms; a priority-0 advert (another router leaving) at
    // 450 ms; the new master's first advert (140) at 560 ms, another at 600 ms.
    // Output: priority 0 at once and again one interval later, the addresses kept (state
    // Master, releasing) until one interval after the new master's first advert (660 ms: a
    // keepalived new master announces just after its advert); no more priority 0 once it
    // is heard; then RemoveAddresses, Initialize (reason shutdown), no timers, the new
    // master known.
    let t0 = Instant::now();
    let mut f = master(150, t0);
    let stop = t0 + MS(400);
    assert_eq!(
        f.handle(Event::Stop, stop),
        vec![Action::SendAdvert { priority: 0 }]
    );
    assert_eq!(f.state(), State::Master);
    assert!(f.releasing());
    assert_eq!(f.handle(Event::Stop, stop + MS(1)), vec![], "a second stop");
    assert_eq!(f.handle(advert("10.0.0.13", 0), stop + MS(50)), vec![]);
    assert_eq!(
        run_until(&mut f, t0, stop + MS(150)),
        vec![(MS(500), Action::SendAdvert { priority: 0 })]
    );
    assert_eq!(f.handle(advert("10.0.0.12", 140), stop + MS(160)), vec![]);
    assert_eq!(f.handle(advert("10.0.0.12", 140), stop + MS(200)), vec![]);
    assert_eq!(f.master(), Some(ip("10.0.0.12")));
    assert_eq!(
        run_until(&mut f, t0, stop + MS(1000)),
        vec![
            (MS(660), Action::RemoveAddresses),
            (
                MS(660),
                Action::Transition {
                    from: State::Master,
                    to: State::Initialize,
                    reason: Reason::Shutdown
                }
            )
        ]
    );
    assert_eq!(f.next_deadline(), None);
    assert!(!f.releasing());
    assert_eq!(f.master(), Some(ip("10.0.0.12")));
    assert_eq!(f.handle(Event::Stop, stop + MS(700)), vec![]);
}

#[test]
fn graceful_stop_lets_go_after_the_bound_when_no_one_answers() {
    // Input: Master 150 alone; Stop at 400 ms. Output: priority 0 at 400, 500, 600 ms; at
    // 700 ms (3 intervals) RemoveAddresses and Initialize (reason shutdown_unanswered).
    let t0 = Instant::now();
    let mut f = master(150, t0);
    let stop = t0 + MS(400);
    assert_eq!(
        f.handle(Event::Stop, stop),
        vec![Action::SendAdvert { priority: 0 }]
    );
    assert_eq!(
        run_until(&mut f, t0, t0 + MS(5000)),
        vec![
            (MS(500), Action::SendAdvert { priority: 0 }),
            (MS(600), Action::SendAdvert { priority: 0 }),
            (MS(700), Action::RemoveAddresses),
            (
                MS(700),
                Action::Transition {
                    from: State::Master,
                    to: State::Initialize,
                    reason: Reason::ShutdownUnanswered
                }
            ),
        ]
    );
    assert_eq!(f.next_deadline(), None);
}

#[test]
fn release_bound_is_three_intervals_at_most_the_limit() {
    // Input: advert intervals. Output: how long a stopping master waits for the new one.
    for (interval, want) in [
        (MS(10), MS(30)),
        (MS(100), MS(300)),
        (MS(600), MS(1800)),
        (MS(1000), RELEASE_LIMIT),
        (MS(40_950), RELEASE_LIMIT),
    ] {
        assert_eq!(release_bound(interval), want, "{interval:?}");
    }
}

#[test]
fn a_stopping_master_sends_only_priority_zero() {
    // Input: Master 150 with tracking (hold 0), Stop, then: the healthy count drops, a
    // reload changes priority and interval (50 ms), a split-brain-like advert with a lower
    // priority arrives. Output: no advert with a non-zero priority while releasing; the
    // lower advert is still a master's advert, so the addresses go one (new) interval later.
    let t0 = Instant::now();
    let mut f = Fsm::new(Params {
        track: Some(TrackConfig {
            healthy_backends_below: 1,
            weight: 100,
            hold: Duration::ZERO,
        }),
        ..params(150)
    });
    f.handle(Event::Start, t0);
    run_until(&mut f, t0, t0 + MS(400));
    assert_eq!(f.state(), State::Master);
    let stop = t0 + MS(400);
    f.handle(Event::Stop, stop);
    assert_eq!(
        f.handle(Event::Healthy(0), stop + MS(10)),
        vec![Action::PriorityChanged { from: 150, to: 50 }]
    );
    assert_eq!(
        f.handle(
            Event::Reconfigure(Params {
                interval: MS(50),
                ..params(120)
            }),
            stop + MS(20)
        ),
        vec![Action::PriorityChanged { from: 50, to: 120 }]
    );
    assert_eq!(f.handle(Event::AddressFailure, stop + MS(30)), vec![]);
    assert!(
        run_until(&mut f, t0, stop + MS(99))
            .iter()
            .all(|(_, a)| *a == Action::SendAdvert { priority: 0 })
    );
    assert_eq!(f.handle(advert("10.0.0.12", 20), stop + MS(100)), vec![]);
    assert_eq!(
        run_until(&mut f, t0, stop + MS(1000)),
        vec![
            (MS(550), Action::RemoveAddresses),
            (
                MS(550),
                Action::Transition {
                    from: State::Master,
                    to: State::Initialize,
                    reason: Reason::Shutdown
                }
            )
        ]
    );
}

#[test]
fn backup_stops_at_once() {
    // Input: Backup, Stop. Output: Initialize; nothing to release, no advert.
    let t0 = Instant::now();
    let mut f = backup(100, t0);
    assert_eq!(
        f.handle(Event::Stop, t0 + MS(10)),
        vec![Action::Transition {
            from: State::Backup,
            to: State::Initialize,
            reason: Reason::Shutdown
        }]
    );
    assert_eq!(f.next_deadline(), None);
}

/// Two routers wired back to back at 1 ms steps, adverts delivered at once; what each
/// does, with who holds the addresses after every step.
struct Pair {
    fsms: [Fsm; 2],
    holds: [bool; 2],
    /// Adverts from router k are lost while `lost[k]`.
    lost: [bool; 2],
    /// (time, router, action)
    log: Vec<(Duration, usize, Action)>,
    /// Steps at which neither router held the addresses.
    nobody: Vec<Duration>,
}

impl Pair {
    const ADDR: [&str; 2] = ["10.0.0.11", "10.0.0.12"];

    fn new(a: u8, b: u8, t0: Instant) -> Pair {
        let mut fsms = [
            Fsm::new(params(a)),
            Fsm::new(Params {
                local: ip(Self::ADDR[1]),
                ..params(b)
            }),
        ];
        fsms[0].handle(Event::Start, t0);
        fsms[1].handle(Event::Start, t0);
        Pair {
            fsms,
            holds: [false; 2],
            lost: [false; 2],
            log: Vec::new(),
            nobody: Vec::new(),
        }
    }

    /// Apply `acts` of router `k` at `now`, delivering its adverts to the other one.
    fn apply(&mut self, k: usize, acts: Vec<Action>, t0: Instant, now: Instant) {
        for a in acts {
            self.log.push((now - t0, k, a.clone()));
            match a {
                Action::AddAddresses => self.holds[k] = true,
                Action::RemoveAddresses => self.holds[k] = false,
                Action::SendAdvert { priority } if !self.lost[k] => {
                    let more = self.fsms[1 - k].handle(advert(Self::ADDR[k], priority), now);
                    self.apply(1 - k, more, t0, now);
                }
                _ => {}
            }
        }
    }

    fn event(&mut self, k: usize, e: Event, t0: Instant, now: Instant) {
        let acts = self.fsms[k].handle(e, now);
        self.apply(k, acts, t0, now);
    }

    fn run(&mut self, t0: Instant, from: Instant, to: Instant) {
        let mut now = from;
        while now <= to {
            for k in 0..2 {
                if self.fsms[k].next_deadline().is_some_and(|d| d <= now) {
                    self.event(k, Event::Timer, t0, now);
                }
            }
            if self.holds == [false, false]
                && self.fsms.iter().any(|f| f.state() != State::Initialize)
            {
                self.nobody.push(now - t0);
            }
            now += MS(1);
        }
    }
}

#[test]
fn planned_handover_is_make_before_break() {
    // Input: A (150) master, B (140) backup, adverts delivered at once; A stops at 1 s.
    // Output: B takes over after its skew time (45.3 ms, whole ms steps here): addresses,
    // announce, then its first advert; A removes its addresses one interval after that
    // advert, so at no step does nobody hold them; A goes to Initialize for "shutdown"
    // (heard), not for "shutdown_unanswered".
    let t0 = Instant::now();
    let mut p = Pair::new(150, 140, t0);
    p.run(t0, t0, t0 + MS(999));
    assert_eq!(p.holds, [true, false]);
    p.nobody.clear(); // before the first master, nobody held them; not the point here
    p.log.clear();
    let stop = t0 + MS(1000);
    p.event(0, Event::Stop, t0, stop);
    p.run(t0, stop, stop + MS(300));
    let at = |d: u64| MS(1000 + d);
    assert_eq!(
        p.log,
        vec![
            (at(0), 0, Action::SendAdvert { priority: 0 }),
            (at(46), 1, Action::AddAddresses),
            (at(46), 1, Action::Announce),
            (at(46), 1, Action::SendAdvert { priority: 140 }),
            (
                at(46),
                1,
                Action::Transition {
                    from: State::Backup,
                    to: State::Master,
                    reason: Reason::MasterDown
                }
            ),
            (at(146), 0, Action::RemoveAddresses),
            (
                at(146),
                0,
                Action::Transition {
                    from: State::Master,
                    to: State::Initialize,
                    reason: Reason::Shutdown
                }
            ),
            (at(146), 1, Action::SendAdvert { priority: 140 }),
            (at(246), 1, Action::SendAdvert { priority: 140 }),
        ]
    );
    assert_eq!(
        p.nobody,
        Vec::<Duration>::new(),
        "steps at which nobody held the addresses"
    );
    assert_eq!(p.holds, [false, true]);
}

#[test]
fn break_before_make_releases_first_then_sends_priority_zero() {
    // Input: Master 150 with handover breakBeforeMake; Stop at 400 ms; then the new
    // master's advert. Output at once, in this order: RemoveAddresses, priority 0,
    // Initialize (reason shutdown); no timer left, a second stop and later adverts do
    // nothing. A backup stops as under makeBeforeBreak.
    let t0 = Instant::now();
    let mut f = master(150, t0);
    f.handle(
        Event::Reconfigure(Params {
            handover: Handover::BreakBeforeMake,
            ..params(150)
        }),
        t0 + MS(300),
    );
    let stop = t0 + MS(400);
    assert_eq!(
        f.handle(Event::Stop, stop),
        vec![
            Action::RemoveAddresses,
            Action::SendAdvert { priority: 0 },
            Action::Transition {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::Shutdown
            }
        ]
    );
    assert!(!f.releasing());
    assert_eq!(f.next_deadline(), None);
    assert_eq!(f.handle(Event::Stop, stop + MS(1)), vec![]);
    assert_eq!(f.handle(advert("10.0.0.12", 140), stop + MS(50)), vec![]);
    assert_eq!(f.state(), State::Initialize);

    let mut b = Fsm::new(Params {
        handover: Handover::BreakBeforeMake,
        ..params(100)
    });
    b.handle(Event::Start, t0);
    assert_eq!(
        b.handle(Event::Stop, t0 + MS(10)),
        vec![Action::Transition {
            from: State::Backup,
            to: State::Initialize,
            reason: Reason::Shutdown
        }]
    );
}

#[test]
fn planned_handover_break_before_make_leaves_a_gap_of_the_skew_time() {
    // Input: A (150, breakBeforeMake) master, B (140) backup; A stops at 1 s.
    // Output: A removes its addresses and sends priority 0 at once; B takes over after its
    // skew time (46 ms in whole ms steps), so for 46 steps nobody holds them: the window
    // in which a client's SYN is dropped (and resent after 1 s).
    let t0 = Instant::now();
    let mut p = Pair::new(150, 140, t0);
    p.fsms[0].handle(
        Event::Reconfigure(Params {
            handover: Handover::BreakBeforeMake,
            ..params(150)
        }),
        t0,
    );
    p.run(t0, t0, t0 + MS(999));
    assert_eq!(p.holds, [true, false]);
    p.nobody.clear();
    p.log.clear();
    let stop = t0 + MS(1000);
    p.event(0, Event::Stop, t0, stop);
    p.run(t0, stop, stop + MS(100));
    let at = |d: u64| MS(1000 + d);
    assert_eq!(
        p.log[..5],
        [
            (at(0), 0, Action::RemoveAddresses),
            (at(0), 0, Action::SendAdvert { priority: 0 }),
            (
                at(0),
                0,
                Action::Transition {
                    from: State::Master,
                    to: State::Initialize,
                    reason: Reason::Shutdown
                }
            ),
            (at(46), 1, Action::AddAddresses),
            (at(46), 1, Action::Announce),
        ]
    );
    assert_eq!(p.nobody.len(), 46, "steps without a holder: {:?}", p.nobody);
    assert_eq!(p.holds, [false, true]);
}

#[test]
fn a_master_that_keeps_its_place_announces_again() {
    // Input: A (150) master; B (140) misses A's adverts (a busy start-up), so its down
    // timer runs out and it becomes master too; then the adverts flow again.
    // Output: B announces (clients follow B), A hears B's advert, keeps its place and
    // announces again after B, B yields and removes the addresses: the last announcement
    // is A's, so clients end on the host that holds the addresses (no stale ARP entry).
    let t0 = Instant::now();
    let mut p = Pair::new(150, 140, t0);
    p.run(t0, t0, t0 + MS(999));
    assert_eq!(p.holds, [true, false]);
    p.log.clear();
    p.lost[0] = true;
    p.run(t0, t0 + MS(1000), t0 + MS(1400));
    p.lost[0] = false;
    p.run(t0, t0 + MS(1401), t0 + MS(2000));
    let announces: Vec<usize> = p
        .log
        .iter()
        .filter(|(_, _, a)| *a == Action::Announce)
        .map(|(_, k, _)| *k)
        .collect();
    // B announces first; A answers each of B's adverts with an advert and an announcement
    // (twice here: A's first answer is lost too); the last announcement is A's.
    assert_eq!(announces, vec![1, 0, 0], "{:#?}", p.log);
    assert_eq!(p.holds, [true, false]);
    assert_eq!(p.fsms[1].state(), State::Backup);
}

#[test]
fn preemption_is_make_before_break() {
    // Input: B (140) master alone; A (150) starts and preempts after its down interval.
    // Output: A adds and announces before its first advert, B lets go on that advert; at
    // no step does nobody hold the addresses.
    let t0 = Instant::now();
    let mut p = Pair::new(150, 140, t0);
    // A starts late: keep it in Initialize until B is master.
    p.fsms[0] = Fsm::new(params(150));
    p.run(t0, t0, t0 + MS(999));
    assert_eq!(p.holds, [false, true]);
    p.nobody.clear();
    p.log.clear();
    p.event(0, Event::Start, t0, t0 + MS(1000));
    p.run(t0, t0 + MS(1000), t0 + MS(2000));
    let a_add = p
        .log
        .iter()
        .position(|(_, k, a)| *k == 0 && *a == Action::AddAddresses)
        .expect("A adds");
    let b_remove = p
        .log
        .iter()
        .position(|(_, k, a)| *k == 1 && *a == Action::RemoveAddresses)
        .expect("B removes");
    assert!(a_add < b_remove, "{:#?}", p.log);
    assert_eq!(
        p.nobody,
        Vec::<Duration>::new(),
        "steps at which nobody held the addresses"
    );
    assert_eq!(p.holds, [true, false]);
}

#[test]
fn preemption_by_priority_and_nopreempt() {
    // Input: Backup 150, adverts from a 100 master. Output (preempt): Master after its down
    // interval despite the adverts. With preempt false: stays Backup.
    let t0 = Instant::now();
    for (preempt, want) in [(true, State::Master), (false, State::Backup)] {
        let mut f = Fsm::new(Params {
            preempt,
            ..params(150)
        });
        f.handle(Event::Start, t0);
        for i in 0..10 {
            let now = t0 + MS(100 * i);
            run_until(&mut f, t0, now);
            if f.state() == State::Backup {
                f.handle(advert("10.0.0.12", 100), now);
            }
        }
        assert_eq!(f.state(), want, "preempt {preempt}");
    }
}

#[test]
fn preempt_delay_holds_back_the_takeover() {
    // Input: Backup 150 with preemptDelay 1 s; a 100 master advertises. Output: Backup until
    // 1 s after the first lower advert, Master within one down interval after that.
    let t0 = Instant::now();
    let mut f = Fsm::new(Params {
        preempt_delay: Duration::from_secs(1),
        ..params(150)
    });
    f.handle(Event::Start, t0);
    let mut became = None;
    for i in 0..30 {
        let now = t0 + MS(100 * i);
        run_until(&mut f, t0, now);
        if f.state() == State::Master {
            became.get_or_insert(now);
            continue;
        }
        f.handle(advert("10.0.0.12", 100), now);
    }
    let became = became.expect("took over") - t0;
    assert!(
        became > MS(1000) && became <= MS(1000) + MS(450),
        "{became:?}"
    );
}

#[test]
fn split_brain_resolves_by_priority_then_address() {
    // Input: Master 150 sees a master 200. Output: split brain (yielded), release, Backup.
    let t0 = Instant::now();
    let mut f = master(150, t0);
    let acts = f.handle(advert("10.0.0.12", 200), t0 + MS(500));
    assert_eq!(
        acts,
        vec![
            Action::SplitBrain {
                peer: ip("10.0.0.12"),
                peer_priority: 200,
                yielded: true
            },
            Action::RemoveAddresses,
            Action::Transition {
                from: State::Master,
                to: State::Backup,
                reason: Reason::Preempted
            }
        ]
    );
    // Input: Master 150 sees a master 150 with a lower address. Output: we keep it, assert
    // at once and announce again (the other one has announced itself).
    let mut f = master(150, t0);
    let acts = f.handle(advert("10.0.0.5", 150), t0 + MS(500));
    assert_eq!(
        acts,
        vec![
            Action::SplitBrain {
                peer: ip("10.0.0.5"),
                peer_priority: 150,
                yielded: false
            },
            Action::SendAdvert { priority: 150 },
            Action::Announce
        ]
    );
    // Equal priority, higher address: we give way.
    let mut f = master(150, t0);
    f.handle(advert("10.0.0.99", 150), t0 + MS(500));
    assert_eq!(f.state(), State::Backup);
}

#[test]
fn master_answers_a_priority_zero_advert_at_once() {
    let t0 = Instant::now();
    let mut f = master(150, t0);
    assert_eq!(
        f.handle(advert("10.0.0.12", 0), t0 + MS(410)),
        vec![Action::SendAdvert { priority: 150 }]
    );
    assert_eq!(f.state(), State::Master);
}

#[test]
fn tracking_lowers_priority_only_after_the_hold() {
    // Input: Master 150, track below 2 weight 100 hold 1 s; healthy 1 for 300 ms then 2
    // again. Output: nothing (a blip). Then healthy 1 for good: after 1 s priority 50, an
    // advert with 50 at once. Back to 2: 150 after another 1 s.
    let t0 = Instant::now();
    let mut f = Fsm::new(Params {
        track: Some(TrackConfig {
            healthy_backends_below: 2,
            weight: 100,
            hold: Duration::from_secs(1),
        }),
        ..params(150)
    });
    f.handle(Event::Start, t0);
    run_until(&mut f, t0, t0 + MS(400));
    assert_eq!(f.state(), State::Master);
    let t1 = t0 + MS(500);
    assert_eq!(f.handle(Event::Healthy(1), t1), vec![]);
    run_until(&mut f, t0, t1 + MS(300));
    assert_eq!(f.handle(Event::Healthy(2), t1 + MS(300)), vec![]);
    let acts = run_until(&mut f, t0, t1 + MS(1500));
    assert!(
        acts.iter()
            .all(|(_, a)| matches!(a, Action::SendAdvert { priority: 150 }))
    );

    let t2 = t0 + MS(3000);
    f.handle(Event::Healthy(1), t2);
    let acts = run_until(&mut f, t0, t2 + MS(1000));
    let change = acts
        .iter()
        .position(|(_, a)| *a == Action::PriorityChanged { from: 150, to: 50 })
        .expect("priority lowered");
    assert_eq!(acts[change].0, MS(4000));
    assert_eq!(
        acts[change + 1],
        (MS(4000), Action::SendAdvert { priority: 50 })
    );
    assert_eq!(f.priority(), 50);

    f.handle(Event::Healthy(3), t0 + MS(4200));
    run_until(&mut f, t0, t0 + MS(5200));
    assert_eq!(f.priority(), 150);
}

/// Deliver `me`'s due timer and hand its adverts to `other`.
fn step(me: &mut Fsm, other: &mut Fsm, from: &str, now: Instant) {
    if me.next_deadline().is_some_and(|d| d <= now) {
        for act in me.handle(Event::Timer, now) {
            if let Action::SendAdvert { priority } = act {
                other.handle(advert(from, priority), now);
            }
        }
    }
}

#[test]
fn a_degraded_master_is_preempted_by_a_healthy_backup() {
    // Input: two machines, A 150 (tracked, degraded to 50) master, B 100 backup, wired
    // through their adverts. Output: B becomes master, A backup.
    let t0 = Instant::now();
    let track = Some(TrackConfig {
        healthy_backends_below: 1,
        weight: 100,
        hold: Duration::ZERO,
    });
    let mut a = Fsm::new(Params {
        track,
        ..params(150)
    });
    let mut b = Fsm::new(Params {
        local: ip("10.0.0.12"),
        ..params(100)
    });
    a.handle(Event::Start, t0);
    b.handle(Event::Start, t0);
    let mut now = t0;
    let mut degraded_at = None;
    while now < t0 + MS(3000) {
        if now >= t0 + MS(1000) && degraded_at.is_none() {
            degraded_at = Some(now);
            a.handle(Event::Healthy(0), now);
        }
        step(&mut a, &mut b, "10.0.0.11", now);
        step(&mut b, &mut a, "10.0.0.12", now);
        now += MS(5);
    }
    assert_eq!(a.state(), State::Backup);
    assert_eq!(b.state(), State::Master);
}

#[test]
fn address_failure_backs_off_to_backup() {
    let t0 = Instant::now();
    let mut f = master(150, t0);
    let acts = f.handle(Event::AddressFailure, t0 + MS(400));
    assert_eq!(acts[0], Action::SendAdvert { priority: 0 });
    assert_eq!(acts[1], Action::RemoveAddresses);
    assert_eq!(f.state(), State::Backup);
    assert!(f.next_deadline().expect("retry") >= t0 + MS(400) + FAULT_BACKOFF);
}

#[test]
fn reconfigure_priority_is_advertised_at_once() {
    let t0 = Instant::now();
    let mut f = master(150, t0);
    let acts = f.handle(Event::Reconfigure(params(90)), t0 + MS(400));
    assert_eq!(
        acts,
        vec![
            Action::PriorityChanged { from: 150, to: 90 },
            Action::SendAdvert { priority: 90 }
        ]
    );
}

/// Skew_Time = (256 - Priority) x Master_Adver_Interval / 256, in nanoseconds, written out
/// independently of the machine's arithmetic.
fn rfc_skew(priority: u8, interval: Duration) -> Duration {
    Duration::from_nanos((interval.as_nanos() * (256 - u128::from(priority)) / 256) as u64)
}

#[test]
fn master_down_and_skew_timing_table() {
    // Input: a Backup of priority p (its own interval 100 ms) hears a master's advert
    // carrying interval i, then silence. Output: nothing until exactly
    // 3 x i + Skew_Time(p, i) after the advert (the learned interval, not our own), then
    // Master; after a priority-0 advert, Master exactly Skew_Time later. Adverts that keep
    // arriving up to 1 ns before the deadline keep it Backup.
    for (p, i) in [
        (1u8, MS(100)),
        (100, MS(100)),
        (150, MS(100)),
        (254, MS(100)),
        (100, MS(10)),
        (200, MS(30)),
        (100, MS(1000)),
        (50, MS(40_950)),
    ] {
        let case = format!("priority {p}, interval {i:?}");
        let down = i * 3 + rfc_skew(p, i);
        let t0 = Instant::now();
        let mut f = backup(p, t0);
        let heard = |f: &mut Fsm, at: Instant| {
            let acts = f.handle(
                Event::Advert {
                    from: ip("10.0.0.12"),
                    priority: 255,
                    interval: i,
                },
                at,
            );
            assert_eq!(acts, vec![], "{case}");
        };
        // A master advertising late each time, but always before the deadline.
        let mut last = t0;
        for _ in 0..5 {
            heard(&mut f, last);
            assert_eq!(f.master_down_interval(), down, "{case}");
            assert_eq!(f.skew(), rfc_skew(p, i), "{case}");
            assert_eq!(f.next_deadline(), Some(last + down), "{case}");
            let just_before = last + down - Duration::from_nanos(1);
            assert_eq!(run_until(&mut f, t0, just_before), vec![], "{case}");
            last = just_before;
        }
        assert_eq!(f.state(), State::Backup, "{case}");
        // The last advert, then silence: Master exactly at the deadline.
        heard(&mut f, last);
        let acts = run_until(&mut f, t0, last + down);
        assert!(
            acts.contains(&(
                last + down - t0,
                Action::Transition {
                    from: State::Backup,
                    to: State::Master,
                    reason: Reason::MasterDown
                }
            )),
            "{case}: {acts:?}"
        );
        // A fresh backup told the master is leaving: only the skew.
        let mut g = backup(p, t0);
        heard(&mut g, t0);
        let leave = t0 + i;
        assert_eq!(
            g.handle(
                Event::Advert {
                    from: ip("10.0.0.12"),
                    priority: 0,
                    interval: i,
                },
                leave,
            ),
            vec![],
            "{case}"
        );
        assert_eq!(g.next_deadline(), Some(leave + rfc_skew(p, i)), "{case}");
        assert_eq!(
            run_until(&mut g, t0, leave + rfc_skew(p, i) - Duration::from_nanos(1)),
            vec![],
            "{case}"
        );
        run_until(&mut g, t0, leave + rfc_skew(p, i));
        assert_eq!(g.state(), State::Master, "{case}");
    }
}

#[test]
fn higher_priority_backup_takes_over_first_by_the_skew_difference() {
    // Input: backups of priorities 200 and 100 hear the same last advert (interval 1 s).
    // Output: 200 becomes Master (100 x 1 s / 256) = 390.625 ms before 100 would.
    let t0 = Instant::now();
    let i = MS(1000);
    let mut hi = backup(200, t0);
    let mut lo = backup(100, t0);
    for f in [&mut hi, &mut lo] {
        f.handle(
            Event::Advert {
                from: ip("10.0.0.12"),
                priority: 255,
                interval: i,
            },
            t0,
        );
    }
    let (h, l) = (
        hi.next_deadline().expect("timer"),
        lo.next_deadline().expect("timer"),
    );
    assert_eq!(l - h, Duration::from_nanos(390_625_000));
    // hi's first advert reaches lo before lo's deadline and keeps it Backup.
    run_until(&mut hi, t0, h);
    assert_eq!(hi.state(), State::Master);
    lo.handle(
        Event::Advert {
            from: ip("10.0.0.11"),
            priority: 200,
            interval: MS(100),
        },
        h,
    );
    // lo now runs on the new master's 100 ms interval: 300 ms + 60.9375 ms.
    let next = h + Duration::from_nanos(360_937_500);
    assert!(next < l);
    assert_eq!(lo.next_deadline(), Some(next));
    assert_eq!(
        run_until(&mut lo, t0, next - Duration::from_nanos(1)),
        vec![]
    );
    assert_eq!(lo.state(), State::Backup);
}
