//! Long polls parked on this server, and the listener that wakes them.
//!
//! Every write that makes a job deliverable (or changes when one will be) runs
//! `pg_notify('redrive_ready', queue id)` in its own transaction, so the notification is sent
//! when, and only if, it commits, to every server. One dedicated connection per server
//! `LISTEN`s and wakes the receivers parked on that queue here. A receiver registers before it
//! first tries, and each receiver has its own `Notify`, whose permit is kept if the wake-up
//! comes between its try and its wait: no wake-up is lost. This server's own enqueues wake
//! only as many of its parked receivers as the new jobs need (see [`Waiters::wake_for`]).
//! Receivers also look again at the next due time of their queues' delayed jobs and leases,
//! and at least every `RECHECK_MS`, so a notification lost with the listener's connection costs
//! latency, never a job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

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
    /// Per queue, its parked receivers, the longest parked first.
    by_queue: HashMap<i32, Vec<(u64, Arc<Waiter>)>>,
    count: usize,
}

/// One parked receiver.
struct Waiter {
    notify: Notify,
    /// Woken and not looked since: a wake-up for more jobs must go to another receiver.
    woken: AtomicBool,
    /// How many jobs its receive takes.
    max: usize,
    /// Parked on several queues: its next lease may come from another one.
    several: bool,
}

impl Waiter {
    fn wake(&self) {
        self.woken.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// A parked receiver's registration; dropping it deregisters.
pub struct Registration<'a> {
    waiters: &'a Waiters,
    id: u64,
    queues: Vec<i32>,
    waiter: Arc<Waiter>,
}

impl Registration<'_> {
    /// Waits for a wake-up (one that came since the last [`Registration::looking`] returns at
    /// once).
    pub async fn woken(&self) {
        self.waiter.notify.notified().await;
    }

    /// The receiver looks at its queues now: wake-ups from here on are for jobs it may miss.
    pub fn looking(&self) {
        self.waiter.woken.store(false, Ordering::SeqCst);
    }
}

impl Waiters {
    /// Registers a receiver of up to `max` jobs on `queues`; `None` when `WAITERS_COUNT_MAX`
    /// are parked already.
    pub fn register(&self, queues: &[i32], max: u32) -> Option<Registration<'_>> {
        let mut g = self.inner.lock().expect("waiters lock");
        if g.count >= redrive_core::limits::WAITERS_COUNT_MAX {
            return None;
        }
        g.next += 1;
        g.count += 1;
        let id = g.next;
        let waiter = Arc::new(Waiter {
            notify: Notify::new(),
            woken: AtomicBool::new(false),
            max: max as usize,
            several: queues.len() > 1,
        });
        for q in queues {
            g.by_queue.entry(*q).or_default().push((id, waiter.clone()));
        }
        Some(Registration { waiters: self, id, queues: queues.to_vec(), waiter })
    }

    pub fn count(&self) -> usize {
        self.inner.lock().expect("waiters lock").count
    }

    /// Wakes every receiver parked on `queue` (each looks again): for news of unknown size,
    /// from another server or another kind of write.
    pub fn wake(&self, queue: i32) {
        let g = self.inner.lock().expect("waiters lock");
        for (_, w) in g.by_queue.get(&queue).into_iter().flatten() {
            w.wake();
        }
    }

    /// Wakes enough receivers parked on `queue` to take `jobs` new jobs, the longest parked
    /// first, not counting those woken already that have not looked yet (they may be taking
    /// jobs of an earlier wake-up); and every receiver parked on several queues, whose next
    /// lease may come from another. Waking them all would have every parked receiver run a
    /// receive (a statement each) for every enqueue, all but one finding nothing.
    pub fn wake_for(&self, queue: i32, jobs: usize) {
        let g = self.inner.lock().expect("waiters lock");
        let mut room = 0;
        for (_, w) in g.by_queue.get(&queue).into_iter().flatten() {
            if w.several {
                w.wake();
            } else if room < jobs && !w.woken.load(Ordering::SeqCst) {
                w.wake();
                room += w.max;
            }
        }
    }

    pub fn wake_all(&self) {
        let g = self.inner.lock().expect("waiters lock");
        for (_, w) in g.by_queue.values().flatten() {
            w.wake();
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
        drop(g);
        // A wake-up it took and did not act on (it left with jobs of an earlier one, or its
        // request went away) goes to another receiver.
        if self.waiter.woken.load(Ordering::SeqCst) {
            for q in &self.queues {
                self.waiters.wake_for(*q, self.waiter.max);
            }
        }
    }
}

/// Runs the listener for ever (the broker aborts it when dropped): connects, `LISTEN`s, wakes
/// waiters on each notification of new work and forgets the cached queue rows on each change
/// of a queue; after losing the connection, wakes everyone (they look again themselves), stops
/// caching queue rows, and reconnects. The notifications this server's [`Wakes`] sent are
/// skipped: it woke its own receivers before sending them, and a second wake-up of every
/// parked receiver per enqueue only has them all look again for nothing.
pub async fn listen(
    config: tokio_postgres::Config,
    tls: crate::tls::Tls,
    waiters: Arc<Waiters>,
    wakes: Arc<Wakes>,
    queues: Arc<QueueCache>,
    up: Arc<AtomicBool>,
) {
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut conn)) => {
                let (w, own, cache) = (waiters.clone(), wakes.clone(), queues.clone());
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if n.channel() == QUEUE_CHANNEL {
                                    cache.forget();
                                } else if n.process_id() == own.sender_pid.load(Ordering::SeqCst) {
                                    // Sent by this server, whose receivers were woken already.
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
    /// The backend process of the sender's connection (0 before it connects): its
    /// notifications come back to this server's listener, which skips them.
    sender_pid: AtomicI32,
}

impl Wakes {
    /// Announces, to every server, that `queue` has `jobs` new jobs; receivers parked here are
    /// woken at once without waiting for the round trip, as many as the jobs need.
    pub fn push(&self, waiters: &Waiters, queue: i32, jobs: usize) {
        waiters.wake_for(queue, jobs);
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
pub async fn send(mut config: tokio_postgres::Config, tls: crate::tls::Tls, wakes: Arc<Wakes>) {
    const SQL: &str = "SELECT count(pg_notify('redrive_ready', q::text)) FROM unnest($1::int4[]) q";
    config.options("-c synchronous_commit=off");
    config.application_name("redrive-wakes");
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, conn)) => {
                let driver = tokio::spawn(conn);
                match client.query_one("SELECT pg_backend_pid()", &[]).await {
                    Ok(row) => wakes.sender_pid.store(row.get(0), Ordering::SeqCst),
                    Err(e) => {
                        tracing::warn!(error = %e, "wake-up sender cannot start");
                        driver.abort();
                        tokio::time::sleep(Duration::from_millis(RECONNECT_MS)).await;
                        continue;
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn woken(r: &Registration<'_>) -> bool {
        r.waiter.woken.load(Ordering::SeqCst)
    }

    #[test]
    fn new_jobs_wake_as_many_parked_receivers_as_they_need_longest_parked_first() {
        let w = Waiters::default();
        let a = w.register(&[1], 10).unwrap();
        let b = w.register(&[1], 10).unwrap();
        let c = w.register(&[1], 10).unwrap();
        let other = w.register(&[2], 10).unwrap();
        w.wake_for(1, 15);
        assert_eq!([woken(&a), woken(&b), woken(&c), woken(&other)], [true, true, false, false]);
        // More jobs before those looked: the next receiver is woken, not the same ones again.
        w.wake_for(1, 1);
        assert!(woken(&c));
        // Once they look, they are counted again.
        a.looking();
        b.looking();
        c.looking();
        w.wake_for(1, 10);
        assert_eq!([woken(&a), woken(&b), woken(&c)], [true, false, false]);
        // News of unknown size wakes everyone on the queue.
        w.wake(1);
        assert_eq!([woken(&b), woken(&c), woken(&other)], [true, true, false]);
    }

    #[test]
    fn a_receiver_on_several_queues_is_always_woken() {
        let w = Waiters::default();
        let one = w.register(&[1], 10).unwrap();
        let several = w.register(&[2, 1], 10).unwrap();
        w.wake_for(1, 1);
        assert!(woken(&one) && woken(&several));
    }

    #[test]
    fn a_wake_up_taken_and_not_acted_on_goes_to_another_receiver() {
        let w = Waiters::default();
        let gone = w.register(&[1], 10).unwrap();
        let next = w.register(&[1], 10).unwrap();
        w.wake_for(1, 10);
        assert!(woken(&gone) && !woken(&next));
        drop(gone);
        assert!(woken(&next));
        // One that looked since passes nothing on.
        let third = w.register(&[1], 10).unwrap();
        next.looking();
        drop(next);
        assert!(!woken(&third));
        assert_eq!(w.count(), 1);
    }
}
