//! The producer: `send` returns once the job is durable, and concurrent sends are batched into
//! few enqueue requests (per queue, up to a batch size, waiting at most a linger time).

use std::time::Duration;

use redrive_core::broker::{Enqueued, NewJob};
use redrive_core::Priority;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{Client, Error};

/// Defaults: how long the first job of a batch waits for companions, and the largest batch.
pub const LINGER_DEFAULT_MS: u64 = 2;
pub const BATCH_DEFAULT: usize = 500;
const QUEUE_DEPTH: usize = 16 * 1024;

/// A job type that knows its queue (and optionally its priority and idempotency key); its
/// serde JSON is the body.
pub trait TypedJob: Serialize {
    const QUEUE: &'static str;

    fn priority(&self) -> Option<Priority> {
        None
    }

    fn idempotency_key(&self) -> Option<String> {
        None
    }
}

struct Pending {
    queue: String,
    job: NewJob,
    reply: oneshot::Sender<Result<Enqueued, Error>>,
}

/// A batching producer. Cheap to clone; clones share the batcher.
#[derive(Clone)]
pub struct Producer {
    tx: mpsc::Sender<Pending>,
}

impl Producer {
    pub fn new(client: Client) -> Producer {
        Producer::with_batching(client, Duration::from_millis(LINGER_DEFAULT_MS), BATCH_DEFAULT)
    }

    /// `linger`: how long a job may wait for others; `max_batch`: jobs per request at most
    /// (capped at the server's `ENQUEUE_BATCH_COUNT_MAX`).
    pub fn with_batching(client: Client, linger: Duration, max_batch: usize) -> Producer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let max = max_batch.clamp(1, redrive_core::limits::ENQUEUE_BATCH_COUNT_MAX);
        tokio::spawn(batcher(client, rx, linger, max));
        Producer { tx }
    }

    /// Enqueues one job; returns once it is durable (or was a duplicate of its idempotency key).
    pub async fn send(&self, queue: &str, job: NewJob) -> Result<Enqueued, Error> {
        let (reply, rx) = oneshot::channel();
        let p = Pending { queue: queue.to_owned(), job, reply };
        self.tx.send(p).await.map_err(|_| Error::Transport("the producer stopped".into()))?;
        rx.await.map_err(|_| Error::Transport("the producer stopped".into()))?
    }

    /// Enqueues a typed job on its queue, with its priority and idempotency key.
    pub async fn send_typed<J: TypedJob>(&self, job: &J) -> Result<Enqueued, Error> {
        let body = serde_json::to_string(job).map_err(|e| Error::Decode(e.to_string()))?;
        let job = NewJob {
            body,
            priority: job.priority(),
            idempotency_key: job.idempotency_key(),
            ..NewJob::default()
        };
        self.send(J::QUEUE, job).await
    }
}

async fn batcher(client: Client, mut rx: mpsc::Receiver<Pending>, linger: Duration, max: usize) {
    while let Some(first) = rx.recv().await {
        // Batches by queue; a producer feeds few queues, so a list beats hashing every name.
        let mut groups: Vec<Vec<Pending>> = vec![vec![first]];
        let deadline = tokio::time::sleep(linger);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => {
                        let i = match groups.iter().position(|g| g[0].queue == p.queue) {
                            Some(i) => i,
                            None => {
                                groups.push(Vec::new());
                                groups.len() - 1
                            }
                        };
                        groups[i].push(p);
                        if groups[i].len() >= max {
                            tokio::spawn(flush(client.clone(), groups.swap_remove(i)));
                        }
                    }
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        for g in groups {
            tokio::spawn(flush(client.clone(), g));
        }
    }
}

/// Enqueues one queue's batch (never empty) and answers each send.
async fn flush(client: Client, batch: Vec<Pending>) {
    let queue = batch[0].queue.clone();
    let (jobs, replies): (Vec<NewJob>, Vec<_>) =
        batch.into_iter().map(|p| (p.job, p.reply)).unzip();
    match client.enqueue(&queue, &jobs).await {
        Ok(done) => {
            for (r, e) in replies.into_iter().zip(done) {
                let _ = r.send(Ok(e));
            }
        }
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}
