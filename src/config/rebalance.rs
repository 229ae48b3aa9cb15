//! The `rebalance:` section: when apilb moves long-lived connections off over-loaded
//! backends after one returns (see [`crate::rebalance`]). Every key has a safe default, so
//! the section may be left out.

use std::time::Duration;

use super::Checker;
use super::raw::RawRebalance;

/// Default `rebalance.enabled`.
pub const DEFAULT_REBALANCE_ENABLED: bool = true;
/// Default `rebalance.skew`: shed when the busiest backend carries 20 % more than the mean.
pub const DEFAULT_REBALANCE_SKEW: f64 = 1.2;
/// Default `rebalance.after`: how long the skew must stay above `skew` before shedding.
pub const DEFAULT_REBALANCE_AFTER: Duration = Duration::from_secs(60);
/// Default `rebalance.warmup`: how long a backend must have been Up before it receives
/// moved connections (a returning apiserver's watch cache must be warm).
pub const DEFAULT_REBALANCE_WARMUP: Duration = Duration::from_secs(90);
/// Default `rebalance.minAge`: younger connections are never closed.
pub const DEFAULT_REBALANCE_MIN_AGE: Duration = Duration::from_secs(600);
/// Default `rebalance.quiet`: both directions silent this long, the server having sent the
/// last byte, before a connection may be closed.
pub const DEFAULT_REBALANCE_QUIET: Duration = Duration::from_millis(500);
/// Default `rebalance.maxRate`: closes per second across all backends (and for any one).
pub const DEFAULT_REBALANCE_MAX_RATE: u32 = 20;
/// Default `rebalance.perClient`: one client address is moved at most once this often.
pub const DEFAULT_REBALANCE_PER_CLIENT: Duration = Duration::from_secs(1800);

/// Largest accepted `rebalance.skew`.
const MAX_SKEW: f64 = 100.0;
/// Shortest accepted `rebalance.quiet`: below this every connection is "quiet".
const MIN_QUIET: Duration = Duration::from_millis(10);

/// The checked `rebalance:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceConfig {
    /// `rebalance.enabled` (default [`DEFAULT_REBALANCE_ENABLED`]): shed on its own when the
    /// skew stays high. An operator's trigger works either way.
    pub enabled: bool,
    /// `rebalance.skew` (default [`DEFAULT_REBALANCE_SKEW`]): above 1.0.
    pub skew: f64,
    /// `rebalance.after` (default [`DEFAULT_REBALANCE_AFTER`]).
    pub after: Duration,
    /// `rebalance.warmup` (default [`DEFAULT_REBALANCE_WARMUP`]).
    pub warmup: Duration,
    /// `rebalance.minAge` (default [`DEFAULT_REBALANCE_MIN_AGE`]).
    pub min_age: Duration,
    /// `rebalance.quiet` (default [`DEFAULT_REBALANCE_QUIET`]).
    pub quiet: Duration,
    /// `rebalance.maxRate` (default [`DEFAULT_REBALANCE_MAX_RATE`]): closes per second.
    pub max_rate: u32,
    /// `rebalance.perClient` (default [`DEFAULT_REBALANCE_PER_CLIENT`]).
    pub per_client: Duration,
}

// `skew` is checked finite, so equality is total.
impl Eq for RebalanceConfig {}

impl Default for RebalanceConfig {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_REBALANCE_ENABLED,
            skew: DEFAULT_REBALANCE_SKEW,
            after: DEFAULT_REBALANCE_AFTER,
            warmup: DEFAULT_REBALANCE_WARMUP,
            min_age: DEFAULT_REBALANCE_MIN_AGE,
            quiet: DEFAULT_REBALANCE_QUIET,
            max_rate: DEFAULT_REBALANCE_MAX_RATE,
            per_client: DEFAULT_REBALANCE_PER_CLIENT,
        }
    }
}

impl Checker {
    pub(super) fn rebalance(&mut self, raw: Option<&RawRebalance>) -> RebalanceConfig {
        let d = RebalanceConfig::default();
        let Some(raw) = raw else { return d };
        let skew = raw.skew.as_ref().and_then(|s| {
            let text = s.0.trim();
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 1.0 && v <= MAX_SKEW => Some(v),
                Ok(_) => {
                    self.problem(
                        "rebalance.skew",
                        format!(
                            "{text} must be above 1.0 and at most {MAX_SKEW} (skew is highest / mean, never below 1)"
                        ),
                    );
                    None
                }
                Err(_) => {
                    self.problem("rebalance.skew", format!("\"{text}\" is not a number"));
                    None
                }
            }
        });
        RebalanceConfig {
            enabled: self
                .boolean(raw.enabled.as_ref(), "rebalance.enabled")
                .unwrap_or(d.enabled),
            skew: skew.unwrap_or(d.skew),
            after: self
                .duration(raw.after.as_ref(), "rebalance.after", None)
                .unwrap_or(d.after),
            warmup: self
                .duration(raw.warmup.as_ref(), "rebalance.warmup", None)
                .unwrap_or(d.warmup),
            min_age: self
                .duration(raw.min_age.as_ref(), "rebalance.minAge", None)
                .unwrap_or(d.min_age),
            quiet: self
                .duration(raw.quiet.as_ref(), "rebalance.quiet", Some(MIN_QUIET))
                .unwrap_or(d.quiet),
            max_rate: self
                .number(raw.max_rate.as_ref(), "rebalance.maxRate", 1, 10_000)
                .map_or(d.max_rate, |n| n as u32),
            per_client: self
                .duration(raw.per_client.as_ref(), "rebalance.perClient", None)
                .unwrap_or(d.per_client),
        }
    }
}
