//! Failure: retries with backoff, dead letters with their history, max receives, redrive,
//! purge and delete.

use redrive_core::broker::{DeadFilter, RedriveRequest, SkipReason, Skipped};
use redrive_core::model::{signature, DeadReason, JobState, Outcome};
use redrive_core::{Broker, Error, JobId};

use crate::{failure, job, queue, send, take, AFTER_SOON, SOON_MS};

/// A failure retries after its backoff; at `max_attempts` the job moves to the DLQ with its
/// reason, source queue and every attempt's error.
pub async fn failures_retry_then_dead_letter_with_the_attempt_log<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(2))).await;
    let id = send(b, "q", vec![job("flaky")]).await[0];
    let d = take(b, "q", 1, None).await.remove(0);
    let r = b.fail(failure(&d.receipt, Some(SOON_MS), false)).await.unwrap();
    assert_eq!((r.state, r.dead_reason), (JobState::Delayed, None));
    assert!(r.retry_at.is_some());
    assert!(take(b, "q", 1, None).await.is_empty(), "backing off");
    tokio::time::sleep(AFTER_SOON).await;
    let d = take(b, "q", 1, None).await.remove(0);
    assert_eq!(d.attempt, 2);
    let r = b.fail(failure(&d.receipt, None, false)).await.unwrap();
    assert_eq!((r.dead_reason, r.queue.as_str()), (Some(DeadReason::MaxAttempts), "q-dlq"));
    let info = b.get_job(id).await.unwrap();
    assert_eq!(info.queue, "q-dlq");
    let dead = info.dead.expect("dead info");
    assert_eq!((dead.reason, dead.source_queue.as_str()), (DeadReason::MaxAttempts, "q"));
    assert_eq!(info.attempts.len(), 2);
    assert!(info.attempts.iter().all(|a| a.outcome == Outcome::Failed));
    assert_eq!(info.attempts[1].error.as_ref().unwrap().kind, "Timeout");
    let dlq = take(b, "q-dlq", 1, None).await.remove(0);
    assert_eq!(dlq.id, id);
    assert_eq!(dlq.dead.map(|d| d.reason), Some(DeadReason::MaxAttempts));
    let totals = b.get_queue("q".into()).await.unwrap().stats.totals;
    assert_eq!((totals.failed, totals.dead_lettered), (2, 1));
}

/// A non-retryable failure dies at once; without a DLQ the job is parked as dead in place.
pub async fn non_retryable_failures_die_at_once_and_park_without_a_dlq<B: Broker>(b: &B) {
    queue(b, "solo", |p| p.dead_letter_queue = Some(None)).await;
    let id = send(b, "solo", vec![job("poison")]).await[0];
    let d = take(b, "solo", 1, None).await.remove(0);
    let r = b.fail(failure(&d.receipt, None, true)).await.unwrap();
    assert_eq!((r.state, r.dead_reason), (JobState::Dead, Some(DeadReason::NonRetryable)));
    let info = b.get_job(id).await.unwrap();
    assert_eq!((info.state, info.queue.as_str()), (JobState::Dead, "solo"));
    assert!(take(b, "solo", 1, None).await.is_empty(), "parked jobs are not delivered");
    let stats = b.get_queue("solo".into()).await.unwrap().stats;
    assert_eq!((stats.counts.dead, stats.dead_letters), (1, 1));
}

/// Queue `q` with `max_receive_count` 1 (and `dlq` as its dead-letter queue, else the
/// automatic `q-dlq`) holding one job that was received once and whose lease ran out: the next
/// receive is past the count.
async fn received_once_with_one_receive_allowed<B: Broker>(b: &B, dlq: Option<&str>) -> JobId {
    queue(b, "q", |p| {
        if let Some(dlq) = dlq {
            p.dead_letter_queue = Some(Some(dlq.into()));
        }
        p.max_receive_count = Some(Some(1));
        p.max_attempts = Some(None);
    })
    .await;
    let id = send(b, "q", vec![job("a")]).await[0];
    take(b, "q", 1, Some(SOON_MS)).await.remove(0);
    tokio::time::sleep(AFTER_SOON).await;
    id
}

/// SQS `maxReceiveCount`: the receive that would exceed it moves the job to the DLQ instead.
pub async fn max_receive_count_dead_letters_on_the_next_receive<B: Broker>(b: &B) {
    let id = received_once_with_one_receive_allowed(b, None).await;
    assert!(take(b, "q", 1, None).await.is_empty(), "received once already: it dies instead");
    let info = b.get_job(id).await.unwrap();
    assert_eq!(info.queue, "q-dlq");
    assert_eq!(info.dead.map(|d| d.reason), Some(DeadReason::MaxReceives));
}

/// A queue may be its own dead-letter queue, as on SQS: a job past `max_receive_count` dies
/// into the same queue and starts over, its receives counted afresh.
pub async fn a_queue_may_be_its_own_dead_letter_queue<B: Broker>(b: &B) {
    let id = received_once_with_one_receive_allowed(b, Some("q")).await;
    let again = take(b, "q", 1, None).await;
    assert_eq!(again.len(), 1, "died into its own queue and went out again");
    assert_eq!(again[0].attempt, 1, "receives start over");
    assert_eq!(again[0].dead.as_ref().map(|d| d.source_queue.as_str()), Some("q"));
    let q = b.get_queue("q".into()).await.unwrap();
    assert_eq!(q.stats.totals.dead_lettered, 1);
    assert_eq!(b.get_job(id).await.unwrap().queue, "q");
}

/// Redrive by ids: a dry run moves nothing; a real one moves each named job once, resets its
/// counts and records lineage; ids that are not dead letters of the queue are refused.
pub async fn redrive_by_ids_with_dry_run_and_lineage<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    let ids = send(b, "q", vec![job("a"), job("b")]).await;
    for d in take(b, "q", 2, None).await {
        b.fail(failure(&d.receipt, None, false)).await.unwrap();
    }
    let page = b.list_dead("q-dlq".into(), DeadFilter::default(), None, 10).await.unwrap();
    assert_eq!(page.jobs.len(), 2);
    let dry = RedriveRequest { ids: Some(vec![ids[0]]), dry_run: true, ..Default::default() };
    let r = b.redrive("q-dlq".into(), dry).await.unwrap();
    assert_eq!((r.moved, r.dry_run), (1, true));
    assert_eq!(b.get_job(ids[0]).await.unwrap().queue, "q-dlq");
    let real = RedriveRequest { ids: Some(vec![ids[0], ids[0]]), ..Default::default() };
    let r = b.redrive("q-dlq".into(), real).await.unwrap();
    assert_eq!((r.moved, r.ids.as_slice()), (1, &ids[..1]), "an id named twice moves once");
    let info = b.get_job(ids[0]).await.unwrap();
    assert_eq!((info.queue.as_str(), info.state), ("q", JobState::Ready));
    assert_eq!((info.redrive_count, info.redriven_from.as_deref()), (1, Some("q-dlq")));
    assert_eq!((info.receive_count, info.failures, info.dead), (0, 0, None));
    assert_eq!(info.attempts.len(), 1, "the attempt log is kept");
    let d = take(b, "q", 1, None).await.remove(0);
    assert_eq!((d.id, d.attempt), (ids[0], 1));
    // A job that is no longer dead is reported, not moved, and fails nothing.
    let again = RedriveRequest { ids: Some(vec![ids[0]]), ..Default::default() };
    let r = b.redrive("q-dlq".into(), again).await.unwrap();
    assert_eq!((r.moved, r.ids.len()), (0, 0));
    assert_eq!(r.skipped, vec![Skipped { id: ids[0], reason: SkipReason::NotDead }]);
    let totals = b.get_queue("q".into()).await.unwrap().stats.totals;
    assert_eq!(totals.redriven, 1);
}

/// Dead letters list oldest first, page by page, and filter by error type.
pub async fn dead_letters_list_in_pages_and_filter_by_error<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    let ids = send(b, "q", vec![job("a"), job("b"), job("c")]).await;
    for d in take(b, "q", 3, None).await {
        let mut f = failure(&d.receipt, None, false);
        if d.id == ids[1] {
            f.error.kind = "Other".into();
        }
        b.fail(f).await.unwrap();
    }
    let first = b.list_dead("q-dlq".into(), DeadFilter::default(), None, 2).await.unwrap();
    let got: Vec<_> = first.jobs.iter().map(|j| j.id).collect();
    assert_eq!(got, ids[..2]);
    assert_eq!(first.next, Some(ids[1]));
    let rest = b.list_dead("q-dlq".into(), DeadFilter::default(), first.next, 2).await.unwrap();
    assert_eq!(rest.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(rest.next, None);
    let f = DeadFilter { error_type: Some("Other".into()), ..DeadFilter::default() };
    let other = b.list_dead("q-dlq".into(), f, None, 10).await.unwrap();
    assert_eq!(other.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[1]]);
}

/// Purge is SQS's PurgeQueue: ready, delayed and leased jobs go (counted; a purged lease's
/// receipt is stale), and so do the queue's idempotency keys.
pub async fn purge_drops_waiting_and_running_jobs_and_forgets_keys<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let delayed = redrive_core::broker::NewJob { delay_ms: Some(60_000), ..job("later") };
    let keyed =
        || redrive_core::broker::NewJob { idempotency_key: Some("k".into()), ..job("keyed") };
    let first = send(b, "q", vec![job("a"), keyed(), delayed]).await;
    let leased = take(b, "q", 1, None).await.remove(0);
    assert_eq!(b.purge("q".into()).await.unwrap(), 3);
    let stats = b.get_queue("q".into()).await.unwrap().stats;
    assert_eq!((stats.counts.ready, stats.counts.delayed, stats.counts.leased), (0, 0, 0));
    assert_eq!(stats.totals.purged, 3);
    let stale = b.ack(vec![leased.receipt]).await.unwrap();
    assert_ne!(stale, [redrive_core::broker::AckResult::Ok], "a purged job cannot complete");
    let again = send(b, "q", vec![keyed()]).await;
    assert_ne!(again[0], first[1], "the key was forgotten: a new job");
    assert_eq!(b.get_queue("q".into()).await.unwrap().stats.counts.ready, 1);
}

/// One job can be deleted unless leased; a deleted job is gone.
pub async fn delete_job_refuses_leased_jobs<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let ids = send(b, "q", vec![job("a"), job("b")]).await;
    let d = take(b, "q", 1, None).await.remove(0);
    assert!(matches!(b.delete_job(d.id).await, Err(Error::InvalidParameter { .. })));
    let other = if d.id == ids[0] { ids[1] } else { ids[0] };
    b.delete_job(other).await.unwrap();
    assert!(matches!(b.get_job(other).await, Err(Error::JobNotFound(_))));
    assert!(matches!(b.delete_job(other).await, Err(Error::JobNotFound(_))));
}

/// The signature filter matches the last failure's masked message (numbers, ids, paths and
/// quoted strings masked), across error instances that differ only there.
pub async fn dead_letters_filter_by_failure_signature<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    let ids = send(b, "q", vec![job("a"), job("b"), job("c")]).await;
    let messages = [
        (ids[0], "connection to 10.0.0.7:5432 refused after 30 ms"),
        (ids[1], "connection to 10.0.0.9:6432 refused after 45 ms"),
        (ids[2], "disk /var/lib/x is full"),
    ];
    for d in take(b, "q", 3, None).await {
        let mut f = failure(&d.receipt, None, false);
        f.error.message = messages.iter().find(|(id, _)| *id == d.id).unwrap().1.into();
        b.fail(f).await.unwrap();
    }
    let sig = signature("Timeout", messages[0].1);
    assert_eq!(sig, signature("Timeout", messages[1].1), "the two differ only in numbers");
    let f = DeadFilter { signature: Some(sig), ..DeadFilter::default() };
    let page = b.list_dead("q-dlq".into(), f.clone(), None, 10).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), ids[..2]);
    let other = DeadFilter { signature: Some(signature("Other", messages[0].1)), ..f.clone() };
    assert!(b.list_dead("q-dlq".into(), other, None, 10).await.unwrap().jobs.is_empty());
    let r = b.redrive("q-dlq".into(), RedriveRequest { filter: Some(f), ..Default::default() });
    let r = r.await.unwrap();
    assert_eq!((r.moved, r.ids.len()), (2, 2));
    assert_eq!(b.get_job(ids[2]).await.unwrap().queue, "q-dlq", "the other stays");
}

/// What an SQS message move task does: page through a dead-letter queue with a cursor and move
/// each page by ids to a named queue, until a page comes back empty.
pub async fn dead_letters_move_page_by_page_to_another_queue<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    queue(b, "elsewhere", |_| {}).await;
    let ids = send(b, "q", (0..5).map(|i| job(&format!("j{i}"))).collect()).await;
    for d in take(b, "q", 5, None).await {
        b.fail(failure(&d.receipt, None, false)).await.unwrap();
    }
    let (mut after, mut moved, mut pages) = (None, 0, 0);
    for limit in [2, 2, 500, 500] {
        let page = b.list_dead("q-dlq".into(), DeadFilter::default(), after, limit).await.unwrap();
        if page.jobs.is_empty() {
            break;
        }
        pages += 1;
        after = page.jobs.last().map(|j| j.id);
        let req = RedriveRequest {
            ids: Some(page.jobs.iter().map(|j| j.id).collect()),
            to: Some("elsewhere".into()),
            ..RedriveRequest::default()
        };
        moved += b.redrive("q-dlq".into(), req).await.unwrap().moved;
    }
    assert_eq!((moved, pages), (5, 3));
    let mut got: Vec<_> = take(b, "elsewhere", 10, None).await.into_iter().map(|d| d.id).collect();
    got.sort();
    assert_eq!(got, ids);
    let info = b.get_job(ids[0]).await.unwrap();
    assert_eq!(info.redriven_from.as_deref(), Some("q-dlq"));
    assert!(b
        .list_dead("q-dlq".into(), DeadFilter::default(), None, 10)
        .await
        .unwrap()
        .jobs
        .is_empty());
    assert_eq!(b.get_queue("elsewhere".into()).await.unwrap().stats.totals.redriven, 5);
}

/// A lease that ran out is over for every operation, not only for receive: listing queues and
/// dead letters, redrive, purge and delete see the job as ready again (its attempt ended
/// `lease_expired`), without waiting for any periodic sweep.
pub async fn leases_that_ran_out_are_over_for_listing_redrive_purge_and_delete<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    let ids = send(b, "q", vec![job("a"), job("b"), job("c")]).await;
    for d in take(b, "q", 3, None).await {
        b.fail(failure(&d.receipt, None, false)).await.unwrap();
    }
    // A consumer of the dead-letter queue leases all three and lets the leases run out.
    assert_eq!(take(b, "q-dlq", 3, Some(SOON_MS)).await.len(), 3);
    tokio::time::sleep(AFTER_SOON).await;
    let listed = b.list_queues().await.unwrap();
    let dlq = listed.iter().find(|q| q.name == "q-dlq").expect("listed");
    assert_eq!((dlq.stats.counts.ready, dlq.stats.counts.leased), (3, 0));
    let page = b.list_dead("q-dlq".into(), DeadFilter::default(), None, 10).await.unwrap();
    let states: Vec<JobState> = page.jobs.iter().map(|j| j.state).collect();
    assert_eq!(states, [JobState::Ready; 3]);
    let last = page.jobs[0].attempts.last().map(|a| a.outcome);
    assert_eq!(last, Some(Outcome::LeaseExpired));
    let req = RedriveRequest { ids: Some(vec![ids[0]]), ..Default::default() };
    assert_eq!(b.redrive("q-dlq".into(), req).await.unwrap().moved, 1);
    b.delete_job(ids[1]).await.unwrap();
    assert!(matches!(b.get_job(ids[1]).await, Err(Error::JobNotFound(_))));
    let dlq = b.get_queue("q-dlq".into()).await.unwrap().stats;
    assert_eq!((dlq.counts.ready, dlq.counts.leased), (1, 0));
    assert_eq!(dlq.totals.lease_expired, 3);
    take(b, "q", 1, Some(SOON_MS)).await.remove(0);
    tokio::time::sleep(AFTER_SOON).await;
    assert_eq!(b.purge("q".into()).await.unwrap(), 0, "back in q-dlq after its lease");
    assert_eq!(b.purge("q-dlq".into()).await.unwrap(), 2);
}

/// A redrive with a delay puts the jobs back delayed: not delivered before the delay ends, and
/// delivered after it.
pub async fn redrive_with_a_delay_holds_the_jobs_back<B: Broker>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    let d = take(b, "q", 1, None).await.remove(0);
    b.fail(failure(&d.receipt, None, false)).await.unwrap();
    let req = RedriveRequest { delay_ms: Some(SOON_MS), ..RedriveRequest::default() };
    assert_eq!(b.redrive("q-dlq".into(), req).await.unwrap().moved, 1);
    let info = b.get_job(id).await.unwrap();
    assert_eq!((info.queue.as_str(), info.state), ("q", JobState::Delayed));
    assert!(take(b, "q", 1, None).await.is_empty(), "held back");
    tokio::time::sleep(AFTER_SOON).await;
    assert_eq!(take(b, "q", 1, None).await.remove(0).id, id);
}
