//! Process crash test: a real `redrive serve` under concurrent producers and consumers is killed
//! with SIGKILL at random moments and restarted on the same data directory. Afterwards every
//! enqueue that got a 2xx is completed or still present, no job whose ack got a 2xx is ever
//! delivered again, and a receipt held across a crash still acks its job (nobody leased it
//! again: SQS's rule for the latest receipt) exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ROUNDS: usize = 6;

#[derive(Default)]
struct Ledger {
    /// Ids whose enqueue got a 2xx.
    enqueued: HashSet<String>,
    /// Ids whose ack got "ok".
    acked: HashSet<String>,
    /// Deliveries seen after the id was acked: must stay empty.
    redelivered_after_ack: Vec<String>,
    /// Receipts held (not acked) when the server died, by round, with their job ids.
    held: HashMap<usize, Vec<(String, String)>>,
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Option<Value> {
    let r = http.post(url).json(&body).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn producer(
    http: reqwest::Client,
    url: String,
    p: usize,
    round: usize,
    ledger: Arc<Mutex<Ledger>>,
) {
    for seq in 0.. {
        let jobs: Vec<Value> =
            (0..10).map(|i| json!({"body": format!("r{round}-p{p}-{seq}-{i}")})).collect();
        let Some(r) =
            post(&http, &format!("{url}/v1/queues/crash/jobs"), json!({ "jobs": jobs })).await
        else {
            return;
        };
        let mut l = ledger.lock().unwrap();
        for j in r["jobs"].as_array().unwrap() {
            l.enqueued.insert(j["id"].as_str().unwrap().to_owned());
        }
    }
}

async fn consumer(http: reqwest::Client, url: String, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let mut turn = 0u64;
    loop {
        turn += 1;
        let body = json!({"max": 10, "wait_ms": 100, "lease_ms": 60000});
        let Some(r) = post(&http, &format!("{url}/v1/queues/crash/receive"), body).await else {
            return;
        };
        let jobs = r["jobs"].as_array().unwrap().clone();
        let mut receipts = Vec::new();
        {
            let mut l = ledger.lock().unwrap();
            for j in &jobs {
                let id = j["id"].as_str().unwrap().to_owned();
                if l.acked.contains(&id) {
                    l.redelivered_after_ack.push(id.clone());
                }
                receipts.push((id, j["receipt"].as_str().unwrap().to_owned()));
            }
        }
        // Hold back some receipts so that crashes catch leases in flight.
        if turn.is_multiple_of(4) {
            ledger.lock().unwrap().held.entry(round).or_default().extend(receipts);
            continue;
        }
        let body = json!({"receipts": receipts.iter().map(|r| &r.1).collect::<Vec<_>>()});
        let Some(r) = post(&http, &format!("{url}/v1/ack"), body).await else { return };
        let mut l = ledger.lock().unwrap();
        for ((id, _), res) in receipts.iter().zip(r["results"].as_array().unwrap()) {
            if res == "ok" {
                l.acked.insert(id.clone());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_and_completes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut checked_receipts = 0;
    for round in 0..ROUNDS {
        let mut server = start(dir.path(), &[]);
        let url = server.url.clone();
        let r = http.put(format!("{url}/v1/queues/crash")).json(&json!({})).send().await.unwrap();
        assert!(r.status().is_success());
        if round > 0 {
            let old = ledger.lock().unwrap().held.get(&(round - 1)).cloned().unwrap_or_default();
            checked_receipts += old.len();
            for chunk in old.chunks(1000) {
                let receipts: Vec<&String> = chunk.iter().map(|h| &h.1).collect();
                let body = json!({ "receipts": receipts });
                let r = post(&http, &format!("{url}/v1/ack"), body.clone()).await.unwrap();
                let results = r["results"].as_array().unwrap();
                // The lease died with the process, but nobody leased the jobs again: the
                // latest receipt completes them (once: the second ack is stale).
                assert!(results.iter().all(|v| v == "ok"), "receipts from before the crash: {r}");
                ledger.lock().unwrap().acked.extend(chunk.iter().map(|h| h.0.clone()));
                let again = post(&http, &format!("{url}/v1/ack"), body).await.unwrap();
                let again = again["results"].as_array().unwrap();
                assert!(again.iter().all(|v| v == "stale"), "acked twice after the crash");
            }
        }
        let mut tasks = Vec::new();
        for p in 0..3 {
            tasks.push(tokio::spawn(producer(http.clone(), url.clone(), p, round, ledger.clone())));
        }
        for _ in 0..2 {
            tasks.push(tokio::spawn(consumer(http.clone(), url.clone(), round, ledger.clone())));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert!(checked_receipts > 0, "some rounds held leases across a crash");
    // Final run: everything enqueued is completed or still there; drain the rest.
    let server = start(dir.path(), &[]);
    let url = server.url.clone();
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        l.enqueued.len() > 100 && !l.acked.is_empty(),
        "load ran: {} enqueued, {} acked",
        l.enqueued.len(),
        l.acked.len()
    );
    assert!(
        l.redelivered_after_ack.is_empty(),
        "acked jobs delivered again: {:?}",
        l.redelivered_after_ack
    );
    for id in &l.enqueued {
        let r = http.get(format!("{url}/v1/jobs/{id}")).send().await.unwrap();
        assert!(r.status().is_success(), "job {id} got a 2xx enqueue and is gone");
        let job: Value = r.json().await.unwrap();
        let state = job["state"].as_str().unwrap();
        if l.acked.contains(id) {
            assert_eq!(state, "acked", "job {id}");
        } else {
            assert!(matches!(state, "ready" | "acked"), "job {id} is {state}");
        }
    }
    loop {
        let r = post(&http, &format!("{url}/v1/queues/crash/receive"), json!({"max": 1000}))
            .await
            .unwrap();
        let jobs = r["jobs"].as_array().unwrap();
        if jobs.is_empty() {
            break;
        }
        for j in jobs {
            assert!(
                !l.acked.contains(j["id"].as_str().unwrap()),
                "acked job delivered again after restart"
            );
        }
    }
    drop(server);
}
