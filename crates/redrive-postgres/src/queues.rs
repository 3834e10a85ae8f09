//! Queues: create or patch (with the automatic `<name>-dlq`), list, delete, and their
//! statistics, counted from the jobs table and the sharded lifetime totals.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;
use redrive_core::broker::{PriorityCounts, QueueInfo, QueueStats, QueueTotals, StateCounts};
use redrive_core::model::valid_queue_name;
use redrive_core::{limits, Error, QueueConfig, QueuePatch, Result};

use crate::db::{self, execute, query, query_one, sql_ms, QueueRow};
use crate::totals::Unflushed;

/// Transaction-level advisory lock serializing queue creation and changes across servers
/// (rare operations; it keeps the `QUEUES_MAX` count and DLQ checks exact).
const QUEUES_LOCK_KEY: i64 = 0x7264_7271_7565_7565;

/// Creates or patches a queue inside the caller's transaction.
pub async fn put(
    c: &impl GenericClient,
    name: &str,
    patch: &QueuePatch,
    now: i64,
) -> Result<(QueueRow, bool)> {
    if !valid_queue_name(name) {
        return Err(Error::InvalidQueueName(name.to_owned()));
    }
    execute(c, "SELECT pg_advisory_xact_lock($1)", &[&QUEUES_LOCK_KEY]).await?;
    match db::queue_by_name(c, name).await {
        Ok(q) => update(c, q, patch, now).await.map(|q| (q, false)),
        Err(Error::QueueNotFound(_)) => create(c, name, patch, now).await.map(|q| (q, true)),
        Err(e) => Err(e),
    }
}

async fn update(
    c: &impl GenericClient,
    q: QueueRow,
    patch: &QueuePatch,
    now: i64,
) -> Result<QueueRow> {
    let config = patch.apply(&q.config)?;
    if config.fifo != q.config.fifo {
        return Err(Error::invalid("fifo", "cannot change after the queue is created"));
    }
    // Checked only when the update names a dead-letter queue (as the engine).
    if config.dead_letter_queue != q.config.dead_letter_queue {
        check_dlq(c, &q.name, &config).await?;
    }
    if config == q.config {
        return Ok(q);
    }
    let rekey = config.retention_ms != q.config.retention_ms
        || config.completed_retention_ms != q.config.completed_retention_ms;
    let json = serde_json::to_string(&config).expect("config serializes");
    const SQL: &str = "UPDATE redrive.queues SET config = $2::text::jsonb, version = version + 1, \
                       updated_at = $3 WHERE id = $1";
    execute(c, SQL, &[&q.id, &json, &now]).await?;
    if q.config.paused && !config.paused {
        // Long polls parked on the paused queue, on every server, look again at commit.
        execute(c, "SELECT pg_notify('redrive_ready', $1::int4::text)", &[&q.id]).await?;
    }
    if rekey {
        // Retention changes apply to the jobs already in the queue (as on SQS).
        const REKEY: &str = "UPDATE redrive.jobs SET expires_at = CASE \
             WHEN state = 3 THEN completed_at + $2 \
             WHEN dead_reason IS NOT NULL OR redrive_count > 0 THEN completed_at + $3 \
             ELSE enqueued_at + $3 END WHERE queue_id = $1 AND id IN ( \
               SELECT id FROM redrive.jobs WHERE queue_id = $1 AND state <> 2 UNION ALL \
               SELECT id FROM redrive.jobs WHERE queue_id = $1 AND state = 2)";
        let (crm, rm) = (sql_ms(config.completed_retention_ms), sql_ms(config.retention_ms));
        execute(c, REKEY, &[&q.id, &crm, &rm]).await?;
    }
    Ok(QueueRow { config, version: q.version + 1, updated_at: db::ms(now), ..q })
}

async fn create(
    c: &impl GenericClient,
    name: &str,
    patch: &QueuePatch,
    now: i64,
) -> Result<QueueRow> {
    let count: i64 = query_one(c, "SELECT count(*) FROM redrive.queues", &[]).await?.get(0);
    if count as usize >= limits::QUEUES_MAX {
        return Err(Error::LimitExceeded { limit: "QUEUES_MAX", max: limits::QUEUES_MAX as u64 });
    }
    let mut config = patch.new_queue_config(name)?;
    if let Some((dlq, dlq_patch)) = patch.auto_dead_letter_queue(name, &config) {
        if let Err(Error::QueueNotFound(_)) = db::queue_by_name(c, &dlq).await {
            Box::pin(create(c, &dlq, &dlq_patch, now)).await?;
        }
        config.dead_letter_queue = Some(dlq);
    }
    check_dlq(c, name, &config).await?;
    let json = serde_json::to_string(&config).expect("config serializes");
    const SQL: &str = "INSERT INTO redrive.queues (name, config, created_at, updated_at) \
                       VALUES ($1, $2::text::jsonb, $3, $3) RETURNING id";
    let id: i32 = query_one(c, SQL, &[&name, &json, &now]).await?.get(0);
    let at = db::ms(now);
    Ok(QueueRow { id, name: name.to_owned(), config, version: 0, created_at: at, updated_at: at })
}

async fn check_dlq(c: &impl GenericClient, name: &str, config: &QueueConfig) -> Result<()> {
    let Some(dlq) = &config.dead_letter_queue else { return Ok(()) };
    // A queue may be its own dead-letter queue, as on SQS: its dead jobs start over.
    if dlq == name {
        return Ok(());
    }
    let d = match db::queue_by_name(c, dlq).await {
        Ok(d) => d,
        Err(Error::QueueNotFound(_)) => {
            return Err(Error::invalid(
                "dead_letter_queue",
                format!("queue {dlq:?} does not exist"),
            ))
        }
        Err(e) => return Err(e),
    };
    if d.config.fifo != config.fifo {
        return Err(Error::invalid(
            "dead_letter_queue",
            "a FIFO queue's dead-letter queue must be FIFO, a standard queue's standard",
        ));
    }
    Ok(())
}

/// Counts by state and priority, oldest ready job and dead letters, per queue, from the index
/// ranges that hold them: waiting jobs (`jobs_ready`, `k` 0; `ready` once due, the rest
/// delayed), leases (`jobs_leased`, 1) and dead letters (`jobs_dead`, 2). Completed jobs, kept for `completed_retention_ms` and by far
/// the most rows of a busy queue, are not read: their count is acked less forgotten (the
/// totals), and the rates come from the totals too ([`Rates`]).
const STATS_SQL: &str = "SELECT queue_id, \
     count(*) FILTER (WHERE k = 0 AND NOT ready), \
     count(*) FILTER (WHERE ready), \
     count(*) FILTER (WHERE k = 1), \
     count(*) FILTER (WHERE k = 2 AND state = 4), \
     count(*) FILTER (WHERE ready AND priority = 0), \
     count(*) FILTER (WHERE ready AND priority = 1), \
     count(*) FILTER (WHERE ready AND priority = 2), \
     count(*) FILTER (WHERE k = 2), \
     min(visible_at) FILTER (WHERE ready), \
     min(enqueued_at) FILTER (WHERE ready) \
   FROM (SELECT 0 AS k, queue_id, state, priority, visible_at, enqueued_at, \
       state = 1 OR visible_at <= $2 AS ready FROM redrive.jobs \
       WHERE queue_id = ANY($1) AND state IN (0, 1) \
     UNION ALL SELECT 1, queue_id, state, priority, visible_at, enqueued_at, false \
       FROM redrive.jobs WHERE queue_id = ANY($1) AND state = 2 \
     UNION ALL SELECT 2, queue_id, state, priority, visible_at, enqueued_at, false \
       FROM redrive.jobs WHERE queue_id = ANY($1) AND dead_reason IS NOT NULL AND state <> 3) j \
   GROUP BY queue_id";

/// Enqueue and ack rates per queue over about the last minute, from the totals as this server
/// read them: a reading at most every second per queue is kept, and the rate is the change
/// since the newest reading at least a minute old (or the oldest one there is). The first read
/// of a queue on a server has no earlier reading and shows no rate.
#[derive(Default)]
pub struct Rates(Mutex<HashMap<i32, VecDeque<Reading>>>);

/// When the totals were read, and their enqueued and acked counts then.
type Reading = (Instant, u64, u64);

const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Rates {
    /// Records a reading of a queue's enqueued and acked totals; returns (enqueue, ack) per
    /// second.
    fn observe(&self, queue: i32, enqueued: u64, acked: u64) -> (f64, f64) {
        let now = Instant::now();
        let mut g = self.0.lock().expect("rates lock");
        // Queues nobody asked about for two windows (deleted ones among them) are dropped.
        g.retain(|_, r| r.back().is_some_and(|(t, _, _)| now.duration_since(*t) < 2 * RATE_WINDOW));
        let ring = g.entry(queue).or_default();
        while ring.get(1).is_some_and(|(t, _, _)| now.duration_since(*t) >= RATE_WINDOW) {
            ring.pop_front();
        }
        let rates = match ring.front() {
            Some(&(t, e, a)) if now.duration_since(t) >= Duration::from_secs(1) => {
                let secs = now.duration_since(t).as_secs_f64();
                (enqueued.saturating_sub(e) as f64 / secs, acked.saturating_sub(a) as f64 / secs)
            }
            _ => (0.0, 0.0),
        };
        if ring.back().is_none_or(|(t, _, _)| now.duration_since(*t) >= Duration::from_secs(1)) {
            ring.push_back((now, enqueued, acked));
        }
        rates
    }
}

const TOTALS_SQL: &str = "SELECT queue_id, sum(enqueued)::bigint, sum(duplicates)::bigint, \
     sum(delivered)::bigint, sum(acked)::bigint, sum(failed)::bigint, sum(lease_expired)::bigint, \
     sum(dead_lettered)::bigint, sum(expired)::bigint, sum(purged)::bigint, sum(redriven)::bigint, \
     sum(forgotten)::bigint \
   FROM redrive.queue_totals WHERE queue_id = ANY($1) GROUP BY queue_id";

/// Queue infos with their statistics, in the order given.
/// The lifetime totals are the table's sums plus what this server counted and has not written
/// (`unflushed`), read with no flush in between.
pub async fn infos(
    c: &impl GenericClient,
    queues: Vec<QueueRow>,
    now: i64,
    unflushed: &Unflushed,
    rates: &Rates,
) -> Result<Vec<QueueInfo>> {
    let ids: Vec<i32> = queues.iter().map(|q| q.id).collect();
    let mut stats: HashMap<i32, QueueStats> = HashMap::new();
    let fifo: HashMap<i32, bool> = queues.iter().map(|q| (q.id, q.config.fifo)).collect();
    for r in query(c, STATS_SQL, &[&ids, &now]).await? {
        let id: i32 = r.get(0);
        let n = |i: usize| r.get::<_, i64>(i) as u64;
        let oldest: Option<i64> = if fifo[&id] { r.get(10) } else { r.get(9) };
        stats.insert(
            id,
            QueueStats {
                counts: StateCounts {
                    delayed: n(1),
                    ready: n(2),
                    leased: n(3),
                    dead: n(4),
                    completed: 0,
                },
                ready_by_priority: PriorityCounts { high: n(5), standard: n(6), low: n(7) },
                dead_letters: n(8),
                oldest_ready_age_ms: oldest.map_or(0, |t| db::ms(now - t)),
                ..QueueStats::default()
            },
        );
    }
    let (_no_flush, pending) = unflushed.snapshot().await;
    let mut forgotten: HashMap<i32, u64> = HashMap::new();
    for r in query(c, TOTALS_SQL, &[&ids]).await? {
        let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
        stats.entry(r.get(0)).or_default().totals = QueueTotals {
            enqueued: n(1),
            duplicates: n(2),
            delivered: n(3),
            acked: n(4),
            failed: n(5),
            lease_expired: n(6),
            dead_lettered: n(7),
            expired: n(8),
            purged: n(9),
            redriven: n(10),
        };
        forgotten.insert(r.get(0), n(11));
    }
    for (id, hot) in pending.iter().filter(|(id, _)| ids.contains(id)) {
        hot.add_to(&mut stats.entry(*id).or_default().totals);
    }
    for (id, s) in &mut stats {
        let t = &s.totals;
        // Exact on the server that acked (its unwritten acks are added); elsewhere behind by
        // the acks not yet written (a second at most), and a crash loses those for good.
        s.counts.completed = t.acked.saturating_sub(forgotten.get(id).copied().unwrap_or(0));
        (s.enqueue_rate, s.ack_rate) = rates.observe(*id, t.enqueued, t.acked);
    }
    Ok(queues
        .into_iter()
        .map(|q| QueueInfo {
            stats: stats.remove(&q.id).unwrap_or_default(),
            name: q.name,
            config: q.config,
            created_at: q.created_at,
            updated_at: q.updated_at,
        })
        .collect())
}

pub async fn all(c: &impl GenericClient) -> Result<Vec<QueueRow>> {
    const SQL: &str = "SELECT id, name, config::text, version, created_at, updated_at \
                       FROM redrive.queues ORDER BY name";
    query(c, SQL, &[]).await?.iter().map(db::queue_row).collect()
}

/// Deletes a queue, its jobs and, by cascade, its totals and idempotency keys, and records it
/// for the sweep ([`delete_jobs_of_deleted_queues`]).
pub async fn delete(c: &mut deadpool_postgres::Client, name: &str) -> Result<()> {
    const QUEUE: &str = "DELETE FROM redrive.queues WHERE name = $1 RETURNING id";
    const RECORD: &str = "INSERT INTO redrive.deleted_queues (id, deleted_at) \
         VALUES ($1, redrive.now_ms())";
    let tx = c.transaction().await.map_err(db::internal)?;
    let Some(row) = db::query_opt(&tx, QUEUE, &[&name]).await? else {
        return Err(Error::QueueNotFound(name.to_owned()));
    };
    let id: i32 = row.get(0);
    delete_jobs(&tx, &[id]).await?;
    execute(&tx, RECORD, &[&id]).await?;
    tx.commit().await.map_err(db::internal)
}

/// How long after a queue's deletion the sweep still looks for jobs given to it: longer than
/// any statement of a server runs.
const DELETED_QUEUE_WATCH_MS: i64 = 10 * 60 * 1000;

/// Deletes the jobs a statement that began before its queue's deletion gave to the queue
/// (an enqueue, a dead-lettering or a redrive into it), and forgets deletions past the watch.
pub async fn delete_jobs_of_deleted_queues(c: &impl GenericClient) -> Result<()> {
    const WATCHED: &str = "SELECT coalesce(array_agg(id), '{}') FROM redrive.deleted_queues";
    const FORGET: &str =
        "DELETE FROM redrive.deleted_queues WHERE deleted_at < redrive.now_ms() - $1";
    let ids: Vec<i32> = query_one(c, WATCHED, &[]).await?.get(0);
    if !ids.is_empty() {
        delete_jobs(c, &ids).await?;
        execute(c, FORGET, &[&DELETED_QUEUE_WATCH_MS]).await?;
    }
    Ok(())
}

/// Deletes every job of these queues, through the two partial indexes that lead with the
/// queue and together hold every job (`jobs_leased`, `jobs_expiry`).
async fn delete_jobs(c: &impl GenericClient, queues: &[i32]) -> Result<()> {
    const LEASED: &str = "DELETE FROM redrive.jobs WHERE queue_id = ANY($1) AND state = 2";
    const OTHERS: &str = "DELETE FROM redrive.jobs WHERE queue_id = ANY($1) AND state <> 2";
    execute(c, LEASED, &[&queues]).await?;
    execute(c, OTHERS, &[&queues]).await?;
    Ok(())
}
