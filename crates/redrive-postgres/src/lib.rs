//! redrive's PostgreSQL backend: the [`Broker`] contract over a PostgreSQL database, so that
//! several stateless redrive servers can share one store. Every operation is a statement (or a
//! short transaction) of row locks and compare-and-set; a reply means the transaction
//! committed with `synchronous_commit = on`.
//!
//! # Layout
//! - [`schema`]: embedded, numbered migrations under an advisory lock.
//! - `db`: statements, error mapping, queue rows, sharded totals, `NOTIFY`.
//! - `queues`: create/patch/delete queues, statistics.
//! - `enqueue`: a batch in one statement, with idempotency keys.
//! - `receive`: leasing a batch with `FOR UPDATE SKIP LOCKED`, lease expiry.
//! - `lease`: ack, fail, extend (compare-and-set on the lease epoch).
//! - `transition`: fail/expiry/death/retention transitions shared by the above.
//! - `dead`: dead-letter listing, redrive, purge, delete.
//! - `jobs`: job status by id.
//! - `docs`: control-plane documents.
//! - [`fleet_lock`]: an advisory lock held on a connection of its own, for work that runs on one
//!   server of a fleet at a time (the in-process triage agent).
//! - [`import`]: bulk import of a whole store, for `redrive migrate`.
//! - `waiters`: parked long polls, the `LISTEN` connection that wakes them, and the sender of
//!   wake-ups owed after commits.
//! - `sweep`: periodic lease expiry, retention and dedup expiry (idempotent on every server).
//! - `totals`: the totals every job moves, counted in memory and written every second.

mod db;
mod dead;
mod docs;
mod enqueue;
pub mod fleet_lock;
pub mod import;
mod jobs;
mod lease;
mod queue_cache;
mod queues;
pub mod receive;
pub mod rekey;
pub mod schema;
mod sweep;
pub mod tls;
mod totals;
mod transition;
mod waiters;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use redrive_core::broker::{
    check_acks, AckResult, DeadFilter, Delivery, DocKind, Enqueued, FailRequest, FailResult,
    Health, JobFilter, JobInfo, JobPage, NewJob, QueueInfo, ReceiveRequest, RedriveRequest,
    RedriveResult,
};
use redrive_core::metrics::{Histogram, QueueLatency, Series, StoreSnapshot, Value};
use redrive_core::model::JobId;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{limits, Broker, Error, QueuePatch, Result};
use tokio::task::JoinHandle;

use crate::db::{internal, pool_error};
use crate::queue_cache::QueueCache;
use crate::waiters::{Waiters, Wakes};

/// Operation latency buckets, microseconds.
const STATEMENT_BOUNDS_US: &[u64] =
    &[100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// Expired leases ended per transaction when a receive finds some.
const LEASE_EXPIRY_BATCH: i64 = 100;

/// How the backend is run.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connections in the pool (besides the one `LISTEN` connection).
    pub pool_size: usize,
    /// How often the sweeper ends expired leases, applies retention and drops old dedup keys.
    pub sweep_interval_ms: u64,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions { pool_size: 16, sweep_interval_ms: 500 }
    }
}

/// The PostgreSQL broker. Cheap to clone; background tasks stop when the last clone drops.
#[derive(Clone)]
pub struct PgBroker {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    waiters: Arc<Waiters>,
    wakes: Arc<Wakes>,
    unflushed: Arc<totals::Unflushed>,
    rates: Arc<queues::Rates>,
    scans: receive::Scans,
    /// Queue rows for enqueue and receive.
    queues: Arc<QueueCache>,
    shard: AtomicU32,
    metrics: Mutex<Metrics>,
    /// Whether the listener's connection is up (a cheap, recent sign of the database's health).
    listener_up: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

struct Metrics {
    /// Latencies by queue id.
    latency: HashMap<i32, QueueLatency>,
    operation_us: Histogram,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PgBroker {
    /// Connects to `url` (`postgres://USER@HOST:PORT/DB`, TLS as its `sslmode` says: see
    /// `tls`), brings the schema up to date (refusing a newer one), and starts the listener and
    /// the sweeper on the current runtime.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgBroker> {
        let (mut config, tls) = tls::parse_url(url)?;
        // Durable reply = committed and flushed: never inherit a relaxed server default. Each
        // statement is planned once per connection (a generic plan), not at every call: planning
        // the receive, enqueue and ack statements cost more than running them (0.5–1.4 ms
        // against 0.3–0.6 ms, docs/benchmarks.md). A generic plan is made from the table as it
        // was then (often nearly empty), so no plan may fall back on reading the whole table:
        // sequential scans are off (every statement here has an index to go by), and statements
        // bound their reads by key (see the ack). No statement here runs long enough for JIT
        // compilation to pay, and a plan steered by an `enable_*` setting (the FIFO receive's)
        // has a cost high enough to start it: half a second per execution.
        config.options(
            "-c synchronous_commit=on -c plan_cache_mode=force_generic_plan -c enable_seqscan=off \
             -c jit=off",
        );
        config.application_name("redrive");
        let (mut client, conn) = config.connect(tls.clone()).await.map_err(internal)?;
        let driver = tokio::spawn(conn);
        schema::migrate(&mut client).await?;
        drop(client);
        let _ = driver.await;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| Error::Internal(format!("building the pool: {e}")))?;
        let waiters = Arc::new(Waiters::default());
        let listener_up = Arc::new(AtomicBool::new(false));
        let wakes = Arc::new(Wakes::default());
        let sender = tokio::spawn(waiters::send(config.clone(), tls.clone(), wakes.clone()));
        let queues = Arc::new(QueueCache::default());
        let listener = tokio::spawn(waiters::listen(
            config,
            tls,
            waiters.clone(),
            wakes.clone(),
            queues.clone(),
            listener_up.clone(),
        ));
        let sweeper = tokio::spawn(sweep::run(pool.clone(), options.sweep_interval_ms));
        let unflushed = Arc::new(totals::Unflushed::default());
        let flusher = tokio::spawn(totals::run(pool.clone(), unflushed.clone()));
        Ok(PgBroker {
            inner: Arc::new(Inner {
                pool,
                waiters,
                wakes,
                unflushed,
                rates: Arc::default(),
                scans: receive::Scans::default(),
                queues,
                shard: AtomicU32::new(0),
                metrics: Mutex::new(Metrics {
                    latency: HashMap::new(),
                    operation_us: Histogram::new(STATEMENT_BOUNDS_US),
                }),
                listener_up,
                tasks: vec![listener, sender, sweeper, flusher],
            }),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Ends every lease of `queue` that ran out, so that an operation on its jobs sees them as
    /// the engine would (which ends leases on time) rather than as the last sweep left them.
    /// Returns the connection and the queue it used, for a caller that reads on.
    async fn end_expired_leases(
        &self,
        queue: &str,
    ) -> Result<(deadpool_postgres::Client, db::QueueRow)> {
        let mut c = self.client().await?;
        let q = db::queue_by_name(&c, queue).await?;
        let shard = self.shard();
        while receive::expire_leases(&mut c, Some(q.id), LEASE_EXPIRY_BATCH, shard).await? as i64
            == LEASE_EXPIRY_BATCH
        {}
        Ok((c, q))
    }

    /// The connection, queue and clock (ms) a listing of `queue` reads with, once its leases
    /// that ran out are ended.
    async fn listing(&self, queue: &str) -> Result<(deadpool_postgres::Client, db::QueueRow, i64)> {
        let (c, q) = self.end_expired_leases(queue).await?;
        let now = db::sql_ms(db::now_ms(&c).await?);
        Ok((c, q, now))
    }

    /// Which row of a queue's totals this write bumps.
    fn shard(&self) -> i16 {
        (self.inner.shard.fetch_add(1, Ordering::Relaxed) % db::TOTALS_SHARDS) as i16
    }

    fn observe(&self, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        self.inner.metrics.lock().expect("metrics lock").operation_us.record(us);
    }

    /// Runs `f` in a transaction on a pooled connection and records its latency.
    async fn in_tx<T>(
        &self,
        f: impl for<'a> FnOnce(
            &'a deadpool_postgres::Transaction<'a>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>,
        >,
    ) -> Result<T> {
        let started = Instant::now();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(internal)?;
        let r = f(&tx).await;
        match r {
            Ok(v) => {
                tx.commit().await.map_err(internal)?;
                self.observe(started);
                Ok(v)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Leases from each queue in order of preference, ending expired leases and settling
    /// undeliverable jobs on the way. Also says whether a queue is to be scanned from the start
    /// soon (see `receive::Floors`).
    async fn try_receive(
        &self,
        queues: &[db::QueueRow],
        max: u32,
        lease_ms: Option<u64>,
        worker: Option<&str>,
    ) -> Result<(Vec<Delivery>, bool)> {
        let started = Instant::now();
        let mut c = self.client().await?;
        let mut out: Vec<Delivery> = Vec::new();
        let mut rescan_due = false;
        for q in queues.iter().filter(|q| !q.config.paused) {
            // Each round leases, or ends leases, or settles jobs: it makes progress, and the
            // bound only guards against a bug looping for ever.
            for _ in 0..64 {
                let want = max - out.len() as u32;
                if want == 0 {
                    break;
                }
                let got =
                    receive::lease(&mut c, &self.inner.scans, q, want, lease_ms, worker).await?;
                // As the engine: refused only when nothing was leased yet, else a short batch.
                if got.at_inflight_max && out.is_empty() && got.deliveries.is_empty() {
                    return Err(Error::LimitExceeded {
                        limit: "INFLIGHT_PER_QUEUE_MAX",
                        max: limits::INFLIGHT_PER_QUEUE_MAX as u64,
                    });
                }
                self.leased(q, &got);
                rescan_due |= got.rescan_due;
                out.extend(got.deliveries);
                if !got.doomed.is_empty() {
                    receive::settle_doomed(&mut c, q, &got.doomed, self.shard()).await?;
                }
                if got.expired_leases {
                    receive::expire_leases(&mut c, Some(q.id), LEASE_EXPIRY_BATCH, self.shard())
                        .await?;
                }
                if got.doomed.is_empty() && !got.expired_leases {
                    break;
                }
            }
        }
        self.observe(started);
        Ok((out, rescan_due))
    }

    /// Counts what a leasing statement delivered.
    fn leased(&self, q: &db::QueueRow, got: &receive::Leased) {
        let delivered = got.deliveries.len() as i64;
        self.inner.unflushed.add(q.id, totals::Hot { delivered, ..Default::default() });
        {
            let mut m = self.inner.metrics.lock().expect("metrics lock");
            let latency = m.latency.entry(q.id).or_default();
            for w in &got.waited_ms {
                latency.start_ms.record(*w);
            }
        }
    }

    /// Counts the jobs an ack completed.
    fn completed(&self, completed: Vec<lease::Completed>) {
        for d in &completed {
            self.inner.unflushed.add(d.queue_id, totals::Hot { acked: 1, ..Default::default() });
        }
        let mut m = self.inner.metrics.lock().expect("metrics lock");
        for d in completed {
            m.latency.entry(d.queue_id).or_default().completed(d.process_ms, d.deliveries);
        }
    }

    /// The rows of the queues a receive names, in its order.
    async fn queue_rows(&self, names: &[String]) -> Result<Vec<db::QueueRow>> {
        let c = self.client().await?;
        let mut v = Vec::with_capacity(names.len());
        for name in names {
            v.push(self.inner.queues.get(&c, name).await?);
        }
        Ok(v)
    }
}

impl Broker for PgBroker {
    async fn put_queue(&self, name: String, patch: QueuePatch) -> Result<(QueueInfo, bool)> {
        let (unflushed, rates) = (self.inner.unflushed.clone(), self.inner.rates.clone());
        let r = self
            .in_tx(|tx| {
                Box::pin(async move {
                    let now = db::now_ms(tx).await?;
                    let (q, created) = queues::put(tx, &name, &patch, db::sql_ms(now)).await?;
                    let info =
                        queues::infos(tx, vec![q], db::sql_ms(now), &unflushed, &rates).await?;
                    Ok((info.into_iter().next().expect("one queue"), created))
                })
            })
            .await;
        // This server's next request sees the change; the others forget at its notification.
        self.inner.queues.forget();
        r
    }

    async fn get_queue(&self, name: String) -> Result<QueueInfo> {
        let mut c = self.client().await?;
        let q = db::queue_by_name(&c, &name).await?;
        receive::expire_leases(&mut c, Some(q.id), LEASE_EXPIRY_BATCH, self.shard()).await?;
        let now = db::now_ms(&c).await?;
        let info =
            queues::infos(&c, vec![q], db::sql_ms(now), &self.inner.unflushed, &self.inner.rates)
                .await?;
        Ok(info.into_iter().next().expect("one queue"))
    }

    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let mut c = self.client().await?;
        // Counts as the engine would show them: leases that ran out are over.
        let shard = self.shard();
        while receive::expire_leases(&mut c, None, LEASE_EXPIRY_BATCH, shard).await? as i64
            == LEASE_EXPIRY_BATCH
        {}
        let all = queues::all(&c).await?;
        let now = db::now_ms(&c).await?;
        queues::infos(&c, all, db::sql_ms(now), &self.inner.unflushed, &self.inner.rates).await
    }

    async fn delete_queue(&self, name: String) -> Result<()> {
        let mut c = self.client().await?;
        let r = queues::delete(&mut c, &name).await;
        self.inner.queues.forget();
        r
    }

    async fn enqueue(&self, queue: String, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let started = Instant::now();
        let c = self.client().await?;
        let q = self.inner.queues.get(&c, &queue).await?;
        let r = enqueue::enqueue(&c, &q, &jobs, SystemClock.now_ms()).await;
        if let Err(Error::QueueNotFound(_)) = r {
            // Deleted on another server since it was cached.
            self.inner.queues.forget();
        }
        let r = r?;
        let duplicates = r.iter().filter(|e| e.duplicate).count() as i64;
        let enqueued = r.len() as i64 - duplicates;
        self.inner.unflushed.add(q.id, totals::Hot { enqueued, duplicates, ..Default::default() });
        if enqueued > 0 {
            self.inner.wakes.push(&self.inner.waiters, q.id, enqueued as usize);
        }
        self.observe(started);
        Ok(r)
    }

    async fn receive(&self, req: ReceiveRequest) -> Result<Vec<Delivery>> {
        req.check()?;
        let queues = self.queue_rows(&req.queues).await?;
        let wait = req.wait_ms.unwrap_or(queues[0].config.receive_wait_ms);
        // `check` bounds a given wait, `QueueConfig::validate` the queue's.
        assert!(wait <= limits::RECEIVE_WAIT_MAX_MS, "an unbounded long poll");
        let worker = req.worker_id.as_deref();
        let waiters = &self.inner.waiters;
        if wait == 0 || waiters.draining() {
            return Ok(self.try_receive(&queues, req.max, req.lease_ms, worker).await?.0);
        }
        let ids: Vec<i32> = queues.iter().map(|q| q.id).collect();
        // Registered before the first try, so a job enqueued in between wakes this receive.
        let reg = waiters.register(&ids, req.max).ok_or(Error::LimitExceeded {
            limit: "WAITERS_COUNT_MAX",
            max: limits::WAITERS_COUNT_MAX as u64,
        })?;
        let deadline = Instant::now() + Duration::from_millis(wait);
        let mut queues = queues;
        loop {
            if queues.iter().any(|q| q.config.paused) {
                // Resuming wakes this poll: it must see the queue's config as it is now.
                let c = self.client().await?;
                for q in &mut queues {
                    *q = db::queue_by_name(&c, &q.name).await?;
                }
            }
            reg.looking();
            let (got, rescan_due) =
                self.try_receive(&queues, req.max, req.lease_ms, worker).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !got.is_empty() || waiters.draining() || left.is_zero() {
                return Ok(got);
            }
            let mut sleep = left.min(Duration::from_millis(waiters::RECHECK_MS));
            if rescan_due {
                sleep = sleep.min(receive::EMPTY_RESCAN);
            }
            let (due, now) = {
                let c = self.client().await?;
                receive::next_due(&c, &ids).await?
            };
            if let Some(due) = due {
                let until_due = Duration::from_millis(db::ms(due - now) + 1);
                sleep = sleep.min(until_due);
            }
            tokio::select! {
                () = reg.woken() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<Vec<AckResult>> {
        let started = Instant::now();
        let c = self.client().await?;
        let mut completed = Vec::new();
        let r = lease::ack(&c, &receipts, &mut completed).await?;
        self.observe(started);
        self.completed(completed);
        Ok(r)
    }

    /// One transaction, so one commit, for the acks and the lease of one queue (the
    /// common worker cycle); a request the statement cannot serve in one go (several queues, a
    /// paused queue, no receipts) acks, then receives. If nothing is ready the acks are
    /// committed before the long poll parks. Once the acks are committed, a refused receive
    /// answers no jobs rather than an error that would hide the acks' results.
    async fn ack_receive(
        &self,
        receipts: Vec<String>,
        req: ReceiveRequest,
    ) -> Result<(Vec<AckResult>, Vec<Delivery>)> {
        req.check()?;
        check_acks(receipts.len())?;
        let queues = self.queue_rows(&req.queues).await?;
        if receipts.is_empty() {
            return Ok((Vec::new(), self.receive(req).await?));
        }
        let q = match &queues[..] {
            [q] if !q.config.paused => q,
            _ => {
                let acked = self.ack(receipts).await?;
                return Ok((acked, self.receive(req).await.unwrap_or_default()));
            }
        };
        let started = Instant::now();
        let c = self.client().await?;
        let acks = lease::AckBatch::new(&receipts)?;
        let worker = req.worker_id.as_deref();
        let lease =
            receive::Lease::new(&c, &self.inner.scans, q, req.max, req.lease_ms, worker).await?;
        let (lease_sql, taken) = lease.statement();
        let lease_params = lease.params();
        let ack_sql = c.prepare_cached(lease::ACK_SQL).await.map_err(internal)?;
        let lease_sql = c.prepare_cached(lease_sql).await.map_err(internal)?;
        // One round trip and one commit: tokio-postgres sends requests in the order their
        // futures are first polled, and `join!` polls them in order at once, so they go out
        // together (and all reach the server even if this future is then dropped). A FIFO
        // queue's lease takes the queue's lock first, after the acks, which may free a group.
        // A failed statement aborts the transaction, and the COMMIT then rolls it back: an
        // error acked nothing.
        let ack_params = acks.params();
        let lock_key = receive::fifo_lock_key(q);
        let lock_sql = match q.config.fifo {
            true => Some(c.prepare_cached(receive::FIFO_LOCK_SQL).await.map_err(internal)?),
            false => None,
        };
        // Prepared beforehand: a statement prepared on the way would go out after the others.
        let lock = async {
            match &lock_sql {
                Some(sql) => c.query(sql, &[&lock_key]).await.map(drop),
                None => Ok(()),
            }
        };
        let (begin, acked, locked, leased, commit) = tokio::join!(
            c.batch_execute("BEGIN"),
            c.query(&ack_sql, &ack_params),
            lock,
            c.query(&lease_sql, &lease_params[..taken]),
            c.batch_execute("COMMIT"),
        );
        begin.map_err(internal)?;
        let (acked, leased) = (acked.map_err(internal)?, leased.map_err(internal)?);
        locked.map_err(internal)?;
        commit.map_err(internal)?;
        let mut completed = Vec::new();
        let acked = acks.results(&acked, &mut completed);
        let got = lease.leased(&leased)?;
        drop(c);
        self.observe(started);
        self.completed(completed);
        self.leased(q, &got);
        // Jobs found undeliverable and leases found run out are left to the next receive when
        // this one delivers (a short batch), else to the plain receive below, which also looks
        // past the floors, or a held FIFO queue group by group, before it answers empty.
        if !got.deliveries.is_empty()
            || (req.wait_ms == Some(0) && got.settled() && !lease.floored())
        {
            return Ok((acked, got.deliveries));
        }
        Ok((acked, self.receive(req).await.unwrap_or_default()))
    }

    async fn fail(&self, req: FailRequest) -> Result<FailResult> {
        let started = Instant::now();
        let mut c = self.client().await?;
        let r = lease::fail(&mut c, &req, self.shard()).await?;
        self.observe(started);
        Ok(r)
    }

    async fn extend(&self, receipt: String, lease_ms: u64) -> Result<u64> {
        let mut c = self.client().await?;
        lease::extend(&mut c, &receipt, lease_ms, self.shard()).await
    }

    async fn get_job(&self, id: JobId) -> Result<JobInfo> {
        let mut c = self.client().await?;
        // A lease that ran out is ended first, so the status shows what a receive would find.
        sweep::expire_lease_of(&mut c, id, self.shard()).await?;
        let now = db::now_ms(&c).await?;
        jobs::get(&c, id, db::sql_ms(now)).await
    }

    async fn list_dead(
        &self,
        queue: String,
        filter: DeadFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        let (c, q, now) = self.listing(&queue).await?;
        dead::list(&c, &q, &filter, after, limit, now).await
    }

    async fn list_jobs(
        &self,
        queue: String,
        filter: JobFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<JobPage> {
        let (c, q, now) = self.listing(&queue).await?;
        jobs::list(&c, q.id, &filter, after, limit, now).await
    }

    async fn redrive(&self, queue: String, req: RedriveRequest) -> Result<RedriveResult> {
        // The transaction below takes a connection of its own: give this one back first.
        drop(self.end_expired_leases(&queue).await?);
        let shard = self.shard();
        self.in_tx(|tx| {
            Box::pin(async move {
                let q = db::queue_by_name(tx, &queue).await?;
                let now = db::sql_ms(db::now_ms(tx).await?);
                dead::redrive(tx, &q, &req, now, shard).await
            })
        })
        .await
    }

    async fn purge(&self, queue: String) -> Result<u64> {
        // The transaction below takes a connection of its own: give this one back first.
        drop(self.end_expired_leases(&queue).await?);
        let shard = self.shard();
        self.in_tx(|tx| {
            Box::pin(async move {
                let q = db::queue_by_name(tx, &queue).await?;
                dead::purge(tx, &q, shard).await
            })
        })
        .await
    }

    async fn delete_job(&self, id: JobId) -> Result<()> {
        let shard = self.shard();
        // As in the engine, a lease that ran out is over: the job can be deleted.
        sweep::expire_lease_of(&mut self.client().await?, id, shard).await?;
        self.in_tx(|tx| Box::pin(async move { dead::delete_job(tx, id, shard).await })).await
    }

    async fn put_doc(&self, kind: DocKind, key: String, value: Option<String>) -> Result<()> {
        self.in_tx(|tx| Box::pin(async move { docs::put(tx, kind, &key, value.as_deref()).await }))
            .await
    }

    async fn put_doc_if(
        &self,
        kind: DocKind,
        key: String,
        expected: Option<String>,
        value: Option<String>,
    ) -> Result<bool> {
        self.in_tx(|tx| {
            Box::pin(async move {
                docs::put_if(tx, kind, &key, expected.as_deref(), value.as_deref()).await
            })
        })
        .await
    }

    async fn get_doc(&self, kind: DocKind, key: String) -> Result<Option<String>> {
        let c = self.client().await?;
        docs::get(&c, kind, &key).await
    }

    async fn list_docs(&self, kind: DocKind) -> Result<Vec<(String, String)>> {
        let c = self.client().await?;
        docs::list(&c, kind).await
    }

    async fn snapshot(&self) -> Result<StoreSnapshot> {
        let queues = self.list_queues().await?;
        let status = self.inner.pool.status();
        let names: HashMap<i32, String> = {
            let c = self.client().await?;
            let rows = db::query(&c, "SELECT id, name FROM redrive.queues", &[]).await?;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        };
        let (latency, operation_us) = {
            let m = self.inner.metrics.lock().expect("metrics lock");
            let by_name = m
                .latency
                .iter()
                .filter_map(|(id, l)| names.get(id).map(|n| (n.clone(), l.clone())));
            (by_name.collect(), m.operation_us.clone())
        };
        let up = self.inner.listener_up.load(Ordering::SeqCst);
        let store = vec![
            Series {
                name: "redrive_pg_pool_connections",
                help: "Connections open in the PostgreSQL pool.",
                value: Value::Gauge(status.size as f64),
            },
            Series {
                name: "redrive_pg_pool_available",
                help: "Idle connections in the PostgreSQL pool.",
                value: Value::Gauge(status.available as f64),
            },
            Series {
                name: "redrive_pg_pool_max",
                help: "Most connections the PostgreSQL pool opens.",
                value: Value::Gauge(status.max_size as f64),
            },
            Series {
                name: "redrive_pg_listener_up",
                help: "1 while the LISTEN connection that wakes long polls is up.",
                value: Value::Gauge(if up { 1.0 } else { 0.0 }),
            },
            Series {
                name: "redrive_pg_operation_seconds",
                help: "Time of store operations (enqueue, receive, ack, fail, transactions).",
                value: Value::Histogram { histogram: operation_us, scale: 1e6 },
            },
        ];
        Ok(StoreSnapshot { queues, waiters: self.inner.waiters.count(), latency, store })
    }

    async fn drain(&self) -> Result<()> {
        self.inner.waiters.drain();
        // What this server counted goes to the table before it stops.
        self.inner.unflushed.flush(&self.inner.pool).await
    }

    fn health(&self) -> Health {
        Health { poisoned: None, durability: "postgres synchronous_commit=on".into() }
    }

    /// One round trip on a pooled connection: a lost database, a dropped one or a refused
    /// login is `StoreUnavailable`. A connection the database ended is not reused (the pool
    /// drops closed connections), so readiness comes back with the database.
    async fn ready(&self) -> Result<()> {
        let c = self.client().await?;
        db::query_one(&c, "SELECT 1", &[]).await.map(drop)
    }
}
