//! Transactional enqueue end to end: a worker long-polls a real `redrive serve --store` over
//! HTTP while an application (psql) calls `redrive.enqueue` in its own transaction, which rolls
//! back once and then commits. The rolled-back job never shows; the committed one is delivered
//! well within the poll's wait, once the transaction committed.

mod pg;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_a_server_gets_the_job_of_a_committed_transaction() {
    let store = pg::fresh_database(&pg::server_url());
    let dir = tempfile::tempdir().unwrap();
    let server = pg::serve(&store, dir.path(), &[]);
    let url = server.url.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let r = http.put(format!("{url}/v1/queues/outbox")).json(&json!({})).send().await.unwrap();
    assert!(r.status().is_success());

    let poll = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let body = json!({"max": 10, "wait_ms": 20_000});
            let r = http.post(format!("{url}/v1/queues/outbox/receive")).json(&body).send().await;
            let v: Value = r.unwrap().json().await.unwrap();
            (v, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || {
        pg::psql(
            &store2,
            "BEGIN; SELECT redrive.enqueue('outbox', 'rolled back'); ROLLBACK; \
             BEGIN; SELECT redrive.enqueue('outbox', 'committed', '{\"priority\":\"high\"}'); \
             SELECT pg_sleep(0.5); COMMIT;",
        )
    })
    .await
    .unwrap();
    let committed = Instant::now();
    let (v, answered) = poll.await.unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{v}");
    assert_eq!(jobs[0]["body"], "committed");
    assert_eq!(jobs[0]["priority"], "high");
    // psql returns after the commit, and the poll answers after it saw the job: the gap is the
    // wake-up, measured from the client's side (no tight bound: the machine is shared).
    let after = answered.saturating_duration_since(committed);
    assert!(after < Duration::from_secs(5), "answered {after:?} after the commit, of a 20 s wait");
    let next = json!({"max": 10, "wait_ms": 0});
    let r: Value = http
        .post(format!("{url}/v1/queues/outbox/receive"))
        .json(&next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["jobs"].as_array().unwrap().len(), 0, "the rolled-back job never shows: {r}");
}
