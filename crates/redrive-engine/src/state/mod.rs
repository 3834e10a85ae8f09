//! The queue state machine: every queue and job, their indexes, and the operations on them.
//!
//! [`Store`] is synchronous and deterministic apart from job ids and jitter: time is passed in as
//! `now` (ms). Every change goes through [`Store::unindex`] → change the metadata →
//! [`Store::index`] → append a WAL record, so the indexes and counters can never drift from the
//! jobs. Nothing here waits on I/O except reads of job bodies and attempt logs from the WAL.
//!
//! # Layout
//! - `queue`: queue records, create/update/delete, stats.
//! - `jobs`: enqueue, receive (lease), ack, fail, extend, job status.
//! - `dead`: dead-letter listing, redrive, purge.
//! - `timers`: delays, lease expiry, retention, forgetting completed jobs, dedup expiry.
//! - `recover`: rebuilding the store from the WAL.
//! - `compact`: reclaiming WAL space.
//! - `check`: [`Store::check_invariants`], every index and counter recounted from the jobs.
//! - `docs`: control-plane documents (triage proposals and policies).
//! - `export`: the whole store read out, for a migration to another store.

mod check;
mod compact;
mod dead;
mod docs;
mod export;
mod jobs;
mod queue;
mod recover;
mod table;
mod timers;

pub use queue::TOTALS_FLUSH_MS;

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use redrive_core::model::{Attempt, JobState};
use redrive_core::{limits, Error, Result};
use rustc_hash::FxHashMap;

use crate::metrics::Metrics;
use crate::wal::record::{Meta, Record};
use crate::wal::{Durability, Loc, Wal, LOC_NONE};

pub use check::Violation;
pub use export::{Export, ExportedJob, ExportedKey, ExportedQueue};
pub use queue::Queue;

// Worker ids and job-table slots are `u32`s in memory (`u32::MAX` = no worker).
const _: () = assert!(limits::WORKERS_INTERNED_MAX < u32::MAX as usize);
const _: () = assert!(limits::JOBS_COUNT_MAX < u32::MAX as usize);

/// One job in memory: fixed-size metadata and where its records live in the WAL.
#[derive(Clone, Debug)]
pub struct Job {
    pub meta: Meta,
    /// Interned worker id of the current or last lease (`u32::MAX` = none).
    pub worker: u32,
    /// The `Enqueue` record holding the body (`LOC_NONE` once acked: the body is no longer kept).
    pub body_loc: Loc,
    /// The record holding the latest logged metadata (an `Enqueue` or `Meta` record).
    pub meta_loc: Loc,
    pub attempts_loc: Loc,
    pub attempts_total: u32,
    /// Retention deadline, or for completed jobs the time they are forgotten.
    pub expires_at: u64,
    /// Enqueued with an idempotency key: its enqueue record may outlive it (held by the dedup
    /// entry), so forgetting it needs a tombstone.
    pub keyed: bool,
    /// Ordering group key (0 = none), see `jobs::group_hash`.
    pub group: u64,
}

impl Job {
    /// A job with this metadata and no records yet.
    pub(crate) fn blank(meta: Meta) -> Job {
        Job {
            meta,
            worker: u32::MAX,
            body_loc: LOC_NONE,
            meta_loc: LOC_NONE,
            attempts_loc: LOC_NONE,
            attempts_total: 0,
            expires_at: 0,
            keyed: false,
            group: 0,
        }
    }
}

pub(crate) struct Dedup {
    pub id: u128,
    pub expires_at: u64,
    pub loc: Loc,
}

pub struct Store {
    wal: Wal,
    durability: Durability,
    queues: FxHashMap<u32, Queue>,
    queue_ids: FxHashMap<String, u32>,
    next_qid: u32,
    jobs: table::JobTable,
    /// Delayed jobs (until ready) and leased jobs (until the lease ends), by deadline.
    timers: BTreeSet<(u64, u128)>,
    /// Every job by `expires_at`.
    expiry: BTreeSet<(u64, u128)>,
    completed: usize,
    /// Completed jobs in completion order, for the `COMPLETED_JOBS_MAX` bound (stale entries are
    /// skipped).
    completed_order: std::collections::VecDeque<u128>,
    rate_second: u64,
    dedup: FxHashMap<(u32, Box<str>), Dedup>,
    dedup_expiry: BTreeSet<(u64, u32, Box<str>)>,
    workers: Vec<Box<str>>,
    worker_ids: FxHashMap<Box<str>, u32>,
    rng: SmallRng,
    /// The newest job id handed out (ids increase strictly).
    last_id: u128,
    /// Queues that gained ready jobs since the engine last looked (for long-poll waiters).
    woken: Vec<u32>,
    compact_watch: compact::CompactWatch,
    /// Control-plane documents by (kind, key), and the newest version handed out.
    docs: std::collections::BTreeMap<(u8, Box<str>), docs::Doc>,
    doc_version: u64,
    /// Set by [`Store::make_room`] while the log cannot take writes (nothing is poisoned).
    refusal: Option<Error>,
    /// When [`Store::flush_totals`] last logged the queues' totals.
    totals_flushed_at: u64,
    metrics: Metrics,
}

impl Store {
    pub fn queue_id(&self, name: &str) -> Result<u32> {
        self.queue_ids.get(name).copied().ok_or_else(|| Error::QueueNotFound(name.to_owned()))
    }

    pub fn has_queue(&self, qid: u32) -> bool {
        self.queues.contains_key(&qid)
    }

    pub fn queue_config(&self, qid: u32) -> Option<&redrive_core::QueueConfig> {
        self.queues.get(&qid).map(|q| &q.config)
    }

    /// Whether the queue has a job ready now (its FIFO group may still hold it back).
    pub fn has_ready(&self, qid: u32) -> bool {
        self.queues.get(&qid).is_some_and(|q| q.ready.iter().any(|r| !r.is_empty()))
    }

    /// The next queue that gained ready jobs since the engine last looked (for long polls); it
    /// is listed again when it next gains one.
    pub fn take_woken(&mut self) -> Option<u32> {
        let qid = self.woken.pop()?;
        if let Some(q) = self.queues.get_mut(&qid) {
            q.woken = false;
        }
        Some(qid)
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Latencies by queue name.
    pub fn latency(
        &self,
    ) -> std::collections::BTreeMap<String, redrive_core::metrics::QueueLatency> {
        let named = self
            .metrics
            .latency
            .iter()
            .filter_map(|(qid, l)| self.queues.get(qid).map(|q| (q.name.clone(), l.clone())));
        named.collect()
    }

    /// Counts one engine batch of `requests` requests.
    pub fn count_batch(&mut self, requests: usize) {
        self.metrics.batches += 1;
        self.metrics.batch_requests += requests as u64;
    }

    pub(crate) fn queue_name(&self, qid: u32) -> String {
        self.queues.get(&qid).map_or_else(|| "<deleted>".to_owned(), |q| q.name.clone())
    }

    pub fn poisoned(&self) -> Option<&str> {
        self.wal.poisoned()
    }

    /// Refuses writes on a poisoned store.
    pub(crate) fn writable(&self) -> Result<()> {
        if let Some(p) = self.wal.poisoned() {
            return Err(Error::Poisoned(p.to_owned()));
        }
        match &self.refusal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Why writes are refused now, if they are (poisoned, or cannot make room in the log).
    pub fn write_refusal(&self) -> Option<Error> {
        self.writable().err()
    }

    /// Tests break the store on purpose through this, to see [`Store::check_invariants`] catch it.
    #[cfg(test)]
    pub(crate) fn corrupt_for_test<R>(&mut self, corrupt: impl FnOnce(&mut Store) -> R) -> R {
        corrupt(self)
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Removes a job from every index and counter; the caller changes it and calls [`Store::index`].
    pub(crate) fn unindex(&mut self, id: u128) {
        let Some(job) = self.jobs.get(&id) else { return };
        self.expiry.remove(&(job.expires_at, id));
        self.unplace(id);
    }

    /// [`Store::unindex`] but for the expiry index, which most changes leave alone.
    fn unplace(&mut self, id: u128) {
        let job = &self.jobs[&id];
        let m = job.meta;
        let state = m.state;
        match state {
            JobState::Delayed | JobState::Leased => {
                self.timers.remove(&(m.visible_at, id));
                if state == JobState::Leased && job.group != 0 {
                    if let Some(q) = self.queues.get_mut(&m.qid) {
                        q.release_group(job.group, (m.enqueued_at, id));
                        // The group's next job may have been ready all along, held back: long
                        // polls on this queue must look again (an ack places nothing ready).
                        if !q.woken {
                            q.woken = true;
                            self.woken.push(m.qid);
                        }
                    }
                }
            }
            JobState::Ready => {
                if let Some(q) = self.queues.get_mut(&m.qid) {
                    q.ready[m.priority as usize].remove(&(q.ready_since(&m), id));
                }
            }
            JobState::Acked => {
                self.completed =
                    self.completed.checked_sub(1).expect("an acked job is counted in `completed`")
            }
            JobState::Dead => {}
        }
        if let Some(q) = self.queues.get_mut(&m.qid) {
            let count = &mut q.counts[m.state as usize];
            *count = count.checked_sub(1).expect("a job is counted under its state");
            if m.dead_reason.is_some() && state != JobState::Acked {
                q.dead.remove(&id);
            }
        }
    }

    pub(crate) fn index(&mut self, id: u128) {
        let job = self.jobs.get(&id).expect("indexing a job that exists");
        self.expiry.insert((job.expires_at, id));
        self.place(id);
    }

    fn place(&mut self, id: u128) {
        let job = &self.jobs[&id];
        let m = job.meta;
        let state = m.state;
        match state {
            JobState::Delayed | JobState::Leased => {
                self.timers.insert((m.visible_at, id));
                if state == JobState::Leased && job.group != 0 {
                    if let Some(q) = self.queues.get_mut(&m.qid) {
                        q.inflight_groups.entry(job.group).or_default().insert((m.enqueued_at, id));
                    }
                }
            }
            JobState::Ready => {
                if let Some(q) = self.queues.get_mut(&m.qid) {
                    q.ready[m.priority as usize].insert((q.ready_since(&m), id));
                    if !q.woken {
                        q.woken = true;
                        self.woken.push(m.qid);
                    }
                }
            }
            JobState::Acked => self.completed += 1,
            JobState::Dead => {}
        }
        if let Some(q) = self.queues.get_mut(&m.qid) {
            q.counts[m.state as usize] += 1;
            if m.dead_reason.is_some() && state != JobState::Acked {
                q.dead.insert(id);
            }
        }
    }

    /// Logs the job's current metadata and makes that record its metadata holder.
    pub(crate) fn log_meta(&mut self, id: u128) -> Result<()> {
        let job = self.jobs.get(&id).expect("logging a job that exists");
        let worker = self.workers.get(job.worker as usize).map(|w| &**w);
        let meta = job.meta;
        let loc = self.wal.append(|e| e.meta_record(id, &meta, worker))?;
        let job = self.jobs.get_mut(&id).expect("exists");
        let old = std::mem::replace(&mut job.meta_loc, loc);
        self.wal.hold(old, -1);
        self.wal.hold(loc, 1);
        Ok(())
    }

    /// Applies `change` to a job's metadata (and interned worker) with the index discipline,
    /// bumps its version and logs it. The retention deadline follows from the new metadata.
    pub(crate) fn update(
        &mut self,
        id: u128,
        change: impl FnOnce(&mut Meta, &mut u32),
    ) -> Result<()> {
        self.unplace(id);
        let job = self.jobs.get_mut(&id).expect("updating a job that exists");
        change(&mut job.meta, &mut job.worker);
        job.meta.version += 1;
        let old_expiry = job.expires_at;
        let config = &self.queues.get(&job.meta.qid).expect("job's queue exists").config;
        job.expires_at = expiry_of(&job.meta, config);
        if old_expiry != job.expires_at {
            self.expiry.remove(&(old_expiry, id));
            self.expiry.insert((job.expires_at, id));
        }
        self.place(id);
        self.log_meta(id)
    }

    /// Deletes a job for good (purge, queue deletion, retention) and logs a tombstone.
    pub(crate) fn remove_job(&mut self, id: u128) -> Result<()> {
        self.unindex(id);
        let job = self.jobs.remove(&id).expect("removing a job that exists");
        for loc in [job.body_loc, job.meta_loc, job.attempts_loc] {
            self.wal.hold(loc, -1);
        }
        let version = job.meta.version + 1;
        let loc = self.wal.append(|e| e.remove(id, version))?;
        self.wal.hold_tombstone(loc, 1);
        Ok(())
    }

    /// Forgets a completed job. No tombstone unless it was keyed: replaying its `acked` record
    /// again is harmless and recovery drops completed jobs past their time; but a keyed job's
    /// enqueue record may outlive that record and must not bring the job back.
    pub(crate) fn forget_job(&mut self, id: u128) -> Result<()> {
        self.unindex(id);
        let job = self.jobs.remove(&id).expect("forgetting a job that exists");
        for loc in [job.body_loc, job.meta_loc, job.attempts_loc] {
            self.wal.hold(loc, -1);
        }
        if job.keyed {
            let version = job.meta.version + 1;
            let loc = self.wal.append(|e| e.remove(id, version))?;
            self.wal.hold_tombstone(loc, 1);
        }
        Ok(())
    }

    pub(crate) fn intern_worker(&mut self, w: Option<&str>) -> u32 {
        let Some(w) = w else { return u32::MAX };
        if let Some(i) = self.worker_ids.get(w) {
            return *i;
        }
        if self.workers.len() >= limits::WORKERS_INTERNED_MAX {
            return u32::MAX;
        }
        let i = u32::try_from(self.workers.len()).expect("WORKERS_INTERNED_MAX fits a u32");
        self.workers.push(w.into());
        self.worker_ids.insert(w.into(), i);
        i
    }

    pub(crate) fn worker_name(&self, i: u32) -> Option<String> {
        self.workers.get(i as usize).map(|w| w.to_string())
    }

    /// The job's attempt log, read back from the WAL.
    pub(crate) fn read_attempts(&self, job: &Job) -> Result<Vec<Attempt>> {
        if job.attempts_loc == LOC_NONE {
            return Ok(Vec::new());
        }
        match self.wal.read(job.attempts_loc) {
            Ok(Record::Attempts { entries, .. }) => Ok(entries),
            Ok(_) => Err(Error::Internal("attempt log location holds another record".into())),
            Err(e) => Err(Error::Internal(format!("reading attempt log: {e}"))),
        }
    }

    /// Appends an entry to a job's attempt log (keeping the newest entries within the bound).
    pub(crate) fn log_attempt(&mut self, id: u128, entry: Attempt) -> Result<()> {
        let job = self.jobs.get(&id).expect("job exists");
        let mut entries = self.read_attempts(job)?;
        entries.push(entry);
        if entries.len() > limits::ATTEMPT_LOG_ENTRIES_MAX {
            entries.drain(..entries.len() - limits::ATTEMPT_LOG_ENTRIES_MAX);
        }
        let total = job.attempts_total + 1;
        let loc = self.wal.append(|e| e.attempts(id, total, &entries))?;
        let job = self.jobs.get_mut(&id).expect("job exists");
        let old = std::mem::replace(&mut job.attempts_loc, loc);
        job.attempts_total = total;
        self.wal.hold(old, -1);
        self.wal.hold(loc, 1);
        Ok(())
    }

    /// Writes buffered records durably (per the configured durability).
    pub fn commit(&mut self, now: u64) -> Result<()> {
        match self.wal.commit(self.durability, now) {
            Ok(Some(us)) => {
                self.metrics.fsync_us.record(us);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(p) => Err(p.into()),
        }
    }

    /// Writes buffered records and hands back what must be fsynced for them to be durable (the
    /// engine's group-commit thread does that fsync).
    pub fn write_for_sync(&mut self) -> Result<Option<crate::wal::SyncTicket>> {
        Ok(self.wal.write_for_sync()?)
    }

    /// How far the log is known durable, for the thread that fsyncs it.
    pub fn synced_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.wal.synced_flag()
    }

    /// Between batches: rolls to a new log segment if the active one is nearly full. When the
    /// new segment cannot be created, writes are refused until it can (see [`Store::writable`]).
    pub fn make_room(&mut self) {
        self.refusal = match self.wal.make_room() {
            Ok(()) | Err(Error::Poisoned(_)) => None,
            Err(e) => Some(e),
        };
    }

    /// When idle: marks the end of the synced log (see `wal`), if anything is unmarked.
    pub fn mark_synced(&mut self) -> Result<()> {
        Ok(self.wal.mark_synced().map(drop)?)
    }

    /// Records were written that no `Synced` marker follows yet.
    pub fn wants_mark(&self) -> bool {
        self.wal.wants_mark()
    }

    pub fn poison_flag(&self) -> std::sync::Arc<std::sync::OnceLock<String>> {
        self.wal.poison_flag()
    }

    /// Bytes of WAL on disk and segment count.
    pub fn wal_size(&self) -> (u64, usize) {
        (self.wal.total_bytes(), self.wal.segment_count())
    }
}

/// When a job's time in its queue ends: retention counts from enqueue, or for a dead job from
/// its death, or for a redriven job from its last redrive (`completed_at` holds both times); a
/// completed job is forgotten `completed_retention_ms` after completion.
pub(crate) fn expiry_of(m: &Meta, config: &redrive_core::QueueConfig) -> u64 {
    if m.state == JobState::Acked {
        m.completed_at + config.completed_retention_ms
    } else if m.dead_reason.is_some() || m.redrive_count > 0 {
        m.completed_at + config.retention_ms
    } else {
        m.enqueued_at + config.retention_ms
    }
}

/// The attempt limit in force for a job: its own if it was enqueued with one, else its queue's
/// (`None` = unlimited).
pub(crate) fn max_attempts_of(m: &Meta, config: &redrive_core::QueueConfig) -> Option<u32> {
    match m.max_attempts {
        0 => config.max_attempts,
        n => Some(n),
    }
}
