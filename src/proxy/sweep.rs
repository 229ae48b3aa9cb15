//! Each worker's sweeper: the one task that tells the worker's connections to end for
//! reasons that come from outside their own bytes, by raising them on their
//! [`Signal`](super::track::Signal)s:
//! - idle: no byte either way for `timeouts.idle`, checked every [`tick`];
//! - cut: the end of a drain (the worker's cut token);
//! - kill: their backend went down with `onDown: close` ([`BackendSet::close_connections`]);
//!
//! and, not an end, asks each connection once it is a second old to set its backend leg's
//! keepalive options ([`Why::Tune`]), which short connections never need.
//!
//! One task per worker instead of an idle timer and two token waits in every connection:
//! a connection's task then holds no timer (about 110 bytes, and a timer-wheel insert and
//! removal per connection) and waits on nothing another core writes. The sweeper runs on
//! the worker its connections run on, so it never races with one entering the table.
//!
//! [`BackendSet::close_connections`]: crate::backend::BackendSet::close_connections

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::socket::TUNE_LATE_AFTER;
use super::track::{ConnTable, Why};

/// The shortest time between two idle checks.
const TICK_MIN: Duration = Duration::from_millis(100);
/// The longest time between two idle checks: an idle connection closes at most this late.
const TICK_MAX: Duration = Duration::from_secs(1);

/// Time between two idle checks for an idle timeout of `idle`: a tenth of it, within
/// [`TICK_MIN`] and [`TICK_MAX`].
pub(crate) fn tick(idle: Duration) -> Duration {
    (idle / 10).clamp(TICK_MIN, TICK_MAX)
}

/// Sweep `table` until `cut`, which it then raises on every connection. The idle timeout
/// is read from the current settings at each check, so a reload applies it to established
/// connections too.
pub(crate) async fn run(
    table: Arc<ConnTable>,
    shared: Arc<Shared>,
    cut: CancellationToken,
    mut closings: watch::Receiver<u64>,
) {
    let mut watching = true;
    loop {
        let idle = shared.settings.load().timeouts.idle;
        tokio::select! {
            () = cut.cancelled() => {
                table.raise_all(Why::Cut);
                return;
            }
            changed = closings.changed(), if watching => match changed {
                Ok(()) => {
                    let n = table.raise_closed();
                    tracing::debug!(connections = n, "closing the connections of a backend that went down");
                }
                // The backend set is gone: nothing will close its backends any more.
                Err(_) => watching = false,
            },
            () = tokio::time::sleep(tick(idle)) => {
                let now = Instant::now();
                let n = table.raise_idle(idle, now);
                if n > 0 {
                    tracing::debug!(connections = n, "closing idle connections");
                }
                if let Some(born) = now.checked_sub(TUNE_LATE_AFTER) {
                    table.raise_tune(born);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_a_tenth_of_the_idle_timeout_within_bounds() {
        let s = Duration::from_secs;
        for (idle, want) in [
            (s(1), Duration::from_millis(100)),
            (s(5), Duration::from_millis(500)),
            (s(10), s(1)),
            (s(3600), s(1)),
            (Duration::from_millis(200), TICK_MIN),
        ] {
            assert_eq!(tick(idle), want, "{idle:?}");
        }
    }
}
