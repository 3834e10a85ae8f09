//! WAL records: their byte layout, encoding and decoding. The layout is documented in
//! `docs/design.md`; all integers are little-endian and fixed-width.
//!
//! A record on disk is `len: u32 | crc32c(payload): u32 | payload`, and a payload starts with its
//! type byte. Records carry absolute state (a job's whole fixed metadata, a queue's whole
//! config) with a version, so replay is a last-writer-wins fold that does not depend on order;
//! that is what lets compaction move live records to the head of the log.

use std::collections::BTreeMap;

use redrive_core::limits;
use redrive_core::model::{Attempt, DeadReason, ErrorInfo, JobState, Outcome, Priority};

pub const FRAME_HEADER_BYTES: usize = 8;

const T_QUEUE_PUT: u8 = 1;
const T_QUEUE_DELETE: u8 = 2;
const T_ENQUEUE: u8 = 3;
const T_META: u8 = 4;
const T_ATTEMPTS: u8 = 5;
const T_REMOVE: u8 = 6;
const T_DEDUP_KEY: u8 = 7;
const T_SYNCED: u8 = 8;
const T_DOC: u8 = 9;

/// Sentinel for "no queue" in queue-id fields.
pub const QID_NONE: u32 = u32::MAX;

/// A job's fixed-size metadata, as in memory and on disk (80 bytes encoded). The enums are
/// written as their `#[repr(u8)]` discriminants (`dead_reason` as 0 when `None`), so encoding
/// cannot produce an out-of-range byte and decoding refuses one. [`Meta::check`] states what
/// else must hold; it is asserted before encoding and checked after decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Bumped on every change; replay keeps the highest.
    pub version: u32,
    pub qid: u32,
    pub state: JobState,
    pub priority: Priority,
    /// `Some` once the job died (it may sit in a dead-letter queue); cleared by a redrive.
    pub dead_reason: Option<DeadReason>,
    pub epoch: u32,
    pub receive_count: u32,
    pub failures: u32,
    /// 0 = the queue's setting; else the job's own limit, at most `ATTEMPTS_MAX`.
    pub max_attempts: u32,
    pub enqueued_at: u64,
    /// Delayed: when it becomes ready. Ready: since when. Leased: when the lease ends.
    pub visible_at: u64,
    pub first_received_at: u64,
    pub leased_at: u64,
    /// Acked or died at (for a redriven job: redriven at).
    pub completed_at: u64,
    pub source_qid: u32,
    pub redrive_count: u32,
    pub redriven_from_qid: u32,
}

impl Default for Meta {
    /// A placeholder: a job of queue 0 that never ran, never died and was never redriven.
    fn default() -> Meta {
        Meta {
            version: 0,
            qid: 0,
            state: JobState::Delayed,
            priority: Priority::High,
            dead_reason: None,
            epoch: 0,
            receive_count: 0,
            failures: 0,
            max_attempts: 0,
            enqueued_at: 0,
            visible_at: 0,
            first_received_at: 0,
            leased_at: 0,
            completed_at: 0,
            source_qid: QID_NONE,
            redrive_count: 0,
            redriven_from_qid: QID_NONE,
        }
    }
}

impl Meta {
    /// What every job's metadata satisfies, whatever its history: asserted before it is encoded
    /// (a violation is a bug in the state machine) and checked after it is decoded (a violation
    /// is damage the checksum missed, or a record from a build that had such a bug). Only rules
    /// that hold across restarts belong here: nothing about clock order, which a restart with an
    /// earlier wall clock may break.
    pub fn check(&self) -> Result<(), DecodeError> {
        let bad = |why| Err(DecodeError(why));
        if self.qid == QID_NONE {
            return bad("job metadata names no queue");
        }
        if self.state == JobState::Dead && self.dead_reason.is_none() {
            return bad("a dead job without a dead reason");
        }
        if self.source_qid != QID_NONE && self.dead_reason.is_none() {
            return bad("a source queue on a job that never died");
        }
        // Every receive starts a lease (epoch + 1); a redrive resets only the receive count.
        if self.receive_count > self.epoch {
            return bad("more receives than leases");
        }
        if self.state == JobState::Leased && self.receive_count == 0 {
            return bad("a leased job never received");
        }
        if self.max_attempts > limits::ATTEMPTS_MAX {
            return bad("max_attempts above ATTEMPTS_MAX");
        }
        Ok(())
    }
}

/// A decoded record.
#[derive(Debug, PartialEq)]
pub enum Record {
    QueuePut {
        qid: u32,
        version: u32,
        created_at: u64,
        updated_at: u64,
        name: String,
        config_json: String,
    },
    QueueDelete {
        qid: u32,
    },
    Enqueue(Box<EnqueueRecord>),
    Meta {
        id: u128,
        meta: Meta,
        worker: Option<String>,
    },
    Attempts {
        id: u128,
        total: u32,
        entries: Vec<Attempt>,
    },
    Remove {
        id: u128,
        version: u32,
    },
    /// An idempotency key that outlived its job's body (written only by compaction): it keeps
    /// the key deduplicating without bringing the job back.
    DedupKey {
        qid: u32,
        id: u128,
        enqueued_at: u64,
        key: String,
    },
    /// Written by the log itself after an fsync completed: everything in this segment before
    /// byte `upto` was durable. `nonce` is the segment's (from its header), which no client
    /// knows, so a marker found by scanning is the log's own and not a copy inside a job body.
    /// What tells a damaged record from a torn write at recovery (see `wal::segment::scan`). Never shown
    /// to the state machine.
    Synced {
        nonce: u32,
        upto: u64,
    },
    /// A control-plane document (`redrive_core::broker::DocKind`) or, with no value, its
    /// deletion. Replay keeps the highest version per `(kind, key)`.
    Doc {
        kind: u8,
        key: String,
        version: u64,
        value: Option<String>,
    },
}

#[derive(Debug, PartialEq)]
pub struct EnqueueRecord {
    pub id: u128,
    pub meta: Meta,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub body: String,
}

/// Appends one framed record to `buf`. `payload` writes the payload through the encoder.
pub fn frame(buf: &mut Vec<u8>, payload: impl FnOnce(&mut Enc<'_>)) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    payload(&mut Enc(buf));
    let len = u32::try_from(buf.len() - start - FRAME_HEADER_BYTES)
        .expect("a record is far smaller than 4 GiB: its strings are bounded by `limits`");
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER_BYTES..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf.len() - start
}

pub struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Names, keys and ids: `limits` bounds every such field below 64 KiB before it gets here.
    fn str16(&mut self, s: &str) {
        let n = u16::try_from(s.len()).expect("str16 fields are bounded below 64 KiB by limits");
        self.0.extend_from_slice(&n.to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn str32(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).expect("str32 fields are bounded below 4 GiB by limits"));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn count32(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("record counts are bounded far below 4 G by limits"));
    }
    /// Optional strings are encoded with a presence byte.
    fn opt16(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str16(s);
            }
            None => self.u8(0),
        }
    }

    fn meta(&mut self, m: &Meta) {
        if let Err(e) = m.check() {
            panic!("encoding invalid job metadata ({}): {m:?}", e.0);
        }
        self.u32(m.version);
        self.u32(m.qid);
        self.u8(m.state as u8);
        self.u8(m.priority as u8);
        self.u8(m.dead_reason.map_or(0, |r| r as u8));
        self.u8(0);
        self.u32(m.epoch);
        self.u32(m.receive_count);
        self.u32(m.failures);
        self.u32(m.max_attempts);
        self.u64(m.enqueued_at);
        self.u64(m.visible_at);
        self.u64(m.first_received_at);
        self.u64(m.leased_at);
        self.u64(m.completed_at);
        self.u32(m.source_qid);
        self.u32(m.redrive_count);
        self.u32(m.redriven_from_qid);
    }

    pub fn queue_put(
        &mut self,
        qid: u32,
        version: u32,
        created_at: u64,
        updated_at: u64,
        name: &str,
        config: &str,
    ) {
        assert!(qid != QID_NONE && !name.is_empty(), "encoding a queue without id or name");
        self.u8(T_QUEUE_PUT);
        self.u32(qid);
        self.u32(version);
        self.u64(created_at);
        self.u64(updated_at);
        self.str16(name);
        self.str32(config);
    }

    pub fn queue_delete(&mut self, qid: u32) {
        self.u8(T_QUEUE_DELETE);
        self.u32(qid);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        id: u128,
        meta: &Meta,
        key: Option<&str>,
        traceparent: Option<&str>,
        attributes: &BTreeMap<String, String>,
        body: &str,
    ) {
        self.u8(T_ENQUEUE);
        self.u128(id);
        self.meta(meta);
        self.opt16(key);
        self.opt16(traceparent);
        self.count32(attributes.len());
        for (k, v) in attributes {
            self.str16(k);
            self.str32(v);
        }
        self.str32(body);
    }

    pub fn meta_record(&mut self, id: u128, meta: &Meta, worker: Option<&str>) {
        self.u8(T_META);
        self.u128(id);
        self.meta(meta);
        self.opt16(worker);
    }

    pub fn attempts(&mut self, id: u128, total: u32, entries: &[Attempt]) {
        assert!(entries.len() <= total as usize, "an attempt log keeps at most `total` entries");
        self.u8(T_ATTEMPTS);
        self.u128(id);
        self.u32(total);
        self.count32(entries.len());
        for a in entries {
            self.u32(a.attempt);
            self.u64(a.started_at);
            self.u64(a.ended_at);
            self.u8(a.outcome as u8);
            self.opt16(a.worker_id.as_deref());
            match &a.error {
                Some(e) => {
                    self.u8(1);
                    self.str16(&e.kind);
                    self.str32(&e.message);
                    match &e.detail {
                        Some(d) => {
                            self.u8(1);
                            self.str32(d);
                        }
                        None => self.u8(0),
                    }
                }
                None => self.u8(0),
            }
        }
    }

    pub fn dedup_key(&mut self, qid: u32, id: u128, enqueued_at: u64, key: &str) {
        assert!(qid != QID_NONE && !key.is_empty(), "encoding a dedup key without queue or key");
        self.u8(T_DEDUP_KEY);
        self.u32(qid);
        self.u128(id);
        self.u64(enqueued_at);
        self.str16(key);
    }

    pub fn doc(&mut self, kind: u8, key: &str, version: u64, value: Option<&str>) {
        assert!(!key.is_empty(), "encoding a document without a key");
        self.u8(T_DOC);
        self.u8(kind);
        self.str16(key);
        self.u64(version);
        match value {
            Some(v) => {
                self.u8(1);
                self.str32(v);
            }
            None => self.u8(0),
        }
    }

    pub fn synced(&mut self, nonce: u32, upto: u64) {
        self.u8(T_SYNCED);
        self.u32(nonce);
        self.u64(upto);
    }

    pub fn remove(&mut self, id: u128, version: u32) {
        self.u8(T_REMOVE);
        self.u128(id);
        self.u32(version);
    }
}

/// Why a payload did not decode. Decoding never panics on bad bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError("record ends early"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().unwrap()))
    }
    fn utf8(&mut self, n: usize) -> Result<String, DecodeError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn str16(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        self.utf8(n)
    }
    fn str32(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        self.utf8(n)
    }
    fn opt16(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str16().map(Some),
            _ => Err(DecodeError("bad presence byte")),
        }
    }
    fn meta(&mut self) -> Result<Meta, DecodeError> {
        let range = || DecodeError("job metadata out of range");
        let m = Meta {
            version: self.u32()?,
            qid: self.u32()?,
            state: JobState::from_u8(self.u8()?).ok_or_else(range)?,
            priority: Priority::from_u8(self.u8()?).ok_or_else(range)?,
            dead_reason: match self.u8()? {
                0 => None,
                r => Some(DeadReason::from_u8(r).ok_or_else(range)?),
            },
            epoch: {
                self.u8()?;
                self.u32()?
            },
            receive_count: self.u32()?,
            failures: self.u32()?,
            max_attempts: self.u32()?,
            enqueued_at: self.u64()?,
            visible_at: self.u64()?,
            first_received_at: self.u64()?,
            leased_at: self.u64()?,
            completed_at: self.u64()?,
            source_qid: self.u32()?,
            redrive_count: self.u32()?,
            redriven_from_qid: self.u32()?,
        };
        m.check()?;
        Ok(m)
    }
}

/// What the encoder asserts of each record type besides its metadata (checked in [`Dec::meta`]),
/// refused after decoding: a record that breaks it is damage, not something to replay.
fn check(rec: &Record) -> Result<(), DecodeError> {
    let ok = match rec {
        Record::QueuePut { qid, name, .. } => *qid != QID_NONE && !name.is_empty(),
        Record::Attempts { total, entries, .. } => entries.len() <= *total as usize,
        Record::DedupKey { qid, key, .. } => *qid != QID_NONE && !key.is_empty(),
        Record::Doc { key, .. } => !key.is_empty(),
        Record::QueueDelete { .. }
        | Record::Enqueue(_)
        | Record::Meta { .. }
        | Record::Remove { .. }
        | Record::Synced { .. } => true,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError("record fields out of range"))
    }
}

/// Decodes one payload (without its frame). One arm per record type, in layout order.
pub fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut d = Dec { b: payload };
    let rec = match d.u8()? {
        T_QUEUE_PUT => Record::QueuePut {
            qid: d.u32()?,
            version: d.u32()?,
            created_at: d.u64()?,
            updated_at: d.u64()?,
            name: d.str16()?,
            config_json: d.str32()?,
        },
        T_QUEUE_DELETE => Record::QueueDelete { qid: d.u32()? },
        T_ENQUEUE => {
            let id = d.u128()?;
            let meta = d.meta()?;
            let idempotency_key = d.opt16()?;
            let traceparent = d.opt16()?;
            let n = d.u32()?;
            let mut attributes = BTreeMap::new();
            for _ in 0..n {
                let k = d.str16()?;
                attributes.insert(k, d.str32()?);
            }
            let body = d.str32()?;
            Record::Enqueue(Box::new(EnqueueRecord {
                id,
                meta,
                idempotency_key,
                traceparent,
                attributes,
                body,
            }))
        }
        T_META => Record::Meta { id: d.u128()?, meta: d.meta()?, worker: d.opt16()? },
        T_ATTEMPTS => {
            let id = d.u128()?;
            let total = d.u32()?;
            let n = d.u32()?;
            let mut entries = Vec::with_capacity(n.min(64) as usize);
            for _ in 0..n {
                let attempt = d.u32()?;
                let started_at = d.u64()?;
                let ended_at = d.u64()?;
                let outcome = Outcome::from_u8(d.u8()?).ok_or(DecodeError("bad outcome"))?;
                let worker_id = d.opt16()?;
                let error = match d.u8()? {
                    0 => None,
                    1 => {
                        let kind = d.str16()?;
                        let message = d.str32()?;
                        let detail = match d.u8()? {
                            0 => None,
                            1 => Some(d.str32()?),
                            _ => return Err(DecodeError("bad presence byte")),
                        };
                        Some(ErrorInfo { kind, message, detail })
                    }
                    _ => return Err(DecodeError("bad presence byte")),
                };
                entries.push(Attempt { attempt, worker_id, started_at, ended_at, outcome, error });
            }
            Record::Attempts { id, total, entries }
        }
        T_REMOVE => Record::Remove { id: d.u128()?, version: d.u32()? },
        T_DEDUP_KEY => Record::DedupKey {
            qid: d.u32()?,
            id: d.u128()?,
            enqueued_at: d.u64()?,
            key: d.str16()?,
        },
        T_SYNCED => Record::Synced { nonce: d.u32()?, upto: d.u64()? },
        T_DOC => Record::Doc {
            kind: d.u8()?,
            key: d.str16()?,
            version: d.u64()?,
            value: match d.u8()? {
                0 => None,
                1 => Some(d.str32()?),
                _ => return Err(DecodeError("bad presence byte")),
            },
        },
        _ => return Err(DecodeError("unknown record type")),
    };
    check(&rec)?;
    if !d.b.is_empty() {
        return Err(DecodeError("trailing bytes after record"));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(write: impl FnOnce(&mut Enc<'_>)) -> Record {
        let mut buf = Vec::new();
        let n = frame(&mut buf, write);
        assert_eq!(n, buf.len());
        let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&buf[8..8 + len]));
        decode(&buf[8..8 + len]).unwrap()
    }

    #[test]
    fn every_record_type_round_trips() {
        let meta = Meta {
            version: 3,
            qid: 7,
            state: JobState::Leased,
            priority: Priority::Standard,
            epoch: 9,
            receive_count: 2,
            max_attempts: limits::ATTEMPTS_MAX,
            enqueued_at: 5,
            ..Meta::default()
        };
        let attrs = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let r = round_trip(|e| e.enqueue(42, &meta, Some("key"), None, &attrs, "body é"));
        let Record::Enqueue(e) = r else { panic!() };
        assert_eq!(
            (e.id, e.meta, e.idempotency_key.as_deref(), e.body.as_str()),
            (42, meta, Some("key"), "body é")
        );
        assert_eq!(e.attributes, attrs);
        assert_eq!(
            round_trip(|e| e.meta_record(1, &meta, Some("w1"))),
            Record::Meta { id: 1, meta, worker: Some("w1".into()) }
        );
        let a = Attempt {
            attempt: 1,
            worker_id: None,
            started_at: 1,
            ended_at: 2,
            outcome: Outcome::Failed,
            error: Some(ErrorInfo {
                kind: "T".into(),
                message: "m".into(),
                detail: Some("d".into()),
            }),
        };
        assert_eq!(
            round_trip(|e| e.attempts(1, 4, std::slice::from_ref(&a))),
            Record::Attempts { id: 1, total: 4, entries: vec![a] }
        );
        assert_eq!(round_trip(|e| e.remove(9, 2)), Record::Remove { id: 9, version: 2 });
        assert_eq!(
            round_trip(|e| e.dedup_key(1, 2, 3, "k")),
            Record::DedupKey { qid: 1, id: 2, enqueued_at: 3, key: "k".into() }
        );
        assert_eq!(round_trip(|e| e.queue_delete(3)), Record::QueueDelete { qid: 3 });
        assert!(matches!(
            round_trip(|e| e.queue_put(1, 1, 2, 3, "q", "{}")),
            Record::QueuePut { .. }
        ));
    }

    /// A `Meta` record's payload: type byte, id, then the 80-byte block.
    fn meta_payload(m: &Meta) -> Vec<u8> {
        let mut buf = Vec::new();
        frame(&mut buf, |e| e.meta_record(1, m, None));
        buf.split_off(FRAME_HEADER_BYTES)
    }
    const META_AT: usize = 1 + 16;

    #[test]
    fn the_enums_keep_their_bytes_on_disk() {
        let m = Meta {
            state: JobState::Dead,
            priority: Priority::Low,
            dead_reason: Some(DeadReason::Expired),
            ..Meta::default()
        };
        let p = meta_payload(&m);
        assert_eq!(&p[META_AT + 8..META_AT + 12], &[4, 2, 4, 0], "state, priority, reason, pad");
        let alive = meta_payload(&Meta::default());
        assert_eq!(&alive[META_AT + 8..META_AT + 12], &[0, 0, 0, 0]);
        assert_eq!(alive.len(), META_AT + 80 + 1);
    }

    #[test]
    fn out_of_range_metadata_is_refused_not_trusted() {
        let good = meta_payload(&Meta::default());
        for (at, byte) in [(8, 5u8), (9, 3), (10, 5), (8, 255)] {
            let mut p = good.clone();
            p[META_AT + at] = byte;
            assert_eq!(decode(&p), Err(DecodeError("job metadata out of range")), "byte {at}");
        }
        // In range byte by byte, but not a state any job can be in.
        let mut p = good.clone();
        p[META_AT + 8] = JobState::Dead as u8;
        assert_eq!(decode(&p), Err(DecodeError("a dead job without a dead reason")));
        let mut p = good.clone();
        p[META_AT + 16..META_AT + 20].copy_from_slice(&1u32.to_le_bytes()); // receive_count
        assert_eq!(decode(&p), Err(DecodeError("more receives than leases")));
        let mut p = good;
        p[META_AT + 24..META_AT + 28].copy_from_slice(&u32::MAX.to_le_bytes()); // max_attempts
        assert_eq!(decode(&p), Err(DecodeError("max_attempts above ATTEMPTS_MAX")));
    }

    #[test]
    fn records_the_encoder_refuses_are_refused_by_the_decoder() {
        let payload = |write: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::new();
            write(&mut buf);
            buf
        };
        let refused = DecodeError("record fields out of range");
        // Attempts: total 1, two entries (the encoder asserts this never happens).
        let a = Attempt {
            attempt: 1,
            worker_id: None,
            started_at: 1,
            ended_at: 2,
            outcome: Outcome::Ok,
            error: None,
        };
        let mut good = Vec::new();
        frame(&mut good, |e| e.attempts(7, 2, &[a.clone(), a]));
        let mut p = good.split_off(FRAME_HEADER_BYTES);
        p[17..21].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(decode(&p), Err(refused.clone()));
        let dedup = payload(&|b| {
            b.push(T_DEDUP_KEY);
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&2u128.to_le_bytes());
            b.extend_from_slice(&3u64.to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes()); // an empty key
        });
        assert_eq!(decode(&dedup), Err(refused.clone()));
        let queue = payload(&|b| {
            b.push(T_QUEUE_PUT);
            b.extend_from_slice(&QID_NONE.to_le_bytes());
            b.extend_from_slice(&[0; 4 + 8 + 8]);
            b.extend_from_slice(&1u16.to_le_bytes());
            b.push(b'q');
            b.extend_from_slice(&0u32.to_le_bytes());
        });
        assert_eq!(decode(&queue), Err(refused));
    }

    #[test]
    #[should_panic(expected = "encoding invalid job metadata")]
    fn invalid_metadata_is_never_encoded() {
        let m = Meta { state: JobState::Leased, ..Meta::default() };
        meta_payload(&m);
    }

    #[test]
    fn garbage_never_panics() {
        for seed in 0u32..2000 {
            let bytes: Vec<u8> = (0..(seed % 97))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
                .collect();
            let _ = decode(&bytes);
        }
        assert!(decode(&[T_META, 1, 2]).is_err());
    }
}
