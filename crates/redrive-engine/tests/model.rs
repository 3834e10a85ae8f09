//! Model-based test: random sequences of operations run against the real [`Store`] (over
//! in-memory storage with small segments, so compaction runs) and against a plain reference
//! model; deliveries, results, states and counts must agree, including across restarts that
//! replay the WAL.

use std::collections::BTreeMap;

use proptest::prelude::*;
use redrive_core::broker::{AckResult, FailRequest, NewJob, RedriveRequest};
use redrive_core::model::{ErrorInfo, JobId, JobState, Priority};
use redrive_core::{limits, Error, QueuePatch};
use redrive_engine::{Durability, MemStorage, Store};

const Q: &str = "q";
const DLQ: &str = "q-dlq";
const LEASE_MS: u64 = 1000;
/// Completed jobs of `q` are forgotten this long after their ack (the DLQ keeps the default hour).
const COMPLETED_RETENTION_MS: u64 = 5000;
const MAX_ATTEMPTS: u32 = 3;
/// The dead-letter queue is created with the default attempt limit.
const DLQ_MAX_ATTEMPTS: u32 = redrive_core::limits::ATTEMPTS_DEFAULT;

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        priority: u8,
        delay_ms: u64,
        key: Option<u8>,
    },
    Receive {
        dlq: bool,
        max: usize,
        lease_ms: Option<u64>,
    },
    Ack {
        pick: usize,
    },
    Fail {
        pick: usize,
        non_retryable: bool,
        retry_after_ms: u64,
    },
    Extend {
        pick: usize,
        lease_ms: u64,
    },
    Advance {
        ms: u64,
    },
    Redrive,
    Purge,
    Restart {
        torn: usize,
    },
    /// Sets `count` tags whose keys and values are as long as allowed (or `value_len` long), in
    /// four-byte characters: the largest queue configs must be acknowledged only if they fit.
    Tag {
        count: usize,
        value_len: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, prop_oneof![Just(0u64), 1u64..1500], proptest::option::of(0u8..4))
            .prop_map(|(priority, delay_ms, key)| Op::Enqueue { priority, delay_ms, key }),
        4 => (any::<bool>(), 1usize..4, proptest::option::of(prop_oneof![Just(0u64), 200u64..3000]))
            .prop_map(|(dlq, max, lease_ms)| Op::Receive { dlq: dlq && max == 1, max, lease_ms }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<usize>(), prop::bool::weighted(0.2), prop_oneof![Just(0u64), 1u64..800])
            .prop_map(|(pick, non_retryable, retry_after_ms)| Op::Fail { pick, non_retryable, retry_after_ms }),
        1 => (any::<usize>(), prop_oneof![Just(0u64), 100u64..3000]).prop_map(|(pick, lease_ms)| Op::Extend { pick, lease_ms }),
        3 => (1u64..2000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Redrive),
        1 => prop::bool::weighted(0.2).prop_map(|p| if p { Op::Purge } else { Op::Advance { ms: 1 } }),
        1 => (0usize..64).prop_map(|torn| Op::Restart { torn }),
        1 => (prop_oneof![Just(50usize), Just(51), 0usize..4], prop_oneof![Just(256usize), Just(257), 0usize..300])
            .prop_map(|(count, value_len)| Op::Tag { count, value_len }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MState {
    Delayed,
    Ready,
    Leased,
    Acked,
    Dead,
    Gone,
}

#[derive(Debug, Clone)]
struct MJob {
    id: Option<JobId>,
    in_dlq: bool,
    state: MState,
    priority: u8,
    /// Delayed: until; ready: since; leased: lease end.
    at: u64,
    epoch: u32,
    receive_count: u32,
    failures: u32,
    dead: bool,
}

impl MJob {
    /// What fail or extend answers for a receipt of epoch `epoch`, unless the lease still holds.
    fn lease_error(&self, epoch: u32) -> Option<Error> {
        match self.state {
            MState::Leased if self.epoch == epoch => None,
            MState::Gone => Some(Error::JobNotFound(self.id.unwrap())),
            _ => Some(Error::StaleReceipt),
        }
    }
}

struct Model {
    jobs: Vec<MJob>,
    keys: BTreeMap<u8, usize>,
    tags: BTreeMap<String, String>,
    now: u64,
}

impl Model {
    /// Time passes: delayed jobs become ready at their deadline; expired leases count as a
    /// failed attempt and make the job ready now (or dead past the attempt limit).
    fn tick(&mut self) {
        let now = self.now;
        for j in &mut self.jobs {
            match j.state {
                MState::Delayed if j.at <= now => j.state = MState::Ready,
                MState::Acked if !j.in_dlq && j.at + COMPLETED_RETENTION_MS <= now => {
                    j.state = MState::Gone
                }
                MState::Leased if j.at <= now => {
                    j.failures += 1;
                    j.state = MState::Ready;
                    j.at = now;
                    let max = if j.in_dlq { DLQ_MAX_ATTEMPTS } else { MAX_ATTEMPTS };
                    if j.failures >= max {
                        die(j, now);
                    }
                }
                _ => {}
            }
        }
    }

    fn receive(&mut self, dlq: bool, max: usize, lease: u64) -> Vec<usize> {
        let mut out = Vec::new();
        while out.len() < max {
            let best = (0..self.jobs.len())
                .filter(|&i| self.jobs[i].state == MState::Ready && self.jobs[i].in_dlq == dlq)
                .min_by_key(|&i| (self.jobs[i].priority, self.jobs[i].at, i));
            let Some(i) = best else { break };
            let j = &mut self.jobs[i];
            j.state = MState::Leased;
            j.epoch += 1;
            j.receive_count += 1;
            j.at = self.now + lease;
            out.push(i);
        }
        out
    }

    fn counts(&self, dlq: bool) -> [u64; 5] {
        let mut c = [0u64; 5];
        for j in self.jobs.iter().filter(|j| j.in_dlq == dlq) {
            let k = match j.state {
                MState::Delayed => 0,
                MState::Ready => 1,
                MState::Leased => 2,
                MState::Acked => 3,
                MState::Dead => 4,
                MState::Gone => continue,
            };
            c[k] += 1;
        }
        c
    }
}

fn die(j: &mut MJob, now: u64) {
    j.dead = true;
    j.epoch += 1;
    if j.in_dlq {
        j.state = MState::Dead;
    } else {
        j.in_dlq = true;
        j.failures = 0;
        j.state = MState::Ready;
        j.at = now;
    }
}

struct Held {
    receipt: String,
    job: usize,
    epoch: u32,
}

fn open(storage: &MemStorage, now: u64) -> Store {
    Store::open_with(Box::new(storage.clone()), Durability::Sync, 4096, now).expect("store opens")
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut storage = MemStorage::new();
    let mut now = 1_700_000_000_000;
    let mut store = open(&storage, now);
    let patch = QueuePatch {
        visibility_timeout_ms: Some(LEASE_MS),
        max_attempts: Some(Some(MAX_ATTEMPTS)),
        priority_aging_ms: Some(None),
        completed_retention_ms: Some(COMPLETED_RETENTION_MS),
        ..QueuePatch::default()
    };
    store.put_queue(Q, &patch, now).unwrap();
    store.commit(now).unwrap();
    let mut m = Model { jobs: Vec::new(), keys: BTreeMap::new(), tags: BTreeMap::new(), now };
    let mut held: Vec<Held> = Vec::new();
    let err = |message: &str| ErrorInfo { kind: "E".into(), message: message.into(), detail: None };

    for op in ops {
        let op_name = format!("{op:?}");
        match op {
            Op::Enqueue { priority, delay_ms, key } => {
                let job = NewJob {
                    body: format!("job {}", m.jobs.len()),
                    priority: Priority::from_u8(priority),
                    delay_ms: Some(delay_ms),
                    idempotency_key: key.map(|k| format!("key-{k}")),
                    ..NewJob::default()
                };
                let r = store.enqueue(Q, &[job], now).unwrap();
                match key.and_then(|k| m.keys.get(&k)) {
                    Some(&first) => {
                        prop_assert!(r[0].duplicate);
                        prop_assert_eq!(Some(r[0].id), m.jobs[first].id);
                    }
                    None => {
                        prop_assert!(!r[0].duplicate);
                        if let Some(k) = key {
                            m.keys.insert(k, m.jobs.len());
                        }
                        m.jobs.push(MJob {
                            id: Some(r[0].id),
                            in_dlq: false,
                            state: if delay_ms > 0 { MState::Delayed } else { MState::Ready },
                            priority,
                            at: now + delay_ms,
                            epoch: 0,
                            receive_count: 0,
                            failures: 0,
                            dead: false,
                        });
                    }
                }
            }
            Op::Receive { dlq, max, lease_ms } => {
                let queue = if dlq { DLQ } else { Q };
                let qid = store.queue_id(queue).unwrap();
                let mut got = Vec::new();
                store.receive_from(qid, max, lease_ms, Some("w"), now, &mut got).unwrap();
                let want =
                    m.receive(dlq, max, lease_ms.unwrap_or(if dlq { 30_000 } else { LEASE_MS }));
                let got_ids: Vec<JobId> = got.iter().map(|d| d.id).collect();
                let want_ids: Vec<JobId> = want.iter().map(|&i| m.jobs[i].id.unwrap()).collect();
                prop_assert_eq!(got_ids, want_ids);
                for (d, &i) in got.iter().zip(&want) {
                    prop_assert_eq!(d.attempt, m.jobs[i].receive_count);
                    prop_assert_eq!(&d.body, &format!("job {i}"));
                    prop_assert_eq!(d.dead.is_some(), m.jobs[i].dead);
                    held.push(Held { receipt: d.receipt.clone(), job: i, epoch: m.jobs[i].epoch });
                }
            }
            Op::Ack { pick } if !held.is_empty() => {
                let h = held.swap_remove(pick % held.len());
                let r = store.ack(std::slice::from_ref(&h.receipt), now).unwrap();
                let j = &mut m.jobs[h.job];
                // The latest receipt acks a job that is leased or waiting to be: also after its
                // lease ended, unless it was leased, died or was redriven since (each moves the
                // epoch on), as SQS's DeleteMessage.
                let waiting = matches!(j.state, MState::Ready | MState::Delayed);
                let live = j.epoch == h.epoch && (j.state == MState::Leased || waiting);
                let want = match j.state {
                    MState::Gone => AckResult::Unknown,
                    _ if live => AckResult::Ok,
                    _ => AckResult::Stale,
                };
                prop_assert_eq!(r[0], want);
                if live {
                    j.state = MState::Acked;
                    j.at = now;
                }
            }
            Op::Fail { pick, non_retryable, retry_after_ms } if !held.is_empty() => {
                let h = held.swap_remove(pick % held.len());
                let req = FailRequest {
                    receipt: h.receipt.clone(),
                    error: err("boom"),
                    retry_after_ms: Some(retry_after_ms),
                    non_retryable,
                };
                let r = store.fail(&req, now);
                let j = &mut m.jobs[h.job];
                if let Some(want) = j.lease_error(h.epoch) {
                    prop_assert_eq!(r.unwrap_err(), want);
                    continue;
                }
                let r = r.unwrap();
                j.failures += 1;
                let max = if j.in_dlq { DLQ_MAX_ATTEMPTS } else { MAX_ATTEMPTS };
                if non_retryable || j.failures >= max {
                    die(j, now);
                    prop_assert!(r.dead_reason.is_some());
                } else {
                    j.state = if retry_after_ms > 0 { MState::Delayed } else { MState::Ready };
                    j.at = now + retry_after_ms;
                    prop_assert_eq!(r.retry_at, Some(now + retry_after_ms));
                }
            }
            Op::Extend { pick, lease_ms } if !held.is_empty() => {
                let i = pick % held.len();
                let r = store.extend(&held[i].receipt, lease_ms, now);
                let j = &mut m.jobs[held[i].job];
                if let Some(want) = j.lease_error(held[i].epoch) {
                    prop_assert_eq!(r.unwrap_err(), want);
                    continue;
                }
                prop_assert_eq!(r.unwrap(), now + lease_ms);
                if lease_ms == 0 {
                    j.state = MState::Ready;
                    j.at = now;
                    held.swap_remove(i);
                } else {
                    j.at = now + lease_ms;
                }
            }
            Op::Ack { .. } | Op::Fail { .. } | Op::Extend { .. } => {}
            Op::Advance { ms } => now += ms,
            Op::Redrive => {
                let r = store.redrive(DLQ, &RedriveRequest::default(), now).unwrap();
                let mut want: Vec<JobId> = Vec::new();
                for j in &mut m.jobs {
                    if j.in_dlq
                        && j.dead
                        && matches!(j.state, MState::Ready | MState::Delayed | MState::Dead)
                    {
                        want.push(j.id.unwrap());
                        *j = MJob {
                            in_dlq: false,
                            state: MState::Ready,
                            at: now,
                            receive_count: 0,
                            failures: 0,
                            dead: false,
                            epoch: j.epoch + 1,
                            ..j.clone()
                        };
                    }
                }
                want.sort();
                prop_assert_eq!(r.ids, want);
            }
            Op::Purge => {
                let n = store.purge(Q).unwrap();
                let mut want = 0;
                for j in m.jobs.iter_mut().filter(|j| {
                    !j.in_dlq && matches!(j.state, MState::Ready | MState::Delayed | MState::Leased)
                }) {
                    j.state = MState::Gone;
                    want += 1;
                }
                prop_assert_eq!(n, want);
                // SQS's PurgeQueue: the queue's idempotency keys are forgotten too.
                m.keys.clear();
            }
            Op::Tag { count, value_len } => {
                let wide = |n: usize| "\u{1d11e}".repeat(n);
                let tags: BTreeMap<String, String> =
                    (0..count).map(|i| (format!("{}{i:04}", wide(124)), wide(value_len))).collect();
                let patch = QueuePatch { tags: Some(tags.clone()), ..QueuePatch::default() };
                let fits = count <= limits::QUEUE_TAGS_COUNT_MAX
                    && (count == 0 || value_len <= limits::QUEUE_TAG_VALUE_LENGTH_MAX);
                match store.put_queue(Q, &patch, now) {
                    Ok(_) => {
                        prop_assert!(fits, "{count} tags of {value_len} characters accepted");
                        m.tags = tags;
                    }
                    Err(e) => {
                        prop_assert!(!fits, "refused: {e}");
                        let on_tags = matches!(e, Error::InvalidParameter { field: "tags", .. });
                        prop_assert!(on_tags, "refused for the wrong reason: {}", e);
                    }
                }
            }
            Op::Restart { torn } => {
                store.commit(now).unwrap();
                drop(store);
                // Everything was committed, so a power cut (with a torn unsynced tail) loses nothing.
                storage = storage.crash(torn);
                now += 1;
                store = open(&storage, now);
                for j in &mut m.jobs {
                    if j.state == MState::Leased {
                        j.state = MState::Ready;
                        j.at = now;
                    }
                }
            }
        }
        m.now = now;
        store.tick(now).unwrap();
        m.tick();
        store.commit(now).unwrap();
        store.compact_step().unwrap();
        check(&store, &m, now)?;
        store
            .check_invariants()
            .map_err(|v| TestCaseError::fail(format!("after {op_name}: {v}")))?;
    }
    Ok(())
}

fn check(store: &Store, m: &Model, now: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(&store.get_queue(Q, now).unwrap().config.tags, &m.tags);
    for (dlq, name) in [(false, Q), (true, DLQ)] {
        let s = store.queue_stats(name, now).unwrap();
        let c = &s.counts;
        prop_assert_eq!(
            [c.delayed, c.ready, c.leased, c.completed, c.dead],
            m.counts(dlq),
            "counts of {}",
            name
        );
    }
    for j in &m.jobs {
        let id = j.id.unwrap();
        let info = store.job_info(id);
        if j.state == MState::Gone {
            prop_assert!(info.is_err());
            continue;
        }
        let info = info.unwrap();
        let want = match j.state {
            MState::Delayed => JobState::Delayed,
            MState::Ready => JobState::Ready,
            MState::Leased => JobState::Leased,
            MState::Acked => JobState::Acked,
            MState::Dead => JobState::Dead,
            MState::Gone => unreachable!(),
        };
        prop_assert_eq!(info.state, want, "state of {:?}", j);
        prop_assert_eq!(info.queue.as_str(), if j.in_dlq { DLQ } else { Q });
        prop_assert_eq!(info.receive_count, j.receive_count);
        prop_assert_eq!(info.failures, j.failures);
        prop_assert_eq!(info.dead.is_some(), j.dead);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..150)) {
        run(ops)?;
    }
}
