//! Ack, fail and extend: each a compare-and-set on `(id, lease_epoch)` of a job that is leased
//! and whose lease has not ended by the database's clock. A receipt whose lease ran out is
//! stale even before any sweep has ended that lease: fencing never depends on the sweeper.

use deadpool_postgres::GenericClient;
use redrive_core::broker::{check_batch, AckResult, FailRequest, FailResult};
use redrive_core::model::{Outcome, Receipt};
use redrive_core::{limits, Error, Result};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{internal, query, query_opt, sql_ms};
use crate::transition::{self, job_core_select, JobCore};

/// Acks a batch in one statement. A receipt of the job's current lease epoch (it moves on with
/// every lease, death and redrive) completes it while leased, and also once the lease is over
/// (ran out, released, failed) as long as the job waits unleased: SQS's DeleteMessage with the
/// latest receipt handle; a job of a FIFO queue only while its lease runs, as on SQS (its group
/// may have moved on). `known` tells a stale receipt (the job exists) from an unknown one, and
/// is looked up only for receipts that completed nothing.
/// Jobs of FIFO groups wake their queue: the group's next job may now go out. The ids are the
/// only way in: `state + 0` keeps the planner off the `jobs_leased` index, whose range holds
/// every lease of the last visibility timeout (the acked ones too, until vacuum), and each read
/// of `jobs` names `id = ANY($1)`, so that even a plan made while the table was small (plans are
/// made once per connection, see `PgBroker::connect`) looks up the given ids by primary key:
/// without it, the `known` test was planned as a hash of every job id in the table, and an ack
/// cost 4–13 ms a call under load where the primary key costs 0.1 ms.
pub const ACK_SQL: &str = "WITH input AS ( \
    SELECT * FROM unnest($1::uuid[], $2::int4[]) WITH ORDINALITY AS t(id, epoch, ord)), \
  n AS (SELECT redrive.now_ms() AS now), \
  done AS ( \
    UPDATE redrive.jobs j SET state = 3, completed_at = n.now, visible_at = n.now, body = NULL, \
      attributes = NULL, expires_at = n.now + (q.config->>'completed_retention_ms')::bigint \
    FROM input i, redrive.queues q, n \
    WHERE j.id = ANY($1::uuid[]) AND j.id = i.id AND j.lease_epoch = i.epoch \
      AND j.state + 0 IN (0, 1, 2) AND j.lease_epoch > 0 AND q.id = j.queue_id \
      AND (NOT coalesce((q.config->>'fifo')::boolean, false) \
        OR (j.state + 0 = 2 AND j.visible_at > n.now)) \
    RETURNING j.id, j.queue_id, j.group_id, j.leased_at, j.receive_count), \
  wake AS (SELECT count(pg_notify('redrive_ready', queue_id::text)) AS c \
    FROM (SELECT DISTINCT queue_id FROM done WHERE group_id IS NOT NULL) g) \
  SELECT i.ord, d.id IS NOT NULL, d.id IS NOT NULL OR EXISTS (SELECT 1 FROM redrive.jobs x \
      WHERE x.id = i.id AND x.id = ANY($1::uuid[])), \
    d.queue_id, n.now - d.leased_at, d.receive_count \
  FROM input i LEFT JOIN done d ON d.id = i.id, wake, n ORDER BY i.ord";

/// A job an ack completed: its queue, how long its last lease ran, and its deliveries.
pub struct Completed {
    pub queue_id: i32,
    pub process_ms: u64,
    pub deliveries: u64,
}

pub async fn ack(
    c: &impl GenericClient,
    receipts: &[String],
    completed: &mut Vec<Completed>,
) -> Result<Vec<AckResult>> {
    let batch = AckBatch::new(receipts)?;
    let rows =
        if batch.ids.is_empty() { Vec::new() } else { query(c, ACK_SQL, &batch.params()).await? };
    Ok(batch.results(&rows, completed))
}

/// A batch of receipts to ack, parsed: `ACK_SQL`'s parameters, and where each answer goes.
pub struct AckBatch {
    ids: Vec<Uuid>,
    epochs: Vec<i32>,
    /// Per id, the receipt it came from.
    slots: Vec<usize>,
    /// A receipt repeated in the batch, and the first of its job's: it completes the job once
    /// and is stale the second time, as in the engine.
    repeats: Vec<(usize, usize)>,
    len: usize,
}

impl AckBatch {
    pub fn new(receipts: &[String]) -> Result<AckBatch> {
        check_batch(receipts.len(), limits::ACK_BATCH_COUNT_MAX)?;
        let mut b = AckBatch {
            ids: Vec::with_capacity(receipts.len()),
            epochs: Vec::with_capacity(receipts.len()),
            slots: Vec::with_capacity(receipts.len()),
            repeats: Vec::new(),
            len: receipts.len(),
        };
        for (i, r) in receipts.iter().enumerate() {
            let Ok(r) = r.parse::<Receipt>() else { continue };
            let id = Uuid::from_u128(r.id.0);
            if let Some(first) = b.ids.iter().position(|x| *x == id) {
                b.repeats.push((i, b.slots[first]));
                continue;
            }
            b.ids.push(id);
            b.epochs.push(r.epoch as i32);
            b.slots.push(i);
        }
        Ok(b)
    }

    /// `$1` and `$2` of `ACK_SQL`.
    pub fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 2] {
        [&self.ids, &self.epochs]
    }

    /// One result per receipt from what `ACK_SQL` returned; the jobs it completed go to
    /// `completed`.
    pub fn results(&self, rows: &[Row], completed: &mut Vec<Completed>) -> Vec<AckResult> {
        let mut out = vec![AckResult::Unknown; self.len];
        for r in rows {
            let slot = self.slots[r.get::<_, i64>(0) as usize - 1];
            if let Some(queue_id) = r.get::<_, Option<i32>>(3) {
                completed.push(Completed {
                    queue_id,
                    process_ms: r.get::<_, i64>(4).max(0) as u64,
                    deliveries: r.get::<_, i32>(5).max(0) as u64,
                });
            }
            out[slot] = match (r.get::<_, bool>(1), r.get::<_, bool>(2)) {
                (true, _) => AckResult::Ok,
                (false, true) => AckResult::Stale,
                (false, false) => AckResult::Unknown,
            };
        }
        for &(i, first) in &self.repeats {
            out[i] = match out[first] {
                AckResult::Unknown => AckResult::Unknown,
                _ => AckResult::Stale,
            };
        }
        out
    }
}

/// Locks the job a receipt names, inside `tx`, or says why not: malformed → invalid receipt,
/// no such job → not found, not leased by this epoch or its lease ended → stale.
async fn leased(tx: &impl GenericClient, receipt: &str) -> Result<(JobCore, i64)> {
    const SQL: &str = concat!(job_core_select!(), "FROM redrive.jobs j WHERE j.id = $1 FOR UPDATE");
    let r: Receipt = receipt.parse().map_err(|()| Error::InvalidReceipt)?;
    let row = query_opt(tx, SQL, &[&Uuid::from_u128(r.id.0)]).await?;
    let row = row.ok_or(Error::JobNotFound(r.id))?;
    let j = JobCore::from_row(&row);
    let now: i64 = row.get(16);
    if j.state != 2 || j.lease_epoch != r.epoch as i32 || j.visible_at <= now {
        return Err(Error::StaleReceipt);
    }
    Ok((j, now))
}

pub async fn fail(
    c: &mut deadpool_postgres::Client,
    req: &FailRequest,
    shard: i16,
) -> Result<FailResult> {
    let tx = c.transaction().await.map_err(internal)?;
    let (j, now) = leased(&tx, &req.receipt).await?;
    if let Some(ms) = req.retry_after_ms {
        if ms > limits::DELAY_MAX_MS {
            return Err(Error::invalid(
                "retry_after_ms",
                format!("at most {}", limits::DELAY_MAX_MS),
            ));
        }
    }
    let r = transition::end_lease(
        &tx,
        j,
        Outcome::Failed,
        Some(req.error.clone()),
        req.retry_after_ms,
        req.non_retryable,
        now,
        shard,
    )
    .await?;
    tx.commit().await.map_err(internal)?;
    Ok(r)
}

pub async fn extend(
    c: &mut deadpool_postgres::Client,
    receipt: &str,
    lease_ms: u64,
    shard: i16,
) -> Result<u64> {
    if lease_ms > limits::LEASE_DURATION_MAX_MS {
        return Err(Error::invalid(
            "lease_ms",
            format!("at most {}", limits::LEASE_DURATION_MAX_MS),
        ));
    }
    let tx = c.transaction().await.map_err(internal)?;
    let (j, now) = leased(&tx, receipt).await?;
    if lease_ms == 0 {
        transition::end_lease(&tx, j, Outcome::Released, None, None, false, now, shard).await?;
        tx.commit().await.map_err(internal)?;
        return Ok(crate::db::ms(now));
    }
    let until = now + sql_ms(lease_ms);
    const SQL: &str = "UPDATE redrive.jobs SET visible_at = $2 WHERE id = $1";
    crate::db::execute(&tx, SQL, &[&j.id, &until]).await?;
    tx.commit().await.map_err(internal)?;
    Ok(crate::db::ms(until))
}
