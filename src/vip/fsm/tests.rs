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
    // Input: Start, no adverts. Output: RemoveAddresses, Backup; at 360.9 ms advert +
    // addresses + announce, Master; adverts every 100 ms; second announce after 5 s.
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
            (mdi, Action::SendAdvert { priority: 100 }),
            (mdi, Action::AddAddresses),
            (mdi, Action::Announce),
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
fn graceful_stop_sends_priority_zero_then_releases() {
    // Input: Master, Stop. Output: advert prio 0, RemoveAddresses, Initialize; no timers.
    let t0 = Instant::now();
    let mut f = master(150, t0);
    assert_eq!(
        f.handle(Event::Stop, t0 + MS(400)),
        vec![
            Action::SendAdvert { priority: 0 },
            Action::RemoveAddresses,
            Action::Transition {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::Shutdown
            }
        ]
    );
    assert_eq!(f.next_deadline(), None);
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
    // Input: Master 150 sees a master 150 with a lower address. Output: we keep it and
    // assert at once.
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
            Action::SendAdvert { priority: 150 }
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
