//! Every operation finds its jobs through an index: none reads the whole jobs table, so none
//! costs more as other queues grow. No index holds every job of a queue
//! (migration 5), so a query written against the table rather than the partial indexes would
//! plan a sequential scan; this runs each kind of operation and reads the table's scan count.

mod common;

use std::time::{Duration, Instant};

use redrive_core::broker::{
    DeadFilter, FailRequest, JobFilter, NewJob, ReceiveRequest, RedriveRequest,
};
use redrive_core::model::ErrorInfo;
use redrive_core::{Broker, QueuePatch};
use redrive_postgres::{PgBroker, PgOptions};

fn take(queue: &str, max: u32, wait_ms: u64) -> ReceiveRequest {
    ReceiveRequest {
        queues: vec![queue.into()],
        max,
        wait_ms: Some(wait_ms),
        lease_ms: Some(200),
        ..ReceiveRequest::default()
    }
}

fn jobs(n: usize, key: &str) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            body: format!("{key}{i}"),
            idempotency_key: Some(format!("{key}{i}")),
            ..NewJob::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_operation_reads_the_whole_jobs_table() {
    let url = common::fresh_database().await;
    // The migrations' index builds scan the table: count from after them.
    drop(PgBroker::connect(&url, PgOptions::default()).await.unwrap());
    let (migrations, _) = scans(&url).await;
    let options = PgOptions { sweep_interval_ms: 50, ..PgOptions::default() };
    let b = PgBroker::connect(&url, options).await.unwrap();
    b.put_queue("dlq".into(), QueuePatch::default()).await.unwrap();
    let main = QueuePatch {
        dead_letter_queue: Some(Some("dlq".into())),
        max_receive_count: Some(Some(1)),
        completed_retention_ms: Some(100),
        ..QueuePatch::default()
    };
    b.put_queue("q".into(), main).await.unwrap();
    let fifo = QueuePatch { fifo: Some(true), ..QueuePatch::default() };
    b.put_queue("f.fifo".into(), fifo).await.unwrap();

    // Enqueue (with keys, and a duplicate), receive, ack, fail, extend.
    b.enqueue("q".into(), jobs(20, "k")).await.unwrap();
    b.enqueue("q".into(), jobs(1, "k")).await.unwrap();
    let got = b.receive(take("q", 10, 0)).await.unwrap();
    let receipts: Vec<String> = got.iter().map(|d| d.receipt.clone()).collect();
    b.ack(receipts[..5].to_vec()).await.unwrap();
    let error = ErrorInfo { kind: "E".into(), message: "m".into(), detail: None };
    let failed = FailRequest {
        receipt: receipts[5].clone(),
        error,
        retry_after_ms: None,
        non_retryable: true,
    };
    b.fail(failed).await.unwrap();
    b.extend(receipts[6].clone(), 60_000).await.unwrap();
    // FIFO receive and ack.
    let mut grouped = jobs(4, "f");
    for (i, j) in grouped.iter_mut().enumerate() {
        j.group = Some(format!("g{}", i % 2));
    }
    b.enqueue("f.fifo".into(), grouped).await.unwrap();
    let f = b.receive(take("f.fifo", 10, 0)).await.unwrap();
    b.ack(f.iter().map(|d| d.receipt.clone()).collect()).await.unwrap();

    // Leases run out (200 ms) and the sweeper ends them; a second receive kills at the limit;
    // acked jobs are forgotten after 100 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    b.receive(take("q", 10, 0)).await.unwrap();
    // A long poll on an empty queue reads when its delayed jobs and leases come due.
    b.put_queue("idle".into(), QueuePatch::default()).await.unwrap();
    let started = Instant::now();
    assert!(b.receive(take("idle", 1, 300)).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Reads: stats, listings, one job, dead letters; then redrive, a retention change (which
    // re-keys the queue's jobs), one job deleted, and a purge.
    b.get_queue("q".into()).await.unwrap();
    b.list_queues().await.unwrap();
    let page = b.list_jobs("q".into(), JobFilter::default(), None, 5).await.unwrap();
    b.get_job(page.jobs[0].id).await.unwrap();
    let dead = b.list_dead("dlq".into(), DeadFilter::default(), None, 10).await.unwrap();
    assert!(!dead.jobs.is_empty(), "jobs died into the DLQ");
    let back = RedriveRequest { ids: Some(vec![dead.jobs[0].id]), ..RedriveRequest::default() };
    b.redrive("dlq".into(), back).await.unwrap();
    let retention = QueuePatch { retention_ms: Some(3_600_000), ..QueuePatch::default() };
    b.put_queue("q".into(), retention).await.unwrap();
    let ready = b.list_jobs("q".into(), JobFilter::default(), None, 100).await.unwrap();
    let waiting = ready.jobs.iter().find(|j| j.state == redrive_core::JobState::Ready);
    b.delete_job(waiting.expect("a ready job").id).await.unwrap();
    b.purge("q".into()).await.unwrap();
    // Queue deletions, of a queue with jobs leased and waiting, and the sweep after them.
    b.put_queue("gone".into(), QueuePatch::default()).await.unwrap();
    let mut more = jobs(4, "d");
    more[0].delay_ms = Some(60_000);
    b.enqueue("gone".into(), more).await.unwrap();
    assert_eq!(b.receive(take("gone", 1, 0)).await.unwrap().len(), 1);
    b.delete_queue("gone".into()).await.unwrap();
    b.delete_queue("f.fifo".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.drain().await.unwrap();
    drop(b);

    let (seq, idx) = scans(&url).await;
    assert!(idx > 0, "the index scans were counted");
    assert_eq!(seq - migrations, 0, "sequential scans of redrive.jobs");
}

/// Sequential and index scans of `redrive.jobs` so far, once every other connection to the
/// database has ended (a connection writes its statistics when it ends).
async fn scans(url: &str) -> (i64, i64) {
    let admin = common::connect(url).await;
    const OTHERS: &str = "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin.query_one(OTHERS, &[]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "the broker's connections never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    const SCANS: &str = "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables \
         WHERE schemaname = 'redrive' AND relname = 'jobs'";
    let row = admin.query_one(SCANS, &[]).await.unwrap();
    (row.get(0), row.get(1))
}
