//! Reading a whole store out, for `redrive migrate` (embedded log → PostgreSQL): every queue
//! with its configuration and totals, every job that has not completed with its body, attempt
//! log and dead-letter information, every idempotency key still in its window, and the
//! control-plane documents.
//!
//! Read-only: nothing is logged, so a store exported and dropped is unchanged.

use std::collections::BTreeMap;

use redrive_core::broker::{DocKind, QueueTotals};
use redrive_core::model::{Attempt, DeadReason, JobState, Priority, GROUP_ATTRIBUTE};
use redrive_core::{QueueConfig, Result};

use super::Store;
use crate::wal::record::{Record, QID_NONE};

/// A queue as exported.
#[derive(Clone, Debug)]
pub struct ExportedQueue {
    pub name: String,
    pub config: QueueConfig,
    pub created_at: u64,
    pub updated_at: u64,
    pub totals: QueueTotals,
}

/// A job that has not completed, as exported. A job leased when the store stopped is exported
/// ready (the engine revokes such leases on start); its epoch is kept, so receipts from before
/// stay stale wherever it goes.
#[derive(Clone, Debug)]
pub struct ExportedJob {
    pub id: u128,
    pub queue: String,
    /// `Delayed`, `Ready` or `Dead`.
    pub state: JobState,
    pub priority: Priority,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    pub group: Option<String>,
    pub receive_count: u32,
    pub failures: u32,
    /// The job's own attempt limit (`None`: its queue's).
    pub max_attempts: Option<u32>,
    pub epoch: u32,
    pub enqueued_at: u64,
    /// Delayed: when it becomes ready; ready: since when.
    pub visible_at: u64,
    pub first_received_at: Option<u64>,
    pub leased_at: Option<u64>,
    /// When it died (dead jobs) or was redriven.
    pub completed_at: Option<u64>,
    /// Retention deadline.
    pub expires_at: u64,
    pub dead_reason: Option<DeadReason>,
    /// The queue it died in, when it now sits in a dead-letter queue.
    pub source_queue: Option<String>,
    pub redrive_count: u32,
    pub redriven_from: Option<String>,
    /// Worker of the last lease.
    pub worker: Option<String>,
    /// The attempt log as kept (the newest `ATTEMPT_LOG_ENTRIES_MAX`).
    pub attempts: Vec<Attempt>,
}

/// An idempotency key still deduplicating.
#[derive(Clone, Debug)]
pub struct ExportedKey {
    pub queue: String,
    pub key: String,
    pub job: u128,
    pub expires_at: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Export {
    pub queues: Vec<ExportedQueue>,
    pub jobs: Vec<ExportedJob>,
    pub keys: Vec<ExportedKey>,
    /// Control-plane documents (triage proposals and policies): kind, key, value.
    pub docs: Vec<(DocKind, String, String)>,
}

impl Store {
    /// Everything a migration copies, as of `now` (ms): queues (dead-letter queues first, so
    /// that references resolve in order), jobs in id order, keys whose window is open.
    pub fn export(&self, now: u64) -> Result<Export> {
        let mut out = Export::default();
        let mut queues: Vec<&super::Queue> = self.queues.values().collect();
        let targets: Vec<&str> =
            queues.iter().filter_map(|q| q.config.dead_letter_queue.as_deref()).collect();
        queues.sort_by_key(|q| (!targets.contains(&q.name.as_str()), q.name.clone()));
        for q in queues {
            out.queues.push(ExportedQueue {
                name: q.name.clone(),
                config: q.config.clone(),
                created_at: q.created_at,
                updated_at: q.updated_at,
                totals: q.totals.clone(),
            });
        }
        for (&id, job) in self.jobs.iter() {
            let m = job.meta;
            if m.state == JobState::Acked {
                continue;
            }
            let Record::Enqueue(e) = self.read_body(job)? else {
                unreachable!("read_body returns enqueue records")
            };
            let mut attributes = e.attributes;
            let group = attributes.remove(GROUP_ATTRIBUTE);
            let leased = m.state == JobState::Leased;
            let name = |qid: u32| (qid != QID_NONE).then(|| self.queue_name(qid));
            out.jobs.push(ExportedJob {
                id,
                queue: self.queue_name(m.qid),
                state: if leased { JobState::Ready } else { m.state },
                priority: m.priority,
                body: e.body,
                attributes,
                idempotency_key: e.idempotency_key,
                traceparent: e.traceparent,
                group,
                receive_count: m.receive_count,
                failures: m.failures,
                max_attempts: (m.max_attempts != 0).then_some(m.max_attempts),
                epoch: m.epoch,
                enqueued_at: m.enqueued_at,
                visible_at: if leased { now } else { m.visible_at },
                first_received_at: (m.first_received_at != 0).then_some(m.first_received_at),
                leased_at: (m.leased_at != 0).then_some(m.leased_at),
                completed_at: (m.completed_at != 0).then_some(m.completed_at),
                expires_at: job.expires_at,
                dead_reason: m.dead_reason,
                source_queue: name(m.source_qid),
                redrive_count: m.redrive_count,
                redriven_from: name(m.redriven_from_qid),
                worker: self.worker_name(job.worker),
                attempts: self.read_attempts(job)?,
            });
        }
        out.jobs.sort_by_key(|j| j.id);
        for ((qid, key), d) in &self.dedup {
            if d.expires_at > now && self.queues.contains_key(qid) {
                out.keys.push(ExportedKey {
                    queue: self.queue_name(*qid),
                    key: key.to_string(),
                    job: d.id,
                    expires_at: d.expires_at,
                });
            }
        }
        out.keys.sort_by(|a, b| (&a.queue, &a.key).cmp(&(&b.queue, &b.key)));
        for ((kind, key), doc) in &self.docs {
            // Totals travel as each queue's `totals`, not as documents.
            let kind = DocKind::from_u8(*kind).filter(|k| *k != DocKind::QueueTotals);
            if let Some(kind) = kind {
                out.docs.push((kind, key.to_string(), doc.value.clone()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use redrive_core::broker::{AckResult, NewJob};
    use redrive_core::model::JobState;
    use redrive_core::QueuePatch;

    use crate::{Durability, MemStorage, Store};

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn export_holds_every_job_not_completed_and_the_open_keys() {
        let mut s = Store::open(Box::new(MemStorage::new()), Durability::Sync, NOW).unwrap();
        s.put_queue(
            "q",
            &QueuePatch { dead_letter_queue: Some(None), ..QueuePatch::default() },
            NOW,
        )
        .unwrap();
        let jobs = vec![
            NewJob { body: "keyed".into(), idempotency_key: Some("k".into()), ..NewJob::default() },
            NewJob { body: "later".into(), delay_ms: Some(60_000), ..NewJob::default() },
            NewJob { body: "done".into(), ..NewJob::default() },
            NewJob { body: "held".into(), group: Some("g".into()), ..NewJob::default() },
        ];
        let ids: Vec<u128> = s.enqueue("q", &jobs, NOW).unwrap().iter().map(|e| e.id.0).collect();
        let qid = s.queue_id("q").unwrap();
        let mut got = Vec::new();
        s.receive_from(qid, 3, None, Some("w"), NOW, &mut got).unwrap();
        let done = got.iter().find(|d| d.body == "done").unwrap().receipt.clone();
        assert_eq!(s.ack(&[done], NOW).unwrap(), [AckResult::Ok]);
        s.commit(NOW).unwrap();

        let e = s.export(NOW + 1).unwrap();
        assert_eq!(e.queues.len(), 1);
        assert_eq!(e.queues[0].totals.acked, 1);
        let bodies: Vec<&str> = e.jobs.iter().map(|j| j.body.as_str()).collect();
        assert_eq!(bodies, ["keyed", "later", "held"], "in id order, the completed one left out");
        // Leased when exported: ready from now, its epoch kept; the group out of the attributes.
        let held = e.jobs.iter().find(|j| j.id == ids[3]).unwrap();
        assert_eq!((held.state, held.visible_at, held.epoch), (JobState::Ready, NOW + 1, 1));
        assert_eq!(held.group.as_deref(), Some("g"));
        assert!(held.attributes.is_empty());
        assert_eq!(held.worker.as_deref(), Some("w"));
        let later = e.jobs.iter().find(|j| j.id == ids[1]).unwrap();
        assert_eq!((later.state, later.visible_at), (JobState::Delayed, NOW + 60_000));
        assert_eq!(e.keys.len(), 1);
        assert_eq!((e.keys[0].key.as_str(), e.keys[0].job), ("k", ids[0]));
    }
}
