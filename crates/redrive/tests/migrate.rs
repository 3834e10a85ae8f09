//! `redrive migrate --from-data-dir DIR --to postgres://…` round trip: an embedded store with
//! ready, delayed, dead-lettered (with history), parked-dead, keyed and completed jobs is
//! stopped, migrated, and served from PostgreSQL, where every job that had not completed reads
//! back exactly as it did, keys still deduplicate, and the copy refuses to run twice.

mod pg;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let r = http.request(method, &url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(&url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

async fn enqueue(http: &reqwest::Client, base: &str, queue: &str, jobs: Value) -> Vec<Value> {
    let r = call(
        http,
        reqwest::Method::POST,
        format!("{base}/v1/queues/{queue}/jobs"),
        json!({ "jobs": jobs }),
    )
    .await;
    r["jobs"].as_array().unwrap().clone()
}

async fn receive(http: &reqwest::Client, base: &str, queue: &str, max: u32) -> Vec<Value> {
    let body = json!({"max": max, "worker_id": "w-1"});
    let r =
        call(http, reqwest::Method::POST, format!("{base}/v1/queues/{queue}/receive"), body).await;
    r["jobs"].as_array().unwrap().clone()
}

async fn fail(http: &reqwest::Client, base: &str, receipt: &Value, n: u32) {
    let body = json!({"receipt": receipt, "retry_after_ms": 0,
        "error": {"type": "Timeout", "message": format!("upstream timed out ({n})")}});
    call(http, reqwest::Method::POST, format!("{base}/v1/fail"), body).await;
}

/// Fills an embedded store; returns the status of every job that has not completed, by id,
/// and the ids of completed ones.
async fn fill(http: &reqwest::Client, base: &str) -> (BTreeMap<String, Value>, Vec<String>) {
    let put = |name: &str, body: Value| {
        let url = format!("{base}/v1/queues/{name}");
        async move { call(http, reqwest::Method::PUT, url, body).await }
    };
    put("work-dlq", json!({})).await;
    put("work", json!({"dead_letter_queue": "work-dlq", "max_attempts": 2, "backoff": {"base_ms": 1, "max_ms": 1}})).await;
    put("parked", json!({"max_attempts": 1, "dead_letter_queue": null})).await;
    put("later", json!({"delay_ms": 3_600_000})).await;
    put("orders.fifo", json!({})).await;
    // Dead-lettered with history: two failed attempts, then moved to work-dlq.
    let mut ids: Vec<Value> = Vec::new();
    let doomed = enqueue(http, base, "work", json!([{"body": "doomed", "priority": "high"}])).await;
    ids.extend(doomed.iter().map(|j| j["id"].clone()));
    for n in 1..=2 {
        let got = receive(http, base, "work", 1).await;
        assert_eq!(got[0]["id"], doomed[0]["id"]);
        fail(http, base, &got[0]["receipt"], n).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Parked dead: no dead-letter queue.
    let stuck = enqueue(http, base, "parked", json!([{"body": "stuck"}])).await;
    ids.extend(stuck.iter().map(|j| j["id"].clone()));
    let got = receive(http, base, "parked", 1).await;
    fail(http, base, &got[0]["receipt"], 1).await;
    // Completed: not copied.
    let done = enqueue(http, base, "work", json!([{"body": "done"}])).await;
    let got = receive(http, base, "work", 1).await;
    call(
        http,
        reqwest::Method::POST,
        format!("{base}/v1/ack"),
        json!({"receipts": [got[0]["receipt"]]}),
    )
    .await;
    // Ready, of every priority, keyed and with attributes; delayed, in two ways.
    let ready = enqueue(http, base, "work", json!([
        {"body": "r-low", "priority": "low", "attributes": {"tenant": "acme"}},
        {"body": "r-high", "priority": "high", "idempotency_key": "order-1", "max_attempts": 5},
        {"body": "r-std", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"body": "r-later", "delay_ms": 600_000, "idempotency_key": "order-2"},
    ])).await;
    let later =
        enqueue(http, base, "later", json!([{"body": "l-1"}, {"body": "l-2", "priority": "high"}]))
            .await;
    // FIFO, in two groups.
    let ordered = enqueue(http, base, "orders.fifo", json!([
        {"body": "a-1", "group": "a"}, {"body": "b-1", "group": "b"}, {"body": "a-2", "group": "a"},
    ])).await;
    ids.extend(ready.iter().chain(&later).chain(&ordered).map(|j| j["id"].clone()));
    let mut jobs = BTreeMap::new();
    for id in ids {
        let id = id.as_str().unwrap().to_owned();
        let info = get(http, format!("{base}/v1/jobs/{id}")).await;
        jobs.insert(id, info);
    }
    (jobs, vec![done[0]["id"].as_str().unwrap().to_owned()])
}

#[tokio::test(flavor = "current_thread")]
async fn an_embedded_store_migrated_to_postgres_serves_every_job_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut embedded = pg::serve_embedded(dir.path());
    let (before, completed) = fill(&http, &embedded.url).await;
    let configs_before = get(&http, format!("{}/v1/queues", embedded.url)).await;
    embedded.kill();

    let store = pg::fresh_database(&pg::server_url());
    let out = Command::new(pg::BIN)
        .args(["migrate", "--from-data-dir"])
        .arg(dir.path())
        .args(["--to", &store])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "migrate: {said} {}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "jobs              11 (7 ready, 3 delayed, 1 dead)",
        "dead letters      2",
        "idempotency keys  2",
        "not copied: 1 completed",
    ] {
        assert!(said.contains(line), "{line:?} in {said}");
    }

    let server = pg::serve(&store, dir.path(), &[]);
    let base = server.url.clone();
    for (id, was) in &before {
        let now = get(&http, format!("{base}/v1/jobs/{id}")).await;
        assert_eq!(&now, was, "job {id} after the migration");
    }
    for id in &completed {
        let r = http.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "completed jobs are not copied");
    }
    let configs_after = get(&http, format!("{base}/v1/queues")).await;
    let config_of = |v: &Value| -> BTreeMap<String, Value> {
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| (q["name"].as_str().unwrap().to_owned(), q["config"].clone()))
            .collect()
    };
    assert_eq!(config_of(&configs_after), config_of(&configs_before));
    // Keys still deduplicate; priorities still order; delays still hold.
    let again =
        enqueue(&http, &base, "work", json!([{"body": "again", "idempotency_key": "order-1"}]))
            .await;
    assert_eq!(again[0]["duplicate"], true);
    let got = receive(&http, &base, "work", 10).await;
    let bodies: Vec<&str> = got.iter().map(|j| j["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["r-high", "r-std", "r-low"]);
    assert!(receive(&http, &base, "later", 10).await.is_empty(), "delayed jobs stay delayed");
    let fifo = receive(&http, &base, "orders.fifo", 10).await;
    let bodies: Vec<&str> = fifo.iter().map(|j| j["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["a-1", "a-2", "b-1"], "FIFO order, a group at a time");
    let dlq = receive(&http, &base, "work-dlq", 10).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["body"], "doomed");
    drop(server);

    // A second copy into the same database is refused, and writes nothing.
    let out = Command::new(pg::BIN)
        .args(["migrate", "--from-data-dir"])
        .arg(dir.path())
        .args(["--to", &store])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
