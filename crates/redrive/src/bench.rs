//! `redrive bench`: end-to-end throughput (enqueue + receive + ack) and enqueue→start latency,
//! against a server at `--url` or one it starts on a free port with a temporary data directory
//! (or on PostgreSQL with `--store`); with `--bare-postgres`, then the bare `SKIP LOCKED` pattern
//! on the same database (bench_bare.rs).
//!
//! Producers stamp every job with attribute `t`, the send time in µs since the epoch; consumers
//! long-poll, record receive time minus `t` in a histogram, and ack in batches. The run ends when
//! every job is acked or at `--timeout-s`, and reports what it got either way.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Args;
use hdrhistogram::Histogram;
use redrive_client::{Client, Error, NewJob, QueuePatch, ReceiveOptions};
use redrive_core::limits::{
    ACK_BATCH_COUNT_MAX, MESSAGE_SIZE_DEFAULT_BYTES, MESSAGE_SIZE_MAX_BYTES,
};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::Notify;

use crate::cli::table::Fields;

/// Long poll of the consumers: short, so they notice the end of the run quickly.
const RECEIVE_WAIT_MS: u64 = 1_000;
/// Lease of received jobs: long enough that none expires while its ack is batched.
pub(crate) const LEASE_MS: u64 = 60_000;
/// Pause before retrying a call the server shed (503/429).
const SHED_PAUSE_MS: u64 = 10;
/// Timeout of one call during the run, and the slack after `--timeout-s` for tasks to stop.
const CALL_TIMEOUT_MS: u64 = 10_000;
const STOP_GRACE_MS: u64 = CALL_TIMEOUT_MS + RECEIVE_WAIT_MS + 2_000;
/// How long a started server gets to print its address.
const SERVER_START_TIMEOUT_MS: u64 = 30_000;
/// Latencies are recorded in µs, up to an hour; larger values are clamped.
pub(crate) const LATENCY_MAX_US: u64 = 3_600_000_000;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Concurrent enqueuers
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) producers: u32,
    /// Concurrent receive-and-ack loops
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) consumers: u32,
    /// Jobs to run through, in total
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) jobs: u64,
    /// Jobs per enqueue request, and most jobs per receive
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) batch: u32,
    /// Receipts per ack request [default: --batch]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    ack_batch: Option<u32>,
    /// Size of each job body
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(..=i64::from(MESSAGE_SIZE_MAX_BYTES)))]
    pub(crate) body_bytes: u32,
    /// Total enqueue rate in jobs/s, paced steadily; 0 = as fast as possible
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Queue to use (created if needed, purged first)
    #[arg(long, default_value = "bench")]
    pub(crate) queue: String,
    /// Spread the jobs over this many ordering groups (`MessageGroupId`, what an SQS FIFO
    /// queue requires), round robin; 0 = no group
    #[arg(long, default_value_t = 0, conflicts_with_all = ["sdk", "sqs", "bare_postgres", "redis"])]
    groups: u64,
    /// Stop and report after this long even if jobs are left
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Write enqueue→start latency against wall time to this CSV file, one row per 100 ms
    /// (`t_s,jobs,p50_ms,p99_ms,max_ms`), and report the worst 100 ms (not with --sdk or --sqs)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sdk", "sqs"])]
    timeline: Option<std::path::PathBuf>,
    /// How consumers ack over the native API: `requests` sends receive and ack as separate
    /// requests (acks batched by --ack-batch); `combined` carries each batch's acks on the next
    /// receive (one request, and one commit where the store can, per consumer cycle)
    #[arg(long, value_enum, default_value_t = Protocol::Requests, conflicts_with_all = ["sdk", "sqs"])]
    protocol: Protocol,
    /// Use the SDK on both sides: a batching `Producer` (each producer hands it a batch with
    /// `send_batch` and waits for it) and a `Worker` with a no-op handler (concurrency consumers
    /// × batch), as an application would
    #[arg(long, conflicts_with = "sqs")]
    sdk: bool,
    /// Drive the SQS API with the official `aws-sdk-sqs` crate: SendMessageBatch, ReceiveMessage,
    /// DeleteMessageBatch (the single-message calls with --batch 1); --batch at most 10
    #[arg(long)]
    sqs: bool,
    /// Store of the server bench starts (`postgres://USER@HOST:PORT/DB`); without it, a
    /// temporary embedded log
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Then run the same workload through the bare `FOR UPDATE SKIP LOCKED` pattern on a plain
    /// table in this database, and report both side by side
    #[arg(long, value_name = "URL")]
    bare_postgres: Option<String>,
    /// With --bare-postgres: each bare enqueue also NOTIFYs in its transaction, as redrive's
    /// enqueue does to wake long polls across servers
    #[arg(long, requires = "bare_postgres")]
    bare_notify: bool,
    /// Then run the same workload through Redis streams (XADD / XREADGROUP / XACK) on the
    /// Redis server at this `redis://host:port`, and report both side by side
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Protocol {
    Requests,
    Combined,
}

/// Width of a `--timeline` row, and the wait a row's worst job must exceed to count as a stall.
const TIMELINE_STEP_MS: u64 = 100;
const STALL_MS: f64 = 20.0;

#[derive(Serialize, Debug, Clone, Copy)]
struct TimelineSummary {
    worst_max_ms: f64,
    worst_at_s: f64,
    stalls: u64,
}

/// One run's result: the `--json` output.
#[derive(Serialize, Debug)]
struct Report {
    server: String,
    queue: String,
    producers: u32,
    consumers: u32,
    batch: u32,
    ack_batch: u32,
    protocol: Protocol,
    groups: u64,
    body_bytes: u32,
    rate: u64,
    jobs: u64,
    enqueued: u64,
    acked: u64,
    completed: bool,
    elapsed_s: f64,
    jobs_per_s: f64,
    jobs_per_min: f64,
    enqueue_elapsed_s: f64,
    enqueue_jobs_per_s: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_p999_ms: f64,
    latency_max_ms: f64,
    shed_retries: u64,
    stale_acks: u64,
    /// With --timeline: the largest enqueue→start of the run's worst 100 ms, when it was (s from
    /// the start), and how many 100 ms had a job wait longer than `STALL_MS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<TimelineSummary>,
}

/// What producers and consumers share.
pub(crate) struct Run {
    pub(crate) client: Client,
    pub(crate) queue: String,
    pub(crate) jobs: u64,
    pub(crate) start: Instant,
    deadline: Instant,
    pub(crate) acked: AtomicU64,
    pub(crate) stale: AtomicU64,
    shed: AtomicU64,
    /// Set when the last job is acked: the end-to-end time.
    pub(crate) done_at: OnceLock<Duration>,
    /// Set on the first task error, so the others stop instead of waiting for the deadline.
    stop: AtomicBool,
    /// Woken when the run is over early (all acked, or an error): ends consumers' long polls.
    pub(crate) ended: Notify,
    /// With --timeline: (ms from the start when received, enqueue→start in µs) of every job.
    timeline: Option<std::sync::Mutex<Vec<(u32, u32)>>>,
}

impl Run {
    pub(crate) fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.done_at.get().is_some()
            || Instant::now() >= self.deadline
    }
}

pub async fn run(args: BenchArgs, url: Option<String>, json: bool) -> anyhow::Result<()> {
    if args.sqs {
        sqs_bench_check(&args)?;
    }
    if url.is_some() && args.store.is_some() {
        bail!("--store is for the server bench starts; with --url, the server has its own store");
    }
    let server = match url {
        Some(url) => Server::external(url),
        None => Server::spawn(args.store.as_deref()).await?,
    };
    let result = bench(&args, &server).await;
    server.stop().await;
    let (report, error) = result?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    let mut peers = Vec::new();
    if let (Some(url), None) = (&args.bare_postgres, &error) {
        peers.push(("bare SKIP LOCKED", bare_report(&args, url).await?));
    }
    if let (Some(url), None) = (&args.redis, &error) {
        peers.push(("Redis streams", redis_report(&args, url).await?));
    }
    for (name, peer) in peers {
        if json {
            println!("{}", serde_json::to_string(&peer)?);
        } else {
            println!();
            print_report(&peer);
            println!(
                "\nredrive / {name}, end to end: {:.2}x",
                report.jobs_per_s / peer.jobs_per_s.max(1e-9)
            );
        }
    }
    match error {
        Some(e) => Err(e.context("the run stopped early")),
        // A run that timed out still reports, but fails, so scripts notice.
        None if !report.completed => bail!(
            "timed out after {} s with {} of {} jobs acked",
            args.timeout_s,
            report.acked,
            report.jobs
        ),
        None => Ok(()),
    }
}

/// Runs the benchmark; returns the report and the first task error, if any.
async fn bench(
    args: &BenchArgs,
    server: &Server,
) -> anyhow::Result<(Report, Option<anyhow::Error>)> {
    let client = Client::new(&server.url)?.with_timeout(Duration::from_millis(CALL_TIMEOUT_MS));
    let patch = QueuePatch {
        dead_letter_queue: Some(None),
        visibility_timeout_ms: Some(LEASE_MS),
        max_message_bytes: (args.body_bytes > MESSAGE_SIZE_DEFAULT_BYTES)
            .then_some(MESSAGE_SIZE_MAX_BYTES),
        ..QueuePatch::default()
    };
    client.put_queue(&args.queue, &patch).await.context("creating the bench queue")?;
    client.purge(&args.queue).await.context("purging the bench queue")?;

    let start = Instant::now();
    let run = Arc::new(Run {
        client,
        queue: args.queue.clone(),
        jobs: args.jobs,
        start,
        deadline: start + Duration::from_secs(args.timeout_s),
        acked: AtomicU64::new(0),
        stale: AtomicU64::new(0),
        shed: AtomicU64::new(0),
        done_at: OnceLock::new(),
        stop: AtomicBool::new(false),
        ended: Notify::new(),
        timeline: args.timeline.as_ref().map(|_| std::sync::Mutex::new(Vec::new())),
    });
    let ack_batch = args.ack_batch.unwrap_or(args.batch) as usize;
    if args.sdk || args.sqs {
        let (enqueued, enqueue_end, latency) = if args.sdk {
            crate::bench_sdk::run(run.clone(), args).await?
        } else {
            sqs_bench_run(run.clone(), args, &server.url).await?
        };
        let counts = Counts { enqueued, enqueue_end, ack_batch };
        return Ok((report(&run, args, server, start, counts, &latency), None));
    }
    let consumers: Vec<_> = (0..args.consumers)
        .map(|i| {
            let consume = consume(run.clone(), i, args.batch, ack_batch, args.protocol);
            tokio::spawn(guarded(run.clone(), consume))
        })
        .collect();
    let producers: Vec<_> = (0..args.producers)
        .map(|i| tokio::spawn(guarded(run.clone(), produce(run.clone(), i, args.clone()))))
        .collect();

    let hard_stop =
        tokio::time::Instant::from_std(run.deadline) + Duration::from_millis(STOP_GRACE_MS);
    let mut error = None;
    let (mut enqueued, mut enqueue_end) = (0, Duration::ZERO);
    for p in producers {
        match join(p, hard_stop).await {
            Ok((sent, at)) => (enqueued, enqueue_end) = (enqueued + sent, enqueue_end.max(at)),
            Err(e) => error = error.or(Some(e)),
        }
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    for c in consumers {
        match join(c, hard_stop).await {
            Ok(h) => latency.add(h).context("merging latency histograms")?,
            Err(e) => error = error.or(Some(e)),
        }
    }
    let counts = Counts { enqueued, enqueue_end, ack_batch };
    let mut report = report(&run, args, server, start, counts, &latency);
    if let (Some(path), Some(points)) = (&args.timeline, &run.timeline) {
        let points = std::mem::take(&mut *points.lock().expect("timeline lock"));
        report.timeline = Some(write_timeline(path, points)?);
    }
    Ok((report, error))
}

/// Writes the `--timeline` CSV: per 100 ms of receive time, the jobs received and their
/// enqueue→start p50, p99 and max.
fn write_timeline(
    path: &std::path::Path,
    mut points: Vec<(u32, u32)>,
) -> anyhow::Result<TimelineSummary> {
    use std::fmt::Write as _;
    points.sort_unstable();
    let mut csv = String::from("t_s,jobs,p50_ms,p99_ms,max_ms\n");
    let mut summary = TimelineSummary { worst_max_ms: 0.0, worst_at_s: 0.0, stalls: 0 };
    for row in points
        .chunk_by(|a, b| u64::from(a.0) / TIMELINE_STEP_MS == u64::from(b.0) / TIMELINE_STEP_MS)
    {
        let mut waits: Vec<u32> = row.iter().map(|p| p.1).collect();
        waits.sort_unstable();
        let at =
            |q: f64| f64::from(waits[((waits.len() - 1) as f64 * q).round() as usize]) / 1000.0;
        let t_s = (u64::from(row[0].0) / TIMELINE_STEP_MS * TIMELINE_STEP_MS) as f64 / 1000.0;
        let max = at(1.0);
        writeln!(csv, "{t_s:.1},{},{:.3},{:.3},{max:.3}", waits.len(), at(0.5), at(0.99))?;
        if max > summary.worst_max_ms {
            (summary.worst_max_ms, summary.worst_at_s) = (max, t_s);
        }
        summary.stalls += u64::from(max > STALL_MS);
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    Ok(summary)
}

/// The same workload through the bare `SKIP LOCKED` pattern (bench_bare.rs), as a report.
async fn bare_report(args: &BenchArgs, url: &str) -> anyhow::Result<Report> {
    let (p, c, b) = (args.producers, args.consumers, args.batch);
    let r =
        crate::bench_bare::run(url, p, c, args.jobs, b, args.body_bytes, args.bare_notify).await?;
    let server = if args.bare_notify {
        "bare FOR UPDATE SKIP LOCKED table + NOTIFY per enqueue, same database"
    } else {
        "bare FOR UPDATE SKIP LOCKED table, same database"
    };
    Ok(peer_report(args, server, "redrive_bench_bare", &r))
}

/// The same workload through Redis streams (bench_redis.rs), as a report.
async fn redis_report(args: &BenchArgs, url: &str) -> anyhow::Result<Report> {
    let (p, c, b) = (args.producers, args.consumers, args.batch);
    let r = crate::bench_redis::run(url, p, c, args.jobs, b, args.body_bytes).await?;
    let server = format!("Redis streams at {url}");
    Ok(peer_report(args, &server, "redrive-bench", &r))
}

/// What a peer's run (bench_bare.rs, bench_redis.rs) measured.
pub(crate) struct PeerRun {
    pub elapsed_s: f64,
    pub acked: u64,
    pub latency: Histogram<u64>,
}

/// Producer `i`'s share of `jobs` split among `producers`.
pub(crate) fn share(jobs: u64, producers: u32, i: u32) -> u64 {
    jobs / u64::from(producers) + u64::from(u64::from(i) < jobs % u64::from(producers))
}

/// Waits for a peer's tasks, producers answering `None` and consumers their latencies, and
/// sums up the run that began at `start`.
pub(crate) async fn join_peer(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Option<Histogram<u64>>>>>,
    start: Instant,
    acked: &AtomicU64,
) -> anyhow::Result<PeerRun> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    for t in tasks {
        if let Some(h) = t.await.context("a peer bench task panicked")?? {
            latency.add(h).context("merging latency histograms")?;
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(PeerRun { elapsed_s, acked: acked.load(Ordering::Relaxed), latency })
}

/// A peer's run as a report of the same shape as redrive's.
fn peer_report(args: &BenchArgs, server: &str, queue: &str, run: &PeerRun) -> Report {
    let (p, c, b) = (args.producers, args.consumers, args.batch);
    let PeerRun { elapsed_s, acked, ref latency } = *run;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let secs = elapsed_s.max(1e-9);
    Report {
        server: server.into(),
        queue: queue.into(),
        producers: p,
        consumers: c,
        batch: b,
        ack_batch: b,
        protocol: args.protocol,
        groups: 0,
        body_bytes: args.body_bytes,
        rate: 0,
        jobs: args.jobs,
        enqueued: args.jobs,
        acked,
        completed: acked >= args.jobs,
        elapsed_s: secs,
        jobs_per_s: acked as f64 / secs,
        jobs_per_min: acked as f64 * 60.0 / secs,
        enqueue_elapsed_s: 0.0,
        enqueue_jobs_per_s: 0.0,
        latency_p50_ms: ms(0.5),
        latency_p99_ms: ms(0.99),
        latency_p999_ms: ms(0.999),
        latency_max_ms: latency.max() as f64 / 1000.0,
        shed_retries: 0,
        stale_acks: 0,
        timeline: None,
    }
}

/// What the producers did, for the report.
struct Counts {
    enqueued: u64,
    enqueue_end: Duration,
    ack_batch: usize,
}

fn report(
    run: &Run,
    args: &BenchArgs,
    server: &Server,
    start: Instant,
    counts: Counts,
    latency: &Histogram<u64>,
) -> Report {
    let Counts { enqueued, enqueue_end, ack_batch } = counts;
    let elapsed = run.done_at.get().copied().unwrap_or_else(|| start.elapsed());
    let acked = run.acked.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let enqueue_secs = enqueue_end.as_secs_f64().max(1e-9);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Report {
        server: server.describe(),
        queue: args.queue.clone(),
        producers: args.producers,
        consumers: args.consumers,
        batch: args.batch,
        ack_batch: ack_batch as u32,
        protocol: args.protocol,
        groups: args.groups,
        body_bytes: args.body_bytes,
        rate: args.rate,
        jobs: args.jobs,
        enqueued,
        acked,
        completed: acked >= args.jobs,
        elapsed_s: secs,
        jobs_per_s: acked as f64 / secs,
        jobs_per_min: acked as f64 * 60.0 / secs,
        enqueue_elapsed_s: enqueue_secs,
        enqueue_jobs_per_s: enqueued as f64 / enqueue_secs,
        latency_p50_ms: ms(0.5),
        latency_p99_ms: ms(0.99),
        latency_p999_ms: ms(0.999),
        latency_max_ms: latency.max() as f64 / 1000.0,
        shed_retries: run.shed.load(Ordering::Relaxed),
        stale_acks: run.stale.load(Ordering::Relaxed),
        timeline: None,
    }
}

/// Runs a task; on error, tells the others to stop.
async fn guarded<T>(
    run: Arc<Run>,
    task: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = task.await;
    if result.is_err() {
        run.stop.store(true, Ordering::Relaxed);
        run.ended.notify_waiters();
    }
    result
}

/// Waits for a task until `hard_stop`, then abandons it.
async fn join<T>(
    task: tokio::task::JoinHandle<anyhow::Result<T>>,
    hard_stop: tokio::time::Instant,
) -> anyhow::Result<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout_at(hard_stop, task).await {
        Ok(joined) => joined.context("a bench task panicked")?,
        Err(_) => {
            abort.abort();
            bail!("a bench task did not stop within {STOP_GRACE_MS} ms of the timeout")
        }
    }
}

/// Enqueues this producer's share of the jobs in batches; returns how many it enqueued and when
/// it finished, measured from the start.
async fn produce(run: Arc<Run>, index: u32, args: BenchArgs) -> anyhow::Result<(u64, Duration)> {
    let producers = u64::from(args.producers);
    let share = run.jobs / producers + u64::from(u64::from(index) < run.jobs % producers);
    let body = "x".repeat(args.body_bytes as usize);
    let job = NewJob {
        body,
        attributes: [("t".to_owned(), String::with_capacity(20))].into(),
        ..NewJob::default()
    };
    let mut batch = vec![job; (args.batch as u64).min(share) as usize];
    // With a rate, every producer sends one batch per period, at fixed times from the start: a
    // late batch is sent at once, so the average rate holds. The producers' times are spread
    // evenly over the period (a steady rate, not every producer's batch in one burst).
    let period = (args.rate > 0)
        .then(|| Duration::from_secs_f64(batch.len() as f64 * producers as f64 / args.rate as f64));
    let phase = period.map(|p| p.mul_f64(f64::from(index) / producers as f64));
    let (mut sent, mut sends) = (0u64, 0u32);
    while sent < share && !run.over() {
        if let (Some(period), Some(phase)) = (period, phase) {
            tokio::time::sleep_until((run.start + phase + period * sends).into()).await;
        }
        batch.truncate((share - sent).min(batch.len() as u64) as usize);
        let t = now_us().to_string();
        for (i, job) in batch.iter_mut().enumerate() {
            if let Some(v) = job.attributes.get_mut("t") {
                v.clone_from(&t);
            }
            if args.groups > 0 {
                let k = (sent + i as u64) * producers + u64::from(index);
                job.group = Some(format!("g{}", k % args.groups));
            }
        }
        match run.client.enqueue(&run.queue, &batch).await {
            Ok(done) => sent += done.len() as u64,
            Err(Error::Unavailable { .. }) => {
                run.shed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(SHED_PAUSE_MS)).await;
                continue;
            }
            Err(e) => return Err(e).context("enqueue"),
        }
        sends += 1;
    }
    Ok((sent, run.start.elapsed()))
}

/// Receives and acks until every job is acked or the run is over; returns its latencies.
/// With `Protocol::Combined` the receipts of one receive are acked by the next, which does not
/// wait (its acks are counted when it answers); when it brings nothing, the next long-polls.
async fn consume(
    run: Arc<Run>,
    index: u32,
    max: u32,
    ack_batch: usize,
    protocol: Protocol,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    let opts = ReceiveOptions {
        max: Some(max),
        wait_ms: Some(RECEIVE_WAIT_MS),
        lease_ms: Some(LEASE_MS),
        worker_id: Some(format!("bench-{index}")),
    };
    let hurry = ReceiveOptions { wait_ms: Some(0), ..opts.clone() };
    let mut receipts = Vec::with_capacity(ack_batch + max as usize);
    while !run.over() {
        let call = async {
            match protocol {
                Protocol::Requests => run.client.receive(&run.queue, &opts).await,
                Protocol::Combined if receipts.is_empty() => {
                    run.client.receive(&run.queue, &opts).await
                }
                Protocol::Combined => {
                    let (results, jobs) =
                        run.client.ack_receive(&run.queue, &receipts, &hurry).await?;
                    count_acks(&run, &results);
                    receipts.clear();
                    Ok(jobs)
                }
            }
        };
        let reply = tokio::select! {
            reply = call => reply,
            () = run.ended.notified() => break,
        };
        let jobs = match reply {
            Ok(jobs) => jobs,
            Err(Error::Unavailable { .. }) => {
                run.shed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(SHED_PAUSE_MS)).await;
                continue;
            }
            Err(e) => return Err(e).context("receive"),
        };
        let now = now_us();
        let received = jobs.len();
        let at_ms = run.start.elapsed().as_millis() as u32;
        let mut points = Vec::new();
        for job in jobs {
            if let Some(t) = job.attributes.get("t").and_then(|t| t.parse::<u64>().ok()) {
                let wait = now.saturating_sub(t).clamp(1, LATENCY_MAX_US);
                latency.saturating_record(wait);
                if run.timeline.is_some() {
                    points.push((at_ms, wait.min(u64::from(u32::MAX)) as u32));
                }
            }
            receipts.push(job.receipt);
        }
        if let Some(timeline) = &run.timeline {
            timeline.lock().expect("timeline lock").extend(points);
        }
        // Ack when the batch is full, and at once when the queue ran dry (the tail of the run).
        let short = received < max as usize;
        if protocol == Protocol::Requests && (receipts.len() >= ack_batch || short) {
            ack(&run, &mut receipts).await?;
        }
    }
    ack(&run, &mut receipts).await?;
    Ok(latency)
}

async fn ack(run: &Run, receipts: &mut Vec<String>) -> anyhow::Result<()> {
    for chunk in receipts.chunks(ACK_BATCH_COUNT_MAX) {
        count_acks(run, &run.client.ack(chunk).await.context("ack")?);
    }
    receipts.clear();
    Ok(())
}

fn count_acks(run: &Run, results: &[redrive_client::AckResult]) {
    let ok = results.iter().filter(|r| **r == redrive_client::AckResult::Ok).count() as u64;
    run.stale.fetch_add(results.len() as u64 - ok, Ordering::Relaxed);
    let acked = run.acked.fetch_add(ok, Ordering::Relaxed) + ok;
    if acked >= run.jobs && run.done_at.set(run.start.elapsed()).is_ok() {
        run.ended.notify_waiters();
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn print_report(r: &Report) {
    let mut f = Fields::new();
    f.add("server", r.server.clone())
        .add(
            "workload",
            format!(
                "{} producers, {} consumers, batch {}, {}, body {} B, rate {}",
                r.producers,
                r.consumers,
                r.batch,
                match r.protocol {
                    Protocol::Requests => format!("ack batch {}", r.ack_batch),
                    Protocol::Combined => "acks on the next receive".to_owned(),
                },
                r.body_bytes,
                if r.rate == 0 { "unthrottled".to_owned() } else { format!("{}/s", r.rate) },
            ),
        )
        .add(
            "jobs",
            format!(
                "{} acked of {} ({} enqueued){}",
                r.acked,
                r.jobs,
                r.enqueued,
                if r.completed { "" } else { ", TIMED OUT OR STOPPED" }
            ),
        )
        .add("elapsed", format!("{:.2} s", r.elapsed_s))
        .add("end to end", format!("{:.0} jobs/s, {:.0} jobs/min", r.jobs_per_s, r.jobs_per_min))
        .add(
            "enqueue only",
            if r.enqueue_elapsed_s > 0.0 {
                format!("{:.0} jobs/s over {:.2} s", r.enqueue_jobs_per_s, r.enqueue_elapsed_s)
            } else {
                "not measured".to_owned()
            },
        )
        .add("enqueue→start p50", format!("{:.3} ms", r.latency_p50_ms))
        .add("enqueue→start p99", format!("{:.3} ms", r.latency_p99_ms))
        .add("enqueue→start p999", format!("{:.3} ms", r.latency_p999_ms))
        .add("enqueue→start max", format!("{:.3} ms", r.latency_max_ms))
        .add("shed and retried", r.shed_retries.to_string())
        .add("stale acks", r.stale_acks.to_string());
    if let Some(t) = r.timeline {
        f.add(
            "timeline",
            format!(
                "worst 100 ms: max {:.3} ms at {:.1} s; {} of them over {STALL_MS} ms",
                t.worst_max_ms, t.worst_at_s, t.stalls
            ),
        );
    }
    f.print();
}

/// The server under test: given, or a child process on a free port with a temporary data
/// directory (both removed by [`Server::stop`], or on drop if the run fails early).
struct Server {
    url: String,
    spawned: Option<(tokio::process::Child, tempfile::TempDir)>,
}

impl Server {
    fn external(url: String) -> Server {
        Server { url, spawned: None }
    }

    /// Starts `<this binary> serve` on a free port with a fresh data directory, and waits for
    /// its one stdout line `redrive listening on <url>`.
    async fn spawn(store: Option<&str>) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir().context("creating a data directory")?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).context("creating a data directory")?;
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).context("creating the server log")?;
        let exe = std::env::current_exe().context("finding the redrive binary")?;
        let mut child = tokio::process::Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(store.map(|s| ["--store", s]).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting `redrive serve`")?;
        let stdout = child.stdout.take().context("no stdout from `redrive serve`")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait = Duration::from_millis(SERVER_START_TIMEOUT_MS);
        let url = tokio::time::timeout(wait, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("redrive listening on ") {
                    return Ok(Some(url.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let url = match url {
            Ok(Ok(Some(url))) => url,
            outcome => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let why = match outcome {
                    Err(_) => format!("it did not listen within {SERVER_START_TIMEOUT_MS} ms"),
                    _ => "it exited before listening".to_owned(),
                };
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last = log.lines().rev().map(str::trim).find(|l| !l.is_empty());
                bail!(
                    "starting `redrive serve`: {why} (its last log line: {})",
                    last.unwrap_or("none")
                );
            }
        };
        // Keep reading stdout so the server never blocks or fails on a full or closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { url, spawned: Some((child, dir)) })
    }

    fn describe(&self) -> String {
        match self.spawned {
            None => self.url.clone(),
            Some(_) => format!("{} (started by bench)", self.url),
        }
    }

    async fn stop(self) {
        if let Some((mut child, dir)) = self.spawned {
            let _ = child.start_kill();
            let _ = child.wait().await;
            drop(dir);
        }
    }
}

/// `--sqs` needs the SDK, built only with the `sqs-bench` feature.
#[cfg(not(feature = "sqs-bench"))]
const NO_SQS_SDK: &str = "--sqs drives the server with the AWS SDK, which this binary was built \
                          without: cargo run --release --features sqs-bench -- bench --sqs …";

#[cfg(feature = "sqs-bench")]
fn sqs_bench_check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.batch > crate::bench_sqs::SQS_BATCH_MAX {
        bail!("--sqs takes --batch 1 to {}", crate::bench_sqs::SQS_BATCH_MAX);
    }
    Ok(())
}

#[cfg(not(feature = "sqs-bench"))]
fn sqs_bench_check(_: &BenchArgs) -> anyhow::Result<()> {
    bail!(NO_SQS_SDK)
}

#[cfg(feature = "sqs-bench")]
async fn sqs_bench_run(
    run: Arc<Run>,
    args: &BenchArgs,
    url: &str,
) -> anyhow::Result<(u64, Duration, Histogram<u64>)> {
    crate::bench_sqs::run(run, args, url).await
}

#[cfg(not(feature = "sqs-bench"))]
async fn sqs_bench_run(
    _: Arc<Run>,
    _: &BenchArgs,
    _: &str,
) -> anyhow::Result<(u64, Duration, Histogram<u64>)> {
    bail!(NO_SQS_SDK)
}
