//! Deleting a queue deletes its jobs, with no foreign key to do it (migration 7): an
//! application's transaction that enqueued into the queue holds the deletion until it ends,
//! and a job a late statement gives a deleted queue is swept.

mod common;

use std::time::{Duration, Instant};

use redrive_core::broker::NewJob;
use redrive_core::{Broker, Error, QueuePatch};
use redrive_postgres::{PgBroker, PgOptions};

async fn broker(url: &str) -> PgBroker {
    let options = PgOptions { pool_size: 4, sweep_interval_ms: 100 };
    PgBroker::connect(url, options).await.expect("broker connects")
}

async fn jobs_of(admin: &tokio_postgres::Client, queue: i32) -> i64 {
    const SQL: &str = "SELECT count(*) FROM redrive.jobs WHERE queue_id = $1";
    admin.query_one(SQL, &[&queue]).await.unwrap().get(0)
}

async fn queue_id(admin: &tokio_postgres::Client, name: &str) -> i32 {
    const SQL: &str = "SELECT id FROM redrive.queues WHERE name = $1";
    admin.query_one(SQL, &[&name]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_waits_for_the_transaction_that_enqueued_and_takes_its_job() {
    let url = common::fresh_database().await;
    let b = broker(&url).await;
    b.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    b.enqueue("q".into(), vec![NewJob { body: "by the server".into(), ..NewJob::default() }])
        .await
        .unwrap();
    let mut app = common::connect(&url).await;
    let admin = common::connect(&url).await;
    let id = queue_id(&admin, "q").await;

    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT redrive.enqueue('q', 'in the transaction')", &[]).await.unwrap();
    let deletion = tokio::spawn(async move { b.delete_queue("q".into()).await.map(|()| b) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!deletion.is_finished(), "the deletion waits for the transaction");
    tx.commit().await.unwrap();
    let b = deletion.await.unwrap().expect("deleted once the transaction ended");
    assert_eq!(jobs_of(&admin, id).await, 0, "both jobs went with the queue");
    assert_eq!(b.get_queue("q".into()).await.unwrap_err(), Error::QueueNotFound("q".into()));

    let late = app.execute("SELECT redrive.enqueue('q', 'too late')", &[]).await.unwrap_err();
    let late = late.as_db_error().expect("refused by the function").message().to_owned();
    assert!(late.contains("no queue named 'q'"), "{late}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_a_job_given_to_a_deleted_queue() {
    let url = common::fresh_database().await;
    let b = broker(&url).await;
    b.put_queue("q".into(), QueuePatch::default()).await.unwrap();
    let admin = common::connect(&url).await;
    let id = queue_id(&admin, "q").await;
    b.delete_queue("q".into()).await.unwrap();
    // What an enqueue that read the queue row before the deletion writes after it.
    const LATE: &str = "INSERT INTO redrive.jobs (id, queue_id, state, priority, body, \
         enqueued_at, visible_at, expires_at) \
         VALUES (gen_random_uuid(), $1, 1, 1, 'late', 0, 0, 9000000000000000)";
    admin.execute(LATE, &[&id]).await.unwrap();
    assert_eq!(jobs_of(&admin, id).await, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs_of(&admin, id).await > 0 {
        assert!(Instant::now() < deadline, "the sweep never deleted the late job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
