//! The transitions that change where a job is, shared by fail, lease expiry, release, the
//! receive-time checks (max receives, retention) and the sweeper: end a lease into a retry or a
//! death, kill a job into its dead-letter queue or park it, expire it.
//!
//! Each runs inside the caller's transaction on a row it has locked (`FOR UPDATE`), computes
//! the new state in Rust exactly as the embedded engine does (`state/jobs.rs`, `timers.rs`),
//! and writes it with one `UPDATE`.

use deadpool_postgres::GenericClient;
use redrive_core::broker::FailResult;
use redrive_core::model::{DeadReason, ErrorInfo, JobState, Outcome};
use redrive_core::{QueueConfig, Result};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{self, bump, execute, QueueRow, Total};

/// `SELECT` of the columns [`JobCore::from_row`] reads, in its order (`id` … `expires_at`,
/// then the clock), from `redrive.jobs` named `j`: the rest of the statement follows.
macro_rules! job_core_select {
    () => {
        "SELECT j.id, j.queue_id, j.state, j.failures, j.max_attempts, j.receive_count, \
         j.leased_at, j.worker_id, j.dead_reason, j.source_queue_id, j.completed_at, \
         j.visible_at, j.lease_epoch, j.enqueued_at, j.redrive_count, j.expires_at, \
         redrive.now_ms() "
    };
}
pub(crate) use job_core_select;

/// The columns of a job that transitions read, locked by the caller (see [`job_core_select`]).
#[derive(Clone, Debug)]
pub struct JobCore {
    pub id: Uuid,
    pub queue_id: i32,
    pub state: i16,
    pub failures: i32,
    pub max_attempts: Option<i32>,
    pub receive_count: i32,
    pub leased_at: Option<i64>,
    pub worker_id: Option<String>,
    pub dead_reason: Option<i16>,
    pub source_queue_id: Option<i32>,
    pub completed_at: Option<i64>,
    pub visible_at: i64,
    pub lease_epoch: i32,
    pub enqueued_at: i64,
    pub redrive_count: i32,
    pub expires_at: i64,
}

impl JobCore {
    pub fn from_row(r: &Row) -> JobCore {
        JobCore {
            id: r.get(0),
            queue_id: r.get(1),
            state: r.get(2),
            failures: r.get(3),
            max_attempts: r.get(4),
            receive_count: r.get(5),
            leased_at: r.get(6),
            worker_id: r.get(7),
            dead_reason: r.get(8),
            source_queue_id: r.get(9),
            completed_at: r.get(10),
            visible_at: r.get(11),
            lease_epoch: r.get(12),
            enqueued_at: r.get(13),
            redrive_count: r.get(14),
            expires_at: r.get(15),
        }
    }

    /// The attempt limit in force: the job's own, else its queue's (`None` = unlimited).
    fn max_attempts(&self, config: &QueueConfig) -> Option<u32> {
        match self.max_attempts {
            Some(n) => Some(n as u32),
            None => config.max_attempts,
        }
    }

    /// When the job's time in its queue ends (the engine's `expiry_of`).
    fn expiry(&self, config: &QueueConfig) -> i64 {
        let retention = db::sql_ms(config.retention_ms);
        if self.state == JobState::Acked as i16 {
            self.completed_at.unwrap_or(0) + db::sql_ms(config.completed_retention_ms)
        } else if self.dead_reason.is_some() || self.redrive_count > 0 {
            self.completed_at.unwrap_or(0) + retention
        } else {
            self.enqueued_at + retention
        }
    }
}

/// One attempt-log entry as stored (compact keys; read back by `jobs::attempts`).
pub fn attempt_entry(j: &JobCore, now: i64, outcome: Outcome, error: Option<&ErrorInfo>) -> String {
    let mut e = serde_json::json!({
        "n": j.receive_count,
        "s": j.leased_at.unwrap_or(now),
        "e": now,
        "o": outcome as u8,
    });
    if let Some(w) = &j.worker_id {
        e["w"] = w.as_str().into();
    }
    if let Some(err) = error {
        e["t"] = err.kind.as_str().into();
        e["m"] = err.message.as_str().into();
        if let Some(d) = &err.detail {
            e["d"] = d.as_str().into();
        }
    }
    e.to_string()
}

/// Writes a job's changed placement (and an optional attempt entry).
async fn write(c: &impl GenericClient, j: &JobCore, entry: Option<String>) -> Result<()> {
    // A death moves the lease epoch on: receipts from before it are stale, also for a late ack.
    // A job moved to another queue takes that queue's FIFO mark.
    const SQL: &str = "UPDATE redrive.jobs SET queue_id = $2, state = $3, visible_at = $4, \
         ordered = CASE WHEN queue_id = $2 THEN ordered ELSE redrive.is_fifo($2) END, \
         lease_epoch = CASE WHEN dead_reason IS NULL AND $6::int2 IS NOT NULL \
           THEN lease_epoch + 1 ELSE lease_epoch END, \
         failures = $5, dead_reason = $6, source_queue_id = $7, completed_at = $8, \
         expires_at = $9, attempts = CASE WHEN $10::text IS NULL THEN attempts \
         ELSE redrive.push_attempt(attempts, $10::text::jsonb) END, receive_count = $11 \
         WHERE id = $1";
    execute(
        c,
        SQL,
        &[
            &j.id,
            &j.queue_id,
            &j.state,
            &j.visible_at,
            &j.failures,
            &j.dead_reason,
            &j.source_queue_id,
            &j.completed_at,
            &j.expires_at,
            &entry,
            &j.receive_count,
        ],
    )
    .await
    .map(drop)
}

/// Kills a job: it moves to its queue's dead-letter queue as ready (failures reset, retention
/// from its death by the DLQ's), or is parked as `dead` where it is. Returns where it ended.
pub async fn kill(
    c: &impl GenericClient,
    mut j: JobCore,
    q: &QueueRow,
    reason: DeadReason,
    now: i64,
    shard: i16,
    entry: Option<String>,
) -> Result<(JobState, String)> {
    bump(c, q.id, shard, Total::DeadLettered, 1).await?;
    let dlq = match &q.config.dead_letter_queue {
        Some(name) => match db::queue_by_name(c, name).await {
            Ok(d) => Some(d),
            Err(redrive_core::Error::QueueNotFound(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    j.dead_reason = Some(reason as i16);
    j.completed_at = Some(now);
    let (state, queue) = match &dlq {
        Some(d) => {
            // Its own dead-letter queue: the job starts over, receives counted afresh too (else
            // the next receive would kill it again, and again).
            if d.id == j.queue_id {
                j.receive_count = 0;
            }
            j.source_queue_id = Some(j.source_queue_id.unwrap_or(j.queue_id));
            j.queue_id = d.id;
            j.failures = 0;
            j.state = JobState::Ready as i16;
            j.visible_at = now;
            j.expires_at = j.expiry(&d.config);
            (JobState::Ready, d.name.clone())
        }
        None => {
            j.state = JobState::Dead as i16;
            j.expires_at = j.expiry(&q.config);
            (JobState::Dead, q.name.clone())
        }
    };
    write(c, &j, entry).await?;
    if let Some(d) = &dlq {
        db::notify(c, d.id).await?;
    }
    Ok((state, queue))
}

/// Puts a job back to wait until `at` (ready at once when `at <= now`).
async fn retry_at(
    c: &impl GenericClient,
    mut j: JobCore,
    at: i64,
    now: i64,
    entry: Option<String>,
) -> Result<()> {
    j.state = if at > now { JobState::Delayed } else { JobState::Ready } as i16;
    j.visible_at = at.max(now);
    write(c, &j, entry).await?;
    db::notify(c, j.queue_id).await
}

/// Ends the current lease of a locked, leased job with `outcome`: a failure (backoff or
/// death), an expired lease (counted as a failure on queues with an attempt limit), or a
/// release (ready at once, nothing counted).
#[allow(clippy::too_many_arguments)]
pub async fn end_lease(
    c: &impl GenericClient,
    mut j: JobCore,
    outcome: Outcome,
    error: Option<ErrorInfo>,
    retry_after_ms: Option<u64>,
    non_retryable: bool,
    now: i64,
    shard: i16,
) -> Result<FailResult> {
    let q = db::queue_by_id(c, j.queue_id)
        .await?
        .ok_or_else(|| redrive_core::Error::Internal("a job's queue is missing".into()))?;
    let error = error.map(ErrorInfo::truncated);
    let entry = Some(attempt_entry(&j, now, outcome, error.as_ref()));
    let max = j.max_attempts(&q.config);
    let reason = match outcome {
        Outcome::Failed => {
            bump(c, q.id, shard, Total::Failed, 1).await?;
            j.failures += 1;
            if non_retryable {
                Some(DeadReason::NonRetryable)
            } else if max.is_some_and(|m| j.failures as u32 >= m) {
                Some(DeadReason::MaxAttempts)
            } else {
                None
            }
        }
        Outcome::LeaseExpired => {
            bump(c, q.id, shard, Total::LeaseExpired, 1).await?;
            if max.is_some() {
                j.failures += 1;
            }
            max.filter(|m| j.failures as u32 >= *m).map(|_| DeadReason::MaxAttempts)
        }
        _ => None,
    };
    if let Some(reason) = reason {
        let (state, queue) = kill(c, j, &q, reason, now, shard, entry).await?;
        return Ok(FailResult { state, queue, retry_at: None, dead_reason: Some(reason) });
    }
    let delay = match outcome {
        Outcome::Failed => match retry_after_ms {
            Some(ms) => ms,
            None => jitter(q.config.backoff.ceiling_ms(j.failures as u32)),
        },
        _ => 0,
    };
    let at = now + db::sql_ms(delay);
    retry_at(c, j, at, now, entry).await?;
    let state = if at > now { JobState::Delayed } else { JobState::Ready };
    Ok(FailResult { state, queue: q.name, retry_at: Some(db::ms(at)), dead_reason: None })
}

/// Retention ran out: to the dead-letter queue if the job is not already a dead letter and its
/// queue has one, else deleted. Counted either way.
pub async fn expire(c: &impl GenericClient, j: JobCore, now: i64, shard: i16) -> Result<()> {
    let Some(q) = db::queue_by_id(c, j.queue_id).await? else { return Ok(()) };
    bump(c, q.id, shard, Total::Expired, 1).await?;
    if j.dead_reason.is_none() && q.config.dead_letter_queue.is_some() {
        kill(c, j, &q, DeadReason::Expired, now, shard, None).await?;
        return Ok(());
    }
    execute(c, "DELETE FROM redrive.jobs WHERE id = $1", &[&j.id]).await.map(drop)
}

/// A uniform random wait in `[0, ceiling]` (full jitter). The randomness need not be strong:
/// it only spreads retries apart, so a v4 UUID's random bits serve.
fn jitter(ceiling: u64) -> u64 {
    if ceiling == 0 {
        return 0;
    }
    let r = Uuid::new_v4().as_u128() as u64;
    r % (ceiling + 1)
}
