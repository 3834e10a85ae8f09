//! Long polls woken by time and by moves, not only by enqueues: a delayed job becoming ready, a
//! lease running out, a retry after its backoff, and a redrive. Each poll waits up to
//! `RECEIVE_WAIT_MAX_MS` and must answer with the job well before that.

use std::time::{Duration, Instant};

use redrive_core::broker::{Delivery, NewJob, RedriveRequest};
use redrive_core::{limits, Broker, JobId};
use tokio::task::JoinHandle;

use crate::{failure, job, queue, send, take, SOON_MS, WAKE_BOUND};

/// A long poll of one job from `q`, running in the background.
fn poll<B: Broker + Clone>(b: &B, q: &str) -> JoinHandle<Vec<Delivery>> {
    let (b, q) = (b.clone(), q.to_owned());
    tokio::spawn(async move {
        let req = crate::long_poll(&[&q]);
        b.receive(req).await.expect("long poll answered")
    })
}

/// The poll's answer: exactly `id`, well before the poll's wait.
async fn woken_with(poll: JoinHandle<Vec<Delivery>>, started: Instant, id: JobId) -> Delivery {
    let got = tokio::time::timeout(WAKE_BOUND, poll)
        .await
        .expect("the long poll was answered well before its wait ended")
        .expect("the poll task ran");
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    assert!(started.elapsed() < Duration::from_millis(limits::RECEIVE_WAIT_MAX_MS));
    got.into_iter().next().expect("one")
}

/// A long poll on a queue whose only job is delayed gets it when its delay ends.
pub async fn a_long_poll_gets_a_delayed_job_when_it_becomes_ready<B: Broker + Clone>(b: &B) {
    queue(b, "q", |_| {}).await;
    let later = NewJob { delay_ms: Some(SOON_MS), ..job("later") };
    let id = send(b, "q", vec![later]).await[0];
    let started = Instant::now();
    let d = woken_with(poll(b, "q"), started, id).await;
    assert_eq!(d.attempt, 1);
}

/// A long poll gets a job whose lease ran out, as its next attempt.
pub async fn a_long_poll_gets_a_job_whose_lease_ran_out<B: Broker + Clone>(b: &B) {
    queue(b, "q", |_| {}).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    take(b, "q", 1, Some(SOON_MS)).await.remove(0);
    let started = Instant::now();
    let d = woken_with(poll(b, "q"), started, id).await;
    assert_eq!(d.attempt, 2);
}

/// A long poll gets a failed job when its backoff ends.
pub async fn a_long_poll_gets_a_retry_after_its_backoff<B: Broker + Clone>(b: &B) {
    queue(b, "q", |_| {}).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    let d = take(b, "q", 1, None).await.remove(0);
    b.fail(failure(&d.receipt, Some(SOON_MS), false)).await.unwrap();
    let started = Instant::now();
    let d = woken_with(poll(b, "q"), started, id).await;
    assert_eq!(d.attempt, 2);
}

/// A long poll parked on a source queue gets a dead letter redriven back to it.
pub async fn a_long_poll_gets_a_redriven_job<B: Broker + Clone>(b: &B) {
    queue(b, "q", |p| p.max_attempts = Some(Some(1))).await;
    let id = send(b, "q", vec![job("a")]).await[0];
    let d = take(b, "q", 1, None).await.remove(0);
    b.fail(failure(&d.receipt, None, false)).await.unwrap();
    let started = Instant::now();
    let parked = poll(b, "q");
    crate::until_parked(b, 1).await;
    let req = RedriveRequest { ids: Some(vec![id]), ..RedriveRequest::default() };
    assert_eq!(b.redrive("q-dlq".into(), req).await.unwrap().moved, 1);
    woken_with(parked, started, id).await;
}

/// On a FIFO queue, a long poll waiting behind a group in flight gets the group's next job as
/// soon as the batch holding the group is acked.
pub async fn a_long_poll_gets_a_fifo_groups_next_job_when_the_group_is_acked<B: Broker + Clone>(
    b: &B,
) {
    queue(b, "q.fifo", |_| {}).await;
    let g = |body: &str| NewJob { group: Some("g".into()), ..job(body) };
    let ids = send(b, "q.fifo", vec![g("first"), g("second")]).await;
    let first = take(b, "q.fifo", 1, None).await.remove(0);
    assert_eq!(first.id, ids[0]);
    let started = Instant::now();
    let parked = poll(b, "q.fifo");
    crate::until_parked(b, 1).await;
    b.ack(vec![first.receipt]).await.unwrap();
    woken_with(parked, started, ids[1]).await;
}

/// A long poll over several queues is woken by a job in any of them.
pub async fn a_long_poll_on_several_queues_is_woken_by_any<B: Broker + Clone>(b: &B) {
    queue(b, "a", |_| {}).await;
    queue(b, "b", |_| {}).await;
    let started = Instant::now();
    let parked = {
        let b = b.clone();
        tokio::spawn(async move {
            b.receive(crate::long_poll(&["a", "b"])).await.expect("long poll answered")
        })
    };
    crate::until_parked(b, 1).await;
    let id = send(b, "b", vec![job("in b")]).await[0];
    let d = woken_with(parked, started, id).await;
    assert_eq!(d.queue, "b");
}
