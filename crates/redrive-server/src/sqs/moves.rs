//! Message move tasks: moving a dead-letter queue's messages back to their source queues (or to
//! a given queue) in the background, at an optional rate, one running task per source queue.
//! Tasks live in the store, so they survive restarts and every server of a PostgreSQL fleet
//! sees the same ones; each running task is run by one server at a time.
//!
//! # In the store
//! Each task is a document of kind [`DocKind::MoveTask`] keyed `task/<handle>`, a [`TaskDoc`] in
//! JSON: what was asked, progress (`moved`, and the cursor `after`: the last dead letter a step
//! listed), status, and the claim of the server running it (`runner`, `lease_until_ms`). Every
//! change is a compare-and-set ([`Broker::put_doc_if`]) from the exact text last read or
//! written, so no write is lost to a racing one: whoever loses re-reads and decides again.
//!
//! # One running task per source queue, exactly
//! Each source queue also has a pointer, `source/<queue>`, naming its most recent task. Start
//! writes the task first, then moves the pointer by compare-and-set from a task that is over (or
//! from none) to the new one; of two racing starts one moves it, and the other deletes its task
//! and answers that one is running. A task runs only while the pointer names it: one the pointer
//! never came to name (its server died between the two writes) is removed by the sweeper.
//!
//! # One server runs each task
//! The server running a task renews its claim with every step's progress ([`limits::
//! MOVE_TASK_LEASE_MS`]). Every server sweeps every [`limits::MOVE_TASK_SWEEP_INTERVAL_MS`] for
//! running tasks whose claim ran out (a crashed server's, or one released at shutdown, which
//! sets it to 0 instead of failing the task) and claims them by compare-and-set, so one of them
//! resumes each from its cursor. A runner whose write fails re-reads: another server took the
//! task over (it stops), or it was cancelled (it writes `CANCELLED`). The step itself is a
//! redrive by id, a compare-and-set on each message's state, so even a runner that lost its
//! claim mid-step moves no message twice.
//!
//! # Layout
//! - here: the stored form, start, list and cancel;
//! - `runner`: the loop that moves a task's messages, and the sweeper that resumes tasks.

mod runner;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use redrive_core::broker::DocKind;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{limits, Broker, Error, JobId, Result};
use serde::{Deserialize, Serialize};

use crate::Shared;

const TASK_PREFIX: &str = "task/";
const SOURCE_PREFIX: &str = "source/";
const _: () =
    assert!(SOURCE_PREFIX.len() + limits::QUEUE_NAME_LENGTH_MAX <= limits::DOC_KEY_BYTES_MAX);
/// Attempts at a cancellation while the runner keeps writing between its read and its write.
const CANCEL_ATTEMPTS_MAX: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

    /// Whether the task will move nothing more (a `CANCELLING` task may finish its step).
    pub fn is_over(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled | Status::Failed)
    }
}

/// A task's handle as SQS hands it out: base64 of `{"taskId": …, "sourceArn": …}`.
pub fn wire_handle(task_id: &str, source_arn: &str) -> String {
    use base64::Engine;
    let json = serde_json::json!({"taskId": task_id, "sourceArn": source_arn});
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

/// The task id inside a handle [`wire_handle`] made; `None` for text that is not one.
pub fn task_id_of(wire: &str) -> Option<(String, String)> {
    use base64::Engine;
    let json = base64::engine::general_purpose::STANDARD.decode(wire).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let source = v.get("sourceArn")?.as_str()?.to_owned();
    Some((v.get("taskId")?.as_str()?.to_owned(), source))
}

/// A task as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDoc {
    pub handle: String,
    pub source: String,
    pub source_arn: String,
    pub destination: Option<String>,
    pub destination_arn: Option<String>,
    pub rate: Option<u32>,
    /// Dead letters in the source when the task started.
    pub to_move: u64,
    pub started_at: u64,
    pub moved: u64,
    pub status: Status,
    pub failure_reason: Option<String>,
    /// The last dead letter a step listed: the next step lists the ones after it.
    pub after: Option<JobId>,
    /// The server process running (or that last ran) the task, and until when its claim lasts.
    pub runner: String,
    pub lease_until_ms: u64,
}

/// A task read from (or just written to) the store, with the exact text a compare-and-set on
/// it must expect.
#[derive(Clone, Debug)]
struct Stored {
    doc: TaskDoc,
    text: String,
}

impl Stored {
    fn new(doc: TaskDoc) -> Stored {
        let text = serde_json::to_string(&doc).expect("a task serializes");
        Stored { doc, text }
    }
}

/// The stored form of a source queue's pointer to its most recent task.
#[derive(Serialize, Deserialize)]
struct Pointer {
    handle: String,
}

/// Every move task document: the tasks by handle, and the pointers (their text) by source.
#[derive(Default)]
struct Docs {
    tasks: HashMap<String, Stored>,
    pointers: HashMap<String, String>,
}

impl Docs {
    async fn read(broker: &impl Broker) -> Result<Docs> {
        let mut docs = Docs::default();
        for (key, text) in broker.list_docs(DocKind::MoveTask).await? {
            if let Some(handle) = key.strip_prefix(TASK_PREFIX) {
                match serde_json::from_str(&text) {
                    Ok(doc) => {
                        docs.tasks.insert(handle.to_owned(), Stored { doc, text });
                    }
                    Err(e) => tracing::warn!(%key, error = %e, "unreadable move task skipped"),
                }
            } else if let Some(source) = key.strip_prefix(SOURCE_PREFIX) {
                docs.pointers.insert(source.to_owned(), text);
            }
        }
        Ok(docs)
    }

    /// The task `source`'s pointer names, if it exists.
    fn pointed(&self, source: &str) -> Option<&Stored> {
        let text = self.pointers.get(source)?;
        let p: Pointer = serde_json::from_str(text).ok()?;
        self.tasks.get(&p.handle)
    }

    /// The tasks of `source`, newest first (handles are UUIDv7: they break ties in time order).
    fn of_source(&self, source: &str) -> Vec<&Stored> {
        let mut tasks: Vec<&Stored> =
            self.tasks.values().filter(|t| t.doc.source == source).collect();
        tasks.sort_by(|a, b| {
            (b.doc.started_at, &b.doc.handle).cmp(&(a.doc.started_at, &a.doc.handle))
        });
        tasks
    }
}

/// A conditional write of a task: `Ok(true)` if it still held `from.text`.
async fn swap(broker: &impl Broker, from: &Stored, to: &Stored) -> Result<bool> {
    let key = format!("{TASK_PREFIX}{}", from.doc.handle);
    broker.put_doc_if(DocKind::MoveTask, key, Some(from.text.clone()), Some(to.text.clone())).await
}

/// Deletes a task if it still holds `from.text`.
async fn remove(broker: &impl Broker, from: &Stored) -> Result<bool> {
    let key = format!("{TASK_PREFIX}{}", from.doc.handle);
    broker.put_doc_if(DocKind::MoveTask, key, Some(from.text.clone()), None).await
}

/// This server's side of the move tasks: its runner id, and the tasks it runs now (which its
/// sweeper leaves alone however late their renewal).
pub struct MoveTasks {
    runner: String,
    running: Mutex<HashSet<String>>,
}

impl Default for MoveTasks {
    fn default() -> MoveTasks {
        MoveTasks { runner: uuid::Uuid::now_v7().to_string(), running: Mutex::default() }
    }
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

/// Why a task did not start.
#[derive(Debug)]
pub enum StartError {
    /// A task is already running for this source queue (its ARN).
    AlreadyRunning(String),
    Store(Error),
}

impl From<Error> for StartError {
    fn from(e: Error) -> StartError {
        StartError::Store(e)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AlreadyRunning(_) => f.write_str(
                "There is already a task running. Only one active task is allowed for each source queue arn at a given time.",
            ),
            StartError::Store(e) => e.fmt(f),
        }
    }
}

impl MoveTasks {
    /// Starts a task unless one is running for the same source; returns its handle.
    pub async fn start<B: Broker>(
        &self,
        state: Shared<B>,
        t: NewTask,
    ) -> std::result::Result<String, StartError> {
        let broker = &state.broker;
        let now = SystemClock.now_ms();
        let task = Stored::new(TaskDoc {
            handle: uuid::Uuid::now_v7().to_string(),
            source: t.source,
            source_arn: t.source_arn,
            destination: t.destination,
            destination_arn: t.destination_arn,
            rate: t.rate,
            to_move: t.to_move,
            started_at: now,
            moved: 0,
            status: Status::Running,
            failure_reason: None,
            after: None,
            runner: self.runner.clone(),
            lease_until_ms: now + limits::MOVE_TASK_LEASE_MS,
        });
        let (handle, source) = (task.doc.handle.clone(), task.doc.source.clone());
        let key = format!("{TASK_PREFIX}{handle}");
        let text = Some(task.text.clone());
        if !broker.put_doc_if(DocKind::MoveTask, key, None, text).await? {
            return Err(Error::Internal(format!("move task handle {handle} taken")).into());
        }
        match point_source_at(broker, &source, &handle).await {
            Ok(true) => {}
            not_started => {
                if let Err(e) = remove(broker, &task).await {
                    tracing::warn!(%handle, error = %e, "a move task that did not start is left");
                }
                return Err(match not_started {
                    Err(e) => e.into(),
                    Ok(_) => StartError::AlreadyRunning(task.doc.source_arn),
                });
            }
        }
        self.spawn(&state, task);
        if let Err(e) = trim_history(broker, &source).await {
            tracing::warn!(%source, error = %e, "could not forget old move tasks");
        }
        Ok(handle)
    }

    /// Runs `task`, which this server has just claimed, as a background task.
    fn spawn<B: Broker>(&self, state: &Shared<B>, task: Stored) {
        self.running.lock().expect("not poisoned").insert(task.doc.handle.clone());
        state.background.tasks.spawn(runner::run(state.clone(), task));
    }

    fn runs_here(&self, handle: &str) -> bool {
        self.running.lock().expect("not poisoned").contains(handle)
    }

    fn ended_here(&self, handle: &str) {
        self.running.lock().expect("not poisoned").remove(handle);
    }

    /// The most recent tasks of a source queue, newest first.
    pub async fn list(
        &self,
        broker: &impl Broker,
        source: &str,
        max: usize,
    ) -> Result<Vec<TaskDoc>> {
        let docs = Docs::read(broker).await?;
        Ok(docs.of_source(source).into_iter().take(max).map(|t| t.doc.clone()).collect())
    }

    /// Asks a running task to stop (`CANCELLING`; its runner makes it `CANCELLED`); `None` if
    /// there is no such running task.
    pub async fn cancel(&self, broker: &impl Broker, handle: &str) -> Result<Option<TaskDoc>> {
        for _ in 0..CANCEL_ATTEMPTS_MAX {
            let docs = Docs::read(broker).await?;
            let Some(task) = docs.tasks.get(handle).filter(|t| t.doc.status == Status::Running)
            else {
                return Ok(None);
            };
            let cancelling =
                Stored::new(TaskDoc { status: Status::Cancelling, ..task.doc.clone() });
            if swap(broker, task, &cancelling).await? {
                return Ok(Some(cancelling.doc));
            }
        }
        Err(Error::Overloaded)
    }

    /// Starts the sweeper that resumes tasks whose claim ran out, as a background task.
    pub fn spawn_sweeper<B: Broker>(state: &Shared<B>) {
        state.background.tasks.spawn(runner::sweep(state.clone()));
    }
}

/// Moves `source`'s pointer to `handle` unless it names a task that is not over.
async fn point_source_at(broker: &impl Broker, source: &str, handle: &str) -> Result<bool> {
    let docs = Docs::read(broker).await?;
    if docs.pointed(source).is_some_and(|t| !t.doc.status.is_over()) {
        return Ok(false);
    }
    let pointer = serde_json::to_string(&Pointer { handle: handle.to_owned() })
        .expect("a pointer serializes");
    let expected = docs.pointers.get(source).cloned();
    let key = format!("{SOURCE_PREFIX}{source}");
    broker.put_doc_if(DocKind::MoveTask, key, expected, Some(pointer)).await
}

/// Deletes `source`'s tasks past the most recent [`limits::SQS_MOVE_TASKS_PER_SOURCE_MAX`]
/// (only ones that are over: the running one is the newest).
async fn trim_history(broker: &impl Broker, source: &str) -> Result<()> {
    let docs = Docs::read(broker).await?;
    let old = docs.of_source(source).into_iter().skip(limits::SQS_MOVE_TASKS_PER_SOURCE_MAX);
    for task in old.filter(|t| t.doc.status.is_over()) {
        remove(broker, task).await?;
    }
    Ok(())
}
