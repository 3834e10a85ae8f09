//! An email sender: transient failures (SMTP timeouts) are retried with backoff, permanent ones
//! (an invalid address) go straight to the dead-letter queue.
//!
//! Run against a server (`cargo run --release -- serve`):
//! `cargo run -p redrive-client --example email_sender`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redrive_client::producer::{Producer, TypedJob};
use redrive_client::worker::{JobError, Worker, WorkerStats};
use redrive_client::{Backoff, Client, QueuePatch};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

impl TypedJob for Email {
    const QUEUE: &'static str = "emails";

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("{}:{}", self.to, self.subject))
    }
}

/// A fake SMTP server: times out on every other try to `flaky@…`, rejects `@invalid`.
fn deliver(email: &Email, tries: &AtomicU32) -> Result<(), JobError> {
    if email.to.ends_with("@invalid") {
        return Err(JobError::non_retryable("SmtpPermanentError", "550 5.1.1 mailbox unavailable"));
    }
    if email.to.starts_with("flaky") && tries.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
        return Err(JobError::new("SmtpTimeout", "timed out after 30s waiting for 250 OK"));
    }
    println!("sent {:?} to {}", email.subject, email.to);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let url = std::env::var("REDRIVE_URL").unwrap_or_else(|_| "http://127.0.0.1:9324".into());
    let client = Client::new(&url)?;
    let patch = QueuePatch {
        max_attempts: Some(Some(5)),
        backoff: Some(Backoff { base_ms: 200, max_ms: 2_000 }),
        ..QueuePatch::default()
    };
    client.put_queue("emails", &patch).await?;

    let producer = Producer::new(client.clone());
    for (to, subject) in [
        ("ada@example.com", "welcome"),
        ("flaky@example.com", "receipt"),
        ("bob@invalid", "welcome"),
    ] {
        let r = producer.send_typed(&Email { to: to.into(), subject: subject.into() }).await?;
        println!("enqueued {} ({to}){}", r.id, if r.duplicate { ", a duplicate" } else { "" });
    }

    let stats = Arc::new(WorkerStats::default());
    let tries = Arc::new(AtomicU32::new(0));
    let done = stats.clone();
    let worker = Worker::builder(client.clone())
        .queues(["emails"])
        .concurrency(4)
        .stats(stats.clone())
        .handler(move |job| {
            let tries = tries.clone();
            async move {
                let email: Email = serde_json::from_str(&job.body)
                    .map_err(|e| JobError::non_retryable("BadPayload", e.to_string()))?;
                deliver(&email, &tries)
            }
        });
    // Stop once the two good emails are sent and the bad one has failed, or on Ctrl-C.
    let finished = async move {
        while done.succeeded.load(Ordering::Relaxed) < 2 || done.failed.load(Ordering::Relaxed) < 2
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    worker
        .run(async {
            tokio::select! { _ = finished => {}, _ = tokio::signal::ctrl_c() => {} }
        })
        .await;
    println!("see the dead letter: redrive dlq list emails-dlq");
    Ok(())
}
