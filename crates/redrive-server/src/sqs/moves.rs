//! Message move tasks: moving a dead-letter queue's messages back to their source queues (or to
//! a given queue) in the background, at an optional rate, one running task per source queue.
//! Tasks live in memory and stop at shutdown (`FAILED`, the messages moved so far stay moved):
//! each runs as a [`crate::Background`] task and checks its cancellation between steps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redrive_core::broker::{DeadFilter, RedriveRequest};
use redrive_core::time::{Clock, SystemClock};
use redrive_core::Broker;

use crate::Shared;

/// Tasks kept per source queue (SQS lists the 10 most recent).
const HISTORY_PER_SOURCE: usize = 10;
/// Messages moved per step when no rate is given.
const STEP_MAX: usize = 500;
/// Why a task ended at shutdown.
const SHUT_DOWN: &str = "the server shut down";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Completed => "COMPLETED",
            Status::Cancelling => "CANCELLING",
            Status::Cancelled => "CANCELLED",
            Status::Failed => "FAILED",
        }
    }
}

pub struct MoveTask {
    pub handle: String,
    /// What was asked for.
    pub spec: NewTask,
    pub started_at: u64,
    pub moved: AtomicU64,
    cancel: AtomicBool,
    state: Mutex<(Status, Option<String>)>,
}

impl MoveTask {
    pub fn status(&self) -> (Status, Option<String>) {
        self.state.lock().expect("not poisoned").clone()
    }

    fn finish(&self, status: Status, reason: Option<String>) {
        *self.state.lock().expect("not poisoned") = (status, reason);
    }
}

#[derive(Default)]
pub struct MoveTasks {
    tasks: Mutex<Vec<Arc<MoveTask>>>,
}

/// What a task is asked to do: which dead-letter queue, where to, how fast.
pub struct NewTask {
    pub source: String,
    pub source_arn: String,
    pub destination: Option<String>,
    pub destination_arn: Option<String>,
    pub rate: Option<u32>,
    pub to_move: u64,
}

/// A task is already running for this source queue (its ARN).
#[derive(Debug)]
pub struct AlreadyRunning(pub String);

impl std::fmt::Display for AlreadyRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "A message move task is already running for {}.", self.0)
    }
}

impl MoveTasks {
    /// Starts a task unless one is running for the same source; returns its handle.
    pub fn start<B: Broker>(&self, state: Shared<B>, t: NewTask) -> Result<String, AlreadyRunning> {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        if tasks.iter().any(|x| x.spec.source == t.source && x.status().0 == Status::Running) {
            return Err(AlreadyRunning(t.source_arn));
        }
        let started_at = SystemClock.now_ms();
        let task = Arc::new(MoveTask {
            handle: uuid::Uuid::now_v7().to_string(),
            spec: t,
            started_at,
            moved: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
            state: Mutex::new((Status::Running, None)),
        });
        tasks.push(task.clone());
        let same_source = tasks.iter().filter(|x| x.spec.source == task.spec.source).count();
        if same_source > HISTORY_PER_SOURCE {
            let oldest =
                tasks.iter().position(|x| x.spec.source == task.spec.source).expect("counted");
            tasks.remove(oldest);
        }
        let handle = task.handle.clone();
        let background = &state.background;
        background.tasks.spawn(run(state.clone(), task));
        Ok(handle)
    }

    /// The most recent tasks of a source queue, newest first.
    pub fn list(&self, source: &str, max: usize) -> Vec<Arc<MoveTask>> {
        let tasks = self.tasks.lock().expect("not poisoned");
        tasks.iter().rev().filter(|t| t.spec.source == source).take(max).cloned().collect()
    }

    /// Asks a running task to stop; `None` if there is no such running task.
    pub fn cancel(&self, handle: &str) -> Option<Arc<MoveTask>> {
        let tasks = self.tasks.lock().expect("not poisoned");
        let task = tasks.iter().find(|t| t.handle == handle && t.status().0 == Status::Running)?;
        task.cancel.store(true, Ordering::Relaxed);
        task.finish(Status::Cancelling, None);
        Some(task.clone())
    }
}

/// Moves the source's dead letters in steps of at most `rate` (per second) or `STEP_MAX`.
async fn run<B: Broker>(state: Shared<B>, task: Arc<MoveTask>) {
    let broker = &state.broker;
    let step = task.spec.rate.map_or(STEP_MAX, |r| (r as usize).clamp(1, STEP_MAX));
    let mut after = None;
    let stopping = &state.background.stopping;
    loop {
        if task.cancel.load(Ordering::Relaxed) {
            return task.finish(Status::Cancelled, None);
        }
        if stopping.is_cancelled() {
            return task.finish(Status::Failed, Some(SHUT_DOWN.into()));
        }
        let started = tokio::time::Instant::now();
        let page =
            broker.list_dead(task.spec.source.clone(), DeadFilter::default(), after, step).await;
        let page = match page {
            Ok(p) => p,
            Err(e) => return task.finish(Status::Failed, Some(e.to_string())),
        };
        if page.jobs.is_empty() {
            return task.finish(Status::Completed, None);
        }
        after = page.jobs.last().map(|j| j.id);
        let req = RedriveRequest {
            ids: Some(page.jobs.iter().map(|j| j.id).collect()),
            to: task.spec.destination.clone(),
            ..RedriveRequest::default()
        };
        // Messages of the page that left meanwhile (deleted, expired) come back as skipped.
        let moved = match broker.redrive(task.spec.source.clone(), req).await {
            Ok(r) => r.moved,
            Err(e) => return task.finish(Status::Failed, Some(e.to_string())),
        };
        task.moved.fetch_add(moved, Ordering::Relaxed);
        if let Some(rate) = task.spec.rate {
            let due = Duration::from_secs_f64(page.jobs.len() as f64 / rate.max(1) as f64);
            tokio::select! {
                () = tokio::time::sleep_until(started + due) => {}
                () = stopping.cancelled() => {
                    return task.finish(Status::Failed, Some(SHUT_DOWN.into()));
                }
            }
        }
    }
}
