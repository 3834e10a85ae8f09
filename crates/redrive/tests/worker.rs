//! The worker SDK against a real server: heartbeats keep long jobs leased, a lost lease drops the
//! late result, panics are reported, graceful stop releases what it could not finish, and the
//! producer turns many concurrent sends into few requests.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::start;
use redrive_client::producer::Producer;
use redrive_client::worker::{JobContext, JobError, Runner, Worker, WorkerStats};
use redrive_client::{Client, JobId, NewJob, QueuePatch, ReceiveOptions};

async fn setup(name: &str, patch: QueuePatch) -> (common::Server, Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let client = Client::new(&server.url).unwrap();
    client.put_queue(name, &patch).await.unwrap();
    (server, client, dir)
}

async fn send(client: &Client, queue: &str, body: &str) -> JobId {
    let job = NewJob { body: body.into(), ..NewJob::default() };
    client.enqueue(queue, &[job]).await.unwrap()[0].id
}

/// Polls `cond` every 20 ms for up to 20 s.
async fn until(cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 20 s");
}

/// A worker running in the background until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Arc<WorkerStats>>,
}

fn spawn<F, Fut>(worker: Runner<F>) -> Running
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
{
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    Running { stop, task }
}

impl Running {
    /// Signals a graceful stop and waits for it; returns the worker's counters.
    async fn stop(self) -> Arc<WorkerStats> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_three_times_longer_than_its_lease_completes_once_with_heartbeats() {
    let (_s, client, _d) = setup("long", QueuePatch::default()).await;
    let id = send(&client, "long", "slow").await;
    let stats = Arc::new(WorkerStats::default());
    let worker = Worker::builder(client.clone())
        .queues(["long"])
        .lease(Duration::from_millis(600))
        .stats(stats.clone())
        .handler(|_job| async {
            tokio::time::sleep(Duration::from_millis(1800)).await;
            Ok(())
        });
    let run = spawn(worker);
    until(|| get(&stats.succeeded) == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the batched ack
    run.stop().await;
    let job = client.get_job(id).await.unwrap();
    assert_eq!(format!("{:?}", job.state), "Acked");
    assert_eq!(job.receive_count, 1, "never redelivered");
    assert!(get(&stats.extended) >= 2, "heartbeats renewed the lease: {}", get(&stats.extended));
    assert_eq!(get(&stats.lost_leases), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_heartbeats_the_job_is_redelivered_and_the_late_ack_is_refused() {
    let (_s, client, _d) = setup("nohb", QueuePatch::default()).await;
    let id = send(&client, "nohb", "slow once").await;
    let stats = Arc::new(WorkerStats::default());
    let worker = Worker::builder(client.clone())
        .queues(["nohb"])
        .concurrency(2)
        .lease(Duration::from_millis(500))
        .heartbeats(false)
        .stats(stats.clone())
        .handler(|job| async move {
            if job.attempt == 1 {
                tokio::time::sleep(Duration::from_millis(2000)).await;
            }
            Ok(())
        });
    let run = spawn(worker);
    until(|| get(&stats.lost_leases) == 1 && get(&stats.succeeded) == 1).await;
    let stats = run.stop().await;
    assert_eq!(get(&stats.acked), 1, "only the second delivery's ack counts");
    let job = client.get_job(id).await.unwrap();
    assert_eq!((format!("{:?}", job.state).as_str(), job.receive_count), ("Acked", 2));
    assert_eq!(format!("{:?}", job.attempts[0].outcome), "LeaseExpired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_reported_with_its_message() {
    let patch = QueuePatch { max_attempts: Some(Some(1)), ..QueuePatch::default() };
    let (_s, client, _d) = setup("panics", patch).await;
    let id = send(&client, "panics", "x").await;
    let stats = Arc::new(WorkerStats::default());
    let worker = Worker::builder(client.clone()).queues(["panics"]).stats(stats.clone()).handler(
        |_job| async {
            if true {
                panic!("boom: disk full");
            }
            Ok::<(), JobError>(())
        },
    );
    let run = spawn(worker);
    until(|| get(&stats.panicked) == 1 && get(&stats.failed) == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.stop().await;
    let job = client.get_job(id).await.unwrap();
    let err = job.attempts[0].error.as_ref().expect("the attempt has an error");
    assert_eq!(err.kind, "panic");
    assert!(err.message.contains("boom: disk full"), "{err:?}");
    assert_eq!(job.queue, "panics-dlq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_with_100_jobs_in_flight_releases_them_for_immediate_pickup() {
    let (_s, client, _d) = setup("busy", QueuePatch::default()).await;
    let jobs: Vec<NewJob> =
        (0..100).map(|i| NewJob { body: format!("{i}"), ..NewJob::default() }).collect();
    client.enqueue("busy", &jobs).await.unwrap();
    let stats = Arc::new(WorkerStats::default());
    let worker = Worker::builder(client.clone())
        .queues(["busy"])
        .concurrency(100)
        .lease(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_millis(300))
        .stats(stats.clone())
        .handler(|_job| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok(())
        });
    let run = spawn(worker);
    until(|| get(&stats.started) == 100).await;
    let stats = run.stop().await;
    assert_eq!((get(&stats.released), get(&stats.succeeded)), (100, 0));
    let opts = ReceiveOptions { max: Some(100), wait_ms: Some(0), ..ReceiveOptions::default() };
    let again = client.receive("busy", &opts).await.unwrap();
    assert_eq!(again.len(), 100, "released jobs are ready at once, none lost");
    assert!(again.iter().all(|d| d.attempt == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_keeps_a_small_buffer_and_never_more_leases_than_it_can_hold() {
    let (_s, client, _d) = setup("buffered", QueuePatch::default()).await;
    let jobs: Vec<NewJob> =
        (0..20).map(|i| NewJob { body: format!("{i}"), ..NewJob::default() }).collect();
    client.enqueue("buffered", &jobs).await.unwrap();
    let stats = Arc::new(WorkerStats::default());
    let worker = Worker::builder(client.clone())
        .queues(["buffered"])
        .concurrency(2)
        .prefetch(3)
        .stats(stats.clone())
        .handler(|_job| async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(())
        });
    let run = spawn(worker);
    let mut most_leased = 0;
    while get(&stats.succeeded) < 20 {
        let leased = client.queue_stats("buffered").await.unwrap().counts.leased;
        most_leased = most_leased.max(leased);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = run.stop().await;
    assert!(most_leased <= 5, "at most concurrency + prefetch leases, saw {most_leased}");
    assert!(most_leased > 2, "the buffer was used: saw {most_leased} leases");
    let counted: u64 = stats.handler_duration.buckets().iter().map(|(_, n)| n).sum();
    assert_eq!(counted, 20, "every handler run is in the duration histogram");
    let (le_100ms, rest): (Vec<_>, Vec<_>) =
        stats.handler_duration.buckets().into_iter().partition(|(b, _)| b.is_some_and(|b| b < 150));
    assert_eq!(
        (le_100ms.iter().map(|x| x.1).sum::<u64>(), rest.iter().map(|x| x.1).sum::<u64>()),
        (0, 20)
    );
}

/// HTTP requests the server has answered so far.
async fn requests(client: &Client) -> u64 {
    let m = client.metrics().await.unwrap();
    m.lines()
        .filter(|l| l.starts_with("redrive_http_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// `n` concurrent one-job `send`s to `queue` ("job 0", "job 1", …), each its own task.
fn spawn_sends(
    producer: &Producer,
    queue: &'static str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<redrive_client::Enqueued, redrive_client::Error>>> {
    (0..n)
        .map(|i| {
            let p = producer.clone();
            tokio::spawn(async move {
                p.send(queue, NewJob { body: format!("job {i}"), ..NewJob::default() }).await
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_sends_become_few_requests() {
    let (_s, client, _d) = setup("bulk", QueuePatch::default()).await;
    let before = requests(&client).await;
    let sends = spawn_sends(&Producer::new(client.clone()), "bulk", 10_000);
    let mut ids = std::collections::BTreeSet::new();
    for s in sends {
        ids.insert(s.await.unwrap().unwrap().id);
    }
    assert_eq!(ids.len(), 10_000, "every send got its own id");
    let used = requests(&client).await - before - 1; // the first metrics call itself
    assert!(used <= 200, "10,000 sends took {used} requests");
    assert_eq!(client.queue_stats("bulk").await.unwrap().counts.ready, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_sent_together_share_requests_and_get_their_own_results_in_order() {
    let (_s, client, _d) = setup("batches", QueuePatch::default()).await;
    let before = requests(&client).await;
    // A linger far longer than the calls take to arrive, so all of them meet in one window.
    let producer = Producer::with_batching(client.clone(), Duration::from_secs(2), 10);
    // Sizes that fill a request exactly, share one, and need three (25 at 10 a request): seven
    // requests if none were shared, and a request is never split or overfilled. The 25 arrive
    // as 10, 10 and 5 interleaved with the others in any order; packed in order of arrival
    // (1 | 10 | 3 | 10 | 6 | 10 | 5) they would take seven requests, packed first fit always
    // five: the tens alone, 6 + 3 + 1 or 5 + 3 + 1 in one and the other alone.
    let sizes = [1usize, 3, 10, 25, 6, 0];
    let calls: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(c, &n)| {
            let p = producer.clone();
            let jobs = (0..n)
                .map(|j| NewJob { body: format!("call {c} job {j}"), ..NewJob::default() })
                .collect();
            tokio::spawn(async move { p.send_batch("batches", jobs).await })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().unwrap());
    }
    let used = requests(&client).await - before - 1;
    assert_eq!(used, 5, "45 jobs at most 10 a request took {used} requests");
    for (c, done) in results.iter().enumerate() {
        assert_eq!(done.len(), sizes[c], "call {c}: one result per job");
        for (j, e) in done.iter().enumerate() {
            let job = client.get_job(e.id).await.unwrap();
            assert_eq!(job.body.as_deref(), Some(format!("call {c} job {j}").as_str()));
        }
    }
    assert_eq!(client.queue_stats("batches").await.unwrap().counts.ready, 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_enqueues_answer_every_send_and_free_their_requests_for_the_next() {
    let (_s, client, _d) = setup("present", QueuePatch::default()).await;
    let producer = Producer::with_batching(client.clone(), Duration::ZERO, 10);
    // Far more failing requests than may be in flight at once: if a failed request kept its
    // place, the sends after it would wait for ever.
    let sends = spawn_sends(&producer, "absent", 200);
    let answered = async {
        for s in sends {
            let e = s.await.unwrap().unwrap_err();
            assert!(e.to_string().contains("absent"), "each send is told why: {e}");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .expect("every send is answered, none stuck behind a failed request");
    let id = producer.send("present", NewJob::default()).await.unwrap().id;
    assert_eq!(client.get_job(id).await.unwrap().queue, "present");
}

/// In the child process (see the test below) this test body is a worker that starts the job
/// and hangs until it is killed.
const CHILD_URL: &str = "REDRIVE_TEST_WORKER_URL";
const CHILD_MARKER: &str = "REDRIVE_TEST_WORKER_MARKER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_and_the_job_completes_once_elsewhere() {
    if let (Ok(url), Ok(marker)) = (std::env::var(CHILD_URL), std::env::var(CHILD_MARKER)) {
        let client = Client::new(&url).unwrap();
        let worker = Worker::builder(client)
            .queues(["kill"])
            .lease(Duration::from_millis(1000))
            .handler(move |_job| {
                let marker = marker.clone();
                async move {
                    std::fs::write(&marker, b"started").unwrap();
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    Ok(())
                }
            });
        worker.run(std::future::pending()).await;
        return;
    }
    let (server, client, dir) = setup("kill", QueuePatch::default()).await;
    let id = send(&client, "kill", "important").await;
    let marker = dir.path().join("started");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_worker_killed_mid_job_loses_nothing_and_the_job_completes_once_elsewhere",
        ])
        .env(CHILD_URL, &server.url)
        .env(CHILD_MARKER, &marker)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until(|| marker.exists()).await;
    child.kill().unwrap(); // SIGKILL, mid-job
    child.wait().unwrap();

    let stats = Arc::new(WorkerStats::default());
    let worker = Worker::builder(client.clone()).queues(["kill"]).stats(stats.clone()).handler(
        |job| async move {
            assert_eq!(job.attempt, 2, "delivered again after the dead worker's lease");
            Ok(())
        },
    );
    let run = spawn(worker);
    until(|| get(&stats.succeeded) == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.stop().await;
    let job = client.get_job(id).await.unwrap();
    assert_eq!((format!("{:?}", job.state).as_str(), job.receive_count), ("Acked", 2));
    assert_eq!(get(&stats.succeeded), 1, "completed exactly once");
    assert_eq!(format!("{:?}", job.attempts[0].outcome), "LeaseExpired");
}

/// A worker that holds more jobs than one receive returns keeps several receives in flight, and
/// its acks go out in several batches at once: every job still runs once and is acked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_worker_fetches_in_parallel_and_runs_every_job_once() {
    let (_s, client, _d) = setup("wide", QueuePatch::default()).await;
    let jobs: Vec<NewJob> =
        (0..6000).map(|i| NewJob { body: format!("{i}"), ..NewJob::default() }).collect();
    for chunk in jobs.chunks(1000) {
        client.enqueue("wide", chunk).await.unwrap();
    }
    let stats = Arc::new(WorkerStats::default());
    let runs = Arc::new(std::sync::Mutex::new(vec![0u32; 6000]));
    let seen = runs.clone();
    let worker = Worker::builder(client.clone())
        .queues(["wide"])
        .concurrency(2500)
        .stats(stats.clone())
        .handler(move |job| {
            seen.lock().unwrap()[job.body.parse::<usize>().unwrap()] += 1;
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }
        });
    let run = spawn(worker);
    until(|| get(&stats.acked) == 6000).await;
    let stats = run.stop().await;
    assert_eq!(get(&stats.succeeded), 6000);
    assert!(runs.lock().unwrap().iter().all(|n| *n == 1), "every job ran exactly once");
    assert_eq!((get(&stats.lost_leases), get(&stats.expired_in_buffer)), (0, 0));
    let counts = client.queue_stats("wide").await.unwrap().counts;
    assert_eq!((counts.ready, counts.leased), (0, 0), "every job acked: {counts:?}");
}

/// Requests answered on `route` (any method and status), from the server's `/metrics`.
async fn requests_on(url: &str, route: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    let label = format!("route=\"{route}\"");
    text.lines()
        .filter(|l| l.starts_with("redrive_http_requests_total{") && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// A busy worker acks a finished job on the receive that fetches the next one (its slot goes
/// to the new job): few acks go out as requests of their own, and every job still runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_acks_on_the_receive_that_takes_the_next_job() {
    let (s, client, _d) = setup("busy", QueuePatch::default()).await;
    let jobs: Vec<NewJob> =
        (0..200).map(|i| NewJob { body: format!("{i}"), ..NewJob::default() }).collect();
    client.enqueue("busy", &jobs).await.unwrap();
    let stats = Arc::new(WorkerStats::default());
    let runs = Arc::new(std::sync::Mutex::new(vec![0u32; 200]));
    let seen = runs.clone();
    let worker = Worker::builder(client.clone())
        .queues(["busy"])
        .concurrency(4)
        .prefetch(0)
        .stats(stats.clone())
        .handler(move |job| {
            seen.lock().unwrap()[job.body.parse::<usize>().unwrap()] += 1;
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            }
        });
    let run = spawn(worker);
    until(|| get(&stats.acked) == 200).await;
    let stats = run.stop().await;
    assert_eq!((get(&stats.succeeded), get(&stats.lost_leases)), (200, 0));
    assert!(runs.lock().unwrap().iter().all(|n| *n == 1), "every job ran exactly once");
    let counts = client.queue_stats("busy").await.unwrap().counts;
    assert_eq!((counts.ready, counts.leased, counts.completed), (0, 0, 200), "{counts:?}");
    // Each job's ack would be a request of its own (or of a few) if acks did not ride on
    // receives: 4 jobs finish at a time, 20 ms apart.
    let (acks, receives) =
        (requests_on(&s.url, "/v1/ack").await, requests_on(&s.url, "/v1/receive").await);
    assert!(receives >= 50, "{receives} receives for 200 jobs, at most 4 at a time");
    assert!(acks * 4 < receives, "{acks} ack requests beside {receives} receives");
}
