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

/// Completed jobs are counted while they are kept (`completed_retention_ms`) and no longer
/// once forgotten, while the lifetime totals keep them; dead and leased jobs are counted
/// beside them.
pub async fn completed_jobs_count_until_they_are_forgotten<B: Broker>(b: &B) {
    queue(b, "q", |p| {
        p.completed_retention_ms = Some(crate::SOON_MS);
        p.dead_letter_queue = Some(None);
    })
    .await;
    send(b, "q", vec![job("a"), job("b"), job("c"), job("d")]).await;
    let got = crate::take(b, "q", 4, None).await;
    assert_eq!(got.len(), 4);
    b.ack(vec![got[0].receipt.clone(), got[1].receipt.clone()]).await.unwrap();
    b.fail(crate::failure(&got[2].receipt, None, true)).await.unwrap();
    let s = b.get_queue("q".into()).await.unwrap().stats;
    let counts = (s.counts.completed, s.counts.dead, s.counts.leased, s.counts.ready);
    assert_eq!(counts, (2, 1, 1, 0), "completed, dead, leased, ready");
    assert_eq!(s.dead_letters, 1);
    let deadline = Instant::now() + RETENTION_SLACK;
    loop {
        let s = b.get_queue("q".into()).await.unwrap().stats;
        if s.counts.completed == 0 {
            assert_eq!((s.totals.acked, s.counts.dead, s.counts.leased), (2, 1, 1));
            break;
        }
        assert!(Instant::now() < deadline, "completed jobs never forgotten: {:?}", s.counts);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
