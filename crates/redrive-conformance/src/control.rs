//! Control: idempotent enqueue, long polls, multi-queue receive, documents, stats, drain.

use std::time::{Duration, Instant};

use redrive_core::broker::{DocKind, NewJob, ReceiveRequest};
use redrive_core::model::Priority;
use redrive_core::{limits, Broker, Error};

use crate::{bodies, job, long_poll, prio, queue, send, take, until_parked, WAKE_BOUND};

/// The same idempotency key within the window returns the first job's id and creates nothing,
/// within one batch and across batches.
pub async fn idempotent_enqueue_returns_the_first_id<B: Broker>(b: &B) {
    queue(b, "q", |_| {}).await;
    let keyed = |body: &str| NewJob { idempotency_key: Some("k-1".into()), ..job(body) };
    let first = b.enqueue("q".into(), vec![keyed("a"), keyed("b"), job("c")]).await.unwrap();
    assert!(!first[0].duplicate && first[1].duplicate && !first[2].duplicate);
    assert_eq!(first[1].id, first[0].id);
    let again = b.enqueue("q".into(), vec![keyed("d")]).await.unwrap();
    assert_eq!((again[0].id, again[0].duplicate), (first[0].id, true));
    assert_eq!(bodies(&take(b, "q", 10, None).await), ["a", "c"]);
    let totals = b.get_queue("q".into()).await.unwrap().stats.totals;
    assert_eq!((totals.enqueued, totals.duplicates), (2, 2));
}

/// A receive parked in a long poll is answered with the job as soon as one is enqueued.
pub async fn a_long_poll_is_woken_by_an_enqueue<B: Broker + Clone>(b: &B) {
    queue(b, "q", |_| {}).await;
    let b2 = b.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move { b2.receive(long_poll(&["q"])).await });
    until_parked(b, 1).await;
    let id = send(b, "q", vec![job("wake")]).await[0];
    let got = tokio::time::timeout(WAKE_BOUND, poll)
        .await
        .expect("the enqueue woke the long poll well before its wait ended")
        .unwrap()
        .unwrap();
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    assert!(started.elapsed() < Duration::from_millis(limits::RECEIVE_WAIT_MAX_MS));
    assert_eq!(b.snapshot().await.unwrap().waiters, 0);
}

/// Draining answers parked long polls at once, empty, and later receives do not wait.
pub async fn drain_answers_parked_long_polls<B: Broker + Clone>(b: &B) {
    queue(b, "q", |_| {}).await;
    let b2 = b.clone();
    let poll = tokio::spawn(async move { b2.receive(long_poll(&["q"])).await });
    until_parked(b, 1).await;
    b.drain().await.unwrap();
    let got = tokio::time::timeout(WAKE_BOUND, poll).await.expect("answered").unwrap().unwrap();
    assert!(got.is_empty());
    let quick = tokio::time::timeout(WAKE_BOUND, b.receive(long_poll(&["q"]))).await;
    assert!(quick.expect("no wait while draining").unwrap().is_empty());
}

/// A receive over several queues takes from the first that has jobs, in the order given.
pub async fn multi_queue_receive_follows_preference_order<B: Broker>(b: &B) {
    queue(b, "urgent", |_| {}).await;
    queue(b, "bulk", |_| {}).await;
    send(b, "bulk", vec![job("b1"), job("b2")]).await;
    send(b, "urgent", vec![job("u1")]).await;
    let req = ReceiveRequest {
        queues: vec!["urgent".into(), "bulk".into()],
        max: 2,
        wait_ms: Some(0),
        ..ReceiveRequest::default()
    };
    let got = b.receive(req.clone()).await.unwrap();
    assert_eq!(bodies(&got), ["u1", "b1"]);
    assert_eq!((got[0].queue.as_str(), got[1].queue.as_str()), ("urgent", "bulk"));
    let bad = ReceiveRequest { queues: vec!["urgent".into(), "missing".into()], ..req };
    assert_eq!(b.receive(bad).await.unwrap_err(), Error::QueueNotFound("missing".into()));
}

/// Documents are stored, replaced, listed by key and deleted; bad keys are refused.
pub async fn documents_put_list_and_delete<B: Broker>(b: &B) {
    let kind = DocKind::TriagePolicy;
    b.put_doc(kind, "b".into(), Some("{\"v\":1}".into())).await.unwrap();
    b.put_doc(kind, "a".into(), Some("{}".into())).await.unwrap();
    b.put_doc(kind, "b".into(), Some("{\"v\":2}".into())).await.unwrap();
    let all = b.list_docs(kind).await.unwrap();
    assert_eq!(all, [("a".to_string(), "{}".to_string()), ("b".into(), "{\"v\":2}".into())]);
    assert!(b.list_docs(DocKind::TriageProposal).await.unwrap().is_empty());
    b.put_doc(kind, "a".into(), None).await.unwrap();
    b.put_doc(kind, "never".into(), None).await.unwrap();
    assert_eq!(b.list_docs(kind).await.unwrap().len(), 1);
    let e = b.put_doc(kind, String::new(), Some("x".into())).await.unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }));
    let huge = "x".repeat(limits::DOC_VALUE_BYTES_MAX + 1);
    let e = b.put_doc(kind, "big".into(), Some(huge)).await.unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }));
}

/// A conditional document write changes the document only from the value it expects: it
/// creates only what is missing, replaces and deletes only the current value (a stale expected
/// value is refused and changes nothing), and of writers racing from one value exactly one wins.
pub async fn conditional_document_writes_win_once<B: Broker + Clone>(b: &B) {
    let kind = DocKind::MoveTask;
    let put_if = |expected: Option<&str>, value: Option<&str>| {
        let (expected, value) = (expected.map(str::to_owned), value.map(str::to_owned));
        b.put_doc_if(kind, "t".into(), expected, value)
    };
    let current = || async { b.list_docs(kind).await.unwrap() };
    assert!(put_if(None, None).await.unwrap(), "a missing document is missing");
    assert!(put_if(None, Some("v1")).await.unwrap());
    assert!(!put_if(None, Some("other")).await.unwrap(), "it exists now");
    assert!(!put_if(None, None).await.unwrap());
    assert!(put_if(Some("v1"), Some("v2")).await.unwrap());
    assert!(!put_if(Some("v1"), Some("v3")).await.unwrap(), "v1 is stale");
    assert!(!put_if(Some("v1"), None).await.unwrap(), "a stale delete deletes nothing");
    assert_eq!(current().await, [("t".to_string(), "v2".to_string())]);
    assert!(put_if(Some("v2"), None).await.unwrap());
    assert!(current().await.is_empty());
    assert!(!put_if(Some("v2"), Some("v4")).await.unwrap(), "a deleted document matches nothing");
    let e = b.put_doc_if(kind, String::new(), None, Some("x".into())).await.unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }));
    let huge = "x".repeat(limits::DOC_VALUE_BYTES_MAX + 1);
    let e = b.put_doc_if(kind, "big".into(), None, Some(huge)).await.unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }));

    // Racing writers: eight create one key, then eight replace the value they all read.
    for expected in [None, Some("racers".to_string())] {
        if let Some(v) = &expected {
            b.put_doc(kind, "race".into(), Some(v.clone())).await.unwrap();
        }
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let (b, expected) = (b.clone(), expected.clone());
                let value = Some(format!("racer {i}"));
                tokio::spawn(
                    async move { b.put_doc_if(kind, "race".into(), expected, value).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for (i, r) in racers.into_iter().enumerate() {
            if r.await.unwrap().unwrap() {
                winners.push(format!("racer {i}"));
            }
        }
        assert_eq!(winners.len(), 1, "exactly one racer from {expected:?} wins: {winners:?}");
        let stored = current().await.into_iter().find(|(k, _)| k == "race").map(|(_, v)| v);
        assert_eq!(stored.as_ref(), winners.first(), "the winner's value is the one stored");
    }
}

/// Stats count jobs by state and ready jobs by priority; queue settings round-trip.
pub async fn stats_count_by_state_and_priority<B: Broker>(b: &B) {
    queue(b, "q", |p| p.dead_letter_queue = Some(None)).await;
    let later = NewJob { delay_ms: Some(60_000), ..job("later") };
    let jobs = vec![
        prio("h", Priority::High),
        prio("s1", Priority::Standard),
        prio("s2", Priority::Standard),
        prio("l", Priority::Low),
        later,
    ];
    send(b, "q", jobs).await;
    take(b, "q", 1, None).await;
    let info = b.get_queue("q".into()).await.unwrap();
    assert_eq!(info.config.visibility_timeout_ms, 30_000);
    assert_eq!(info.config.dead_letter_queue, None);
    let s = info.stats;
    assert_eq!((s.counts.ready, s.counts.delayed, s.counts.leased), (3, 1, 1));
    assert_eq!((s.ready_by_priority.high, s.ready_by_priority.standard), (0, 2));
    assert_eq!(s.ready_by_priority.low, 1);
    let names: Vec<String> = b.list_queues().await.unwrap().into_iter().map(|q| q.name).collect();
    assert_eq!(names, ["q"]);
    let (created, fresh) = b.put_queue("q".into(), Default::default()).await.unwrap();
    assert!(!fresh, "putting an existing queue patches it");
    assert_eq!(created.stats.counts.ready, 3);
    b.delete_queue("q".into()).await.unwrap();
    assert_eq!(b.get_queue("q".into()).await.unwrap_err(), Error::QueueNotFound("q".into()));
}

/// An idempotency key is free again once its window ends: the next job with it is new.
pub async fn an_idempotency_key_is_free_again_after_its_window<B: Broker>(b: &B) {
    queue(b, "q", |p| p.dedup_window_ms = Some(crate::SOON_MS)).await;
    let keyed = |body: &str| NewJob { idempotency_key: Some("k".into()), ..job(body) };
    let first = b.enqueue("q".into(), vec![keyed("a")]).await.unwrap()[0].clone();
    let again = b.enqueue("q".into(), vec![keyed("b")]).await.unwrap()[0].clone();
    assert_eq!((again.id, again.duplicate), (first.id, true));
    tokio::time::sleep(crate::AFTER_SOON).await;
    let later = b.enqueue("q".into(), vec![keyed("c")]).await.unwrap()[0].clone();
    assert!(!later.duplicate && later.id != first.id, "the window ended");
    assert_eq!(bodies(&take(b, "q", 10, None).await), ["a", "c"]);
}

/// The job browser lists a queue's jobs in enqueue order, by state (all but completed by
/// default; a delayed job whose time has come reads as ready), priority, error type and
/// enqueue time, in pages.
pub async fn jobs_list_by_state_priority_error_and_page<B: Broker>(b: &B) {
    use redrive_core::broker::JobFilter;
    use redrive_core::model::JobState;
    queue(b, "q", |_| {}).await;
    queue(b, "other", |_| {}).await;
    send(b, "other", vec![job("elsewhere")]).await;
    let ids = send(b, "q", vec![job("a"), prio("b", Priority::High), job("c"), job("d")]).await;
    let delayed = NewJob { delay_ms: Some(600_000), ..job("later") };
    let later = send(b, "q", vec![delayed]).await[0];
    // b (high) is leased and failed back to ready with a backoff; a is leased and acked.
    let got = take(b, "q", 2, None).await;
    assert_eq!(bodies(&got), ["b", "a"]);
    let mut fail = crate::failure(&got[0].receipt, Some(600_000), false);
    fail.error.kind = "Timeout".into();
    b.fail(fail).await.unwrap();
    b.ack(vec![got[1].receipt.clone()]).await.unwrap();
    let list = |f: JobFilter, after, limit| b.list_jobs("q".into(), f, after, limit);
    let ids_of = |p: redrive_core::broker::JobPage| p.jobs.iter().map(|j| j.id).collect::<Vec<_>>();

    let all = list(JobFilter::default(), None, 100).await.unwrap();
    assert_eq!(ids_of(all.clone()), [ids[1], ids[2], ids[3], later], "all but the completed one");
    assert!(all.next.is_none());
    let only = |states: &[JobState]| JobFilter { states: states.to_vec(), ..JobFilter::default() };
    let ready = ids_of(list(only(&[JobState::Ready]), None, 100).await.unwrap());
    assert_eq!(ready, [ids[2], ids[3]]);
    let waiting = ids_of(list(only(&[JobState::Delayed]), None, 100).await.unwrap());
    assert_eq!(waiting, [ids[1], later], "a retry in backoff and a delayed job");
    let done = ids_of(list(only(&[JobState::Acked]), None, 100).await.unwrap());
    assert_eq!(done, [ids[0]]);
    let high = JobFilter { priority: Some(Priority::High), ..JobFilter::default() };
    assert_eq!(ids_of(list(high, None, 100).await.unwrap()), [ids[1]]);
    let timeouts = JobFilter { error_type: Some("Timeout".into()), ..JobFilter::default() };
    assert_eq!(ids_of(list(timeouts, None, 100).await.unwrap()), [ids[1]]);
    let other = JobFilter { error_type: Some("Refused".into()), ..JobFilter::default() };
    assert!(list(other, None, 100).await.unwrap().jobs.is_empty());
    let future = JobFilter { since: Some(u64::MAX / 2), ..JobFilter::default() };
    assert!(list(future, None, 100).await.unwrap().jobs.is_empty());

    let first = list(JobFilter::default(), None, 3).await.unwrap();
    assert_eq!(ids_of(first.clone()), [ids[1], ids[2], ids[3]]);
    let rest = list(JobFilter::default(), first.next, 3).await.unwrap();
    assert_eq!((ids_of(rest.clone()), rest.next), (vec![later], None));
    assert!(
        matches!(list(JobFilter::default(), None, 1).await, Ok(p) if p.jobs[0].body.as_deref() == Some("b"))
    );
    assert!(matches!(
        b.list_jobs("missing".into(), JobFilter::default(), None, 10).await,
        Err(Error::QueueNotFound(_))
    ));
}

/// A paused queue takes jobs and hands none out, a long poll on it waits, and resuming wakes
/// that poll with the job.
pub async fn a_paused_queue_hands_out_nothing_until_resumed<B: Broker + Clone>(b: &B) {
    queue(b, "q", |p| p.paused = Some(true)).await;
    assert!(b.get_queue("q".into()).await.unwrap().config.paused);
    let id = send(b, "q", vec![job("held")]).await[0];
    assert!(take(b, "q", 10, None).await.is_empty(), "a paused queue hands nothing out");
    assert_eq!(b.get_queue("q".into()).await.unwrap().stats.counts.ready, 1);
    let b2 = b.clone();
    let poll = tokio::spawn(async move { b2.receive(long_poll(&["q"])).await });
    until_parked(b, 1).await;
    let resume = redrive_core::QueuePatch { paused: Some(false), ..Default::default() };
    b.put_queue("q".into(), resume).await.unwrap();
    let got = tokio::time::timeout(WAKE_BOUND, poll)
        .await
        .expect("resuming woke the long poll")
        .unwrap()
        .unwrap();
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
}
