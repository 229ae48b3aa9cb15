//! Turns samples into metrics, medians and the markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::load::{Outcome, Workload};
use crate::procfs::Window;
use crate::proxy::ProxyKind;

/// One reported number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Metric {
    Bulk1Gbps,
    Bulk8Gbps,
    Bulk1CpuPerGb,
    Bulk8CpuPerGb,
    RateConnsPerSec,
    RateP50,
    RateP99,
    RateCpuPer1kConns,
    RrReqsPerSec,
    RrP50,
    RrP99,
    RrCpuPer1kReqs,
    IdleKibPerConn,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Bulk1Gbps => "bulk, 1 stream (Gbit/s)",
            Metric::Bulk8Gbps => "bulk, 8 streams (Gbit/s)",
            Metric::Bulk1CpuPerGb => "proxy CPU-s per GB, 1 stream",
            Metric::Bulk8CpuPerGb => "proxy CPU-s per GB, 8 streams",
            Metric::RateConnsPerSec => "connection rate (conn/s)",
            Metric::RateP50 => "connection rate p50 (ms)",
            Metric::RateP99 => "connection rate p99 (ms)",
            Metric::RateCpuPer1kConns => "proxy CPU-s per 1k conns",
            Metric::RrReqsPerSec => "req/resp, persistent (req/s)",
            Metric::RrP50 => "req/resp p50 (ms)",
            Metric::RrP99 => "req/resp p99 (ms)",
            Metric::RrCpuPer1kReqs => "proxy CPU-s per 1k reqs",
            Metric::IdleKibPerConn => "RSS per idle conn (KiB)",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::Bulk1Gbps | Metric::Bulk8Gbps | Metric::RateConnsPerSec | Metric::RrReqsPerSec
        )
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::RateConnsPerSec | Metric::RrReqsPerSec => format!("{v:.0}"),
            Metric::Bulk1Gbps | Metric::Bulk8Gbps | Metric::IdleKibPerConn => format!("{v:.2}"),
            _ => format!("{v:.3}"),
        }
    }
}

/// What is kept of one (workload, proxy, round) run.
pub(crate) struct Sample {
    pub(crate) workload: Workload,
    pub(crate) proxy: ProxyKind,
    pub(crate) round: usize,
    pub(crate) metrics: Vec<(Metric, f64)>,
    pub(crate) window: Option<Window>,
    pub(crate) errors: u64,
    /// The first operation error, or why the whole run failed.
    pub(crate) note: Option<String>,
}

impl Sample {
    pub(crate) fn failed(w: Workload, p: ProxyKind, round: usize, why: String) -> Self {
        Self {
            workload: w,
            proxy: p,
            round,
            metrics: Vec::new(),
            window: None,
            errors: 0,
            note: Some(why),
        }
    }

    /// Reduces an outcome to its metrics. CPU-per-unit and memory metrics need a proxy.
    pub(crate) fn from_outcome(
        w: Workload,
        p: ProxyKind,
        round: usize,
        mut o: Outcome,
        has_proxy: bool,
    ) -> Self {
        let win = o.window;
        let wall = win.wall.max(1e-9);
        let mut m = Vec::new();
        let gb = o.bytes as f64 / 1e9;
        let kops = o.ops as f64 / 1e3;
        o.lat_us.sort_unstable();
        let p50 = percentile_ms(&o.lat_us, 0.50);
        let p99 = percentile_ms(&o.lat_us, 0.99);
        match w {
            Workload::Bulk1 | Workload::Bulk8 => {
                let (rate, cpu) = if w == Workload::Bulk1 {
                    (Metric::Bulk1Gbps, Metric::Bulk1CpuPerGb)
                } else {
                    (Metric::Bulk8Gbps, Metric::Bulk8CpuPerGb)
                };
                m.push((rate, o.bytes as f64 * 8.0 / wall / 1e9));
                if has_proxy && gb > 0.0 {
                    m.push((cpu, win.proxy / gb));
                }
            }
            Workload::Rate | Workload::Rr => {
                let (rate, l50, l99, cpu) = if w == Workload::Rate {
                    (
                        Metric::RateConnsPerSec,
                        Metric::RateP50,
                        Metric::RateP99,
                        Metric::RateCpuPer1kConns,
                    )
                } else {
                    (
                        Metric::RrReqsPerSec,
                        Metric::RrP50,
                        Metric::RrP99,
                        Metric::RrCpuPer1kReqs,
                    )
                };
                m.push((rate, o.ops as f64 / wall));
                if let (Some(a), Some(b)) = (p50, p99) {
                    m.push((l50, a));
                    m.push((l99, b));
                }
                if has_proxy && kops > 0.0 {
                    m.push((cpu, win.proxy / kops));
                }
            }
            Workload::Idle => match o.rss {
                Some((before, after)) if o.ops > 0 => {
                    let delta = after.saturating_sub(before) as f64;
                    m.push((Metric::IdleKibPerConn, delta / o.ops as f64 / 1024.0));
                }
                _ => {}
            },
        }
        Self {
            workload: w,
            proxy: p,
            round,
            metrics: m,
            window: Some(win),
            errors: o.errors,
            note: o.first_error,
        }
    }

    /// One line for the progress log.
    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "{:<6} round {} {:<13}",
            self.workload, self.round, self.proxy
        );
        if self.window.is_none() {
            let _ = write!(s, " FAILED: {}", self.note.as_deref().unwrap_or("?"));
            return s;
        }
        for (k, v) in &self.metrics {
            let _ = write!(s, " | {} {}", k.name(), k.format(*v));
        }
        if let Some(w) = &self.window {
            let _ = write!(
                s,
                " | cores: proxy {:.2} gen {:.2} backends {:.2} softirq {:.2} other {:.2}",
                w.proxy / w.wall,
                w.generator / w.wall,
                w.backends / w.wall,
                w.softirq / w.wall,
                w.other / w.wall
            );
        }
        if self.errors > 0 {
            let _ = write!(
                s,
                " | {} errors, first: {}",
                self.errors,
                self.note.as_deref().unwrap_or("?")
            );
        }
        s
    }
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    // Nearest rank.
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    Some(f64::from(sorted_us[i]) / 1000.0)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Renders the whole report. `header` lines go first, as a bullet list.
pub(crate) fn render(
    header: &[String],
    proxies: &[ProxyKind],
    rounds: usize,
    samples: &[Sample],
) -> String {
    let mut med: BTreeMap<(Metric, ProxyKind), f64> = BTreeMap::new();
    let mut by_key: BTreeMap<(Metric, ProxyKind), Vec<f64>> = BTreeMap::new();
    for s in samples {
        for &(k, v) in &s.metrics {
            by_key.entry((k, s.proxy)).or_default().push(v);
        }
    }
    for (key, vals) in by_key {
        if let Some(m) = median(vals) {
            med.insert(key, m);
        }
    }
    let metrics: Vec<Metric> = {
        let mut v: Vec<Metric> = med.keys().map(|(k, _)| *k).collect();
        v.dedup();
        v
    };

    let mut out = String::new();
    let _ = writeln!(out, "# apilb L4 benchmark results\n");
    for h in header {
        let _ = writeln!(out, "- {h}");
    }

    let _ = writeln!(out, "\n## Absolute numbers (median of {rounds} rounds)\n");
    let _ = write!(out, "| metric |");
    for p in proxies {
        let _ = write!(out, " {p} |");
    }
    let _ = write!(out, "\n|---|");
    for _ in proxies {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for &k in &metrics {
        let _ = write!(out, "| {} |", k.name());
        for &p in proxies {
            match med.get(&(k, p)) {
                Some(v) => {
                    let _ = write!(out, " {} |", k.format(*v));
                }
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }

    let pairs: Vec<(ProxyKind, ProxyKind)> = proxies
        .iter()
        .filter(|p| p.is_apilb())
        .flat_map(|&a| {
            proxies
                .iter()
                .filter(|b| matches!(b, ProxyKind::Haproxy | ProxyKind::Nginx))
                .map(move |&b| (a, b))
        })
        .collect();
    let _ = writeln!(out, "\n## Ratios apilb / HAProxy and apilb / nginx\n");
    if pairs.is_empty() {
        let _ = writeln!(
            out,
            "No ratio: this run measured no apilb variant or neither HAProxy nor nginx."
        );
    } else {
        let _ = writeln!(
            out,
            "Target: >= 1.00 where higher is better (throughput, rates), <= 1.00 where lower \
             is better (latency, CPU per unit, memory). `ok` meets it, `MISS` does not.\n"
        );
        let _ = write!(out, "| metric | better |");
        for (a, b) in &pairs {
            let _ = write!(out, " {a} / {b} |");
        }
        let _ = write!(out, "\n|---|---|");
        for _ in &pairs {
            let _ = write!(out, "---:|");
        }
        out.push('\n');
        for &k in &metrics {
            let better = if k.higher_is_better() {
                "higher"
            } else {
                "lower"
            };
            let _ = write!(out, "| {} | {better} |", k.name());
            for &(a, b) in &pairs {
                match (med.get(&(k, a)), med.get(&(k, b))) {
                    (Some(x), Some(y)) if *y > 0.0 => {
                        let r = x / y;
                        let ok = if k.higher_is_better() {
                            r >= 1.0
                        } else {
                            r <= 1.0
                        };
                        let _ = write!(out, " {r:.2} {} |", if ok { "ok" } else { "MISS" });
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
    }

    let _ = writeln!(
        out,
        "\n## Where the CPU went (median cores busy during the measured window)\n"
    );
    let _ = writeln!(
        out,
        "`softirq` is machine-wide softirq time, charged to no process (mostly the loopback \
         network stack carrying this benchmark's packets). `other` is the rest of the \
         machine's busy time: other users of the machine and kernel threads. A large \
         `other` means the proxies competed for the cores with someone else.\n"
    );
    let _ = writeln!(
        out,
        "| workload | proxy | proxy | generator | backends | softirq | other |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    let mut windows: BTreeMap<(Workload, ProxyKind), Vec<Window>> = BTreeMap::new();
    for s in samples {
        if let Some(w) = s.window {
            windows.entry((s.workload, s.proxy)).or_default().push(w);
        }
    }
    for ((w, p), ws) in &windows {
        let col = |f: fn(&Window) -> f64| {
            median(ws.iter().map(|x| f(x) / x.wall.max(1e-9)).collect())
                .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
        };
        let _ = writeln!(
            out,
            "| {w} | {p} | {} | {} | {} | {} | {} |",
            col(|x| x.proxy),
            col(|x| x.generator),
            col(|x| x.backends),
            col(|x| x.softirq),
            col(|x| x.other)
        );
    }

    let troubled: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.window.is_none() || s.errors > 0)
        .collect();
    let _ = writeln!(out, "\n## Errors\n");
    if troubled.is_empty() {
        let _ = writeln!(out, "None: every operation of every sample succeeded.");
    } else {
        for s in troubled {
            let what = match s.window {
                None => "run failed".to_string(),
                Some(_) => format!("{} failed operations", s.errors),
            };
            let _ = writeln!(
                out,
                "- {} round {} {}: {what}: {}",
                s.workload,
                s.round,
                s.proxy,
                s.note.as_deref().unwrap_or("?").replace('\n', " / ")
            );
        }
    }
    out
}
