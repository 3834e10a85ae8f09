//! An image pipeline: thumbnails for uploads run before nightly re-encodes (priorities), and
//! long jobs stay leased through heartbeats although each takes three times its lease.
//!
//! Run against a server (`cargo run --release -- serve`):
//! `cargo run -p redrive-client --example image_pipeline`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redrive_client::producer::Producer;
use redrive_client::worker::{Worker, WorkerStats};
use redrive_client::{Client, NewJob, Priority, QueuePatch};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let url = std::env::var("REDRIVE_URL").unwrap_or_else(|_| "http://127.0.0.1:9324".into());
    let client = Client::new(&url)?;
    client.put_queue("images", &QueuePatch::default()).await?;

    let producer = Producer::new(client.clone());
    // Nightly re-encodes first, uploads' thumbnails after: priority decides what runs first.
    let work = (0..3)
        .map(|i| (format!("reencode archive/{i}.tiff"), Priority::Low))
        .chain((0..3).map(|i| (format!("thumbnail upload/{i}.jpg"), Priority::High)));
    let mut sent = 0;
    for (body, priority) in work {
        producer
            .send("images", NewJob { body, priority: Some(priority), ..NewJob::default() })
            .await?;
        sent += 1;
    }

    let stats = Arc::new(WorkerStats::default());
    let done = stats.clone();
    let lease = Duration::from_millis(900);
    let worker = Worker::builder(client.clone())
        .queues(["images"])
        .concurrency(1)
        .lease(lease)
        .stats(stats.clone())
        .handler(move |job| async move {
            // Thumbnails (high priority) come first; every job takes three times its lease.
            println!("{:>8} {}", job.priority.as_str(), job.body);
            tokio::time::sleep(lease * 3).await;
            Ok(())
        });
    let finished = async move {
        while done.succeeded.load(Ordering::Relaxed) < sent {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let stats = worker
        .run(async {
            tokio::select! { _ = finished => {}, _ = tokio::signal::ctrl_c() => {} }
        })
        .await;
    println!(
        "done: {} jobs, {} heartbeats, {} leases lost",
        stats.succeeded.load(Ordering::Relaxed),
        stats.extended.load(Ordering::Relaxed),
        stats.lost_leases.load(Ordering::Relaxed)
    );
    Ok(())
}
