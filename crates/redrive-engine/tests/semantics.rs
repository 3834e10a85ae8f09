//! Queue semantics on the store, with time passed in explicitly: leases, fencing, retries and
//! backoff, dead letters, priorities and aging, idempotency, redrive, retention, compaction.

use redrive_core::broker::{AckResult, DeadFilter, Delivery, FailRequest, NewJob, RedriveRequest};
use redrive_core::model::{DeadReason, ErrorInfo, JobState, Outcome, Priority};
use redrive_core::{Error, QueuePatch};
use redrive_engine::{Durability, MemStorage, Store};

const T0: u64 = 1_700_000_000_000;

struct Harness {
    storage: MemStorage,
    store: Store,
    now: u64,
}

impl Harness {
    fn new(patch: QueuePatch) -> Harness {
        let storage = MemStorage::new();
        let mut store =
            Store::open_with(Box::new(storage.clone()), Durability::Sync, 8192, T0).unwrap();
        store.put_queue("q", &patch, T0).unwrap();
        store.commit(T0).unwrap();
        Harness { storage, store, now: T0 }
    }

    fn send(&mut self, body: &str, priority: Priority) -> redrive_core::JobId {
        let job = NewJob { body: body.into(), priority: Some(priority), ..NewJob::default() };
        let r = self.store.enqueue("q", &[job], self.now).unwrap();
        self.store.commit(self.now).unwrap();
        r[0].id
    }

    fn recv(&mut self, queue: &str, max: usize) -> Vec<Delivery> {
        let qid = self.store.queue_id(queue).unwrap();
        let mut out = Vec::new();
        self.store.receive_from(qid, max, None, Some("worker-1"), self.now, &mut out).unwrap();
        self.store.commit(self.now).unwrap();
        out
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.store.tick(self.now).unwrap();
        self.store.commit(self.now).unwrap();
    }

    fn fail(&mut self, receipt: &str, non_retryable: bool) -> redrive_core::broker::FailResult {
        let req = FailRequest {
            receipt: receipt.into(),
            error: ErrorInfo {
                kind: "Timeout".into(),
                message: "upstream timed out after 30s".into(),
                detail: None,
            },
            retry_after_ms: None,
            non_retryable,
        };
        let r = self.store.fail(&req, self.now).unwrap();
        self.store.commit(self.now).unwrap();
        r
    }

    fn restart(&mut self) {
        let store =
            Store::open_with(Box::new(self.storage.clone()), Durability::Sync, 8192, self.now);
        self.store = store.unwrap();
    }
}

fn patch(f: impl FnOnce(&mut QueuePatch)) -> QueuePatch {
    let mut p = QueuePatch { visibility_timeout_ms: Some(1000), ..QueuePatch::default() };
    f(&mut p);
    p
}

#[test]
fn expired_lease_redelivers_with_the_next_attempt_and_refuses_the_old_receipt() {
    let mut h = Harness::new(patch(|_| {}));
    let id = h.send("a", Priority::Standard);
    let first = h.recv("q", 1).remove(0);
    assert_eq!(first.attempt, 1);
    h.advance(999);
    assert!(h.recv("q", 1).is_empty(), "still leased");
    h.advance(1);
    let second = h.recv("q", 1).remove(0);
    assert_eq!((second.id, second.attempt), (id, 2));
    assert_eq!(
        h.store.ack(std::slice::from_ref(&first.receipt), h.now).unwrap(),
        vec![AckResult::Stale]
    );
    assert_eq!(h.store.extend(&first.receipt, 5000, h.now).unwrap_err(), Error::StaleReceipt);
    let stale_fail = FailRequest {
        receipt: first.receipt,
        error: ErrorInfo { kind: "x".into(), message: "y".into(), detail: None },
        retry_after_ms: None,
        non_retryable: false,
    };
    assert_eq!(h.store.fail(&stale_fail, h.now).unwrap_err(), Error::StaleReceipt);
    assert_eq!(
        h.store.ack(std::slice::from_ref(&second.receipt), h.now).unwrap(),
        vec![AckResult::Ok]
    );
    assert_eq!(
        h.store.ack(&[second.receipt], h.now).unwrap(),
        vec![AckResult::Stale],
        "completed once"
    );
    let info = h.store.job_info(id).unwrap();
    assert_eq!(info.state, JobState::Acked);
    let outcomes: Vec<Outcome> = info.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::LeaseExpired, Outcome::Ok]);
    assert_eq!(info.attempts[0].worker_id.as_deref(), Some("worker-1"));
}

#[test]
fn heartbeat_extends_the_lease_and_zero_releases_it() {
    let mut h = Harness::new(patch(|_| {}));
    h.send("a", Priority::Standard);
    let d = h.recv("q", 1).remove(0);
    h.advance(900);
    assert_eq!(h.store.extend(&d.receipt, 1000, h.now).unwrap(), h.now + 1000);
    h.advance(900);
    assert!(h.recv("q", 1).is_empty(), "extended lease still holds");
    h.store.extend(&d.receipt, 0, h.now).unwrap();
    let again = h.recv("q", 1).remove(0);
    assert_eq!(again.attempt, 2, "released at once");
}

#[test]
fn max_receives_moves_the_job_to_the_dead_letter_queue_with_its_history() {
    let mut h = Harness::new(patch(|p| {
        p.max_receive_count = Some(Some(2));
        p.max_attempts = Some(None);
    }));
    let id = h.send("poison", Priority::High);
    for _ in 0..2 {
        assert_eq!(h.recv("q", 1).len(), 1);
        h.advance(1000);
    }
    assert!(h.recv("q", 1).is_empty(), "third receive moves it instead of delivering");
    let dead = h.recv("q-dlq", 1).remove(0);
    assert_eq!(dead.id, id);
    let info = dead.dead.expect("dead info");
    assert_eq!((info.reason, info.source_queue.as_str()), (DeadReason::MaxReceives, "q"));
    let page = h.store.list_dead("q-dlq", &DeadFilter::default(), None, 10).unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].attempts.len(), 2, "both expired leases are in the attempt log");
}

#[test]
fn non_retryable_failure_dies_at_once_and_max_attempts_after_n() {
    let mut h = Harness::new(patch(|p| p.max_attempts = Some(Some(2))));
    let a = h.send("a", Priority::Standard);
    let d = h.recv("q", 1).remove(0);
    let r = h.fail(&d.receipt, true);
    assert_eq!(
        (r.state, r.queue.as_str(), r.dead_reason),
        (JobState::Ready, "q-dlq", Some(DeadReason::NonRetryable))
    );
    let b = h.send("b", Priority::Standard);
    let d = h.recv("q", 1).remove(0);
    assert_eq!(h.fail(&d.receipt, false).dead_reason, None);
    h.advance(10_000);
    let d = h.recv("q", 1).remove(0);
    assert_eq!(h.fail(&d.receipt, false).dead_reason, Some(DeadReason::MaxAttempts));
    let info = h.store.job_info(b).unwrap();
    assert_eq!(info.attempts.len(), 2);
    assert_eq!(info.attempts[1].error.as_ref().unwrap().kind, "Timeout");
    let dead = h.store.list_dead("q-dlq", &DeadFilter::default(), None, 10).unwrap();
    assert_eq!(dead.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a, b]);
}

#[test]
fn backoff_grows_exponentially_with_full_jitter_within_bounds() {
    let base = 100;
    let mut h = Harness::new(patch(|p| {
        p.max_attempts = Some(Some(10));
        p.backoff = Some(redrive_core::Backoff { base_ms: base, max_ms: 1600 });
    }));
    let mut delays: Vec<Vec<u64>> = vec![Vec::new(); 6];
    for _ in 0..40 {
        h.send("j", Priority::Standard);
    }
    for attempt in 1..=6u32 {
        h.advance(10_000);
        let got = h.recv("q", 100);
        assert_eq!(got.len(), 40);
        for d in got {
            let r = h.fail(&d.receipt, false);
            delays[attempt as usize - 1].push(r.retry_at.unwrap() - h.now);
        }
    }
    for (i, ds) in delays.iter().enumerate() {
        let ceiling = (base << i).min(1600);
        assert!(ds.iter().all(|d| *d <= ceiling), "attempt {}: {ds:?} over {ceiling}", i + 1);
        let distinct: std::collections::BTreeSet<_> = ds.iter().collect();
        assert!(distinct.len() > 5, "attempt {} is jittered: {ds:?}", i + 1);
    }
    let mean = |ds: &Vec<u64>| ds.iter().sum::<u64>() as f64 / ds.len() as f64;
    assert!(mean(&delays[4]) > 2.0 * mean(&delays[0]), "backoff grows");
}

#[test]
fn high_before_standard_before_low_fifo_within_a_level() {
    let mut h = Harness::new(patch(|p| p.priority_aging_ms = Some(None)));
    let l = h.send("l", Priority::Low);
    let s1 = h.send("s1", Priority::Standard);
    let hi = h.send("h", Priority::High);
    let s2 = h.send("s2", Priority::Standard);
    let order: Vec<_> = h.recv("q", 10).into_iter().map(|d| d.id).collect();
    assert_eq!(order, vec![hi, s1, s2, l]);
}

#[test]
fn aging_lets_a_waiting_low_job_through() {
    let mut h = Harness::new(patch(|p| p.priority_aging_ms = Some(Some(5000))));
    let low = h.send("low", Priority::Low);
    h.advance(5000);
    let std = h.send("std", Priority::Standard);
    let got: Vec<_> = h.recv("q", 2).into_iter().map(|d| d.id).collect();
    assert_eq!(got, vec![low, std], "the aged low job counts as standard and was ready first");
    h.send("high", Priority::High);
    let low2 = h.send("low2", Priority::Low);
    h.advance(4999);
    assert_ne!(h.recv("q", 1)[0].id, low2, "not aged yet: high first");
}

#[test]
fn idempotency_key_returns_the_first_id_even_after_restart() {
    let mut h = Harness::new(patch(|_| {}));
    let job = NewJob {
        body: "charge".into(),
        idempotency_key: Some("order-42".into()),
        ..NewJob::default()
    };
    let first = h.store.enqueue("q", std::slice::from_ref(&job), h.now).unwrap()[0].clone();
    h.store.commit(h.now).unwrap();
    h.restart();
    let again = h.store.enqueue("q", std::slice::from_ref(&job), h.now + 1000).unwrap()[0].clone();
    assert!(again.duplicate && again.id == first.id);
    assert_eq!(h.store.queue_stats("q", h.now).unwrap().counts.ready, 1, "nothing new was created");
    h.advance(5 * 60 * 1000 + 1);
    let later = h.store.enqueue("q", &[job], h.now).unwrap()[0].clone();
    assert!(!later.duplicate, "the window is over");
}

#[test]
fn a_purge_forgets_idempotency_keys_also_after_a_restart() {
    let mut h = Harness::new(patch(|_| {}));
    let job =
        NewJob { body: "charge".into(), idempotency_key: Some("k".into()), ..NewJob::default() };
    let first = h.store.enqueue("q", std::slice::from_ref(&job), h.now).unwrap()[0].clone();
    h.store.commit(h.now).unwrap();
    h.advance(10);
    assert_eq!(h.store.purge("q").unwrap(), 1);
    h.store.commit(h.now).unwrap();
    h.restart();
    h.advance(10);
    let again = h.store.enqueue("q", std::slice::from_ref(&job), h.now).unwrap()[0].clone();
    assert!(!again.duplicate && again.id != first.id, "the purge forgot the key");
    h.store.commit(h.now).unwrap();
    h.restart();
    let third = h.store.enqueue("q", &[job], h.now + 1).unwrap()[0].clone();
    assert!(third.duplicate && third.id == again.id, "a key used after the purge still holds");
}

#[test]
fn redrive_resets_attempts_keeps_history_and_records_lineage() {
    let mut h = Harness::new(patch(|p| p.max_attempts = Some(Some(1))));
    let id = h.send("bad", Priority::Standard);
    let d = h.recv("q", 1).remove(0);
    h.fail(&d.receipt, false);
    let dry = h
        .store
        .redrive("q-dlq", &RedriveRequest { dry_run: true, ..Default::default() }, h.now)
        .unwrap();
    assert_eq!((dry.moved, dry.dry_run), (1, true));
    assert_eq!(h.store.job_info(id).unwrap().queue, "q-dlq", "dry run moved nothing");
    let filter = DeadFilter { error_type: Some("Other".into()), ..DeadFilter::default() };
    let none = h
        .store
        .redrive("q-dlq", &RedriveRequest { filter: Some(filter), ..Default::default() }, h.now)
        .unwrap();
    assert_eq!(none.moved, 0);
    let sig = redrive_core::model::signature("Timeout", "upstream timed out after 30s");
    let filter = DeadFilter { signature: Some(sig), ..DeadFilter::default() };
    let r = h
        .store
        .redrive("q-dlq", &RedriveRequest { filter: Some(filter), ..Default::default() }, h.now)
        .unwrap();
    assert_eq!(r.ids, vec![id]);
    let info = h.store.job_info(id).unwrap();
    assert_eq!(
        (info.queue.as_str(), info.state, info.failures, info.receive_count),
        ("q", JobState::Ready, 0, 0)
    );
    assert_eq!((info.redrive_count, info.redriven_from.as_deref()), (1, Some("q-dlq")));
    assert!(info.dead.is_none());
    assert_eq!(info.attempts.len(), 1, "history kept");
    let again = h.recv("q", 1).remove(0);
    assert_eq!(again.attempt, 1);
}

#[test]
fn retention_moves_to_the_dead_letter_queue_then_deletes_counted() {
    let mut h = Harness::new(patch(|p| p.retention_ms = Some(60_000)));
    let id = h.send("old", Priority::Standard);
    h.advance(60_000);
    let info = h.store.job_info(id).unwrap();
    assert_eq!((info.queue.as_str(), info.dead.unwrap().reason), ("q-dlq", DeadReason::Expired));
    assert_eq!(h.store.queue_stats("q", h.now).unwrap().totals.expired, 1);
    h.store
        .put_queue("q-dlq", &QueuePatch { retention_ms: Some(60_000), ..Default::default() }, h.now)
        .unwrap();
    // Retention in the dead-letter queue counts from when the job died.
    h.advance(60_000);
    assert!(h.store.job_info(id).is_err(), "deleted from the dead-letter queue");
    assert_eq!(h.store.queue_stats("q-dlq", h.now).unwrap().totals.expired, 1);
}

#[test]
fn completed_jobs_stay_queryable_for_their_retention() {
    let mut h = Harness::new(patch(|p| p.completed_retention_ms = Some(10_000)));
    let id = h.send("a", Priority::Standard);
    let d = h.recv("q", 1).remove(0);
    h.store.ack(&[d.receipt], h.now).unwrap();
    h.advance(9_999);
    assert_eq!(h.store.job_info(id).unwrap().state, JobState::Acked);
    h.restart();
    assert_eq!(h.store.job_info(id).unwrap().state, JobState::Acked, "survives restart");
    h.advance(1);
    assert!(h.store.job_info(id).is_err(), "forgotten");
}

#[test]
fn restart_revokes_leases_and_keeps_everything_else() {
    let mut h = Harness::new(patch(|_| {}));
    let a = h.send("a", Priority::Standard);
    let b = h.send("b", Priority::Low);
    let d = h.recv("q", 1).remove(0);
    assert_eq!(d.id, a);
    h.restart();
    let got: Vec<_> = h.recv("q", 2).into_iter().map(|d| (d.id, d.attempt)).collect();
    assert_eq!(got, vec![(a, 2), (b, 1)]);
    assert_eq!(
        h.store.ack(&[d.receipt], h.now).unwrap(),
        vec![AckResult::Stale],
        "a receipt from before the restart is refused once the job is leased again"
    );
    let info = h.store.job_info(a).unwrap();
    assert_eq!(info.attempts[0].outcome, Outcome::Revoked);
}

#[test]
fn churn_reclaims_wal_space_and_loses_nothing() {
    let mut h = Harness::new(patch(|p| p.completed_retention_ms = Some(1000)));
    let keep = h.send("keep me", Priority::Low);
    for round in 0..30 {
        let jobs: Vec<NewJob> =
            (0..50).map(|i| NewJob { body: format!("{round}-{i}"), ..NewJob::default() }).collect();
        h.store.enqueue("q", &jobs, h.now).unwrap();
        let qid = h.store.queue_id("q").unwrap();
        let mut got = Vec::new();
        h.store.receive_from(qid, 50, None, None, h.now, &mut got).unwrap();
        let receipts: Vec<String> =
            got.iter().filter(|d| d.id != keep).map(|d| d.receipt.clone()).collect();
        h.store.ack(&receipts, h.now).unwrap();
        if let Some(k) = got.iter().find(|d| d.id == keep) {
            h.store.extend(&k.receipt, 0, h.now).unwrap();
        }
        h.advance(2000);
        while h.store.compact_step().unwrap() {}
    }
    let (bytes, segments) = h.store.wal_size();
    assert!(segments <= 3, "{segments} segments, {bytes} bytes");
    assert!(h.store.metrics().compacted_segments + h.store.metrics().deleted_segments > 10);
    h.restart();
    let info = h.store.job_info(keep).unwrap();
    assert_eq!((info.state, info.body.as_deref()), (JobState::Ready, Some("keep me")));
    assert_eq!(h.store.job_count(), 1);
}

/// A segment is compacted a slice at a time (the engine serves requests between slices): a job
/// settled between two slices, whose records the compaction had not reached, is left behind,
/// and a job that stays is moved whole, as a restart shows.
#[test]
fn compaction_goes_a_slice_at_a_time_and_work_in_between_counts() {
    const SEGMENT: u32 = 1 << 20; // four slices
    let storage = MemStorage::new();
    let mut store =
        Store::open_with(Box::new(storage.clone()), Durability::Sync, SEGMENT, T0).unwrap();
    let now = T0;
    let forget = patch(|p| p.completed_retention_ms = Some(0));
    store.put_queue("q", &forget, now).unwrap();
    store.put_queue("late", &forget, now).unwrap();
    let big = |tag: &str, priority| NewJob {
        body: format!("{tag}:{}", "x".repeat(10_000)),
        priority: Some(priority),
        ..NewJob::default()
    };
    let send = |store: &mut Store, q: &str, job: NewJob| {
        let id = store.enqueue(q, &[job], now).unwrap()[0].id;
        store.commit(now).unwrap();
        id
    };
    // Jobs that are done at once: their records die.
    let churn = |store: &mut Store, n: usize| {
        for i in 0..n {
            send(store, "q", big(&format!("filler-{i}"), Priority::High));
            let mut got = Vec::new();
            store.receive_from(store.queue_id("q").unwrap(), 1, None, None, now, &mut got).unwrap();
            assert_eq!(store.ack(&[got[0].receipt.clone()], now).unwrap(), [AckResult::Ok]);
            store.commit(now).unwrap();
        }
        store.tick(now + 1).unwrap();
        store.commit(now + 1).unwrap();
    };
    let early = send(&mut store, "q", big("early", Priority::Low));
    churn(&mut store, 70);
    let late = send(&mut store, "late", big("late", Priority::Low));
    let mut fill = 0;
    while store.wal_size().1 < 2 {
        churn(&mut store, 1);
        fill += 1;
        assert!(fill < 200, "segment 1 never filled");
    }
    // The oldest segment holds two live jobs among ~100 dead ones; the first looks postpone.
    for _ in 0..40 {
        if store.compacting() {
            break;
        }
        store.compact_step().unwrap();
    }
    assert!(store.compacting(), "a compaction began and has slices left");
    // Between slices: the late job is received and acked before its slice is read.
    let mut got = Vec::new();
    store.receive_from(store.queue_id("late").unwrap(), 1, None, None, now, &mut got).unwrap();
    assert_eq!(got[0].id, late);
    assert_eq!(store.ack(&[got[0].receipt.clone()], now).unwrap(), [AckResult::Ok]);
    store.commit(now).unwrap();
    let mut slices = 1;
    while store.compacting() {
        store.compact_step().unwrap();
        slices += 1;
    }
    assert!(slices >= 3, "{slices} slices for a segment of 1 MiB");
    assert_eq!(store.metrics().compacted_segments, 1);
    assert_eq!(store.job_info(early).unwrap().body.as_deref().map(|b| &b[..6]), Some("early:"));
    let store = Store::open_with(Box::new(storage), Durability::Sync, SEGMENT, now + 2).unwrap();
    let info = store.job_info(early).unwrap();
    assert_eq!(
        (info.state, info.body.as_deref().map(|b| &b[..6])),
        (JobState::Ready, Some("early:"))
    );
    let late = store.job_info(late).map(|i| i.state);
    assert!(matches!(late, Ok(JobState::Acked) | Err(_)), "acked, not brought back: {late:?}");
}

#[test]
fn fifo_groups_deliver_in_order_one_batch_at_a_time_across_restarts() {
    let mut h = Harness::new(patch(|_| {}));
    h.store.put_queue("o.fifo", &patch(|_| {}), h.now).unwrap();
    let send = |h: &mut Harness, body: &str, group: &str| {
        let job = NewJob {
            body: body.into(),
            group: Some(group.into()),
            priority: Some(Priority::High),
            ..NewJob::default()
        };
        let id = h.store.enqueue("o.fifo", &[job], h.now).unwrap()[0].id;
        h.store.commit(h.now).unwrap();
        h.now += 1;
        id
    };
    let bodies = |ds: &[Delivery]| ds.iter().map(|d| d.body.clone()).collect::<Vec<_>>();
    for (body, group) in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("a3", "A")] {
        send(&mut h, body, group);
    }
    let first = h.recv("o.fifo", 1);
    assert_eq!(bodies(&first), ["a1"]);
    assert_eq!(first[0].group.as_deref(), Some("A"));
    assert!(first[0].attributes.is_empty(), "the group is not shown as an attribute");
    assert_eq!(first[0].priority, Priority::Standard, "FIFO ignores priorities");
    assert_eq!(bodies(&h.recv("o.fifo", 10)), ["b1"], "group A waits while a1 is leased");

    // a1 comes back (released) and goes before a2 although it became ready later.
    h.store.extend(&first[0].receipt, 0, h.now).unwrap();
    h.store.commit(h.now).unwrap();
    h.restart(); // leases are revoked; the order must survive recovery
    let again = h.recv("o.fifo", 10);
    // Both groups became visible again at the restart: the older group first, each whole.
    assert_eq!(
        bodies(&again),
        ["a1", "a2", "a3", "b1"],
        "one group fills the batch, then the next"
    );
    assert_eq!(again[0].attempt, 2);
}

#[test]
fn fifo_needs_a_fifo_name_and_a_fifo_dead_letter_queue() {
    let mut h = Harness::new(patch(|_| {}));
    let fifo = patch(|p| p.fifo = Some(true));
    assert!(matches!(
        h.store.put_queue("plain", &fifo, h.now),
        Err(Error::InvalidParameter { .. })
    ));
    let to_q = patch(|p| p.dead_letter_queue = Some(Some("q".into())));
    let e = h.store.put_queue("o.fifo", &to_q, h.now).unwrap_err();
    assert!(e.to_string().contains("must be FIFO"), "{e}");
    h.store.put_queue("o.fifo", &patch(|_| {}), h.now).unwrap();
    let unfifo = patch(|p| p.fifo = Some(false));
    assert!(h.store.put_queue("o.fifo", &unfifo, h.now).is_err(), "FIFO cannot be switched off");
    let forged = NewJob {
        body: "x".into(),
        attributes: [(redrive_core::model::GROUP_ATTRIBUTE.to_owned(), "g".to_owned())].into(),
        ..NewJob::default()
    };
    let e = h.store.enqueue("o.fifo", &[forged], h.now).unwrap_err();
    assert!(e.to_string().contains("reserved"), "the group is set with `group` only: {e}");
}

#[test]
fn totals_survive_restarts_and_a_crash_loses_at_most_one_flush_interval() {
    let mut h = Harness::new(patch(|_| {}));
    let totals = |h: &Harness| {
        let qs = h.store.list_queues(h.now);
        qs.into_iter().find(|q| q.name == "q").unwrap().stats.totals
    };
    h.send("a", Priority::Standard);
    h.send("b", Priority::Standard);
    let d = h.recv("q", 1).remove(0);
    h.store.ack(&[d.receipt], h.now).unwrap();
    h.store.commit(h.now).unwrap();
    let before = totals(&h);
    assert_eq!((before.enqueued, before.delivered, before.acked), (2, 1, 1));
    // A clean stop logs them.
    h.store.flush_totals(h.now, true).unwrap();
    h.store.commit(h.now).unwrap();
    h.restart();
    assert_eq!(totals(&h), before, "the same totals after a restart");

    // Counted since the last flush and not yet logged: a crash loses it...
    h.send("c", Priority::Standard);
    h.store.flush_totals(h.now, false).unwrap();
    h.store.commit(h.now).unwrap();
    h.restart();
    assert_eq!(totals(&h).enqueued, 2, "not due yet: nothing logged");
    // ...and the periodic flush, once due, keeps it.
    h.send("d", Priority::Standard);
    h.now += redrive_engine::TOTALS_FLUSH_MS;
    h.store.flush_totals(h.now, false).unwrap();
    h.store.commit(h.now).unwrap();
    h.restart();
    assert_eq!(totals(&h).enqueued, 3);

    // A queue deleted and made again starts from 0.
    h.store.delete_queue("q").unwrap();
    h.store.put_queue("q", &patch(|_| {}), h.now).unwrap();
    h.store.commit(h.now).unwrap();
    h.restart();
    assert_eq!(totals(&h), Default::default());
}
