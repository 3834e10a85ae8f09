//! The one error type of redrive and the table that maps it to the native wire: HTTP status and
//! error code. (The SQS door maps it to its own table of SQS errors, `redrive-server`'s
//! `sqs::error`.)

use std::fmt;

use crate::model::JobId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    QueueNotFound(String),
    QueueExists(String),
    InvalidQueueName(String),
    /// A request field is missing, of the wrong type or out of range.
    InvalidParameter {
        field: &'static str,
        message: String,
    },
    MalformedRequest(String),
    /// The HTTP request body is over `REQUEST_BODY_MAX_BYTES`.
    RequestTooLarge {
        max: u64,
    },
    RouteNotFound,
    MethodNotAllowed,
    /// The request took longer than `REQUEST_TIMEOUT_MS`.
    Timeout,
    MessageTooLarge {
        size: u64,
        max: u64,
    },
    BatchTooLarge {
        count: usize,
        max: usize,
    },
    EmptyBatch,
    JobNotFound(JobId),
    /// No triage proposal has this id.
    ProposalNotFound(String),
    /// No triage policy is set on the server for this queue.
    PolicyNotFound(String),
    /// The receipt's lease ended (expired, acked, failed, or revoked by a restart).
    StaleReceipt,
    /// The receipt is not shaped like one of ours.
    InvalidReceipt,
    /// The receipt is shaped like one of ours, but no server of this store issued it (its tag
    /// does not verify): forged, or from another store.
    UnknownReceipt,
    /// A named limit was hit (in-flight per queue, jobs held, queues held, waiters).
    LimitExceeded {
        limit: &'static str,
        max: u64,
    },
    /// The engine is shedding load; retry with backoff.
    Overloaded,
    /// A write or fsync failed earlier; the store refuses writes until restart. The outcome of
    /// the write that failed is unknown (retry it with its idempotency key after the restart).
    Poisoned(String),
    /// The store cannot take writes right now (e.g. it cannot open its next log segment) but
    /// nothing was lost or changed; retrying later may succeed.
    StoreUnavailable(String),
    ShuttingDown,
    /// No credentials, or credentials that are not a live key (unknown, wrong secret, revoked,
    /// expired). The text says which of these without naming the key's secret.
    Unauthorized(String),
    /// A valid key whose scopes do not allow this action on this queue.
    Forbidden {
        action: &'static str,
        queue: String,
    },
    /// A bug or an unexpected I/O failure. The text is logged, never sent to clients.
    Internal(String),
}

/// How an error appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireCode {
    /// HTTP status on the native API.
    pub status: u16,
    /// Native error code.
    pub code: &'static str,
}

impl Error {
    /// The one table: every error's HTTP status and native code.
    pub fn wire(&self) -> WireCode {
        let (status, code) = match self {
            Error::QueueNotFound(_) => (404, "queue_not_found"),
            Error::QueueExists(_) => (409, "queue_exists"),
            Error::InvalidQueueName(_) => (400, "invalid_queue_name"),
            Error::InvalidParameter { .. } => (400, "invalid_parameter"),
            Error::MalformedRequest(_) => (400, "malformed_request"),
            Error::MessageTooLarge { .. } => (413, "message_too_large"),
            Error::RequestTooLarge { .. } => (413, "request_too_large"),
            Error::RouteNotFound => (404, "route_not_found"),
            Error::MethodNotAllowed => (405, "method_not_allowed"),
            Error::Timeout => (504, "timeout"),
            Error::BatchTooLarge { .. } => (400, "batch_too_large"),
            Error::EmptyBatch => (400, "empty_batch"),
            Error::JobNotFound(_) => (404, "job_not_found"),
            Error::ProposalNotFound(_) => (404, "proposal_not_found"),
            Error::PolicyNotFound(_) => (404, "policy_not_found"),
            Error::StaleReceipt => (409, "stale_receipt"),
            Error::InvalidReceipt => (400, "invalid_receipt"),
            Error::UnknownReceipt => (404, "receipt_not_found"),
            Error::LimitExceeded { .. } => (429, "limit_exceeded"),
            Error::Overloaded => (503, "overloaded"),
            Error::Poisoned(_) => (503, "store_poisoned"),
            Error::StoreUnavailable(_) => (503, "store_unavailable"),
            Error::ShuttingDown => (503, "shutting_down"),
            Error::Unauthorized(_) => (401, "unauthorized"),
            Error::Forbidden { .. } => (403, "forbidden"),
            Error::Internal(_) => (500, "internal"),
        };
        WireCode { status, code }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::InvalidParameter { field, message: message.into() }
    }

    /// Seconds after which a retry may succeed, for a `Retry-After` header: only for errors that
    /// clear by themselves (a poisoned store needs a restart, so it has none).
    pub fn retry_after_s(&self) -> Option<u32> {
        match self {
            Error::Overloaded
            | Error::LimitExceeded { .. }
            | Error::StoreUnavailable(_)
            | Error::ShuttingDown => Some(1),
            _ => None,
        }
    }

    /// Whether the text may be shown to a client (everything but internal errors).
    pub fn is_public(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueNotFound(q) => write!(f, "queue {q:?} does not exist"),
            Error::QueueExists(q) => write!(f, "queue {q:?} already exists with a different configuration"),
            Error::InvalidQueueName(q) => write!(
                f,
                "invalid queue name {q:?}: use 1-80 characters of A-Z a-z 0-9 - _ (and an optional .fifo suffix)"
            ),
            Error::InvalidParameter { field, message } => write!(f, "invalid {field}: {message}"),
            Error::MalformedRequest(m) => write!(f, "malformed request: {m}"),
            Error::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes is over the limit of {max} bytes (max_message_bytes)")
            }
            Error::RequestTooLarge { max } => {
                write!(f, "request body is over the limit of {max} bytes (REQUEST_BODY_MAX_BYTES)")
            }
            Error::RouteNotFound => write!(f, "no such route; see /v1/openapi.json"),
            Error::MethodNotAllowed => write!(f, "method not allowed on this route; see /v1/openapi.json"),
            Error::Timeout => write!(f, "the request took too long; retry"),
            Error::BatchTooLarge { count, max } => write!(f, "batch of {count} entries is over the limit of {max}"),
            Error::EmptyBatch => write!(f, "the batch is empty"),
            Error::JobNotFound(id) => write!(f, "job {id} does not exist"),
            Error::ProposalNotFound(id) => write!(f, "triage proposal {id} does not exist"),
            Error::PolicyNotFound(q) => write!(f, "no triage policy is set for queue {q:?}"),
            Error::StaleReceipt => write!(f, "the receipt's lease has ended (expired, completed, or revoked)"),
            Error::InvalidReceipt => write!(f, "the receipt is not valid"),
            Error::UnknownReceipt => write!(f, "no lease of this store has this receipt"),
            Error::LimitExceeded { limit, max } => write!(f, "limit {limit} of {max} reached"),
            Error::Overloaded => write!(f, "the server is overloaded; retry with backoff"),
            Error::Poisoned(why) => write!(f, "the store refuses writes after an I/O failure ({why}); it will not clear without a restart, and the outcome of the write that failed is unknown"),
            Error::StoreUnavailable(why) => write!(f, "the store cannot take writes right now ({why}); nothing was changed, retry later"),
            Error::ShuttingDown => write!(f, "the server is shutting down"),
            Error::Unauthorized(why) => write!(f, "not authenticated: {why}"),
            Error::Forbidden { action, queue } => {
                write!(f, "this key may not {action} on queue {queue:?}")
            }
            Error::Internal(_) => write!(f, "internal error"),
        }
    }
}

impl std::error::Error for Error {}
