//! Text conversions for the command line, both ways: durations, times, wire names and clipped
//! bodies for display; priorities, job ids, `k=v` pairs and times as flag values.

use std::time::{SystemTime, UNIX_EPOCH};

use redrive_core::time::{from_rfc3339, to_rfc3339};
use redrive_core::{JobId, Priority};
use serde::Serialize;

/// Duration units, largest first, for [`duration`] and [`parse_ago`].
const UNITS: [(&str, u64); 5] =
    [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Milliseconds in the largest unit that divides them exactly: `30s`, `4d`, `90s`, `250ms`.
pub fn duration(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    let (unit, size) =
        UNITS.iter().find(|(_, size)| ms / size * size == ms).copied().unwrap_or(("ms", 1));
    format!("{}{unit}", ms / size)
}

pub fn time(ms: u64) -> String {
    to_rfc3339(ms)
}

pub fn opt_time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), to_rfc3339)
}

pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The wire spelling of a serde enum (`max_attempts`, `lease_expired`, `stale`).
pub fn wire_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// A body for a table cell: control characters shown as escapes, cut to `max` characters.
pub fn clip(s: &str, max: usize) -> String {
    let mut shown = String::new();
    for c in s.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
        // A char is at most 4 bytes: past this, there are more than `max` chars for sure.
        if shown.len() > max * 4 {
            break;
        }
    }
    if shown.chars().count() <= max {
        return shown;
    }
    let mut out: String = shown.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse().map_err(|()| format!("{s:?} is not a priority: use high, standard or low"))
}

pub fn parse_job_id(s: &str) -> Result<JobId, String> {
    s.parse().map_err(|()| format!("{s:?} is not a job id (a UUID)"))
}

/// `key=value`, as given to `--attr`.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// A time flag: RFC 3339 (`2025-11-22T08:00:00Z`), or a duration ago (`90m`, `2h`, `3d`).
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Some(ms) = from_rfc3339(s) {
        return Ok(ms);
    }
    let ago = parse_ago(s).ok_or_else(|| {
        format!("{s:?} is not a time: use RFC 3339 or a duration ago such as 30m, 2h, 7d")
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Ok(now.saturating_sub(ago))
}

fn parse_ago(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let size = UNITS.iter().find(|(u, _)| *u == unit)?.1;
    n.parse::<u64>().ok()?.checked_mul(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        let cases =
            [(0, "0"), (250, "250ms"), (30_000, "30s"), (90_000, "90s"), (345_600_000, "4d")];
        for (ms, text) in cases {
            assert_eq!(duration(ms), text);
        }
    }

    #[test]
    fn clip_escapes_and_cuts() {
        assert_eq!(clip("a\nb", 10), "a\\nb");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn parses_flag_values() {
        assert_eq!(parse_pair("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert!(parse_pair("=v").is_err() && parse_pair("kv").is_err());
        assert_eq!(parse_priority("low"), Ok(Priority::Low));
        assert!(parse_priority("urgent").is_err());
        assert_eq!(parse_time("2025-11-22T08:26:40.123Z"), Ok(1_763_800_000_123));
        assert_eq!(parse_ago("2h"), Some(7_200_000));
        assert!(parse_time("2 hours").is_err() && parse_time("h").is_err());
    }

    #[test]
    fn wire_names_match_serde() {
        assert_eq!(wire_name(&redrive_core::model::DeadReason::MaxAttempts), "max_attempts");
    }
}
