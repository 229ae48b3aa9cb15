//! Log output: tracing events on stderr, as text lines or JSON objects, with ANSI colour
//! only for a person watching a terminal.
//!
//! Colour is on when all of these hold: stderr is a terminal, stderr is not the systemd
//! journal (`JOURNAL_STREAM`, set by systemd to the `DEVICE:INODE` of the stream it
//! connected, names stderr's own device and inode), and `NO_COLOR` is unset or empty
//! (<https://no-color.org>). Files, pipes and the journal never get escape codes.
//!
//! The decision is the pure [`colour_wanted`]; [`init`] is the edge that reads the
//! environment and stderr and installs the subscriber. Values in log fields are written
//! as an operator types them: see [`Rfc3339`] for times.

use std::ffi::OsStr;
use std::fmt;
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The filter used when neither `--log` nor `RUST_LOG` gives a valid one.
const DEFAULT_FILTER: &str = "info";

/// What [`colour_wanted`] needs to know about stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stderr {
    /// stderr is a terminal.
    pub terminal: bool,
    /// Its device and inode numbers, when they could be read.
    pub id: Option<(u64, u64)>,
}

impl Stderr {
    /// The process's stderr now.
    pub fn current() -> Self {
        let stderr = std::io::stderr();
        // dev_t and ino_t are u64 on 64-bit Linux but narrower on some other targets.
        #[allow(clippy::unnecessary_cast)]
        let id = nix::sys::stat::fstat(&stderr)
            .ok()
            .map(|st| (st.st_dev as u64, st.st_ino as u64));
        Self {
            terminal: stderr.is_terminal(),
            id,
        }
    }
}

/// Whether log lines on `stderr` get ANSI colour, given the values of `NO_COLOR` and
/// `JOURNAL_STREAM` (`None` when unset).
pub fn colour_wanted(
    no_color: Option<&OsStr>,
    journal_stream: Option<&OsStr>,
    stderr: Stderr,
) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) || !stderr.terminal {
        return false;
    }
    let journal = journal_stream
        .and_then(OsStr::to_str)
        .and_then(journal_stream_id);
    match (journal, stderr.id) {
        (Some(j), Some(s)) => j != s,
        _ => true,
    }
}

/// `DEVICE:INODE` (both decimal), as systemd writes `JOURNAL_STREAM`.
fn journal_stream_id(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Install the global subscriber: events on stderr in `format`, filtered by `filter`
/// (`--log`), else `RUST_LOG`, else `info`. A bad filter is reported and `info` used.
pub fn init(format: LogFormat, filter: Option<&str>) {
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).unwrap_or_else(|e| {
            eprintln!("warning: --log {f}: {e}; logging at `{DEFAULT_FILTER}` instead");
            EnvFilter::new(DEFAULT_FILTER)
        }),
        None => match std::env::var_os(EnvFilter::DEFAULT_ENV) {
            None => EnvFilter::new(DEFAULT_FILTER),
            Some(v) => EnvFilter::try_from_default_env().unwrap_or_else(|e| {
                eprintln!(
                    "warning: RUST_LOG={}: {e}; logging at `{DEFAULT_FILTER}` instead",
                    v.to_string_lossy()
                );
                EnvFilter::new(DEFAULT_FILTER)
            }),
        },
    };
    let colour = colour_wanted(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        Stderr::current(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A time as RFC 3339 in UTC (`2026-12-03T15:04:05Z`), for log fields and messages:
/// `expires = %Rfc3339(at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub time::OffsetDateTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utc = self
            .0
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(self.0);
        match utc.format(&time::format_description::well_known::Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}", utc.unix_timestamp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Stderr = Stderr {
        terminal: true,
        id: Some((25, 4711)),
    };
    const PIPE: Stderr = Stderr {
        terminal: false,
        id: Some((14, 99)),
    };

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn colour_only_for_a_terminal_outside_the_journal_without_no_color() {
        // (NO_COLOR, JOURNAL_STREAM, stderr) -> colour
        let cases: [(Option<&OsStr>, Option<&OsStr>, Stderr, bool); 10] = [
            (None, None, TTY, true),
            (None, None, PIPE, false),
            (os("1"), None, TTY, false),
            (os("yes"), None, PIPE, false),
            // NO_COLOR set but empty does not count (no-color.org).
            (os(""), None, TTY, true),
            // stderr is the journal's stream.
            (None, os("25:4711"), TTY, false),
            (None, os("14:99"), PIPE, false),
            // JOURNAL_STREAM inherited from a service, but stderr is another file.
            (None, os("25:1"), TTY, true),
            // Unreadable values are ignored.
            (None, os("garbage"), TTY, true),
            (
                None,
                os("25:4711"),
                Stderr {
                    terminal: true,
                    id: None,
                },
                true,
            ),
        ];
        for (no_color, journal, stderr, want) in cases {
            assert_eq!(
                colour_wanted(no_color, journal, stderr),
                want,
                "NO_COLOR={no_color:?} JOURNAL_STREAM={journal:?} {stderr:?}"
            );
        }
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(journal_stream_id("8:123456"), Some((8, 123456)));
        assert_eq!(journal_stream_id("8:"), None);
        assert_eq!(journal_stream_id("8"), None);
        assert_eq!(journal_stream_id("a:1"), None);
    }

    #[test]
    fn times_are_rfc3339_in_utc_to_the_second() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_796_400_000)
            .unwrap()
            .replace_nanosecond(123_456_789)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(Rfc3339(t).to_string(), "2026-12-04T16:00:00Z");
    }
}
