//! Durations as policy files write them: `30s`, `10m`, `1h30m`, `7d`, `2w`.
//!
//! Parsing is strict (no spaces, no zero-length units, no overflow) so that a typo is an
//! error at load time rather than a surprise at evaluation time. Must not know about any
//! clock: durations are plain millisecond counts.

use std::fmt;

/// A non-negative span of time in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

/// The longest duration a policy may name: 100 years, far beyond any sensible mute or ban.
const MAX_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 24 * 3600 * 1000),
    ('d', 24 * 3600 * 1000),
    ('h', 3600 * 1000),
    ('m', 60 * 1000),
    ('s', 1000),
];

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Parses `1h30m`-style text. Units must appear from largest to smallest, each once.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty duration; write e.g. \"10m\", \"1h30m\" or \"7d\"".into());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut last_unit: Option<usize> = None;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == c) else {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {c:?}; units are w, d, h, m, s"
                ));
            };
            if digits.is_empty() {
                return Err(format!(
                    "bad duration {text:?}: unit {c:?} has no number before it"
                ));
            }
            if last_unit.is_some_and(|last| pos <= last) {
                return Err(format!(
                    "bad duration {text:?}: units must go from largest to smallest, each once"
                ));
            }
            last_unit = Some(pos);
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("bad duration {text:?}: number too large"))?;
            digits.clear();
            total = n
                .checked_mul(UNITS[pos].1)
                .and_then(|ms| total.checked_add(ms))
                .filter(|ms| *ms <= MAX_MS)
                .ok_or_else(|| format!("bad duration {text:?}: longer than 100 years"))?;
        }
        if !digits.is_empty() {
            return Err(format!(
                "bad duration {text:?}: number without a unit; write e.g. \"{digits}s\" or \"{digits}m\""
            ));
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// The canonical form, which `parse` reads back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        if rest == 0 {
            return f.write_str("0s");
        }
        for (unit, ms) in UNITS {
            if rest >= ms {
                write!(f, "{}{unit}", rest / ms)?;
                rest %= ms;
            }
        }
        if rest > 0 {
            write!(f, "{rest}ms")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, ms: u64) {
        assert_eq!(Duration::parse(text), Ok(Duration(ms)), "{text}");
    }

    fn bad(text: &str, needle: &str) {
        let err = Duration::parse(text).unwrap_err();
        assert!(err.contains(needle), "{text}: {err}");
    }

    #[test]
    fn parses_every_unit_and_combinations() {
        ok("30s", 30_000);
        ok("10m", 600_000);
        ok("1h", 3_600_000);
        ok("7d", 604_800_000);
        ok("2w", 1_209_600_000);
        ok("1h30m", 5_400_000);
        ok("1d2h3m4s", 93_784_000);
        ok("0s", 0);
    }

    #[test]
    fn rejects_what_a_typo_produces() {
        bad("", "empty");
        bad("10", "without a unit");
        bad("10x", "unknown unit");
        bad("h", "no number");
        bad("30m1h", "largest to smallest");
        bad("1h1h", "largest to smallest");
        bad("1 h", "unknown unit");
        bad("-5m", "unknown unit");
        bad("99999999999999999999s", "too large");
        bad("999999w", "100 years");
    }

    #[test]
    fn display_round_trips() {
        for text in ["30s", "10m", "1h30m", "7d", "2w", "1w2d3h4m5s"] {
            let d = Duration::parse(text).unwrap();
            assert_eq!(Duration::parse(&d.to_string()).unwrap(), d);
        }
        assert_eq!(Duration::parse("90m").unwrap().to_string(), "1h30m");
    }
}
