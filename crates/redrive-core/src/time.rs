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

pub fn from_rfc3339(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
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
}
