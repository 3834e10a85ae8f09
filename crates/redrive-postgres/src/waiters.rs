//! Long polls parked on this server, and the listener that wakes them.
//!
//! Every write that makes a job deliverable (or changes when one will be) runs
//! `pg_notify('redrive_ready', queue id)` in its own transaction, so the notification is sent
//! when, and only if, it commits, to every server. One dedicated connection per server
//! `LISTEN`s and wakes the receivers parked on that queue here. A receiver registers before it
//! first tries, and each receiver has its own `Notify`, whose permit is kept if the wake-up
//! comes between its try and its wait: no wake-up is lost. Receivers also look again at the
//! next due time of their queues' delayed jobs and leases, and at least every
//! `RECHECK_MS`, so a notification lost with the listener's connection costs latency, never a
//! job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::queue_cache::QueueCache;

/// The channel on which a change to any queue row is announced (migration 4's trigger).
const QUEUE_CHANNEL: &str = "redrive_queue";

/// Longest a parked receive sleeps without looking again.
pub const RECHECK_MS: u64 = 1000;
/// Pause before the listener reconnects after losing its connection.
const RECONNECT_MS: u64 = 500;

#[derive(Default)]
pub struct Waiters {
    inner: Mutex<Inner>,
    draining: AtomicBool,
}

#[derive(Default)]
struct Inner {
    next: u64,
    by_queue: HashMap<i32, Vec<(u64, Arc<Notify>)>>,
    count: usize,
}

/// A parked receiver's registration; dropping it deregisters.
pub struct Registration<'a> {
    waiters: &'a Waiters,
    id: u64,
    queues: Vec<i32>,
    pub notify: Arc<Notify>,
}

impl Waiters {
    /// Registers a receiver on `queues`; `None` when `WAITERS_COUNT_MAX` are parked already.
    pub fn register(&self, queues: &[i32]) -> Option<Registration<'_>> {
        let mut g = self.inner.lock().expect("waiters lock");
        if g.count >= redrive_core::limits::WAITERS_COUNT_MAX {
            return None;
        }
        g.next += 1;
        g.count += 1;
        let id = g.next;
        let notify = Arc::new(Notify::new());
        for q in queues {
            g.by_queue.entry(*q).or_default().push((id, notify.clone()));
        }
        Some(Registration { waiters: self, id, queues: queues.to_vec(), notify })
    }

    pub fn count(&self) -> usize {
        self.inner.lock().expect("waiters lock").count
    }

    /// Wakes every receiver parked on `queue` (each looks again; one of them gets the job).
    pub fn wake(&self, queue: i32) {
        let g = self.inner.lock().expect("waiters lock");
        for (_, n) in g.by_queue.get(&queue).into_iter().flatten() {
            n.notify_one();
        }
    }

    pub fn wake_all(&self) {
        let g = self.inner.lock().expect("waiters lock");
        for (_, n) in g.by_queue.values().flatten() {
            n.notify_one();
        }
    }

    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut g = self.waiters.inner.lock().expect("waiters lock");
        g.count -= 1;
        for q in &self.queues {
            if let Some(v) = g.by_queue.get_mut(q) {
                v.retain(|(id, _)| *id != self.id);
                if v.is_empty() {
                    g.by_queue.remove(q);
                }
            }
        }
    }
}

/// Runs the listener for ever (the broker aborts it when dropped): connects, `LISTEN`s, wakes
/// waiters on each notification of new work and forgets the cached queue rows on each change
/// of a queue; after losing the connection, wakes everyone (they look again themselves), stops
/// caching queue rows, and reconnects.
pub async fn listen(
    config: tokio_postgres::Config,
    waiters: Arc<Waiters>,
    queues: Arc<QueueCache>,
    up: Arc<AtomicBool>,
) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (w, cache) = (waiters.clone(), queues.clone());
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if n.channel() == QUEUE_CHANNEL {
                                    cache.forget();
                                } else if let Ok(q) = n.payload().parse::<i32>() {
                                    w.wake(q);
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "listener connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                });
                match client.batch_execute("LISTEN redrive_ready; LISTEN redrive_queue").await {
                    Ok(()) => {
                        queues.set_live(true);
                        up.store(true, Ordering::SeqCst);
                        let _ = driver.await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN failed");
                        driver.abort();
                    }
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "listener cannot connect"),
        }
        up.store(false, Ordering::SeqCst);
        queues.set_live(false);
        waiters.wake_all();
        tokio::time::sleep(Duration::from_millis(RECONNECT_MS)).await;
    }
}

/// Wake-ups owed after a commit: queue ids that the sender announces with `pg_notify` from
/// a transaction of its own.
///
/// A `NOTIFY` inside a writing transaction holds PostgreSQL's one notification lock from
/// pre-commit until the commit record is flushed, so every enqueue that notified committed
/// one after another and the database's group commit never formed. The sender's transaction
/// writes nothing and runs with `synchronous_commit = off`, so it holds the lock for
/// microseconds; the enqueue committed (and was flushed) before its id is pushed here, so a
/// woken receiver always finds the job. Ids pushed while a send is in flight go out together
/// in the next one. A wake-up lost with the sender's connection costs latency (receivers look
/// again every [`RECHECK_MS`]), never a job. The SQL function `redrive.enqueue` keeps its
/// `NOTIFY` inside the caller's transaction: there the commit is the application's.
#[derive(Default)]
pub struct Wakes {
    pending: Mutex<Vec<i32>>,
    ready: Notify,
}

impl Wakes {
    /// Announces, to every server, that `queue` has new work; receivers parked here are woken
    /// at once without waiting for the round trip.
    pub fn push(&self, waiters: &Waiters, queue: i32) {
        waiters.wake(queue);
        let mut p = self.pending.lock().expect("wakes lock");
        if !p.contains(&queue) {
            p.push(queue);
        }
        drop(p);
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<i32> {
        std::mem::take(&mut *self.pending.lock().expect("wakes lock"))
    }
}

/// Sends the owed wake-ups for ever (the broker aborts it when dropped), on a connection of
/// its own, reconnecting after a failure.
pub async fn send(mut config: tokio_postgres::Config, wakes: Arc<Wakes>) {
    const SQL: &str = "SELECT count(pg_notify('redrive_ready', q::text)) FROM unnest($1::int4[]) q";
    config.options("-c synchronous_commit=off");
    config.application_name("redrive-wakes");
    loop {
        match config.connect(NoTls).await {
            Ok((client, conn)) => {
                let driver = tokio::spawn(conn);
                loop {
                    wakes.ready.notified().await;
                    let ids = wakes.take();
                    if ids.is_empty() {
                        continue;
                    }
                    if let Err(e) = client.query_one(SQL, &[&ids]).await {
                        tracing::warn!(error = %e, "sending wake-ups failed");
                        break;
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "wake-up sender cannot connect"),
        }
        tokio::time::sleep(Duration::from_millis(RECONNECT_MS)).await;
    }
}
