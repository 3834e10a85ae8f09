//! Reading jobs back: status by id (`JobInfo`) and the attempt log as stored.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use redrive_core::broker::{DeadInfo, JobFilter, JobInfo, JobPage};
use redrive_core::model::{
    Attempt, DeadReason, ErrorInfo, JobId, JobState, Outcome, Priority, GROUP_ATTRIBUTE,
};
use redrive_core::{limits, Error, Result};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{ms, opt_ms, query, sql_ms};

/// Everything `JobInfo` needs, with queue names joined in. `$1` is the clock (ms): a delayed
/// job whose time has come reads as ready. A macro so that callers can `concat!` their filter.
macro_rules! info_select {
    () => {
        "SELECT j.id, q.name, \
           CASE WHEN j.state = 0 AND j.visible_at <= $1 THEN 1 ELSE j.state END::int2, \
           j.priority, j.receive_count, j.failures, \
           coalesce(j.max_attempts, (q.config->>'max_attempts')::int), \
           j.enqueued_at, j.visible_at, j.first_received_at, j.completed_at, j.idempotency_key, \
           j.dead_reason, coalesce(src.name, CASE WHEN j.source_queue_id IS NULL THEN q.name \
           ELSE '<deleted>' END), j.redrive_count, \
           CASE WHEN j.redriven_from_queue_id IS NULL THEN NULL \
           ELSE coalesce(rf.name, '<deleted>') END, \
           j.body, j.attributes::text, j.group_id, j.attempts::text, j.leased_at, j.worker_id, \
           j.traceparent \
         FROM redrive.jobs j JOIN redrive.queues q ON q.id = j.queue_id \
         LEFT JOIN redrive.queues src ON src.id = j.source_queue_id \
         LEFT JOIN redrive.queues rf ON rf.id = j.redriven_from_queue_id "
    };
}
pub(crate) use info_select;

pub fn info(r: &Row) -> Result<JobInfo> {
    let id: Uuid = r.get(0);
    let state = JobState::from_u8(r.get::<_, i16>(2) as u8)
        .ok_or_else(|| Error::Internal("bad job state in the database".into()))?;
    let priority = Priority::from_u8(r.get::<_, i16>(3) as u8).unwrap_or_default();
    let receive_count = r.get::<_, i32>(4) as u32;
    let completed_at = opt_ms(r.get(10));
    let dead =
        r.get::<_, Option<i16>>(12).and_then(|d| DeadReason::from_u8(d as u8)).map(|reason| {
            DeadInfo { reason, source_queue: r.get(13), died_at: completed_at.unwrap_or(0) }
        });
    let mut attempts = attempts(r.get::<_, String>(19).as_str())?;
    let acked = state == JobState::Acked;
    // The successful attempt is not logged as an entry: the ack's metadata holds it.
    // (After a late ack the attempt is logged as it ended, and then as completed.)
    let late = |a: &Attempt| a.attempt == receive_count && a.outcome != Outcome::Ok;
    if acked && attempts.last().is_none_or(|a| a.attempt < receive_count || late(a)) {
        attempts.push(Attempt {
            attempt: receive_count,
            worker_id: r.get(21),
            started_at: opt_ms(r.get(20)).unwrap_or(0),
            ended_at: completed_at.unwrap_or(0),
            outcome: Outcome::Ok,
            error: None,
        });
    }
    let mut attributes: BTreeMap<String, String> = match r.get::<_, Option<String>>(17) {
        Some(a) if !acked => serde_json::from_str(&a)
            .map_err(|e| Error::Internal(format!("job attributes in the database: {e}")))?,
        _ => BTreeMap::new(),
    };
    if let (Some(g), false) = (r.get::<_, Option<String>>(18), acked) {
        attributes.insert(GROUP_ATTRIBUTE.to_owned(), g);
    }
    Ok(JobInfo {
        id: JobId(id.as_u128()),
        queue: r.get(1),
        state,
        priority,
        receive_count,
        failures: r.get::<_, i32>(5) as u32,
        max_attempts: r.get::<_, Option<i32>>(6).map(|n| n as u32),
        enqueued_at: ms(r.get(7)),
        visible_at: ms(r.get(8)),
        first_received_at: opt_ms(r.get(9)),
        completed_at: if acked { completed_at } else { None },
        idempotency_key: if acked { None } else { r.get(11) },
        dead,
        redrive_count: r.get::<_, i32>(14) as u32,
        redriven_from: r.get(15),
        body: if acked { None } else { r.get(16) },
        attributes,
        attempts,
        traceparent: r.get(22),
    })
}

/// The attempt log as stored by `transition::attempt_entry`.
pub fn attempts(json: &str) -> Result<Vec<Attempt>> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Internal(format!("attempt log in the database: {e}"));
    let v: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| bad(&e))?;
    v.iter()
        .map(|e| {
            let u = |k: &str| e.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let outcome = Outcome::from_u8(u("o") as u8).ok_or_else(|| bad(&"bad outcome"))?;
            let error = s("t").map(|kind| ErrorInfo {
                kind,
                message: s("m").unwrap_or_default(),
                detail: s("d"),
            });
            Ok(Attempt {
                attempt: u("n") as u32,
                worker_id: s("w"),
                started_at: u("s"),
                ended_at: u("e"),
                outcome,
                error,
            })
        })
        .collect()
}

pub async fn get(c: &impl GenericClient, id: JobId, now: i64) -> Result<JobInfo> {
    const SQL: &str = concat!(info_select!(), "WHERE j.id = $2");
    let uuid = Uuid::from_u128(id.0);
    match query(c, SQL, &[&now, &uuid]).await?.first() {
        Some(r) => info(r),
        None => Err(Error::JobNotFound(id)),
    }
}

/// Jobs of a queue after `$3` in id order, filtered in SQL by state (as read: a delayed job
/// whose time has come is ready), priority and enqueue time; the error type needs the attempt
/// log and is matched in [`list`].
const LIST_SQL: &str = concat!(
    info_select!(),
    "WHERE j.queue_id = $2 AND j.id > $3 \
     AND (CASE WHEN j.state = 0 AND j.visible_at <= $1 THEN 1 ELSE j.state END) = ANY($4::int2[]) \
     AND ($5::int2 IS NULL OR j.priority = $5) \
     AND ($6::int8 IS NULL OR j.enqueued_at >= $6) AND ($7::int8 IS NULL OR j.enqueued_at <= $7) \
     ORDER BY j.id LIMIT $8"
);

/// Rows read per round while filtering by error type.
const LIST_SCAN_ROWS: i64 = 1000;

pub async fn list(
    c: &impl GenericClient,
    queue_id: i32,
    f: &JobFilter,
    after: Option<JobId>,
    limit: usize,
    now: i64,
) -> Result<JobPage> {
    let limit = limit.clamp(1, limits::DEAD_PAGE_COUNT_MAX);
    let states: Vec<i16> =
        JobState::ALL.into_iter().filter(|s| f.state_matches(*s)).map(|s| s as i16).collect();
    let priority = f.priority.map(|p| p as i16);
    let (since, until) = (f.since.map(sql_ms), f.until.map(sql_ms));
    let mut cursor = Uuid::from_u128(after.map_or(0, |a| a.0));
    let mut jobs = Vec::new();
    loop {
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
            [&now, &queue_id, &cursor, &states, &priority, &since, &until, &LIST_SCAN_ROWS];
        let rows = query(c, LIST_SQL, &args).await?;
        for r in &rows {
            let job = info(r)?;
            cursor = r.get(0);
            if !f.error_matches(&job.attempts) {
                continue;
            }
            if jobs.len() == limit {
                let next = jobs.last().map(|j: &JobInfo| j.id);
                return Ok(JobPage { jobs, next });
            }
            jobs.push(job);
        }
        if (rows.len() as i64) < LIST_SCAN_ROWS {
            return Ok(JobPage { jobs, next: None });
        }
    }
}
