//! Retention: a job past its queue's retention goes to the dead-letter queue (reason `expired`)
//! or, without one, is deleted; counted either way. A retention change applies to the jobs
//! already in the queue, as on SQS.
//!
//! The shortest retention is `RETENTION_MIN_MS` (SQS's minute), so this behaviour waits that
//! long: one test, both outcomes and the re-keying at once.

use std::time::{Duration, Instant};

use redrive_core::model::{DeadReason, JobState};
use redrive_core::{limits, Broker, Error};

use crate::{job, queue, send};

/// After its retention the sweep or the store's timers have acted by this much more.
const RETENTION_SLACK: Duration = Duration::from_secs(10);

/// Jobs enqueued under the default retention (days) expire a minute after their enqueue once
/// the queue's retention is set to a minute: the one with a dead-letter queue moves there as
/// `expired`, the other is deleted, and both queues count them.
pub async fn retention_expires_jobs_and_a_change_applies_to_existing_ones<B: Broker>(b: &B) {
    queue(b, "keep", |_| {}).await;
    queue(b, "drop", |p| p.dead_letter_queue = Some(None)).await;
    let enqueued = Instant::now();
    let kept = send(b, "keep", vec![job("kept")]).await[0];
    let dropped = send(b, "drop", vec![job("dropped")]).await[0];
    for q in ["keep", "drop"] {
        let p = redrive_core::QueuePatch {
            retention_ms: Some(limits::RETENTION_MIN_MS),
            ..Default::default()
        };
        b.put_queue(q.into(), p).await.unwrap();
    }
    assert_eq!(b.get_job(kept).await.unwrap().state, JobState::Ready, "not expired early");
    let deadline = enqueued + Duration::from_millis(limits::RETENTION_MIN_MS) + RETENTION_SLACK;
    loop {
        let moved = b.get_job(kept).await.unwrap().queue == "keep-dlq";
        let gone = matches!(b.get_job(dropped).await, Err(Error::JobNotFound(_)));
        if moved && gone {
            break;
        }
        assert!(Instant::now() < deadline, "retention never acted (moved {moved}, gone {gone})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        enqueued.elapsed() >= Duration::from_millis(limits::RETENTION_MIN_MS - 1000),
        "expired from the enqueue time, not before"
    );
    let info = b.get_job(kept).await.unwrap();
    assert_eq!(
        info.dead.map(|d| (d.reason, d.source_queue)),
        Some((DeadReason::Expired, "keep".into()))
    );
    assert_eq!(info.state, JobState::Ready, "a dead letter is ready in its dead-letter queue");
    for q in ["keep", "drop"] {
        let s = b.get_queue(q.into()).await.unwrap().stats;
        assert_eq!((s.totals.expired, s.counts.ready), (1, 0), "{q}");
    }
    let keep = b.get_queue("keep".into()).await.unwrap().stats.totals;
    assert_eq!(keep.dead_lettered, 1);
}
