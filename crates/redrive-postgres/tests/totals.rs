//! The totals every job moves are counted in each server's memory and written every second:
//! exact on the server that counted them, on every other server within a flush, and written
//! whole when a server drains for shutdown.

mod common;

use std::time::{Duration, Instant};

use redrive_core::broker::{NewJob, QueueTotals, ReceiveRequest};
use redrive_core::{Broker, QueuePatch};
use redrive_postgres::{PgBroker, PgOptions};

async fn totals(b: &PgBroker) -> QueueTotals {
    b.get_queue("q".into()).await.unwrap().stats.totals
}

fn job(key: &str) -> NewJob {
    NewJob { body: "x".into(), idempotency_key: Some(key.into()), ..NewJob::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_are_exact_where_counted_and_reach_every_server() {
    let url = common::fresh_database().await;
    let a = PgBroker::connect(&url, PgOptions::default()).await.unwrap();
    let b = PgBroker::connect(&url, PgOptions::default()).await.unwrap();
    a.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    // Three jobs and a duplicate, all three delivered, two acked.
    a.enqueue("q".into(), vec![job("1"), job("2"), job("3"), job("1")]).await.unwrap();
    let req = ReceiveRequest {
        queues: vec!["q".into()],
        max: 10,
        wait_ms: Some(0),
        ..ReceiveRequest::default()
    };
    let got = a.receive(req).await.unwrap();
    assert_eq!(got.len(), 3);
    let receipts = got.iter().take(2).map(|d| d.receipt.clone()).collect();
    a.ack(receipts).await.unwrap();
    let want = QueueTotals {
        enqueued: 3,
        duplicates: 1,
        delivered: 3,
        acked: 2,
        ..QueueTotals::default()
    };
    assert_eq!(totals(&a).await, want, "exact on the server that counted them");
    // Another server reads the table: it sees them once they are written (every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while totals(&b).await != want {
        assert!(Instant::now() < deadline, "never written: {:?}", totals(&b).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(totals(&a).await, want, "counted once, whether written or not");
    // Counted on b, and written at once when b drains (a shutdown begins).
    b.enqueue("q".into(), vec![job("4")]).await.unwrap();
    b.drain().await.unwrap();
    let written = QueueTotals { enqueued: 4, ..want };
    assert_eq!(totals(&a).await, written, "drained counts are in the table");
}
