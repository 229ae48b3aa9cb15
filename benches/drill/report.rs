//! What each (proxy, event) run measured, and the markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::Event;
use crate::load::{Kind, Record};
use crate::proxy::ProxyKind;

/// The affected backend (1-based, as in the stand-ins' names).
pub(crate) const AFFECTED: usize = 1;

/// One proxy through one event.
pub(crate) struct Run {
    pub(crate) proxy: ProxyKind,
    pub(crate) event: Event,
    pub(crate) records: Vec<Record>,
    /// When the event took effect, from the start of the load.
    pub(crate) event_at: Duration,
    /// From restarting (kill, drain) or resuming (hung) the stand-in until a new connection
    /// through the proxy was answered by it; `None` if not within the limit.
    pub(crate) back_after: Option<Duration>,
    /// Busy share of the machine's CPUs during the load, 0..1.
    pub(crate) busy: f64,
    /// Where the proxy's output is.
    pub(crate) log: String,
    /// Anything that went wrong around the run.
    pub(crate) note: Option<String>,
}

/// The numbers of one run.
#[derive(Default)]
pub(crate) struct Stats {
    /// Requests on new connections started at or after the event that failed, and all of
    /// them.
    pub(crate) new_failed: usize,
    pub(crate) new_after: usize,
    /// Requests on new connections started before the event, still running at it, that
    /// failed (the ones an L4 proxy cannot save: they were on the affected backend).
    pub(crate) in_flight_failed: usize,
    /// Failures that ended before the event (should be 0: a sick baseline).
    pub(crate) before_failed: usize,
    /// Failed requests of the keep-alive connections at or after the event.
    pub(crate) persistent_failed: usize,
    pub(crate) persistent_total: usize,
    /// Keep-alive connections found closed while idle and reopened, at or after the event.
    pub(crate) persistent_reopened: usize,
    /// Start of the last new-connection request after the event that went to the affected
    /// backend (answered by it, or failed), relative to the event.
    pub(crate) last_to_affected: Option<Duration>,
    /// All requests on new connections, and those answered.
    pub(crate) total: usize,
    pub(crate) ok: usize,
    /// Share of answered new-connection requests before the event that came from the
    /// affected backend.
    pub(crate) share_before: f64,
}

impl Run {
    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let (mut before_ok, mut before_affected) = (0usize, 0usize);
        for r in &self.records {
            let failed = r.result.is_err();
            match r.kind {
                Kind::New => {
                    s.total += 1;
                    if !failed {
                        s.ok += 1;
                    }
                    if r.start >= self.event_at {
                        s.new_after += 1;
                        if failed {
                            s.new_failed += 1;
                        }
                        if failed || r.result == Ok(AFFECTED) {
                            let at = r.start - self.event_at;
                            s.last_to_affected = Some(s.last_to_affected.map_or(at, |l| l.max(at)));
                        }
                    } else if r.end >= self.event_at {
                        if failed {
                            s.in_flight_failed += 1;
                        }
                    } else {
                        if failed {
                            s.before_failed += 1;
                        } else {
                            before_ok += 1;
                            if r.result == Ok(AFFECTED) {
                                before_affected += 1;
                            }
                        }
                    }
                }
                Kind::Persistent => {
                    if r.end >= self.event_at {
                        s.persistent_total += 1;
                        if r.reopened {
                            s.persistent_reopened += 1;
                        }
                        if failed {
                            s.persistent_failed += 1;
                        }
                    }
                }
            }
        }
        s.share_before = if before_ok == 0 {
            0.0
        } else {
            before_affected as f64 / before_ok as f64
        };
        s
    }

    /// Failure reasons with counts and when they started (relative to the event).
    fn failures(&self) -> Vec<String> {
        let mut by: BTreeMap<(String, &'static str), (usize, f64, f64)> = BTreeMap::new();
        for r in &self.records {
            let Err(why) = &r.result else { continue };
            let when = if r.kind == Kind::Persistent {
                "persistent"
            } else if r.start >= self.event_at {
                "new, after the event"
            } else {
                "new, in flight at the event"
            };
            let t = r.start.as_secs_f64() - self.event_at.as_secs_f64();
            let e = by.entry((why.clone(), when)).or_insert((0, t, t));
            e.0 += 1;
            e.1 = e.1.min(t);
            e.2 = e.2.max(t);
        }
        by.into_iter()
            .map(|((why, when), (n, first, last))| {
                format!("{n} x {when}: {why} (started {first:+.2}s .. {last:+.2}s)")
            })
            .collect()
    }
}

/// Whether apilb meets the target for `event`, given both proxies' counts.
pub(crate) fn target(event: Event, apilb: &Stats, haproxy: Option<&Stats>) -> (bool, String) {
    match event {
        Event::Kill | Event::Drain => (
            apilb.new_failed == 0,
            format!(
                "apilb new-connection failures = 0 (got {})",
                apilb.new_failed
            ),
        ),
        Event::Hung => match haproxy {
            Some(h) => (
                apilb.new_failed <= h.new_failed,
                format!(
                    "apilb new-connection failures <= HAProxy's ({} vs {})",
                    apilb.new_failed, h.new_failed
                ),
            ),
            None => (true, "needs a HAProxy run to compare".to_owned()),
        },
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The whole report.
pub(crate) fn render(header: &[String], runs: &[Run], configs: &str) -> String {
    let mut out = String::from("# Failure drill: apilb vs HAProxy\n\n");
    for h in header {
        let _w = writeln!(out, "- {h}");
    }
    let proxies: Vec<ProxyKind> = ProxyKind::ALL
        .into_iter()
        .filter(|p| runs.iter().any(|r| r.proxy == *p))
        .collect();
    let events: Vec<Event> = Event::ALL
        .into_iter()
        .filter(|e| runs.iter().any(|r| r.event == *e))
        .collect();
    let find = |p: ProxyKind, e: Event| runs.iter().find(|r| r.proxy == p && r.event == e);

    let _w = write!(out, "\n| event | measure |");
    for p in &proxies {
        let _w = write!(out, " {p} |");
    }
    out.push_str("\n|---|---|");
    for _ in &proxies {
        out.push_str("---:|");
    }
    out.push('\n');
    type Row = (&'static str, fn(&Run, &Stats) -> String);
    let rows: [Row; 9] = [
        (
            "**failed requests, new connections started after the event**",
            |_, s| format!("**{}** of {}", s.new_failed, s.new_after),
        ),
        ("failed requests in flight at the event", |_, s| {
            s.in_flight_failed.to_string()
        }),
        ("persistent-connection failures after the event", |_, s| {
            format!("{} of {}", s.persistent_failed, s.persistent_total)
        }),
        (
            "keep-alive connections closed while idle, reopened",
            |_, s| s.persistent_reopened.to_string(),
        ),
        ("last new connection sent to b1 after the event", |_, s| {
            s.last_to_affected
                .map_or("none".to_owned(), |d| format!("+{}", secs(d)))
        }),
        ("requests on new connections (answered / all)", |_, s| {
            let extra = if s.before_failed > 0 {
                format!(" ({} failed before the event)", s.before_failed)
            } else {
                String::new()
            };
            format!("{} / {}{extra}", s.ok, s.total)
        }),
        ("b1's share before the event", |_, s| {
            format!("{:.0} %", s.share_before * 100.0)
        }),
        ("b1 answering again after restart/resume", |r, _| {
            r.back_after.map_or("not within limit".to_owned(), secs)
        }),
        ("machine CPU busy during the load", |r, _| {
            format!("{:.0} %", r.busy * 100.0)
        }),
    ];
    for &e in &events {
        for (i, (label, f)) in rows.iter().enumerate() {
            let ev = if i == 0 { e.label() } else { "" };
            let _w = write!(out, "| {ev} | {label} |");
            for &p in &proxies {
                let cell = match find(p, e) {
                    Some(r) => f(r, &r.stats()),
                    None => "-".to_owned(),
                };
                let _w = write!(out, " {cell} |");
            }
            out.push('\n');
        }
    }

    out.push_str("\n## Targets (issue 3)\n\n");
    for &e in &events {
        let Some(a) = find(ProxyKind::Apilb, e) else {
            continue;
        };
        let h = find(ProxyKind::Haproxy, e).map(Run::stats);
        let (ok, what) = target(e, &a.stats(), h.as_ref());
        let _w = writeln!(
            out,
            "- {}: {what}: **{}**",
            e.label(),
            if ok { "met" } else { "MISSED" }
        );
    }

    out.push_str("\n## Failures in detail\n\nTimes are request starts relative to the event.\n");
    for r in runs {
        let f = r.failures();
        let _w = writeln!(
            out,
            "\n### {} / {} (event at +{:.2}s of the load; log: {})\n",
            r.proxy,
            r.event.label(),
            r.event_at.as_secs_f64(),
            r.log
        );
        if let Some(n) = &r.note {
            let _w = writeln!(out, "- note: {n}");
        }
        if f.is_empty() {
            out.push_str("- none\n");
        }
        for line in f {
            let _w = writeln!(out, "- {line}");
        }
    }
    out.push_str("\n## Configs (ports vary per run)\n\n");
    out.push_str(configs);
    out
}
