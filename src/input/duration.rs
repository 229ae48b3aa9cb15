//! The one duration syntax of both files: one or more `<whole number><unit>` pairs written
//! together, largest unit first, with the units `ms`, `s`, `m`, `h` and `d` (24 h): `250ms`,
//! `3s`, `1h30m`, `8760h`. Nothing else: no spaces (`1 hour` is refused), no fractions, no
//! bare numbers (the unit is never guessed).

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing written.
    #[error("it is empty (write e.g. 3s or 250ms)")]
    Empty,
    /// A number without a unit.
    #[error("it has no unit (write e.g. {0}s or {0}ms)")]
    NoUnit(String),
    /// Spaces inside, as in `1 hour`.
    #[error("write it without spaces, with the units ms, s, m, h, d (e.g. 1h or 1h30m)")]
    Spaces,
    /// Anything else.
    #[error("write a number and a unit, e.g. 3s, 250ms or 1h30m")]
    Syntax,
    /// Too long to represent.
    #[error("it is too long")]
    Overflow,
}

/// The units, largest first, each with its length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("ms", 1),
    ("m", 60_000),
    ("s", 1_000),
];

/// Parse a duration in the syntax above.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(DurationError::NoUnit(t.to_owned()));
    }
    if t.contains(char::is_whitespace) {
        return Err(DurationError::Spaces);
    }
    let mut rest = t;
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Syntax);
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow)?;
        rest = &rest[digits..];
        // `ms` before `m`: the longest unit name that matches.
        let Some((name, ms)) = UNITS.iter().find(|(name, _)| rest.starts_with(name)) else {
            return Err(DurationError::Syntax);
        };
        if *ms >= last_unit {
            return Err(DurationError::Syntax);
        }
        last_unit = *ms;
        rest = &rest[name.len()..];
        total = number
            .checked_mul(*ms)
            .and_then(|n| total.checked_add(n))
            .ok_or(DurationError::Overflow)?;
    }
    Ok(Duration::from_millis(total))
}

/// `d` written in the syntax above, so that what a message shows can be written back:
/// `1s500ms`, `1h30m`, `0s` (below a millisecond counts as 0).
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{name}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_durations_parse_back() {
        for ms in [
            0u64,
            1,
            250,
            1_000,
            1_500,
            90_500,
            5_400_000,
            86_400_000 + 61_001,
        ] {
            let d = Duration::from_millis(ms);
            let text = format_duration(d);
            assert_eq!(parse_duration(&text), Ok(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
    }

    #[test]
    fn the_documented_syntax() {
        let ok: &[(&str, u64)] = &[
            ("250ms", 250),
            ("3s", 3_000),
            ("0s", 0),
            ("1h30m", 5_400_000),
            ("1m30s500ms", 90_500),
            ("8760h", 8_760 * 3_600_000),
            ("2d", 172_800_000),
            (" 5s ", 5_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(*ms)),
                "{text}"
            );
        }
        let bad: &[(&str, DurationError)] = &[
            ("", DurationError::Empty),
            ("30", DurationError::NoUnit("30".into())),
            ("1 hour", DurationError::Spaces),
            ("1h 30m", DurationError::Spaces),
            ("1hour", DurationError::Syntax),
            ("1.5s", DurationError::Syntax),
            ("30m1h", DurationError::Syntax),
            ("1s1s", DurationError::Syntax),
            ("-1s", DurationError::Syntax),
            ("forever", DurationError::Syntax),
            ("99999999999999999999s", DurationError::Overflow),
        ];
        for (text, want) in bad {
            assert_eq!(parse_duration(text).as_ref(), Err(want), "{text}");
        }
        assert_eq!(
            DurationError::NoUnit("3".into()).to_string(),
            "it has no unit (write e.g. 3s or 3ms)"
        );
    }
}
