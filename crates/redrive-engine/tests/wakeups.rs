//! No lost wake-ups: a job that becomes ready while receivers are long-polling goes to one of
//! them at once, whichever way it became ready (enqueue, delay expiry, lease expiry, a failure
//! with backoff, redrive, its FIFO group being released).
//!
//! Each test parks a receive with the longest wait there is and then makes a job ready. The
//! poll must be answered within `WAKE_BOUND`, a quarter of its wait: a wake-up that was lost
//! would only be noticed when the wait ends, and the test fails long before that.

use std::sync::Arc;
use std::time::Duration;

use redrive_core::broker::{Delivery, FailRequest, NewJob, ReceiveRequest, RedriveRequest};
use redrive_core::model::ErrorInfo;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{limits, Broker, QueuePatch, Result};
use redrive_engine::{Durability, Engine, EngineHandle, MemStorage, Store};
use tokio::task::JoinHandle;

/// The long poll's wait: the longest allowed.
const WAIT_MS: u64 = limits::RECEIVE_WAIT_MAX_MS;
/// How long a woken poll may take to answer; far below `WAIT_MS`, far above any scheduling delay.
const WAKE_BOUND: Duration = Duration::from_secs(5);
/// Short delays, leases and backoffs: the job becomes ready while the receiver waits.
const SOON_MS: u64 = 300;

async fn start() -> (Engine, EngineHandle) {
    let clock = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let h = engine.handle.clone();
    let patch = QueuePatch { visibility_timeout_ms: Some(60_000), ..QueuePatch::default() };
    h.put_queue("q".into(), patch).await.unwrap();
    (engine, h)
}

fn job(body: &str) -> NewJob {
    NewJob { body: body.into(), ..NewJob::default() }
}

fn receive(queue: &str, wait_ms: u64, lease_ms: Option<u64>) -> ReceiveRequest {
    ReceiveRequest {
        queues: vec![queue.into()],
        max: 1,
        wait_ms: Some(wait_ms),
        lease_ms,
        ..ReceiveRequest::default()
    }
}

/// Takes the one ready job now (no waiting).
async fn take(h: &EngineHandle, queue: &str, lease_ms: Option<u64>) -> Delivery {
    let mut got = h.receive(receive(queue, 0, lease_ms)).await.unwrap();
    assert_eq!(got.len(), 1, "a job is ready in {queue}");
    got.remove(0)
}

/// Starts a long poll on `queue` and returns once the engine has parked it (and every earlier
/// one): `parked` receivers in all.
async fn long_poll(
    h: &EngineHandle,
    queue: &str,
    parked: usize,
) -> JoinHandle<Result<Vec<Delivery>>> {
    let (h2, req) = (h.clone(), receive(queue, WAIT_MS, None));
    let poll = tokio::spawn(async move { h2.receive(req).await });
    for _ in 0..500 {
        if h.snapshot().await.unwrap().waiters >= parked {
            return poll;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the receive was answered or never parked: {:?}", poll.await);
}

/// The long poll's answer, which must come well before its wait ends.
async fn woken(poll: JoinHandle<Result<Vec<Delivery>>>) -> Delivery {
    let got = tokio::time::timeout(WAKE_BOUND, poll)
        .await
        .expect("lost wake-up: the job became ready but the long poll was not answered")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1, "the poll was answered with the job: {got:?}");
    got.into_iter().next().unwrap()
}

fn failure(receipt: String, retry_after_ms: Option<u64>, non_retryable: bool) -> FailRequest {
    FailRequest {
        receipt,
        error: ErrorInfo { kind: "Timeout".into(), message: "upstream".into(), detail: None },
        retry_after_ms,
        non_retryable,
    }
}

#[tokio::test]
async fn an_enqueue_goes_to_one_waiting_receiver_at_once() {
    let (engine, h) = start().await;
    let first = long_poll(&h, "q", 1).await;
    let second = long_poll(&h, "q", 2).await;
    let id = h.enqueue("q".into(), vec![job("a")]).await.unwrap()[0].id;
    assert_eq!(woken(first).await.id, id, "the receiver that waited longest gets it");
    assert!(!second.is_finished(), "one job, one receiver");
    assert_eq!(h.snapshot().await.unwrap().waiters, 1, "the other receiver still waits");
    let id = h.enqueue("q".into(), vec![job("b")]).await.unwrap()[0].id;
    assert_eq!(woken(second).await.id, id);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_delayed_job_goes_to_a_waiting_receiver_when_its_delay_ends() {
    let (engine, h) = start().await;
    let delayed = NewJob { delay_ms: Some(SOON_MS), ..job("later") };
    let id = h.enqueue("q".into(), vec![delayed]).await.unwrap()[0].id;
    let poll = long_poll(&h, "q", 1).await;
    assert_eq!(woken(poll).await.id, id);
    engine.shutdown().await;
}

#[tokio::test]
async fn an_expired_lease_goes_to_a_waiting_receiver_when_it_ends() {
    let (engine, h) = start().await;
    let id = h.enqueue("q".into(), vec![job("slow")]).await.unwrap()[0].id;
    let leased = take(&h, "q", Some(SOON_MS)).await;
    let poll = long_poll(&h, "q", 1).await;
    let d = woken(poll).await;
    assert_eq!((d.id, d.attempt), (id, 2), "delivered again after the lease ran out");
    assert_ne!(d.receipt, leased.receipt);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_failed_job_goes_to_a_waiting_receiver_when_its_backoff_ends() {
    let (engine, h) = start().await;
    let id = h.enqueue("q".into(), vec![job("flaky")]).await.unwrap()[0].id;
    let d = take(&h, "q", None).await;
    let poll = long_poll(&h, "q", 1).await;
    let r = h.fail(failure(d.receipt, Some(SOON_MS), false)).await.unwrap();
    assert!(r.retry_at.is_some(), "retried after a backoff: {r:?}");
    let d = woken(poll).await;
    assert_eq!((d.id, d.attempt), (id, 2));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_redriven_job_goes_to_a_waiting_receiver_at_once() {
    let (engine, h) = start().await;
    let id = h.enqueue("q".into(), vec![job("poison")]).await.unwrap()[0].id;
    let d = take(&h, "q", None).await;
    let r = h.fail(failure(d.receipt, None, true)).await.unwrap();
    assert_eq!(r.queue, "q-dlq", "dead-lettered");
    let poll = long_poll(&h, "q", 1).await;
    let moved = h.redrive("q-dlq".into(), RedriveRequest::default()).await.unwrap();
    assert_eq!(moved.ids, vec![id]);
    let d = woken(poll).await;
    assert_eq!((d.id, d.queue.as_str()), (id, "q"));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_fifo_group_released_by_an_ack_goes_to_a_waiting_receiver_at_once() {
    let (engine, h) = start().await;
    h.put_queue("o.fifo".into(), QueuePatch::default()).await.unwrap();
    let grouped = |body: &str| NewJob { group: Some("g".into()), ..job(body) };
    let jobs = vec![grouped("first"), grouped("second")];
    let ids: Vec<_> =
        h.enqueue("o.fifo".into(), jobs).await.unwrap().iter().map(|e| e.id).collect();
    let first = take(&h, "o.fifo", None).await;
    assert_eq!(first.id, ids[0]);
    // The second job is ready, but its group is held while the first is leased.
    let poll = long_poll(&h, "o.fifo", 1).await;
    h.ack(vec![first.receipt]).await.unwrap();
    assert_eq!(woken(poll).await.id, ids[1]);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_fifo_group_released_by_a_failure_goes_to_a_waiting_receiver_at_once() {
    let (engine, h) = start().await;
    h.put_queue("o.fifo".into(), QueuePatch::default()).await.unwrap();
    let grouped = |body: &str| NewJob { group: Some("g".into()), ..job(body) };
    let id = h.enqueue("o.fifo".into(), vec![grouped("first")]).await.unwrap()[0].id;
    let first = take(&h, "o.fifo", None).await;
    assert_eq!(first.id, id);
    let second = h.enqueue("o.fifo".into(), vec![grouped("second")]).await.unwrap()[0].id;
    let poll = long_poll(&h, "o.fifo", 1).await;
    // It dies (parked as dead: this queue has no dead-letter queue), so the group may go on.
    let r = h.fail(failure(first.receipt, None, true)).await.unwrap();
    assert!(r.dead_reason.is_some(), "{r:?}");
    assert_eq!(woken(poll).await.id, second);
    engine.shutdown().await;
}

/// Recovery indexes the jobs it finds ready as any enqueue does, which marks their queue woken;
/// a restarted engine must still hear of that queue's next ready job.
#[tokio::test]
async fn an_enqueue_after_a_restart_that_found_ready_jobs_goes_to_a_waiting_receiver() {
    let storage = MemStorage::new();
    let open = || {
        let clock = Arc::new(SystemClock);
        let store = Store::open(Box::new(storage.clone()), Durability::Sync, clock.now_ms());
        Engine::start(store.unwrap(), clock)
    };
    let engine = open();
    let h = engine.handle.clone();
    h.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    let before = h.enqueue("q".into(), vec![job("before")]).await.unwrap()[0].id;
    engine.shutdown().await;
    let engine = open();
    let h = engine.handle.clone();
    assert_eq!(take(&h, "q", None).await.id, before, "ready again after the restart");
    let poll = long_poll(&h, "q", 1).await;
    let after = h.enqueue("q".into(), vec![job("after")]).await.unwrap()[0].id;
    assert_eq!(woken(poll).await.id, after);
    engine.shutdown().await;
}

/// Long polls whose clients went away do not hold the waiter cap until their deadlines: when it
/// is reached, the abandoned ones are forgotten and a new long poll is parked.
#[tokio::test]
async fn abandoned_long_polls_free_the_waiter_cap() {
    let (_engine, h) = start().await;
    let polls: Vec<JoinHandle<Result<Vec<Delivery>>>> = (0..limits::WAITERS_COUNT_MAX)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.receive(receive("q", WAIT_MS, None)).await })
        })
        .collect();
    // Every poll is parked: the engine holds the cap's worth of waiters.
    let all_parked = async {
        while h.snapshot().await.unwrap().waiters < limits::WAITERS_COUNT_MAX {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all_parked).await.expect("every poll parked");
    let refused = h.receive(receive("q", 1, None)).await;
    assert!(
        matches!(refused, Err(redrive_core::Error::LimitExceeded { .. })),
        "at the cap with every poll alive: {refused:?}"
    );
    for p in &polls {
        p.abort();
    }
    for p in polls {
        let _ = p.await;
    }
    let parked = h.receive(receive("q", 200, None)).await;
    assert_eq!(parked.map(|d| d.len()), Ok(0), "parked and answered empty at its deadline");
}
