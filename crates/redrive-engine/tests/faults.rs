//! Faults through the store and the engine thread: a failed fsync or write poisons the store
//! (writes refused until restart, reads served, nothing acknowledged lost), and a power cut at
//! any moment never loses an enqueue that was acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redrive_core::broker::{AckResult, NewJob, ReceiveRequest};
use redrive_core::model::JobState;
use redrive_core::time::Clock;
use redrive_core::{Broker, Error, QueuePatch};
use redrive_engine::{Durability, Engine, MemStorage, Store};

struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn start(storage: &MemStorage) -> Engine {
    let clock = Arc::new(TestClock(AtomicU64::new(1_700_000_000_000)));
    let store = Store::open(Box::new(storage.clone()), Durability::Sync, clock.now_ms()).unwrap();
    Engine::start(store, clock)
}

fn job(body: &str) -> Vec<NewJob> {
    vec![NewJob { body: body.into(), ..NewJob::default() }]
}

#[tokio::test]
async fn fsync_failure_poisons_writes_but_reads_still_work() {
    let storage = MemStorage::new();
    let engine = start(&storage);
    let h = engine.handle.clone();
    h.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    let id = h.enqueue("q".into(), job("before")).await.unwrap()[0].id;
    storage.fail_syncs(true);
    let err = h.enqueue("q".into(), job("during")).await.unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err:?}");
    assert_eq!(err.wire().status, 503);
    storage.fail_syncs(false);
    let err = h.enqueue("q".into(), job("after")).await.unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "still refused after the disk recovers: {err:?}");
    let req = ReceiveRequest { queues: vec!["q".into()], max: 1, ..Default::default() };
    assert!(matches!(h.receive(req).await.unwrap_err(), Error::Poisoned(_)), "a lease is a write");
    assert_eq!(h.get_job(id).await.unwrap().body.as_deref(), Some("before"), "reads work");
    assert!(h.get_queue("q".into()).await.is_ok());
    assert!(h.health().poisoned.unwrap().contains("fsync"));
    engine.shutdown().await;
}

#[tokio::test]
async fn power_cut_never_loses_an_acknowledged_enqueue() {
    let mut storage = MemStorage::new();
    let mut acked = Vec::new();
    for round in 0..20u64 {
        let engine = start(&storage);
        let h = engine.handle.clone();
        h.put_queue("q".into(), QueuePatch::default()).await.unwrap();
        // Concurrent producers; some requests are still in flight when the power goes.
        let mut tasks = Vec::new();
        for p in 0..4 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in 0..25 {
                    match h.enqueue("q".into(), job(&format!("{round}-{p}-{i}"))).await {
                        Ok(r) => ok.push(r[0].id),
                        Err(_) => break,
                    }
                }
                ok
            }));
        }
        // Pull the plug mid-flight: unsynced bytes are lost, a torn prefix of them may remain,
        // and the old process can no longer touch the disk.
        tokio::time::sleep(std::time::Duration::from_micros(300 * round)).await;
        storage = storage.crash((round as usize * 37) % 200);
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        drop(h);
        engine.shutdown().await;
    }
    let engine = start(&storage);
    for id in &acked {
        let info = engine.handle.get_job(*id).await;
        assert!(info.is_ok(), "acknowledged job {id} lost");
    }
    assert!(
        !acked.is_empty() && acked.len() < 20 * 100,
        "crashes cut producers short: {}",
        acked.len()
    );
    engine.shutdown().await;
}

#[test]
fn a_failed_write_poisons_the_store_until_restart() {
    let now = 1_700_000_000_000;
    let storage = MemStorage::new();
    let mut store = Store::open(Box::new(storage.clone()), Durability::Sync, now).unwrap();
    store.put_queue("q", &QueuePatch::default(), now).unwrap();
    let kept = store.enqueue("q", &job("kept"), now).unwrap()[0].id;
    store.commit(now).unwrap();
    storage.fail_writes(true);
    store.enqueue("q", &job("lost"), now).unwrap(); // buffered: the write comes with the commit
    let err = store.commit(now).unwrap_err();
    assert!(matches!(&err, Error::Poisoned(p) if p.contains("injected write failure")), "{err:?}");
    storage.fail_writes(false);
    let err = store.enqueue("q", &job("after"), now).unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "refused after the disk recovers: {err:?}");
    assert!(matches!(store.commit(now).unwrap_err(), Error::Poisoned(_)));
    assert!(store.poisoned().is_some_and(|p| p.contains("write")));
    assert_eq!(store.job_info(kept).unwrap().body.as_deref(), Some("kept"), "reads work");
    store.check_invariants().unwrap();
    drop(store);
    let store = Store::open(Box::new(storage.crash(0)), Durability::Sync, now + 1).unwrap();
    assert_eq!(store.job_info(kept).unwrap().body.as_deref(), Some("kept"));
    assert_eq!(store.queue_stats("q", now + 1).unwrap().counts.ready, 1, "only the kept job");
    assert!(store.poisoned().is_none(), "a restart clears the poison");
    store.check_invariants().unwrap();
}

#[tokio::test]
async fn write_failure_poisons_writes_but_reads_still_work_and_nothing_acknowledged_is_lost() {
    let storage = MemStorage::new();
    let engine = start(&storage);
    let h = engine.handle.clone();
    h.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    let ready = h.enqueue("q".into(), job("ready")).await.unwrap()[0].id;
    let done = h.enqueue("q".into(), job("done")).await.unwrap()[0].id;
    let receive = |max| ReceiveRequest { queues: vec!["q".into()], max, ..Default::default() };
    let leased = h.receive(receive(2)).await.unwrap();
    let d = leased.iter().find(|d| d.id == done).expect("both jobs delivered");
    assert_eq!(h.ack(vec![d.receipt.clone()]).await.unwrap(), vec![AckResult::Ok]);
    let held = leased.iter().find(|d| d.id == ready).unwrap().receipt.clone();

    storage.fail_writes(true);
    let err = h.enqueue("q".into(), job("during")).await.unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err:?}");
    storage.fail_writes(false);
    let err = h.enqueue("q".into(), job("after")).await.unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "still refused after the disk recovers: {err:?}");
    assert!(matches!(h.ack(vec![held]).await.unwrap_err(), Error::Poisoned(_)), "an ack writes");
    assert!(matches!(h.receive(receive(1)).await.unwrap_err(), Error::Poisoned(_)));
    assert!(matches!(
        h.put_queue("r".into(), QueuePatch::default()).await,
        Err(Error::Poisoned(_))
    ));
    assert_eq!(h.get_job(ready).await.unwrap().body.as_deref(), Some("ready"), "reads work");
    assert_eq!(h.get_job(done).await.unwrap().state, JobState::Acked);
    assert_eq!(h.list_queues().await.unwrap().len(), 2, "q and its dead-letter queue");
    assert!(h.health().poisoned.unwrap().contains("write"));
    engine.shutdown().await;

    // The power goes too: only what was acknowledged (and so fsynced) is on the disk.
    let engine = start(&storage.crash(0));
    let h = engine.handle.clone();
    assert!(h.health().poisoned.is_none(), "a restart clears the poison");
    let info = h.get_job(ready).await.unwrap();
    assert_eq!(
        (info.state, info.body.as_deref()),
        (JobState::Ready, Some("ready")),
        "lease revoked"
    );
    assert_eq!(h.get_job(done).await.unwrap().state, JobState::Acked, "the ack survived");
    let stats = h.get_queue("q".into()).await.unwrap().stats.counts;
    assert_eq!((stats.ready, stats.completed), (1, 1), "nothing refused came back: {stats:?}");
    h.enqueue("q".into(), job("again")).await.expect("writes work after the restart");
    engine.shutdown().await;
}
