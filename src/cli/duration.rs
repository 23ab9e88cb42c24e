//! Durations as the command line and the config file write them: a whole
//! number and a unit, `30s`, `15m`, `12h`, `90d` (a bare number is seconds).
//!
//! One parser for every duration flag, so that `--retention 90d` and
//! `--header-timeout 30s` read alike.

use std::time::Duration;

/// Parses `90d`, `12h`, `15m`, `30s`, `250ms` or `30` (seconds). Too large a
/// number saturates instead of wrapping.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {value:?}: use e.g. 30s, 15m, 12h or 90d"))?;
    if unit == "ms" {
        return Ok(Duration::from_millis(number));
    }
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "bad duration unit in {value:?}; use ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// `duration` as [`parse_duration`] reads it, in the largest unit that
/// writes it whole: `90d`, `36h`, `90s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match [(86_400, 'd'), (3600, 'h'), (60, 'm')]
        .into_iter()
        .find(|(unit, _)| secs > 0 && secs % unit == 0)
    {
        Some((unit, name)) => format!("{}{name}", secs / unit),
        None => format!("{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_mistakes() {
        for (text, secs) in [
            ("30", 30),
            ("30s", 30),
            ("15m", 900),
            ("12h", 43_200),
            ("90d", 7_776_000),
            (" 1d ", 86_400),
            ("0d", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(
            parse_duration("99999999999999999999d").map(|_| ()).ok(),
            None,
            "more digits than u64: refused"
        );
        assert_eq!(
            parse_duration(&format!("{}d", u64::MAX)),
            Ok(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "d", "1w", "1.5h", "-1d", "1 d", "1dd"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formatted_as_parsed() {
        for text in ["90d", "36h", "90m", "90s", "0s", "86401s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
