//! `/metrics` of the real binary: the lifetime totals are the store's, so a restarted server
//! (stopped cleanly, as a deploy stops it) shows the same totals as before; on either store
//! (`REDRIVE_TEST_STORE=postgres` for PostgreSQL).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};

async fn call(http: &reqwest::Client, url: &str, path: &str, body: Value) -> Value {
    let r = http.post(format!("{url}{path}")).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// Every `redrive_jobs_*_total` sample of queue `q`, by its line's name and labels.
async fn totals(http: &reqwest::Client, url: &str, q: &str) -> BTreeMap<String, String> {
    let text = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let label = format!("{{queue=\"{q}\"}}");
    text.lines()
        .filter(|l| l.starts_with("redrive_jobs_") && l.contains("_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Stops the server as a deploy does (SIGTERM) and waits for it to exit.
fn stop(mut s: common::Server) {
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(s.child.wait().unwrap().success(), "a clean stop");
}

#[tokio::test]
async fn metric_totals_are_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let s = common::start(dir.path(), &[]);
    let url = s.url.clone();
    let put = http.put(format!("{url}/v1/queues/t")).json(&json!({"max_attempts": 1}));
    assert!(put.send().await.unwrap().status().is_success());
    let jobs = json!({"jobs": [{"body": "a"}, {"body": "b"}, {"body": "c"}]});
    call(&http, &url, "/v1/queues/t/jobs", jobs).await;
    let got = call(&http, &url, "/v1/queues/t/receive", json!({"max": 2})).await;
    let receipt = |i: usize| got["jobs"][i]["receipt"].clone();
    call(&http, &url, "/v1/ack", json!({"receipts": [receipt(0)]})).await;
    let error = json!({"type": "Boom", "message": "no"});
    call(&http, &url, "/v1/fail", json!({"receipt": receipt(1), "error": error})).await;

    let before = totals(&http, &url, "t").await;
    for (name, want) in [("enqueued", "3"), ("delivered", "2"), ("acked", "1"), ("failed", "1")] {
        let line = format!("redrive_jobs_{name}_total{{queue=\"t\"}}");
        assert_eq!(before.get(&line).map(String::as_str), Some(want), "{before:?}");
    }
    assert_eq!(before.len(), 10, "every total: {before:?}");
    stop(s);

    let s = common::start(dir.path(), &[]);
    assert_eq!(totals(&http, &s.url, "t").await, before, "the same totals after the restart");
}
