//! The lifetime totals every job moves (enqueued, duplicates, delivered, acked), counted in
//! memory and written every [`FLUSH_MS`] in one statement, as the embedded engine flushes its
//! totals: bumping a totals row inside every enqueue, receive and ack statement cost each of
//! them a row update, its WAL and its row lock held through the commit's flush. A crash loses
//! what this server counted since its last flush; nothing else depends on the totals. The rarer
//! totals (failed, dead-lettered, expired, …) are still bumped in the transaction that causes
//! them (`db::bump`).
//!
//! Reads on this server add what it has not written yet, under the same lock as the flush, so
//! they are exact here and at most one flush behind on the other servers of a fleet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::Pool;
use redrive_core::Result;

use crate::db::{execute, pool_error};

/// How often a server writes the totals it counted.
pub const FLUSH_MS: u64 = 1000;

/// Counts of one queue not yet written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hot {
    pub enqueued: i64,
    pub duplicates: i64,
    pub delivered: i64,
    pub acked: i64,
}

impl Hot {
    /// Adds these counts to totals read from the table.
    pub fn add_to(&self, t: &mut redrive_core::broker::QueueTotals) {
        // Counts only ever grow: none is negative.
        t.enqueued += self.enqueued as u64;
        t.duplicates += self.duplicates as u64;
        t.delivered += self.delivered as u64;
        t.acked += self.acked as u64;
    }

    fn add(&mut self, o: Hot) {
        self.enqueued += o.enqueued;
        self.duplicates += o.duplicates;
        self.delivered += o.delivered;
        self.acked += o.acked;
    }
}

/// This server's unwritten counts by queue id, and the lock a flush and a read of the totals
/// share (so that a read sees each count once: in the table or here).
#[derive(Default)]
pub struct Unflushed {
    counts: Mutex<HashMap<i32, Hot>>,
    flushing: tokio::sync::Mutex<()>,
}

impl Unflushed {
    pub fn add(&self, queue_id: i32, hot: Hot) {
        if hot != Hot::default() {
            self.counts.lock().expect("totals lock").entry(queue_id).or_default().add(hot);
        }
    }

    /// The counts not yet in the table, and a guard that keeps any flush out until it drops:
    /// hold it while reading the table. A holder must not hold a lock the flush's statement
    /// waits for (a `queue_totals` row, or a key lock on a `queues` row): a queue update, the
    /// one reader inside a transaction, takes neither.
    pub async fn snapshot(&self) -> (tokio::sync::MutexGuard<'_, ()>, HashMap<i32, Hot>) {
        let guard = self.flushing.lock().await;
        let counts = self.counts.lock().expect("totals lock").clone();
        (guard, counts)
    }

    /// Writes the counts into one totals row of each queue, picked by process (a write a second
    /// needs no spreading over the shards); queues deleted meanwhile are skipped. On failure the
    /// counts are kept for the next flush.
    pub async fn flush(&self, pool: &Pool) -> Result<()> {
        const SQL: &str = "INSERT INTO redrive.queue_totals AS t \
               (queue_id, shard, enqueued, duplicates, delivered, acked) \
             SELECT u.q, $1, u.e, u.d, u.v, u.a \
             FROM unnest($2::int4[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) \
               AS u(q, e, d, v, a) JOIN redrive.queues q ON q.id = u.q \
             ON CONFLICT (queue_id, shard) DO UPDATE SET enqueued = t.enqueued + EXCLUDED.enqueued, \
               duplicates = t.duplicates + EXCLUDED.duplicates, \
               delivered = t.delivered + EXCLUDED.delivered, acked = t.acked + EXCLUDED.acked";
        if self.counts.lock().expect("totals lock").is_empty() {
            return Ok(());
        }
        // The connection first: readers hold theirs while they wait for this lock.
        let c = pool.get().await.map_err(pool_error)?;
        let _no_read = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.counts.lock().expect("totals lock"));
        let column = |f: fn(&Hot) -> i64| taken.values().map(f).collect::<Vec<i64>>();
        let ids: Vec<i32> = taken.keys().copied().collect();
        let (e, d) = (column(|h| h.enqueued), column(|h| h.duplicates));
        let (v, a) = (column(|h| h.delivered), column(|h| h.acked));
        let shard = (std::process::id() % crate::db::TOTALS_SHARDS) as i16;
        let written = execute(&c, SQL, &[&shard, &ids, &e, &d, &v, &a]).await.map(drop);
        if written.is_err() {
            let mut counts = self.counts.lock().expect("totals lock");
            for (q, hot) in taken {
                counts.entry(q).or_default().add(hot);
            }
        }
        written
    }
}

/// Flushes every [`FLUSH_MS`] until the broker drops.
pub async fn run(pool: Pool, unflushed: std::sync::Arc<Unflushed>) {
    loop {
        tokio::time::sleep(Duration::from_millis(FLUSH_MS)).await;
        if let Err(e) = unflushed.flush(&pool).await {
            tracing::warn!(error = %e, "writing the queue totals failed; retrying next interval");
        }
    }
}
