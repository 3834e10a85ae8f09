//! The life of a job: enqueue, receive (lease), ack, fail, extend, and status by id.

use std::collections::BTreeMap;

use rand::Rng;
use redrive_core::broker::{
    check_batch, AckResult, DeadInfo, Delivery, Enqueued, FailRequest, FailResult, JobInfo, NewJob,
};
use redrive_core::model::{
    Attempt, DeadReason, ErrorInfo, JobId, JobState, Outcome, Priority, Receipt, GROUP_ATTRIBUTE,
};
use redrive_core::{limits, Error, Result};

use super::{Dedup, Job, Store};
use crate::wal::record::{Meta, Record, QID_NONE};
use crate::wal::LOC_NONE;

/// A validated job ready to be enqueued.
pub struct Checked<'a> {
    job: &'a NewJob,
    priority: Priority,
    visible_at: u64,
}

impl Store {
    /// Checks every job of a batch before anything is written, so a bad job rejects the batch.
    pub fn check_enqueue<'a>(
        &self,
        qid: u32,
        jobs: &'a [NewJob],
        now: u64,
    ) -> Result<Vec<Checked<'a>>> {
        check_batch(jobs.len(), limits::ENQUEUE_BATCH_COUNT_MAX)?;
        if self.jobs.len() + jobs.len() > limits::JOBS_COUNT_MAX {
            return Err(Error::LimitExceeded {
                limit: "JOBS_COUNT_MAX",
                max: limits::JOBS_COUNT_MAX as u64,
            });
        }
        let config = &self.queues[&qid].config;
        jobs.iter()
            .map(|job| {
                // The user's limit measures the plaintext of a body sealed at rest.
                let size = redrive_core::sealed::plain_len(&job.body) as u64;
                if size > config.max_message_bytes as u64 {
                    return Err(Error::MessageTooLarge {
                        size,
                        max: config.max_message_bytes.into(),
                    });
                }
                job.check_fields()?;
                let visible_at = match (job.delay_ms, job.run_at) {
                    (Some(_), Some(_)) => {
                        return Err(Error::invalid("delay_ms", "give delay_ms or run_at, not both"))
                    }
                    (Some(d), None) if d > limits::DELAY_MAX_MS => {
                        return Err(Error::invalid(
                            "delay_ms",
                            format!("at most {}", limits::DELAY_MAX_MS),
                        ))
                    }
                    (Some(d), None) => now + d,
                    (None, Some(t)) if t > now + limits::DELAY_MAX_MS => {
                        return Err(Error::invalid("run_at", "at most 365 days ahead"))
                    }
                    (None, Some(t)) => t.max(now),
                    (None, None) => now + config.delay_ms,
                };
                // A FIFO queue orders by enqueue time alone.
                let priority =
                    if config.fifo { Priority::Standard } else { job.priority.unwrap_or_default() };
                Ok(Checked { job, priority, visible_at })
            })
            .collect()
    }

    pub fn enqueue(&mut self, queue: &str, jobs: &[NewJob], now: u64) -> Result<Vec<Enqueued>> {
        self.writable()?;
        let qid = self.queue_id(queue)?;
        let checked = self.check_enqueue(qid, jobs, now)?;
        let mut out = Vec::with_capacity(checked.len());
        for c in checked {
            out.push(self.enqueue_one(qid, c, now)?);
        }
        Ok(out)
    }

    fn enqueue_one(&mut self, qid: u32, c: Checked<'_>, now: u64) -> Result<Enqueued> {
        let q = self.queues.get_mut(&qid).expect("checked");
        let key = c.job.idempotency_key.as_deref();
        if let Some(key) = key {
            if let Some(d) = self.dedup.get(&(qid, Box::from(key))) {
                if d.expires_at > now {
                    q.totals.duplicates += 1;
                    return Ok(Enqueued { id: JobId(d.id), duplicate: true });
                }
            }
        }
        let id = JobId::next_v7(now, JobId(self.last_id), self.rng.random()).0;
        self.last_id = id;
        let meta = Meta {
            version: 0,
            qid,
            state: if c.visible_at > now { JobState::Delayed } else { JobState::Ready },
            priority: c.priority,
            max_attempts: c.job.max_attempts.unwrap_or(0),
            enqueued_at: now,
            visible_at: c.visible_at,
            source_qid: QID_NONE,
            redriven_from_qid: QID_NONE,
            ..Meta::default()
        };
        let expires_at = super::expiry_of(&meta, &q.config);
        let dedup_window = q.config.dedup_window_ms;
        q.totals.enqueued += 1;
        let job = c.job;
        let grouped;
        let attributes = match &job.group {
            Some(g) => {
                let mut a = job.attributes.clone();
                a.insert(GROUP_ATTRIBUTE.to_owned(), g.clone());
                grouped = a;
                &grouped
            }
            None => &job.attributes,
        };
        let loc = self.wal.append(|e| {
            e.enqueue(id, &meta, key, job.traceparent.as_deref(), attributes, &job.body)
        })?;
        self.wal.hold(loc, 2); // body and metadata
        self.jobs.insert(
            id,
            Job {
                meta,
                worker: u32::MAX,
                body_loc: loc,
                meta_loc: loc,
                attempts_loc: LOC_NONE,
                attempts_total: 0,
                expires_at,
                keyed: key.is_some(),
                group: group_hash(job.group.as_deref()),
            },
        );
        self.index(id);
        if let (Some(key), true) = (key, dedup_window > 0) {
            let expires_at = now + dedup_window;
            let old = self.dedup.insert((qid, key.into()), Dedup { id, expires_at, loc });
            if let Some(old) = old {
                self.wal.hold(old.loc, -1);
            }
            self.wal.hold(loc, 1);
            self.dedup_expiry.insert((expires_at, qid, key.into()));
        }
        Ok(Enqueued { id: JobId(id), duplicate: false })
    }

    /// Leases up to `max` ready jobs from `qid`, best priority first (with aging). Jobs past their
    /// receive limit die instead of being delivered.
    pub fn receive_from(
        &mut self,
        qid: u32,
        max: usize,
        lease_ms: Option<u64>,
        worker: Option<&str>,
        now: u64,
        out: &mut Vec<Delivery>,
    ) -> Result<()> {
        self.writable()?;
        if self.queues[&qid].config.paused {
            return Ok(());
        }
        let worker = self.intern_worker(worker);
        // FIFO: the order of the whole batch, fixed before any of it is leased.
        let mut fifo = if self.queues[&qid].config.fifo {
            fifo_order(&self.queues[&qid], &self.jobs).into_iter()
        } else {
            Vec::new().into_iter()
        };
        while out.len() < max {
            let q = &self.queues[&qid];
            if q.counts[JobState::Leased as usize] as usize >= limits::INFLIGHT_PER_QUEUE_MAX {
                if out.is_empty() {
                    return Err(Error::LimitExceeded {
                        limit: "INFLIGHT_PER_QUEUE_MAX",
                        max: limits::INFLIGHT_PER_QUEUE_MAX as u64,
                    });
                }
                break;
            }
            let next = if q.config.fifo {
                // Skips what this receive itself killed or expired meanwhile.
                fifo.find(|id| self.jobs.get(id).is_some_and(|j| j.meta.state == JobState::Ready))
            } else {
                next_ready(q, now)
            };
            let Some(id) = next else { break };
            let (lease, max_receives) =
                (lease_ms.unwrap_or(q.config.visibility_timeout_ms), q.config.max_receive_count);
            let job = &self.jobs[&id];
            if let Some(maxr) = max_receives {
                if job.meta.receive_count >= maxr {
                    self.die(id, DeadReason::MaxReceives, now)?;
                    continue;
                }
            }
            if job.expires_at <= now {
                self.expire(id, now)?;
                continue;
            }
            let first = job.meta.first_received_at == 0;
            let waited = now.saturating_sub(job.meta.visible_at);
            self.update(id, |m, w| {
                m.state = JobState::Leased;
                m.epoch += 1;
                m.receive_count += 1;
                if first {
                    m.first_received_at = now;
                }
                m.leased_at = now;
                m.visible_at = now + lease;
                *w = worker;
            })?;
            self.metrics.latency.entry(qid).or_default().start_ms.record(waited);
            self.queues.get_mut(&qid).expect("exists").totals.delivered += 1;
            out.push(self.delivery(id)?);
        }
        Ok(())
    }

    fn delivery(&self, id: u128) -> Result<Delivery> {
        let job = &self.jobs[&id];
        let m = job.meta;
        let Record::Enqueue(mut e) = self.read_body(job)? else {
            unreachable!("read_body returns enqueue records")
        };
        let group = e.attributes.remove(GROUP_ATTRIBUTE);
        Ok(Delivery {
            id: JobId(id),
            queue: self.queue_name(m.qid),
            body: e.body,
            attributes: e.attributes,
            group,
            first_received_at: m.first_received_at,
            priority: m.priority,
            receipt: Receipt { id: JobId(id), epoch: m.epoch }.encode(),
            attempt: m.receive_count,
            enqueued_at: m.enqueued_at,
            lease_expires_at: m.visible_at,
            traceparent: e.traceparent,
            dead: self.dead_info(&m),
        })
    }

    pub(crate) fn read_body(&self, job: &Job) -> Result<Record> {
        match self.wal.read(job.body_loc) {
            Ok(r @ Record::Enqueue(_)) => Ok(r),
            Ok(_) => Err(Error::Internal("body location holds another record".into())),
            Err(e) => Err(Error::Internal(format!("reading a job body: {e}"))),
        }
    }

    pub(crate) fn dead_info(&self, m: &Meta) -> Option<DeadInfo> {
        let reason = m.dead_reason?;
        let source = if m.source_qid == QID_NONE { m.qid } else { m.source_qid };
        Some(DeadInfo { reason, source_queue: self.queue_name(source), died_at: m.completed_at })
    }

    /// Finds the job a receipt names while that lease runs, or says why not. A lease past its
    /// end is over even before the sweep that hands the job back has run.
    fn leased(&self, receipt: &str, now: u64) -> Result<u128, Error> {
        let r: Receipt = receipt.parse().map_err(|()| Error::InvalidReceipt)?;
        let job = self.jobs.get(&r.id.0).ok_or(Error::JobNotFound(r.id))?;
        let m = job.meta;
        if m.state != JobState::Leased || m.epoch != r.epoch || m.visible_at <= now {
            return Err(Error::StaleReceipt);
        }
        Ok(r.id.0)
    }

    /// The job an ack completes: the receipt is of its latest lease (the epoch moves on with
    /// every lease, death and redrive) and it is leased or waiting to be. As SQS's DeleteMessage
    /// with the latest receipt handle: a slow worker's ack after its lease ran out (or was
    /// released, failed, or revoked by a restart) completes the job unless someone received it
    /// again, so fencing stays where it matters (an older receipt is stale; a completed job
    /// never goes out again). A job of a FIFO queue is the exception, as on SQS: once its lease
    /// ran out its group may move on, so only a running lease completes it.
    fn ackable(&self, receipt: &str, now: u64) -> Result<u128, Error> {
        let r: Receipt = receipt.parse().map_err(|()| Error::InvalidReceipt)?;
        let job = self.jobs.get(&r.id.0).ok_or(Error::JobNotFound(r.id))?;
        let m = job.meta;
        let live = if self.queues.get(&m.qid).is_some_and(|q| q.config.fifo) {
            m.state == JobState::Leased && m.visible_at > now
        } else {
            matches!(m.state, JobState::Leased | JobState::Ready | JobState::Delayed)
        };
        if m.epoch == 0 || m.epoch != r.epoch || !live {
            return Err(Error::StaleReceipt);
        }
        Ok(r.id.0)
    }

    pub fn ack(&mut self, receipts: &[String], now: u64) -> Result<Vec<AckResult>> {
        self.writable()?;
        check_batch(receipts.len(), limits::ACK_BATCH_COUNT_MAX)?;
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts {
            match self.ackable(r, now) {
                Ok(id) => {
                    self.complete(id, now)?;
                    out.push(AckResult::Ok);
                }
                Err(Error::StaleReceipt) => out.push(AckResult::Stale),
                Err(_) => out.push(AckResult::Unknown),
            }
        }
        Ok(out)
    }

    fn complete(&mut self, id: u128, now: u64) -> Result<()> {
        let m = self.jobs[&id].meta;
        let qid = m.qid;
        let q = self.queues.get_mut(&qid).expect("job's queue exists");
        q.totals.acked += 1;
        let latency = self.metrics.latency.entry(qid).or_default();
        latency.completed(now.saturating_sub(m.leased_at), u64::from(m.receive_count));
        self.update(id, |m, _| {
            m.state = JobState::Acked;
            m.completed_at = now;
            m.visible_at = now;
        })?;
        self.completed_order.push_back(id);
        // The body is no longer needed; only its dedup entry (if any) may still hold the record.
        let job = self.jobs.get_mut(&id).expect("exists");
        let body = std::mem::replace(&mut job.body_loc, LOC_NONE);
        self.wal.hold(body, -1);
        Ok(())
    }

    pub fn fail(&mut self, req: &FailRequest, now: u64) -> Result<FailResult> {
        self.writable()?;
        let id = self.leased(&req.receipt, now)?;
        if let Some(ms) = req.retry_after_ms {
            if ms > limits::DELAY_MAX_MS {
                return Err(Error::invalid(
                    "retry_after_ms",
                    format!("at most {}", limits::DELAY_MAX_MS),
                ));
            }
        }
        let error = req.error.clone().truncated();
        self.end_attempt(id, Outcome::Failed, Some(error), now)?;
        let m = self.jobs[&id].meta;
        let qid = m.qid;
        let q = self.queues.get_mut(&qid).expect("exists");
        q.totals.failed += 1;
        let max_attempts = super::max_attempts_of(&m, &q.config);
        let failures = m.failures + 1;
        let backoff = q.config.backoff;
        let reason = if req.non_retryable {
            Some(DeadReason::NonRetryable)
        } else if max_attempts.is_some_and(|max| failures >= max) {
            Some(DeadReason::MaxAttempts)
        } else {
            None
        };
        // Counted in memory and logged by the one transition below: a crash between two records
        // would leave a job past its attempt limit alive in its queue, or a retry without its delay.
        self.jobs.get_mut(&id).expect("leased").meta.failures = failures;
        if let Some(reason) = reason {
            self.die(id, reason, now)?;
            let m = self.jobs[&id].meta;
            return Ok(FailResult {
                state: m.state,
                queue: self.queue_name(m.qid),
                retry_at: None,
                dead_reason: Some(reason),
            });
        }
        let delay = req
            .retry_after_ms
            .unwrap_or_else(|| self.rng.random_range(0..=backoff.ceiling_ms(failures)));
        self.retry_at(id, now + delay, now)?;
        Ok(FailResult {
            state: self.jobs[&id].meta.state,
            queue: self.queue_name(qid),
            retry_at: Some(now + delay),
            dead_reason: None,
        })
    }

    /// Puts a job back to wait until `at` (ready at once when `at <= now`).
    pub(crate) fn retry_at(&mut self, id: u128, at: u64, now: u64) -> Result<()> {
        self.update(id, |m, _| {
            m.state = if at > now { JobState::Delayed } else { JobState::Ready };
            m.visible_at = at.max(now);
        })
    }

    /// Records the end of the current lease in the attempt log.
    pub(crate) fn end_attempt(
        &mut self,
        id: u128,
        outcome: Outcome,
        error: Option<ErrorInfo>,
        now: u64,
    ) -> Result<()> {
        let job = &self.jobs[&id];
        let entry = Attempt {
            attempt: job.meta.receive_count,
            worker_id: self.worker_name(job.worker),
            started_at: job.meta.leased_at,
            ended_at: now,
            outcome,
            error,
        };
        self.log_attempt(id, entry)
    }

    /// Kills a job: it moves to its queue's dead-letter queue as ready, or is parked as `dead`.
    pub(crate) fn die(&mut self, id: u128, reason: DeadReason, now: u64) -> Result<()> {
        let m = self.jobs[&id].meta;
        let q = self.queues.get_mut(&m.qid).expect("job's queue exists");
        q.totals.dead_lettered += 1;
        let dlq = q.config.dead_letter_queue.as_ref().and_then(|d| self.queue_ids.get(d).copied());
        // Retention now counts from the death, in the queue the job ends up in (`expiry_of`).
        self.update(id, |m, _| {
            m.dead_reason = Some(reason);
            m.completed_at = now;
            // Receipts from before the death are stale, also for a late ack.
            m.epoch += 1;
            match dlq {
                Some(dlq) => {
                    if m.source_qid == QID_NONE {
                        m.source_qid = m.qid;
                    }
                    // Its own dead-letter queue: the job starts over, receives counted afresh
                    // too (else the next receive would kill it again, and again).
                    if m.qid == dlq {
                        m.receive_count = 0;
                    }
                    m.qid = dlq;
                    // The dead-letter queue's own attempt limit counts afresh; the attempt log
                    // keeps the history.
                    m.failures = 0;
                    m.state = JobState::Ready;
                    m.visible_at = now;
                }
                None => m.state = JobState::Dead,
            }
        })
    }

    pub fn extend(&mut self, receipt: &str, lease_ms: u64, now: u64) -> Result<u64> {
        self.writable()?;
        if lease_ms > limits::LEASE_DURATION_MAX_MS {
            return Err(Error::invalid(
                "lease_ms",
                format!("at most {}", limits::LEASE_DURATION_MAX_MS),
            ));
        }
        let id = self.leased(receipt, now)?;
        if lease_ms == 0 {
            self.end_attempt(id, Outcome::Released, None, now)?;
            self.retry_at(id, now, now)?;
            return Ok(now);
        }
        // Not logged: leases do not survive a restart (recovery revokes them), so the WAL only
        // needs the epoch, which the lease itself logged.
        self.unindex(id);
        self.jobs.get_mut(&id).expect("leased").meta.visible_at = now + lease_ms;
        self.index(id);
        Ok(now + lease_ms)
    }

    pub fn job_info(&self, id: JobId) -> Result<JobInfo> {
        let job = self.jobs.get(&id.0).ok_or(Error::JobNotFound(id))?;
        let m = job.meta;
        let mut attempts = self.read_attempts(job)?;
        let state = m.state;
        // The successful attempt is not logged as its own record (the ack's metadata holds it).
        // (After a late ack the attempt is logged as it ended, and then as completed.)
        let completed_late = |a: &Attempt| a.attempt == m.receive_count && a.outcome != Outcome::Ok;
        if state == JobState::Acked
            && attempts.last().is_none_or(|a| a.attempt < m.receive_count || completed_late(a))
        {
            attempts.push(Attempt {
                attempt: m.receive_count,
                worker_id: self.worker_name(job.worker),
                started_at: m.leased_at,
                ended_at: m.completed_at,
                outcome: Outcome::Ok,
                error: None,
            });
        }
        let (body, attributes, key, traceparent) = if job.body_loc != LOC_NONE {
            let Record::Enqueue(e) = self.read_body(job)? else { unreachable!() };
            (Some(e.body), e.attributes, e.idempotency_key, e.traceparent)
        } else {
            (None, BTreeMap::new(), None, None)
        };
        Ok(JobInfo {
            id,
            queue: self.queue_name(m.qid),
            state,
            priority: m.priority,
            receive_count: m.receive_count,
            failures: m.failures,
            max_attempts: self
                .queues
                .get(&m.qid)
                .and_then(|q| super::max_attempts_of(&m, &q.config)),
            enqueued_at: m.enqueued_at,
            visible_at: m.visible_at,
            first_received_at: (m.first_received_at != 0).then_some(m.first_received_at),
            completed_at: (state == JobState::Acked).then_some(m.completed_at),
            idempotency_key: key,
            dead: self.dead_info(&m),
            redrive_count: m.redrive_count,
            redriven_from: (m.redriven_from_qid != QID_NONE)
                .then(|| self.queue_name(m.redriven_from_qid)),
            body,
            attributes,
            attempts,
            traceparent,
        })
    }
}

/// The next job to deliver: the head of each priority level, with a head that has waited past
/// the aging time served as one level higher; ties go to the one ready first.
fn next_ready(q: &super::Queue, now: u64) -> Option<u128> {
    let aging = q.config.priority_aging_ms;
    let mut best: Option<(usize, u64, u128)> = None;
    for (level, set) in q.ready.iter().enumerate() {
        let Some(&(since, id)) = set.first() else { continue };
        let aged = aging.is_some_and(|a| level > 0 && now.saturating_sub(since) >= a);
        let eff = level - aged as usize;
        if best.is_none_or(|(bl, bs, _)| (eff, since) < (bl, bs)) {
            best = Some((eff, since, id));
        }
    }
    best.map(|(_, _, id)| id)
}

/// How many of a FIFO queue's first ready jobs (not held back) a receive orders. A group whose
/// first such job is further back waits for a later receive.
const FIFO_CANDIDATES: usize = 1000;

/// The ready jobs of a FIFO queue in the order a receive hands them out, as SQS does: by group,
/// as many of one group as the batch takes before the next; groups in the order they became
/// ready (a group whose job came back from a lease goes after the groups that kept waiting);
/// within a group by enqueue order, leaving out the jobs behind a leased one. Priorities do
/// not reorder a FIFO queue.
fn fifo_order(q: &super::Queue, jobs: &super::table::JobTable) -> Vec<u128> {
    let free = |place: &&(u64, u128)| !q.held_back(jobs[&place.1].group, **place);
    let mut first: Vec<(u64, u128)> = q
        .ready
        .iter()
        .flat_map(|set| set.iter().filter(free).take(FIFO_CANDIDATES))
        .copied()
        .collect();
    first.sort_unstable();
    first.truncate(FIFO_CANDIDATES);
    // Each group's head: its first job that is not held back, by visible time (then place).
    type Head = (u64, (u64, u128));
    let mut heads: rustc_hash::FxHashMap<u64, Head> = rustc_hash::FxHashMap::default();
    let mut order: Vec<(Head, (u64, u128))> = Vec::with_capacity(first.len());
    for place in first {
        let job = &jobs[&place.1];
        let own = (job.meta.visible_at, place);
        let head = match job.group {
            0 => own,
            g => *heads.entry(g).or_insert(own),
        };
        order.push((head, place));
    }
    order.sort_unstable();
    order.into_iter().map(|(_, (_, id))| id).collect()
}

/// A job's ordering group as the in-memory key (0 = none). A collision only makes two groups
/// wait for each other, never breaks an order.
pub(crate) fn group_hash(group: Option<&str>) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    group.map_or(0, |g| BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(g).max(1))
}
