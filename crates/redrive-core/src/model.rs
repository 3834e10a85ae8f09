//! Job ids, priorities, states, the attempt log and receipts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::limits;

/// A job id: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u128);

impl JobId {
    /// A UUIDv7 for a job enqueued at `now_ms` (`random` fills the random bits), strictly
    /// greater than `last` so ids sort in enqueue order even within one millisecond.
    pub fn next_v7(now_ms: u64, last: JobId, random: u64) -> JobId {
        let ts = (now_ms as u128 & 0xffff_ffff_ffff) << 80;
        let rand_a = (random as u128 >> 52) & 0xfff;
        let rand_b = random as u128 & 0x3fff_ffff_ffff_ffff;
        let id = ts | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
        JobId(if id > last.0 { id } else { last.0 + 1 })
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_u128(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for JobId {
    type Err = ();
    fn from_str(s: &str) -> Result<JobId, ()> {
        uuid::Uuid::parse_str(s).map(|u| JobId(u.as_u128())).map_err(|_| ())
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(|()| serde::de::Error::custom("job id must be a UUID"))
    }
}

/// Strict priority levels; stored as 0 (high) ..= 2 (low). The discriminants are the bytes of
/// the WAL's job metadata (docs/design.md, the `meta` block): never renumber them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Priority {
    High = 0,
    #[default]
    Standard = 1,
    Low = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Standard, Priority::Low];

    pub fn from_u8(v: u8) -> Option<Priority> {
        Priority::ALL.get(v as usize).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Standard => "standard",
            Priority::Low => "low",
        }
    }
}

impl FromStr for Priority {
    type Err = ();
    fn from_str(s: &str) -> Result<Priority, ()> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// Where a job is in its life. `Acked` jobs are kept, queryable, for `completed_retention`.
/// The discriminants are the bytes of the WAL's job metadata: never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum JobState {
    Delayed = 0,
    Ready = 1,
    Leased = 2,
    Acked = 3,
    /// Parked: died in a queue that has no dead-letter queue. Jobs that die in a queue with a
    /// dead-letter queue move there as `ready` (receivable, as on SQS) and carry their [`DeadInfo`].
    Dead = 4,
}

impl JobState {
    pub const ALL: [JobState; 5] =
        [JobState::Delayed, JobState::Ready, JobState::Leased, JobState::Acked, JobState::Dead];

    pub fn from_u8(v: u8) -> Option<JobState> {
        JobState::ALL.get(v as usize).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Delayed => "delayed",
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Acked => "acked",
            JobState::Dead => "dead",
        }
    }
}

/// Why a job died. The discriminants are the bytes of the WAL's job metadata (0 there means
/// alive): never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DeadReason {
    MaxReceives = 1,
    MaxAttempts = 2,
    NonRetryable = 3,
    Expired = 4,
}

impl DeadReason {
    pub fn from_u8(v: u8) -> Option<DeadReason> {
        match v {
            1 => Some(DeadReason::MaxReceives),
            2 => Some(DeadReason::MaxAttempts),
            3 => Some(DeadReason::NonRetryable),
            4 => Some(DeadReason::Expired),
            _ => None,
        }
    }
}

/// An error a worker reported for one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ErrorInfo {
    /// Cut the texts to the attempt log's bounds (on a character boundary).
    pub fn truncated(mut self) -> ErrorInfo {
        truncate(&mut self.kind, limits::ERROR_TYPE_BYTES_MAX);
        truncate(&mut self.message, limits::ERROR_MESSAGE_BYTES_MAX);
        if let Some(d) = &mut self.detail {
            let room = limits::ATTEMPT_ERROR_BYTES_MAX - self.kind.len() - self.message.len();
            truncate(d, room);
        }
        self
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// How one delivery ended. The discriminants are the bytes of the WAL's attempt log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Outcome {
    Ok = 0,
    Failed = 1,
    LeaseExpired = 2,
    /// The server restarted while the job was leased; the lease was revoked.
    Revoked = 3,
    Released = 4,
}

impl Outcome {
    pub fn from_u8(v: u8) -> Option<Outcome> {
        match v {
            0 => Some(Outcome::Ok),
            1 => Some(Outcome::Failed),
            2 => Some(Outcome::LeaseExpired),
            3 => Some(Outcome::Revoked),
            4 => Some(Outcome::Released),
            _ => None,
        }
    }
}

/// One entry of a job's attempt log: one delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub ended_at: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// Proof of a lease: the job and the lease's fencing epoch. Ack, fail and extend compare both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub id: JobId,
    pub epoch: u32,
}

impl Receipt {
    /// The wire form: 32 hex digits of the job id, 8 of the epoch. Hand-rolled: it is formatted
    /// once per delivered job.
    pub fn encode(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(40);
        for i in (0..32).rev() {
            out.push(HEX[((self.id.0 >> (i * 4)) & 0xf) as usize] as char);
        }
        for i in (0..8).rev() {
            out.push(HEX[((self.epoch >> (i * 4)) & 0xf) as usize] as char);
        }
        out
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for Receipt {
    type Err = ();
    fn from_str(s: &str) -> Result<Receipt, ()> {
        if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        let id = u128::from_str_radix(&s[..32], 16).map_err(|_| ())?;
        let epoch = u32::from_str_radix(&s[32..], 16).map_err(|_| ())?;
        Ok(Receipt { id: JobId(id), epoch })
    }
}

/// The attribute key under which a job's ordering group is stored. `:` cannot occur in SQS
/// message attribute names, so it never collides with one.
pub const GROUP_ATTRIBUTE: &str = "redrive:group";

/// Checks a queue name: `[A-Za-z0-9_-]{1,80}`, with an optional `.fifo` suffix inside the 80.
pub fn valid_queue_name(name: &str) -> bool {
    // A queue of another SQS region than the server's is `<region>:<name>` (see the SQS door).
    let name = match name.split_once(':') {
        Some((region, bare)) if valid_region(region) => bare,
        Some(_) => return false,
        None => name,
    };
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    !stem.is_empty()
        && name.len() <= limits::QUEUE_NAME_LENGTH_MAX
        && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An SQS region name as the door namespaces queues by: 1 to 32 of `a-z 0-9 -`.
pub fn valid_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_round_trips_and_rejects_garbage() {
        let r = Receipt { id: JobId::next_v7(1_700_000_000_000, JobId(0), 42), epoch: 7 };
        assert_eq!(r.to_string().parse::<Receipt>(), Ok(r));
        assert_eq!(r.encode(), format!("{:032x}{:08x}", r.id.0, r.epoch));
        assert!("nope".parse::<Receipt>().is_err());
        assert!("g".repeat(40).parse::<Receipt>().is_err());
    }

    #[test]
    fn ids_are_uuid_v7_and_increase_within_a_millisecond() {
        let a = JobId::next_v7(1_700_000_000_000, JobId(0), u64::MAX);
        let b = JobId::next_v7(1_700_000_000_000, a, 0);
        assert!(b > a);
        let u = uuid::Uuid::from_u128(a.0);
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a.to_string().parse::<JobId>(), Ok(a));
    }

    #[test]
    fn queue_names_follow_sqs_rules() {
        assert!(valid_queue_name("orders-1_a"));
        assert!(valid_queue_name("orders.fifo"));
        assert!(!valid_queue_name(""));
        assert!(!valid_queue_name(".fifo"));
        assert!(!valid_queue_name("has space"));
        assert!(!valid_queue_name(&"a".repeat(81)));
        assert!(valid_queue_name("eu-west-1:orders.fifo"), "another region's namespace");
        for bad in ["EU:orders", ":orders", "eu:", "a:b:c", "eu west:q"] {
            assert!(!valid_queue_name(bad), "{bad}");
        }
    }

    #[test]
    fn error_texts_are_cut_on_char_boundaries() {
        let e = ErrorInfo {
            kind: "é".repeat(1000),
            message: "x".repeat(10),
            detail: Some("y".repeat(20_000)),
        }
        .truncated();
        assert!(e.kind.len() <= limits::ERROR_TYPE_BYTES_MAX);
        let total = e.kind.len() + e.message.len() + e.detail.unwrap().len();
        assert!(total <= limits::ATTEMPT_ERROR_BYTES_MAX);
    }
}

/// Lower-case hex, without a `format!` per byte (digests are computed for every message).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// The failure signature of an error: its type and its message with the parts that vary between
/// occurrences masked (UUIDs, hex, numbers, quoted values, paths), so that the same failure on
/// different jobs groups together.
pub fn signature(kind: &str, message: &str) -> String {
    let mut out = String::with_capacity(kind.len() + message.len() + 2);
    out.push_str(kind);
    out.push_str(": ");
    for word in message.split_inclusive(char::is_whitespace) {
        let (core, tail) = word.split_at(word.trim_end().len());
        out.push_str(&mask_word(core));
        if !tail.is_empty() {
            out.push(' ');
        }
    }
    out.truncate(out.trim_end().len());
    out
}

fn mask_word(w: &str) -> String {
    let quoted = |q: char| {
        w.len() >= 2 && w.starts_with(q) && w.trim_end_matches([',', '.', ';', ':']).ends_with(q)
    };
    if quoted('"') || quoted('\'') || quoted('`') {
        return "<str>".into();
    }
    if w.contains('/') && w.len() > 1 {
        return "<path>".into();
    }
    let t = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if uuid::Uuid::parse_str(t).is_ok() {
        return w.replace(t, "<id>");
    }
    let is_hex = t.len() >= 8
        && t.bytes().all(|b| b.is_ascii_hexdigit())
        && t.bytes().any(|b| b.is_ascii_digit());
    if is_hex {
        return w.replace(t, "<hex>");
    }
    // Mask every run of digits (ids, counts, ports, durations) inside the word.
    let mut s = String::with_capacity(w.len());
    let mut in_digits = false;
    for c in w.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                s.push_str("<n>");
            }
            in_digits = true;
        } else {
            in_digits = false;
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod signature_tests {
    use super::signature;

    #[test]
    fn masks_what_varies_between_occurrences() {
        let a = signature(
            "Timeout",
            "order 1234 timed out after 30s calling 'payments' at /v1/charge/99",
        );
        let b =
            signature("Timeout", "order 98 timed out after 5s calling 'ledger' at /v1/charge/1");
        assert_eq!(a, b);
        assert_eq!(a, "Timeout: order <n> timed out after <n>s calling <str> at <path>");
        let u =
            signature("E", "user 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b missing, trace deadbeef01");
        assert_eq!(u, "E: user <id> missing, trace <hex>");
    }
}
