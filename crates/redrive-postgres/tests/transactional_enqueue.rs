//! `redrive.enqueue(queue, body, options)`, called by an application inside its own
//! transaction: the job exists if and only if the transaction commits, long polls are woken at
//! commit, and the rows, ids, totals, dedup and bounds are those of the servers' enqueue.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redrive_core::broker::{NewJob, ReceiveRequest};
use redrive_core::model::{JobId, Priority};
use redrive_core::{Broker, QueuePatch};
use redrive_postgres::{PgBroker, PgOptions};
use uuid::Uuid;

async fn broker(url: &str) -> PgBroker {
    let options = PgOptions { pool_size: 4, sweep_interval_ms: 200 };
    PgBroker::connect(url, options).await.expect("broker connects")
}

async fn with_queue(name: &str, patch: QueuePatch) -> (String, PgBroker) {
    let url = common::fresh_database().await;
    let b = broker(&url).await;
    b.put_queue(name.into(), patch).await.unwrap();
    (url, b)
}

fn receive(queue: &str, wait_ms: u64) -> ReceiveRequest {
    ReceiveRequest {
        queues: vec![queue.into()],
        max: 10,
        wait_ms: Some(wait_ms),
        lease_ms: None,
        worker_id: None,
    }
}

const ENQUEUE: &str = "SELECT redrive.enqueue($1, $2, $3::text::jsonb)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_leaves_no_job() {
    let (url, b) = with_queue("emails", QueuePatch::default()).await;
    let mut app = common::connect(&url).await;
    let tx = app.transaction().await.unwrap();
    let id: Uuid = tx.query_one(ENQUEUE, &[&"emails", &"hello", &"{}"]).await.unwrap().get(0);
    tx.rollback().await.unwrap();
    assert!(b.receive(receive("emails", 0)).await.unwrap().is_empty());
    assert!(b.get_job(JobId(id.as_u128())).await.is_err(), "no job after a rollback");
    let q = b.get_queue("emails".into()).await.unwrap();
    assert_eq!(q.stats.totals.enqueued, 0, "totals roll back with the job");
    let n: i64 = app.query_one("SELECT count(*) FROM redrive.jobs", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_job_wakes_a_long_poll_on_another_server_at_commit() {
    let (url, a) = with_queue("emails", QueuePatch::default()).await;
    // The worker polls a second server; the application writes to the database directly.
    let b = broker(&url).await;
    let worker = tokio::spawn(async move {
        let got = b.receive(receive("emails", 20_000)).await.unwrap();
        (got, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut app = common::connect(&url).await;
    let tx = app.transaction().await.unwrap();
    let id: Uuid = tx
        .query_one(ENQUEUE, &[&"emails", &"welcome", &r#"{"priority":"high"}"#])
        .await
        .unwrap()
        .get(0);
    // Until the commit, nothing is delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!worker.is_finished(), "a job was delivered before its transaction committed");
    tx.commit().await.unwrap();
    let committed = Instant::now();
    let (got, answered) = tokio::time::timeout(Duration::from_secs(25), worker)
        .await
        .expect("the long poll answers within its wait")
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, JobId(id.as_u128()));
    assert_eq!(got[0].body, "welcome");
    assert_eq!(got[0].priority, Priority::High);
    let after = answered.saturating_duration_since(committed);
    assert!(after < Duration::from_secs(5), "woken {after:?} after the commit, of a 20 s wait");
    drop(a);
}

/// The same job through the server's enqueue and through the SQL function: equal rows but for
/// the id and the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_function_writes_the_rows_the_server_writes() {
    let patch = QueuePatch { delay_ms: Some(0), ..QueuePatch::default() };
    let (url, b) = with_queue("work", patch).await;
    let attributes: BTreeMap<String, String> =
        [("tenant".to_owned(), "acme".to_owned()), ("kind".to_owned(), "x".to_owned())].into();
    let job = NewJob {
        body: "{\"n\":1}".into(),
        priority: Some(Priority::Low),
        delay_ms: Some(60_000),
        idempotency_key: Some("k-rust".into()),
        attributes,
        max_attempts: Some(3),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        group: Some("g1".into()),
        ..NewJob::default()
    };
    let rust = b.enqueue("work".into(), vec![job]).await.unwrap()[0].id;
    let app = common::connect(&url).await;
    let options = r#"{"priority":"low","delay_ms":60000,"idempotency_key":"k-sql",
        "attributes":{"tenant":"acme","kind":"x"},"max_attempts":3,"group":"g1",
        "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#;
    let sql: Uuid =
        app.query_one(ENQUEUE, &[&"work", &"{\"n\":1}", &options]).await.unwrap().get(0);
    assert_eq!(sql.get_version_num(), 7, "a UUIDv7, as the servers make");
    assert_eq!(Uuid::from_u128(rust.0).get_version_num(), 7);
    // Everything but the id, the key and the times; times relative to the enqueue.
    const ROW: &str = "SELECT (to_jsonb(j) - 'id' - 'idempotency_key' - 'enqueued_at' \
        - 'visible_at' - 'expires_at')::text, visible_at - enqueued_at, expires_at - enqueued_at \
        FROM redrive.jobs j WHERE id = $1";
    let a = app.query_one(ROW, &[&Uuid::from_u128(rust.0)]).await.unwrap();
    let s = app.query_one(ROW, &[&sql]).await.unwrap();
    assert_eq!(a.get::<_, String>(0), s.get::<_, String>(0));
    assert_eq!(a.get::<_, i64>(1), s.get::<_, i64>(1));
    assert_eq!(a.get::<_, i64>(2), s.get::<_, i64>(2));
    // And the server reads it back as its own.
    let info = b.get_job(JobId(sql.as_u128())).await.unwrap();
    assert_eq!(info.priority, Priority::Low);
    assert_eq!(info.max_attempts, Some(3));
    assert_eq!(info.idempotency_key.as_deref(), Some("k-sql"));
    assert_eq!(info.attributes.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(b.get_queue("work".into()).await.unwrap().stats.totals.enqueued, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_shared_with_the_server_enqueue() {
    let (url, b) = with_queue("work", QueuePatch::default()).await;
    let mut app = common::connect(&url).await;
    let keyed = r#"{"idempotency_key":"order-7"}"#;
    let first: Uuid = app.query_one(ENQUEUE, &[&"work", &"a", &keyed]).await.unwrap().get(0);
    let again =
        NewJob { body: "b".into(), idempotency_key: Some("order-7".into()), ..NewJob::default() };
    let r = b.enqueue("work".into(), vec![again]).await.unwrap();
    assert!(r[0].duplicate);
    assert_eq!(r[0].id, JobId(first.as_u128()));
    // A key claimed by the server is a duplicate in SQL too, and twice in one transaction.
    let job = NewJob { body: "c".into(), idempotency_key: Some("k2".into()), ..NewJob::default() };
    let by_server = b.enqueue("work".into(), vec![job]).await.unwrap()[0].id;
    let tx = app.transaction().await.unwrap();
    let k2 = r#"{"idempotency_key":"k2"}"#;
    for _ in 0..2 {
        let id: Uuid = tx.query_one(ENQUEUE, &[&"work", &"d", &k2]).await.unwrap().get(0);
        assert_eq!(JobId(id.as_u128()), by_server);
    }
    tx.commit().await.unwrap();
    let totals = b.get_queue("work".into()).await.unwrap().stats.totals;
    assert_eq!((totals.enqueued, totals.duplicates), (2, 3));
    // A key claimed by a transaction that rolls back is free again.
    let tx = app.transaction().await.unwrap();
    let k3 = r#"{"idempotency_key":"k3"}"#;
    let lost: Uuid = tx.query_one(ENQUEUE, &[&"work", &"e", &k3]).await.unwrap().get(0);
    tx.rollback().await.unwrap();
    let job = NewJob { body: "f".into(), idempotency_key: Some("k3".into()), ..NewJob::default() };
    let r = b.enqueue("work".into(), vec![job]).await.unwrap();
    assert!(!r[0].duplicate);
    assert_ne!(r[0].id, JobId(lost.as_u128()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_are_refused_with_clear_errors() {
    let patch = QueuePatch { max_message_bytes: Some(1024), ..QueuePatch::default() };
    let (url, _b) = with_queue("small", patch).await;
    let app = common::connect(&url).await;
    let big = "x".repeat(1025);
    let long_key = format!(r#"{{"idempotency_key":"{}"}}"#, "k".repeat(129));
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("nope", "a", "{}", "P0002", "no queue named 'nope'"),
        ("small", &big, "{}", "54000", "message of 1025 bytes is over the limit of 1024"),
        ("small", "a", r#"{"prio":"high"}"#, "22023", "unknown option 'prio'"),
        ("small", "a", r#"{"priority":"urgent"}"#, "22023", "invalid priority"),
        ("small", "a", r#"{"delay_ms":31536000001}"#, "22023", "delay_ms: at most 31536000000"),
        ("small", "a", r#"{"delay_ms":-1}"#, "22023", "invalid delay_ms"),
        ("small", "a", r#"{"max_attempts":0}"#, "22023", "max_attempts: 1 to 1000"),
        ("small", "a", &long_key, "22023", "idempotency_key: 1 to 128 bytes"),
        ("small", "a", r#"{"group":""}"#, "22023", "group: 1 to 128 bytes"),
        ("small", "a", r#"{"attributes":{"redrive:group":"g"}}"#, "22023", "is reserved"),
        ("small", "a", r#"{"attributes":{"n":1}}"#, "22023", "values are strings"),
        ("small", "a", "[]", "22023", "options must be a JSON object"),
    ];
    for (queue, body, options, code, words) in cases {
        let e = app.query_one(ENQUEUE, &[queue, body, options]).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{options}: {e}"));
        assert_eq!(db.code().code(), *code, "{options}: {}", db.message());
        assert!(db.message().contains(words), "{options}: {}", db.message());
    }
    let n: i64 = app.query_one("SELECT count(*) FROM redrive.jobs", &[]).await.unwrap().get(0);
    assert_eq!(n, 0);
}
