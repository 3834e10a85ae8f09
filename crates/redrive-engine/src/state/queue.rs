//! Queues: create, update, delete, and their statistics.

use std::collections::BTreeSet;

use redrive_core::broker::{
    DocKind, PriorityCounts, QueueInfo, QueueStats, QueueTotals, StateCounts,
};
use redrive_core::model::valid_queue_name;
use redrive_core::{limits, Error, QueueConfig, QueuePatch, Result};
use rustc_hash::FxHashMap;

use super::Store;
use crate::wal::{Loc, LOC_NONE};

/// Seconds of history kept for the per-queue rates.
const RATE_WINDOW_S: usize = 60;
/// How often changed totals are logged (and so, at most, what a crash loses of them).
pub const TOTALS_FLUSH_MS: u64 = 10_000;

pub struct Queue {
    pub(super) qid: u32,
    pub(super) name: String,
    pub(super) config: QueueConfig,
    pub(super) version: u32,
    pub(super) created_at: u64,
    pub(super) updated_at: u64,
    pub(super) loc: Loc,
    /// Ready jobs per priority, by (ready since, id): strict priority, FIFO within a level.
    pub(super) ready: [BTreeSet<(u64, u128)>; 3],
    /// Jobs by state (indexed by `JobState as usize`).
    pub(super) counts: [u64; 5],
    /// Jobs here that carry dead-letter information and are not completed, by id (time order).
    pub(super) dead: BTreeSet<u128>,
    pub(super) totals: QueueTotals,
    /// The totals as last logged ([`Store::flush_totals`]).
    pub(super) totals_logged: QueueTotals,
    /// Set while this queue is on the store's woken list.
    pub(super) woken: bool,
    /// The leased jobs of each ordering group, by their place in the group (enqueue time, id):
    /// a FIFO queue holds back the group's jobs behind the first of them.
    pub(super) inflight_groups: FxHashMap<u64, BTreeSet<(u64, u128)>>,
    rate_ring: [(u64, u64); RATE_WINDOW_S],
    rate_second: u64,
}

impl Queue {
    pub fn new(qid: u32, name: String, config: QueueConfig, created_at: u64) -> Queue {
        Queue {
            qid,
            name,
            config,
            version: 0,
            created_at,
            updated_at: created_at,
            loc: LOC_NONE,
            ready: Default::default(),
            counts: [0; 5],
            dead: BTreeSet::new(),
            totals: QueueTotals::default(),
            totals_logged: QueueTotals::default(),
            woken: false,
            inflight_groups: FxHashMap::default(),
            rate_ring: [(0, 0); RATE_WINDOW_S],
            rate_second: 0,
        }
    }

    /// The key a ready job is ordered by: since when it is ready, or on a FIFO queue when it was
    /// enqueued, so that a job coming back from a lease goes before its group's later jobs.
    pub fn ready_since(&self, m: &crate::wal::record::Meta) -> u64 {
        if self.config.fifo {
            m.enqueued_at
        } else {
            m.visible_at
        }
    }

    /// The leased job at `place` (enqueue time, id) of `group` left the lease. It was added
    /// when it was leased (and sets never sit empty), so a missing one is a bug, not a case.
    pub fn release_group(&mut self, group: u64, place: (u64, u128)) {
        let set = self.inflight_groups.get_mut(&group).expect("a leased job's group is held");
        assert!(set.remove(&place), "a leased job is in its group's set");
        if set.is_empty() {
            self.inflight_groups.remove(&group);
        }
    }

    /// Whether a job at `place` in `group` waits behind a leased job of its group. Jobs ahead of
    /// every leased one (made visible again, or left after part of a batch was deleted) go out
    /// at once, as on SQS.
    pub fn held_back(&self, group: u64, place: (u64, u128)) -> bool {
        group != 0
            && self
                .inflight_groups
                .get(&group)
                .and_then(|s| s.first())
                .is_some_and(|first| *first < place)
    }

    /// Records the lifetime totals once per second for the one-minute rates.
    pub fn sample_rates(&mut self, now: u64) {
        let sec = now / 1000;
        if sec != self.rate_second {
            self.rate_second = sec;
            self.rate_ring[sec as usize % RATE_WINDOW_S] =
                (self.totals.enqueued, self.totals.acked);
        }
    }

    fn rates(&self) -> (f64, f64) {
        let oldest = self.rate_ring[(self.rate_second as usize + 1) % RATE_WINDOW_S];
        let span = RATE_WINDOW_S as f64;
        (
            self.totals.enqueued.saturating_sub(oldest.0) as f64 / span,
            self.totals.acked.saturating_sub(oldest.1) as f64 / span,
        )
    }

    pub fn stats(&self, now: u64) -> QueueStats {
        let c = &self.counts;
        let oldest_ready = self.ready.iter().filter_map(|r| r.first().map(|(t, _)| *t)).min();
        let (enqueue_rate, ack_rate) = self.rates();
        QueueStats {
            counts: StateCounts {
                delayed: c[0],
                ready: c[1],
                leased: c[2],
                completed: c[3],
                dead: c[4],
            },
            ready_by_priority: PriorityCounts {
                high: self.ready[0].len() as u64,
                standard: self.ready[1].len() as u64,
                low: self.ready[2].len() as u64,
            },
            dead_letters: self.dead.len() as u64,
            oldest_ready_age_ms: oldest_ready.map_or(0, |t| now.saturating_sub(t)),
            totals: self.totals.clone(),
            enqueue_rate,
            ack_rate,
        }
    }

    pub fn info(&self, now: u64) -> QueueInfo {
        QueueInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            stats: self.stats(now),
        }
    }
}

impl Store {
    /// Creates or patches a queue. A new queue named without `-dlq` gets `<name>-dlq` as its
    /// dead-letter queue (created too) unless the patch sets `dead_letter_queue` explicitly.
    pub fn put_queue(
        &mut self,
        name: &str,
        patch: &QueuePatch,
        now: u64,
    ) -> Result<(QueueInfo, bool)> {
        self.writable()?;
        if !valid_queue_name(name) {
            return Err(Error::InvalidQueueName(name.to_owned()));
        }
        if let Some(&qid) = self.queue_ids.get(name) {
            let q = &self.queues[&qid];
            let config = patch.apply(&q.config)?;
            if config.fifo != q.config.fifo {
                return Err(Error::invalid("fifo", "cannot change after the queue is created"));
            }
            // A dead-letter queue deleted since is only checked when the update names one: a
            // pause or a retention change must not need it fixed first.
            if config.dead_letter_queue != q.config.dead_letter_queue {
                self.check_dlq(name, &config)?;
            }
            if config != q.config {
                let rekey = config.retention_ms != q.config.retention_ms
                    || config.completed_retention_ms != q.config.completed_retention_ms;
                let resumed = q.config.paused && !config.paused;
                let q = self.queues.get_mut(&qid).expect("exists");
                q.config = config;
                q.updated_at = now;
                q.version += 1;
                // Long polls parked on a paused queue look again once it is resumed.
                if resumed && !q.woken {
                    q.woken = true;
                    self.woken.push(qid);
                }
                self.log_queue(qid)?;
                if rekey {
                    self.rekey_expiry(qid);
                }
            }
            return Ok((self.queues[&qid].info(now), false));
        }
        if self.queues.len() >= limits::QUEUES_MAX {
            return Err(Error::LimitExceeded {
                limit: "QUEUES_MAX",
                max: limits::QUEUES_MAX as u64,
            });
        }
        let mut config = patch.new_queue_config(name)?;
        if let Some((dlq, dlq_patch)) = patch.auto_dead_letter_queue(name, &config) {
            if !self.queue_ids.contains_key(&dlq) {
                self.put_queue(&dlq, &dlq_patch, now)?;
            }
            config.dead_letter_queue = Some(dlq);
        }
        self.check_dlq(name, &config)?;
        let qid = self.next_qid;
        self.next_qid += 1;
        self.queues.insert(qid, Queue::new(qid, name.to_owned(), config, now));
        self.queue_ids.insert(name.to_owned(), qid);
        self.log_queue(qid)?;
        Ok((self.queues[&qid].info(now), true))
    }

    /// Retention changes apply to the jobs already in the queue (as on SQS).
    fn rekey_expiry(&mut self, qid: u32) {
        let ids: Vec<u128> =
            self.jobs.iter().filter(|(_, j)| j.meta.qid == qid).map(|(id, _)| *id).collect();
        let config = self.queues[&qid].config.clone();
        for id in ids {
            self.unindex(id);
            let job = self.jobs.get_mut(&id).expect("listed");
            job.expires_at = super::expiry_of(&job.meta, &config);
            self.index(id);
        }
    }

    fn check_dlq(&self, name: &str, config: &QueueConfig) -> Result<()> {
        if let Some(dlq) = &config.dead_letter_queue {
            // A queue may be its own dead-letter queue, as on SQS: its dead jobs start over.
            if dlq == name {
                return Ok(());
            }
            let Some(qid) = self.queue_ids.get(dlq) else {
                return Err(Error::invalid(
                    "dead_letter_queue",
                    format!("queue {dlq:?} does not exist"),
                ));
            };
            if self.queues[qid].config.fifo != config.fifo {
                return Err(Error::invalid(
                    "dead_letter_queue",
                    "a FIFO queue's dead-letter queue must be FIFO, a standard queue's standard",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn log_queue(&mut self, qid: u32) -> Result<()> {
        let q = &self.queues[&qid];
        let config = serde_json::to_string(&q.config).expect("config serializes");
        let (version, created, updated) = (q.version, q.created_at, q.updated_at);
        let name = q.name.clone();
        let loc =
            self.wal.append(|e| e.queue_put(qid, version, created, updated, &name, &config))?;
        let q = self.queues.get_mut(&qid).expect("exists");
        let old = std::mem::replace(&mut q.loc, loc);
        self.wal.hold(old, -1);
        self.wal.hold(loc, 1);
        Ok(())
    }

    pub fn get_queue(&self, name: &str, now: u64) -> Result<QueueInfo> {
        Ok(self.queues[&self.queue_id(name)?].info(now))
    }

    pub fn list_queues(&self, now: u64) -> Vec<QueueInfo> {
        let mut v: Vec<QueueInfo> = self.queues.values().map(|q| q.info(now)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Logs the lifetime totals of the queues whose totals changed since they were last logged,
    /// at most every [`TOTALS_FLUSH_MS`] unless `force` (shutdown): totals are counted in
    /// memory, and these documents carry them across restarts. A crash loses what was counted
    /// since the last flush; nothing else depends on them.
    pub fn flush_totals(&mut self, now: u64, force: bool) -> Result<()> {
        if !force && now < self.totals_flushed_at.saturating_add(TOTALS_FLUSH_MS) {
            return Ok(());
        }
        self.totals_flushed_at = now;
        let changed: Vec<u32> =
            self.queues.values().filter(|q| q.totals != q.totals_logged).map(|q| q.qid).collect();
        for qid in changed {
            let q = &self.queues[&qid];
            let (name, totals) = (q.name.clone(), q.totals.clone());
            let json = serde_json::to_string(&totals).expect("totals serialize");
            self.put_doc(DocKind::QueueTotals, &name, Some(&json))?;
            self.queues.get_mut(&qid).expect("listed").totals_logged = totals;
        }
        Ok(())
    }

    /// Takes the logged totals back after a restart (before anything counts again).
    pub(super) fn restore_totals(&mut self) {
        let logged: Vec<(String, String)> = self
            .docs
            .iter()
            .filter(|((kind, _), _)| *kind == DocKind::QueueTotals as u8)
            .map(|((_, name), d)| (name.to_string(), d.value.clone()))
            .collect();
        for (name, json) in logged {
            let Some(qid) = self.queue_ids.get(&name) else { continue };
            let Ok(totals) = serde_json::from_str::<QueueTotals>(&json) else {
                tracing::warn!(queue = %name, "unreadable logged totals; counting from 0");
                continue;
            };
            let q = self.queues.get_mut(qid).expect("indexed");
            q.totals = totals.clone();
            q.totals_logged = totals;
        }
    }

    /// Deletes a queue and every job in it.
    pub fn delete_queue(&mut self, name: &str) -> Result<()> {
        self.writable()?;
        let qid = self.queue_id(name)?;
        // A queue created later under this name starts from 0.
        self.put_doc(DocKind::QueueTotals, name, None)?;
        self.put_doc(DocKind::DedupCleared, name, None)?;
        let ids: Vec<u128> =
            self.jobs.iter().filter(|(_, j)| j.meta.qid == qid).map(|(id, _)| *id).collect();
        for id in ids {
            self.remove_job(id)?;
        }
        let q = self.queues.remove(&qid).expect("exists");
        self.metrics.latency.remove(&qid);
        self.queue_ids.remove(&q.name);
        self.wal.hold(q.loc, -1);
        self.clear_dedup(qid);
        let loc = self.wal.append(|e| e.queue_delete(qid))?;
        self.wal.hold_tombstone(loc, 1);
        Ok(())
    }

    /// Forgets every idempotency key of a queue (their expiry entries lapse on their own).
    pub(super) fn clear_dedup(&mut self, qid: u32) {
        let keys: Vec<(u32, Box<str>)> =
            self.dedup.keys().filter(|(d, _)| *d == qid).cloned().collect();
        for k in keys {
            let d = self.dedup.remove(&k).expect("listed");
            self.wal.hold(d.loc, -1);
        }
    }

    pub fn queue_stats(&self, name: &str, now: u64) -> Result<QueueStats> {
        Ok(self.queues[&self.queue_id(name)?].stats(now))
    }
}
