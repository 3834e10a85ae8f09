//! Receive: leasing a batch from one queue in one statement. Candidates are taken per priority
//! level from the `jobs_ready` index with `FOR UPDATE SKIP LOCKED` (so concurrent receivers on
//! any server never wait on or double-lease a row), ranked by effective priority (aging) and
//! ready time, and leased by the same statement: epoch + 1, receive count + 1, lease end.
//!
//! Jobs the engine would not deliver — received `max_receive_count` times already, or past
//! their retention — are returned apart ("doomed") and killed or expired by the caller, which
//! then leases again for the remainder, as the engine's receive loop does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;
use redrive_core::broker::{DeadInfo, Delivery};
use redrive_core::model::{DeadReason, JobId, Priority, Receipt};
use redrive_core::{limits, Error, Result};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{execute, ms, query, sql_ms, QueueRow};
use crate::transition::{self, job_core_select, JobCore};

/// What the leased rows return, shared by both candidate queries. The test for leases that
/// ran out bounds its scan by the clock (a scalar, so an index condition): joined to `n`
/// instead, it read every lease in flight at every receive.
macro_rules! lease_tail {
    () => {
        "doomed AS (SELECT id FROM pick, n WHERE ($4::int4 IS NOT NULL AND receive_count >= $4) \
            OR expires_at <= n.now), \
         leased AS ( \
           UPDATE redrive.jobs j SET state = 2, lease_epoch = j.lease_epoch + 1, \
             receive_count = j.receive_count + 1, \
             first_received_at = coalesce(j.first_received_at, n.now), leased_at = n.now, \
             visible_at = n.now + $5, worker_id = $6 \
           FROM pick p, n WHERE j.id = p.id AND p.id NOT IN (SELECT id FROM doomed) \
           RETURNING j.id, j.body, j.attributes::text, j.priority, j.lease_epoch, \
             j.receive_count, j.enqueued_at, j.first_received_at, j.visible_at, j.traceparent, \
             j.group_id, j.dead_reason, j.completed_at, \
             CASE WHEN j.dead_reason IS NOT NULL THEN (SELECT s.name FROM redrive.queues s \
               WHERE s.id = coalesce(j.source_queue_id, j.queue_id)) END AS source, \
             n.now - p.visible_at AS waited, p.eff::int4 AS eff, p.ord) \
         SELECT 0, id, body, attributes, priority, lease_epoch, receive_count, enqueued_at, \
           first_received_at, visible_at, traceparent, group_id, dead_reason, completed_at, \
           source, waited, eff, ord \
         FROM leased \
         UNION ALL SELECT 1, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
           NULL, NULL, NULL, NULL, NULL, NULL FROM doomed \
         UNION ALL SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
           NULL, NULL, NULL, NULL, NULL, NULL WHERE EXISTS (SELECT 1 FROM redrive.jobs e \
             WHERE e.state = 2 AND e.visible_at <= (SELECT now FROM n) AND e.queue_id = $1)"
    };
}

/// Standard queues: up to `$2` candidates per level, best `least($2, $7)` by (effective
/// level, ready since); `$7` is the queue's room for more leases (see [`Rooms`]). `$3` is the
/// aging time (NULL = off). The union of three index range scans keeps a receive's cost
/// independent of the backlog.
pub const STANDARD_SQL: &str = concat!(
    "WITH n AS (SELECT redrive.now_ms() AS now), ",
    "c0 AS (SELECT id, priority, visible_at, receive_count, expires_at FROM redrive.jobs \
       WHERE queue_id = $1 AND state IN (0, 1) AND priority = 0 \
       AND visible_at <= (SELECT now FROM n) ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), ",
    "c1 AS (SELECT id, priority, visible_at, receive_count, expires_at FROM redrive.jobs \
       WHERE queue_id = $1 AND state IN (0, 1) AND priority = 1 \
       AND visible_at <= (SELECT now FROM n) ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), ",
    "c2 AS (SELECT id, priority, visible_at, receive_count, expires_at FROM redrive.jobs \
       WHERE queue_id = $1 AND state IN (0, 1) AND priority = 2 \
       AND visible_at <= (SELECT now FROM n) ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), ",
    "pick AS (SELECT u.*, CASE WHEN $3::int8 IS NOT NULL AND u.priority > 0 \
         AND n.now - u.visible_at >= $3 THEN u.priority - 1 ELSE u.priority END AS eff, u.visible_at AS ord \
       FROM (SELECT * FROM c0 UNION ALL SELECT * FROM c1 UNION ALL SELECT * FROM c2) u, n \
       ORDER BY eff, visible_at, priority, id LIMIT least($2::int8, $7::int8)), ",
    lease_tail!()
);

/// FIFO queues, in the order SQS hands them out (the engine's `fifo_order`): of the first
/// 1,000 ready jobs by enqueue time, those not behind a leased job of their group (a job ahead
/// of every leased one goes out at once), by group — as many of one group as the batch takes
/// before the next — with groups in the order their first such job became visible (a group back
/// from a lease goes after the groups that kept waiting), each group in enqueue order.
/// Priorities do not reorder a FIFO queue: `ord` is the rank. The caller holds the queue's
/// advisory lock so that two receives cannot both take a group. `$3` is unused (no aging).
const FIFO_SQL: &str = concat!(
    "WITH n AS (SELECT redrive.now_ms() AS now), ",
    "cand AS (SELECT j.id, j.group_id, j.enqueued_at, j.visible_at FROM redrive.jobs j, n \
       WHERE j.queue_id = $1 AND j.state IN (0, 1) AND j.visible_at <= n.now \
       AND (j.group_id IS NULL OR NOT EXISTS (SELECT 1 FROM redrive.jobs x \
            WHERE x.queue_id = $1 AND x.state = 2 AND x.group_id = j.group_id \
            AND (x.enqueued_at, x.id) < (j.enqueued_at, j.id))) \
       ORDER BY j.enqueued_at, j.id LIMIT 1000), \
     ranked AS (SELECT id, \
         row_number() OVER (ORDER BY head, head_id, enqueued_at, id) AS rank \
       FROM (SELECT c.*, first_value(c.visible_at) OVER g AS head, first_value(c.id) OVER g \
         AS head_id FROM cand c \
         WINDOW g AS (PARTITION BY coalesce(c.group_id, c.id::text) ORDER BY c.enqueued_at, c.id)) h \
       ORDER BY rank LIMIT least($2::int8, $7::int8)), \
     pick AS (SELECT j.id, j.priority, j.visible_at, j.receive_count, j.expires_at, \
         0 * coalesce($3::int8, 0) AS eff, r.rank AS ord \
       FROM redrive.jobs j JOIN ranked r ON r.id = j.id FOR UPDATE OF j SKIP LOCKED), ",
    lease_tail!()
);

/// `pg_advisory_xact_lock` keys of FIFO receives: this base plus the queue id.
const FIFO_LOCK_BASE: i64 = 0x7264_6669_0000_0000;

/// How many more jobs each queue may have in flight (`INFLIGHT_PER_QUEUE_MAX` less its
/// leases), as this server last counted them and has leased since. Counting costs a read of
/// every lease of the queue, so a receive counts only when the last count is older than
/// [`ROOM_RECOUNT`] or left less than [`ROOM_MARGIN`]: far from the limit a receive reads no
/// lease, near it every receive counts. The limit is approximate, as on SQS: other servers'
/// leases since the last count are not seen, which matters only within the margin.
#[derive(Default)]
pub struct Rooms(Mutex<HashMap<i32, (i64, Instant)>>);

/// How long a count of a queue's leases stands.
const ROOM_RECOUNT: Duration = Duration::from_secs(1);
/// Below this much room, every receive counts.
const ROOM_MARGIN: i64 = limits::INFLIGHT_PER_QUEUE_MAX as i64 / 10;

impl Rooms {
    /// The queue's room, counted now unless a recent count stands.
    async fn room(&self, c: &impl GenericClient, queue: i32) -> Result<i64> {
        let known = self.0.lock().expect("rooms lock").get(&queue).copied();
        if let Some((left, at)) = known {
            if left >= ROOM_MARGIN && at.elapsed() < ROOM_RECOUNT {
                return Ok(left);
            }
        }
        const SQL: &str = "SELECT count(*) FROM (SELECT 1 FROM redrive.jobs \
             WHERE queue_id = $1 AND state = 2 LIMIT $2) x";
        let max = limits::INFLIGHT_PER_QUEUE_MAX as i64;
        let leased: i64 = crate::db::query_one(c, SQL, &[&queue, &max]).await?.get(0);
        let left = max - leased;
        let mut g = self.0.lock().expect("rooms lock");
        // Counts long unused (deleted queues among them) are dropped.
        g.retain(|_, (_, at)| at.elapsed() < 60 * ROOM_RECOUNT);
        g.insert(queue, (left, Instant::now()));
        Ok(left)
    }

    /// This server leased `n` more jobs of the queue.
    fn took(&self, queue: i32, n: usize) {
        if let Some((left, _)) = self.0.lock().expect("rooms lock").get_mut(&queue) {
            *left -= n as i64;
        }
    }
}

/// One leasing statement's outcome.
pub struct Leased {
    pub deliveries: Vec<Delivery>,
    /// Enqueue→start latencies (ms) of the delivered jobs.
    pub waited_ms: Vec<u64>,
    pub doomed: Vec<Uuid>,
    /// Leases in this queue ran out and wait to be ended (then leased again).
    pub expired_leases: bool,
    /// The queue has `INFLIGHT_PER_QUEUE_MAX` jobs leased: no more until some are settled.
    pub at_inflight_max: bool,
}

pub async fn lease(
    c: &mut deadpool_postgres::Client,
    rooms: &Rooms,
    q: &QueueRow,
    max: u32,
    lease_ms: Option<u64>,
    worker: Option<&str>,
) -> Result<Leased> {
    if !q.config.fifo {
        let lease = Lease::new(&*c, rooms, q, max, lease_ms, worker).await?;
        return lease.run(&*c, STANDARD_SQL).await;
    }
    let tx = c.transaction().await.map_err(crate::db::internal)?;
    execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&(FIFO_LOCK_BASE + i64::from(q.id))])
        .await?;
    let r = Lease::new(&tx, rooms, q, max, lease_ms, worker).await?.run(&tx, FIFO_SQL).await?;
    tx.commit().await.map_err(crate::db::internal)?;
    Ok(r)
}

/// A leasing statement's parameters, with the queue's in-flight room counted: what
/// `PgBroker::ack_receive` sends in a pipeline of its own.
pub struct Lease<'a> {
    rooms: &'a Rooms,
    q: &'a QueueRow,
    max: i64,
    aging: Option<i64>,
    max_receives: Option<i32>,
    lease: i64,
    worker: Option<&'a str>,
    room: i64,
}

impl<'a> Lease<'a> {
    pub async fn new(
        c: &impl GenericClient,
        rooms: &'a Rooms,
        q: &'a QueueRow,
        max: u32,
        lease_ms: Option<u64>,
        worker: Option<&'a str>,
    ) -> Result<Lease<'a>> {
        Ok(Lease {
            rooms,
            q,
            max: i64::from(max),
            aging: q.config.priority_aging_ms.map(sql_ms),
            max_receives: q.config.max_receive_count.map(|n| n as i32),
            lease: sql_ms(lease_ms.unwrap_or(q.config.visibility_timeout_ms)),
            worker,
            room: rooms.room(c, q.id).await?.max(0),
        })
    }

    /// `$1..$7` of [`STANDARD_SQL`] and `FIFO_SQL`.
    pub fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        let Lease { q, max, aging, max_receives, lease, worker, room, .. } = self;
        [&q.id, max, aging, max_receives, lease, worker, room]
    }

    /// Runs `sql` (the standard or FIFO statement) on `c`.
    async fn run(&self, c: &impl GenericClient, sql: &str) -> Result<Leased> {
        self.leased(&query(c, sql, &self.params()).await?)
    }

    /// What the statement returned, as deliveries (best first) and work left for the caller.
    pub fn leased(&self, rows: &[Row]) -> Result<Leased> {
        let mut out = Leased {
            deliveries: Vec::new(),
            waited_ms: Vec::new(),
            doomed: Vec::new(),
            expired_leases: false,
            at_inflight_max: self.room == 0,
        };
        // The statement returns leased rows in no set order; deliver best first.
        let mut leased: Vec<(i32, i64, Uuid, &Row)> = Vec::with_capacity(rows.len());
        for r in rows {
            match r.get::<_, i32>(0) {
                0 => leased.push((r.get(16), r.get(17), r.get(1), r)),
                1 => out.doomed.push(r.get(1)),
                _ => out.expired_leases = true,
            }
        }
        self.rooms.took(self.q.id, leased.len());
        leased.sort_unstable_by_key(|(eff, ord, id, _)| (*eff, *ord, *id));
        for (_, _, _, r) in leased {
            out.waited_ms.push(ms(r.get(15)));
            out.deliveries.push(delivery(r, &self.q.name)?);
        }
        Ok(out)
    }
}

fn delivery(r: &Row, queue: &str) -> Result<Delivery> {
    let id: Uuid = r.get(1);
    let id = JobId(id.as_u128());
    let attributes = match r.get::<_, Option<String>>(3) {
        Some(a) => serde_json::from_str(&a)
            .map_err(|e| Error::Internal(format!("job attributes in the database: {e}")))?,
        None => Default::default(),
    };
    let dead =
        r.get::<_, Option<i16>>(12).and_then(|d| DeadReason::from_u8(d as u8)).map(|reason| {
            DeadInfo {
                reason,
                source_queue: r.get::<_, Option<String>>(14).unwrap_or_else(|| "<deleted>".into()),
                died_at: r.get::<_, Option<i64>>(13).map_or(0, ms),
            }
        });
    Ok(Delivery {
        id,
        queue: queue.to_owned(),
        body: r.get::<_, Option<String>>(2).unwrap_or_default(),
        attributes,
        priority: Priority::from_u8(r.get::<_, i16>(4) as u8).unwrap_or_default(),
        receipt: Receipt { id, epoch: r.get::<_, i32>(5) as u32 }.encode(),
        attempt: r.get::<_, i32>(6) as u32,
        enqueued_at: ms(r.get(7)),
        first_received_at: r.get::<_, Option<i64>>(8).map_or(0, ms),
        lease_expires_at: ms(r.get(9)),
        traceparent: r.get(10),
        group: r.get(11),
        dead,
    })
}

/// Kills or expires jobs a receive found undeliverable, re-checking each under its row lock
/// (another server may have moved it since).
pub async fn settle_doomed(
    c: &mut deadpool_postgres::Client,
    q: &QueueRow,
    ids: &[Uuid],
    shard: i16,
) -> Result<()> {
    const SQL: &str = concat!(
        job_core_select!(),
        "FROM redrive.jobs j WHERE j.id = ANY($1) AND j.queue_id = $2 AND j.state IN (0, 1) \
         ORDER BY j.id FOR UPDATE"
    );
    let tx = c.transaction().await.map_err(crate::db::internal)?;
    let ids = ids.to_vec();
    for r in query(&tx, SQL, &[&ids, &q.id]).await? {
        let j = JobCore::from_row(&r);
        let now: i64 = r.get(16);
        let over = q.config.max_receive_count.is_some_and(|m| j.receive_count as u32 >= m);
        if over {
            transition::kill(&tx, j, q, DeadReason::MaxReceives, now, shard, None).await?;
        } else if j.expires_at <= now {
            transition::expire(&tx, j, now, shard).await?;
        }
    }
    tx.commit().await.map_err(crate::db::internal)
}

/// Ends leases that ran out (in `queue`, or everywhere): an attempt entry `lease_expired`, a
/// counted failure where the queue limits attempts, then ready again or dead. Rows another
/// server is settling are skipped. Returns how many were ended. The leases are found per queue
/// (`jobs_leased` leads with the queue), so "everywhere" is each queue in turn.
pub async fn expire_leases(
    c: &mut deadpool_postgres::Client,
    queue: Option<i32>,
    limit: i64,
    shard: i16,
) -> Result<usize> {
    const SQL: &str = concat!(
        job_core_select!(),
        "FROM redrive.queues q CROSS JOIN LATERAL (SELECT * FROM redrive.jobs \
           WHERE queue_id = q.id AND state = 2 AND visible_at <= redrive.now_ms() \
           ORDER BY visible_at LIMIT $2 FOR UPDATE SKIP LOCKED) j \
         WHERE $1::int4 IS NULL OR q.id = $1 LIMIT $2"
    );
    let tx = c.transaction().await.map_err(crate::db::internal)?;
    let rows = query(&tx, SQL, &[&queue, &limit]).await?;
    for r in &rows {
        let j = JobCore::from_row(r);
        let now: i64 = r.get(16);
        let outcome = redrive_core::model::Outcome::LeaseExpired;
        transition::end_lease(&tx, j, outcome, None, None, false, now, shard).await?;
    }
    tx.commit().await.map_err(crate::db::internal)?;
    Ok(rows.len())
}

/// The earliest time (ms, database clock) a delayed job or a lease in these queues comes due,
/// and the clock now: how long a parked receive may sleep without missing one. Each is the
/// first entry of an index range (leases per queue; per queue and level, the ready index past
/// the clock, which holds only jobs still delayed, where the jobs before it may be a backlog).
pub async fn next_due(c: &impl GenericClient, queues: &[i32]) -> Result<(Option<i64>, i64)> {
    const SQL: &str = "SELECT least( \
         (SELECT min(l.v) FROM unnest($1::int4[]) q(id), LATERAL (SELECT visible_at AS v \
            FROM redrive.jobs WHERE queue_id = q.id AND state = 2 ORDER BY visible_at LIMIT 1) l), \
         (SELECT min(d.v) FROM unnest($1::int4[]) q(id), unnest('{0,1,2}'::int2[]) p(level), \
            LATERAL (SELECT visible_at AS v FROM redrive.jobs WHERE queue_id = q.id \
              AND priority = p.level AND state IN (0, 1) AND visible_at > redrive.now_ms() \
              ORDER BY visible_at LIMIT 1) d)), \
         redrive.now_ms()";
    let r = crate::db::query_one(c, SQL, &[&queues]).await?;
    Ok((r.get(0), r.get(1)))
}
