//! `redrive bench --sdk`: the same run through the worker SDK on both sides, as an application
//! would write it: producers that each hand one batching `Producer` (its defaults) their batch
//! (`send_batch`) and wait for it to be durable, and a `Worker` with a no-op handler that records
//! enqueue→start latency.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use redrive_client::producer::Producer;
use redrive_client::worker::{Worker, WorkerStats};
use redrive_client::NewJob;

use crate::bench::{now_us, share, BenchArgs, Run, LATENCY_MAX_US, LEASE_MS};

/// Runs the jobs through the SDK; returns (enqueued, when enqueueing ended, latencies).
pub(crate) async fn run(
    run: Arc<Run>,
    args: &BenchArgs,
) -> anyhow::Result<(u64, Duration, Histogram<u64>)> {
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?));
    let stats = Arc::new(WorkerStats::default());
    let recorder = latency.clone();
    let worker = Worker::builder(run.client.clone())
        .queues([run.queue.clone()])
        .concurrency((args.consumers * args.batch) as usize)
        .lease(Duration::from_millis(LEASE_MS))
        .worker_id("bench-sdk")
        .stats(stats.clone())
        .handler(move |job| {
            let now = now_us();
            if let Some(t) = job.attributes.get("t").and_then(|t| t.parse::<u64>().ok()) {
                let mut h = recorder.lock().expect("latency lock");
                h.saturating_record(now.saturating_sub(t).clamp(1, LATENCY_MAX_US));
            }
            async { Ok(()) }
        });
    let watch = (run.clone(), stats.clone());
    let worker = tokio::spawn(worker.run(async move {
        let (run, stats) = watch;
        while WorkerStats::get(&stats.acked) < run.jobs && !run.over() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The run ends when the last ack is confirmed, not after the worker's stop (which waits
        // for its long polls, up to their wait time, on a queue now empty).
        let _ = run.done_at.set(run.start.elapsed());
    }));

    // The producer as an application gets it: the producers' batches share requests while
    // others are in flight (each producer still waits for its own batch to be durable).
    let producer = Producer::new(run.client.clone());
    let batch = u64::from(args.batch);
    let body = "x".repeat(args.body_bytes as usize);
    let tasks: Vec<_> = (0..args.producers)
        .map(|i| {
            let (run, producer, body) = (run.clone(), producer.clone(), body.clone());
            let share = share(run.jobs, args.producers, i);
            tokio::spawn(async move {
                let mut left = share;
                while left > 0 {
                    let n = left.min(batch);
                    let jobs = (0..n)
                        .map(|_| NewJob {
                            body: body.clone(),
                            attributes: [("t".to_owned(), now_us().to_string())].into(),
                            ..NewJob::default()
                        })
                        .collect();
                    producer.send_batch(&run.queue, jobs).await.context("send")?;
                    left -= n;
                }
                anyhow::Ok(share)
            })
        })
        .collect();
    let mut enqueued = 0;
    for t in tasks {
        enqueued += t.await.context("a sender panicked")??;
    }
    let enqueue_end = run.start.elapsed();
    let stats = worker.await.context("the worker panicked")?;
    let acked = WorkerStats::get(&stats.acked);
    run.acked.store(acked, Ordering::Relaxed);
    run.stale.store(WorkerStats::get(&stats.lost_leases), Ordering::Relaxed);
    let latency = Arc::try_unwrap(latency).map_err(|_| anyhow::anyhow!("latency still shared"))?;
    Ok((enqueued, enqueue_end, latency.into_inner().expect("latency lock")))
}
