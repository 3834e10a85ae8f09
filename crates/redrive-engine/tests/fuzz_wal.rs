//! Decoders under random input: WAL record decoding and whole-log recovery. Whatever the bytes,
//! decoding returns a record or a `DecodeError`, and opening a log (the bare [`Wal`], or the
//! [`Store`] with its recovery fold and a little work after it) succeeds or fails with an
//! `OpenError` that names what is wrong, and never panics.
//!
//! Inputs are random bytes and mutations of a real log written by a mixed workload: bit flips,
//! overwrites, cuts and splices of the raw files (mostly stopped by checksums), and mutated
//! payloads framed again with a valid checksum, which reach the decoder and the fold.
//! `PROPTEST_CASES=<n>` sets the number of cases (see docs/testing.md).

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use redrive_core::broker::{FailRequest, NewJob, RedriveRequest};
use redrive_core::model::{ErrorInfo, Priority};
use redrive_core::QueuePatch;
use redrive_engine::io::Storage;
use redrive_engine::wal::record::{decode, Record};
use redrive_engine::wal::{OpenError, Wal};
use redrive_engine::{Durability, MemStorage, Store};

const SEGMENT_BYTES: u32 = 4096;
/// The segment header: magic, version, number, checksum (docs/design.md §4).
const HEADER_BYTES: usize = 24;
/// A frame's header: payload length and checksum.
const FRAME_HEADER_BYTES: usize = 8;
const T0: u64 = 1_700_000_000_000;
/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES_DEFAULT: u32 = 256;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok());
    ProptestConfig { cases: cases.unwrap_or(CASES_DEFAULT), ..ProptestConfig::default() }
}

type Files = Vec<(String, Vec<u8>)>;

/// A real log of several segments: queues, jobs with keys, attributes and trace context,
/// leases, failures with attempt logs, deaths, a redrive, acks, compaction.
fn valid_log() -> &'static Files {
    static LOG: OnceLock<Files> = OnceLock::new();
    LOG.get_or_init(|| {
        let storage = MemStorage::new();
        let mut s =
            Store::open_with(Box::new(storage.clone()), Durability::Sync, SEGMENT_BYTES, T0)
                .unwrap();
        let patch = QueuePatch { max_attempts: Some(Some(2)), ..QueuePatch::default() };
        s.put_queue("q", &patch, T0).unwrap();
        s.put_queue("o.fifo", &QueuePatch::default(), T0).unwrap();
        for i in 0..40u64 {
            let job = NewJob {
                body: format!("body {i} é {}", "x".repeat((i * 7 % 50) as usize)),
                priority: Priority::from_u8((i % 3) as u8),
                idempotency_key: (i % 4 == 0).then(|| format!("key-{i}")),
                traceparent: (i % 5 == 0)
                    .then(|| "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                attributes: [("n".to_owned(), i.to_string())].into(),
                ..NewJob::default()
            };
            s.enqueue("q", &[job], T0).unwrap();
            let grouped =
                NewJob { body: format!("f{i}"), group: Some("g".into()), ..NewJob::default() };
            s.enqueue("o.fifo", &[grouped], T0).unwrap();
        }
        let qid = s.queue_id("q").unwrap();
        for round in 0..3u64 {
            let now = T0 + round * 1000;
            let mut got = Vec::new();
            s.receive_from(qid, 20, None, Some("worker-1"), now, &mut got).unwrap();
            for (i, d) in got.into_iter().enumerate() {
                match i % 3 {
                    0 => drop(s.ack(&[d.receipt], now).unwrap()),
                    1 => {
                        let error = ErrorInfo {
                            kind: "Timeout".into(),
                            message: "upstream".into(),
                            detail: Some("stack".into()),
                        };
                        let req = FailRequest {
                            receipt: d.receipt,
                            error,
                            retry_after_ms: Some(0),
                            non_retryable: i % 2 == 0,
                        };
                        s.fail(&req, now).unwrap();
                    }
                    _ => {}
                }
            }
            s.commit(now).unwrap();
        }
        s.redrive("q-dlq", &RedriveRequest::default(), T0 + 5000).unwrap();
        s.delete_queue("o.fifo").unwrap();
        s.tick(T0 + 10_000_000).unwrap();
        while s.compact_step().unwrap() {}
        s.commit(T0 + 10_000_000).unwrap();
        let files: Files = storage
            .list()
            .unwrap()
            .into_iter()
            .map(|n| {
                let data = storage.with_file(&n, |d| d.clone()).unwrap();
                (n, data)
            })
            .collect();
        assert!(
            files.len() >= 3,
            "the log rolled: {:?}",
            files.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        files
    })
}

/// The payloads of a segment's frames, with their offsets.
fn frames(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = HEADER_BYTES;
    while off + FRAME_HEADER_BYTES <= data.len() {
        let len = u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        let Some(payload) = data.get(off + FRAME_HEADER_BYTES..off + FRAME_HEADER_BYTES + len)
        else {
            break;
        };
        if len == 0 {
            break;
        }
        out.push((off, payload.to_vec()));
        off += FRAME_HEADER_BYTES + len;
    }
    out
}

/// `len: u32 | crc32c(payload): u32 | payload`, as the log frames a record.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn all_payloads() -> Vec<Vec<u8>> {
    valid_log().iter().flat_map(|(_, d)| frames(d)).map(|f| f.1).collect()
}

#[derive(Clone, Debug)]
enum Edit {
    /// Raw damage to a file (checksums catch most of it).
    Flip {
        file: Index,
        at: Index,
        bit: u8,
    },
    Overwrite {
        file: Index,
        at: Index,
        bytes: Vec<u8>,
    },
    Cut {
        file: Index,
        at: Index,
    },
    Splice {
        file: Index,
        at: Index,
        bytes: Vec<u8>,
    },
    DropFile {
        file: Index,
    },
    /// A payload changed and framed again with a valid checksum: the decoder and the fold see it.
    Reframe {
        file: Index,
        frame: Index,
        change: Payload,
    },
}

#[derive(Clone, Debug)]
enum Payload {
    Flip {
        at: Index,
        bit: u8,
    },
    Set {
        at: Index,
        byte: u8,
    },
    Cut {
        at: Index,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    /// Another record's payload in its place (records out of order, duplicated, misplaced).
    Swap {
        with: Index,
    },
}

fn payload_change() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Payload::Flip { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Payload::Set { at, byte }),
        any::<Index>().prop_map(|at| Payload::Cut { at }),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Payload::Insert { at, bytes }),
        any::<Index>().prop_map(|with| Payload::Swap { with }),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let bytes = || prop::collection::vec(any::<u8>(), 1..32);
    prop_oneof![
        1 => (any::<Index>(), any::<Index>(), 0u8..8)
            .prop_map(|(file, at, bit)| Edit::Flip { file, at, bit }),
        1 => (any::<Index>(), any::<Index>(), bytes())
            .prop_map(|(file, at, bytes)| Edit::Overwrite { file, at, bytes }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(file, at)| Edit::Cut { file, at }),
        1 => (any::<Index>(), any::<Index>(), bytes())
            .prop_map(|(file, at, bytes)| Edit::Splice { file, at, bytes }),
        1 => any::<Index>().prop_map(|file| Edit::DropFile { file }),
        5 => (any::<Index>(), any::<Index>(), payload_change())
            .prop_map(|(file, frame, change)| Edit::Reframe { file, frame, change }),
    ]
}

fn change_payload(p: &mut Vec<u8>, change: &Payload, others: &[Vec<u8>]) {
    match change {
        Payload::Flip { at, bit } if !p.is_empty() => {
            let i = at.index(p.len());
            p[i] ^= 1 << bit;
        }
        Payload::Set { at, byte } if !p.is_empty() => {
            let i = at.index(p.len());
            p[i] = *byte;
        }
        Payload::Cut { at } => p.truncate(at.index(p.len().max(1))),
        Payload::Insert { at, bytes } => {
            let at = at.index(p.len() + 1);
            p.splice(at..at, bytes.iter().copied());
        }
        Payload::Swap { with } => *p = others[with.index(others.len())].clone(),
        _ => {}
    }
}

fn apply(files: &mut Files, e: &Edit, payloads: &[Vec<u8>]) {
    if files.is_empty() {
        return;
    }
    let n = files.len();
    match e {
        Edit::Flip { file, at, bit } => {
            let d = &mut files[file.index(n)].1;
            if !d.is_empty() {
                let i = at.index(d.len());
                d[i] ^= 1 << bit;
            }
        }
        Edit::Overwrite { file, at, bytes } => {
            let d = &mut files[file.index(n)].1;
            let at = at.index(d.len() + 1);
            for (i, b) in bytes.iter().enumerate() {
                match d.get_mut(at + i) {
                    Some(x) => *x = *b,
                    None => d.push(*b),
                }
            }
        }
        Edit::Cut { file, at } => {
            let d = &mut files[file.index(n)].1;
            d.truncate(at.index(d.len() + 1));
        }
        Edit::Splice { file, at, bytes } => {
            let d = &mut files[file.index(n)].1;
            let at = at.index(d.len() + 1);
            d.splice(at..at, bytes.iter().copied());
        }
        Edit::DropFile { file } => drop(files.remove(file.index(n))),
        Edit::Reframe { file, frame: which, change } => {
            let d = &mut files[file.index(n)].1;
            let fs = frames(d);
            if fs.is_empty() {
                return;
            }
            let (off, mut payload) = fs[which.index(fs.len())].clone();
            let old_len = FRAME_HEADER_BYTES + payload.len();
            change_payload(&mut payload, change, payloads);
            d.splice(off..off + old_len, framed(&payload));
        }
    }
}

fn storage_of(files: &Files) -> MemStorage {
    let storage = MemStorage::new();
    for (name, data) in files {
        let mut f = storage.create(name).unwrap();
        f.append(data).unwrap();
        f.sync().unwrap();
    }
    storage
}

/// The error must say what is wrong, and where when it is corruption.
fn check_error(e: &OpenError) {
    let text = e.to_string();
    assert!(!text.is_empty());
    if let OpenError::Corrupt { file, reason, .. } = e {
        assert!(!reason.is_empty() && !file.is_empty(), "{text}");
    }
}

/// Opens the store over the files and, if it opens, works it a little: every job body and
/// attempt log it points to is read, timers run, compaction runs, writes are committed.
fn open_and_work(files: &Files) {
    let storage = storage_of(files);
    let mut s = match Store::open_with(Box::new(storage), Durability::Sync, SEGMENT_BYTES, T0 + 1) {
        Ok(s) => s,
        Err(e) => return check_error(&e),
    };
    let now = T0 + 20_000_000;
    for q in s.list_queues(now) {
        let Ok(qid) = s.queue_id(&q.name) else { continue };
        let mut got = Vec::new();
        let _ = s.receive_from(qid, 1000, None, Some("w"), now, &mut got);
        let _ = s.list_dead(&q.name, &Default::default(), None, 1000);
        for d in got {
            let _ = s.job_info(d.id);
            let _ = s.ack(&[d.receipt], now);
        }
    }
    let _ = s.tick(now + 100_000_000);
    let _ = s.compact_step();
    let _ = s.compact_step();
    let _ = s.commit(now);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = decode(&bytes) {
            prop_assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn decoding_a_changed_record_never_panics_and_a_cut_one_is_an_error(
        which in any::<Index>(),
        change in payload_change(),
        cut in any::<Index>(),
    ) {
        let payloads = all_payloads();
        let mut p = payloads[which.index(payloads.len())].clone();
        prop_assert!(decode(&p).is_ok(), "a payload of the real log decodes");
        let short = &p[..cut.index(p.len())];
        prop_assert!(decode(short).is_err(), "a strict prefix of a record is not a record");
        change_payload(&mut p, &change, &payloads);
        if let Err(e) = decode(&p) {
            prop_assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn opening_random_segment_files_never_panics(
        files in prop::collection::vec(
            (1u32..5, any::<bool>(), prop::collection::vec(any::<u8>(), 0..2048)),
            0..4,
        ),
    ) {
        // Random bytes, some behind a real header so the frame scan sees them.
        let mut real = valid_log()[0].1[..HEADER_BYTES].to_vec();
        // One file per name: the last one drawn wins.
        let unique: std::collections::BTreeMap<String, Vec<u8>> = files
            .into_iter()
            .map(|(n, header, bytes)| {
                let data =
                    if header && n == 1 { real.drain(..).chain(bytes).collect() } else { bytes };
                (format!("wal-{n:08}.log"), data)
            })
            .collect();
        let unique: Files = unique.into_iter().collect();
        match Wal::open(Box::new(storage_of(&unique)), SEGMENT_BYTES, |_, _| {}) {
            Ok(_) => {}
            Err(e) => check_error(&e),
        }
        open_and_work(&unique);
    }

    #[test]
    fn recovering_a_damaged_log_never_panics(edits in prop::collection::vec(edit(), 1..6)) {
        let payloads = all_payloads();
        let mut files = valid_log().clone();
        for e in &edits {
            apply(&mut files, e, &payloads);
        }
        match Wal::open(Box::new(storage_of(&files)), SEGMENT_BYTES, |_, _| {}) {
            Ok(_) => {}
            Err(e) => check_error(&e),
        }
        open_and_work(&files);
    }
}

#[test]
fn the_real_log_recovers_whole() {
    let mut records = 0;
    Wal::open(Box::new(storage_of(valid_log())), SEGMENT_BYTES, |_, _| records += 1).unwrap();
    assert_eq!(records, all_payloads().len() - synced_markers(), "every frame is a record");
    open_and_work(valid_log());
}

/// `Synced` markers are frames the log keeps to itself (not replayed).
fn synced_markers() -> usize {
    all_payloads().iter().filter(|p| matches!(decode(p), Ok(Record::Synced { .. }))).count()
}
