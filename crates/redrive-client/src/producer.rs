//! The producer: `send` returns once the job is durable, and concurrent sends are batched into
//! few enqueue requests: per queue, at most [`IN_FLIGHT_MAX`] requests are in flight, and the
//! calls that arrive meanwhile share the next ones (up to a batch size). A send that finds a
//! request slot free goes at once, so batching costs a lone send no wait; an optional linger
//! holds a request back for companions even then.

use std::time::Duration;

use redrive_core::broker::{Enqueued, NewJob};
use redrive_core::Priority;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{Client, Error};

/// Defaults: how long a request that could go waits for more jobs (none: the requests in
/// flight are what gather a batch), and the largest batch.
pub const LINGER_DEFAULT_MS: u64 = 0;
pub const BATCH_DEFAULT: usize = 500;
/// Enqueue requests in flight per queue: enough for one to be in the server's fsync while the
/// next is read, few enough that jobs sent meanwhile gather into batches.
pub const IN_FLIGHT_MAX: usize = 4;
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

    /// `linger`: how long a request that could be sent waits for more jobs (zero: it goes at
    /// once, and jobs gather while [`IN_FLIGHT_MAX`] requests are in flight); `max_batch`: jobs
    /// per request at most (capped at the server's `ENQUEUE_BATCH_COUNT_MAX`).
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

/// Calls that will share one request, how many jobs they hold, and when the first came.
struct Bin {
    calls: Vec<Pending>,
    jobs: usize,
    since: Instant,
}

/// One queue's requests: those waiting to go, oldest first, and how many are in flight.
struct Lane {
    queue: String,
    waiting: Vec<Bin>,
    in_flight: usize,
}

impl Lane {
    /// Packs a call first fit: it joins the first waiting request it fits in, so the order calls
    /// arrive in (which concurrent senders do not control) does not decide how many requests
    /// they take.
    fn add(&mut self, p: Pending, max: usize) {
        let n = p.jobs.len();
        match self.waiting.iter_mut().find(|b| b.jobs + n <= max) {
            Some(b) => {
                b.jobs += n;
                b.calls.push(p);
            }
            None => self.waiting.push(Bin { calls: vec![p], jobs: n, since: Instant::now() }),
        }
    }

    /// The requests that may go now: while a slot is free, a full one, or the oldest once it
    /// has lingered. When the next goes, if not now.
    fn ready(&mut self, linger: Duration, max: usize, now: Instant) -> (Vec<Bin>, Option<Instant>) {
        let mut out = Vec::new();
        while self.in_flight + out.len() < IN_FLIGHT_MAX && !self.waiting.is_empty() {
            let i = self.waiting.iter().position(|b| b.jobs >= max).unwrap_or(0);
            let due = self.waiting[i].since + linger;
            if self.waiting[i].jobs < max && due > now {
                return (out, Some(due));
            }
            out.push(self.waiting.remove(i));
        }
        (out, None)
    }
}

async fn batcher(client: Client, mut rx: mpsc::Receiver<Pending>, linger: Duration, max: usize) {
    // Finished requests name their queue here, freeing its slot.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    // A producer feeds few queues: a list beats hashing every name.
    let mut lanes: Vec<Lane> = Vec::new();
    let mut open = true;
    while open || !lanes.is_empty() {
        let now = Instant::now();
        // Once every producer is dropped, what waits goes as slots free, lingering no more.
        let linger = if open { linger } else { Duration::ZERO };
        let mut next: Option<Instant> = None;
        for lane in &mut lanes {
            let (go, due) = lane.ready(linger, max, now);
            for bin in go {
                lane.in_flight += 1;
                let slot = Slot { done: done_tx.clone(), queue: lane.queue.clone() };
                let client = client.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    flush(client, bin.calls).await;
                });
            }
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        lanes.retain(|l| l.in_flight > 0 || !l.waiting.is_empty());
        let lingered = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            p = rx.recv(), if open => match p {
                Some(p) => {
                    // Calls that came together are packed together before any request goes.
                    enlist(&mut lanes, p, max);
                    while let Ok(p) = rx.try_recv() {
                        enlist(&mut lanes, p, max);
                    }
                }
                None => open = false,
            },
            Some(queue) = done_rx.recv() => {
                if let Some(l) = lanes.iter_mut().find(|l| l.queue == queue) {
                    l.in_flight -= 1;
                }
            }
            () = lingered => {}
        }
    }
}

/// A request's place among its queue's requests in flight, given back when the request ends
/// however it ends (a panic included), so that a lane never runs out of slots.
struct Slot {
    done: mpsc::UnboundedSender<String>,
    queue: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.done.send(std::mem::take(&mut self.queue));
    }
}

/// Adds a call to its queue's lane, opening the lane if need be.
fn enlist(lanes: &mut Vec<Lane>, p: Pending, max: usize) {
    let lane = match lanes.iter().position(|l| l.queue == p.queue) {
        Some(i) => &mut lanes[i],
        None => {
            let queue = p.queue.clone();
            lanes.push(Lane { queue, waiting: Vec::new(), in_flight: 0 });
            lanes.last_mut().expect("just pushed")
        }
    };
    lane.add(p, max);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(queue: &str, n: usize) -> Pending {
        let jobs = (0..n).map(|_| NewJob::default()).collect();
        Pending { queue: queue.into(), jobs, reply: oneshot::channel().0 }
    }

    fn lane() -> Lane {
        Lane { queue: "q".into(), waiting: Vec::new(), in_flight: 0 }
    }

    /// Every order of the calls 1, 3, 10, 10, 10, 5, 6 (a call of 25 arrives as 10, 10, 5).
    fn orders(items: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
        if k == items.len() {
            return out.push(items.clone());
        }
        for i in k..items.len() {
            items.swap(k, i);
            orders(items, k + 1, out);
            items.swap(k, i);
        }
    }

    #[test]
    fn calls_pack_into_as_few_requests_whatever_their_order() {
        let mut all = Vec::new();
        orders(&mut vec![1, 3, 10, 10, 10, 5, 6], 0, &mut all);
        for order in all {
            let mut l = lane();
            for &n in &order {
                l.add(call("q", n), 10);
            }
            let sizes: Vec<usize> = l.waiting.iter().map(|b| b.jobs).collect();
            assert_eq!(sizes.len(), 5, "{order:?} packed as {sizes:?}");
            assert!(sizes.iter().all(|&n| n <= 10), "{order:?} packed as {sizes:?}");
        }
    }

    #[test]
    fn a_request_goes_while_a_slot_is_free_and_waits_while_none_is() {
        let mut l = lane();
        for _ in 0..5 {
            l.add(call("q", 10), 10);
        }
        l.add(call("q", 1), 10);
        let now = Instant::now();
        // What goes takes a slot, as the batcher does.
        let ready = |l: &mut Lane| {
            let (go, due) = l.ready(Duration::ZERO, 10, now);
            l.in_flight += go.len();
            (go.iter().map(|b| b.jobs).collect::<Vec<_>>(), due)
        };
        assert_eq!(ready(&mut l), (vec![10; IN_FLIGHT_MAX], None), "as many as there are slots");
        assert_eq!(ready(&mut l), (vec![], None), "no slot free: a finished request frees one");
        l.in_flight -= 1;
        assert_eq!(ready(&mut l), (vec![10], None), "a full request before a part-filled one");
        l.in_flight -= 1;
        assert_eq!(ready(&mut l), (vec![1], None), "no linger: a part-filled one goes at once");
        assert!(l.waiting.is_empty());
    }

    #[test]
    fn a_linger_holds_a_part_filled_request_but_not_a_full_one() {
        let linger = Duration::from_secs(60);
        let mut l = lane();
        l.add(call("q", 3), 10);
        let since = l.waiting[0].since;
        let (go, due) = l.ready(linger, 10, since);
        assert!(go.is_empty());
        assert_eq!(due, Some(since + linger));
        l.add(call("q", 7), 10);
        let (go, _) = l.ready(linger, 10, since);
        assert_eq!(go.iter().map(|b| b.jobs).collect::<Vec<_>>(), [10], "filled: goes");
        l.add(call("q", 3), 10);
        let (go, due) = l.ready(linger, 10, since + linger * 2);
        assert_eq!(go.len(), 1, "lingered long enough");
        assert!(due.is_none());
    }
}
