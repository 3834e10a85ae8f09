//! The loop that moves one task's messages step by step, and the sweeper that resumes the tasks
//! whose claim ran out. Both change a task only by compare-and-set (see the parent module).

use std::collections::HashSet;
use std::time::Duration;

use redrive_core::broker::{DeadFilter, DocKind, RedriveRequest};
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{limits, Broker, Error, JobId, Result};

use super::{remove, swap, Docs, Status, Stored, TaskDoc, SOURCE_PREFIX};
use crate::Shared;

/// Every this many sweeps (about a minute) the tasks of deleted queues are forgotten: a deleted
/// queue is gone for ListMessageMoveTasks, and its history would count against the bound.
const FORGET_EVERY_SWEEPS: u64 = 30;
/// Re-reads after a lost write before the runner leaves the task to the sweeper.
const SETTLE_ATTEMPTS_MAX: usize = 5;

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// Runs a task this server has claimed: before each step, writes the progress so far and
/// renews the claim (which also finds out whether the task was cancelled or taken over), then
/// moves at most `rate` (per second) or [`limits::MOVE_TASK_STEP_COUNT_MAX`] dead letters.
pub(super) async fn run<B: Broker>(state: Shared<B>, mut task: Stored) {
    let handle = task.doc.handle.clone();
    let _here = RunsHere { state: &state, handle: &handle };
    let stopping = &state.background.stopping;
    let max = limits::MOVE_TASK_STEP_COUNT_MAX;
    let step = task.doc.rate.map_or(max, |r| (r as usize).clamp(1, max));
    loop {
        if stopping.is_cancelled() {
            // Released, not failed: the first server to sweep resumes it from its cursor.
            write(&state, &task, TaskDoc { lease_until_ms: 0, ..task.doc.clone() }).await;
            break;
        }
        let lease_until_ms = now_ms() + limits::MOVE_TASK_LEASE_MS;
        let renewed = TaskDoc { lease_until_ms, ..task.doc.clone() };
        let Some(t) = write(&state, &task, renewed).await else { break };
        task = t;
        let started = tokio::time::Instant::now();
        let listed = match step_once(&state.broker, &task.doc, step).await {
            Ok(Some((listed, moved, last))) => {
                task.doc.moved += moved;
                task.doc.after = Some(last);
                listed
            }
            Ok(None) => {
                write(&state, &task, finished(&task.doc, Status::Completed, None)).await;
                break;
            }
            // The store is away or shedding: the claim runs out and a sweep resumes the task.
            Err(e) if transient(&e) => {
                tracing::warn!(%handle, error = %e, "move task paused until the store answers");
                break;
            }
            Err(e) => {
                let failed = finished(&task.doc, Status::Failed, Some(e.to_string()));
                write(&state, &task, failed).await;
                break;
            }
        };
        if let Some(rate) = task.doc.rate {
            let due = Duration::from_secs_f64(listed as f64 / f64::from(rate.max(1)));
            tokio::select! {
                () = tokio::time::sleep_until(started + due) => {}
                () = stopping.cancelled() => {}
            }
        }
    }
}

/// While alive, this server's sweeper leaves the task alone; dropped however the runner ends
/// (a panic included), so a task is never left unresumable here.
struct RunsHere<'a, B: Broker> {
    state: &'a Shared<B>,
    handle: &'a str,
}

impl<B: Broker> Drop for RunsHere<'_, B> {
    fn drop(&mut self) {
        self.state.moves.ended_here(self.handle);
    }
}

/// One step: lists up to `step` dead letters after the cursor and redrives them by id. `None`
/// when there are none left; else how many were listed and moved, and the last one listed.
async fn step_once(
    broker: &impl Broker,
    task: &TaskDoc,
    step: usize,
) -> Result<Option<(usize, u64, JobId)>> {
    let page =
        broker.list_dead(task.source.clone(), DeadFilter::default(), task.after, step).await?;
    let Some(last) = page.jobs.last().map(|j| j.id) else { return Ok(None) };
    let req = RedriveRequest {
        ids: Some(page.jobs.iter().map(|j| j.id).collect()),
        to: task.destination.clone(),
        ..RedriveRequest::default()
    };
    // Messages of the page that left meanwhile (deleted, expired) come back as skipped.
    let moved = broker.redrive(task.source.clone(), req).await?.moved;
    Ok(Some((page.jobs.len(), moved, last)))
}

fn finished(task: &TaskDoc, status: Status, failure_reason: Option<String>) -> TaskDoc {
    TaskDoc { status, failure_reason, lease_until_ms: 0, ..task.clone() }
}

/// Errors after which the task is worth resuming later rather than failing.
fn transient(e: &Error) -> bool {
    matches!(
        e,
        Error::StoreUnavailable(_)
            | Error::Poisoned(_)
            | Error::Overloaded
            | Error::ShuttingDown
            | Error::Timeout
    )
}

/// Writes `to` over `from`; the new stored task, or `None` when the runner must stop: the
/// write lost (the task was cancelled, which this settles, or taken over) or the store failed.
async fn write<B: Broker>(state: &Shared<B>, from: &Stored, to: TaskDoc) -> Option<Stored> {
    let to = Stored::new(to);
    match swap(&state.broker, from, &to).await {
        Ok(true) => Some(to),
        Ok(false) => {
            settle(state, &to.doc).await;
            None
        }
        Err(e) => {
            tracing::warn!(handle = %from.doc.handle, error = %e, "move task progress not written");
            None
        }
    }
}

/// After a lost write of `wanted`: re-reads the task, and writes `CANCELLED` if it was
/// cancelled while this server still holds it; anything else (taken over by another server,
/// over, deleted) is no longer this runner's to change.
async fn settle<B: Broker>(state: &Shared<B>, wanted: &TaskDoc) {
    for _ in 0..SETTLE_ATTEMPTS_MAX {
        let docs = match Docs::read(&state.broker).await {
            Ok(d) => d,
            Err(e) => return tracing::warn!(error = %e, "move task not settled"),
        };
        let Some(current) = docs.tasks.get(&wanted.handle) else { return };
        if current.doc.runner != state.moves.runner || current.doc.status != Status::Cancelling {
            return;
        }
        let cancelled = Stored::new(finished(wanted, Status::Cancelled, None));
        match swap(&state.broker, current, &cancelled).await {
            Ok(false) => continue,
            Ok(true) => return,
            Err(e) => return tracing::warn!(error = %e, "move task not settled"),
        }
    }
}

/// Every [`limits::MOVE_TASK_SWEEP_INTERVAL_MS`] until shutdown, starting at once: resumes
/// the tasks whose claim ran out (see [`sweep_once`]).
pub(super) async fn sweep<B: Broker>(state: Shared<B>) {
    let interval = Duration::from_millis(limits::MOVE_TASK_SWEEP_INTERVAL_MS);
    let stopping = &state.background.stopping;
    for pass in 0u64.. {
        if let Err(e) = sweep_once(&state, pass % FORGET_EVERY_SWEEPS == 0).await {
            tracing::warn!(error = %e, "move task sweep failed");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// Claims and resumes each running task whose claim ran out, ends each cancelling one, and
/// removes each whose start never finished (its source's pointer never came to name it). A
/// lost compare-and-set means another server got there first.
async fn sweep_once<B: Broker>(state: &Shared<B>, forget: bool) -> Result<()> {
    let (broker, moves) = (&state.broker, &state.moves);
    let docs = Docs::read(broker).await?;
    let now = now_ms();
    for task in docs.tasks.values() {
        let t = &task.doc;
        if t.status.is_over() || t.lease_until_ms > now || moves.runs_here(&t.handle) {
            continue;
        }
        let mine = moves.runner.clone();
        if t.status == Status::Cancelling {
            let cancelled = TaskDoc { runner: mine, ..finished(t, Status::Cancelled, None) };
            swap(broker, task, &Stored::new(cancelled)).await?;
        } else if docs.pointed(&t.source).map(|p| &p.doc.handle) != Some(&t.handle) {
            remove(broker, task).await?;
        } else {
            let lease_until_ms = now + limits::MOVE_TASK_LEASE_MS;
            let claimed = Stored::new(TaskDoc { runner: mine, lease_until_ms, ..t.clone() });
            if swap(broker, task, &claimed).await? {
                tracing::info!(handle = %t.handle, source = %t.source, "move task resumed");
                moves.spawn(state, claimed);
            }
        }
    }
    if forget {
        forget_deleted_sources(broker, &docs).await?;
    }
    Ok(())
}

/// Deletes the tasks that are over, and the pointers, of source queues that no longer exist.
/// The queues are listed after `docs` was read, so a task started meanwhile (its queue existed
/// before it was written) is never taken for a deleted queue's.
async fn forget_deleted_sources(broker: &impl Broker, docs: &Docs) -> Result<()> {
    let queues: HashSet<String> = broker.list_queues().await?.into_iter().map(|q| q.name).collect();
    let gone = |source: &str| !queues.contains(source);
    for task in docs.tasks.values().filter(|t| t.doc.status.is_over() && gone(&t.doc.source)) {
        remove(broker, task).await?;
    }
    for (source, text) in docs.pointers.iter().filter(|(s, _)| gone(s)) {
        if docs.pointed(source).is_none_or(|t| t.doc.status.is_over()) {
            let key = format!("{SOURCE_PREFIX}{source}");
            broker.put_doc_if(DocKind::MoveTask, key, Some(text.clone()), None).await?;
        }
    }
    Ok(())
}
