//! Rebuilding the store from the WAL: a last-writer-wins fold over records (by version), then
//! the indexes, then revoking the leases that were live at the crash.

use std::collections::{BTreeSet, VecDeque};

use rand::SeedableRng;
use redrive_core::broker::DocKind;
use redrive_core::model::{JobState, Outcome};
use redrive_core::{Error, QueueConfig};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{Dedup, Job, Queue, Store};
use crate::io::Storage;
use crate::metrics::Metrics;
use crate::wal::record::{Meta, Record};
use crate::wal::{Durability, Loc, OpenError, Wal, LOC_NONE};

struct QueueRec {
    version: u32,
    created_at: u64,
    updated_at: u64,
    name: String,
    config: String,
    loc: Loc,
}

/// A document's version, value (`None`: deleted) and record.
type DocVersion = (u64, Option<String>, Loc);

#[derive(Default)]
struct Fold {
    queues: FxHashMap<u32, QueueRec>,
    deleted_queues: FxHashSet<u32>,
    jobs: FxHashMap<u128, Job>,
    worker_names: FxHashMap<u128, String>,
    removed: FxHashMap<u128, u32>,
    /// (queue, key, job, enqueued at, record) of every enqueue that carried a key.
    keys: Vec<(u32, Box<str>, u128, u64, Loc)>,
    tombstones: Vec<Loc>,
    keyed: FxHashSet<u128>,
    /// The newest version of each document.
    docs: FxHashMap<(u8, Box<str>), DocVersion>,
}

fn corrupt(reason: String) -> OpenError {
    OpenError::Corrupt { file: "(replay)".into(), offset: 0, reason }
}

impl Fold {
    /// One arm per record type: long, but each arm is the whole rule for its record.
    fn apply(&mut self, loc: Loc, rec: Record) {
        match rec {
            Record::QueuePut { qid, version, created_at, updated_at, name, config_json } => {
                if self.queues.get(&qid).is_none_or(|q| q.version <= version) {
                    self.queues.insert(
                        qid,
                        QueueRec {
                            version,
                            created_at,
                            updated_at,
                            name,
                            config: config_json,
                            loc,
                        },
                    );
                }
            }
            Record::QueueDelete { qid } => {
                self.deleted_queues.insert(qid);
                self.tombstones.push(loc);
            }
            Record::Enqueue(e) => {
                if let Some(key) = e.idempotency_key {
                    self.keyed.insert(e.id);
                    self.keys.push((e.meta.qid, key.into(), e.id, e.meta.enqueued_at, loc));
                }
                if self.removed.get(&e.id).is_some_and(|v| *v >= e.meta.version) {
                    return;
                }
                let job = self.jobs.entry(e.id).or_insert_with(|| {
                    let mut j = Job::blank(e.meta);
                    j.meta_loc = loc;
                    j
                });
                job.body_loc = loc;
                job.group = super::jobs::group_hash(
                    e.attributes.get(redrive_core::model::GROUP_ATTRIBUTE).map(String::as_str),
                );
                if job.meta_loc == LOC_NONE || e.meta.version > job.meta.version {
                    job.meta = e.meta;
                    job.meta_loc = loc;
                }
            }
            Record::Meta { id, meta, worker } => {
                if self.removed.get(&id).is_some_and(|v| *v >= meta.version) {
                    return;
                }
                let job = self.jobs.entry(id).or_insert_with(|| Job::blank(meta));
                if job.meta_loc == LOC_NONE || meta.version > job.meta.version {
                    job.meta = meta;
                    job.meta_loc = loc;
                    match worker {
                        Some(w) => self.worker_names.insert(id, w),
                        None => self.worker_names.remove(&id),
                    };
                }
            }
            Record::Attempts { id, total, .. } => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    if total > job.attempts_total {
                        job.attempts_total = total;
                        job.attempts_loc = loc;
                    }
                } else if !self.removed.contains_key(&id) {
                    // Attempts can precede the job's other records after compaction moved them.
                    let mut j = Job::blank(Meta::default());
                    j.attempts_total = total;
                    j.attempts_loc = loc;
                    self.jobs.insert(id, j);
                }
            }
            Record::DedupKey { qid, id, enqueued_at, key } => {
                self.keys.push((qid, key.into(), id, enqueued_at, loc));
            }
            Record::Remove { id, version } => {
                self.tombstones.push(loc);
                let v = self.removed.entry(id).or_insert(0);
                *v = (*v).max(version);
                if self.jobs.get(&id).is_some_and(|j| j.meta.version < version) {
                    self.jobs.remove(&id);
                }
            }
            Record::Synced { .. } => {} // the log keeps these to itself
            Record::Doc { kind, key, version, value } => {
                if value.is_none() {
                    self.tombstones.push(loc);
                }
                let k = (kind, key.into_boxed_str());
                if self.docs.get(&k).is_none_or(|d| d.0 < version) {
                    self.docs.insert(k, (version, value, loc));
                }
            }
        }
    }
}

impl Store {
    /// Opens the store in `storage`, replaying its WAL. Leases live at the crash are revoked:
    /// their jobs are ready again and their old receipts are refused.
    pub fn open(
        storage: Box<dyn Storage>,
        durability: Durability,
        now: u64,
    ) -> Result<Store, OpenError> {
        Store::open_with(storage, durability, redrive_core::limits::SEGMENT_SIZE_MAX_BYTES, now)
    }

    /// [`Store::open`] with a chosen segment size (tests use small ones to exercise compaction).
    pub fn open_with(
        storage: Box<dyn Storage>,
        durability: Durability,
        segment_bytes: u32,
        now: u64,
    ) -> Result<Store, OpenError> {
        let mut fold = Fold::default();
        let wal = Wal::open(storage, segment_bytes, |loc, rec| fold.apply(loc, rec))?;
        let mut store = Store {
            wal,
            durability,
            queues: FxHashMap::default(),
            queue_ids: FxHashMap::default(),
            next_qid: 1,
            jobs: super::table::JobTable::default(),
            timers: BTreeSet::new(),
            expiry: BTreeSet::new(),
            completed: 0,
            completed_order: VecDeque::new(),
            rate_second: 0,
            dedup: FxHashMap::default(),
            dedup_expiry: BTreeSet::new(),
            workers: Vec::new(),
            worker_ids: FxHashMap::default(),
            rng: rand::rngs::SmallRng::from_os_rng(),
            last_id: 0,
            woken: Vec::new(),
            compact_watch: Default::default(),
            docs: Default::default(),
            doc_version: 0,
            refusal: None,
            totals_flushed_at: now,
            metrics: Metrics::default(),
        };
        store.restore_queues(fold.queues, &fold.deleted_queues)?;
        for loc in fold.tombstones {
            store.wal.hold_tombstone(loc, 1);
        }
        store.restore_jobs(fold.jobs, &fold.keyed, fold.worker_names, now)?;
        for (k, (version, value, loc)) in fold.docs {
            store.doc_version = store.doc_version.max(version);
            if let Some(value) = value {
                store.wal.hold(loc, 1);
                store.docs.insert(k, super::docs::Doc { version, value, loc });
            }
        }
        store.restore_dedup(fold.keys, now);
        store.restore_totals();
        store.revoke_leases(now).map_err(|e| OpenError::Io {
            doing: "revoke leases".into(),
            source: std::io::Error::other(e),
        })?;
        // No receiver waits yet. Clear the flags with the list: a flag left set without its
        // entry would keep the queue off the list for good, and its long polls unwoken.
        for qid in store.woken.drain(..) {
            if let Some(q) = store.queues.get_mut(&qid) {
                q.woken = false;
            }
        }
        Ok(store)
    }

    fn restore_queues(
        &mut self,
        queues: FxHashMap<u32, QueueRec>,
        deleted: &FxHashSet<u32>,
    ) -> Result<(), OpenError> {
        for (qid, q) in queues {
            self.next_qid = self.next_qid.max(qid + 1);
            if deleted.contains(&qid) {
                continue;
            }
            let config: QueueConfig = serde_json::from_str(&q.config)
                .map_err(|e| corrupt(format!("queue {:?} config: {e}", q.name)))?;
            let mut queue = Queue::new(qid, q.name.clone(), config, q.created_at);
            queue.version = q.version;
            queue.updated_at = q.updated_at;
            queue.loc = q.loc;
            self.wal.hold(q.loc, 1);
            self.queue_ids.insert(q.name, qid);
            self.queues.insert(qid, queue);
        }
        for qid in deleted {
            self.next_qid = self.next_qid.max(qid + 1);
        }
        Ok(())
    }

    /// Indexes the folded jobs. Jobs of deleted queues and completed jobs past their time are
    /// dropped; a job that is not completed must still have its body.
    fn restore_jobs(
        &mut self,
        jobs: FxHashMap<u128, Job>,
        keyed: &FxHashSet<u128>,
        mut worker_names: FxHashMap<u128, String>,
        now: u64,
    ) -> Result<(), OpenError> {
        let mut completed: Vec<(u64, u128)> = Vec::new();
        for (id, mut job) in jobs {
            let Some(q) = self.queues.get(&job.meta.qid) else { continue };
            if job.meta_loc == LOC_NONE {
                continue; // only an attempt log survived: the job was removed
            }
            job.expires_at = super::expiry_of(&job.meta, &q.config);
            if job.meta.state == JobState::Acked {
                job.body_loc = LOC_NONE;
                if job.expires_at <= now {
                    continue;
                }
                completed.push((job.meta.completed_at, id));
            } else if job.body_loc == LOC_NONE {
                return Err(corrupt(format!("job {} has no body record", redrive_core::JobId(id))));
            }
            job.keyed = keyed.contains(&id);
            if let Some(w) = worker_names.remove(&id) {
                job.worker = self.intern_worker(Some(&w));
            }
            for loc in [job.body_loc, job.meta_loc, job.attempts_loc] {
                self.wal.hold(loc, 1);
            }
            self.last_id = self.last_id.max(id);
            self.jobs.insert(id, job);
            self.index(id);
        }
        completed.sort_unstable();
        self.completed_order = completed.into_iter().map(|(_, id)| id).collect();
        Ok(())
    }

    /// Keys still inside their queue's dedup window and of jobs newer than the queue's last
    /// purge (documents are restored first); the newest enqueue of a key wins. Ids handed out
    /// from here on are newer than every purge's.
    fn restore_dedup(&mut self, keys: Vec<(u32, Box<str>, u128, u64, Loc)>, now: u64) {
        // The newest job id each purged queue had handed out at its last purge, by queue id.
        let mut purged_up_to: FxHashMap<u32, u128> = FxHashMap::default();
        for ((kind, queue), d) in &self.docs {
            if *kind != DocKind::DedupCleared as u8 {
                continue;
            }
            let last = d.value.parse().unwrap_or(0);
            self.last_id = self.last_id.max(last);
            if let Some(&qid) = self.queue_ids.get(&**queue) {
                purged_up_to.insert(qid, last);
            }
        }
        for (qid, key, id, enqueued_at, loc) in keys {
            let Some(q) = self.queues.get(&qid) else { continue };
            let expires_at = enqueued_at + q.config.dedup_window_ms;
            if expires_at <= now
                || q.config.dedup_window_ms == 0
                || purged_up_to.get(&qid).is_some_and(|last| id <= *last)
            {
                continue;
            }
            let k = (qid, key);
            if self.dedup.get(&k).is_some_and(|d| d.expires_at >= expires_at) {
                continue;
            }
            if let Some(old) = self.dedup.insert(k.clone(), Dedup { id, expires_at, loc }) {
                self.wal.hold(old.loc, -1);
            }
            self.wal.hold(loc, 1);
            self.dedup_expiry.insert((expires_at, k.0, k.1));
        }
    }

    fn revoke_leases(&mut self, now: u64) -> Result<(), Error> {
        let leased: Vec<u128> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.meta.state == JobState::Leased)
            .map(|(id, _)| *id)
            .collect();
        for id in leased {
            self.end_attempt(id, Outcome::Revoked, None, now)?;
            self.update(id, |m, _| {
                m.state = JobState::Ready;
                m.visible_at = now;
            })?;
        }
        self.commit(now)?;
        Ok(())
    }
}
