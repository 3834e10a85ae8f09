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

use crate::db::{ms, query, sql_ms, QueueRow};
use crate::transition::{self, job_core_select, JobCore};

/// What the leased rows return, shared by both candidate queries: kind 0 a leased job, kind 1
/// a job to kill or expire instead, and always one kind-2 row, `$ready_heads` (three columns:
/// where each level's candidates began, for the standard statement) then the clock and whether
/// a lease of the queue has run out. That probe starts at `$8`, the queue's lease floor (see
/// [`Floors`]), and bounds its scan by the clock (a scalar, so an index condition): joined to
/// `n` instead, it read every lease in flight at every receive. The update finds the picked
/// rows by `ctid`, the row version the statement locked (no other statement can change a row
/// it holds locked), not by a primary-key descent per row.
macro_rules! lease_tail {
    ($ready_heads:literal) => {
        concat!(
            "doomed AS (SELECT id FROM pick, n WHERE ($4::int4 IS NOT NULL AND receive_count >= $4) \
                OR expires_at <= n.now), \
             leased AS ( \
               UPDATE redrive.jobs j SET state = 2, lease_epoch = j.lease_epoch + 1, \
                 receive_count = j.receive_count + 1, \
                 first_received_at = coalesce(j.first_received_at, n.now), leased_at = n.now, \
                 visible_at = n.now + $5, worker_id = $6 \
               FROM pick p, n WHERE j.ctid = p.tid AND j.id = p.id \
                 AND p.id NOT IN (SELECT id FROM doomed) \
               RETURNING j.id, j.body, j.attributes::text, j.priority, j.lease_epoch, \
                 j.receive_count, j.enqueued_at, j.first_received_at, j.visible_at, j.traceparent, \
                 j.group_id, j.dead_reason, j.completed_at, \
                 CASE WHEN j.dead_reason IS NOT NULL THEN (SELECT s.name FROM redrive.queues s \
                   WHERE s.id = coalesce(j.source_queue_id, j.queue_id)) END AS source, \
                 n.now - p.visible_at AS waited, p.eff::int4 AS eff, p.ord) \
             SELECT 0, id, body, attributes, priority, lease_epoch, receive_count, enqueued_at, \
               first_received_at, visible_at, traceparent, group_id, dead_reason, completed_at, \
               source, waited, eff, ord, NULL::int8, NULL::int8, NULL::int8, NULL::int8, NULL::bool \
             FROM leased \
             UNION ALL SELECT 1, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM doomed \
             UNION ALL SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
               NULL, NULL, NULL, NULL, NULL, NULL, ",
            $ready_heads,
            ", (SELECT now FROM n), EXISTS (SELECT 1 FROM redrive.jobs e \
                 WHERE e.state = 2 AND e.queue_id = $1 \
                 AND e.visible_at >= coalesce($8::int8, -9223372036854775807) \
                 AND e.visible_at <= (SELECT now FROM n))"
        )
    };
}

/// One level's candidates: up to `$2` ready jobs from the level's floor on (`$floor`; NULL
/// scans from the start).
macro_rules! candidates {
    ($name:literal, $level:literal, $floor:literal) => {
        concat!(
            $name,
            " AS (SELECT ctid AS tid, id, priority, visible_at, receive_count, expires_at \
               FROM redrive.jobs WHERE queue_id = $1 AND state IN (0, 1) AND priority = ",
            $level,
            " AND visible_at >= coalesce(",
            $floor,
            "::int8, -9223372036854775807) AND visible_at <= (SELECT now FROM n) \
               ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), "
        )
    };
}

/// Standard queues: up to `$2` candidates per level, best `least($2, $7)` by (effective
/// level, ready since); `$7` is the queue's room for more leases (see [`Scans`]). `$3` is the
/// aging time (NULL = off). The union of three index range scans keeps a receive's cost
/// independent of the backlog, and the floors (`$8` for leases, `$9`–`$11` per level) keep it
/// independent of the jobs that went before: see [`Floors`].
pub const STANDARD_SQL: &str = concat!(
    "WITH n AS (SELECT redrive.now_ms() AS now), ",
    candidates!("c0", "0", "$9"),
    candidates!("c1", "1", "$10"),
    candidates!("c2", "2", "$11"),
    "pick AS (SELECT u.*, CASE WHEN $3::int8 IS NOT NULL AND u.priority > 0 \
         AND n.now - u.visible_at >= $3 THEN u.priority - 1 ELSE u.priority END AS eff, u.visible_at AS ord \
       FROM (SELECT * FROM c0 UNION ALL SELECT * FROM c1 UNION ALL SELECT * FROM c2) u, n \
       ORDER BY eff, visible_at, priority, id LIMIT least($2::int8, $7::int8)), ",
    lease_tail!(
        "(SELECT min(visible_at) FROM c0), (SELECT min(visible_at) FROM c1), \
         (SELECT min(visible_at) FROM c2)"
    )
);

/// The end of both FIFO statements, from their candidates (`cand`): in the order SQS hands them
/// out (the engine's `fifo_order`), by group — as many of one group as the batch takes before
/// the next — with groups in the order their first candidate became visible (a group back from
/// a lease goes after the groups that kept waiting), each group in enqueue order, the best
/// `$limit`. Priorities do not reorder a FIFO queue: `ord` is the rank, numbered after the
/// limit (a top-N sort of the candidates, not a full sort and a numbering of all of them: 3.5
/// against 2.9 ms a statement over 1,000 candidates). `$3` is unused (no aging).
macro_rules! fifo_tail {
    ($limit:literal, $ready_heads:literal) => {
        concat!(
            "ranked AS (SELECT id, \
                 row_number() OVER (ORDER BY head, head_id, enqueued_at, id) AS rank \
               FROM (SELECT * FROM (SELECT c.*, first_value(c.visible_at) OVER g AS head, \
                 first_value(c.id) OVER g AS head_id FROM cand c \
                 WINDOW g AS (PARTITION BY coalesce(c.group_id, c.id::text) \
                   ORDER BY c.enqueued_at, c.id)) h \
               ORDER BY head, head_id, enqueued_at, id LIMIT ",
            $limit,
            ") t), \
             pick AS (SELECT j.ctid AS tid, j.id, j.priority, j.visible_at, j.receive_count, \
                 j.expires_at, 0 * coalesce($3::int8, 0) AS eff, r.rank AS ord \
               FROM redrive.jobs j JOIN ranked r ON r.id = j.id FOR UPDATE OF j SKIP LOCKED), ",
            lease_tail!($ready_heads)
        )
    };
}

/// FIFO queues: the ready jobs not behind a leased job of their group (a job ahead of every
/// leased one goes out at once), in [`fifo_tail`]'s order. The caller holds the queue's
/// advisory lock so that two receives cannot both take a group. The statement takes only the
/// first [`FIFO_PARAMS`] parameters (the ready scan has no floor).
///
/// The candidates are the free jobs among the first 1,000 ready ones in enqueue order
/// (`jobs_fifo`), each asking `jobs_fifo_leased` whether a lease of its group is ahead of it
/// (schema migration 8), so the backlog does not set the cost. When those 1,000 hold fewer
/// free jobs than the receive wants (a group held by a lease with a long backlog in front) the
/// statement leases nothing and says so in the first ready-heads column, and the caller runs
/// [`FIFO_BY_GROUP_SQL`] instead: walking on in enqueue order would visit every job behind
/// the lease. Only a short answer asks more (the later operands of `held`'s `AND`, so the walk
/// itself is not kept for a count): were there 1,000 to look at, and is any job visible after
/// them (`jobs_ready`, by visible time; `+ 0` keeps the planner off `jobs_fifo`, whose range
/// past the look-ahead holds the whole backlog)? If none is, every visible job was looked at and the
/// walk by group could find nothing more: a FIFO queue whose backlog is delayed jobs would
/// otherwise have each receive that finds nothing read them all.
pub const FIFO_SQL: &str = concat!(
    "WITH n AS (SELECT redrive.now_ms() AS now), ",
    "cand AS (SELECT l.* FROM (SELECT j.id, j.group_id, j.enqueued_at, j.visible_at \
         FROM redrive.jobs j WHERE j.queue_id = $1 AND j.state IN (0, 1) AND j.ordered \
         ORDER BY j.enqueued_at, j.id LIMIT 1000) l, n WHERE l.visible_at <= n.now \
       AND (l.group_id IS NULL OR NOT EXISTS (SELECT 1 FROM redrive.jobs x \
            WHERE x.queue_id = $1 AND x.state = 2 AND x.ordered AND x.group_id IS NOT NULL \
            AND x.group_id = l.group_id \
            AND (x.enqueued_at, x.id) < (l.enqueued_at, l.id)))), \
     held AS (SELECT (SELECT count(*) FROM cand) < least($2::int8, $7::int8) \
       AND EXISTS (SELECT 1 FROM (SELECT j.enqueued_at, j.id FROM redrive.jobs j \
           WHERE j.queue_id = $1 AND j.state IN (0, 1) AND j.ordered \
           ORDER BY j.enqueued_at, j.id OFFSET 999 LIMIT 1) k, n \
         WHERE EXISTS (SELECT 1 FROM redrive.jobs v WHERE v.queue_id = $1 \
           AND v.state IN (0, 1) AND v.priority IN (0, 1, 2) AND v.visible_at <= n.now \
           AND v.ordered AND (v.enqueued_at + 0, v.id) > (k.enqueued_at, k.id))) AS by_group), ",
    fifo_tail!(
        "CASE WHEN (SELECT by_group FROM held) THEN 0 ELSE least($2::int8, $7::int8) END",
        "CASE WHEN (SELECT by_group FROM held) THEN 1 END, NULL::int8, NULL::int8"
    )
);

/// [`FIFO_SQL`] when the first 1,000 ready jobs are held: the candidates come group by group
/// (a skip scan of `jobs_fifo_groups`, schema migration 9, one probe per group), each group's
/// being its ready jobs ahead of its first lease, so a held group costs one probe however many
/// jobs wait behind its lease; jobs without a group come from the same index in enqueue order.
pub const FIFO_BY_GROUP_SQL: &str = concat!(
    "WITH RECURSIVE n AS (SELECT redrive.now_ms() AS now), ",
    "groups (g) AS ((SELECT j.group_id FROM redrive.jobs j WHERE j.queue_id = $1 \
         AND j.state IN (0, 1) AND j.ordered AND j.group_id IS NOT NULL \
         ORDER BY j.group_id LIMIT 1) \
       UNION ALL SELECT (SELECT j.group_id FROM redrive.jobs j WHERE j.queue_id = $1 \
         AND j.state IN (0, 1) AND j.ordered AND j.group_id > s.g ORDER BY j.group_id LIMIT 1) \
       FROM groups s WHERE s.g IS NOT NULL), \
     cand AS (SELECT f.* FROM groups s \
       LEFT JOIN LATERAL (SELECT x.enqueued_at, x.id FROM redrive.jobs x WHERE x.queue_id = $1 \
         AND x.state = 2 AND x.ordered AND x.group_id IS NOT NULL AND x.group_id = s.g \
         ORDER BY x.enqueued_at, x.id LIMIT 1) l ON true \
       CROSS JOIN LATERAL (SELECT j.id, j.group_id, j.enqueued_at, j.visible_at \
         FROM redrive.jobs j, n WHERE j.queue_id = $1 AND j.state IN (0, 1) AND j.ordered \
         AND j.group_id = s.g AND (j.enqueued_at, j.id) < (coalesce(l.enqueued_at, \
           9223372036854775807), coalesce(l.id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)) \
         AND j.visible_at <= n.now ORDER BY j.enqueued_at, j.id LIMIT least($2::int8, $7::int8)) f \
       WHERE s.g IS NOT NULL \
       UNION ALL (SELECT j.id, j.group_id, j.enqueued_at, j.visible_at FROM redrive.jobs j, n \
         WHERE j.queue_id = $1 AND j.state IN (0, 1) AND j.ordered AND j.group_id IS NULL \
         AND j.visible_at <= n.now \
         ORDER BY j.group_id, j.enqueued_at, j.id LIMIT least($2::int8, $7::int8))), ",
    fifo_tail!("least($2::int8, $7::int8)", "NULL::int8, NULL::int8, NULL::int8")
);

/// How many of [`Lease::params`] each statement takes: all, or all but the ready floors.
const STANDARD_PARAMS: usize = 11;
const FIFO_PARAMS: usize = 8;

/// `pg_advisory_xact_lock` keys of FIFO receives: this base plus the queue id.
const FIFO_LOCK_BASE: i64 = 0x7264_6669_0000_0000;

/// The key of `q`'s FIFO receive lock, the parameter of [`FIFO_LOCK_SQL`].
pub fn fifo_lock_key(q: &QueueRow) -> i64 {
    FIFO_LOCK_BASE + i64::from(q.id)
}

/// The first statement of a FIFO receive's transaction: takes the queue's lock (`$1`), and
/// has [`FIFO_SQL`] planned (once per connection, for any queue: a generic plan) as a walk of
/// `jobs_fifo` in order. Left to its estimates, the generic plan read every ready job of the
/// queue through `jobs_ready` and sorted them (20,760 buffers behind 20,000 jobs against 1,200;
/// `tests/fifo_scan.rs`). The settings end with the transaction, and a plan is only ever made
/// (or remade) inside one.
pub const FIFO_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1), \
     set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)";

/// How many more jobs each queue may have in flight (`INFLIGHT_PER_QUEUE_MAX` less its
/// leases), as this server last counted them and has leased since. Counting costs a read of
/// every lease of the queue, so a receive counts only when the last count is older than
/// [`ROOM_RECOUNT`] or left less than [`ROOM_MARGIN`]: far from the limit a receive reads no
/// lease, near it every receive counts. The limit is approximate, as on SQS: other servers'
/// leases since the last count are not seen, which matters only within the margin.
#[derive(Default)]
struct Rooms(Mutex<HashMap<i32, (i64, Instant)>>);

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

/// Where a queue's live entries begin in the indexes a receive scans, as this server last
/// found them: per priority level in `jobs_ready`, and in `jobs_leased` for the leases that
/// may have run out. `None` scans from the start.
///
/// Why: a job leased or acked leaves its old entry in these indexes until a vacuum removes it,
/// and they are ordered by `visible_at`, so a scan from the start walks every job that went
/// before since the last vacuum (a lease scan cost 0.07 ms more after 30,000 jobs, 0.72 ms
/// after 300,000: about 40% of the database's work per job by then). A scan from the floor
/// skips them.
///
/// A floor is where the last scan found the level's first candidate (or the clock, where it
/// found none), less [`FLOOR_MARGIN_MS`]. Every writer sets `visible_at` from the clock at its
/// statement (now, now + delay, now + backoff), so a job committed after that scan lies past
/// the floor unless its transaction ran longer than the margin. Such a late job, or one an
/// import wrote with an older `visible_at`, is found late, never lost: floors are dropped
/// every [`FLOOR_RESCAN`], and a scan from floors that finds nothing scans again from the start
/// when the last such scan is [`EMPTY_RESCAN`] old (a long poll that finds nothing sooner looks
/// again within that time), so that queues whose receivers often find nothing do not walk the
/// old entries at every receive.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Floors {
    pub ready: [Option<i64>; 3],
    pub leases: Option<i64>,
}

/// How far before the first entry it found a scan's floor lies (ms): the longest an enqueue's
/// (or a fail's) transaction may take from its statement to its commit and still be found at
/// once. Walking the entries of this many milliseconds of jobs costs little.
pub const FLOOR_MARGIN_MS: i64 = 250;
/// How long floors stand before a receive scans the queue from the start again (and sets
/// them anew): the longest a job written behind a floor waits beyond its turn while receives
/// find other jobs.
pub const FLOOR_RESCAN: Duration = Duration::from_millis(250);
/// How soon after a scan from the start a receive that found nothing from the floors scans from
/// the start again: the longest a job written behind a floor waits once the queue is otherwise
/// empty.
pub const EMPTY_RESCAN: Duration = Duration::from_millis(20);

/// What a leasing statement saw of the queue: where each level's candidates began (`None`:
/// none at or past the floor), the database's clock, and whether a lease had run out.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub heads: [Option<i64>; 3],
    pub now: i64,
    pub leases_due: bool,
}

impl Floors {
    /// True when no floor bounds the scan.
    pub fn is_full(&self) -> bool {
        *self == Floors::default()
    }

    /// The floors a scan from `self` that saw `seen` sets.
    pub fn after(&self, seen: &Seen) -> Floors {
        let margin = |at: i64| Some(at - FLOOR_MARGIN_MS);
        Floors {
            ready: seen.heads.map(|head| margin(head.unwrap_or(seen.now))),
            leases: if seen.leases_due { self.leases } else { margin(seen.now) },
        }
    }

    /// The higher of each pair: two scans from floors both leave floors that hold.
    fn max(&self, other: &Floors) -> Floors {
        let mut out = *self;
        for (a, b) in out.ready.iter_mut().zip(other.ready) {
            *a = (*a).max(b);
        }
        out.leases = out.leases.max(other.leases);
        out
    }
}

/// What this server last learnt of each queue it leases from: its room for more leases and
/// its floors.
#[derive(Default)]
pub struct Scans {
    rooms: Rooms,
    floors: Mutex<HashMap<i32, Known>>,
}

/// A queue's floors, when the scan from the start that set them ran, and whether a scan from
/// them found nothing since (the next one then scans from the start, [`EMPTY_RESCAN`] after
/// the last).
struct Known {
    floors: Floors,
    since: Instant,
    found_nothing: bool,
}

impl Scans {
    /// The floors a receive of `queue` scans from: none when the last scan from the start is
    /// older than [`FLOOR_RESCAN`], or older than [`EMPTY_RESCAN`] and a scan from the floors
    /// found nothing since.
    pub fn floors(&self, queue: i32) -> Floors {
        match self.floors.lock().expect("floors lock").get(&queue) {
            Some(k)
                if k.since.elapsed() < FLOOR_RESCAN
                    && !(k.found_nothing && k.since.elapsed() >= EMPTY_RESCAN) =>
            {
                k.floors
            }
            _ => Floors::default(),
        }
    }

    /// A scan of `queue` from `from` saw `seen`.
    fn scanned(&self, queue: i32, from: &Floors, seen: &Seen) {
        let after = from.after(seen);
        let mut g = self.floors.lock().expect("floors lock");
        if from.is_full() {
            // Floors long unused (deleted queues among them) are dropped.
            g.retain(|_, k| k.since.elapsed() < 240 * FLOOR_RESCAN);
            let known = Known { floors: after, since: Instant::now(), found_nothing: false };
            g.insert(queue, known);
        } else if let Some(k) = g.get_mut(&queue) {
            k.floors = k.floors.max(&after);
            k.found_nothing |= seen.heads.iter().all(Option::is_none);
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
    /// Nothing from the floors on, and the scan from the start is due within [`EMPTY_RESCAN`]:
    /// a long poll looks again by then.
    pub rescan_due: bool,
    /// A FIFO queue's first 1,000 ready jobs are held by leases: nothing was leased, and
    /// [`FIFO_BY_GROUP_SQL`] is to run instead.
    pub by_group: bool,
}

impl Leased {
    /// Nothing delivered and nothing left to settle.
    fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.settled()
    }

    /// Nothing left for another statement of this receive to do.
    pub fn settled(&self) -> bool {
        self.doomed.is_empty() && !self.expired_leases && !self.by_group
    }
}

pub async fn lease(
    c: &mut deadpool_postgres::Client,
    scans: &Scans,
    q: &QueueRow,
    max: u32,
    lease_ms: Option<u64>,
    worker: Option<&str>,
) -> Result<Leased> {
    if !q.config.fifo {
        let mut lease = Lease::new(&*c, scans, q, max, lease_ms, worker).await?;
        let got = lease.run(&*c).await?;
        if !got.is_empty() || !lease.floored() {
            return Ok(got);
        }
        // Nothing from the floors on: look from the start, or soon.
        lease.floors = scans.floors(q.id);
        if lease.floored() {
            return Ok(Leased { rescan_due: true, ..got });
        }
        return lease.run(&*c).await;
    }
    let tx = c.transaction().await.map_err(crate::db::internal)?;
    query(&tx, FIFO_LOCK_SQL, &[&fifo_lock_key(q)]).await?;
    let mut lease = Lease::new(&tx, scans, q, max, lease_ms, worker).await?;
    let mut r = lease.run(&tx).await?;
    if r.by_group {
        lease.by_group = true;
        r = lease.run(&tx).await?;
    }
    tx.commit().await.map_err(crate::db::internal)?;
    Ok(r)
}

/// A leasing statement's parameters, with the queue's in-flight room counted and its floors:
/// what `PgBroker::ack_receive` sends in a pipeline of its own.
pub struct Lease<'a> {
    scans: &'a Scans,
    q: &'a QueueRow,
    max: i64,
    aging: Option<i64>,
    max_receives: Option<i32>,
    lease: i64,
    worker: Option<&'a str>,
    room: i64,
    /// Where the scans start (FIFO queues: the ready scan has no floor).
    floors: Floors,
    /// FIFO queues: walk group by group ([`FIFO_BY_GROUP_SQL`]).
    by_group: bool,
}

impl<'a> Lease<'a> {
    pub async fn new(
        c: &impl GenericClient,
        scans: &'a Scans,
        q: &'a QueueRow,
        max: u32,
        lease_ms: Option<u64>,
        worker: Option<&'a str>,
    ) -> Result<Lease<'a>> {
        let floors = scans.floors(q.id);
        Ok(Lease {
            scans,
            q,
            max: i64::from(max),
            aging: q.config.priority_aging_ms.map(sql_ms),
            max_receives: q.config.max_receive_count.map(|n| n as i32),
            lease: sql_ms(lease_ms.unwrap_or(q.config.visibility_timeout_ms)),
            worker,
            room: scans.rooms.room(c, q.id).await?.max(0),
            floors,
            by_group: false,
        })
    }

    /// `$1..$11` of [`STANDARD_SQL`] (`FIFO_SQL` takes the first [`FIFO_PARAMS`]).
    pub fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); STANDARD_PARAMS] {
        let Lease { q, max, aging, max_receives, lease, worker, room, floors, .. } = self;
        let [r0, r1, r2] = &floors.ready;
        [&q.id, max, aging, max_receives, lease, worker, room, &floors.leases, r0, r1, r2]
    }

    /// True when the scans start at floors, so an empty answer may have missed a late job.
    pub fn floored(&self) -> bool {
        !self.floors.is_full()
    }

    /// The queue's leasing statement (standard or FIFO) and how many of [`Lease::params`] it
    /// takes.
    pub fn statement(&self) -> (&'static str, usize) {
        match (self.q.config.fifo, self.by_group) {
            (true, false) => (FIFO_SQL, FIFO_PARAMS),
            (true, true) => (FIFO_BY_GROUP_SQL, FIFO_PARAMS),
            (false, _) => (STANDARD_SQL, STANDARD_PARAMS),
        }
    }

    /// Runs the queue's statement on `c`.
    async fn run(&self, c: &impl GenericClient) -> Result<Leased> {
        let (sql, n) = self.statement();
        self.leased(&query(c, sql, &self.params()[..n]).await?)
    }

    /// What the statement returned, as deliveries (best first) and work left for the caller.
    pub fn leased(&self, rows: &[Row]) -> Result<Leased> {
        let mut out = Leased {
            deliveries: Vec::new(),
            waited_ms: Vec::new(),
            doomed: Vec::new(),
            expired_leases: false,
            at_inflight_max: self.room == 0,
            rescan_due: false,
            by_group: false,
        };
        // The statement returns leased rows in no set order; deliver best first.
        let mut leased: Vec<(i32, i64, Uuid, &Row)> = Vec::with_capacity(rows.len());
        for r in rows {
            match r.get::<_, i32>(0) {
                0 => leased.push((r.get(16), r.get(17), r.get(1), r)),
                1 => out.doomed.push(r.get(1)),
                _ => {
                    let seen = Seen {
                        heads: [r.get(18), r.get(19), r.get(20)],
                        now: r.get(21),
                        leases_due: r.get(22),
                    };
                    out.expired_leases = seen.leases_due;
                    match self.q.config.fifo {
                        true => out.by_group = seen.heads[0].is_some(),
                        false => self.scans.scanned(self.q.id, &self.floors, &seen),
                    }
                }
            }
        }
        self.scans.rooms.took(self.q.id, leased.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_lie_a_margin_before_what_a_scan_saw() {
        let seen = Seen { heads: [None, Some(10_000), None], now: 20_000, leases_due: false };
        let after = Floors::default().after(&seen);
        let m = FLOOR_MARGIN_MS;
        assert_eq!(after.ready, [Some(20_000 - m), Some(10_000 - m), Some(20_000 - m)]);
        assert_eq!(after.leases, Some(20_000 - m));
        // Leases ran out: the lease floor stays where the scan started, for them to be ended.
        let from = Floors { leases: Some(5), ..Floors::default() };
        assert_eq!(from.after(&Seen { leases_due: true, ..seen }).leases, Some(5));
    }

    #[test]
    fn a_scan_from_the_start_sets_floors_and_scans_from_floors_only_raise_them() {
        let scans = Scans::default();
        let seen = |head, now| Seen { heads: [None, Some(head), None], now, leases_due: false };
        let floored = Floors { ready: [Some(1); 3], leases: Some(1) };
        // Floors come only from a scan from the start.
        scans.scanned(7, &floored, &seen(10_000, 20_000));
        assert!(scans.floors(7).is_full());
        scans.scanned(7, &Floors::default(), &seen(10_000, 20_000));
        let set = scans.floors(7);
        assert_eq!(set.ready[1], Some(10_000 - FLOOR_MARGIN_MS));
        scans.scanned(7, &set, &seen(9_000, 21_000));
        assert_eq!(scans.floors(7).ready[1], Some(10_000 - FLOOR_MARGIN_MS));
        scans.scanned(7, &set, &seen(12_000, 21_000));
        assert_eq!(scans.floors(7).ready[1], Some(12_000 - FLOOR_MARGIN_MS));
        assert_eq!(scans.floors(7).ready[0], Some(21_000 - FLOOR_MARGIN_MS));
        // After a scan from them that found nothing, the next scan is from the start, but not
        // sooner than a while after the last.
        let nothing = Seen { heads: [None; 3], now: 21_000, leases_due: false };
        scans.scanned(7, &set, &nothing);
        assert!(!scans.floors(7).is_full());
        std::thread::sleep(EMPTY_RESCAN);
        assert!(scans.floors(7).is_full());
        scans.scanned(7, &Floors::default(), &seen(10_000, 22_000));
        assert!(!scans.floors(7).is_full(), "that scan set them anew");
        // Then they lapse, and the next scan starts from the start.
        std::thread::sleep(FLOOR_RESCAN);
        assert!(scans.floors(7).is_full());
        assert!(scans.floors(8).is_full());
    }
}
