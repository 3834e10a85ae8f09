//! Time-driven work that no request triggers: ending expired leases, retention (to the DLQ or
//! deleted, counted), forgetting completed jobs past `completed_retention_ms`, and dropping
//! idempotency keys whose window ended.
//!
//! Every server runs it. Each step locks the rows it settles with `FOR UPDATE SKIP LOCKED` and
//! re-checks them under the lock, so two servers sweeping at once split the work instead of
//! doing it twice; a crash mid-step leaves rows as they were, for the next sweep.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use redrive_core::model::JobId;
use redrive_core::Result;
use uuid::Uuid;

use crate::db::{bump, execute, internal, query, Total};
use crate::receive;
use crate::transition::{self, job_core_select, JobCore};

/// Rows settled per transaction.
const SWEEP_BATCH: i64 = 500;

pub async fn run(pool: Pool, interval_ms: u64) {
    let mut shard: i16 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(interval_ms.max(10))).await;
        shard = (shard + 1) % crate::db::TOTALS_SHARDS as i16;
        if let Err(e) = once(&pool, shard).await {
            tracing::warn!(error = %e, "sweep failed; retrying next interval");
        }
    }
}

async fn once(pool: &Pool, shard: i16) -> Result<()> {
    let mut c = pool.get().await.map_err(crate::db::pool_error)?;
    while receive::expire_leases(&mut c, None, SWEEP_BATCH, shard).await? as i64 == SWEEP_BATCH {}
    while retention(&mut c, shard).await? as i64 == SWEEP_BATCH {}
    const DEDUP: &str = "DELETE FROM redrive.dedup WHERE ctid IN (SELECT ctid FROM redrive.dedup \
         WHERE expires_at <= redrive.now_ms() LIMIT 10000)";
    execute(&c, DEDUP, &[]).await?;
    crate::queues::delete_jobs_of_deleted_queues(&c).await
}

/// Jobs past their deadline that are not leased (a leased one waits for its lease to end),
/// queue by queue (`jobs_expiry` leads with the queue).
async fn retention(c: &mut deadpool_postgres::Client, shard: i16) -> Result<usize> {
    const SQL: &str = concat!(
        job_core_select!(),
        "FROM redrive.queues q CROSS JOIN LATERAL (SELECT * FROM redrive.jobs \
           WHERE queue_id = q.id AND state <> 2 AND expires_at <= redrive.now_ms() \
           ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) j LIMIT $1"
    );
    let tx = c.transaction().await.map_err(internal)?;
    let rows = query(&tx, SQL, &[&SWEEP_BATCH]).await?;
    let mut forgotten: HashMap<i32, i64> = HashMap::new();
    for r in &rows {
        let j = JobCore::from_row(r);
        let now: i64 = r.get(16);
        if j.state == redrive_core::JobState::Acked as i16 {
            // Not in the users' totals (it left the system when it was acked), but the
            // completed count is acked less forgotten.
            execute(&tx, "DELETE FROM redrive.jobs WHERE id = $1", &[&j.id]).await?;
            *forgotten.entry(j.queue_id).or_default() += 1;
        } else {
            transition::expire(&tx, j, now, shard).await?;
        }
    }
    for (queue, n) in forgotten {
        bump(&tx, queue, shard, Total::Forgotten, n).await?;
    }
    tx.commit().await.map_err(internal)?;
    Ok(rows.len())
}

/// Ends one job's lease if it ran out (for a status read).
pub async fn expire_lease_of(
    c: &mut deadpool_postgres::Client,
    id: JobId,
    shard: i16,
) -> Result<()> {
    const SQL: &str = concat!(
        job_core_select!(),
        "FROM redrive.jobs j WHERE j.id = $1 AND j.state = 2 \
         AND j.visible_at <= redrive.now_ms() FOR UPDATE SKIP LOCKED"
    );
    let tx = c.transaction().await.map_err(internal)?;
    if let Some(r) = query(&tx, SQL, &[&Uuid::from_u128(id.0)]).await?.first() {
        let j = JobCore::from_row(r);
        let now: i64 = r.get(16);
        let outcome = redrive_core::model::Outcome::LeaseExpired;
        transition::end_lease(&tx, j, outcome, None, None, false, now, shard).await?;
    }
    tx.commit().await.map_err(internal)
}
