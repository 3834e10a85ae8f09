//! Bulk import, for `redrive migrate` (embedded log → PostgreSQL): queues with their
//! configuration and totals, jobs with their attempt logs and dead-letter information,
//! idempotency keys and control-plane documents, written in one transaction so that a
//! migration lands whole or not at all. Not part of the `Broker` contract: only a store that
//! starts empty takes an import.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::GenericClient;
use redrive_core::broker::{DocKind, QueueTotals};
use redrive_core::model::{Attempt, DeadReason, JobState, Priority};
use redrive_core::{Error, QueueConfig, Result};
use uuid::Uuid;

use crate::db::{execute, internal, query_one, sql_ms};
use crate::PgBroker;

/// Jobs per `INSERT … unnest` statement.
const IMPORT_BATCH_COUNT: usize = 1000;

/// Queue id standing for a queue that no longer exists (read back as `<deleted>`).
const QUEUE_ID_DELETED: i32 = -1;

#[derive(Clone, Debug)]
pub struct ImportQueue {
    pub name: String,
    pub config: QueueConfig,
    pub created_at: u64,
    pub updated_at: u64,
    pub totals: QueueTotals,
}

/// A job that has not completed (`Delayed`, `Ready` or `Dead`; a `Leased` one is refused).
#[derive(Clone, Debug)]
pub struct ImportJob {
    pub id: u128,
    pub queue: String,
    pub state: JobState,
    pub priority: Priority,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    pub group: Option<String>,
    pub receive_count: u32,
    pub failures: u32,
    pub max_attempts: Option<u32>,
    pub epoch: u32,
    pub enqueued_at: u64,
    pub visible_at: u64,
    pub first_received_at: Option<u64>,
    pub leased_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub expires_at: u64,
    pub dead_reason: Option<DeadReason>,
    pub source_queue: Option<String>,
    pub redrive_count: u32,
    pub redriven_from: Option<String>,
    pub worker: Option<String>,
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Debug)]
pub struct ImportKey {
    pub queue: String,
    pub key: String,
    pub job: u128,
    pub expires_at: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Import {
    pub queues: Vec<ImportQueue>,
    pub jobs: Vec<ImportJob>,
    pub keys: Vec<ImportKey>,
    pub docs: Vec<(DocKind, String, String)>,
}

/// What an import wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub queues: u64,
    /// Jobs by state.
    pub delayed: u64,
    pub ready: u64,
    pub dead: u64,
    /// Jobs carrying dead-letter information (dead here, or moved to a dead-letter queue).
    pub dead_letters: u64,
    pub attempt_entries: u64,
    pub keys: u64,
    pub docs: u64,
}

/// An attempt-log entry in the stored form (`transition::attempt_entry`, `jobs::attempts`).
fn attempt_json(a: &Attempt) -> serde_json::Value {
    let mut e = serde_json::json!({"n": a.attempt, "s": a.started_at, "e": a.ended_at, "o": a.outcome as u8});
    if let Some(w) = &a.worker_id {
        e["w"] = w.as_str().into();
    }
    if let Some(err) = &a.error {
        e["t"] = err.kind.as_str().into();
        e["m"] = err.message.as_str().into();
        if let Some(d) = &err.detail {
            e["d"] = d.as_str().into();
        }
    }
    e
}

const INSERT_JOBS: &str = "INSERT INTO redrive.jobs (id, queue_id, state, priority, body, \
    attributes, idempotency_key, group_id, traceparent, receive_count, failures, max_attempts, \
    lease_epoch, enqueued_at, visible_at, leased_at, first_received_at, completed_at, expires_at, \
    dead_reason, source_queue_id, redrive_count, redriven_from_queue_id, worker_id, attempts, \
    ordered) \
  SELECT u.id, u.q, u.st, u.pr, u.body, u.attrs::jsonb, u.k, u.g, u.tp, u.rc, u.f, u.ma, u.ep, \
    u.enq, u.vis, u.la, u.fr, u.ca, u.ex, u.dr, u.sq, u.rd, u.rf, u.w, u.att::jsonb, \
    redrive.is_fifo(u.q) \
  FROM unnest($1::uuid[], $2::int4[], $3::int2[], $4::int2[], $5::text[], $6::text[], $7::text[], \
    $8::text[], $9::text[], $10::int4[], $11::int4[], $12::int4[], $13::int4[], $14::int8[], \
    $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int2[], $21::int4[], \
    $22::int4[], $23::int4[], $24::text[], $25::text[]) \
  AS u(id, q, st, pr, body, attrs, k, g, tp, rc, f, ma, ep, enq, vis, la, fr, ca, ex, dr, sq, rd, \
    rf, w, att)";

impl PgBroker {
    /// Writes `data` into this (empty of those queues) database in one transaction. Refuses,
    /// writing nothing, if a queue of the import already exists here.
    pub async fn import(&self, data: &Import) -> Result<ImportReport> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(internal)?;
        let mut report = ImportReport::default();
        let mut ids: HashMap<&str, i32> = HashMap::new();
        for q in &data.queues {
            let id = import_queue(&tx, q).await?;
            ids.insert(q.name.as_str(), id);
            report.queues += 1;
        }
        let qid = |name: &str| -> Result<i32> {
            ids.get(name).copied().ok_or_else(|| Error::QueueNotFound(name.to_owned()))
        };
        let ref_id =
            |name: &Option<String>| name.as_deref().map(|n| qid(n).unwrap_or(QUEUE_ID_DELETED));
        for chunk in data.jobs.chunks(IMPORT_BATCH_COUNT) {
            let mut cols = Columns::default();
            for j in chunk {
                match j.state {
                    JobState::Delayed => report.delayed += 1,
                    JobState::Ready => report.ready += 1,
                    JobState::Dead => report.dead += 1,
                    s => return Err(Error::invalid("jobs", format!("cannot import a job {s:?}"))),
                }
                report.dead_letters += u64::from(j.dead_reason.is_some());
                report.attempt_entries += j.attempts.len() as u64;
                cols.push(j, qid(&j.queue)?, ref_id(&j.source_queue), ref_id(&j.redriven_from));
            }
            cols.insert(&tx).await?;
        }
        for k in &data.keys {
            const SQL: &str = "INSERT INTO redrive.dedup (queue_id, key, job_id, expires_at) \
                               VALUES ($1, $2, $3, $4)";
            let job = Uuid::from_u128(k.job);
            execute(&tx, SQL, &[&qid(&k.queue)?, &k.key, &job, &sql_ms(k.expires_at)]).await?;
            report.keys += 1;
        }
        for (kind, key, value) in &data.docs {
            crate::docs::put(&tx, *kind, key, Some(value.as_str())).await?;
            report.docs += 1;
        }
        for id in ids.values() {
            crate::db::notify(&tx, *id).await?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(report)
    }
}

async fn import_queue(c: &impl GenericClient, q: &ImportQueue) -> Result<i32> {
    const EXISTS: &str = "SELECT count(*) FROM redrive.queues WHERE name = $1";
    let n: i64 = query_one(c, EXISTS, &[&q.name]).await?.get(0);
    if n > 0 {
        return Err(Error::invalid(
            "queues",
            format!("queue {:?} already exists in the database; migrate into a fresh one", q.name),
        ));
    }
    const SQL: &str = "INSERT INTO redrive.queues (name, config, created_at, updated_at) \
                       VALUES ($1, $2::text::jsonb, $3, $4) RETURNING id";
    let config = serde_json::to_string(&q.config).expect("a queue config serializes");
    let (created, updated) = (sql_ms(q.created_at), sql_ms(q.updated_at));
    let id: i32 = query_one(c, SQL, &[&q.name, &config, &created, &updated]).await?.get(0);
    // The completed jobs stay behind (only unfinished jobs are copied): forgotten, so the
    // completed count (acked less forgotten) starts at none.
    const TOTALS: &str = "INSERT INTO redrive.queue_totals (queue_id, shard, enqueued, \
        duplicates, delivered, acked, failed, lease_expired, dead_lettered, expired, purged, \
        redriven, forgotten) VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $5)";
    let t = &q.totals;
    let v: Vec<i64> = [
        t.enqueued,
        t.duplicates,
        t.delivered,
        t.acked,
        t.failed,
        t.lease_expired,
        t.dead_lettered,
        t.expired,
        t.purged,
        t.redriven,
    ]
    .iter()
    .map(|n| sql_ms(*n))
    .collect();
    execute(
        c,
        TOTALS,
        &[&id, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]],
    )
    .await?;
    Ok(id)
}

/// One batch of jobs as column arrays, for `INSERT_JOBS`.
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    queue: Vec<i32>,
    state: Vec<i16>,
    priority: Vec<i16>,
    body: Vec<String>,
    attributes: Vec<String>,
    key: Vec<Option<String>>,
    group: Vec<Option<String>>,
    traceparent: Vec<Option<String>>,
    receive_count: Vec<i32>,
    failures: Vec<i32>,
    max_attempts: Vec<Option<i32>>,
    epoch: Vec<i32>,
    enqueued_at: Vec<i64>,
    visible_at: Vec<i64>,
    leased_at: Vec<Option<i64>>,
    first_received_at: Vec<Option<i64>>,
    completed_at: Vec<Option<i64>>,
    expires_at: Vec<i64>,
    dead_reason: Vec<Option<i16>>,
    source_queue: Vec<Option<i32>>,
    redrive_count: Vec<i32>,
    redriven_from: Vec<Option<i32>>,
    worker: Vec<Option<String>>,
    attempts: Vec<String>,
}

impl Columns {
    fn push(&mut self, j: &ImportJob, queue: i32, source: Option<i32>, redriven_from: Option<i32>) {
        let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        self.id.push(Uuid::from_u128(j.id));
        self.queue.push(queue);
        self.state.push(j.state as i16);
        self.priority.push(j.priority as i16);
        self.body.push(j.body.clone());
        self.attributes.push(serde_json::to_string(&j.attributes).expect("attributes serialize"));
        self.key.push(j.idempotency_key.clone());
        self.group.push(j.group.clone());
        self.traceparent.push(j.traceparent.clone());
        self.receive_count.push(int(j.receive_count));
        self.failures.push(int(j.failures));
        self.max_attempts.push(j.max_attempts.map(int));
        self.epoch.push(int(j.epoch));
        self.enqueued_at.push(sql_ms(j.enqueued_at));
        self.visible_at.push(sql_ms(j.visible_at));
        self.leased_at.push(j.leased_at.map(sql_ms));
        self.first_received_at.push(j.first_received_at.map(sql_ms));
        self.completed_at.push(j.completed_at.map(sql_ms));
        self.expires_at.push(sql_ms(j.expires_at));
        self.dead_reason.push(j.dead_reason.map(|d| d as i16));
        self.source_queue.push(source);
        self.redrive_count.push(int(j.redrive_count));
        self.redriven_from.push(redriven_from);
        self.worker.push(j.worker.clone());
        let log: Vec<serde_json::Value> = j.attempts.iter().map(attempt_json).collect();
        self.attempts.push(serde_json::Value::Array(log).to_string());
    }

    async fn insert(&self, c: &impl GenericClient) -> Result<()> {
        execute(
            c,
            INSERT_JOBS,
            &[
                &self.id,
                &self.queue,
                &self.state,
                &self.priority,
                &self.body,
                &self.attributes,
                &self.key,
                &self.group,
                &self.traceparent,
                &self.receive_count,
                &self.failures,
                &self.max_attempts,
                &self.epoch,
                &self.enqueued_at,
                &self.visible_at,
                &self.leased_at,
                &self.first_received_at,
                &self.completed_at,
                &self.expires_at,
                &self.dead_reason,
                &self.source_queue,
                &self.redrive_count,
                &self.redriven_from,
                &self.worker,
                &self.attempts,
            ],
        )
        .await
        .map(drop)
    }
}
