//! The contract between the HTTP layer and a store (the embedded engine, later PostgreSQL): the
//! request and reply types of every operation and the async [`Broker`] trait.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::config::{QueueConfig, QueuePatch};
use crate::error::Result;
use crate::limits;
use crate::metrics::StoreSnapshot;
use crate::model::{Attempt, DeadReason, ErrorInfo, JobId, JobState, Priority};

/// One job to enqueue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub body: String,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Absolute time to run at; exclusive with `delay_ms`.
    #[serde(default, with = "crate::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub run_at: Option<u64>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub traceparent: Option<String>,
    /// Ordering group: on a FIFO queue, jobs of one group are delivered in enqueue order and
    /// only one receive's worth of a group is leased at a time (SQS `MessageGroupId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl NewJob {
    /// Checks the fields every store bounds the same way (group, idempotency key, traceparent,
    /// attributes, `max_attempts`); the body size against the queue and the delay are the
    /// caller's, since they depend on the queue and the clock.
    pub fn check_fields(&self) -> Result<()> {
        use crate::error::Error;
        use crate::model::GROUP_ATTRIBUTE;
        if self.group.as_ref().is_some_and(|g| g.is_empty() || g.len() > limits::GROUP_BYTES_MAX) {
            return Err(Error::invalid("group", format!("1 to {} bytes", limits::GROUP_BYTES_MAX)));
        }
        if self
            .idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > limits::IDEMPOTENCY_KEY_BYTES_MAX)
        {
            return Err(Error::invalid(
                "idempotency_key",
                format!("1 to {} bytes", limits::IDEMPOTENCY_KEY_BYTES_MAX),
            ));
        }
        if self.traceparent.as_ref().is_some_and(|t| t.len() > limits::TRACEPARENT_BYTES_MAX) {
            return Err(Error::invalid(
                "traceparent",
                format!("at most {} bytes", limits::TRACEPARENT_BYTES_MAX),
            ));
        }
        if self.attributes.contains_key(GROUP_ATTRIBUTE) {
            return Err(Error::invalid(
                "attributes",
                format!("{GROUP_ATTRIBUTE:?} is reserved; set the job's group with \"group\""),
            ));
        }
        if self.attributes.len() > limits::ATTRIBUTES_COUNT_MAX {
            return Err(Error::invalid(
                "attributes",
                format!("at most {} attributes", limits::ATTRIBUTES_COUNT_MAX),
            ));
        }
        for (k, v) in &self.attributes {
            if k.is_empty()
                || k.len() > limits::ATTRIBUTE_KEY_BYTES_MAX
                || crate::sealed::plain_len(v) > limits::ATTRIBUTE_VALUE_BYTES_MAX
            {
                return Err(Error::invalid(
                    "attributes",
                    format!(
                        "keys 1 to {} bytes, values at most {} bytes",
                        limits::ATTRIBUTE_KEY_BYTES_MAX,
                        limits::ATTRIBUTE_VALUE_BYTES_MAX
                    ),
                ));
            }
        }
        if self.max_attempts.is_some_and(|n| n == 0 || n > limits::ATTEMPTS_MAX) {
            return Err(Error::invalid("max_attempts", format!("1 to {}", limits::ATTEMPTS_MAX)));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    pub id: JobId,
    /// True when the idempotency key was seen within the dedup window: `id` is the first job's.
    pub duplicate: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveRequest {
    /// In order of preference: a job from an earlier queue is served first.
    pub queues: Vec<String>,
    pub max: u32,
    /// Long-poll time; `None` = the first queue's `receive_wait_ms`.
    pub wait_ms: Option<u64>,
    /// Lease time; `None` = each queue's `visibility_timeout_ms`.
    pub lease_ms: Option<u64>,
    pub worker_id: Option<String>,
}

impl ReceiveRequest {
    /// Checks what every store bounds the same way, before it looks at any queue: queues named
    /// (1 to `RECEIVE_QUEUES_COUNT_MAX`), `max`, the lease, the long poll and the worker id.
    pub fn check(&self) -> Result<()> {
        use crate::error::Error;
        if self.queues.is_empty() {
            return Err(Error::invalid("queues", "name at least one queue"));
        }
        if self.queues.len() > limits::RECEIVE_QUEUES_COUNT_MAX {
            let (count, max) = (self.queues.len(), limits::RECEIVE_QUEUES_COUNT_MAX);
            return Err(Error::BatchTooLarge { count, max });
        }
        if self.max == 0 || self.max > limits::RECEIVE_BATCH_COUNT_MAX {
            let max = limits::RECEIVE_BATCH_COUNT_MAX;
            return Err(Error::invalid("max", format!("1 to {max}")));
        }
        if self.lease_ms.is_some_and(|l| l > limits::LEASE_DURATION_MAX_MS) {
            let max = limits::LEASE_DURATION_MAX_MS;
            return Err(Error::invalid("lease_ms", format!("at most {max}")));
        }
        if self.wait_ms.is_some_and(|w| w > limits::RECEIVE_WAIT_MAX_MS) {
            let max = limits::RECEIVE_WAIT_MAX_MS;
            return Err(Error::invalid("wait_ms", format!("at most {max}")));
        }
        if self.worker_id.as_ref().is_some_and(|w| w.len() > limits::WORKER_ID_BYTES_MAX) {
            let max = limits::WORKER_ID_BYTES_MAX;
            return Err(Error::invalid("worker_id", format!("at most {max} bytes")));
        }
        Ok(())
    }
}

/// Checks a batch's size: not empty (`EmptyBatch`), at most `max` entries (`BatchTooLarge`).
pub fn check_batch(len: usize, max: usize) -> Result<()> {
    use crate::error::Error;
    match len {
        0 => Err(Error::EmptyBatch),
        n if n > max => Err(Error::BatchTooLarge { count: n, max }),
        _ => Ok(()),
    }
}

/// Checks how many receipts a receive carries to ack: none is fine (a plain receive), at most
/// `ACK_BATCH_COUNT_MAX`.
pub fn check_acks(len: usize) -> Result<()> {
    match len {
        0 => Ok(()),
        n => check_batch(n, limits::ACK_BATCH_COUNT_MAX),
    }
}

/// A leased job as a worker receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: JobId,
    pub queue: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub priority: Priority,
    /// Opaque; encodes `(job id, lease epoch)`.
    pub receipt: String,
    /// 1 on the first delivery.
    pub attempt: u32,
    #[serde(with = "crate::time::rfc3339")]
    pub enqueued_at: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub first_received_at: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub lease_expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadInfo>,
}

/// Result of acking one receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckResult {
    Ok,
    /// The lease ended before the ack (expired, already acked, or revoked by a restart).
    Stale,
    /// No such job, or a malformed receipt.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub receipt: String,
    pub error: ErrorInfo,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    #[serde(default)]
    pub non_retryable: bool,
}

/// What a failure did to the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailResult {
    pub state: JobState,
    pub queue: String,
    /// When the job will be delivered again (absent when it died).
    #[serde(default, with = "crate::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<DeadReason>,
}

/// Why and from where a job died; kept while it sits in a dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadInfo {
    pub reason: DeadReason,
    pub source_queue: String,
    #[serde(with = "crate::time::rfc3339")]
    pub died_at: u64,
}

/// Everything known about one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    pub queue: String,
    pub state: JobState,
    pub priority: Priority,
    pub receive_count: u32,
    /// Failed attempts (including expired leases, on queues with an attempt limit) since the job
    /// was enqueued, moved to a dead-letter queue, or redriven.
    pub failures: u32,
    pub max_attempts: Option<u32>,
    #[serde(with = "crate::time::rfc3339")]
    pub enqueued_at: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub visible_at: u64,
    #[serde(default, with = "crate::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub first_received_at: Option<u64>,
    #[serde(default, with = "crate::time::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadInfo>,
    /// Redrives this job went through, and the queue it last came from.
    pub redrive_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    pub attempts: Vec<Attempt>,
    /// The job's creation context (W3C `traceparent`), while it is not completed on the
    /// embedded store and for as long as it is kept on PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A queue with its configuration and statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub config: QueueConfig,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: u64,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: u64,
    pub stats: QueueStats,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub delayed: u64,
    pub ready: u64,
    pub leased: u64,
    pub dead: u64,
    pub completed: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityCounts {
    pub high: u64,
    pub standard: u64,
    pub low: u64,
}

/// Lifetime totals of a queue (since it was created or the server started, see docs/api.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTotals {
    pub enqueued: u64,
    pub duplicates: u64,
    pub delivered: u64,
    pub acked: u64,
    pub failed: u64,
    pub lease_expired: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    pub purged: u64,
    pub redriven: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    pub counts: StateCounts,
    /// Ready (deliverable now) jobs by priority.
    pub ready_by_priority: PriorityCounts,
    /// Jobs that carry dead-letter information (dead here, or moved here as a DLQ).
    pub dead_letters: u64,
    pub oldest_ready_age_ms: u64,
    pub totals: QueueTotals,
    /// Per-second rates over the last minute.
    pub enqueue_rate: f64,
    pub ack_rate: f64,
}

/// Which dead jobs to list or redrive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadFilter {
    /// Error type of the last failure.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Failure signature of the last failure ([`crate::model::signature`]).
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub source_queue: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub since: Option<u64>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub until: Option<u64>,
}

/// Which jobs of a queue to list (the dashboard's job browser): every field narrows the list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// The states to list; empty = every state but `acked`.
    #[serde(default)]
    pub states: Vec<JobState>,
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Error type of the job's last failure.
    #[serde(default)]
    pub error_type: Option<String>,
    /// `enqueued_at`, inclusive.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub since: Option<u64>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub until: Option<u64>,
}

impl JobFilter {
    /// Whether a job in `state` with `priority`, enqueued at `enqueued_at`, can match; the error
    /// type needs the attempt log and is checked by [`JobFilter::error_matches`].
    pub fn meta_matches(&self, state: JobState, priority: Priority, enqueued_at: u64) -> bool {
        self.state_matches(state)
            && self.priority.is_none_or(|p| p == priority)
            && self.since.is_none_or(|t| enqueued_at >= t)
            && self.until.is_none_or(|t| enqueued_at <= t)
    }

    pub fn state_matches(&self, state: JobState) -> bool {
        if self.states.is_empty() {
            state != JobState::Acked
        } else {
            self.states.contains(&state)
        }
    }

    pub fn error_matches(&self, attempts: &[crate::model::Attempt]) -> bool {
        let Some(want) = &self.error_type else { return true };
        let last = attempts.iter().rev().find_map(|a| a.error.as_ref());
        last.is_some_and(|e| e.kind == *want)
    }
}

/// One page of jobs, in id (enqueue) order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<JobInfo>,
    /// Pass as `after` to get the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<JobId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    #[serde(default)]
    pub ids: Option<Vec<JobId>>,
    #[serde(default)]
    pub filter: Option<DeadFilter>,
    /// Target queue; default: each job's source queue.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

impl RedriveRequest {
    /// Checks what every store bounds the same way: `ids` or `filter`, not both; at most
    /// `REDRIVE_COUNT_MAX` ids; a delay within `DELAY_MAX_MS`.
    pub fn check(&self) -> Result<()> {
        use crate::error::Error;
        if self.ids.is_some() && self.filter.is_some() {
            return Err(Error::invalid("ids", "give ids or filter, not both"));
        }
        if let Some(ids) = &self.ids {
            if ids.len() > limits::REDRIVE_COUNT_MAX {
                let (count, max) = (ids.len(), limits::REDRIVE_COUNT_MAX);
                return Err(Error::BatchTooLarge { count, max });
            }
        }
        if self.delay_ms.is_some_and(|d| d > limits::DELAY_MAX_MS) {
            return Err(Error::invalid("delay_ms", format!("at most {}", limits::DELAY_MAX_MS)));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveResult {
    pub moved: u64,
    pub dry_run: bool,
    /// The jobs moved (or, in a dry run, that would be).
    pub ids: Vec<JobId>,
    /// Jobs named or matched that were left where they are, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// A job a redrive left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub id: JobId,
    pub reason: SkipReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No dead job with this id is in the queue (unknown, alive, completed, or elsewhere).
    NotDead,
    /// The dead letter is leased by a consumer of the dead-letter queue.
    Leased,
}

/// Store health for `/readyz` and the error of a poisoned store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub poisoned: Option<String>,
    pub durability: String,
}

/// The kinds of control-plane documents a store keeps beside its queues: small JSON texts by
/// key, written by the server (not by the state machine): last write wins, or the first of
/// racing conditional writes ([`Broker::put_doc_if`]). The discriminants are on disk (the WAL's
/// `Doc` record, PostgreSQL's `redrive.docs.kind`): never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DocKind {
    /// A triage proposal awaiting or after a person's decision, by proposal id.
    TriageProposal = 1,
    /// The triage policy a person set for a queue, by queue name.
    TriagePolicy = 2,
    /// An SQS message move task by handle, and the pointer to a source queue's running task.
    MoveTask = 3,
    /// A secret every server of a store shares, by name (the key that signs receipts).
    Secret = 4,
    /// An API key by id: its scopes, expiry, rate and the hash of its secret.
    ApiKey = 5,
    /// An audit log entry by time-ordered id.
    Audit = 6,
    /// A queue's lifetime totals by queue name, as the embedded store last logged them (the
    /// PostgreSQL store keeps totals in a table of their own).
    QueueTotals = 7,
    /// When a queue's idempotency keys were last all forgotten (a purge), by queue name: the
    /// embedded store forgets keys enqueued up to then also when it recovers.
    DedupCleared = 8,
}

impl DocKind {
    pub fn from_u8(v: u8) -> Option<DocKind> {
        match v {
            1 => Some(DocKind::TriageProposal),
            2 => Some(DocKind::TriagePolicy),
            3 => Some(DocKind::MoveTask),
            4 => Some(DocKind::Secret),
            5 => Some(DocKind::ApiKey),
            6 => Some(DocKind::Audit),
            7 => Some(DocKind::QueueTotals),
            8 => Some(DocKind::DedupCleared),
            _ => None,
        }
    }

    /// The name of the limit on how many documents of this kind a store holds.
    pub fn limit_name(self) -> &'static str {
        match self {
            DocKind::TriageProposal => "TRIAGE_PROPOSALS_COUNT_MAX",
            DocKind::TriagePolicy => "QUEUES_MAX",
            DocKind::MoveTask => "MOVE_TASKS_COUNT_MAX",
            DocKind::Secret => "SECRETS_COUNT_MAX",
            DocKind::ApiKey => "API_KEYS_COUNT_MAX",
            DocKind::Audit => "AUDIT_ENTRIES_COUNT_MAX",
            DocKind::QueueTotals | DocKind::DedupCleared => "QUEUES_MAX",
        }
    }

    /// How many documents of this kind a store holds at most.
    pub fn count_max(self) -> usize {
        match self {
            DocKind::TriageProposal => limits::TRIAGE_PROPOSALS_COUNT_MAX,
            DocKind::TriagePolicy => limits::QUEUES_MAX,
            DocKind::MoveTask => limits::MOVE_TASKS_COUNT_MAX,
            DocKind::Secret => limits::SECRETS_COUNT_MAX,
            DocKind::ApiKey => limits::API_KEYS_COUNT_MAX,
            DocKind::Audit => limits::AUDIT_ENTRIES_COUNT_MAX,
            DocKind::QueueTotals | DocKind::DedupCleared => limits::QUEUES_MAX,
        }
    }
}

/// A store of queues and jobs. Every method is atomic; a returned `Ok` for a write means the
/// write is durable under the store's configured durability.
pub trait Broker: Send + Sync + 'static {
    /// Creates the queue, or patches it if it exists. Returns the queue and whether it was created.
    fn put_queue(
        &self,
        name: String,
        patch: QueuePatch,
    ) -> impl Future<Output = Result<(QueueInfo, bool)>> + Send;
    fn get_queue(&self, name: String) -> impl Future<Output = Result<QueueInfo>> + Send;
    fn list_queues(&self) -> impl Future<Output = Result<Vec<QueueInfo>>> + Send;
    fn delete_queue(&self, name: String) -> impl Future<Output = Result<()>> + Send;
    fn enqueue(
        &self,
        queue: String,
        jobs: Vec<NewJob>,
    ) -> impl Future<Output = Result<Vec<Enqueued>>> + Send;
    fn receive(&self, req: ReceiveRequest) -> impl Future<Output = Result<Vec<Delivery>>> + Send;
    fn ack(&self, receipts: Vec<String>) -> impl Future<Output = Result<Vec<AckResult>>> + Send;
    /// Acks `receipts`, then receives as [`Broker::receive`]: a worker's settle-and-take-more in
    /// one call. The request is checked first, so one refused acks nothing. The acks are durable
    /// before any long poll parks, and a store may commit them with the lease it takes at once
    /// (one commit per worker cycle instead of two). Receipts are acked as [`Broker::ack`] does;
    /// one of a job this call leases again cannot arise (the job was leased to the caller). The
    /// default acks, then receives; it looks each queue up first so that an unknown one is
    /// refused before the acks.
    fn ack_receive(
        &self,
        receipts: Vec<String>,
        req: ReceiveRequest,
    ) -> impl Future<Output = Result<(Vec<AckResult>, Vec<Delivery>)>> + Send {
        async move {
            req.check()?;
            check_acks(receipts.len())?;
            for q in &req.queues {
                self.get_queue(q.clone()).await?;
            }
            let acked = if receipts.is_empty() { Vec::new() } else { self.ack(receipts).await? };
            Ok((acked, self.receive(req).await?))
        }
    }
    fn fail(&self, req: FailRequest) -> impl Future<Output = Result<FailResult>> + Send;
    /// Sets the lease to end `lease_ms` from now; 0 releases the job at once. Returns the expiry.
    fn extend(&self, receipt: String, lease_ms: u64) -> impl Future<Output = Result<u64>> + Send;
    fn get_job(&self, id: JobId) -> impl Future<Output = Result<JobInfo>> + Send;
    fn list_dead(
        &self,
        queue: String,
        filter: DeadFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> impl Future<Output = Result<JobPage>> + Send;
    /// Jobs of `queue` matching `filter` after `after`, at most `limit`
    /// (clamped to 1..=[`limits::DEAD_PAGE_COUNT_MAX`]).
    fn list_jobs(
        &self,
        queue: String,
        filter: JobFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> impl Future<Output = Result<JobPage>> + Send;
    fn redrive(
        &self,
        queue: String,
        req: RedriveRequest,
    ) -> impl Future<Output = Result<RedriveResult>> + Send;
    fn purge(&self, queue: String) -> impl Future<Output = Result<u64>> + Send;
    /// Deletes one job that is not leased.
    fn delete_job(&self, id: JobId) -> impl Future<Output = Result<()>> + Send;
    /// Stores a document (`Some`) or deletes it (`None`; deleting a missing one is not an
    /// error). Keys are at most `DOC_KEY_BYTES_MAX`, values `DOC_VALUE_BYTES_MAX`, and a kind
    /// holds at most [`DocKind::count_max`] documents (`limit_exceeded` past it).
    fn put_doc(
        &self,
        kind: DocKind,
        key: String,
        value: Option<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Compare-and-set: stores `value` (`None` deletes) only if the document's current value is
    /// `expected` (`None`: there is none), atomically with the comparison across every server
    /// of the store. Returns whether the condition held; `false` changes nothing. Values compare
    /// byte for byte. The bounds and errors are [`Broker::put_doc`]'s, checked before the
    /// comparison.
    fn put_doc_if(
        &self,
        kind: DocKind,
        key: String,
        expected: Option<String>,
        value: Option<String>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// One document, or `None` if there is none.
    fn get_doc(
        &self,
        kind: DocKind,
        key: String,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Every document of a kind, by key.
    fn list_docs(
        &self,
        kind: DocKind,
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    /// Queues, stats and the store's own figures, for `/metrics`.
    fn snapshot(&self) -> impl Future<Output = Result<StoreSnapshot>> + Send;
    /// Shutdown has begun: parked long polls are answered (empty) at once, and later receives
    /// do not wait, so in-flight requests can finish; what the store buffers (counts) is
    /// written. Called again once the last request is answered, to write what those counted.
    fn drain(&self) -> impl Future<Output = Result<()>> + Send;
    /// Durability and the poison latch, read without I/O (for `/metrics` and `/readyz`).
    fn health(&self) -> Health;
    /// Whether the store can take requests now, for `/readyz`: `Err(Poisoned)` once it latched
    /// a failed write, `Err(StoreUnavailable)` while a database behind it cannot be reached.
    /// A store over a network asks it (one round trip), so callers bound how long they wait.
    /// The default answers from [`Broker::health`], which is all a store in this process knows.
    fn ready(&self) -> impl Future<Output = Result<()>> + Send {
        let poisoned = self.health().poisoned;
        async move {
            match poisoned {
                Some(p) => Err(crate::error::Error::Poisoned(p)),
                None => Ok(()),
            }
        }
    }
}
