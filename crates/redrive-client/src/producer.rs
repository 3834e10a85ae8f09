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

/// Jobs one call handed over (a whole batch, or the one job of a `send`) and where their
/// results go. A batcher request carries whole `Pending`s, so a call's jobs are never split
/// across requests unless it has more than fit in one.
struct Pending {
    queue: String,
    jobs: Vec<NewJob>,
    reply: oneshot::Sender<Result<Vec<Enqueued>, Error>>,
}

/// A batching producer. Cheap to clone; clones share the batcher.
#[derive(Clone)]
pub struct Producer {
    tx: mpsc::Sender<Pending>,
    max: usize,
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
        Producer { tx, max }
    }

    /// Enqueues one job; returns once it is durable (or was a duplicate of its idempotency key).
    pub async fn send(&self, queue: &str, job: NewJob) -> Result<Enqueued, Error> {
        let mut done = self.hand_over(queue, vec![job]).await?.await?;
        Ok(done.pop().expect("one result per job"))
    }

    /// Enqueues several jobs on one queue; returns once all are durable, their results in
    /// order. Up to the producer's batch size they go in one request (all or none is enqueued),
    /// possibly with other calls' jobs; more are split into requests of that size, and then an
    /// error may come after some of them were enqueued (give jobs idempotency keys to send again
    /// safely).
    pub async fn send_batch(&self, queue: &str, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, Error> {
        let mut waiting = Vec::with_capacity(jobs.len().div_ceil(self.max));
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            waiting.push(self.hand_over(queue, jobs.by_ref().take(self.max).collect()).await?);
        }
        let mut done = Vec::new();
        for w in waiting {
            done.extend(w.await?);
        }
        Ok(done)
    }

    /// Queues `jobs` (at most `max`) for the batcher; the future answers once they are sent.
    async fn hand_over(
        &self,
        queue: &str,
        jobs: Vec<NewJob>,
    ) -> Result<impl std::future::Future<Output = Result<Vec<Enqueued>, Error>>, Error> {
        let (reply, rx) = oneshot::channel();
        let p = Pending { queue: queue.to_owned(), jobs, reply };
        self.tx.send(p).await.map_err(|_| stopped())?;
        Ok(async move { rx.await.map_err(|_| stopped())? })
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

fn stopped() -> Error {
    Error::Transport("the producer stopped".into())
}

/// Calls that will share one request to their queue, and how many jobs they hold.
struct Bin {
    calls: Vec<Pending>,
    jobs: usize,
}

/// Packs the calls that arrive within a linger time into requests, first fit: a call joins
/// the first open request of its queue it fits in, so the order calls arrive in (which
/// concurrent senders do not control) does not decide how many requests they take. A request
/// that is full goes at once; the rest go when the linger time is up.
async fn batcher(client: Client, mut rx: mpsc::Receiver<Pending>, linger: Duration, max: usize) {
    while let Some(first) = rx.recv().await {
        // A producer feeds few queues and a window holds few open requests: a list beats
        // hashing every name.
        let mut open: Vec<Bin> = Vec::new();
        let add = |open: &mut Vec<Bin>, p: Pending| {
            let n = p.jobs.len();
            let i = match open.iter().position(|b| b.calls[0].queue == p.queue && b.jobs + n <= max)
            {
                Some(i) => i,
                None => {
                    open.push(Bin { calls: Vec::new(), jobs: 0 });
                    open.len() - 1
                }
            };
            open[i].jobs += n;
            open[i].calls.push(p);
            if open[i].jobs >= max {
                tokio::spawn(flush(client.clone(), open.remove(i).calls));
            }
        };
        add(&mut open, first);
        let deadline = tokio::time::sleep(linger);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => add(&mut open, p),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        for b in open {
            tokio::spawn(flush(client.clone(), b.calls));
        }
    }
}

/// Enqueues one queue's calls (never empty, together at most a batch) in one request and
/// answers each with its jobs' results.
async fn flush(client: Client, calls: Vec<Pending>) {
    let queue = calls[0].queue.clone();
    let mut jobs = Vec::with_capacity(calls.iter().map(|p| p.jobs.len()).sum());
    let mut replies = Vec::with_capacity(calls.len());
    for p in calls {
        replies.push((p.jobs.len(), p.reply));
        jobs.extend(p.jobs);
    }
    let sent = jobs.len();
    let result = client.enqueue(&queue, &jobs).await.and_then(|done| match done.len() {
        n if n == sent => Ok(done),
        n => Err(Error::Decode(format!("{n} results for {sent} jobs enqueued"))),
    });
    match result {
        Ok(done) => {
            let mut done = done.into_iter();
            for (n, r) in replies {
                let _ = r.send(Ok(done.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for (_, r) in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}
