//! Dead letters: listing them with filters and pages, redriving them with lineage, purging a
//! queue and deleting one job.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use redrive_core::broker::{
    DeadFilter, JobInfo, JobPage, RedriveRequest, RedriveResult, SkipReason, Skipped,
};
use redrive_core::model::{signature, JobId, JobState};
use redrive_core::{limits, Error, Result};
use uuid::Uuid;

use crate::db::{self, bump, execute, query, query_one, sql_ms, QueueRow, Total};
use crate::jobs::{self, info_select};

/// Dead letters of a queue after `$3`, oldest first, filtered by death time and source queue
/// in SQL (`$4`..`$6`); error filters need the attempt log and are applied by the caller.
const DEAD_SQL: &str = concat!(
    info_select!(),
    "WHERE j.queue_id = $2 AND j.dead_reason IS NOT NULL AND j.state <> 3 AND j.id > $3 \
     AND ($4::int8 IS NULL OR j.completed_at >= $4) AND ($5::int8 IS NULL OR j.completed_at <= $5) \
     AND ($6::text IS NULL OR coalesce(src.name, CASE WHEN j.source_queue_id IS NULL THEN q.name \
          ELSE '<deleted>' END) = $6) \
     ORDER BY j.id LIMIT $7"
);

/// Rows read per round while filtering by error.
const DEAD_SCAN_ROWS: i64 = 1000;

fn error_matches(job: &JobInfo, f: &DeadFilter) -> bool {
    if f.error_type.is_none() && f.signature.is_none() {
        return true;
    }
    let Some(err) = job.attempts.iter().rev().find_map(|a| a.error.as_ref()) else { return false };
    if f.error_type.as_ref().is_some_and(|t| *t != err.kind) {
        return false;
    }
    f.signature.as_ref().is_none_or(|s| *s == signature(&err.kind, &err.message))
}

/// Up to `want` matching dead letters after `after`, and whether more follow.
async fn scan(
    c: &impl GenericClient,
    q: &QueueRow,
    f: &DeadFilter,
    after: Option<JobId>,
    want: usize,
    now: i64,
) -> Result<(Vec<JobInfo>, bool)> {
    let mut cursor = Uuid::from_u128(after.map_or(0, |a| a.0));
    let (since, until) = (f.since.map(sql_ms), f.until.map(sql_ms));
    let mut out = Vec::new();
    loop {
        let rows = query(
            c,
            DEAD_SQL,
            &[&now, &q.id, &cursor, &since, &until, &f.source_queue, &DEAD_SCAN_ROWS],
        )
        .await?;
        for r in &rows {
            let job = jobs::info(r)?;
            cursor = r.get(0);
            if error_matches(&job, f) {
                if out.len() == want {
                    return Ok((out, true));
                }
                out.push(job);
            }
        }
        if (rows.len() as i64) < DEAD_SCAN_ROWS {
            return Ok((out, false));
        }
    }
}

pub async fn list(
    c: &impl GenericClient,
    q: &QueueRow,
    f: &DeadFilter,
    after: Option<JobId>,
    limit: usize,
    now: i64,
) -> Result<JobPage> {
    let limit = limit.clamp(1, limits::DEAD_PAGE_COUNT_MAX);
    let (jobs, more) = scan(c, q, f, after, limit, now).await?;
    let next = if more { jobs.last().map(|j| j.id) } else { None };
    Ok(JobPage { jobs, next })
}

pub async fn redrive(
    c: &impl GenericClient,
    q: &QueueRow,
    req: &RedriveRequest,
    now: i64,
    shard: i16,
) -> Result<RedriveResult> {
    req.check()?;
    let to = match &req.to {
        Some(t) => Some(db::queue_by_name(c, t).await?),
        None => None,
    };
    // (id, state, source queue id) of each picked dead letter, locked.
    let mut picked: Vec<(Uuid, i16, Option<i32>)> = Vec::new();
    let mut skipped = Vec::new();
    const LOCK: &str = "SELECT id, state, source_queue_id FROM redrive.jobs WHERE id = ANY($1) \
         AND queue_id = $2 AND dead_reason IS NOT NULL AND state <> 3 ORDER BY id FOR UPDATE";
    match &req.ids {
        Some(ids) => {
            // An id named twice is one job: it moves once and is counted once.
            let mut seen = HashSet::with_capacity(ids.len());
            let named: Vec<Uuid> =
                ids.iter().filter(|i| seen.insert(i.0)).map(|i| Uuid::from_u128(i.0)).collect();
            let rows = query(c, LOCK, &[&named, &q.id]).await?;
            let found: HashMap<Uuid, (i16, Option<i32>)> =
                rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
            for id in named {
                let Some(&(state, src)) = found.get(&id) else {
                    let id = JobId(id.as_u128());
                    skipped.push(Skipped { id, reason: SkipReason::NotDead });
                    continue;
                };
                picked.push((id, state, src));
            }
        }
        None => {
            let f = req.filter.clone().unwrap_or_default();
            let (jobs, _) = scan(c, q, &f, None, limits::REDRIVE_COUNT_MAX, now).await?;
            let ids: Vec<Uuid> = jobs.iter().map(|j| Uuid::from_u128(j.id.0)).collect();
            for r in query(c, LOCK, &[&ids, &q.id]).await? {
                picked.push((r.get(0), r.get(1), r.get(2)));
            }
        }
    }
    // Leased dead letters (a consumer of the dead-letter queue holds them) are left alone.
    picked.retain(|(id, state, _)| {
        let leased = *state == JobState::Leased as i16;
        if leased {
            skipped.push(Skipped { id: JobId(id.as_u128()), reason: SkipReason::Leased });
        }
        !leased
    });
    let mut targets: HashMap<i32, (QueueRow, Vec<Uuid>)> = HashMap::new();
    for (id, _, src) in &picked {
        let target = match (&to, src) {
            (Some(t), _) => t.id,
            (None, Some(s)) => *s,
            (None, None) => q.id,
        };
        if let std::collections::hash_map::Entry::Vacant(e) = targets.entry(target) {
            let row = db::queue_by_id(c, target)
                .await?
                .ok_or_else(|| Error::QueueNotFound("<deleted>".into()))?;
            e.insert((row, Vec::new()));
        }
        targets.get_mut(&target).expect("inserted").1.push(*id);
    }
    if !req.dry_run {
        let delay = sql_ms(req.delay_ms.unwrap_or(0));
        const MOVE: &str = "UPDATE redrive.jobs SET queue_id = $2, \
             state = CASE WHEN $3::int8 > 0 THEN 0 ELSE 1 END, visible_at = $4::int8 + $3::int8, dead_reason = NULL, \
             source_queue_id = NULL, failures = 0, receive_count = 0, \
             redrive_count = redrive_count + 1, redriven_from_queue_id = $5, completed_at = $4, \
             lease_epoch = lease_epoch + 1, ordered = $7, \
             expires_at = $4 + $6 WHERE id = ANY($1)";
        for (tid, (t, ids)) in &targets {
            let retention = sql_ms(t.config.retention_ms);
            let fifo = &t.config.fifo;
            execute(c, MOVE, &[ids, tid, &delay, &now, &q.id, &retention, fifo]).await?;
            bump(c, *tid, shard, Total::Redriven, ids.len() as i64).await?;
            db::notify(c, *tid).await?;
        }
    }
    Ok(RedriveResult {
        moved: picked.len() as u64,
        dry_run: req.dry_run,
        ids: picked.into_iter().map(|(id, _, _)| JobId(id.as_u128())).collect(),
        skipped,
    })
}

/// SQS's PurgeQueue: deletes every job of a queue that waits or runs (a receipt of a purged
/// lease then names no job) and forgets the queue's idempotency keys; returns how many jobs. Parked dead
/// jobs stay for triage.
pub async fn purge(c: &impl GenericClient, q: &QueueRow, shard: i16) -> Result<u64> {
    const SQL: &str = "WITH d AS (DELETE FROM redrive.jobs WHERE queue_id = $1 \
         AND state IN (0, 1, 2) AND id IN ( \
           SELECT id FROM redrive.jobs WHERE queue_id = $1 AND state IN (0, 1) UNION ALL \
           SELECT id FROM redrive.jobs WHERE queue_id = $1 AND state = 2) RETURNING 1), \
       k AS (DELETE FROM redrive.dedup WHERE queue_id = $1) SELECT count(*) FROM d";
    let n: i64 = query_one(c, SQL, &[&q.id]).await?.get(0);
    bump(c, q.id, shard, Total::Purged, n).await?;
    Ok(n as u64)
}

/// Deletes one job that is not leased; counted as purged in its queue.
pub async fn delete_job(c: &impl GenericClient, id: JobId, shard: i16) -> Result<()> {
    const SQL: &str = "SELECT state, queue_id, visible_at > redrive.now_ms() FROM redrive.jobs \
         WHERE id = $1 FOR UPDATE";
    let uuid = Uuid::from_u128(id.0);
    let row = db::query_opt(c, SQL, &[&uuid]).await?.ok_or(Error::JobNotFound(id))?;
    let (state, queue_id, lease_live): (i16, i32, bool) = (row.get(0), row.get(1), row.get(2));
    if state == JobState::Leased as i16 && lease_live {
        return Err(Error::invalid("id", "the job is leased; delete it after its lease ends"));
    }
    if state == JobState::Acked as i16 {
        return Err(Error::JobNotFound(id));
    }
    execute(c, "DELETE FROM redrive.jobs WHERE id = $1", &[&uuid]).await?;
    bump(c, queue_id, shard, Total::Purged, 1).await
}
