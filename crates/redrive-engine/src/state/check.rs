//! [`Store::check_invariants`]: every index, counter and WAL holder count recounted from the jobs,
//! queues, dedup entries and documents, and compared with what the store keeps.
//!
//! The store updates those incrementally (`Store::unplace` / `Store::place`, `Wal::hold`), so a
//! missed update drifts silently until a count goes negative or a segment is deleted under a live
//! record. This finds the drift at the step that caused it. It is O(jobs · log jobs): tests call
//! it after every step and restart, and the engine after every batch in debug builds only.

use std::fmt;

use redrive_core::model::JobState;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{expiry_of, Store};
use crate::wal::{loc_segment, Loc, LOC_NONE};

/// An invariant of the store that does not hold: a bug, described for the test that found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store invariant violated: {}", self.0)
    }
}

impl std::error::Error for Violation {}

/// Returns a [`Violation`] from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(Violation(format!($($why)+)));
        }
    };
}

/// What the jobs of one queue add up to.
#[derive(Default)]
struct QueueTally {
    counts: [u64; 5],
    ready: [usize; 3],
    dead: usize,
    groups: FxHashMap<u64, std::collections::BTreeSet<(u64, u128)>>,
}

/// References into the log from memory, per segment.
#[derive(Default)]
struct Refs(FxHashMap<u32, i64>);

impl Refs {
    fn add(&mut self, loc: Loc) {
        if loc != LOC_NONE {
            *self.0.entry(loc_segment(loc)).or_insert(0) += 1;
        }
    }
}

impl Store {
    /// Recounts every index and counter from the jobs and checks the relations between them:
    /// per-queue counts by state and ready jobs by priority against the indexes, a timer for
    /// exactly the delayed and leased jobs, an expiry entry for every job at the deadline its
    /// metadata gives, group holders of leased jobs, dead-letter sets, dedup entries, and the
    /// WAL's holder count of every segment against the references into it.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        self.check_queues()?;
        let mut refs = Refs::default();
        self.check_jobs(&mut refs)?;
        self.check_dedup(&mut refs)?;
        for doc in self.docs.values() {
            ensure!(doc.version <= self.doc_version, "document version past the newest handed out");
            refs.add(doc.loc);
        }
        for q in self.queues.values() {
            refs.add(q.loc);
        }
        self.check_holders(refs)
    }

    fn check_queues(&self) -> Result<(), Violation> {
        ensure!(
            self.queue_ids.len() == self.queues.len(),
            "queue names and queues differ in number"
        );
        for (name, qid) in &self.queue_ids {
            let q = self.queues.get(qid);
            ensure!(q.is_some_and(|q| q.name == *name), "queue name {name:?} maps to queue {qid}");
        }
        for (&qid, q) in &self.queues {
            ensure!(q.qid == qid && qid < self.next_qid, "queue {qid} misfiled or past next_qid");
            // The flag says the queue is on the woken list, so that it is pushed once: a flag
            // without the entry would keep long polls on this queue from ever being woken.
            let listed = self.woken.iter().filter(|&&w| w == qid).count();
            ensure!(
                listed == usize::from(q.woken),
                "queue {qid}: woken flag {} but listed {listed} times",
                q.woken
            );
        }
        Ok(())
    }

    /// One pass over the jobs: each against its own indexes, and the per-queue tallies.
    fn check_jobs(&self, refs: &mut Refs) -> Result<(), Violation> {
        let mut tallies: FxHashMap<u32, QueueTally> = FxHashMap::default();
        let (mut timers, mut acked) = (0usize, 0usize);
        let completed_order: FxHashSet<u128> = self.completed_order.iter().copied().collect();
        for (&id, job) in self.jobs.iter() {
            let m = &job.meta;
            let j = redrive_core::JobId(id);
            m.check().map_err(|e| Violation(format!("job {j}: {}", e.0)))?;
            let Some(q) = self.queues.get(&m.qid) else {
                return Err(Violation(format!(
                    "job {j} is in queue {} that does not exist",
                    m.qid
                )));
            };
            ensure!(id <= self.last_id, "job {j} is newer than the newest id handed out");
            ensure!(job.meta_loc != LOC_NONE, "job {j} has no metadata record");
            ensure!(
                (job.body_loc == LOC_NONE) == (m.state == JobState::Acked),
                "job {j} ({:?}) body kept {}",
                m.state,
                job.body_loc != LOC_NONE
            );
            ensure!(
                job.worker == u32::MAX || (job.worker as usize) < self.workers.len(),
                "job {j} names worker {} that was never interned",
                job.worker
            );
            ensure!(self.expiry.contains(&(job.expires_at, id)), "job {j} has no expiry entry");
            // A leased job past its retention waits for its lease (`Store::tick`).
            ensure!(
                m.state == JobState::Leased || job.expires_at == expiry_of(m, &q.config),
                "job {j} ({:?}) expires at {} but its metadata says {}",
                m.state,
                job.expires_at,
                expiry_of(m, &q.config)
            );
            let t = tallies.entry(m.qid).or_default();
            t.counts[m.state as usize] += 1;
            match m.state {
                JobState::Delayed | JobState::Leased => {
                    ensure!(
                        self.timers.contains(&(m.visible_at, id)),
                        "job {j} ({:?}) has no timer",
                        m.state
                    );
                    timers += 1;
                    if m.state == JobState::Leased && job.group != 0 {
                        t.groups.entry(job.group).or_default().insert((m.enqueued_at, id));
                    }
                }
                JobState::Ready => {
                    let p = m.priority as usize;
                    ensure!(
                        q.ready[p].contains(&(q.ready_since(m), id)),
                        "ready job {j} is not in its queue's ready set"
                    );
                    t.ready[p] += 1;
                }
                JobState::Acked => {
                    ensure!(
                        completed_order.contains(&id),
                        "acked job {j} is not in the completion order"
                    );
                    acked += 1;
                }
                JobState::Dead => {}
            }
            if m.dead_reason.is_some() && m.state != JobState::Acked {
                ensure!(q.dead.contains(&id), "dead letter {j} is not in its queue's dead set");
                t.dead += 1;
            }
            for loc in [job.body_loc, job.meta_loc, job.attempts_loc] {
                refs.add(loc);
            }
        }
        ensure!(
            timers == self.timers.len(),
            "{} timers for {timers} delayed or leased jobs",
            self.timers.len()
        );
        ensure!(
            self.expiry.len() == self.jobs.len(),
            "{} expiry entries for {} jobs",
            self.expiry.len(),
            self.jobs.len()
        );
        ensure!(acked == self.completed, "{acked} acked jobs counted as {}", self.completed);
        for (&qid, q) in &self.queues {
            let t = tallies.remove(&qid).unwrap_or_default();
            ensure!(
                t.counts == q.counts,
                "queue {qid}: counts {:?}, jobs {:?}",
                q.counts,
                t.counts
            );
            let ready = q.ready.each_ref().map(|r| r.len());
            ensure!(
                t.ready == ready,
                "queue {qid}: ready sets {ready:?}, ready jobs {:?}",
                t.ready
            );
            ensure!(
                t.dead == q.dead.len(),
                "queue {qid}: dead set {}, dead letters {}",
                q.dead.len(),
                t.dead
            );
            ensure!(
                t.groups == q.inflight_groups,
                "queue {qid}: groups {:?}, leased {:?}",
                q.inflight_groups,
                t.groups
            );
        }
        Ok(())
    }

    fn check_dedup(&self, refs: &mut Refs) -> Result<(), Violation> {
        for ((qid, key), d) in &self.dedup {
            ensure!(self.queues.contains_key(qid), "dedup key {key:?} of deleted queue {qid}");
            let due = (d.expires_at, *qid, key.clone());
            ensure!(self.dedup_expiry.contains(&due), "dedup key {key:?} never expires");
            ensure!(d.loc != LOC_NONE, "dedup key {key:?} holds no record");
            // Sharing its enqueue record, the job must know it is keyed (a forgotten job's
            // record would otherwise come back). Compaction may since have rewritten the key
            // alone as a `DedupKey`; then nothing of the job outlives it and it need not know.
            let shared = |j: &super::Job| j.body_loc == d.loc || j.meta_loc == d.loc;
            let job = self.jobs.get(&d.id);
            ensure!(
                job.is_none_or(|j| j.keyed || !shared(j)),
                "dedup key {key:?} shares its record with an unkeyed job"
            );
            refs.add(d.loc);
        }
        Ok(())
    }

    /// Every segment's holder count is its references from memory plus its tombstones, and
    /// nothing points into a segment that is gone.
    fn check_holders(&self, mut refs: Refs) -> Result<(), Violation> {
        for (n, live, tombstones) in self.wal.holders() {
            let held = refs.0.remove(&n).unwrap_or(0);
            ensure!(
                live == held + tombstones,
                "segment {n}: {live} holders counted, {held} references and {tombstones} tombstones"
            );
        }
        if let Some((n, held)) = refs.0.iter().next() {
            return Err(Violation(format!("{held} references into deleted segment {n}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use redrive_core::broker::NewJob;
    use redrive_core::QueuePatch;

    use crate::{Durability, MemStorage, Store};

    const NOW: u64 = 1_700_000_000_000;

    fn store_with_jobs() -> Store {
        let mut s = Store::open(Box::new(MemStorage::new()), Durability::Sync, NOW).unwrap();
        s.put_queue("q", &QueuePatch::default(), NOW).unwrap();
        let jobs = vec![NewJob { body: "b".into(), ..NewJob::default() }; 3];
        s.enqueue("q", &jobs, NOW).unwrap();
        s.commit(NOW).unwrap();
        s
    }

    #[test]
    fn a_consistent_store_passes() {
        store_with_jobs().check_invariants().unwrap();
    }

    #[test]
    fn a_drifted_count_is_reported() {
        let mut s = store_with_jobs();
        s.corrupt_for_test(|s| s.queues.values_mut().next().unwrap().counts[1] += 1);
        let v = s.check_invariants().unwrap_err();
        assert!(v.0.contains("counts"), "{v}");
    }

    #[test]
    fn a_lost_timer_is_reported() {
        let mut s = store_with_jobs();
        let id = s.jobs.iter().next().map(|(id, _)| *id).unwrap();
        s.corrupt_for_test(|s| s.timers.insert((NOW + 1, id)));
        let v = s.check_invariants().unwrap_err();
        assert!(v.0.contains("timers"), "{v}");
    }

    #[test]
    fn a_leaked_holder_is_reported() {
        let mut s = store_with_jobs();
        let loc = s.jobs.iter().next().unwrap().1.body_loc;
        s.corrupt_for_test(|s| s.wal.hold(loc, 1));
        let v = s.check_invariants().unwrap_err();
        assert!(v.0.contains("holders counted"), "{v}");
    }
}
