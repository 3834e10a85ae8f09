//! FIFO queues: order within a group, one receive's worth of a group in flight at a time, and
//! deduplication by key (what SQS's content-based deduplication sends: a hash of the body).

use std::time::Duration;

use redrive_core::broker::{AckResult, NewJob};
use redrive_core::Broker;

use crate::{bodies, job, queue, send, take};

fn grouped(body: &str, group: &str) -> NewJob {
    NewJob { group: Some(group.into()), ..job(body) }
}

/// Jobs of a group come out in enqueue order; while a receive's jobs of a group are leased, no
/// other receive gets that group's later jobs, but other groups go on; the group moves on once
/// every job of the batch is settled.
pub async fn fifo_groups_keep_order_and_one_batch_in_flight<B: Broker>(b: &B) {
    queue(b, "q.fifo", |_| {}).await;
    let jobs = vec![grouped("a1", "a"), grouped("a2", "a"), grouped("b1", "b"), grouped("a3", "a")];
    send(b, "q.fifo", jobs).await;
    let first = take(b, "q.fifo", 2, None).await;
    assert_eq!(bodies(&first), ["a1", "a2"], "one batch may take several jobs of a group");
    assert_eq!(first[0].group.as_deref(), Some("a"));
    let second = take(b, "q.fifo", 10, None).await;
    assert_eq!(bodies(&second), ["b1"], "group a is in flight: only group b is free");
    assert_eq!(b.ack(vec![first[0].receipt.clone()]).await.unwrap(), [AckResult::Ok]);
    assert!(take(b, "q.fifo", 10, None).await.is_empty(), "a2 still holds group a");
    assert_eq!(b.ack(vec![first[1].receipt.clone()]).await.unwrap(), [AckResult::Ok]);
    assert_eq!(bodies(&take(b, "q.fifo", 10, None).await), ["a3"], "then a3, in order");
}

/// On a FIFO queue a deduplication key seen within the window is a duplicate — also after the
/// first job was received and completed — and nothing is delivered twice.
pub async fn fifo_deduplicates_by_key_even_after_completion<B: Broker>(b: &B) {
    queue(b, "d.fifo", |_| {}).await;
    // What the SQS door sends for content-based deduplication: the body's SHA-256.
    let hashed =
        |body: &str, key: &str| NewJob { idempotency_key: Some(key.into()), ..grouped(body, "g") };
    let key = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let first = b.enqueue("d.fifo".into(), vec![hashed("hello", key)]).await.unwrap();
    assert!(!first[0].duplicate);
    let d = take(b, "d.fifo", 10, None).await;
    assert_eq!(bodies(&d), ["hello"]);
    b.ack(vec![d[0].receipt.clone()]).await.unwrap();
    let again = b.enqueue("d.fifo".into(), vec![hashed("hello", key)]).await.unwrap();
    assert_eq!((again[0].id, again[0].duplicate), (first[0].id, true));
    assert!(take(b, "d.fifo", 10, None).await.is_empty(), "the duplicate was not enqueued");
    let other = b.enqueue("d.fifo".into(), vec![hashed("world", "other-key")]).await.unwrap();
    assert!(!other[0].duplicate);
    assert_eq!(bodies(&take(b, "d.fifo", 10, None).await), ["world"]);
    let totals = b.get_queue("d.fifo".into()).await.unwrap().stats.totals;
    assert_eq!((totals.enqueued, totals.duplicates), (2, 1));
}

/// As SQS: a receive fills its batch with one group's jobs before the next group's, and a job
/// ahead of every leased job of its group (here made visible again) goes out at once while the
/// jobs behind a lease wait.
pub async fn fifo_batches_fill_by_group_and_only_jobs_behind_a_lease_wait<B: Broker>(b: &B) {
    queue(b, "q.fifo", |_| {}).await;
    let jobs = ["a1", "b1", "a2", "b2", "a3"].map(|n| grouped(n, &n[..1]));
    send(b, "q.fifo", jobs.to_vec()).await;
    let all = take(b, "q.fifo", 10, None).await;
    assert_eq!(bodies(&all), ["a1", "a2", "a3", "b1", "b2"], "group by group");
    b.extend(all[1].receipt.clone(), 0).await.unwrap();
    assert!(take(b, "q.fifo", 10, None).await.is_empty(), "a2 is behind a1, still leased");
    b.extend(all[0].receipt.clone(), 0).await.unwrap();
    assert_eq!(bodies(&take(b, "q.fifo", 10, None).await), ["a1", "a2"], "ahead of a3: at once");
}

/// As SQS: a group whose job came back from a lease is served after the groups that kept
/// waiting, though its job is older.
pub async fn fifo_a_group_back_from_a_lease_goes_after_the_groups_that_waited<B: Broker>(b: &B) {
    queue(b, "q.fifo", |_| {}).await;
    send(b, "q.fifo", vec![grouped("a1", "a")]).await;
    let a = take(b, "q.fifo", 1, None).await;
    send(b, "q.fifo", vec![grouped("b1", "b")]).await;
    // Apart in time, so that "became visible" orders them on any clock.
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.extend(a[0].receipt.clone(), 0).await.unwrap();
    assert_eq!(bodies(&take(b, "q.fifo", 1, None).await), ["b1"]);
    assert_eq!(bodies(&take(b, "q.fifo", 1, None).await), ["a1"]);
}

/// On a FIFO queue an ack after the lease ran out is stale even when nobody received the job
/// again (SQS: "The receipt handle has expired"): the group may have moved on.
pub async fn fifo_an_ack_after_the_lease_ran_out_is_stale<B: Broker>(b: &B) {
    queue(b, "q.fifo", |_| {}).await;
    send(b, "q.fifo", vec![grouped("a1", "a")]).await;
    let first = take(b, "q.fifo", 1, Some(crate::SOON_MS)).await;
    tokio::time::sleep(crate::AFTER_SOON).await;
    assert_eq!(b.ack(vec![first[0].receipt.clone()]).await.unwrap(), [AckResult::Stale]);
    let again = take(b, "q.fifo", 1, None).await;
    assert_eq!((bodies(&again), again[0].attempt), (vec!["a1"], 2));
}

/// A job of a group whose lease ran out comes back before the group's later jobs (the SQS
/// visibility-timeout case): a group's order survives a lost worker.
pub async fn fifo_redelivers_an_expired_lease_before_the_groups_later_jobs<B: Broker>(b: &B) {
    queue(b, "q.fifo", |_| {}).await;
    send(b, "q.fifo", vec![grouped("a1", "a"), grouped("a2", "a")]).await;
    let first = take(b, "q.fifo", 1, Some(crate::SOON_MS)).await;
    assert_eq!(bodies(&first), ["a1"]);
    assert!(take(b, "q.fifo", 1, None).await.is_empty(), "a1 holds group a");
    tokio::time::sleep(crate::AFTER_SOON).await;
    let again = take(b, "q.fifo", 1, None).await;
    assert_eq!((bodies(&again), again[0].attempt), (vec!["a1"], 2));
}

/// A group held by a lease, with more than a receive's look-ahead of jobs behind it (1,000
/// ready jobs in enqueue order), does not hide what comes after it: the groups behind it go
/// out in order, and so do a job of the held group that is ahead of its lease and a job with
/// no group; the held group's later jobs wait for the lease, then follow in order.
pub async fn fifo_a_long_held_group_does_not_hide_the_groups_behind_it<B: Broker>(b: &B) {
    queue(b, "q.fifo", |_| {}).await;
    for chunk in (0..1_200).collect::<Vec<_>>().chunks(400) {
        send(b, "q.fifo", chunk.iter().map(|i| grouped(&format!("h{i}"), "h")).collect()).await;
    }
    let first = take(b, "q.fifo", 2, None).await;
    assert_eq!(bodies(&first), ["h0", "h1"]);
    // h0 is back, ahead of h1's lease: free. Apart in time, so that it became visible first.
    b.extend(first[0].receipt.clone(), 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let behind = vec![grouped("b1", "b"), grouped("c1", "c"), grouped("b2", "b"), job("n1")];
    send(b, "q.fifo", behind).await;
    let got = take(b, "q.fifo", 10, None).await;
    assert_eq!(bodies(&got), ["h0", "b1", "b2", "c1", "n1"], "group by group, h1 holds h2 on");
    assert!(take(b, "q.fifo", 10, None).await.is_empty(), "everything else is behind h1");
    let receipts = got.iter().chain(&first[1..]).map(|d| d.receipt.clone()).collect();
    assert!(b.ack(receipts).await.unwrap().iter().all(|r| *r == AckResult::Ok));
    assert_eq!(bodies(&take(b, "q.fifo", 3, None).await), ["h2", "h3", "h4"]);
}
