//! PostgreSQL restarted under load (`pg_ctl restart -m fast`, then a stop with two seconds
//! down): a `redrive serve --store` under concurrent producers and consumers answers 503 (never
//! 500) while the database is away, reconnects by itself, and loses nothing acknowledged.
//!
//! The database is a cluster of its own (`REDRIVE_PG_TEST_DIR` under the target directory), so
//! restarting it disturbs no other test; it is stopped at the end.

mod pg;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Default)]
struct Ledger {
    enqueued: HashSet<String>,
    acked: HashSet<String>,
    delivered_after_ack: Vec<String>,
    /// Answers that were not 2xx, by status.
    refused: BTreeMap<u16, u64>,
    /// Requests with no HTTP answer at all (must stay 0: the server stays up).
    transport_errors: u64,
}

/// POSTs `body`; a 2xx body, or `None` after noting the status.
async fn post(http: &reqwest::Client, url: &str, body: &Value, l: &Mutex<Ledger>) -> Option<Value> {
    let r = match http.post(url).json(body).send().await {
        Ok(r) => r,
        Err(_) => {
            l.lock().unwrap().transport_errors += 1;
            return None;
        }
    };
    let status = r.status().as_u16();
    if (200..300).contains(&status) {
        return r.json().await.ok();
    }
    *l.lock().unwrap().refused.entry(status).or_default() += 1;
    None
}

async fn producer(
    http: reqwest::Client,
    url: String,
    p: usize,
    stop: Arc<AtomicBool>,
    l: Arc<Mutex<Ledger>>,
) {
    for seq in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let jobs: Vec<Value> = (0..5).map(|i| json!({"body": format!("p{p}-{seq}-{i}")})).collect();
        let body = json!({ "jobs": jobs });
        match post(&http, &format!("{url}/v1/queues/restart/jobs"), &body, &l).await {
            Some(r) => {
                let mut l = l.lock().unwrap();
                for j in r["jobs"].as_array().unwrap() {
                    l.enqueued.insert(j["id"].as_str().unwrap().to_owned());
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn consumer(
    http: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    l: Arc<Mutex<Ledger>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"max": 10, "wait_ms": 200, "lease_ms": 2000});
        let Some(r) = post(&http, &format!("{url}/v1/queues/restart/receive"), &body, &l).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let jobs = r["jobs"].as_array().unwrap().clone();
        let mut ids = Vec::new();
        let mut receipts = Vec::new();
        {
            let mut l = l.lock().unwrap();
            for j in &jobs {
                let id = j["id"].as_str().unwrap().to_owned();
                if l.acked.contains(&id) {
                    l.delivered_after_ack.push(id.clone());
                }
                ids.push(id);
                receipts.push(j["receipt"].as_str().unwrap().to_owned());
            }
        }
        if receipts.is_empty() {
            continue;
        }
        let Some(r) =
            post(&http, &format!("{url}/v1/ack"), &json!({ "receipts": receipts }), &l).await
        else {
            continue; // the leases run out and the jobs come back
        };
        let mut l = l.lock().unwrap();
        for (id, res) in ids.into_iter().zip(r["results"].as_array().unwrap()) {
            if res == "ok" {
                l.acked.insert(id);
            }
        }
    }
}

/// Stops the test's own cluster, whatever the outcome.
struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        pg::cluster(Some(&self.0), &["stop"]);
    }
}

/// Waits until the server answers a 2xx again.
async fn until_served(http: &reqwest::Client, url: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = http.get(format!("{url}/v1/queues/restart")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "the server did not reconnect within {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_gives_503s_then_service_and_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(90), restart_run()).await.expect("bounded in time");
}

async fn restart_run() {
    let cluster_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pg-restart-cluster");
    let base = pg::cluster(Some(&cluster_dir), &[]);
    let cluster = Cluster(cluster_dir.clone());
    let store = pg::fresh_database(&base);
    let dir = tempfile::tempdir().unwrap();
    let server = pg::serve(&store, dir.path(), &[]);
    let url = server.url.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let r = http.put(format!("{url}/v1/queues/restart")).json(&json!({})).send().await.unwrap();
    assert!(r.status().is_success());

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_producing, stop_consuming) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            tokio::spawn(producer(
                http.clone(),
                url.clone(),
                p,
                stop_producing.clone(),
                ledger.clone(),
            ))
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(consumer(
                http.clone(),
                url.clone(),
                stop_consuming.clone(),
                ledger.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = ledger.lock().unwrap().enqueued.len();
    pg::cluster(Some(&cluster_dir), &["restart"]);
    let back_after_restart = until_served(&http, &url, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    pg::cluster(Some(&cluster_dir), &["restart", "2"]);
    let back_after_outage = until_served(&http, &url, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop_producing.store(true, Ordering::Relaxed);
    for t in producers {
        t.await.unwrap();
    }
    stop_consuming.store(true, Ordering::Relaxed);
    for t in consumers {
        t.await.unwrap();
    }

    let l = std::mem::take(&mut *ledger.lock().unwrap());
    eprintln!(
        "pg restart: {} enqueued ({before} before), {} acked, refusals {:?}, served again {:?} \
         after the restart and {:?} after the outage",
        l.enqueued.len(),
        l.acked.len(),
        l.refused,
        back_after_restart,
        back_after_outage
    );
    assert!(l.enqueued.len() > before && before > 0, "load ran across the restarts");
    assert_eq!(l.transport_errors, 0, "the server kept answering");
    assert!(
        l.refused.keys().all(|s| *s == 503),
        "only 503s while the database was away: {:?}",
        l.refused
    );
    assert!(l.refused.get(&503).is_some_and(|n| *n > 0), "the outage was seen as 503s");
    assert!(
        l.delivered_after_ack.is_empty(),
        "acked jobs delivered again: {:?}",
        l.delivered_after_ack
    );
    for id in &l.enqueued {
        let r = http.get(format!("{url}/v1/jobs/{id}")).send().await.unwrap();
        assert!(r.status().is_success(), "job {id} got a 2xx enqueue and is gone");
        let job: Value = r.json().await.unwrap();
        let state = job["state"].as_str().unwrap();
        if l.acked.contains(id) {
            assert_eq!(state, "acked", "job {id}");
        } else {
            assert!(matches!(state, "ready" | "leased" | "acked"), "job {id} is {state}");
        }
    }
    drop(server);
    drop(cluster);
}
