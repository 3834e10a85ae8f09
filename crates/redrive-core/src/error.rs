//! The one error type of redrive and the one table that maps it to every wire: HTTP status,
//! native error code and SQS error code ([`SqsCode`], with its JSON and Query names).

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
    /// SQS error code (its own status comes with it, see [`SqsCode::status`]).
    pub sqs: SqsCode,
}

impl Error {
    /// The one table: every error's HTTP status and native code.
    pub fn wire(&self) -> WireCode {
        use SqsCode as S;
        let (status, code, sqs) = match self {
            Error::QueueNotFound(_) => (404, "queue_not_found", S::QueueDoesNotExist),
            Error::QueueExists(_) => (409, "queue_exists", S::QueueNameExists),
            Error::InvalidQueueName(_) => (400, "invalid_queue_name", S::InvalidParameterValue),
            Error::InvalidParameter { .. } => (400, "invalid_parameter", S::InvalidParameterValue),
            Error::MalformedRequest(_) => (400, "malformed_request", S::MalformedInput),
            Error::MessageTooLarge { .. } => (413, "message_too_large", S::InvalidParameterValue),
            Error::RequestTooLarge { .. } => (413, "request_too_large", S::BatchRequestTooLong),
            Error::RouteNotFound => (404, "route_not_found", S::InvalidAction),
            Error::MethodNotAllowed => (405, "method_not_allowed", S::InvalidAction),
            Error::Timeout => (504, "timeout", S::RequestTimeout),
            Error::BatchTooLarge { .. } => {
                (400, "batch_too_large", S::TooManyEntriesInBatchRequest)
            }
            Error::EmptyBatch => (400, "empty_batch", S::EmptyBatchRequest),
            Error::JobNotFound(_) => (404, "job_not_found", S::ReceiptHandleIsInvalid),
            Error::ProposalNotFound(_) => (404, "proposal_not_found", S::ResourceNotFound),
            Error::PolicyNotFound(_) => (404, "policy_not_found", S::ResourceNotFound),
            Error::StaleReceipt => (409, "stale_receipt", S::InvalidParameterValue),
            Error::InvalidReceipt => (400, "invalid_receipt", S::ReceiptHandleIsInvalid),
            Error::UnknownReceipt => (404, "receipt_not_found", S::ReceiptHandleIsInvalid),
            Error::LimitExceeded { .. } => (429, "limit_exceeded", S::OverLimit),
            Error::Overloaded => (503, "overloaded", S::ServiceUnavailable),
            Error::Poisoned(_) => (503, "store_poisoned", S::ServiceUnavailable),
            Error::StoreUnavailable(_) => (503, "store_unavailable", S::ServiceUnavailable),
            Error::ShuttingDown => (503, "shutting_down", S::ServiceUnavailable),
            Error::Unauthorized(_) => (401, "unauthorized", S::MissingAuthenticationToken),
            Error::Forbidden { .. } => (403, "forbidden", S::AccessDenied),
            Error::Internal(_) => (500, "internal", S::InternalError),
        };
        WireCode { status, code, sqs }
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

/// The closed set of SQS error codes redrive answers with, each with its JSON-protocol type name,
/// its Query-protocol code and HTTP status (as AWS answers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqsCode {
    QueueDoesNotExist,
    QueueNameExists,
    InvalidParameterValue,
    MissingParameter,
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidMessageContents,
    ReceiptHandleIsInvalid,
    MessageNotInflight,
    BatchRequestTooLong,
    TooManyEntriesInBatchRequest,
    EmptyBatchRequest,
    BatchEntryIdsNotDistinct,
    InvalidBatchEntryId,
    OverLimit,
    UnsupportedOperation,
    ResourceNotFound,
    InvalidAction,
    MalformedInput,
    RequestTimeout,
    ServiceUnavailable,
    InternalError,
    AccessDenied,
    MissingAuthenticationToken,
    InvalidClientTokenId,
    SignatureDoesNotMatch,
    IncompleteSignature,
    RequestExpired,
    UnknownOperation,
}

impl SqsCode {
    /// `(JSON __type name, Query code, HTTP status)`.
    fn names(self) -> (&'static str, &'static str, u16) {
        use SqsCode::*;
        match self {
            QueueDoesNotExist => {
                ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400)
            }
            QueueNameExists => ("QueueNameExists", "QueueAlreadyExists", 400),
            // Not in SQS's model: the JSON protocol answers with AWS's common error shapes.
            InvalidParameterValue => {
                ("InvalidParameterValueException", "InvalidParameterValue", 400)
            }
            MissingParameter => ("MissingRequiredParameterException", "MissingParameter", 400),
            InvalidAttributeName => ("InvalidAttributeName", "InvalidAttributeName", 400),
            InvalidAttributeValue => ("InvalidAttributeValue", "InvalidAttributeValue", 400),
            InvalidMessageContents => ("InvalidMessageContents", "InvalidMessageContents", 400),
            ReceiptHandleIsInvalid => ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400),
            MessageNotInflight => {
                ("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", 400)
            }
            BatchRequestTooLong => {
                ("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", 400)
            }
            TooManyEntriesInBatchRequest => (
                "TooManyEntriesInBatchRequest",
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                400,
            ),
            EmptyBatchRequest => {
                ("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400)
            }
            BatchEntryIdsNotDistinct => {
                ("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400)
            }
            InvalidBatchEntryId => {
                ("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", 400)
            }
            OverLimit => ("OverLimit", "OverLimit", 403),
            UnsupportedOperation => {
                ("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", 400)
            }
            ResourceNotFound => ("ResourceNotFoundException", "ResourceNotFoundException", 404),
            InvalidAction => ("InvalidAction", "InvalidAction", 400),
            MalformedInput => ("SerializationException", "MalformedQueryString", 400),
            RequestTimeout => ("RequestTimeout", "RequestTimeout", 408),
            ServiceUnavailable => ("ServiceUnavailable", "ServiceUnavailable", 503),
            InternalError => ("InternalError", "InternalError", 500),
            AccessDenied => ("AccessDenied", "AccessDenied", 403),
            MissingAuthenticationToken => {
                ("MissingAuthenticationToken", "MissingAuthenticationToken", 403)
            }
            InvalidClientTokenId => ("InvalidClientTokenId", "InvalidClientTokenId", 403),
            SignatureDoesNotMatch => ("SignatureDoesNotMatch", "SignatureDoesNotMatch", 403),
            IncompleteSignature => ("IncompleteSignature", "IncompleteSignature", 400),
            RequestExpired => ("RequestExpired", "RequestExpired", 400),
            UnknownOperation => ("UnknownOperationException", "UnknownOperationException", 404),
        }
    }

    pub fn json_type(self) -> &'static str {
        self.names().0
    }

    pub fn query_code(self) -> &'static str {
        self.names().1
    }

    pub fn status(self) -> u16 {
        self.names().2
    }

    /// Whether the caller (rather than the server) is at fault.
    pub fn sender_fault(self) -> bool {
        self.status() < 500
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
