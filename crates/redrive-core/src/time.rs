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
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Reads an RFC 3339 time with any offset (`Z`, `+02:00`, `-05:30`; lower-case `t` and `z` too),
/// or with none, read as UTC. A valid time before the epoch reads as 0 (every time here is a
/// bound or a moment to run at, and the past is all one). `None` for anything else.
pub fn from_rfc3339(s: &str) -> Option<u64> {
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
        s.serialize_str(&super::to_rfc3339(*ms))
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
            Some(ms) => s.serialize_str(&super::to_rfc3339(*ms)),
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
