//! Every limit in redrive, with its default. Names end in their qualifier (`_MAX`, `_MIN`,
//! `_DEFAULT`) and carry their unit. Relations between limits are checked at compile time.

/// Longest queue name (SQS allows 80 characters).
pub const QUEUE_NAME_LENGTH_MAX: usize = 80;
/// Queues one server holds.
pub const QUEUES_MAX: usize = 10_000;
/// Tags on one queue, and the characters of a tag key and value (as SQS: 50, 128, 256).
pub const QUEUE_TAGS_COUNT_MAX: usize = 50;
pub const QUEUE_TAG_KEY_LENGTH_MAX: usize = 128;
pub const QUEUE_TAG_VALUE_LENGTH_MAX: usize = 256;
/// Stored-but-inert SQS attributes on one queue (Policy, RedriveAllowPolicy, KMS settings, …),
/// the bytes of an attribute name, and of a value (as SQS's policy size: 8,192 bytes).
pub const QUEUE_SQS_ATTRIBUTES_COUNT_MAX: usize = 16;
pub const QUEUE_SQS_ATTRIBUTE_NAME_BYTES_MAX: usize = 64;
pub const QUEUE_SQS_ATTRIBUTE_VALUE_BYTES_MAX: usize = 8192;

/// Largest job body any queue may accept.
pub const MESSAGE_SIZE_MAX_BYTES: u32 = 1024 * 1024;
/// Default `max_message_bytes` of a queue (as SQS).
pub const MESSAGE_SIZE_DEFAULT_BYTES: u32 = 256 * 1024;
/// Smallest `max_message_bytes` a queue may be configured with.
pub const MESSAGE_SIZE_MIN_BYTES: u32 = 1024;
/// Attributes one job may carry, and the size of each key and value.
pub const ATTRIBUTES_COUNT_MAX: usize = 32;
pub const ATTRIBUTE_KEY_BYTES_MAX: usize = 256;
pub const ATTRIBUTE_VALUE_BYTES_MAX: usize = 4096;
/// Idempotency keys, worker ids and `traceparent` values.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// An ordering group (SQS `MessageGroupId`: 128).
pub const GROUP_BYTES_MAX: usize = 128;
pub const WORKER_ID_BYTES_MAX: usize = 128;
pub const TRACEPARENT_BYTES_MAX: usize = 128;

/// Jobs in one enqueue request.
pub const ENQUEUE_BATCH_COUNT_MAX: usize = 1000;
/// Jobs one receive may return.
pub const RECEIVE_BATCH_COUNT_MAX: u32 = 1000;
/// Receipts in one ack request.
pub const ACK_BATCH_COUNT_MAX: usize = 1000;
/// Queues one multi-queue receive may name.
pub const RECEIVE_QUEUES_COUNT_MAX: usize = 32;
/// Longest long poll (as SQS: 20 s).
pub const RECEIVE_WAIT_MAX_MS: u64 = 20_000;
/// Long-poll receivers parked in the engine at once; more get 429 (`limit_exceeded`).
pub const WAITERS_COUNT_MAX: usize = 10_000;
/// Long polls one caller (an API key, or a remote address when anonymous) may have open at once
/// on one server; more get 429 (`limit_exceeded`). A fraction of `WAITERS_COUNT_MAX`, so that one
/// caller cannot park them all and starve every other receiver.
pub const LONG_POLLS_PER_CALLER_MAX: u32 = (WAITERS_COUNT_MAX / 4) as u32;

/// Lease (visibility timeout) bounds (as SQS: 0..=12 h).
pub const LEASE_DURATION_MAX_MS: u64 = 12 * 3600 * 1000;
pub const VISIBILITY_TIMEOUT_DEFAULT_MS: u64 = 30_000;
/// Delay bounds (SQS: 15 min; native `run_at` may be up to 365 days ahead).
pub const DELAY_MAX_MS: u64 = 365 * 24 * 3600 * 1000;
/// Retention bounds (SQS: 60 s ..= 14 days; default 4 days).
pub const RETENTION_MIN_MS: u64 = 60_000;
pub const RETENTION_MAX_MS: u64 = 14 * 24 * 3600 * 1000;
pub const RETENTION_DEFAULT_MS: u64 = 4 * 24 * 3600 * 1000;
/// Attempts before a failing job dies (native queues; SQS queues have none).
pub const ATTEMPTS_DEFAULT: u32 = 10;
pub const ATTEMPTS_MAX: u32 = 1000;
/// SQS `maxReceiveCount` bounds.
pub const RECEIVE_COUNT_MAX: u32 = 1000;
pub const BACKOFF_BASE_DEFAULT_MS: u64 = 1000;
pub const BACKOFF_CAP_DEFAULT_MS: u64 = 10 * 60 * 1000;
pub const PRIORITY_AGING_DEFAULT_MS: u64 = 5 * 60 * 1000;
pub const DEDUP_WINDOW_DEFAULT_MS: u64 = 5 * 60 * 1000;
pub const DEDUP_WINDOW_MAX_MS: u64 = 24 * 3600 * 1000;

/// Attempt log: entries kept per job, and bytes of one entry's error (type + message + detail;
/// longer texts are cut, type first to 256 bytes, then message to 2 KiB, detail to the rest).
pub const ATTEMPT_LOG_ENTRIES_MAX: usize = 20;
pub const ATTEMPT_ERROR_BYTES_MAX: usize = 8 * 1024;
pub const ERROR_TYPE_BYTES_MAX: usize = 256;
pub const ERROR_MESSAGE_BYTES_MAX: usize = 2 * 1024;

/// Completed jobs stay queryable by id this long …
pub const COMPLETED_RETENTION_DEFAULT_MS: u64 = 3600 * 1000;
/// … but at most this many are kept; the oldest are forgotten first (counted).
pub const COMPLETED_JOBS_MAX: usize = 200_000;

/// Distinct worker ids remembered for attempt logs; later ones are logged but not named.
pub const WORKERS_INTERNED_MAX: usize = 100_000;

/// Jobs (pending, in flight, dead, and completed ones still queryable) one server holds; enqueue
/// past it gets 429 (`limit_exceeded`).
pub const JOBS_COUNT_MAX: usize = 50_000_000;
/// In-flight (leased) jobs per queue (as SQS standard queues: 120,000).
pub const INFLIGHT_PER_QUEUE_MAX: usize = 120_000;

/// Dead jobs one list page returns, and jobs one redrive request moves.
pub const DEAD_PAGE_COUNT_MAX: usize = 1000;
pub const REDRIVE_COUNT_MAX: usize = 100_000;

/// Control-plane documents (triage proposals, policies): bytes of a key and of a value.
pub const DOC_KEY_BYTES_MAX: usize = 128;
pub const DOC_VALUE_BYTES_MAX: usize = 256 * 1024;
/// Triage proposals one server keeps (at the bound, the oldest decided one is forgotten; when
/// all are pending, new ones get 429), the jobs one proposal names, and the bytes of a posted
/// proposal (its stored form adds the decision and its result, one line per job).
pub const TRIAGE_PROPOSALS_COUNT_MAX: usize = 4000;
pub const TRIAGE_PROPOSAL_JOBS_COUNT_MAX: usize = 1000;
pub const TRIAGE_PROPOSAL_POSTED_BYTES_MAX: usize = 96 * 1024;
/// Bytes of one job's line in an executed proposal's result.
pub const TRIAGE_RESULT_LINE_BYTES_MAX: usize = 150;
/// Dead jobs one triage pass decides; the rest wait for the next pass (jobs already decided are
/// skipped page by page, not kept).
pub const TRIAGE_PASS_JOBS_COUNT_MAX: usize = 10_000;
/// Jobs the agent remembers from its audit log (redriven ones, and deaths already decided); past
/// it the oldest are forgotten, so memory stays bounded however long the log grows.
pub const TRIAGE_AUDIT_MEMORY_JOBS_COUNT_MAX: usize = 1_000_000;
/// Bytes of a model endpoint's reply read at most; a longer reply is a provider error.
pub const TRIAGE_MODEL_REPLY_BYTES_MAX: usize = 64 * 1024;
/// Tokens a model may answer one decision with (`max_tokens`; a decision takes a few hundred).
pub const TRIAGE_MODEL_REPLY_TOKENS_MAX: u32 = 1024;
/// A model endpoint's `Retry-After` is honoured up to this.
pub const TRIAGE_MODEL_RETRY_WAIT_MAX_MS: u64 = 30_000;
/// Default timeout of one model call, and retries after a 429 or 5xx.
pub const TRIAGE_MODEL_TIMEOUT_DEFAULT_MS: u64 = 30_000;
pub const TRIAGE_MODEL_RETRIES_DEFAULT: u32 = 3;
/// First backoff of a model or webhook retry; it doubles per attempt.
pub const TRIAGE_RETRY_BACKOFF_BASE_MS: u64 = 200;
/// Job links one escalation message lists (it says how many jobs there are in all).
pub const TRIAGE_ESCALATION_JOB_LINKS_COUNT_MAX: usize = 20;
/// Deliveries tried per escalation webhook message, and the timeout of one.
pub const TRIAGE_WEBHOOK_ATTEMPTS_MAX: u32 = 3;
pub const TRIAGE_WEBHOOK_TIMEOUT_MS: u64 = 10_000;
/// The sliding window a policy's `redrives_per_minute` counts in.
pub const TRIAGE_RATE_WINDOW_MS: u64 = 60_000;
/// How long `serve` waits at shutdown for the in-process agent's pass in flight to finish.
pub const TRIAGE_AGENT_STOP_MAX_MS: u64 = 10_000;

/// The SQS door's own bounds, as AWS documents them: entries per batch request and bytes of a
/// whole SendMessageBatch, message attributes per message and the characters of an attribute's
/// name and data type, messages per ReceiveMessage, and queue-URL results per list page.
pub const SQS_BATCH_ENTRIES_MAX: usize = 10;
pub const SQS_BATCH_BYTES_MAX: usize = 1024 * 1024;
pub const SQS_MESSAGE_ATTRIBUTES_COUNT_MAX: usize = 10;
pub const SQS_ATTRIBUTE_NAME_LENGTH_MAX: usize = 256;
pub const SQS_RECEIVE_COUNT_MAX: i64 = 10;
pub const SQS_LIST_RESULTS_MAX: i64 = 1000;
/// The same bounds as the native ones, in the seconds SQS speaks (asserted equal below).
pub const SQS_VISIBILITY_TIMEOUT_MAX_S: i64 = 43_200;
pub const SQS_WAIT_TIME_MAX_S: i64 = 20;
pub const SQS_DELAY_MAX_S: i64 = 900;
pub const SQS_RETENTION_MIN_S: i64 = 60;
pub const SQS_RETENTION_MAX_S: i64 = 1_209_600;
/// Message move tasks: the most recent tasks kept per source queue (SQS lists 10), and the
/// highest `MaxNumberOfMessagesPerSecond` (SQS: 500).
pub const SQS_MOVE_TASKS_PER_SOURCE_MAX: usize = 10;
pub const SQS_MOVE_TASK_RATE_MAX: u32 = 500;
/// Move task documents a store holds: per source queue, its most recent tasks and the pointer
/// to its running one (the history of a deleted queue is forgotten by the move task sweeper).
pub const MOVE_TASKS_COUNT_MAX: usize = QUEUES_MAX * (SQS_MOVE_TASKS_PER_SOURCE_MAX + 1);
/// Secrets the servers of a store share (the receipt signing key, …).
pub const SECRETS_COUNT_MAX: usize = 16;
/// API keys a store holds, revoked ones included until deleted.
pub const API_KEYS_COUNT_MAX: usize = 10_000;
/// Audit log entries kept in the store; past it the oldest is dropped (the JSON lines the
/// server logs keep everything).
pub const AUDIT_ENTRIES_COUNT_MAX: usize = 10_000;
/// Dead letters one move task step lists and redrives when no rate is given.
pub const MOVE_TASK_STEP_COUNT_MAX: usize = 500;
/// How long a server's claim on a running move task lasts unless renewed (each step renews it,
/// a step lasts about a second), and how often every server looks for tasks whose claim ran
/// out (a crashed server's, or one released at shutdown) to resume them.
pub const MOVE_TASK_LEASE_MS: u64 = 10_000;
pub const MOVE_TASK_SWEEP_INTERVAL_MS: u64 = 2_000;

/// How long `/readyz` waits for the store to answer: a store slower than that is as good as lost
/// to a load balancer, whose probes time out in a second or two.
pub const READY_CHECK_MAX_MS: u64 = 2000;

/// HTTP request body bound: a full enqueue batch of small jobs, or one maximal job plus framing.
pub const REQUEST_BODY_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Requests served at once by one server, and how long one may take in all, long poll included
/// (504 `timeout` after that).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 4096;
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Requests from one remote address in flight at once (a quarter of `REQUESTS_IN_FLIGHT_MAX`):
/// one client, slow or hostile, cannot take the whole server's budget. More get 503.
pub const REQUESTS_IN_FLIGHT_PER_PEER_MAX: usize = REQUESTS_IN_FLIGHT_MAX / 4;
/// How long reading a request body may take from the request head on; then the request is
/// answered 400 and its connection closed, so a slow upload cannot hold an in-flight slot for
/// the whole `REQUEST_TIMEOUT_MS`.
pub const REQUEST_BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Requests queued for the engine thread; more are shed with 503.
pub const ENGINE_QUEUE_DEPTH_MAX: usize = 65_536;

/// HTTP connections open at once (fewer when `RLIMIT_NOFILE` is low, see below); one more is
/// answered 503 (`limit_exceeded`) and closed.
pub const CONNECTIONS_OPEN_MAX: usize = 10_000;
/// The connection cap never goes below this, however low the descriptor limit.
pub const CONNECTIONS_OPEN_MIN: usize = 16;
/// File descriptors kept from connections for the store (the WAL holds every segment open) and
/// the process; connections get at most half of `RLIMIT_NOFILE` and leave at least this many.
pub const FILE_DESCRIPTORS_RESERVED_MIN: u64 = 256;
/// How long a connection may wait for a request head, whether new, idle between keep-alive
/// requests, or sending its head slowly; then it is closed. It bounds a TLS handshake too.
pub const CONNECTION_IDLE_TIMEOUT_MS: u64 = 20_000;
/// The most a connection buffers while reading a request head (request line and headers):
/// HTTP/1.1 answers 431 and closes once a head outgrows it (hyper checks between reads, so a
/// head that arrives whole in one read may pass up to twice this). SigV4 and bearer headers
/// are far below it.
pub const REQUEST_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Requests open at once on one HTTP/2 connection (RFC 9113 advises at least 100); all
/// connections together still share `REQUESTS_IN_FLIGHT_MAX`.
pub const HTTP2_STREAMS_OPEN_MAX: u32 = 100;

/// WAL segment size: a segment is sealed once it grows past this.
pub const SEGMENT_SIZE_MAX_BYTES: u32 = 64 * 1024 * 1024;
/// One WAL record (a maximal job with its attributes and framing fits well inside).
pub const RECORD_SIZE_MAX_BYTES: u32 = 2 * 1024 * 1024;

const _: () = assert!(MESSAGE_SIZE_MIN_BYTES <= MESSAGE_SIZE_DEFAULT_BYTES);
const _: () = assert!(MESSAGE_SIZE_DEFAULT_BYTES <= MESSAGE_SIZE_MAX_BYTES);
const _: () = assert!(
    (MESSAGE_SIZE_MAX_BYTES as usize
        + ATTRIBUTES_COUNT_MAX * (ATTRIBUTE_KEY_BYTES_MAX + ATTRIBUTE_VALUE_BYTES_MAX)
        + IDEMPOTENCY_KEY_BYTES_MAX
        + TRACEPARENT_BYTES_MAX
        + 1024)
        <= RECORD_SIZE_MAX_BYTES as usize
);
// The same job with its body and attribute values sealed at rest (crate::sealed): the size
// limits measure plaintext, so the record must hold the expansion.
const _: () = assert!(
    (crate::sealed::sealed_len(MESSAGE_SIZE_MAX_BYTES as usize)
        + ATTRIBUTES_COUNT_MAX
            * (ATTRIBUTE_KEY_BYTES_MAX + crate::sealed::sealed_len(ATTRIBUTE_VALUE_BYTES_MAX))
        + IDEMPOTENCY_KEY_BYTES_MAX
        + TRACEPARENT_BYTES_MAX
        + 1024)
        <= RECORD_SIZE_MAX_BYTES as usize
);
const _: () = assert!(
    ATTEMPT_LOG_ENTRIES_MAX * (ATTEMPT_ERROR_BYTES_MAX + WORKER_ID_BYTES_MAX + 64)
        <= RECORD_SIZE_MAX_BYTES as usize
);
// A queue's whole config (its JSON, UTF-8 up to 4 bytes a character, JSON escapes up to 6 bytes
// a byte) always fits one record: an acknowledged queue can always be read back.
const _: () = assert!(
    (QUEUE_TAGS_COUNT_MAX * 6 * 4 * (QUEUE_TAG_KEY_LENGTH_MAX + QUEUE_TAG_VALUE_LENGTH_MAX + 8)
        + QUEUE_SQS_ATTRIBUTES_COUNT_MAX
            * 6
            * (QUEUE_SQS_ATTRIBUTE_NAME_BYTES_MAX + QUEUE_SQS_ATTRIBUTE_VALUE_BYTES_MAX + 8)
        + 2 * QUEUE_NAME_LENGTH_MAX
        + 4096)
        <= RECORD_SIZE_MAX_BYTES as usize
);
const _: () = assert!(
    TRIAGE_PROPOSAL_POSTED_BYTES_MAX
        + TRIAGE_PROPOSAL_JOBS_COUNT_MAX * TRIAGE_RESULT_LINE_BYTES_MAX
        + 4096
        <= DOC_VALUE_BYTES_MAX
);
const _: () =
    assert!(DOC_VALUE_BYTES_MAX + DOC_KEY_BYTES_MAX + 64 <= RECORD_SIZE_MAX_BYTES as usize);
const _: () = assert!(RECORD_SIZE_MAX_BYTES <= SEGMENT_SIZE_MAX_BYTES / 4);
const _: () = assert!(MESSAGE_SIZE_MAX_BYTES as usize + 64 * 1024 <= REQUEST_BODY_MAX_BYTES);
const _: () = assert!(CONNECTIONS_OPEN_MIN <= CONNECTIONS_OPEN_MAX);
const _: () = assert!(HTTP2_STREAMS_OPEN_MAX as usize <= REQUESTS_IN_FLIGHT_MAX);
// A maximal long poll ends before the request timeout answers 504.
const _: () = assert!(RECEIVE_WAIT_MAX_MS <= REQUEST_TIMEOUT_MS);
const _: () = assert!(REQUEST_BODY_READ_TIMEOUT_MS < REQUEST_TIMEOUT_MS);
const _: () = assert!(REQUESTS_IN_FLIGHT_PER_PEER_MAX <= REQUESTS_IN_FLIGHT_MAX);
// Every long poll is a request in flight; one caller's share of the waiters is a share.
const _: () = assert!((LONG_POLLS_PER_CALLER_MAX as usize) < WAITERS_COUNT_MAX);
const _: () =
    assert!(RETENTION_MIN_MS <= RETENTION_DEFAULT_MS && RETENTION_DEFAULT_MS <= RETENTION_MAX_MS);
const _: () = assert!(SQS_VISIBILITY_TIMEOUT_MAX_S as u64 * 1000 == LEASE_DURATION_MAX_MS);
const _: () = assert!(SQS_WAIT_TIME_MAX_S as u64 * 1000 == RECEIVE_WAIT_MAX_MS);
const _: () = assert!(SQS_DELAY_MAX_S as u64 * 1000 <= DELAY_MAX_MS);
const _: () = assert!(SQS_RETENTION_MIN_S as u64 * 1000 == RETENTION_MIN_MS);
const _: () = assert!(SQS_RETENTION_MAX_S as u64 * 1000 == RETENTION_MAX_MS);
const _: () = assert!(SQS_RECEIVE_COUNT_MAX as u32 <= RECEIVE_BATCH_COUNT_MAX);
const _: () = assert!(SQS_BATCH_BYTES_MAX + 64 * 1024 <= REQUEST_BODY_MAX_BYTES);
const _: () = assert!(SQS_BATCH_ENTRIES_MAX <= ENQUEUE_BATCH_COUNT_MAX);
// A move task step fits one dead-letter page and one redrive, at the highest rate too.
const _: () = assert!(SQS_MOVE_TASK_RATE_MAX as usize <= MOVE_TASK_STEP_COUNT_MAX);
const _: () = assert!(MOVE_TASK_STEP_COUNT_MAX <= DEAD_PAGE_COUNT_MAX);
const _: () = assert!(MOVE_TASK_STEP_COUNT_MAX <= REDRIVE_COUNT_MAX);
// A running task renews its claim several times before it runs out, and a claim that ran out
// is found within a few sweeps.
const _: () = assert!(MOVE_TASK_SWEEP_INTERVAL_MS * 4 <= MOVE_TASK_LEASE_MS);
// A triage pass reads at least one page of dead jobs, and the next pass remembers every job
// one pass decided.
const _: () = assert!(DEAD_PAGE_COUNT_MAX <= TRIAGE_PASS_JOBS_COUNT_MAX);
const _: () = assert!(TRIAGE_PASS_JOBS_COUNT_MAX <= TRIAGE_AUDIT_MEMORY_JOBS_COUNT_MAX);
// A reply of the most tokens a model may send fits the bytes read (16 bytes a token covers
// multi-byte characters and JSON escapes), with room for the completion's envelope.
const _: () =
    assert!(TRIAGE_MODEL_REPLY_TOKENS_MAX as usize * 16 + 4096 <= TRIAGE_MODEL_REPLY_BYTES_MAX);
const _: () = assert!(TRIAGE_ESCALATION_JOB_LINKS_COUNT_MAX <= TRIAGE_PROPOSAL_JOBS_COUNT_MAX);
// A webhook's retries back off for less than one delivery's timeout in all.
const _: () = assert!(
    TRIAGE_RETRY_BACKOFF_BASE_MS << TRIAGE_WEBHOOK_ATTEMPTS_MAX <= TRIAGE_WEBHOOK_TIMEOUT_MS
);
