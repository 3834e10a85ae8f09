//! Ack-and-receive: a worker's finished jobs acked in the call that asks for more.

use redrive_core::broker::{AckResult, ReceiveRequest};
use redrive_core::model::JobState;
use redrive_core::{limits, Broker, Error};

use crate::{bodies, job, long_poll, queue, send, take, until_parked, WAKE_BOUND};

fn now(q: &str, max: u32) -> ReceiveRequest {
    ReceiveRequest { queues: vec![q.into()], max, wait_ms: Some(0), ..ReceiveRequest::default() }
}

/// The receipts are acked as an ack would (one result each, in order), and the receive that
/// follows leases other jobs; the acked job is complete and never delivered again.
pub async fn ack_receive_acks_then_leases<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let ids = send(b, "q", vec![job("a"), job("b"), job("c")]).await;
    let first = take(b, "q", 1, None).await;
    assert_eq!(bodies(&first), ["a"]);
    let receipts = vec![first[0].receipt.clone(), "not-a-receipt".into()];
    let (acked, got) = b.ack_receive(receipts, now("q", 10)).await.unwrap();
    assert_eq!(acked, [AckResult::Ok, AckResult::Unknown]);
    assert_eq!(bodies(&got), ["b", "c"]);
    assert_eq!(b.get_job(ids[0]).await.unwrap().state, JobState::Acked);
    // The same receipt again is stale; nothing is left to lease.
    let (acked, got) = b.ack_receive(vec![first[0].receipt.clone()], now("q", 10)).await.unwrap();
    assert_eq!((acked, got.len()), (vec![AckResult::Stale], 0));
    // No receipts: a plain receive.
    let (acked, got) = b.ack_receive(Vec::new(), now("q", 10)).await.unwrap();
    assert!(acked.is_empty() && got.is_empty());
    let totals = b.get_queue("q".into()).await.unwrap().stats.totals;
    assert_eq!((totals.acked, totals.delivered), (1, 3));
}

/// A request refused as a whole (a queue that does not exist, a bad receive, too many receipts)
/// acks nothing: the job stays leased and its receipt still completes it.
pub async fn a_refused_ack_receive_acks_nothing<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    let receipt = take(b, "q", 1, None).await[0].receipt.clone();
    let missing = b.ack_receive(vec![receipt.clone()], now("missing", 1)).await.unwrap_err();
    assert_eq!(missing, Error::QueueNotFound("missing".into()));
    let bad = ReceiveRequest { max: 0, ..now("q", 1) };
    assert!(matches!(
        b.ack_receive(vec![receipt.clone()], bad).await,
        Err(Error::InvalidParameter { .. })
    ));
    let many = vec![receipt.clone(); limits::ACK_BATCH_COUNT_MAX + 1];
    let err = b.ack_receive(many, now("q", 1)).await.unwrap_err();
    assert!(matches!(err, Error::BatchTooLarge { .. }), "{err:?}");
    assert_eq!(b.get_job(id).await.unwrap().state, JobState::Leased);
    assert_eq!(b.ack(vec![receipt]).await.unwrap(), [AckResult::Ok]);
}

/// With nothing ready the call long-polls, and the acks it carried are complete while it waits
/// (not held back until a job arrives).
pub async fn ack_receive_acks_before_its_long_poll_waits<B: Broker + Clone>(b: &B) {
    queue(b, "q", |_| {}).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    let receipt = take(b, "q", 1, None).await[0].receipt.clone();
    let b2 = b.clone();
    let poll = tokio::spawn(async move { b2.ack_receive(vec![receipt], long_poll(&["q"])).await });
    until_parked(b, 1).await;
    assert_eq!(b.get_job(id).await.unwrap().state, JobState::Acked);
    let woke = send(b, "q", vec![job("b")]).await[0];
    let (acked, got) = tokio::time::timeout(WAKE_BOUND, poll)
        .await
        .expect("the enqueue woke the long poll")
        .unwrap()
        .unwrap();
    assert_eq!(acked, [AckResult::Ok]);
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [woke]);
}

/// Across queues and on a FIFO queue (where a store may not do both in one statement) the
/// semantics are the same: a FIFO group's next job goes out once the job ahead is acked.
pub async fn ack_receive_over_several_queues_and_fifo_groups<B: Broker>(b: &B) {
    queue(b, "f.fifo", |_| {}).await;
    queue(b, "other", |_| {}).await;
    let grouped =
        |body: &str| redrive_core::broker::NewJob { group: Some("g".into()), ..job(body) };
    send(b, "f.fifo", vec![grouped("f1"), grouped("f2")]).await;
    let first = take(b, "f.fifo", 1, None).await;
    assert_eq!(bodies(&first), ["f1"]);
    assert!(take(b, "f.fifo", 10, None).await.is_empty(), "f1 holds the group");
    let receipts = vec![first[0].receipt.clone()];
    let (acked, got) = b.ack_receive(receipts, now("f.fifo", 10)).await.unwrap();
    assert_eq!((acked, bodies(&got)), (vec![AckResult::Ok], vec!["f2"]));
    send(b, "other", vec![job("o1")]).await;
    let both = ReceiveRequest { queues: vec!["f.fifo".into(), "other".into()], ..now("f", 10) };
    let (acked, got) = b.ack_receive(vec![got[0].receipt.clone()], both).await.unwrap();
    assert_eq!((acked, bodies(&got)), (vec![AckResult::Ok], vec!["o1"]));
    let stats = b.get_queue("f.fifo".into()).await.unwrap().stats;
    assert_eq!((stats.totals.acked, stats.counts.leased), (2, 0));
}
