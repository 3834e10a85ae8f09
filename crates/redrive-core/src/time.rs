//! Time is milliseconds since the Unix epoch (`u64`), passed in explicitly so the engine stays
//! deterministic; it is rendered as RFC 3339 on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time. The engine takes `now` from it once per batch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn to_rfc3339(ms: u64) -> String {
    with_rfc3339(ms, str::to_owned)
}

/// Calls `f` with `ms` in RFC 3339 with milliseconds, UTC, written on the stack for the years
/// 1970–9999 (every time a job carries): three of them go out with every delivery.
fn with_rfc3339<R>(ms: u64, f: impl FnOnce(&str) -> R) -> R {
    match canonical(ms) {
        Some(text) => f(std::str::from_utf8(&text).expect("digits and ASCII punctuation")),
        None => {
            f(&humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
        }
    }
}

/// The form `to_rfc3339` writes, `YYYY-MM-DDTHH:MM:SS.mmmZ`, for years up to 9999 (`None`
/// past them).
fn canonical(ms: u64) -> Option<[u8; 24]> {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    if year > 9999 {
        return None;
    }
    let clock = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, clock / 3600);
    put(14, 2, clock / 60 % 60);
    put(17, 2, clock % 60);
    put(20, 3, ms % 1000);
    Some(out)
}

/// Reads exactly the form [`canonical`] writes, from 1970 on; `None` for anything else (which
/// the general reader then takes).
fn from_canonical(s: &[u8]) -> Option<u64> {
    let s: &[u8; 24] = s.try_into().ok()?;
    if [s[4], s[7], s[10], s[13], s[16], s[19], s[23]] != *b"--T::.Z" {
        return None;
    }
    let digit = |i: usize| {
        let d = s[i].wrapping_sub(b'0');
        (d < 10).then_some(u64::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let milli = digit(20)? * 100 + two(21)?;
    let valid = year >= 1970
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| {
        let days = days_from_civil(year, month, day);
        ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + milli
    })
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 as (year, month, day) in the proleptic Gregorian calendar, counted in
/// 400-year eras of 146,097 days from 0000-03-01 (H. Hinnant, "chrono-compatible low-level date
/// algorithms").
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`], for dates from 1970-01-01 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (year / 400, year % 400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Reads an RFC 3339 time with any offset (`Z`, `+02:00`, `-05:30`; lower-case `t` and `z` too),
/// or with none, read as UTC. A valid time before the epoch reads as 0 (every time here is a
/// bound or a moment to run at, and the past is all one). `None` for anything else.
pub fn from_rfc3339(s: &str) -> Option<u64> {
    if let Some(ms) = from_canonical(s.as_bytes()) {
        return Some(ms);
    }
    let (local, offset_ms) = split_offset(s)?;
    let year: u32 =
        local.get(..4).filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()?;
    let mut local = std::borrow::Cow::Borrowed(local);
    if local.bytes().any(|b| b == b't') {
        local = local.to_ascii_uppercase().into();
    }
    if year < 1970 {
        // humantime's range starts at 1970; a leap year in its place still checks the date.
        let checked = format!("1972{}", &local[4..]);
        return humantime::parse_rfc3339_weak(&checked).ok().map(|_| 0);
    }
    let t = humantime::parse_rfc3339_weak(&local).ok()?;
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(u64::try_from(ms - offset_ms).unwrap_or(0))
}

/// A time's local part and its offset east of UTC in milliseconds.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(local) = s.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let Some(at) = s.len().checked_sub(6).filter(|&at| s.is_char_boundary(at)) else {
        return Some((s, 0));
    };
    let (local, zone) = s.split_at(at);
    let z = zone.as_bytes();
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Some((s, 0)),
    };
    let two = |i: usize| -> Option<i64> {
        let (a, b) = (z[i], z[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| ((a - b'0') * 10 + (b - b'0')) as i64)
    };
    let (hours, minutes) = (two(1)?, two(4)?);
    if z[3] != b':' || hours > 23 || minutes > 59 {
        return None;
    }
    Some((local, sign * (hours * 60 + minutes) * 60_000))
}

/// Serde adapter: `u64` milliseconds as an RFC 3339 string.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        super::with_rfc3339(*ms, |text| s.serialize_str(text))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::from_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 time"))
    }
}

/// Serde adapter: `Option<u64>` milliseconds as an optional RFC 3339 string.
pub mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::with_rfc3339(*ms, |text| s.serialize_str(text)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| {
            super::from_rfc3339(&s)
                .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 time"))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_round_trips() {
        let ms = 1_763_800_000_123;
        let s = super::to_rfc3339(ms);
        assert_eq!(s, "2025-11-22T08:26:40.123Z");
        assert_eq!(super::from_rfc3339(&s), Some(ms));
    }

    /// The form written on the stack, and its reader, agree with the general formatter and
    /// parser: every day from 1970 to 2199 at a moment that moves through the day, moments
    /// spread to the end of 9999, and the edges.
    #[test]
    fn the_fast_form_agrees_with_the_general_one() {
        use super::*;
        let general =
            |ms: u64| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
        let general_read = |s: &str| {
            let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
            Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
        };
        let last = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let days = (0..84_000u64).map(|d| d * 86_400_000 + d * 7_919_993 % 86_400_000);
        let spread = (0..20_000u64).map(|i| i * (last / 20_000) + i * 37);
        let edges = [0, 999, 1000, 86_399_999, 86_400_000, 951_782_400_000, last - 1, last];
        for ms in days.chain(spread).chain(edges) {
            let text = to_rfc3339(ms);
            assert_eq!(text, general(ms).to_string());
            assert_eq!(from_canonical(text.as_bytes()), Some(ms), "{text}");
            assert_eq!(general_read(&text), Some(ms), "{text}");
        }
        assert_eq!(to_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert!(canonical(last + 1).is_none());
        // Not the form, or not a date: left to the general reader.
        for s in [
            "2025-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2024-04-31T00:00:00.000Z",
            "2025-11-22T24:00:00.000Z",
            "2025-11-22T08:60:00.000Z",
            "2025-11-22T08:26:60.000Z",
            "2025-00-22T08:26:40.123Z",
            "1969-12-31T23:59:59.999Z",
            "2025-11-22T08:26:40.123+00:00",
            "2025-11-22T08:26:40.12Z",
            "2025-11-22 08:26:40.123Z",
            "2025-1a-22T08:26:40.123Z",
            "+025-11-22T08:26:40.123Z",
        ] {
            assert_eq!(from_canonical(s.as_bytes()), None, "{s}");
        }
        assert_eq!(from_rfc3339("2100-02-29T00:00:00.000Z"), None);
        assert_eq!(from_rfc3339("1969-12-31T23:59:59.999Z"), Some(0));
    }

    #[test]
    fn rfc3339_offsets_are_read() {
        let utc = super::from_rfc3339("2025-11-22T08:26:40.123Z");
        assert_eq!(super::from_rfc3339("2025-11-22T10:26:40.123+02:00"), utc);
        assert_eq!(super::from_rfc3339("2025-11-22T03:56:40.123-04:30"), utc);
        assert_eq!(super::from_rfc3339("2025-11-22t08:26:40.123z"), utc);
        assert_eq!(super::from_rfc3339("2025-11-22T08:26:40.123+00:00"), utc);
        assert_eq!(super::from_rfc3339("2025-11-22T08:26:40.123"), utc);
        assert_eq!(super::from_rfc3339("1970-01-01T00:30:00+01:00"), Some(0));
        assert_eq!(super::from_rfc3339("0070-04-03T12:00:24-08:30"), Some(0));
        assert_eq!(super::from_rfc3339("0032-02-29T00:00:00Z"), Some(0));
        assert_eq!(super::from_rfc3339("0031-02-30T00:00:00Z"), None);
        assert_eq!(super::from_rfc3339("2025-11-22T08:26:40+24:00"), None);
        assert_eq!(super::from_rfc3339("2025-11-22T08:26:40+0200"), None);
        assert_eq!(super::from_rfc3339("tomorrow"), None);
    }
}
