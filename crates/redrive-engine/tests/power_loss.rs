//! Power loss in a loop: a mixed workload (enqueue, receive, ack, fail, extend, redrive, time
//! passing, compaction) runs against a [`Store`] on memory storage with small segments, and the
//! machine dies at random points, losing what was never synced and sometimes keeping a torn
//! prefix of it. After every restart each job must be in a state it had at or after the last
//! durable point: an acknowledged write is never lost, an acknowledged ack never comes back, a
//! body is intact, and a write that was not acknowledged either survived whole or not at all.
//!
//! Durable points follow the engine: under `Sync` a batch is written, handed to group commit and
//! answered once its fsync (and every earlier batch's) is done; under `Relaxed` a batch is
//! answered after the write, and only an fsync makes it survive a power cut (a process crash
//! keeps everything written).
//!
//! Runs are seeded and print their seed; `POWER_LOSS_SEED=<n>` replays one, and
//! `POWER_LOSS_SEEDS=<n>` runs seeds `0..n` (see docs/testing.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redrive_core::broker::{AckResult, FailRequest, NewJob, RedriveRequest};
use redrive_core::model::{ErrorInfo, JobId, JobState, Priority};
use redrive_core::{Error, QueuePatch};
use redrive_engine::io::SyncHandle;
use redrive_engine::{Durability, MemStorage, Store};

const Q: &str = "q";
const DLQ: &str = "q-dlq";
/// Small segments, so the log rolls every few dozen records and compaction has work.
const SEGMENT_BYTES: u32 = 4096;
const LEASE_MS: u64 = 2000;
const MAX_ATTEMPTS: u32 = 3;
/// Short enough that acked jobs are forgotten (and their segments freed) during a run.
const COMPLETED_RETENTION_MS: u64 = 20_000;
const RELAXED_INTERVAL_MS: u64 = 1500;
const T0: u64 = 1_700_000_000_000;
/// A torn prefix longer than anything written: every written byte survives. (Not `usize::MAX`:
/// `MemStorage::crash` adds it to the synced length.)
const WRITTEN_ALL: usize = 1 << 40;
/// Seeds each test runs unless `POWER_LOSS_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// The machine loses power: unsynced bytes are gone, bar a torn prefix.
    Power,
    /// The process dies: everything written survives, what was still buffered does not.
    Process,
}

/// What a restart can observe of one job (leased and ready look the same after one: leases
/// are revoked).
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    queue: String,
    /// Acked at.
    done: Option<u64>,
    /// Died at (the job carries dead-letter information).
    died: Option<u64>,
    failures: u32,
    redrives: u32,
}

struct Track {
    body: String,
    /// The job as of the last durable point (`None` = absent), then each later change.
    views: Vec<Option<View>>,
}

struct Key {
    id: u128,
    enqueued_at: u64,
    durable: bool,
}

/// How much of the interesting ground a run covered; the tests assert each part happened.
#[derive(Debug, Default)]
struct Tally {
    crashes: u64,
    /// Jobs found, after a restart, in the state of the last durable point although they had
    /// changed since: the change was lost.
    lost: u64,
    /// Jobs found in a state newer than the last durable point: an unacknowledged write survived.
    kept: u64,
    acked: u64,
    dead: u64,
    redriven: u64,
    forgotten: u64,
    segments_reclaimed: u64,
}

struct Rig {
    seed: u64,
    durability: Durability,
    cut: Cut,
    rng: SmallRng,
    storage: MemStorage,
    store: Store,
    now: u64,
    jobs: BTreeMap<u128, Track>,
    keys: BTreeMap<String, Key>,
    /// Receipts handed out (some stale by now), with their job.
    held: Vec<(String, u128)>,
    /// Jobs that were forgotten or never became durable: they must never be seen again.
    gone: BTreeSet<u128>,
    /// Batches written but not yet fsynced by "group commit" (Sync only).
    unsynced: Vec<(Arc<dyn SyncHandle>, u64)>,
    bodies: u64,
    tally: Tally,
}

fn open(storage: &MemStorage, durability: Durability, now: u64) -> Store {
    Store::open_with(Box::new(storage.clone()), durability, SEGMENT_BYTES, now)
        .unwrap_or_else(|e| panic!("the store must open after a crash: {e}"))
}

fn view_of(store: &Store, id: u128) -> Option<View> {
    match store.job_info(JobId(id)) {
        Ok(info) => Some(View {
            queue: info.queue,
            done: info.completed_at,
            died: info.dead.map(|d| d.died_at),
            failures: info.failures,
            redrives: info.redrive_count,
        }),
        Err(Error::JobNotFound(_)) => None,
        Err(e) => panic!("job_info({}): {e}", JobId(id)),
    }
}

impl Rig {
    fn new(seed: u64, durability: Durability, cut: Cut) -> Rig {
        let storage = MemStorage::new();
        let mut store = open(&storage, durability, T0);
        let patch = QueuePatch {
            visibility_timeout_ms: Some(LEASE_MS),
            max_attempts: Some(Some(MAX_ATTEMPTS)),
            completed_retention_ms: Some(COMPLETED_RETENTION_MS),
            // Low-priority jobs must not sit under a backlog for the whole run, pinning old segments.
            priority_aging_ms: Some(Some(5000)),
            ..QueuePatch::default()
        };
        store.put_queue(Q, &patch, T0).unwrap();
        let dlq_patch = QueuePatch {
            completed_retention_ms: Some(COMPLETED_RETENTION_MS),
            ..QueuePatch::default()
        };
        store.put_queue(DLQ, &dlq_patch, T0).unwrap();
        store.commit(T0).unwrap(); // the queues are acknowledged before the first cut
        Rig {
            seed,
            durability,
            cut,
            rng: SmallRng::seed_from_u64(seed),
            storage,
            store,
            now: T0,
            jobs: BTreeMap::new(),
            keys: BTreeMap::new(),
            held: Vec::new(),
            gone: BTreeSet::new(),
            unsynced: Vec::new(),
            bodies: 0,
            tally: Tally::default(),
        }
    }

    /// Runs `rounds` crash cycles of a few dozen operations each.
    fn run(&mut self, rounds: u32) {
        for _ in 0..rounds {
            let steps = self.rng.random_range(1..120);
            for _ in 0..steps {
                self.step();
                self.boundary();
            }
            self.check_invariants("before the crash");
            self.crash();
        }
        self.tally.segments_reclaimed +=
            self.store.metrics().compacted_segments + self.store.metrics().deleted_segments;
    }

    fn check_invariants(&self, when: &str) {
        if let Err(v) = self.store.check_invariants() {
            panic!("seed {}: {when}: {v}", self.seed);
        }
    }

    fn step(&mut self) {
        self.store.make_room(); // as the engine does before each batch
        match self.rng.random_range(0..100) {
            // Jobs leave about as fast as they come, so old segments empty out.
            0..16 => self.enqueue(),
            16..38 => self.receive(),
            38..60 => self.ack(),
            60..68 => self.fail(),
            68..73 => self.extend(),
            73..77 => self.redrive(),
            77..92 => self.advance(),
            _ => {
                // Twice: the first look at a segment only notes how many live records it has.
                self.store.compact_step().unwrap();
                self.store.compact_step().unwrap();
            }
        }
    }

    /// The end of an engine batch: answer it (a durable point), or leave it written but not yet
    /// fsynced, or still buffered. An idle engine first marks the synced end of the log.
    fn boundary(&mut self) {
        if self.rng.random_bool(0.2) {
            self.store.mark_synced().unwrap();
        }
        let r = self.rng.random_range(0..100);
        match self.durability {
            Durability::Sync if r < 35 => {
                self.unsynced.extend(self.store.write_for_sync().unwrap());
                self.group_commit();
                self.durable_point();
            }
            Durability::Sync if r < 55 => {
                self.unsynced.extend(self.store.write_for_sync().unwrap());
            }
            Durability::Relaxed { .. } if r < 55 => {
                let fsyncs = self.store.metrics().fsync_us.count;
                self.store.commit(self.now).unwrap();
                let synced = self.store.metrics().fsync_us.count > fsyncs;
                if synced || self.cut == Cut::Process {
                    self.durable_point();
                }
            }
            _ => {}
        }
    }

    /// What the engine's group-commit thread does: one fsync per file for every batch waiting,
    /// then it tells the log how far it is durable.
    fn group_commit(&mut self) {
        let mut upto = 0;
        for (h, loc) in self.unsynced.drain(..) {
            h.sync().unwrap();
            upto = upto.max(loc);
        }
        self.store.synced_flag().fetch_max(upto, Ordering::AcqRel);
    }

    /// Everything so far is acknowledged: it must survive any crash from now on.
    fn durable_point(&mut self) {
        for t in self.jobs.values_mut() {
            let last = t.views.pop().expect("a job has a view");
            t.views = vec![last];
        }
        for k in self.keys.values_mut() {
            k.durable = true;
        }
    }

    /// Reads the job's state and records it if it changed.
    fn refresh(&mut self, id: u128) {
        let v = view_of(&self.store, id);
        let t = self.jobs.get_mut(&id).expect("tracked");
        if t.views.last() != Some(&v) {
            t.views.push(v);
        }
    }

    fn enqueue(&mut self) {
        let n = self.rng.random_range(1..=2);
        let mut jobs = Vec::new();
        for _ in 0..n {
            self.bodies += 1;
            let pad = "x".repeat(self.rng.random_range(0..80));
            let key =
                self.rng.random_bool(0.15).then(|| format!("k{}", self.rng.random_range(0..6)));
            jobs.push(NewJob {
                body: format!("{}/{}/{pad}", self.seed, self.bodies),
                priority: Priority::from_u8(self.rng.random_range(0..3)),
                delay_ms: self.rng.random_bool(0.3).then(|| self.rng.random_range(1..3000)),
                idempotency_key: key,
                ..NewJob::default()
            });
        }
        let out = self.store.enqueue(Q, &jobs, self.now).unwrap();
        for (job, r) in jobs.into_iter().zip(out) {
            let key = job.idempotency_key.clone();
            let live = key.as_ref().and_then(|k| self.keys.get(k));
            match live.filter(|k| self.now < k.enqueued_at + dedup_window_ms()) {
                Some(k) => {
                    assert!(r.duplicate, "seed {}: key {key:?} is inside its window", self.seed);
                    assert_eq!(r.id.0, k.id, "seed {}: a duplicate names the first job", self.seed);
                    continue;
                }
                None => assert!(!r.duplicate, "seed {}: key {key:?} is new or expired", self.seed),
            }
            let id = r.id.0;
            if let Some(k) = key {
                self.keys.insert(k, Key { id, enqueued_at: self.now, durable: false });
            }
            self.jobs.insert(id, Track { body: job.body, views: vec![None] });
            self.refresh(id);
        }
    }

    fn receive(&mut self) {
        let dlq = self.rng.random_bool(0.25);
        let qid = self.store.queue_id(if dlq { DLQ } else { Q }).unwrap();
        let max = self.rng.random_range(1..=6);
        let lease = self.rng.random_bool(0.5).then(|| self.rng.random_range(200..3000));
        let mut got = Vec::new();
        self.store.receive_from(qid, max, lease, Some("w"), self.now, &mut got).unwrap();
        for d in got {
            let id = d.id.0;
            assert!(
                !self.gone.contains(&id),
                "seed {}: forgotten job {} delivered",
                self.seed,
                d.id
            );
            let t = self.jobs.get(&id).unwrap_or_else(|| panic!("unknown job {} delivered", d.id));
            assert_eq!(d.body, t.body, "seed {}: body of {}", self.seed, d.id);
            let v = t.views.last().unwrap().as_ref().expect("a delivered job exists");
            assert_eq!(v.done, None, "seed {}: acked job {} delivered again", self.seed, d.id);
            self.held.push((d.receipt, id));
        }
        if self.held.len() > 64 {
            self.held.drain(..self.held.len() - 64);
        }
    }

    fn pick_held(&mut self) -> Option<(String, u128)> {
        if self.held.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.held.len());
        Some(self.held.swap_remove(i))
    }

    /// Acks a few receipts in one request (some may be stale by now).
    fn ack(&mut self) {
        let n = self.rng.random_range(1..=4);
        let picked: Vec<(String, u128)> = (0..n).filter_map(|_| self.pick_held()).collect();
        let receipts: Vec<String> = picked.iter().map(|p| p.0.clone()).collect();
        if receipts.is_empty() {
            return;
        }
        let results = self.store.ack(&receipts, self.now).unwrap();
        for ((_, id), r) in picked.into_iter().zip(results) {
            self.refresh(id);
            let done = self.jobs[&id].views.last().unwrap().as_ref().and_then(|v| v.done);
            if r == AckResult::Ok {
                assert_eq!(done, Some(self.now), "seed {}: an ok ack completes", self.seed);
                self.tally.acked += 1;
            }
        }
    }

    fn fail(&mut self) {
        let Some((receipt, id)) = self.pick_held() else { return };
        let req = FailRequest {
            receipt,
            error: ErrorInfo { kind: "E".into(), message: "boom".into(), detail: None },
            // Always explicit: the store's own jitter is not seeded.
            retry_after_ms: Some(self.rng.random_range(0..1500)),
            non_retryable: self.rng.random_bool(0.2),
        };
        match self.store.fail(&req, self.now) {
            Ok(r) => {
                if r.dead_reason.is_some() {
                    self.tally.dead += 1;
                }
            }
            Err(Error::StaleReceipt) => {}
            Err(e) => panic!("seed {}: fail: {e}", self.seed),
        }
        self.refresh(id);
    }

    fn extend(&mut self) {
        let Some((receipt, id)) = self.pick_held() else { return };
        let ms = if self.rng.random_bool(0.3) { 0 } else { self.rng.random_range(100..3000) };
        match self.store.extend(&receipt, ms, self.now) {
            Ok(_) if ms > 0 => self.held.push((receipt, id)),
            Ok(_) | Err(Error::StaleReceipt) => {}
            Err(e) => panic!("seed {}: extend: {e}", self.seed),
        }
    }

    fn redrive(&mut self) {
        let req = RedriveRequest {
            delay_ms: self.rng.random_bool(0.3).then_some(500),
            ..RedriveRequest::default()
        };
        let r = self.store.redrive(DLQ, &req, self.now).unwrap();
        for id in r.ids {
            self.refresh(id.0);
            self.tally.redriven += 1;
        }
    }

    /// Time passes: delays end, leases expire (a failure, maybe a death), acked jobs are forgotten.
    fn advance(&mut self) {
        self.now += self.rng.random_range(0..2500);
        self.store.tick(self.now).unwrap();
        let leased: BTreeSet<u128> = self.held.iter().map(|h| h.1).collect();
        for id in leased {
            self.refresh(id);
        }
    }

    /// Cuts the power (or kills the process), restarts, and checks every job against what was
    /// acknowledged.
    fn crash(&mut self) {
        let torn = match (self.cut, self.rng.random_range(0..100)) {
            (Cut::Process, _) => WRITTEN_ALL,
            (Cut::Power, 0..25) => 0,
            (Cut::Power, 25..60) => self.rng.random_range(1..80),
            (Cut::Power, 60..85) => self.rng.random_range(80..1500),
            (Cut::Power, _) => WRITTEN_ALL, // the kernel had written everything back
        };
        self.tally.segments_reclaimed +=
            self.store.metrics().compacted_segments + self.store.metrics().deleted_segments;
        self.storage = self.storage.crash(torn);
        self.unsynced.clear();
        self.now += 1;
        self.store = open(&self.storage, self.durability, self.now);
        self.tally.crashes += 1;
        self.check_invariants("after the restart");
        for q in [Q, DLQ] {
            assert!(self.store.queue_id(q).is_ok(), "seed {}: queue {q} lost", self.seed);
        }
        self.check_jobs();
        self.check_keys();
        // Leases died with the process: an old receipt no longer extends anything (an ack with
        // it would still complete a job nobody leased again, as SQS's DeleteMessage does).
        for (receipt, id) in std::mem::take(&mut self.held) {
            let r = self.store.extend(&receipt, 1000, self.now);
            assert!(
                r.is_err(),
                "seed {}: a lease of job {} outlived a restart",
                self.seed,
                JobId(id)
            );
        }
        // Recovery wrote the revoked leases (and committed them): a durable point.
        self.durable_point();
    }

    fn check_jobs(&mut self) {
        let seed = self.seed;
        let mut vanished = Vec::new();
        for (&id, t) in &mut self.jobs {
            let got = view_of(&self.store, id);
            let forgotten = |v: &View| {
                let retention = retention_of(&self.store, &v.queue);
                v.done.is_some_and(|at| at + retention <= self.now)
            };
            let allowed = t.views.contains(&got)
                || (got.is_none() && t.views.iter().flatten().any(forgotten));
            assert!(
                allowed,
                "seed {seed}: job {} recovered as {got:?}; since the last durable point it was {:?}",
                JobId(id),
                t.views
            );
            if got != *t.views.last().unwrap() && got == t.views[0] {
                self.tally.lost += 1;
            } else if got != t.views[0] {
                self.tally.kept += 1;
            }
            if let Some(v) = &got {
                if v.done.is_none() {
                    let info = self.store.job_info(JobId(id)).unwrap();
                    assert_eq!(info.body.as_deref(), Some(t.body.as_str()), "seed {seed}: body");
                    assert_ne!(info.state, JobState::Leased, "seed {seed}: leases are revoked");
                }
            } else {
                if t.views[0].is_some() {
                    self.tally.forgotten += 1;
                }
                vanished.push(id);
            }
            t.views = vec![got];
        }
        for id in vanished {
            self.jobs.remove(&id);
            self.gone.insert(id);
        }
        for &id in &self.gone {
            assert!(view_of(&self.store, id).is_none(), "seed {seed}: job {} came back", JobId(id));
        }
    }

    /// An acknowledged idempotency key still deduplicates; one that was lost with its job is free.
    fn check_keys(&mut self) {
        let jobs = &self.jobs;
        self.keys.retain(|_, k| k.durable || jobs.contains_key(&k.id));
        for k in self.keys.values_mut() {
            k.durable = true;
        }
    }
}

fn dedup_window_ms() -> u64 {
    redrive_core::limits::DEDUP_WINDOW_DEFAULT_MS
}

fn retention_of(store: &Store, queue: &str) -> u64 {
    store.get_queue(queue, 0).expect("the queue exists").config.completed_retention_ms
}

fn seeds(salt: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("POWER_LOSS_SEED") {
        return vec![s.parse().expect("POWER_LOSS_SEED is a number")];
    }
    let n = std::env::var("POWER_LOSS_SEEDS")
        .map_or(SEEDS_DEFAULT, |s| s.parse().expect("POWER_LOSS_SEEDS is a number"));
    (0..n).map(|i| salt * 1_000_003 + i).collect()
}

/// Runs every seed and sums what they covered.
fn torture(salt: u64, durability: Durability, cut: Cut, rounds: u32) -> Tally {
    let mut total = Tally::default();
    for seed in seeds(salt) {
        eprintln!("seed {seed} ({durability:?}, {cut:?}): replay with POWER_LOSS_SEED={seed}");
        let mut rig = Rig::new(seed, durability, cut);
        rig.run(rounds);
        let t = rig.tally;
        total.crashes += t.crashes;
        total.lost += t.lost;
        total.kept += t.kept;
        total.acked += t.acked;
        total.dead += t.dead;
        total.redriven += t.redriven;
        total.forgotten += t.forgotten;
        total.segments_reclaimed += t.segments_reclaimed;
    }
    eprintln!("{total:?}");
    total
}

#[test]
fn sync_power_cuts_never_lose_an_acknowledged_write() {
    let t = torture(1, Durability::Sync, Cut::Power, 32);
    assert!(t.crashes >= 100, "{t:?}");
    assert!(t.lost > 0 && t.kept > 0, "cuts both lost and kept unacknowledged writes: {t:?}");
    assert!(t.acked > 0 && t.dead > 0 && t.redriven > 0 && t.forgotten > 0, "{t:?}");
    assert!(t.segments_reclaimed > 0, "compaction ran: {t:?}");
}

#[test]
fn relaxed_power_cuts_lose_at_most_what_came_after_the_last_fsync() {
    let relaxed = Durability::Relaxed { interval_ms: RELAXED_INTERVAL_MS };
    let t = torture(2, relaxed, Cut::Power, 16);
    assert!(t.crashes >= 50 && t.lost > 0 && t.kept > 0, "{t:?}");
}

#[test]
fn relaxed_process_crashes_lose_no_acknowledged_write() {
    let relaxed = Durability::Relaxed { interval_ms: RELAXED_INTERVAL_MS };
    let t = torture(3, relaxed, Cut::Process, 16);
    assert!(t.crashes >= 50 && t.lost > 0, "buffered writes die with the process: {t:?}");
}

/// A valid WAL frame (a `Remove` record) made only of ASCII bytes, so a job body can carry it.
fn ascii_frame() -> String {
    (0u64..)
        .find_map(|n| {
            // An id of ASCII digits and an ASCII version; the checksum decides the rest.
            let id = u128::from_le_bytes(format!("{n:016}").into_bytes().try_into().unwrap());
            let mut buf = Vec::new();
            redrive_engine::wal::record::frame(&mut buf, |e| e.remove(id, 0x2020_2020));
            buf.is_ascii().then(|| String::from_utf8(buf).expect("ASCII"))
        })
        .expect("one in about sixteen checksums is ASCII")
}

/// A power cut that tears a record whose body happens to hold a valid frame: the tear is a suffix
/// and nothing in it was acknowledged, yet the scan finds the frame inside the torn record, takes
/// it for a valid record after a bad one, and refuses to start.
#[test]
fn a_torn_job_whose_body_holds_a_valid_frame_is_still_a_torn_tail() {
    let storage = MemStorage::new();
    let mut store = open(&storage, Durability::Sync, T0);
    store.put_queue(Q, &QueuePatch::default(), T0).unwrap();
    let job = |body: String| [NewJob { body, ..NewJob::default() }];
    let acked = store.enqueue(Q, &job("acknowledged".into()), T0).unwrap()[0].id;
    store.commit(T0).unwrap();
    let body = format!("{}{}{}", "a".repeat(100), ascii_frame(), "b".repeat(400));
    let torn = store.enqueue(Q, &job(body), T0).unwrap()[0].id;
    store.write_for_sync().unwrap(); // written, and the power goes before the fsync
                                     // Keep the record up to the middle of the b's: the embedded frame survives, the end does not.
    let body_start = 8 + 1 + 16 + 80 + 1 + 1 + 4 + 4;
    let storage = storage.crash(body_start + 100 + 29 + 200);
    let store = Store::open_with(Box::new(storage), Durability::Sync, SEGMENT_BYTES, T0 + 1)
        .expect("a torn write is the end of the log, whatever the torn record's body holds");
    assert!(store.job_info(acked).is_ok());
    assert!(store.job_info(torn).is_err());
}
