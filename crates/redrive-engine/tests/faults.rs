//! Faults through the engine thread: an fsync failure poisons the store (writes refused, reads
//! served), and a power cut at any moment never loses an enqueue that was acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redrive_core::broker::{NewJob, ReceiveRequest};
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
