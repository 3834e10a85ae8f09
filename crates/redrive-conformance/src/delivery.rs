//! Delivery: enqueue and receive, priorities, delays, leases, heartbeats and fencing.

use redrive_core::broker::AckResult;
use redrive_core::model::{JobState, Outcome, Priority};
use redrive_core::{Broker, Error};

use crate::{bodies, job, prio, queue, send, take, AFTER_SOON, SOON_MS};

/// A job enqueued is received once with its body and attributes, acked, and then done.
pub async fn enqueue_receive_ack<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let mut j = job("hello");
    j.attributes.insert("k".into(), "v".into());
    let id = send(b, "q", vec![j]).await[0];
    let d = take(b, "q", 10, None).await;
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].id, d[0].body.as_str(), d[0].attempt), (id, "hello", 1));
    assert_eq!(d[0].attributes.get("k").map(String::as_str), Some("v"));
    assert_eq!(d[0].queue, "q");
    assert!(take(b, "q", 10, None).await.is_empty(), "leased jobs are not delivered twice");
    assert_eq!(b.ack(vec![d[0].receipt.clone()]).await.unwrap(), vec![AckResult::Ok]);
    let info = b.get_job(id).await.unwrap();
    assert_eq!(info.state, JobState::Acked);
    assert!(info.completed_at.is_some());
    assert_eq!(info.body, None, "a completed job's body is released");
    assert_eq!(info.attempts.last().map(|a| a.outcome), Some(Outcome::Ok));
    let stats = b.get_queue("q".into()).await.unwrap().stats;
    assert_eq!((stats.totals.enqueued, stats.totals.delivered, stats.totals.acked), (1, 1, 1));
    assert_eq!(stats.counts.completed, 1);
}

/// High before standard before low; within a level, first in first out.
pub async fn priorities_are_strict_and_fifo_within_a_level<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let jobs = vec![
        prio("low-1", Priority::Low),
        prio("std-1", Priority::Standard),
        prio("high-1", Priority::High),
        prio("std-2", Priority::Standard),
        prio("high-2", Priority::High),
        prio("low-2", Priority::Low),
    ];
    send(b, "q", jobs).await;
    let d = take(b, "q", 10, None).await;
    assert_eq!(bodies(&d), ["high-1", "high-2", "std-1", "std-2", "low-1", "low-2"]);
    let one = take(b, "q", 1, None).await;
    assert!(one.is_empty());
}

/// A delayed job is not delivered before its time and is delivered after it.
pub async fn delayed_jobs_wait_for_their_time<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let later = redrive_core::broker::NewJob { delay_ms: Some(SOON_MS), ..job("later") };
    send(b, "q", vec![later, job("now")]).await;
    assert_eq!(bodies(&take(b, "q", 10, None).await), ["now"]);
    let stats = b.get_queue("q".into()).await.unwrap().stats;
    assert_eq!((stats.counts.delayed, stats.counts.leased), (1, 1));
    tokio::time::sleep(AFTER_SOON).await;
    assert_eq!(bodies(&take(b, "q", 10, None).await), ["later"]);
}

/// A lease that ends redelivers the job with the next attempt; the old receipt can no longer
/// ack, fail or extend; the completed job is never delivered again.
pub async fn an_expired_lease_redelivers_and_fences_the_old_receipt<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    let first = take(b, "q", 1, Some(SOON_MS)).await.remove(0);
    assert_eq!(first.attempt, 1);
    tokio::time::sleep(AFTER_SOON).await;
    let second = take(b, "q", 1, None).await.remove(0);
    assert_eq!((second.id, second.attempt), (id, 2));
    assert_ne!(first.receipt, second.receipt);
    assert_eq!(b.ack(vec![first.receipt.clone()]).await.unwrap(), vec![AckResult::Stale]);
    assert_eq!(b.extend(first.receipt.clone(), 5000).await.unwrap_err(), Error::StaleReceipt);
    let stale_fail = crate::failure(&first.receipt, None, false);
    assert_eq!(b.fail(stale_fail).await.unwrap_err(), Error::StaleReceipt);
    assert_eq!(b.ack(vec![second.receipt.clone()]).await.unwrap(), vec![AckResult::Ok]);
    assert_eq!(b.ack(vec![second.receipt]).await.unwrap(), vec![AckResult::Stale], "once");
    assert!(take(b, "q", 10, None).await.is_empty(), "a completed job is never delivered again");
    let info = b.get_job(id).await.unwrap();
    let outcomes: Vec<Outcome> = info.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::LeaseExpired, Outcome::Ok]);
    assert_eq!(info.attempts[0].worker_id.as_deref(), Some("worker-1"));
    let totals = b.get_queue("q".into()).await.unwrap().stats.totals;
    assert_eq!(totals.lease_expired, 1);
}

/// A heartbeat keeps the job leased past its first lease; extending by 0 releases it at once.
pub async fn heartbeats_extend_and_zero_releases<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    send(b, "q", vec![job("a")]).await;
    let d = take(b, "q", 1, Some(SOON_MS)).await.remove(0);
    b.extend(d.receipt.clone(), 60_000).await.unwrap();
    tokio::time::sleep(AFTER_SOON).await;
    assert!(take(b, "q", 1, None).await.is_empty(), "the heartbeat kept the lease");
    b.extend(d.receipt.clone(), 0).await.unwrap();
    let again = take(b, "q", 1, None).await.remove(0);
    assert_eq!(again.attempt, 2);
    let info = b.get_job(again.id).await.unwrap();
    assert_eq!(info.attempts[0].outcome, Outcome::Released);
}

/// Receipts that name no job, or are not receipts, are unknown; garbage fails cleanly.
pub async fn unknown_and_malformed_receipts<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let fake = redrive_core::Receipt { id: redrive_core::JobId(42), epoch: 1 }.encode();
    let r = b.ack(vec![fake.clone(), "garbage".into()]).await.unwrap();
    assert_eq!(r, [AckResult::Unknown, AckResult::Unknown]);
    assert_eq!(b.extend("garbage".into(), 10).await.unwrap_err(), Error::InvalidReceipt);
    assert!(matches!(b.extend(fake, 10).await.unwrap_err(), Error::JobNotFound(_)));
    assert!(matches!(b.get_job(redrive_core::JobId(42)).await, Err(Error::JobNotFound(_))));
    let e = b.enqueue("nope".into(), vec![job("x")]).await.unwrap_err();
    assert_eq!(e, Error::QueueNotFound("nope".into()));
}

/// Bodies over the queue's `max_message_bytes` are refused, and the batch with them.
pub async fn oversized_messages_are_refused_whole<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_message_bytes = Some(1024)).await;
    let big = job(&"x".repeat(1025));
    let e = b.enqueue("q".into(), vec![job("ok"), big]).await.unwrap_err();
    assert!(matches!(e, Error::MessageTooLarge { size: 1025, max: 1024 }), "{e:?}");
    assert!(take(b, "q", 10, None).await.is_empty(), "nothing of the batch was written");
    assert_eq!(b.enqueue("q".into(), vec![]).await.unwrap_err(), Error::EmptyBatch);
}

/// As SQS's DeleteMessage with the latest receipt handle: an ack after the lease ran out still
/// completes the job while nobody leased it again (no needless redelivery for a slow worker),
/// and the attempt log shows the lease running out and then the completion. Fail and extend
/// stay refused once the lease is over; a receipt older than the current lease, or of a job that
/// died or was redriven since, is stale.
pub async fn a_late_ack_with_the_latest_receipt_completes_a_job_nobody_received_again<B: Broker>(
    b: &B,
) {
    queue(b, "q", |p| p.max_attempts = Some(Some(3))).await;
    let id = send(b, "q", vec![job("slow")]).await[0];
    let first = take(b, "q", 1, Some(SOON_MS)).await.remove(0);
    tokio::time::sleep(AFTER_SOON).await;
    assert_eq!(b.extend(first.receipt.clone(), 5000).await.unwrap_err(), Error::StaleReceipt);
    let late_fail = crate::failure(&first.receipt, None, false);
    assert_eq!(b.fail(late_fail).await.unwrap_err(), Error::StaleReceipt);
    assert_eq!(b.ack(vec![first.receipt.clone()]).await.unwrap(), vec![AckResult::Ok]);
    assert_eq!(b.ack(vec![first.receipt]).await.unwrap(), vec![AckResult::Stale], "once");
    assert!(take(b, "q", 10, None).await.is_empty(), "completed, never delivered again");
    let info = b.get_job(id).await.unwrap();
    assert_eq!(info.state, JobState::Acked);
    let outcomes: Vec<Outcome> = info.attempts.iter().map(|a| a.outcome).collect();
    assert!(
        matches!(outcomes.as_slice(), [Outcome::LeaseExpired, Outcome::Ok] | [Outcome::Ok]),
        "{outcomes:?}"
    );

    // A job that died after its lease: that lease's receipt no longer completes it, nor after
    // the redrive.
    queue(b, "once", |p| p.max_attempts = Some(Some(1))).await;
    send(b, "once", vec![job("dies")]).await;
    let gone = take(b, "once", 1, Some(SOON_MS)).await.remove(0);
    tokio::time::sleep(AFTER_SOON).await;
    assert!(take(b, "once", 1, None).await.is_empty(), "it died when its lease ran out");
    assert_eq!(b.ack(vec![gone.receipt.clone()]).await.unwrap(), vec![AckResult::Stale]);
    let redrive = b.redrive("once-dlq".into(), Default::default()).await.unwrap();
    assert_eq!(redrive.moved, 1);
    assert_eq!(b.ack(vec![gone.receipt]).await.unwrap(), vec![AckResult::Stale]);
    assert_eq!(bodies(&take(b, "once", 1, None).await), ["dies"]);
}
