use std::net::SocketAddr;

use super::*;

const S: Duration = Duration::from_secs(1);

fn cfg() -> RebalanceConfig {
    RebalanceConfig {
        enabled: true,
        skew: 1.2,
        after: 10 * S,
        warmup: 20 * S,
        min_age: 60 * S,
        quiet: Duration::from_millis(500),
        max_rate: 20,
        per_client: 600 * S,
    }
}

fn eps(rows: &[(&str, u32, bool)]) -> Vec<Endpoint> {
    rows.iter()
        .map(|&(n, w, up)| Endpoint {
            name: n.to_owned(),
            weight: w,
            up,
            ramping: false,
        })
        .collect()
}

/// Backends a and b, weight 1, both Up, and a rebalancer that has seen them Up since `t0`.
fn two_up(t0: Instant) -> (Vec<Endpoint>, Rebalancer) {
    let mut r = Rebalancer::new();
    r.observe(t0, &[("a".into(), true), ("b".into(), true)]);
    (eps(&[("a", 1, true), ("b", 1, true)]), r)
}

/// A connection with id `id` from client 10.0.<id/250>.<id%250> on `backend`, opened at
/// `since`, last client byte at `up_at`, last server byte at `down_at`, `bytes` in total.
fn conn(
    id: u64,
    backend: &str,
    since: Instant,
    up_at: Instant,
    down_at: Instant,
    bytes: u64,
) -> Connection {
    let ip = format!("10.0.{}.{}:40000", id / 250, id % 250);
    Connection {
        id,
        client: ip.parse::<SocketAddr>().unwrap(),
        backend: backend.to_owned(),
        since,
        last_up: up_at,
        last_down: down_at,
        up: bytes / 2,
        down: bytes - bytes / 2,
    }
}

/// `n` idle, old connections per backend (server spoke last, long ago), ids from `first`.
fn idle_conns(t0: Instant, per: &[(&str, usize)], first: u64) -> Vec<Connection> {
    let mut out = Vec::new();
    let mut id = first;
    for &(b, n) in per {
        for _ in 0..n {
            out.push(conn(id, b, t0, t0 + S, t0 + 2 * S, 1000));
            id += 1;
        }
    }
    out
}

#[test]
fn skew_table() {
    let rows: &[(&[(u32, usize)], f64)] = &[
        (&[], 1.0),
        (&[(1, 0), (1, 0)], 1.0),
        (&[(1, 10), (1, 10), (1, 10)], 1.0),
        (&[(1, 15), (1, 15), (1, 0)], 1.5),
        (&[(1, 30), (1, 0), (1, 0)], 3.0),
        (&[(1, 12), (1, 8)], 1.2),
        // Weight-adjusted: 2:1 weights with 20:10 connections are balanced.
        (&[(2, 20), (1, 10)], 1.0),
        (&[(2, 10), (1, 20)], 20.0 / 10.0),
        (&[(1, 5)], 1.0),
    ];
    for (loads, want) in rows {
        let got = skew(loads);
        assert!(
            (got - want).abs() < 1e-9,
            "{loads:?}: want {want}, got {got}"
        );
    }
}

#[test]
fn shares_round_up_by_weight() {
    assert_eq!(shares(&[(1, 0), (1, 0), (1, 0)], 10), [4, 4, 4]);
    assert_eq!(shares(&[(2, 0), (1, 0)], 30), [20, 10]);
    assert_eq!(shares(&[(1, 0), (1, 0)], 0), [0, 0]);
}

/// Input: A and B hold 15 each, C returns empty. Output: waiting until C is warm and the
/// skew has lasted `after`, then shedding from A and B only, each down to its share (10),
/// never more than the ideal 10 in all.
#[test]
fn sheds_the_excess_only_after_warmup_and_after() {
    let t0 = Instant::now();
    let c = cfg();
    let mut r = Rebalancer::new();
    let e = eps(&[("a", 1, true), ("b", 1, true), ("c", 1, true)]);
    let mut conns = idle_conns(t0, &[("a", 15), ("b", 15)], 0);
    let start = t0 + 100 * S;
    // C comes Up at `start`.
    r.observe(
        start - S,
        &[("a".into(), true), ("b".into(), true), ("c".into(), false)],
    );
    let p = r.step(start, &c, &e, &conns);
    assert_eq!((p.state, p.pause), (State::Paused, Some(Pause::Warming)));
    assert!((p.skew - 1.5).abs() < 1e-9);
    assert_eq!(p.excess, 10);
    assert!(p.closes.is_empty());
    // Warm at start+20s, and the skew has lasted more than `after`: shedding.
    let p = r.step(start + 19 * S, &c, &e, &conns);
    assert_eq!(p.state, State::Paused);
    let mut moved = 0;
    let mut t = start + 20 * S;
    let mut from = HashMap::<String, usize>::new();
    for _ in 0..40 {
        let p = r.step(t, &c, &e, &conns);
        for close in &p.closes {
            assert_ne!(close.backend, "c");
            *from.entry(close.backend.clone()).or_default() += 1;
            // The client reconnects to C (least connections), as a new connection.
            let old = conns.iter().position(|x| x.id == close.id).unwrap();
            let mut back = conns.remove(old);
            back.backend = "c".into();
            back.since = t;
            conns.push(back);
        }
        moved += p.closes.len();
        t += S;
    }
    assert_eq!(moved, 10, "exactly the excess moves");
    assert_eq!(from.get("a"), Some(&5));
    assert_eq!(from.get("b"), Some(&5));
    let p = r.step(t, &c, &e, &conns);
    assert_eq!((p.state, p.excess), (State::Idle, 0));
}

/// Input: skew above the threshold. Output: waiting for `after`, idle again if it drops,
/// shedding once it lasted `after`.
#[test]
fn waits_for_after_and_resets_when_the_skew_drops() {
    let t0 = Instant::now();
    let c = cfg();
    let (e, mut r) = two_up(t0);
    let start = t0 + 100 * S;
    let skewed = idle_conns(t0, &[("a", 8), ("b", 4)], 0);
    let even = idle_conns(t0, &[("a", 6), ("b", 6)], 0);
    assert_eq!(r.step(start, &c, &e, &skewed).state, State::Waiting);
    assert_eq!(r.step(start + 5 * S, &c, &e, &even).state, State::Idle);
    assert_eq!(r.step(start + 6 * S, &c, &e, &skewed).state, State::Waiting);
    assert_eq!(
        r.step(start + 15 * S, &c, &e, &skewed).state,
        State::Waiting
    );
    let p = r.step(start + 16 * S, &c, &e, &skewed);
    assert_eq!(p.state, State::Shedding);
    assert_eq!(p.closes.len(), 1, "one token to start with");
    // Disabled: never on its own.
    let off = RebalanceConfig {
        enabled: false,
        ..cfg()
    };
    let mut r = Rebalancer::new();
    r.observe(t0, &[("a".into(), true), ("b".into(), true)]);
    for k in 0..100 {
        assert_eq!(r.step(start + k * S, &off, &e, &skewed).state, State::Idle);
    }
}

/// Pauses: one backend Up; a flapping backend; an under-loaded backend not yet warm.
#[test]
fn pauses() {
    let t0 = Instant::now();
    let c = cfg();
    let start = t0 + 1000 * S;
    let conns = idle_conns(t0, &[("a", 10), ("b", 0)], 0);

    let mut r = Rebalancer::new();
    r.trigger();
    let e = eps(&[("a", 1, true), ("b", 1, false)]);
    r.observe(t0, &[("a".into(), true), ("b".into(), false)]);
    // Only A is Up: A holds all, which is its share of Up backends: nothing to do.
    let p = r.step(start, &c, &e, &conns);
    assert_eq!((p.state, p.excess), (State::Idle, 0));
    // Connections on a third, down backend do not make one Up backend movable.
    let e3 = eps(&[("a", 1, true), ("b", 1, false), ("x", 1, false)]);
    let p = r.step(start, &c, &e3, &conns);
    assert_eq!(p.state, State::Idle);

    // B flaps three times within the window: paused until the window passes.
    let mut r = Rebalancer::new();
    r.trigger();
    let e = eps(&[("a", 1, true), ("b", 1, true)]);
    for k in 0..3u32 {
        let t = t0 + 500 * S + k * 10 * S;
        r.observe(t, &[("a".into(), true), ("b".into(), true)]);
        r.observe(t + S, &[("a".into(), true), ("b".into(), false)]);
    }
    let back = t0 + 531 * S;
    r.observe(back, &[("a".into(), true), ("b".into(), true)]);
    let p = r.step(back + 60 * S, &c, &e, &conns);
    assert_eq!((p.state, p.pause), (State::Paused, Some(Pause::Flapping)));
    let p = r.step(t0 + 500 * S + 21 * S + FLAP_WINDOW, &c, &e, &conns);
    assert_eq!(p.state, State::Shedding, "{p:?}");

    // Two Up, but the receiver came up 5 s ago: warming, even when triggered.
    let mut r = Rebalancer::new();
    r.trigger();
    r.observe(start - 5 * S, &[("a".into(), true), ("b".into(), true)]);
    let p = r.step(start, &c, &e, &conns);
    assert_eq!((p.state, p.pause), (State::Paused, Some(Pause::Warming)));
    let p = r.step(start + 15 * S, &c, &e, &conns);
    assert_eq!(p.state, State::Shedding);

    // Warm, but still in its slow start: warming too.
    let mut r = Rebalancer::new();
    r.trigger();
    r.observe(t0, &[("a".into(), true), ("b".into(), true)]);
    let mut ramping = eps(&[("a", 1, true), ("b", 1, true)]);
    ramping[1].ramping = true;
    let p = r.step(start, &c, &ramping, &conns);
    assert_eq!((p.state, p.pause), (State::Paused, Some(Pause::Warming)));
    let p = r.step(start + S, &c, &e, &conns);
    assert_eq!(p.state, State::Shedding);
}

/// Which connections are closed: old, quiet both ways with the server last, not a recently
/// moved client, lowest traffic first; skips counted once per connection and reason.
#[test]
fn victims_follow_the_rules() {
    let t0 = Instant::now();
    let c = cfg();
    let now = t0 + 1000 * S;
    let old = t0;
    let young = now - 30 * S;
    let long_ago = now - 10 * S;
    let just_now = now - Duration::from_millis(100);
    let conns = vec![
        // 0: young.
        conn(0, "a", young, long_ago, long_ago + S, 10),
        // 1: client spoke last (a request in flight).
        conn(1, "a", old, long_ago + S, long_ago, 10),
        // 2: server byte 100 ms ago.
        conn(2, "a", old, long_ago, just_now, 10),
        // 3: eligible but heavy traffic.
        conn(3, "a", old, long_ago, long_ago + S, 10_000_000),
        // 4: eligible and light.
        conn(4, "a", old, long_ago, long_ago + S, 100),
        // 5: eligible, light, same client address as 4 (another port).
        Connection {
            client: "10.0.0.4:50000".parse().unwrap(),
            ..conn(5, "a", old, long_ago, long_ago + S, 50)
        },
        // 6: on the under-loaded backend: never a victim.
        conn(6, "b", old, long_ago, long_ago + S, 1),
    ];
    let (e, mut r) = two_up(t0);
    r.trigger();
    // Share is 4 each: A's excess is 2. One token at first, then 1/s per backend.
    let p = r.step(now, &c, &e, &conns);
    assert_eq!(p.state, State::Shedding);
    assert_eq!(p.excess, 2);
    let ids: Vec<u64> = p.closes.iter().map(|x| x.id).collect();
    assert_eq!(ids, [5], "lightest eligible first");
    assert_eq!(p.closes[0].age, now - old);
    assert_eq!(
        p.skipped,
        [Skip::Busy, Skip::Busy],
        "1 and 2 are lighter but busy"
    );
    // 5 is gone (its client reconnected elsewhere); A still 1 above its share.
    let rest: Vec<Connection> = conns.iter().filter(|x| x.id != 5).cloned().collect();
    let mut rest = rest;
    rest.push(conn(7, "b", now, now, now, 0));
    // 2 is still chatty: another server byte 100 ms before this step.
    for x in rest.iter_mut().filter(|x| x.id == 2) {
        x.last_down = now + S - Duration::from_millis(100);
    }
    let p = r.step(now + S, &c, &e, &rest);
    let ids: Vec<u64> = p.closes.iter().map(|x| x.id).collect();
    assert_eq!(
        ids,
        [3],
        "4 shares 5's client address; 3 is the only other eligible one"
    );
    let mut skipped = p.skipped.clone();
    skipped.sort_by_key(|s| s.as_str());
    assert_eq!(
        skipped,
        [Skip::RecentClient, Skip::Young],
        "4 recent client, 0 young; 1 and 2 were counted already"
    );
}

/// A candidate busy at every step for NEVER_QUIET_BOUND is given up on and counted once.
#[test]
fn never_quiet_connections_are_given_up() {
    let t0 = Instant::now();
    let c = cfg();
    let (e, mut r) = two_up(t0);
    r.trigger();
    let start = t0 + 1000 * S;
    let mut skips = Vec::new();
    let mut t = start;
    while t <= start + NEVER_QUIET_BOUND + S {
        // Two chatty connections on A, none on B: an event every 100 ms.
        let conns = vec![
            conn(
                1,
                "a",
                t0,
                t - Duration::from_millis(900),
                t - Duration::from_millis(100),
                10,
            ),
            conn(
                2,
                "a",
                t0,
                t - Duration::from_millis(900),
                t - Duration::from_millis(100),
                10,
            ),
        ];
        let p = r.step(t, &c, &e, &conns);
        assert!(p.closes.is_empty());
        skips.extend(p.skipped);
        t += S;
    }
    skips.sort_by_key(|s| s.as_str());
    assert_eq!(
        skips,
        [
            Skip::Busy,
            Skip::Busy,
            Skip::NoQuietMoment,
            Skip::NoQuietMoment
        ]
    );
}

/// With a paused clock: closes never exceed `maxRate` per second overall, nor the
/// per-backend rate (0.5 % of its connections, at least 1/s).
#[test]
fn rate_limits_hold() {
    let t0 = Instant::now();
    let c = RebalanceConfig {
        max_rate: 5,
        ..cfg()
    };
    // A: 1000 (5/s by share, capped at maxRate 5), B: 400 (2/s), C, D: 0.
    let e = eps(&[
        ("a", 1, true),
        ("b", 1, true),
        ("c", 1, true),
        ("d", 1, true),
    ]);
    let conns = idle_conns(t0, &[("a", 1000), ("b", 400)], 0);
    let mut r = Rebalancer::new();
    r.observe(
        t0,
        &[
            ("a".into(), true),
            ("b".into(), true),
            ("c".into(), true),
            ("d".into(), true),
        ],
    );
    r.trigger();
    let start = t0 + 1000 * S;
    let step = Duration::from_millis(100);
    let mut per_second: HashMap<u64, HashMap<String, usize>> = HashMap::new();
    let mut conns = conns;
    for k in 0..100u32 {
        let t = start + step * k;
        let p = r.step(t, &c, &e, &conns);
        for close in p.closes {
            *per_second
                .entry(u64::from(k / 10))
                .or_default()
                .entry(close.backend.clone())
                .or_default() += 1;
            conns.retain(|x| x.id != close.id);
        }
    }
    for (sec, by) in &per_second {
        let all: usize = by.values().sum();
        assert!(
            all <= 5 + 1,
            "second {sec}: {all} closes > maxRate (+ the first token)"
        );
        assert!(
            by.get("b").copied().unwrap_or(0) <= 2 + 1,
            "second {sec}: {by:?}"
        );
    }
    let total: usize = per_second.values().flat_map(|b| b.values()).sum();
    assert!(total >= 45, "the budget is used: {total} in 10 s");
}

/// A trigger sheds down to the shares below the skew threshold and without `after`, then
/// ends with the episode.
#[test]
fn trigger_runs_now_and_ends_with_the_episode() {
    let t0 = Instant::now();
    let c = cfg();
    let (e, mut r) = two_up(t0);
    let start = t0 + 1000 * S;
    // 11:9 is skew 1.1 < 1.2: nothing on its own.
    let mut conns = idle_conns(t0, &[("a", 11), ("b", 9)], 0);
    for k in 0..100 {
        assert_eq!(r.step(start + k * S, &c, &e, &conns).state, State::Idle);
    }
    r.trigger();
    let p = r.step(start + 100 * S, &c, &e, &conns);
    assert_eq!((p.state, p.closes.len()), (State::Shedding, 1));
    let id = p.closes[0].id;
    conns.retain(|x| x.id != id);
    conns.push(conn(
        99,
        "b",
        start + 100 * S,
        start + 100 * S,
        start + 100 * S,
        0,
    ));
    let p = r.step(start + 101 * S, &c, &e, &conns);
    assert_eq!((p.state, p.excess), (State::Idle, 0));
    // Later skew of the same size does nothing again: the trigger was used.
    let conns = idle_conns(t0, &[("a", 11), ("b", 9)], 200);
    assert_eq!(r.step(start + 200 * S, &c, &e, &conns).state, State::Idle);
}

/// Closed clients not yet back count towards the total: no overshoot while they reconnect.
#[test]
fn pending_reconnects_prevent_overshoot() {
    let t0 = Instant::now();
    let c = RebalanceConfig {
        max_rate: 100,
        ..cfg()
    };
    let (e, mut r) = two_up(t0);
    r.trigger();
    let start = t0 + 1000 * S;
    // 300 on A, 100 on B: share 200 each, 100 to move. Clients take 3 s to come back.
    let mut conns = idle_conns(t0, &[("a", 300), ("b", 100)], 0);
    let mut away: Vec<(Instant, Connection)> = Vec::new();
    let mut moved = 0;
    for k in 0..600u32 {
        let t = start + Duration::from_millis(250) * k;
        let (back, still): (Vec<_>, Vec<_>) = away
            .into_iter()
            .partition(|(at, _)| t.saturating_duration_since(*at) >= 3 * S);
        away = still;
        for (_, mut c) in back {
            c.backend = "b".into();
            c.since = t;
            c.id += 10_000;
            conns.push(c);
        }
        let p = r.step(t, &c, &e, &conns);
        for close in &p.closes {
            let i = conns.iter().position(|x| x.id == close.id).unwrap();
            away.push((t, conns.remove(i)));
        }
        moved += p.closes.len();
    }
    assert_eq!(
        moved, 100,
        "exactly the excess, though clients take 3 s to come back"
    );
    assert_eq!(conns.iter().filter(|c| c.backend == "a").count(), 200);
}
