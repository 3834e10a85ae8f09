//! Three `redrive serve --store postgres://…` servers on one fresh database, under concurrent
//! producers and consumers that spread their requests over all three. One server is killed with
//! SIGKILL mid-load and restarted. Afterwards every acknowledged enqueue was completed exactly
//! once, no completed job was delivered again, receipts issued by one server were honoured by
//! the others, a receipt from before a re-lease is refused on every server, and the in-process
//! triage agent ran on exactly one server at a time (and moved when its server died).

mod pg;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Consumers lease for this long, so held-back leases run out and are re-leased during the test.
const LEASE_MS: u64 = 1_500;

#[derive(Default)]
struct Ledger {
    /// Ids whose enqueue got a 2xx.
    enqueued: HashSet<String>,
    /// Acks answered "ok", by id: must end at exactly 1 (or 0 after a lost answer, below).
    acked_ok: HashMap<String, u32>,
    /// Ids whose ack got no answer (server killed): done or not, the ledger cannot tell.
    ack_unanswered: HashSet<String>,
    /// Deliveries of an id already acked "ok": must stay empty.
    delivered_after_ack: Vec<String>,
    /// Receipts deliberately never acked: their lease runs out and the job is leased again.
    held: Vec<(String, String)>,
    /// Deliveries answered by a server other than the one whose ack succeeded.
    cross_server_acks: usize,
}

type Urls = Arc<RwLock<Vec<String>>>;

fn pick(urls: &Urls, n: usize) -> String {
    let u = urls.read().unwrap();
    u[n % u.len()].clone()
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Option<Value> {
    let r = http.post(url).json(body).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn producer(
    http: reqwest::Client,
    urls: Urls,
    p: usize,
    stop: Arc<AtomicBool>,
    l: Arc<Mutex<Ledger>>,
) {
    for seq in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let url = pick(&urls, p + seq);
        let jobs: Vec<Value> = (0..5).map(|i| json!({"body": format!("p{p}-{seq}-{i}")})).collect();
        match post(&http, &format!("{url}/v1/queues/fleet/jobs"), &json!({ "jobs": jobs })).await {
            Some(r) => {
                let mut l = l.lock().unwrap();
                for j in r["jobs"].as_array().unwrap() {
                    l.enqueued.insert(j["id"].as_str().unwrap().to_owned());
                }
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Receives from one server and acks on the next, holding back every fifth batch.
async fn consumer(
    http: reqwest::Client,
    urls: Urls,
    c: usize,
    stop: Arc<AtomicBool>,
    l: Arc<Mutex<Ledger>>,
) {
    let mut idle = 0;
    for turn in 0usize.. {
        let url = pick(&urls, c + turn);
        let body = json!({"max": 10, "wait_ms": 200, "lease_ms": LEASE_MS});
        let Some(r) = post(&http, &format!("{url}/v1/queues/fleet/receive"), &body).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let jobs = r["jobs"].as_array().unwrap().clone();
        if jobs.is_empty() {
            idle += 1;
            // Done once the producers stopped and the queue stayed empty past a lease.
            if stop.load(Ordering::Relaxed) && idle * 200 > 3 * LEASE_MS as usize {
                return;
            }
            continue;
        }
        idle = 0;
        let got: Vec<(String, String)> = jobs
            .iter()
            .map(|j| {
                (j["id"].as_str().unwrap().to_owned(), j["receipt"].as_str().unwrap().to_owned())
            })
            .collect();
        {
            let mut l = l.lock().unwrap();
            for (id, _) in &got {
                if l.acked_ok.contains_key(id) {
                    l.delivered_after_ack.push(id.clone());
                }
            }
            if turn % 5 == 4 && l.held.len() < 200 {
                l.held.extend(got);
                continue;
            }
        }
        // Ack on another server than the one that leased: receipts are valid fleet-wide.
        let other = pick(&urls, c + turn + 1);
        let receipts: Vec<&String> = got.iter().map(|g| &g.1).collect();
        let answer =
            post(&http, &format!("{other}/v1/ack"), &json!({ "receipts": receipts })).await;
        let mut l = l.lock().unwrap();
        let Some(r) = answer else {
            l.ack_unanswered.extend(got.into_iter().map(|g| g.0));
            continue;
        };
        for ((id, _), res) in got.iter().zip(r["results"].as_array().unwrap()) {
            if res == "ok" {
                *l.acked_ok.entry(id.clone()).or_default() += 1;
                if other != url {
                    l.cross_server_acks += 1;
                }
            }
        }
    }
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = http.get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Which servers run the triage agent, once exactly one does (waits at most `bound`).
async fn the_one_triage_server(http: &reqwest::Client, urls: &[String], bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    loop {
        let mut active = Vec::new();
        for (i, u) in urls.iter().enumerate() {
            if metric(http, u, "redrive_triage_agent_active").await == Some(1.0) {
                active.push(i);
            }
        }
        assert!(active.len() <= 1, "the triage agent runs on servers {active:?} at once");
        if let [one] = active[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no server took the triage agent within {bound:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_database_survive_a_sigkill_and_complete_everything_once() {
    // The database first: its set-up may drop earlier runs' databases, which is not the test.
    let store = pg::fresh_database(&pg::server_url());
    let run = fleet_run(store);
    tokio::time::timeout(Duration::from_secs(50), run).await.expect("bounded in time");
}

async fn fleet_run(store: String) {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--triage", "--triage-interval-s", "1"];
    let mut servers: Vec<pg::Server> =
        dirs.iter().map(|d| pg::serve(&store, d.path(), &flags)).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let r = http.put(format!("{}/v1/queues/fleet", servers[0].url)).json(&json!({})).send().await;
    assert!(r.unwrap().status().is_success());
    let urls: Urls = Arc::new(RwLock::new(servers.iter().map(|s| s.url.clone()).collect()));
    let first: Vec<String> = urls.read().unwrap().clone();
    let triage = the_one_triage_server(&http, &first, Duration::from_secs(10)).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_producing, stop_consuming) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut producers = Vec::new();
    for p in 0..3 {
        producers.push(tokio::spawn(producer(
            http.clone(),
            urls.clone(),
            p,
            stop_producing.clone(),
            ledger.clone(),
        )));
    }
    let mut consumers = Vec::new();
    for c in 0..3 {
        consumers.push(tokio::spawn(consumer(
            http.clone(),
            urls.clone(),
            c,
            stop_consuming.clone(),
            ledger.clone(),
        )));
    }

    // Mid-load, the server running the triage agent dies; another takes the agent over.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let enqueued_before_kill = ledger.lock().unwrap().enqueued.len();
    servers[triage].kill();
    let live: Vec<String> =
        (0..3).filter(|&i| i != triage).map(|i| servers[i].url.clone()).collect();
    the_one_triage_server(&http, &live, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let restarted = pg::serve(&store, dirs[triage].path(), &flags);
    urls.write().unwrap()[triage] = restarted.url.clone();
    servers[triage] = restarted;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    stop_producing.store(true, Ordering::Relaxed);
    for t in producers {
        t.await.unwrap();
    }
    stop_consuming.store(true, Ordering::Relaxed);
    for t in consumers {
        t.await.unwrap();
    }
    let all: Vec<String> = urls.read().unwrap().clone();
    the_one_triage_server(&http, &all, Duration::from_secs(10)).await;

    let l = std::mem::take(&mut *ledger.lock().unwrap());
    eprintln!(
        "fleet: {} enqueued ({enqueued_before_kill} before the kill), {} acked ok, {} acks \
         unanswered, {} acked on another server, {} leases held back",
        l.enqueued.len(),
        l.acked_ok.len(),
        l.ack_unanswered.len(),
        l.cross_server_acks,
        l.held.len()
    );
    assert!(
        enqueued_before_kill > 0 && l.enqueued.len() > enqueued_before_kill,
        "load ran across the kill"
    );
    assert!(
        !l.held.is_empty() && l.cross_server_acks > 0,
        "leases were held back and acks crossed servers"
    );
    assert!(
        l.delivered_after_ack.is_empty(),
        "acked jobs delivered again: {:?}",
        l.delivered_after_ack
    );
    // Every acknowledged enqueue completed, and at most once by the ledger's count.
    for id in &l.enqueued {
        let r = http.get(format!("{}/v1/jobs/{id}", all[0])).send().await.unwrap();
        assert!(r.status().is_success(), "job {id} got a 2xx enqueue and is gone");
        let job: Value = r.json().await.unwrap();
        assert_eq!(job["state"], "acked", "job {id}: {job}");
        let oks = l.acked_ok.get(id).copied().unwrap_or(0);
        assert!(
            oks == 1 || (oks == 0 && l.ack_unanswered.contains(id)),
            "job {id} acked {oks} times"
        );
    }
    let stats: Value =
        http.get(format!("{}/v1/queues/fleet", all[1])).send().await.unwrap().json().await.unwrap();
    let counts = &stats["stats"]["counts"];
    assert_eq!(
        (counts["ready"].as_u64(), counts["leased"].as_u64()),
        (Some(0), Some(0)),
        "{stats}"
    );
    // A receipt from before the re-lease is refused by every server.
    let held: Vec<&String> = l.held.iter().map(|h| &h.1).collect();
    for url in &all {
        let r = post(&http, &format!("{url}/v1/ack"), &json!({ "receipts": held })).await.unwrap();
        let results = r["results"].as_array().unwrap();
        assert!(results.iter().all(|v| v == "stale"), "old receipts on {url}: {r}");
    }
}
