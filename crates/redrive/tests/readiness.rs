//! `/readyz` over PostgreSQL: 503 with a reason while the server cannot reach its database,
//! ready again once the database is back, without a restart. (The embedded store's side,
//! poisoned by a failed write, is in `disk_full.rs`.)

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

async fn readyz(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `/readyz` until it answers `status`, for at most 15 s.
async fn until_status(http: &reqwest::Client, url: &str, status: u16) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = readyz(http, url).await;
        if got == status {
            return body;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "/readyz stayed {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_lost_database_and_its_return() {
    let dir = tempfile::tempdir().unwrap();
    let (server, db_url) = common::start_on_postgres(dir.path(), &[]);
    let db = db_url.rsplit('/').next().unwrap().to_owned();
    let http = reqwest::Client::new();
    let (status, body) = readyz(&http, &server.url).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");

    // The database refuses new connections and ends the server's: as good as lost.
    common::psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    let sql =
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'");
    common::psql(&sql);
    let body = until_status(&http, &server.url, 503).await;
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "a reason: {body}");
    let put = http.put(format!("{}/v1/queues/q", server.url)).json(&serde_json::json!({}));
    assert_eq!(put.send().await.unwrap().status().as_u16(), 503, "writes are refused too");

    common::psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    let body = until_status(&http, &server.url, 200).await;
    assert_eq!(body["status"], "ready", "{body}");
    let put = http.put(format!("{}/v1/queues/q", server.url)).json(&serde_json::json!({}));
    assert!(put.send().await.unwrap().status().is_success(), "and writes work again");
}
