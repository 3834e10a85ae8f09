//! The worker runtime: long-poll fetching with a small prefetch buffer (leases held never exceed
//! concurrency + prefetch; a worker that holds more than one receive returns keeps up to four
//! receives in flight), a task and a heartbeat per running job, results turned into acks or
//! fails, panics caught and reported, and a graceful stop that releases what it could not finish.
//! A finished job's ack rides on the next receive (one request acks it and leases the next jobs
//! into its slot); acks no receive takes within a few milliseconds (every fetch is waiting in a
//! long poll) go out in batches of their own, two requests in flight.
//!
//! ```no_run
//! # async fn demo(client: redrive_client::Client) {
//! use redrive_client::worker::{JobError, Worker};
//! let stats = Worker::builder(client)
//!     .queues(["emails"])
//!     .concurrency(8)
//!     .handler(|job| async move {
//!         if job.body.is_empty() {
//!             return Err(JobError::non_retryable("EmptyBody", "nothing to send"));
//!         }
//!         Ok(())
//!     })
//!     .run(async { tokio::signal::ctrl_c().await.ok(); })
//!     .await;
//! # }
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Link, Span as _, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::KeyValue;
use redrive_core::broker::{Delivery, FailRequest};
use redrive_core::model::ErrorInfo;
use redrive_core::{JobId, Priority};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{Client, Error, ReceiveOptions};

/// Receipts acked in one request at most, and how long a receipt waits for a receive to carry
/// it (and for companions) before it is sent alone.
const ACK_BATCH_MAX: usize = redrive_core::limits::ACK_BATCH_COUNT_MAX;
const ACK_LINGER_MS: u64 = 5;
/// Long-poll wait of one fetch; a stop waits for the fetch in flight, so this bounds it too.
const FETCH_WAIT_MS: u64 = 2_000;
/// Pause after a failed fetch before the next.
const FETCH_RETRY_MS: u64 = 500;
/// Most jobs one receive returns.
const RECEIVE_MAX: usize = redrive_core::limits::RECEIVE_BATCH_COUNT_MAX as usize;
/// Most receives in flight at once.
const FETCHERS_MAX: usize = 4;
/// A worker runs one fetcher per this many leases it can hold, up to `FETCHERS_MAX`.
const FETCH_SHARE: usize = 16;
/// Most ack requests in flight at once.
const ACKS_IN_FLIGHT: usize = 2;

/// A leased job as a handler sees it.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub id: JobId,
    pub queue: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub priority: Priority,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub traceparent: Option<String>,
}

/// Why a handler did not complete its job.
#[derive(Clone, Debug)]
pub struct JobError {
    error: ErrorInfo,
    non_retryable: bool,
    retry_after: Option<Duration>,
}

impl JobError {
    /// A retryable failure (the queue's backoff decides when).
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError {
            error: ErrorInfo { kind: kind.into(), message: message.into(), detail: None },
            non_retryable: false,
            retry_after: None,
        }
    }

    /// A failure that retrying cannot fix: the job goes straight to the dead-letter queue.
    pub fn non_retryable(kind: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError { non_retryable: true, ..JobError::new(kind, message) }
    }

    /// Retry after `delay` instead of the queue's backoff.
    pub fn retry_after(mut self, delay: Duration) -> JobError {
        self.retry_after = Some(delay);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> JobError {
        self.error.detail = Some(detail.into());
        self
    }

    /// The failure as reported: error type, message and detail.
    pub fn info(&self) -> &ErrorInfo {
        &self.error
    }
}

/// Any error converts: its type name becomes the error type, its message the message, and its
/// `source()` chain the detail.
impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> JobError {
        let kind = std::any::type_name::<E>().rsplit("::").next().unwrap_or("Error").to_owned();
        let mut chain = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        let err = JobError::new(kind, e.to_string());
        if chain.is_empty() {
            err
        } else {
            err.with_detail(format!("caused by: {}", chain.join("\ncaused by: ")))
        }
    }
}

/// What a worker did, for metrics and tests. Counters only grow, except `succeeded`: a success
/// whose ack the server refused (the lease had ended) is taken back from it and counted in
/// `lost_leases` instead.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    /// Successes whose ack the server confirmed (the job is complete and durable).
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub panicked: AtomicU64,
    pub extended: AtomicU64,
    /// Jobs whose lease ended while the handler ran: their results were dropped, not acked.
    pub lost_leases: AtomicU64,
    /// Jobs handed back (visibility 0) at shutdown.
    pub released: AtomicU64,
    /// Jobs whose lease ran out while they waited in the prefetch buffer: not run (the server
    /// delivers them again).
    pub expired_in_buffer: AtomicU64,
    /// Total handler time in microseconds.
    pub handler_us: AtomicU64,
    pub handler_duration: DurationHistogram,
}

impl WorkerStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the handler-duration buckets, in ms (the last bucket is unbounded).
pub const HANDLER_BUCKETS_MS: [u64; 10] = [1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 60_000];

/// Handler durations counted in the fixed buckets of [`HANDLER_BUCKETS_MS`], ready to export as
/// a Prometheus histogram.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    counts: [AtomicU64; HANDLER_BUCKETS_MS.len() + 1],
}

impl DurationHistogram {
    pub fn observe(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        let i =
            HANDLER_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(HANDLER_BUCKETS_MS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(upper bound in ms or None for +Inf, count in this bucket)`, not cumulative.
    pub fn buckets(&self) -> Vec<(Option<u64>, u64)> {
        let bounds = HANDLER_BUCKETS_MS.iter().map(|b| Some(*b)).chain([None]);
        bounds.zip(&self.counts).map(|(b, c)| (b, c.load(Ordering::Relaxed))).collect()
    }
}

pub struct Worker;

impl Worker {
    pub fn builder(client: Client) -> WorkerBuilder {
        WorkerBuilder {
            client,
            queues: Vec::new(),
            concurrency: 1,
            prefetch: None,
            lease: Duration::from_secs(30),
            heartbeats: true,
            shutdown_timeout: Duration::from_secs(10),
            worker_id: format!("worker-{}", std::process::id()),
            stats: Arc::new(WorkerStats::default()),
            trace_attempts: TraceAttempts::Links,
        }
    }
}

pub struct WorkerBuilder {
    client: Client,
    queues: Vec<String>,
    concurrency: usize,
    prefetch: Option<usize>,
    lease: Duration,
    heartbeats: bool,
    shutdown_timeout: Duration,
    worker_id: String,
    stats: Arc<WorkerStats>,
    trace_attempts: TraceAttempts,
}

impl WorkerBuilder {
    /// Queues to serve, in order of preference.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Jobs run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Jobs fetched ahead of free slots, so a slot that frees starts its next job without a
    /// round trip [default: a quarter of the concurrency, at least 1]. Their leases run while
    /// they wait; one whose lease ran out before it started is skipped, not run.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = Some(n);
        self
    }

    /// Lease of each job; heartbeats renew it every third of it while the handler runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Turns heartbeats off (for tests of what happens without them).
    pub fn heartbeats(mut self, on: bool) -> Self {
        self.heartbeats = on;
        self
    }

    /// How long running jobs get to finish after the stop signal before they are released.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }

    /// Shares counters the caller can read while the worker runs.
    pub fn stats(mut self, stats: Arc<WorkerStats>) -> Self {
        self.stats = stats;
        self
    }

    /// How each attempt's `process` span relates to the job's creation context: linked to
    /// it (the default), or its child for one waterfall per job.
    pub fn trace_attempts(mut self, mode: TraceAttempts) -> Self {
        self.trace_attempts = mode;
        self
    }

    pub fn handler<F, Fut>(self, handler: F) -> Runner<F>
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        Runner { b: self, handler: Arc::new(handler) }
    }
}

/// A configured worker, ready to run.
pub struct Runner<F> {
    b: WorkerBuilder,
    handler: Arc<F>,
}

struct Shared {
    client: Client,
    lease_ms: u64,
    heartbeats: bool,
    stats: Arc<WorkerStats>,
    acks: Arc<Acks>,
    /// Cancelled when the shutdown deadline passes: jobs still running are dropped and released.
    overdue: CancellationToken,
    trace_attempts: TraceAttempts,
}

impl<F, Fut> Runner<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    /// Runs until `shutdown` resolves, then stops fetching, lets running jobs finish within the
    /// shutdown timeout, releases the rest so another worker takes them at once, flushes acks,
    /// and returns the counters.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Arc<WorkerStats> {
        let b = self.b;
        let acks = Arc::new(Acks::default());
        let acker = tokio::spawn(ack_loop(b.client.clone(), acks.clone(), b.stats.clone()));
        let shared = Arc::new(Shared {
            client: b.client.clone(),
            lease_ms: b.lease.as_millis() as u64,
            heartbeats: b.heartbeats,
            stats: b.stats.clone(),
            acks: acks.clone(),
            overdue: CancellationToken::new(),
            trace_attempts: b.trace_attempts,
        });
        let prefetch = b.prefetch.unwrap_or((b.concurrency / 4).max(1));
        // Leases held (running or buffered), and jobs running.
        let holdable = b.concurrency + prefetch;
        let slots = Arc::new(Semaphore::new(holdable));
        let runners = Arc::new(Semaphore::new(b.concurrency));
        let opts = ReceiveOptions {
            max: None,
            wait_ms: Some(FETCH_WAIT_MS),
            lease_ms: Some(shared.lease_ms),
            worker_id: Some(b.worker_id.clone()),
        };
        // Several receives in flight, each taking its share of the leases, so that their round
        // trips overlap: one fetcher taking every free slot left the server idle while its
        // request was out (a third of the machine at 400 concurrent jobs).
        let fetchers = holdable.div_ceil(FETCH_SHARE).clamp(1, FETCHERS_MAX);
        let share = holdable.div_ceil(fetchers).min(RECEIVE_MAX);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (fetched_tx, mut fetched_rx) = mpsc::channel(fetchers);
        for _ in 0..fetchers {
            let fetch = Fetcher {
                share,
                client: b.client.clone(),
                queues: b.queues.clone(),
                opts: opts.clone(),
                slots: slots.clone(),
                acks: acks.clone(),
                stats: b.stats.clone(),
                stop: stop_rx.clone(),
                out: fetched_tx.clone(),
            };
            tokio::spawn(fetch.run());
        }
        drop(fetched_tx);
        let jobs = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            let fetched = tokio::select! {
                () = &mut shutdown, if !*stop_tx.borrow() => {
                    // Buffered jobs will not start now; fetches in flight finish (they may
                    // lease jobs even now) and their jobs are handed back.
                    runners.close();
                    let _ = stop_tx.send(true);
                    continue;
                }
                f = fetched_rx.recv() => f,
            };
            // Every fetcher has stopped.
            let Some(Fetched { jobs: fetched, mut leases, at }) = fetched else { break };
            for d in fetched {
                let lease = leases.split(1).expect("a fetch takes at most its leases");
                let job =
                    run_job(shared.clone(), self.handler.clone(), runners.clone(), d, at, lease);
                jobs.spawn(job);
            }
        }
        jobs.close();
        if tokio::time::timeout(b.shutdown_timeout, jobs.wait()).await.is_err() {
            shared.overdue.cancel();
            jobs.wait().await;
        }
        let stats = shared.stats.clone();
        drop(shared);
        acks.close();
        let _ = acker.await;
        stats
    }
}

/// Jobs one fetch leased, with their leases counted in `leases`, and when they were leased.
struct Fetched {
    jobs: Vec<Delivery>,
    leases: OwnedSemaphorePermit,
    at: Instant,
}

/// One long-poll loop: takes free lease slots, or the slots of finished jobs waiting to be
/// acked (acking them in the same request), receives at most that many jobs, and hands them to
/// the dispatcher, until the stop.
struct Fetcher {
    /// Most leases one receive takes.
    share: usize,
    client: Client,
    queues: Vec<String>,
    opts: ReceiveOptions,
    slots: Arc<Semaphore>,
    acks: Arc<Acks>,
    stats: Arc<WorkerStats>,
    stop: watch::Receiver<bool>,
    out: mpsc::Sender<Fetched>,
}

impl Fetcher {
    async fn run(mut self) {
        loop {
            // Never hold more leases than concurrency + prefetch: wait for a free one first, or
            // for a finished job whose slot comes with its ack.
            let free = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => return,
                p = self.slots.clone().acquire_owned() => Some(p.expect("semaphore open")),
                () = self.acks.wait() => None,
            };
            let (receipts, acked) = self.acks.take(self.share - usize::from(free.is_some()));
            let mut leases = match (free, acked) {
                (Some(mut p), Some(a)) => {
                    p.merge(a);
                    p
                }
                (Some(p), None) | (None, Some(p)) => p,
                // The ack loop took them first.
                (None, None) => continue,
            };
            let more = self.slots.available_permits().min(self.share - leases.num_permits());
            if let Ok(p) = self.slots.clone().try_acquire_many_owned(more as u32) {
                leases.merge(p);
            }
            let opts =
                ReceiveOptions { max: Some(leases.num_permits() as u32), ..self.opts.clone() };
            // Not cancelled by a stop: the jobs it leases are handed back by the dispatcher
            // (dropping it could leave them leased to no one).
            let fetched = if receipts.is_empty() {
                self.client.receive_any(&self.queues, &opts).await
            } else {
                // Without waiting, so that the acks' results (and the worker's counts) come back
                // at once; if nothing is ready, the next fetch long-polls without acks.
                let opts = ReceiveOptions { wait_ms: Some(0), ..opts };
                let r = self.client.ack_receive_any(&self.queues, &receipts, &opts).await;
                match r {
                    Ok((results, jobs)) => {
                        count_acks(&self.stats, &results);
                        Ok(jobs)
                    }
                    Err(e) => {
                        // Acked again by the ack loop (which retries): a request that did
                        // reach the store answers those `stale`, which is counted as a lost
                        // lease, never as a second completion.
                        let slots = leases.split(receipts.len()).expect("a slot per receipt");
                        self.acks.push(receipts, slots);
                        Err(e)
                    }
                }
            };
            match fetched {
                Ok(jobs) if jobs.is_empty() => {}
                Ok(jobs) => {
                    let at = Instant::now();
                    if self.out.send(Fetched { jobs, leases, at }).await.is_err() {
                        return;
                    }
                }
                Err(_) if *self.stop.borrow() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "fetch failed; retrying");
                    drop(leases);
                    let pause = tokio::time::sleep(Duration::from_millis(FETCH_RETRY_MS));
                    tokio::select! {
                        _ = self.stop.wait_for(|stop| *stop) => return,
                        () = pause => {}
                    }
                }
            }
            if *self.stop.borrow() {
                return;
            }
        }
    }
}

/// Hands a job back with visibility 0, so another worker can take it at once.
async fn release(shared: &Shared, receipt: &str) {
    if shared.client.extend(receipt, 0).await.is_ok() {
        shared.stats.released.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits for a runner, runs one job with its heartbeat, then acks or fails it (unless the lease
/// was lost). `fetched_at` is when its lease began: time in the prefetch buffer counts against
/// it. `lease` is the worker's count of held leases: it goes with the receipt to the ack
/// batcher, and is given back once the server has the ack, so leases held never exceed the
/// limit.
///
/// Not an `async fn`: one state machine rather than two nested, as every job's task holds it.
fn run_job<F, Fut>(
    shared: Arc<Shared>,
    handler: Arc<F>,
    runners: Arc<Semaphore>,
    d: Delivery,
    fetched_at: Instant,
    lease: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    let span = tracing::info_span!(
        "job",
        id = %d.id,
        queue = %d.queue,
        attempt = d.attempt,
        traceparent = d.traceparent.as_deref().unwrap_or(""),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    async move {
        let Ok(_running) = runners.acquire_owned().await else {
            // Stopping: hand back a job that never started.
            return Box::pin(release(&shared, &d.receipt)).await;
        };
        // One clock read for both the time in the buffer and the handler's start.
        let started = Instant::now();
        let waited = started.duration_since(fetched_at).as_millis() as u64;
        if waited >= shared.lease_ms {
            shared.stats.expired_in_buffer.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(waited_ms = waited, "lease ran out in the prefetch buffer; not run");
            return;
        }
        shared.stats.started.fetch_add(1, Ordering::Relaxed);
        let Delivery {
            id, queue, body, attributes, priority, attempt, traceparent, receipt, ..
        } = d;
        let otel =
            process_context(&queue, id, attempt, traceparent.as_deref(), shared.trace_attempts);
        // The handler's log lines name the process span, as its trace does.
        let sc = otel.span().span_context().clone();
        if sc.is_valid() {
            let current = tracing::Span::current();
            current.record("trace_id", tracing::field::display(sc.trace_id()));
            current.record("span_id", tracing::field::display(sc.span_id()));
        }
        let ctx = JobContext { id, queue, body, attributes, priority, attempt, traceparent };
        // The handler runs inside the process span: its own spans are children of it.
        let mut task = std::pin::pin!(opentelemetry::context::FutureExt::with_context(
            handler(ctx),
            otel.clone()
        ));
        // A panic in the handler becomes an `Err` with its payload.
        let mut poll_task =
            |cx: &mut Context<'_>| match std::panic::catch_unwind(AssertUnwindSafe(|| {
                task.as_mut().poll(cx)
            })) {
                Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(payload) => Poll::Ready(Err(payload)),
            };
        // A handler that finishes on its first poll needs no heartbeat timer at all.
        let first = std::future::poll_fn(|cx| Poll::Ready(poll_task(cx))).await;
        let outcome = match first {
            Poll::Ready(out) => out,
            // Boxed: the slow path would otherwise make every job's future several times larger.
            Poll::Pending => {
                let task = std::future::poll_fn(&mut poll_task);
                match Box::pin(supervise(&shared, &receipt, waited, task)).await {
                    Some(out) => out,
                    None => return,
                }
            }
        };
        let took = started.elapsed();
        shared.stats.handler_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        shared.stats.handler_duration.observe(took);
        let failure = match outcome {
            Ok(Ok(())) => {
                otel.span().end();
                shared.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                shared.acks.push(vec![receipt], lease);
                return;
            }
            Ok(Err(e)) => e,
            Err(payload) => {
                shared.stats.panicked.fetch_add(1, Ordering::Relaxed);
                JobError::new("panic", panic_message(payload))
            }
        };
        shared.stats.failed.fetch_add(1, Ordering::Relaxed);
        let span = otel.span();
        span.set_attribute(KeyValue::new("error.type", failure.error.kind.clone()));
        span.set_status(Status::error(format!(
            "{}: {}",
            failure.error.kind, failure.error.message
        )));
        span.end();
        let req = FailRequest {
            receipt,
            error: failure.error,
            retry_after_ms: failure.retry_after.map(|d| d.as_millis() as u64),
            non_retryable: failure.non_retryable,
        };
        match Box::pin(shared.client.fail(&req)).await {
            Ok(_) => {}
            Err(Error::StaleReceipt) => {
                shared.stats.lost_leases.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "reporting the failure failed"),
        }
    }
    .instrument(span)
}

/// How a worker's `process` spans relate to each job's creation context (its `traceparent`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceAttempts {
    /// Linked: retries and redrives can be days apart, each attempt a trace of its own.
    #[default]
    Links,
    /// Children of the creation context: one waterfall per job.
    Children,
}

/// The OpenTelemetry context a handler runs in: a CONSUMER `process <queue>` span, on the
/// application's global tracer provider (spans are dropped unrecorded when it has none), with
/// the messaging attributes, the job id and the attempt. What a sampler may decide on goes in
/// at the start; the rest only into a span that records (without a provider, building them
/// was a tenth of a worker's instructions).
fn process_context(
    queue: &str,
    id: JobId,
    attempt: u32,
    traceparent: Option<&str>,
    mode: TraceAttempts,
) -> opentelemetry::Context {
    let creation = traceparent.and_then(crate::trace::creation_context);
    let (parent, links) = match (mode, creation) {
        (TraceAttempts::Children, Some(c)) => (Some(c), Vec::new()),
        (_, c) => (None, c.into_iter().map(Link::with_context).collect()),
    };
    let parent = parent.map_or_else(opentelemetry::Context::new, |p| {
        opentelemetry::Context::new().with_remote_span_context(p)
    });
    let tracer = opentelemetry::global::tracer("redrive-worker");
    let mut name = String::with_capacity("process ".len() + queue.len());
    name.push_str("process ");
    name.push_str(queue);
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Consumer)
        .with_links(links)
        .with_attributes([
            KeyValue::new("messaging.system", "redrive"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", queue.to_owned()),
        ])
        .start_with_context(&tracer, &parent);
    if span.is_recording() {
        span.set_attributes([
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.message.id", id.to_string()),
            KeyValue::new("redrive.job.attempt", i64::from(attempt)),
        ]);
    }
    parent.with_span(span)
}

/// Waits for a handler that did not finish on its first poll, renewing its lease meanwhile.
/// `None`: the lease was lost (the handler was let finish) or the shutdown deadline passed (the
/// job was released); either way the result must not be reported.
async fn supervise<T>(
    shared: &Shared,
    receipt: &str,
    waited: u64,
    task: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(task);
    // Returns only if the lease is lost.
    let beats = async {
        if !shared.heartbeats {
            return std::future::pending().await;
        }
        let due = (shared.lease_ms / 3).saturating_sub(waited).max(1);
        tokio::time::sleep(Duration::from_millis(due)).await;
        heartbeat(shared, receipt).await;
    };
    tokio::select! {
        out = &mut task => Some(out),
        () = beats => {
            // Another worker may run the job now: let the handler finish, and drop its result.
            let _ = task.await;
            shared.stats.lost_leases.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("lease lost while the handler ran; its result is dropped");
            None
        }
        () = shared.overdue.cancelled() => {
            tracing::warn!("still running at the shutdown deadline; released");
            release(shared, receipt).await;
            None
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "the handler panicked".into()
    }
}

/// Renews the lease every third of it; returns once a renewal is refused (the lease is lost).
async fn heartbeat(shared: &Shared, receipt: &str) {
    let every = Duration::from_millis((shared.lease_ms / 3).max(1));
    loop {
        match shared.client.extend(receipt, shared.lease_ms).await {
            Ok(_) => {
                shared.stats.extended.fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::StaleReceipt | Error::NotFound { .. }) => return,
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; will retry"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Receipts of finished jobs waiting to be acked, with their lease slots (one each): a fetcher
/// about to receive takes them along, and the ack loop sends what no fetcher took in time.
#[derive(Default)]
struct Acks {
    pending: std::sync::Mutex<Pending>,
    added: Notify,
}

#[derive(Default)]
struct Pending {
    receipts: Vec<String>,
    leases: Option<OwnedSemaphorePermit>,
    /// No more will come: the worker is stopping and every job is done.
    closed: bool,
}

impl Acks {
    /// Receipts to ack, with their slots (one each).
    fn push(&self, receipts: Vec<String>, lease: OwnedSemaphorePermit) {
        debug_assert_eq!(receipts.len(), lease.num_permits(), "one slot per ack");
        let mut p = self.pending.lock().expect("acks lock");
        p.receipts.extend(receipts);
        match &mut p.leases {
            Some(l) => l.merge(lease),
            None => p.leases = Some(lease),
        }
        drop(p);
        self.added.notify_waiters();
    }

    /// Up to `max` of the oldest receipts, with their slots.
    fn take(&self, max: usize) -> (Vec<String>, Option<OwnedSemaphorePermit>) {
        let mut p = self.pending.lock().expect("acks lock");
        let n = p.receipts.len().min(max);
        if n == 0 {
            return (Vec::new(), None);
        }
        let receipts: Vec<String> = p.receipts.drain(..n).collect();
        let leases = if p.receipts.is_empty() {
            p.leases.take()
        } else {
            p.leases.as_mut().and_then(|l| l.split(n))
        };
        debug_assert_eq!(leases.as_ref().map_or(0, |l| l.num_permits()), n, "one slot per ack");
        (receipts, leases)
    }

    /// Until a receipt waits, or the worker closed this.
    async fn wait(&self) {
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            {
                let p = self.pending.lock().expect("acks lock");
                if !p.receipts.is_empty() || p.closed {
                    return;
                }
            }
            added.await;
        }
    }

    fn close(&self) {
        self.pending.lock().expect("acks lock").closed = true;
        self.added.notify_waiters();
    }

    fn closed(&self) -> bool {
        self.pending.lock().expect("acks lock").closed
    }
}

/// Sends the acks no fetcher took within `ACK_LINGER_MS` (every fetch is waiting in a long
/// poll, or the worker is stopping): up to `ACK_BATCH_MAX` receipts a request, with up to
/// `ACKS_IN_FLIGHT` requests at once. A batch's leases are given back when its request ends.
/// Ends once closed and empty.
async fn ack_loop(client: Client, acks: Arc<Acks>, stats: Arc<WorkerStats>) {
    let in_flight = Arc::new(Semaphore::new(ACKS_IN_FLIGHT));
    let sending = TaskTracker::new();
    loop {
        acks.wait().await;
        tokio::time::sleep(Duration::from_millis(ACK_LINGER_MS)).await;
        let (receipts, leases) = acks.take(ACK_BATCH_MAX);
        if receipts.is_empty() {
            if acks.closed() {
                break;
            }
            continue;
        }
        let slot = in_flight.clone().acquire_owned().await.expect("never closed");
        let (client, stats) = (client.clone(), stats.clone());
        sending.spawn(async move {
            send_acks(&client, &receipts, &stats).await;
            drop((leases, slot));
        });
    }
    sending.close();
    sending.wait().await;
}

async fn send_acks(client: &Client, receipts: &[String], stats: &WorkerStats) {
    match client.ack(receipts).await {
        Ok(results) => count_acks(stats, &results),
        Err(e) => {
            tracing::warn!(error = %e, receipts = receipts.len(), "ack failed; the jobs will be redelivered")
        }
    }
}

fn count_acks(stats: &WorkerStats, results: &[crate::AckResult]) {
    // A refused ack: the lease ended before the handler did (no heartbeat, or one that could
    // not reach the server). Another worker has or will have the job.
    let refused = results.iter().filter(|r| **r != crate::AckResult::Ok).count();
    stats.acked.fetch_add((results.len() - refused) as u64, Ordering::Relaxed);
    if refused > 0 {
        stats.lost_leases.fetch_add(refused as u64, Ordering::Relaxed);
        stats.succeeded.fetch_sub(refused as u64, Ordering::Relaxed);
        tracing::warn!(refused, "acks refused: leases ended before the jobs finished");
    }
}
