//! The engine thread: it owns the [`Store`], takes requests from a bounded channel, applies a
//! batch of them in memory, writes the batch's WAL records, and hands the batch's replies to the
//! group-commit thread, which fsyncs once for every batch waiting and only then answers them.
//! While one fsync runs, the engine applies the next batch. Long-poll receivers wait here and
//! are served as soon as a job is ready.
//!
//! Replies go out in batch order, after the fsync that covers their batch, so no client ever
//! sees (even by reading) a state that a crash could take back.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redrive_core::broker::*;
use redrive_core::model::JobId;
use redrive_core::time::Clock;
use redrive_core::{limits, Broker, Error, QueuePatch, Result};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::metrics::{Histogram, FSYNC_BOUNDS_US};
use crate::state::Store;
use crate::wal::Durability;
use redrive_core::metrics::{Series, StoreSnapshot, Value};

/// Requests taken per loop at most (one WAL commit covers them all).
const BATCH_REQUESTS_MAX: usize = 4096;
/// The engine wakes at least this often to run timers and compaction.
const IDLE_WAKE_MS: u64 = 250;
/// Pause between two slices of a compaction when no request is waiting.
const COMPACT_SLICE_PAUSE_MS: u64 = 1;
/// At most one compaction step per this interval.
const COMPACT_INTERVAL_MS: u64 = 1000;
/// Batches that may wait for the group-commit thread before the engine waits for it.
const SYNC_QUEUE_DEPTH_MAX: usize = 64;
/// Idle this long after a write, the engine appends a `Synced` marker behind it, so that damage
/// to the last acknowledged records is detected at recovery (see `wal`). It bounds the window in
/// which such damage would read as a torn tail, at the cost of one small fsync per idle period.
const MARK_IDLE_MS: u64 = 100;
/// Debug builds check the store's invariants (O(jobs), ~2 µs a job unoptimized) after every
/// batch while it holds at most this many jobs, which covers the engine's own tests.
#[cfg(debug_assertions)]
const DEBUG_CHECK_JOBS_ALWAYS: usize = 1000;
/// Past that, only while the checks have taken at most 1/this of the engine's running time:
/// a bulk test (100,000 jobs, a request per job) would otherwise pay O(jobs²) and take hours.
#[cfg(debug_assertions)]
const DEBUG_CHECK_TIME_SHARE: u32 = 4;

type Reply<T> = oneshot::Sender<Result<T>>;

enum Cmd {
    PutQueue(String, QueuePatch, Reply<(QueueInfo, bool)>),
    GetQueue(String, Reply<QueueInfo>),
    ListQueues(Reply<Vec<QueueInfo>>),
    DeleteQueue(String, Reply<()>),
    Enqueue(String, Vec<NewJob>, Reply<Vec<Enqueued>>),
    Receive(ReceiveRequest, Reply<Vec<Delivery>>),
    Ack(Vec<String>, Reply<Vec<AckResult>>),
    /// Acks, then receives what is ready now (no long poll), under one commit.
    AckReceive(Vec<String>, ReceiveRequest, Reply<(Vec<AckResult>, Vec<Delivery>)>),
    Fail(FailRequest, Reply<FailResult>),
    Extend(String, u64, Reply<u64>),
    GetJob(JobId, Reply<JobInfo>),
    ListDead(String, DeadFilter, Option<JobId>, usize, Reply<JobPage>),
    ListJobs(String, JobFilter, Option<JobId>, usize, Reply<JobPage>),
    Redrive(String, RedriveRequest, Reply<RedriveResult>),
    Purge(String, Reply<u64>),
    DeleteJob(JobId, Reply<()>),
    PutDoc(DocKind, String, Option<String>, Reply<()>),
    PutDocIf(DocKind, String, Option<String>, Option<String>, Reply<bool>),
    GetDoc(DocKind, String, Reply<Option<String>>),
    ListDocs(DocKind, Reply<Vec<(String, String)>>),
    Snapshot(Reply<StoreSnapshot>),
    /// Shutdown has begun: answer parked long polls now and park no more.
    Drain(Reply<()>),
    Shutdown(oneshot::Sender<()>),
}

struct Waiter {
    qids: Vec<u32>,
    max: usize,
    lease_ms: Option<u64>,
    worker: Option<String>,
    deadline: u64,
    tx: Reply<Vec<Delivery>>,
}

/// A reply held until the batch's commit: writes fail with the commit's error, reads do not.
type Pending = Box<dyn FnOnce(Option<&Error>) + Send>;

/// One batch for the group-commit thread: what to fsync (if anything was written), and the
/// replies to send once it is durable.
struct SyncJob {
    /// What to fsync, and the log location that makes durable.
    handle: Option<crate::wal::SyncTicket>,
    error: Option<Error>,
    replies: Vec<Pending>,
}

/// The group-commit thread: fsyncs once for all batches queued, then answers them in order.
fn group_commit(
    rx: Receiver<SyncJob>,
    poisoned: Arc<OnceLock<String>>,
    durable: Arc<AtomicU64>,
    fsync_us: Arc<std::sync::Mutex<Histogram>>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let mut failure = poisoned.get().map(|p| Error::Poisoned(p.clone()));
        // Files synced in this round (a batch's handle may repeat).
        let mut synced: Vec<*const ()> = Vec::new();
        let mut upto = 0;
        for (h, loc) in jobs.iter().filter_map(|j| j.handle.as_ref()) {
            upto = upto.max(*loc);
            let key = Arc::as_ptr(h) as *const ();
            if failure.is_some() || synced.contains(&key) {
                continue;
            }
            let t = std::time::Instant::now();
            match h.sync() {
                Ok(()) => fsync_us.lock().unwrap().record(t.elapsed().as_micros() as u64),
                Err(e) => {
                    failure = Some(Error::Poisoned(crate::wal::poison(
                        &poisoned,
                        format!("fsync failed: {e}"),
                    )))
                }
            }
            synced.push(key);
        }
        if failure.is_none() {
            durable.fetch_max(upto, Ordering::AcqRel);
        }
        for j in jobs {
            let err = j.error.or_else(|| failure.clone());
            for p in j.replies {
                p(err.as_ref());
            }
        }
    }
}

struct Loop {
    store: Store,
    clock: Arc<dyn Clock>,
    rx: Receiver<Cmd>,
    now: u64,
    pending: Vec<Pending>,
    waiters: FxHashMap<u64, Waiter>,
    waiters_by_queue: FxHashMap<u32, VecDeque<u64>>,
    waiter_deadlines: BTreeSet<(u64, u64)>,
    next_waiter: u64,
    last_compaction: u64,
    /// Set by [`Cmd::Drain`]: receives no longer wait.
    draining: bool,
    syncer: Option<(SyncSender<SyncJob>, JoinHandle<()>)>,
    fsync_us: Arc<std::sync::Mutex<Histogram>>,
    /// Debug builds: when the loop started and how long its invariant checks have taken.
    #[cfg(debug_assertions)]
    checks: (std::time::Instant, Duration),
}

/// The async handle the server uses. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: SyncSender<Cmd>,
    durability: Durability,
    poisoned: Arc<OnceLock<String>>,
}

pub struct Engine {
    pub handle: EngineHandle,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine thread over an opened store.
    pub fn start(store: Store, clock: Arc<dyn Clock>) -> Engine {
        let (tx, rx) = mpsc::sync_channel(limits::ENGINE_QUEUE_DEPTH_MAX);
        let poisoned = store.poison_flag();
        let durability = store.durability();
        let fsync_us = Arc::new(std::sync::Mutex::new(Histogram::new(FSYNC_BOUNDS_US)));
        let syncer = (durability == Durability::Sync).then(|| {
            let (stx, srx) = mpsc::sync_channel(SYNC_QUEUE_DEPTH_MAX);
            let (p, d, h) = (poisoned.clone(), store.synced_flag(), fsync_us.clone());
            let t = std::thread::Builder::new()
                .name("redrive-commit".into())
                .spawn(move || group_commit(srx, p, d, h))
                .expect("spawning the group-commit thread");
            (stx, t)
        });
        let now = clock.now_ms();
        let mut lp = Loop {
            store,
            clock,
            rx,
            now,
            pending: Vec::new(),
            waiters: FxHashMap::default(),
            waiters_by_queue: FxHashMap::default(),
            waiter_deadlines: BTreeSet::new(),
            next_waiter: 0,
            last_compaction: 0,
            draining: false,
            syncer,
            fsync_us,
            #[cfg(debug_assertions)]
            checks: (std::time::Instant::now(), Duration::ZERO),
        };
        let thread = std::thread::Builder::new()
            .name("redrive-engine".into())
            .spawn(move || lp.run())
            .expect("spawning the engine thread");
        Engine { handle: EngineHandle { tx, durability, poisoned }, thread: Some(thread) }
    }

    /// Answers waiting long polls, commits, and stops the thread.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.handle.tx.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Loop {
    fn run(&mut self) {
        loop {
            let wait = self.wait_ms();
            let first = match self.rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.stop(None),
            };
            self.now = self.clock.now_ms().max(self.now);
            self.store.make_room();
            if first.is_none() {
                if let Err(e) = self.store.mark_synced() {
                    self.note_error(&e);
                }
            }
            // Timers write; while the log refuses writes they wait (nothing is lost by waiting).
            if self.store.write_refusal().is_none() {
                if let Err(e) = self.store.tick(self.now) {
                    self.note_error(&e);
                }
                if let Err(e) = self.store.flush_totals(self.now, false) {
                    self.note_error(&e);
                }
            }
            let mut n = 0;
            let mut next = first;
            let mut idle = true;
            while let Some(cmd) = next {
                if let Cmd::Shutdown(done) = cmd {
                    return self.stop(Some(done));
                }
                self.apply(cmd);
                n += 1;
                next = if n < BATCH_REQUESTS_MAX { self.rx.try_recv().ok() } else { None };
                idle = next.is_none() && n < BATCH_REQUESTS_MAX;
            }
            self.serve_waiters();
            self.expire_waiters();
            self.commit_and_reply(n);
            // Reclamation runs only between batches when no request is waiting: a compaction a
            // slice at a time, and a new look at the oldest segment at most once per interval.
            let compacting = self.store.compacting();
            if idle && (compacting || self.now >= self.last_compaction + COMPACT_INTERVAL_MS) {
                self.last_compaction = self.now;
                if let Err(e) = self.store.compact_step() {
                    self.note_error(&e);
                }
            }
            #[cfg(debug_assertions)]
            self.check_invariants();
        }
    }

    /// Debug builds only: [`Store::check_invariants`] after every batch of a small store, and
    /// within a time budget for a large one (`DEBUG_CHECK_JOBS_ALWAYS`). A violation is a bug:
    /// stop at the batch that caused it.
    #[cfg(debug_assertions)]
    fn check_invariants(&mut self) {
        let (started, spent) = self.checks;
        let small = self.store.job_count() <= DEBUG_CHECK_JOBS_ALWAYS;
        if !small && spent > started.elapsed() / DEBUG_CHECK_TIME_SHARE {
            return;
        }
        let t = std::time::Instant::now();
        if let Err(v) = self.store.check_invariants() {
            panic!("after engine batch {}: {v}", self.store.metrics().batches);
        }
        self.checks.1 += t.elapsed();
    }

    fn wait_ms(&self) -> u64 {
        let mut wait = IDLE_WAKE_MS;
        if self.store.write_refusal().is_some() {
            return wait; // timers cannot fire on a store that refuses writes
        }
        if self.store.compacting() {
            // The next slice a millisecond after this one, sooner if a request comes: a slice
            // takes about as long, so compaction gets at most about half of the engine thread's
            // core, and the HTTP threads on the same cores are not starved.
            return COMPACT_SLICE_PAUSE_MS;
        }
        if self.store.wants_mark() {
            wait = MARK_IDLE_MS;
        }
        if let Durability::Relaxed { interval_ms } = self.store.durability() {
            wait = wait.min(interval_ms.max(1));
        }
        let deadline = [self.store.next_deadline(), self.waiter_deadlines.first().map(|d| d.0)]
            .into_iter()
            .flatten()
            .min();
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_sub(self.clock.now_ms()).max(1));
        }
        wait
    }

    fn note_error(&self, e: &Error) {
        if !matches!(e, Error::Poisoned(_)) {
            tracing::error!(error = ?e, "engine error");
        }
    }

    fn commit_and_reply(&mut self, requests: usize) {
        self.store.count_batch(requests);
        if let Some((tx, _)) = &self.syncer {
            let (handle, error) = match self.store.write_for_sync() {
                Ok(h) => (h, None),
                Err(e) => (None, Some(e)),
            };
            let job = SyncJob { handle, error, replies: std::mem::take(&mut self.pending) };
            if let Err(mpsc::SendError(job)) = tx.send(job) {
                let e = Error::Internal("the group-commit thread is gone".into());
                for p in job.replies {
                    p(Some(&e));
                }
            }
            return;
        }
        let result = self.store.commit(self.now);
        if let Err(e) = &result {
            self.note_error(e);
        }
        let err = result.err();
        for p in self.pending.drain(..) {
            p(err.as_ref());
        }
    }

    fn stop(&mut self, done: Option<oneshot::Sender<()>>) {
        let ids: Vec<u64> = self.waiters.keys().copied().collect();
        for id in ids {
            self.finish_waiter(id, Ok(Vec::new()));
        }
        if self.store.write_refusal().is_none() {
            if let Err(e) = self.store.flush_totals(self.now, true) {
                self.note_error(&e);
            }
        }
        self.commit_and_reply(0);
        if let Some((tx, t)) = self.syncer.take() {
            drop(tx);
            let _ = t.join();
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn defer<T: Send + 'static>(&mut self, tx: Reply<T>, r: Result<T>, write: bool) {
        self.pending.push(Box::new(move |err: Option<&Error>| {
            let r = match (err, write, r) {
                (Some(e), true, Ok(_)) => Err(e.clone()),
                (_, _, r) => r,
            };
            let _ = tx.send(r);
        }));
    }

    /// One arm per request: long, but each arm only calls the store and defers the reply.
    fn apply(&mut self, cmd: Cmd) {
        let now = self.now;
        let s = &mut self.store;
        match cmd {
            Cmd::PutQueue(name, patch, tx) => {
                let r = s.put_queue(&name, &patch, now);
                self.defer(tx, r, true)
            }
            Cmd::GetQueue(name, tx) => {
                let r = s.get_queue(&name, now);
                self.defer(tx, r, false)
            }
            Cmd::ListQueues(tx) => {
                let r = Ok(s.list_queues(now));
                self.defer(tx, r, false)
            }
            Cmd::DeleteQueue(name, tx) => {
                let r = s.delete_queue(&name);
                self.defer(tx, r, true)
            }
            Cmd::Enqueue(q, jobs, tx) => {
                let r = s.enqueue(&q, &jobs, now);
                self.defer(tx, r, true)
            }
            Cmd::Receive(req, tx) => self.receive(req, tx),
            Cmd::AckReceive(receipts, req, tx) => {
                let r = self.ack_receive(&receipts, req);
                self.defer(tx, r, true)
            }
            Cmd::Ack(receipts, tx) => {
                let r = s.ack(&receipts, now);
                self.defer(tx, r, true)
            }
            Cmd::Fail(req, tx) => {
                let r = s.fail(&req, now);
                self.defer(tx, r, true)
            }
            Cmd::Extend(receipt, ms, tx) => {
                let r = s.extend(&receipt, ms, now);
                self.defer(tx, r, true)
            }
            Cmd::GetJob(id, tx) => {
                let r = s.job_info(id);
                self.defer(tx, r, false)
            }
            Cmd::ListDead(q, f, after, limit, tx) => {
                let r = s.list_dead(&q, &f, after, limit);
                self.defer(tx, r, false)
            }
            Cmd::ListJobs(q, f, after, limit, tx) => {
                let r = s.list_jobs(&q, &f, after, limit);
                self.defer(tx, r, false)
            }
            Cmd::Redrive(q, req, tx) => {
                let r = s.redrive(&q, &req, now);
                self.defer(tx, r, !req.dry_run)
            }
            Cmd::Purge(q, tx) => {
                let r = s.purge(&q);
                self.defer(tx, r, true)
            }
            Cmd::DeleteJob(id, tx) => {
                let r = s.delete_job(id);
                self.defer(tx, r, true)
            }
            Cmd::PutDoc(kind, key, value, tx) => {
                let r = s.put_doc(kind, &key, value.as_deref());
                self.defer(tx, r, true)
            }
            Cmd::PutDocIf(kind, key, expected, value, tx) => {
                let r = s.put_doc_if(kind, &key, expected.as_deref(), value.as_deref());
                self.defer(tx, r, true)
            }
            Cmd::GetDoc(kind, key, tx) => {
                let r = Ok(s.get_doc(kind, &key));
                self.defer(tx, r, false)
            }
            Cmd::ListDocs(kind, tx) => {
                let r = Ok(s.list_docs(kind));
                self.defer(tx, r, false)
            }
            Cmd::Drain(tx) => {
                self.draining = true;
                let ids: Vec<u64> = self.waiters.keys().copied().collect();
                for id in ids {
                    self.finish_waiter(id, Ok(Vec::new()));
                }
                self.defer(tx, Ok(()), false)
            }
            Cmd::Snapshot(tx) => {
                let mut fsync_us = s.metrics().fsync_us.clone();
                fsync_us.merge(&self.fsync_us.lock().unwrap());
                let snap = StoreSnapshot {
                    queues: s.list_queues(now),
                    waiters: self.waiters.len(),
                    latency: s.latency(),
                    store: store_series(s, fsync_us),
                };
                self.defer(tx, Ok(snap), false)
            }
            Cmd::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    fn receive(&mut self, req: ReceiveRequest, tx: Reply<Vec<Delivery>>) {
        let checked = (|| {
            req.check()?;
            let qids =
                req.queues.iter().map(|q| self.store.queue_id(q)).collect::<Result<Vec<u32>>>()?;
            let config = self.store.queue_config(qids[0]).expect("named queues exist");
            let wait = req.wait_ms.unwrap_or(config.receive_wait_ms);
            // `check` bounds a given wait, `QueueConfig::validate` the queue's.
            assert!(wait <= limits::RECEIVE_WAIT_MAX_MS, "an unbounded long poll");
            Ok((qids, wait))
        })();
        let (qids, wait) = match checked {
            Ok(v) => v,
            Err(e) => return self.defer(tx, Err(e), false),
        };
        let w = Waiter {
            qids,
            max: req.max as usize,
            lease_ms: req.lease_ms,
            worker: req.worker_id,
            deadline: self.now + wait,
            tx,
        };
        let r = self.try_receive(&w.qids.clone(), w.max, w.lease_ms, w.worker.clone().as_deref());
        match r {
            Ok(jobs) if jobs.is_empty() && wait > 0 && !self.draining => {
                if self.waiters.len() >= limits::WAITERS_COUNT_MAX {
                    self.drop_abandoned_waiters();
                }
                if self.waiters.len() >= limits::WAITERS_COUNT_MAX {
                    let e = Error::LimitExceeded {
                        limit: "WAITERS_COUNT_MAX",
                        max: limits::WAITERS_COUNT_MAX as u64,
                    };
                    return self.defer(w.tx, Err(e), false);
                }
                let id = self.next_waiter;
                self.next_waiter += 1;
                for q in &w.qids {
                    self.waiters_by_queue.entry(*q).or_default().push_back(id);
                }
                self.waiter_deadlines.insert((w.deadline, id));
                self.waiters.insert(id, w);
            }
            r => self.defer(w.tx, r, true),
        }
    }

    /// The request is checked and its queues looked up before anything is acked. Once the acks
    /// are applied, a receive the store refuses (the in-flight limit) answers no jobs rather
    /// than an error that would hide the acks' results: the next receive meets the refusal.
    fn ack_receive(
        &mut self,
        receipts: &[String],
        req: ReceiveRequest,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>)> {
        req.check()?;
        check_acks(receipts.len())?;
        let qids =
            req.queues.iter().map(|q| self.store.queue_id(q)).collect::<Result<Vec<u32>>>()?;
        let acked =
            if receipts.is_empty() { Vec::new() } else { self.store.ack(receipts, self.now)? };
        match self.try_receive(&qids, req.max as usize, req.lease_ms, req.worker_id.as_deref()) {
            Err(e) if acked.is_empty() => Err(e),
            jobs => Ok((acked, jobs.unwrap_or_default())),
        }
    }

    fn try_receive(
        &mut self,
        qids: &[u32],
        max: usize,
        lease_ms: Option<u64>,
        worker: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for &qid in qids {
            if out.len() >= max {
                break;
            }
            if !self.store.has_queue(qid) {
                continue;
            }
            self.store.receive_from(qid, max, lease_ms, worker, self.now, &mut out)?;
        }
        Ok(out)
    }

    /// Serves parked receivers of every queue that gained ready jobs, oldest waiter first.
    fn serve_waiters(&mut self) {
        while let Some(qid) = self.store.take_woken() {
            loop {
                if !self.store.has_ready(qid) {
                    break;
                }
                let Some(id) = self.waiters_by_queue.get_mut(&qid).and_then(|d| d.pop_front())
                else {
                    break;
                };
                let Some(w) = self.waiters.get(&id) else { continue };
                if w.tx.is_closed() {
                    // The receiver gave up (its client disconnected): lease nothing to it.
                    self.finish_waiter(id, Ok(Vec::new()));
                    continue;
                }
                let (qids, max, lease_ms, worker) =
                    (w.qids.clone(), w.max, w.lease_ms, w.worker.clone());
                match self.try_receive(&qids, max, lease_ms, worker.as_deref()) {
                    Ok(jobs) if jobs.is_empty() => {
                        self.waiters_by_queue.entry(qid).or_default().push_front(id);
                        break;
                    }
                    r => self.finish_waiter(id, r),
                }
            }
        }
    }

    fn expire_waiters(&mut self) {
        while let Some(&(t, id)) = self.waiter_deadlines.first() {
            if t > self.now {
                break;
            }
            self.finish_waiter(id, Ok(Vec::new()));
        }
    }

    /// Forgets the parked receivers whose requests were dropped (their clients disconnected):
    /// run when the waiter cap is reached, so that a flood of abandoned long polls does not
    /// hold the cap until their deadlines. One pass over the waiters and the queues' lists.
    fn drop_abandoned_waiters(&mut self) {
        let gone: std::collections::HashSet<u64> =
            self.waiters.iter().filter(|(_, w)| w.tx.is_closed()).map(|(id, _)| *id).collect();
        if gone.is_empty() {
            return;
        }
        for id in &gone {
            if let Some(w) = self.waiters.remove(id) {
                self.waiter_deadlines.remove(&(w.deadline, *id));
            }
        }
        for d in self.waiters_by_queue.values_mut() {
            d.retain(|x| !gone.contains(x));
        }
    }

    fn finish_waiter(&mut self, id: u64, r: Result<Vec<Delivery>>) {
        let Some(w) = self.waiters.remove(&id) else { return };
        self.waiter_deadlines.remove(&(w.deadline, id));
        for q in &w.qids {
            if let Some(d) = self.waiters_by_queue.get_mut(q) {
                d.retain(|x| *x != id);
            }
        }
        self.defer(w.tx, r, true);
    }
}

impl EngineHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        match self.tx.try_send(make(tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Error::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(Error::ShuttingDown),
        }
        rx.await.unwrap_or(Err(Error::ShuttingDown))
    }
}

/// The embedded store's own figures for `/metrics`.
fn store_series(s: &Store, fsync_us: Histogram) -> Vec<Series> {
    let m = s.metrics();
    let (wal_bytes, wal_segments) = s.wal_size();
    let series = |name, help, value| Series { name, help, value };
    vec![
        series(
            "redrive_fsync_seconds",
            "WAL fsync latency.",
            Value::Histogram { histogram: fsync_us, scale: 1e6 },
        ),
        series(
            "redrive_jobs_in_memory",
            "Jobs the engine holds (all states).",
            Value::Gauge(s.job_count() as f64),
        ),
        series("redrive_wal_bytes", "Bytes in WAL segments.", Value::Gauge(wal_bytes as f64)),
        series("redrive_wal_segments", "WAL segment files.", Value::Gauge(wal_segments as f64)),
        series(
            "redrive_group_commits_total",
            "Engine batches committed to the WAL.",
            Value::Counter(m.batches),
        ),
        series(
            "redrive_group_commit_requests_total",
            "Requests applied in those batches.",
            Value::Counter(m.batch_requests),
        ),
        series(
            "redrive_completed_evicted_total",
            "Completed jobs forgotten early to stay within COMPLETED_JOBS_MAX.",
            Value::Counter(m.completed_evicted),
        ),
        series(
            "redrive_wal_segments_compacted_total",
            "WAL segments compacted.",
            Value::Counter(m.compacted_segments),
        ),
        series(
            "redrive_wal_segments_deleted_total",
            "WAL segments deleted with no live record.",
            Value::Counter(m.deleted_segments),
        ),
    ]
}

impl Broker for EngineHandle {
    async fn put_queue(&self, name: String, patch: QueuePatch) -> Result<(QueueInfo, bool)> {
        self.call(|tx| Cmd::PutQueue(name, patch, tx)).await
    }
    async fn get_queue(&self, name: String) -> Result<QueueInfo> {
        self.call(|tx| Cmd::GetQueue(name, tx)).await
    }
    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        self.call(Cmd::ListQueues).await
    }
    async fn delete_queue(&self, name: String) -> Result<()> {
        self.call(|tx| Cmd::DeleteQueue(name, tx)).await
    }
    async fn enqueue(&self, queue: String, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        self.call(|tx| Cmd::Enqueue(queue, jobs, tx)).await
    }
    async fn receive(&self, req: ReceiveRequest) -> Result<Vec<Delivery>> {
        self.call(|tx| Cmd::Receive(req, tx)).await
    }
    async fn ack(&self, receipts: Vec<String>) -> Result<Vec<AckResult>> {
        self.call(|tx| Cmd::Ack(receipts, tx)).await
    }
    /// One trip to the engine and one commit when jobs are ready; when none is and the request
    /// may wait, the acks are durable first and the long poll follows as a plain receive.
    async fn ack_receive(
        &self,
        receipts: Vec<String>,
        req: ReceiveRequest,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>)> {
        // Kept for the long poll only if one may follow (workers send `wait_ms` 0 with acks).
        let poll = (req.wait_ms != Some(0)).then(|| req.clone());
        let (acked, jobs) = self.call(|tx| Cmd::AckReceive(receipts, req, tx)).await?;
        match poll {
            // As above, a refusal now answers no jobs so that the acks' results are not lost.
            Some(poll) if jobs.is_empty() => {
                Ok((acked, self.receive(poll).await.unwrap_or_default()))
            }
            _ => Ok((acked, jobs)),
        }
    }
    async fn fail(&self, req: FailRequest) -> Result<FailResult> {
        self.call(|tx| Cmd::Fail(req, tx)).await
    }
    async fn extend(&self, receipt: String, lease_ms: u64) -> Result<u64> {
        self.call(|tx| Cmd::Extend(receipt, lease_ms, tx)).await
    }
    async fn get_job(&self, id: JobId) -> Result<JobInfo> {
        self.call(|tx| Cmd::GetJob(id, tx)).await
    }
    async fn list_dead(
        &self,
        queue: String,
        filter: DeadFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        self.call(|tx| Cmd::ListDead(queue, filter, after, limit, tx)).await
    }
    async fn list_jobs(
        &self,
        queue: String,
        filter: JobFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        self.call(|tx| Cmd::ListJobs(queue, filter, after, limit, tx)).await
    }
    async fn redrive(&self, queue: String, req: RedriveRequest) -> Result<RedriveResult> {
        self.call(|tx| Cmd::Redrive(queue, req, tx)).await
    }
    async fn purge(&self, queue: String) -> Result<u64> {
        self.call(|tx| Cmd::Purge(queue, tx)).await
    }
    async fn delete_job(&self, id: JobId) -> Result<()> {
        self.call(|tx| Cmd::DeleteJob(id, tx)).await
    }
    async fn put_doc(&self, kind: DocKind, key: String, value: Option<String>) -> Result<()> {
        self.call(|tx| Cmd::PutDoc(kind, key, value, tx)).await
    }
    async fn put_doc_if(
        &self,
        kind: DocKind,
        key: String,
        expected: Option<String>,
        value: Option<String>,
    ) -> Result<bool> {
        self.call(|tx| Cmd::PutDocIf(kind, key, expected, value, tx)).await
    }
    async fn get_doc(&self, kind: DocKind, key: String) -> Result<Option<String>> {
        self.call(|tx| Cmd::GetDoc(kind, key, tx)).await
    }
    async fn list_docs(&self, kind: DocKind) -> Result<Vec<(String, String)>> {
        self.call(|tx| Cmd::ListDocs(kind, tx)).await
    }
    async fn snapshot(&self) -> Result<StoreSnapshot> {
        self.call(Cmd::Snapshot).await
    }
    async fn drain(&self) -> Result<()> {
        self.call(Cmd::Drain).await
    }
    fn health(&self) -> Health {
        Health { poisoned: self.poisoned.get().cloned(), durability: self.durability.to_string() }
    }
}
