//! Dead letters: listing them with filters, redriving them, and purging queues.

use redrive_core::broker::{
    DeadFilter, DocKind, JobFilter, JobInfo, JobPage, RedriveRequest, RedriveResult, SkipReason,
    Skipped,
};
use redrive_core::model::{signature, JobId, JobState};
use redrive_core::{limits, Error, Result};

use super::Store;
use crate::wal::record::QID_NONE;

impl Store {
    fn dead_matches(&self, id: u128, f: &DeadFilter) -> Result<bool> {
        let job = &self.jobs[&id];
        let m = job.meta;
        if f.since.is_some_and(|t| m.completed_at < t)
            || f.until.is_some_and(|t| m.completed_at > t)
        {
            return Ok(false);
        }
        if let Some(src) = &f.source_queue {
            let source = if m.source_qid == QID_NONE { m.qid } else { m.source_qid };
            if self.queue_name(source) != *src {
                return Ok(false);
            }
        }
        if f.error_type.is_none() && f.signature.is_none() {
            return Ok(true);
        }
        let attempts = self.read_attempts(job)?;
        let last = attempts.iter().rev().find_map(|a| a.error.as_ref());
        let Some(err) = last else { return Ok(false) };
        if f.error_type.as_ref().is_some_and(|t| *t != err.kind) {
            return Ok(false);
        }
        Ok(f.signature.as_ref().is_none_or(|s| *s == signature(&err.kind, &err.message)))
    }

    /// Dead jobs in `queue` (moved here as a dead-letter queue, or parked here), oldest first.
    pub fn list_dead(
        &self,
        queue: &str,
        f: &DeadFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        let q = &self.queues[&self.queue_id(queue)?];
        let limit = limit.clamp(1, limits::DEAD_PAGE_COUNT_MAX);
        let start = after.map_or(0, |a| a.0.saturating_add(1));
        let mut jobs: Vec<JobInfo> = Vec::new();
        let mut next = None;
        for &id in q.dead.range(start..) {
            if !self.dead_matches(id, f)? {
                continue;
            }
            if jobs.len() == limit {
                next = jobs.last().map(|j| j.id);
                break;
            }
            jobs.push(self.job_info(JobId(id))?);
        }
        Ok(JobPage { jobs, next })
    }

    /// Jobs of `queue` matching `f`, in id order: one pass over the job table for the ids after
    /// `after` whose metadata matches, sorted; then the error type (read from the log) is
    /// checked in order until a page and one more are found (the extra one says a next page
    /// exists). The pass costs the whole table: see docs/design.md's limits.
    pub fn list_jobs(
        &self,
        queue: &str,
        f: &JobFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        let qid = self.queue_id(queue)?;
        let limit = limit.clamp(1, limits::DEAD_PAGE_COUNT_MAX);
        let start = after.map_or(0, |a| a.0.saturating_add(1));
        let mut ids: Vec<u128> = self
            .jobs
            .iter()
            .filter(|(&id, j)| {
                let m = &j.meta;
                id >= start && m.qid == qid && f.meta_matches(m.state, m.priority, m.enqueued_at)
            })
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let mut jobs = Vec::new();
        let mut next = None;
        for id in ids {
            if f.error_type.is_some() && !f.error_matches(&self.read_attempts(&self.jobs[&id])?) {
                continue;
            }
            if jobs.len() == limit {
                next = jobs.last().map(|j: &JobInfo| j.id);
                break;
            }
            jobs.push(self.job_info(JobId(id))?);
        }
        Ok(JobPage { jobs, next })
    }

    /// Moves dead jobs back to their source queue (or `to`), resetting failures and receive count
    /// and keeping their attempt log and lineage.
    pub fn redrive(
        &mut self,
        queue: &str,
        req: &RedriveRequest,
        now: u64,
    ) -> Result<RedriveResult> {
        if !req.dry_run {
            self.writable()?;
        }
        req.check()?;
        let qid = self.queue_id(queue)?;
        let to = req.to.as_deref().map(|t| self.queue_id(t)).transpose()?;
        let filter = req.filter.clone().unwrap_or_default();
        let mut picked = Vec::new();
        let mut skipped = Vec::new();
        match &req.ids {
            Some(ids) => {
                // An id named twice is one job: it moves once and is counted once.
                let mut named = std::collections::HashSet::with_capacity(ids.len());
                for id in ids {
                    if !named.insert(id.0) {
                        continue;
                    }
                    if !self.queues[&qid].dead.contains(&id.0) {
                        skipped.push(Skipped { id: *id, reason: SkipReason::NotDead });
                        continue;
                    }
                    picked.push(id.0);
                }
            }
            None => {
                for &id in &self.queues[&qid].dead {
                    if picked.len() == limits::REDRIVE_COUNT_MAX {
                        break;
                    }
                    if self.dead_matches(id, &filter)? {
                        picked.push(id);
                    }
                }
            }
        }
        // Leased dead letters (a consumer of the dead-letter queue holds them) are left alone.
        picked.retain(|&id| {
            let leased = self.jobs[&id].meta.state == JobState::Leased;
            if leased {
                skipped.push(Skipped { id: JobId(id), reason: SkipReason::Leased });
            }
            !leased
        });
        for &id in &picked {
            let m = self.jobs[&id].meta;
            let target = match to {
                Some(t) => t,
                None if m.source_qid != QID_NONE => m.source_qid,
                None => m.qid,
            };
            if !self.queues.contains_key(&target) {
                return Err(Error::QueueNotFound(self.queue_name(target)));
            }
        }
        if !req.dry_run {
            for &id in &picked {
                self.redrive_one(id, qid, to, req.delay_ms.unwrap_or(0), now)?;
            }
        }
        Ok(RedriveResult {
            moved: picked.len() as u64,
            dry_run: req.dry_run,
            ids: picked.into_iter().map(JobId).collect(),
            skipped,
        })
    }

    fn redrive_one(
        &mut self,
        id: u128,
        from: u32,
        to: Option<u32>,
        delay: u64,
        now: u64,
    ) -> Result<()> {
        let m = self.jobs[&id].meta;
        let target = to.unwrap_or(if m.source_qid != QID_NONE { m.source_qid } else { m.qid });
        let tq = self.queues.get_mut(&target).expect("checked");
        tq.totals.redriven += 1;
        self.update(id, |m, _| {
            m.qid = target;
            m.state = if delay > 0 { JobState::Delayed } else { JobState::Ready };
            m.visible_at = now + delay;
            m.dead_reason = None;
            m.source_qid = QID_NONE;
            m.failures = 0;
            m.receive_count = 0;
            m.redrive_count += 1;
            m.redriven_from_qid = from;
            // Receipts from before the redrive stay stale, also for a late ack.
            m.epoch += 1;
            // Retention restarts at the redrive (`expiry_of`).
            m.completed_at = now;
        })
    }

    /// Deletes one job that is not leased (a dead letter a person or the triage agent replaced,
    /// say). Counted as purged in its queue.
    pub fn delete_job(&mut self, id: JobId) -> Result<()> {
        self.writable()?;
        let job = self.jobs.get(&id.0).ok_or(Error::JobNotFound(id))?;
        match job.meta.state {
            JobState::Leased => {
                return Err(Error::invalid(
                    "id",
                    "the job is leased; delete it after its lease ends",
                ))
            }
            JobState::Acked => return Err(Error::JobNotFound(id)),
            _ => {}
        }
        let qid = job.meta.qid;
        self.remove_job(id.0)?;
        if let Some(q) = self.queues.get_mut(&qid) {
            q.totals.purged += 1;
        }
        Ok(())
    }

    /// SQS's PurgeQueue: deletes every job of a queue that waits or runs (a receipt of a
    /// purged lease then names no job) and forgets the queue's idempotency keys; returns how many jobs.
    /// Parked dead jobs stay for triage.
    pub fn purge(&mut self, queue: &str) -> Result<u64> {
        self.writable()?;
        let qid = self.queue_id(queue)?;
        let ids: Vec<u128> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.meta.qid == qid
                    && matches!(
                        j.meta.state,
                        JobState::Ready | JobState::Delayed | JobState::Leased
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        for &id in &ids {
            self.remove_job(id)?;
        }
        let n = ids.len() as u64;
        self.queues.get_mut(&qid).expect("exists").totals.purged += n;
        self.clear_dedup(qid);
        // Recovery would find the keys again in the log: this tells it to forget the keys of
        // jobs up to the newest id handed out (ids only grow, also across restarts).
        self.put_doc(DocKind::DedupCleared, queue, Some(&self.last_id.to_string()))?;
        Ok(n)
    }
}
