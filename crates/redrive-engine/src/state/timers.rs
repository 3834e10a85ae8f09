//! Time-driven transitions: delayed jobs becoming ready, leases ending, retention, forgetting
//! completed jobs, and dedup entries ending. The engine calls [`Store::tick`] once per batch.

use redrive_core::model::{DeadReason, JobState, Outcome};
use redrive_core::{limits, Result};

use super::Store;

impl Store {
    /// Applies every transition due at `now`.
    pub fn tick(&mut self, now: u64) -> Result<()> {
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            match self.jobs[&id].meta.state {
                // Not logged: replay sees the same deadline and the first tick after it repeats this.
                JobState::Delayed => {
                    self.unindex(id);
                    self.jobs.get_mut(&id).expect("timer job exists").meta.state = JobState::Ready;
                    self.index(id);
                }
                JobState::Leased => self.lease_expired(id, now)?,
                s => unreachable!("job in state {s:?} has a timer"),
            }
        }
        while let Some(&(t, id)) = self.expiry.first() {
            if t > now {
                break;
            }
            match self.jobs[&id].meta.state {
                JobState::Acked => self.forget_job(id)?,
                JobState::Leased => {
                    // Retention waits for the lease to end; look again then.
                    self.unindex(id);
                    let job = self.jobs.get_mut(&id).expect("exists");
                    job.expires_at = job.meta.visible_at + 1;
                    self.index(id);
                }
                _ => self.expire(id, now)?,
            }
        }
        while self.completed > limits::COMPLETED_JOBS_MAX {
            let Some(id) = self.completed_order.pop_front() else { break };
            if self.jobs.get(&id).is_some_and(|j| j.meta.state == JobState::Acked) {
                self.forget_job(id)?;
                self.metrics.completed_evicted += 1;
            }
        }
        while let Some(&front) = self.completed_order.front() {
            if self.jobs.get(&front).is_some_and(|j| j.meta.state == JobState::Acked) {
                break;
            }
            self.completed_order.pop_front();
        }
        while let Some((t, qid, key)) = self.dedup_expiry.first().cloned() {
            if t > now {
                break;
            }
            self.dedup_expiry.pop_first();
            let k = (qid, key);
            if self.dedup.get(&k).is_some_and(|d| d.expires_at == t) {
                let d = self.dedup.remove(&k).expect("present");
                self.wal.hold(d.loc, -1);
            }
        }
        if now / 1000 != self.rate_second {
            self.rate_second = now / 1000;
            for q in self.queues.values_mut() {
                q.sample_rates(now);
            }
        }
        Ok(())
    }

    /// The earliest deadline the engine must wake up for.
    pub fn next_deadline(&self) -> Option<u64> {
        let a = self.timers.first().map(|t| t.0);
        let b = self.expiry.first().map(|t| t.0);
        let c = self.dedup_expiry.first().map(|t| t.0);
        [a, b, c].into_iter().flatten().min()
    }

    fn lease_expired(&mut self, id: u128, now: u64) -> Result<()> {
        self.end_attempt(id, Outcome::LeaseExpired, None, now)?;
        let m = self.jobs[&id].meta;
        let q = self.queues.get_mut(&m.qid).expect("job's queue exists");
        q.totals.lease_expired += 1;
        let max = super::max_attempts_of(&m, &q.config);
        let failures = m.failures + 1;
        if max.is_some() {
            // Logged with the transition below, in one record (see `Store::fail`).
            self.jobs.get_mut(&id).expect("leased").meta.failures = failures;
        }
        if max.is_some_and(|max| failures >= max) {
            return self.die(id, DeadReason::MaxAttempts, now);
        }
        // Visible again at once, as on SQS: the lease was the backoff.
        self.retry_at(id, now, now)
    }

    /// Retention ran out: to the dead-letter queue if there is one (and the job is not already a
    /// dead letter), else deleted. Counted either way.
    pub(crate) fn expire(&mut self, id: u128, now: u64) -> Result<()> {
        let m = self.jobs[&id].meta;
        let q = self.queues.get_mut(&m.qid).expect("job's queue exists");
        q.totals.expired += 1;
        if m.dead_reason.is_none() && q.config.dead_letter_queue.is_some() {
            return self.die(id, DeadReason::Expired, now);
        }
        self.remove_job(id)
    }
}
