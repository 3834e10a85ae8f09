//! Enqueue: a whole batch in one statement — idempotency keys claimed in `redrive.dedup`, the
//! jobs inserted from arrays (`unnest`) — so a batch is one round trip and one commit, all or
//! nothing (the caller counts the totals, see `totals`). The queue's long polls are woken after the commit (see
//! `waiters::Wakes`).

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use redrive_core::broker::{check_batch, Enqueued, NewJob};
use redrive_core::model::{JobId, Priority};
use redrive_core::{limits, Error, Result};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::db::{self, sql_ms, QueueRow};

/// Keys claimed (new, or whose window ended) in `d`; jobs inserted for them and for unkeyed
/// jobs in `ins`. For a key whose window is still open, the existing job id is read from the
/// statement's snapshot. `$13` is the dedup window (0 = off), `$14` the retention, `$15`
/// whether the queue is FIFO (the `ordered` mark of its jobs, see schema migration 8).
const SQL: &str = "WITH n AS (SELECT redrive.now_ms() AS now), \
input AS ( \
  SELECT u.*, n.now, CASE WHEN u.run_at IS NOT NULL THEN greatest(u.run_at, n.now) \
         ELSE n.now + coalesce(u.delay, $3) END AS vis \
  FROM unnest($2::uuid[], $4::text[], $5::int2[], $6::int8[], $7::int8[], $8::text[], \
              $9::text[], $10::text[], $11::text[], $12::int4[]) WITH ORDINALITY \
       AS u(id, key, priority, delay, run_at, body, attrs, traceparent, grp, max_attempts, ord), n \
  WHERE EXISTS (SELECT 1 FROM redrive.queues WHERE id = $1)), \
d AS ( \
  INSERT INTO redrive.dedup AS x (queue_id, key, job_id, expires_at) \
  SELECT $1, key, id, now + $13 FROM input WHERE key IS NOT NULL AND $13 > 0 \
  ON CONFLICT (queue_id, key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at \
    WHERE x.expires_at <= redrive.now_ms() \
  RETURNING key), \
ins AS ( \
  INSERT INTO redrive.jobs (id, queue_id, state, priority, body, attributes, idempotency_key, \
      group_id, traceparent, max_attempts, enqueued_at, visible_at, expires_at, ordered) \
  SELECT id, $1, CASE WHEN vis > now THEN 0 ELSE 1 END, priority, body, attrs::jsonb, key, grp, \
      traceparent, max_attempts, now, vis, now + $14, $15 \
  FROM input WHERE key IS NULL OR $13 = 0 OR key IN (SELECT key FROM d) \
  RETURNING id) \
SELECT i.ord, (ins.id IS NOT NULL), dd.job_id \
FROM input i LEFT JOIN ins ON ins.id = i.id \
  LEFT JOIN redrive.dedup dd ON dd.queue_id = $1 AND dd.key = i.key \
ORDER BY i.ord";

/// Checks a batch whole before anything is written, as the engine does.
fn check(q: &QueueRow, jobs: &[NewJob], now: u64) -> Result<()> {
    check_batch(jobs.len(), limits::ENQUEUE_BATCH_COUNT_MAX)?;
    for job in jobs {
        // The user's limit measures the plaintext of a body sealed at rest.
        let size = redrive_core::sealed::plain_len(&job.body) as u64;
        let max = u64::from(q.config.max_message_bytes);
        if size > max {
            return Err(Error::MessageTooLarge { size, max });
        }
        job.check_fields()?;
        match (job.delay_ms, job.run_at) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("delay_ms", "give delay_ms or run_at, not both"))
            }
            (Some(d), None) if d > limits::DELAY_MAX_MS => {
                return Err(Error::invalid("delay_ms", format!("at most {}", limits::DELAY_MAX_MS)))
            }
            (None, Some(t)) if t > now + limits::DELAY_MAX_MS => {
                return Err(Error::invalid("run_at", "at most 365 days ahead"))
            }
            _ => {}
        }
    }
    Ok(())
}

pub async fn enqueue(
    c: &impl GenericClient,
    q: &QueueRow,
    jobs: &[NewJob],
    clock_ms: u64,
) -> Result<Vec<Enqueued>> {
    check(q, jobs, clock_ms)?;
    // A key named again within the batch is a duplicate of its first job: only the first goes
    // to the database (ON CONFLICT may not touch one row twice in a statement).
    let window = q.config.dedup_window_ms;
    let mut first_of_key: HashMap<&str, usize> = HashMap::new();
    let mut repeat_of: Vec<Option<usize>> = vec![None; jobs.len()];
    let mut rows: Vec<usize> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        if let (Some(k), true) = (job.idempotency_key.as_deref(), window > 0) {
            if let Some(&f) = first_of_key.get(k) {
                repeat_of[i] = Some(f);
                continue;
            }
            first_of_key.insert(k, i);
        }
        rows.push(i);
    }
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let pick = |f: &dyn Fn(&NewJob) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(|&i| f(&jobs[i])).collect()
    };
    let keys = pick(&|j| j.idempotency_key.clone());
    let bodies: Vec<String> = rows.iter().map(|&i| jobs[i].body.clone()).collect();
    let attrs: Vec<String> = rows
        .iter()
        .map(|&i| serde_json::to_string(&jobs[i].attributes).expect("attributes serialize"))
        .collect();
    let traceparents = pick(&|j| j.traceparent.clone());
    let groups = pick(&|j| j.group.clone());
    // A FIFO queue orders by enqueue time alone.
    let priorities: Vec<i16> = rows
        .iter()
        .map(|&i| if q.config.fifo { Priority::Standard } else { jobs[i].priority.unwrap_or_default() } as i16)
        .collect();
    let delays: Vec<Option<i64>> = rows.iter().map(|&i| jobs[i].delay_ms.map(sql_ms)).collect();
    let run_ats: Vec<Option<i64>> = rows.iter().map(|&i| jobs[i].run_at.map(sql_ms)).collect();
    let max_attempts: Vec<Option<i32>> =
        rows.iter().map(|&i| jobs[i].max_attempts.map(|n| n as i32)).collect();
    let (delay, window_ms, retention) =
        (sql_ms(q.config.delay_ms), sql_ms(window), sql_ms(q.config.retention_ms));
    let st = c.prepare_cached(SQL).await.map_err(db::internal)?;
    let result = c
        .query(
            &st,
            &[
                &q.id,
                &ids,
                &delay,
                &keys,
                &priorities,
                &delays,
                &run_ats,
                &bodies,
                &attrs,
                &traceparents,
                &groups,
                &max_attempts,
                &window_ms,
                &retention,
                &q.config.fifo,
            ],
        )
        .await
        .map_err(|e| match e.code() {
            // The queue was deleted while this statement claimed a key (`dedup`'s foreign key).
            Some(&SqlState::FOREIGN_KEY_VIOLATION) => Error::QueueNotFound(q.name.clone()),
            _ => db::internal(e),
        })?;
    // No row at all: the queue was deleted since its row was read (see `queue_cache`). A
    // deletion that commits while this statement runs is the sweep's to clean up.
    if result.is_empty() {
        return Err(Error::QueueNotFound(q.name.clone()));
    }
    let mut out: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    for r in &result {
        let slot = rows[r.get::<_, i64>(0) as usize - 1];
        let inserted: bool = r.get(1);
        out[slot] = Some(if inserted {
            Enqueued { id: JobId(ids[r.get::<_, i64>(0) as usize - 1].as_u128()), duplicate: false }
        } else {
            // `None`: a key claimed by a concurrent enqueue after this statement's snapshot;
            // its job id is read below, once that enqueue is visible.
            let existing: Option<Uuid> = r.get(2);
            Enqueued { id: JobId(existing.map_or(0, |u| u.as_u128())), duplicate: true }
        });
    }
    for (slot, e) in out.iter_mut().enumerate() {
        if let Some(e) = e.as_mut().filter(|e| e.duplicate && e.id.0 == 0) {
            const LOOKUP: &str =
                "SELECT job_id FROM redrive.dedup WHERE queue_id = $1 AND key = $2";
            let key = jobs[slot].idempotency_key.as_deref().expect("duplicates are keyed");
            let r = db::query_opt(c, LOOKUP, &[&q.id, &key]).await?;
            let id: Uuid = r.map(|r| r.get(0)).ok_or_else(|| {
                Error::Internal("an idempotency key's job vanished while enqueueing".into())
            })?;
            e.id = JobId(id.as_u128());
        }
    }
    for (i, f) in repeat_of.iter().enumerate() {
        if let Some(f) = f {
            let first = out[*f].as_ref().expect("first occurrence answered").id;
            out[i] = Some(Enqueued { id: first, duplicate: true });
        }
    }
    out.into_iter()
        .map(|e| e.ok_or_else(|| Error::Internal("enqueue lost a job's answer".into())))
        .collect()
}
