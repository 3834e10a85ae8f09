//! A receive scans the ready and leased indexes from floors (see `receive::Floors`): the jobs
//! that went before, whose dead entries stay in the indexes until a vacuum, are not walked
//! again, and a job written behind a floor is still delivered, once.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use redrive_core::broker::{NewJob, ReceiveRequest};
use redrive_core::{Broker, QueuePatch};
use redrive_postgres::receive::{EMPTY_RESCAN, FLOOR_MARGIN_MS, FLOOR_RESCAN, STANDARD_SQL};
use redrive_postgres::{PgBroker, PgOptions};
use tokio_postgres::types::ToSql;

/// A fresh database with a queue `q`, and an application's connection to it.
async fn with_queue() -> (PgBroker, tokio_postgres::Client) {
    let url = common::fresh_database().await;
    let options = PgOptions { pool_size: 4, sweep_interval_ms: 200 };
    let b = PgBroker::connect(&url, options).await.expect("broker connects");
    b.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    (b, common::connect(&url).await)
}

fn take(max: u32) -> ReceiveRequest {
    ReceiveRequest {
        queues: vec!["q".into()],
        max,
        wait_ms: Some(0),
        lease_ms: None,
        worker_id: None,
    }
}

fn jobs(prefix: &str, n: usize) -> Vec<NewJob> {
    (0..n).map(|i| NewJob { body: format!("{prefix}{i}"), ..NewJob::default() }).collect()
}

/// Runs everything a queue's jobs need through it: enqueued, leased and acked, `n` jobs.
async fn churn(b: &PgBroker, n: usize) {
    for _ in 0..n / 1000 {
        b.enqueue("q".into(), jobs("old", 1000)).await.unwrap();
        let got = b.receive(take(1000)).await.unwrap();
        assert_eq!(got.len(), 1000);
        let acked = b.ack(got.into_iter().map(|d| d.receipt).collect()).await.unwrap();
        assert_eq!(acked.len(), 1000);
    }
}

/// Shared buffers the leasing statement's scans of `jobs_ready` touched (`EXPLAIN (ANALYZE,
/// BUFFERS)`, rolled back).
async fn ready_scan_buffers(c: &mut tokio_postgres::Client, params: &[&(dyn ToSql + Sync)]) -> u64 {
    let tx = c.transaction().await.unwrap();
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS) {STANDARD_SQL}");
    let lines: Vec<String> =
        tx.query(&explain, params).await.unwrap().iter().map(|r| r.get(0)).collect();
    tx.rollback().await.unwrap();
    // A node's "Buffers: shared hit=N read=M …" line follows its conditions.
    let mut total = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains("Index Scan using jobs_ready") {
            let buffers = lines[i + 1..]
                .iter()
                .find(|l| l.trim_start().starts_with("Buffers:"))
                .expect("the scan's buffers");
            total += common::buffers(buffers);
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_from_the_floors_does_not_walk_the_jobs_that_went_before() {
    let (b, mut c) = with_queue().await;
    // Only a vacuum removes dead index entries: none may run during the test.
    c.batch_execute("ALTER TABLE redrive.jobs SET (autovacuum_enabled = false)").await.unwrap();
    churn(&b, 20_000).await;
    b.enqueue("q".into(), jobs("new", 10)).await.unwrap();

    let head: i64 = c
        .query_one(
            "SELECT min(visible_at) FROM redrive.jobs WHERE state IN (0, 1) AND body LIKE 'new%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let floor = head - FLOOR_MARGIN_MS;
    let queue: i32 =
        c.query_one("SELECT id FROM redrive.queues WHERE name = 'q'", &[]).await.unwrap().get(0);
    let (max, room, lease) = (10_i64, 1000_i64, 30_000_i64);
    let (none, no_worker): (Option<i64>, Option<&str>) = (None, None);
    let (no_limit, f) = (None::<i32>, Some(floor));
    // `$8` is the lease floor, `$9`..`$11` the levels' floors.
    let full = ready_scan_buffers(
        &mut c,
        &[&queue, &max, &none, &no_limit, &lease, &no_worker, &room, &none, &none, &none, &none],
    )
    .await;
    let floored = ready_scan_buffers(
        &mut c,
        &[&queue, &max, &none, &no_limit, &lease, &no_worker, &room, &f, &f, &f, &f],
    )
    .await;
    // 20,000 dead entries span about 120 index pages; ten live jobs, a page or two.
    assert!(full > 100, "a scan from the start walks the dead entries: {full} buffers");
    assert!(floored * 4 < full, "from the floors {floored} buffers, from the start {full}");
}

/// Opens an application's transaction that enqueues `body` and leaves it open long enough for
/// the floors to move past the job; then enqueues `then` (one job) through the broker and
/// receives it, a scan from the start that sets floors past the open transaction's job.
async fn behind_the_floors<'a>(
    app: &'a mut tokio_postgres::Client,
    b: &PgBroker,
    body: &str,
    then: &str,
) -> (tokio_postgres::Transaction<'a>, String) {
    let tx = app.transaction().await.unwrap();
    tx.query_one("SELECT redrive.enqueue('q', $1, '{}'::jsonb)", &[&body]).await.unwrap();
    // Past the floors' lapse too: the receive below scans from the start.
    tokio::time::sleep(FLOOR_RESCAN + Duration::from_millis(FLOOR_MARGIN_MS as u64)).await;
    b.enqueue("q".into(), jobs(then, 1)).await.unwrap();
    let got = b.receive(take(10)).await.unwrap();
    assert_eq!(bodies(&got), [format!("{then}0")]);
    (tx, got[0].receipt.clone())
}

fn bodies(got: &[redrive_core::broker::Delivery]) -> Vec<String> {
    got.iter().map(|d| d.body.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_behind_the_floors_is_still_delivered_once() {
    let (b, mut app) = with_queue().await;
    let (tx, _) = behind_the_floors(&mut app, &b, "late", "first").await;
    b.enqueue("q".into(), jobs("on-time", 30)).await.unwrap();
    let mut seen: BTreeSet<String> =
        bodies(&b.receive(take(10)).await.unwrap()).into_iter().collect();
    tx.commit().await.unwrap();

    // Receives through both paths (plain, and acks carried by the receive) drain the queue:
    // every job once, the late one included, and then nothing, even once floors have lapsed.
    let mut receipts = Vec::new();
    let mut empty = 0;
    for round in 0..200 {
        let got = if round % 2 == 0 {
            b.receive(take(10)).await.unwrap()
        } else {
            b.ack_receive(std::mem::take(&mut receipts), take(10)).await.unwrap().1
        };
        if got.is_empty() {
            empty += 1;
            if empty == 2 {
                break;
            }
            tokio::time::sleep(FLOOR_RESCAN).await;
        }
        for d in got {
            assert!(seen.insert(d.body.clone()), "{} delivered twice", d.body);
            receipts.push(d.receipt);
        }
    }
    assert!(seen.contains("late"), "the job committed behind the floors was never delivered");
    assert_eq!(seen.len(), 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_looks_behind_the_floors() {
    let (b, mut app) = with_queue().await;
    let after_rescan_wait = EMPTY_RESCAN + Duration::from_millis(30);

    // The queue holds only a job behind the floors the last receive set: a short poll made
    // once a scan from the start may run again does not answer empty...
    behind_the_floors(&mut app, &b, "late", "a").await.0.commit().await.unwrap();
    tokio::time::sleep(after_rescan_wait).await;
    assert_eq!(bodies(&b.receive(take(10)).await.unwrap()), ["late"]);

    // ... nor one that carries acks ...
    let (tx, receipt) = behind_the_floors(&mut app, &b, "late2", "b").await;
    tx.commit().await.unwrap();
    tokio::time::sleep(after_rescan_wait).await;
    let (acked, got) = b.ack_receive(vec![receipt], take(10)).await.unwrap();
    assert_eq!(acked.len(), 1);
    assert_eq!(bodies(&got), ["late2"]);

    // ... and a long poll made at once gets it in the same call.
    behind_the_floors(&mut app, &b, "late3", "c").await.0.commit().await.unwrap();
    let poll = ReceiveRequest { wait_ms: Some(5_000), ..take(10) };
    assert_eq!(bodies(&b.receive(poll).await.unwrap()), ["late3"]);
}
