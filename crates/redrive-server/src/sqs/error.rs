//! SQS errors: the closed set of codes redrive answers with, each with its JSON-protocol type
//! name, its Query-protocol code and HTTP status, and the one mapping from [`redrive_core::Error`].

use std::fmt;

use redrive_core::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
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
}

impl Code {
    /// `(JSON __type name, Query code, HTTP status)`.
    fn names(self) -> (&'static str, &'static str, u16) {
        use Code::*;
        match self {
            QueueDoesNotExist => {
                ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400)
            }
            QueueNameExists => ("QueueNameExists", "QueueAlreadyExists", 400),
            InvalidParameterValue => ("InvalidParameterValue", "InvalidParameterValue", 400),
            MissingParameter => ("MissingParameter", "MissingParameter", 400),
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

/// An SQS error answer: a code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsError {
    pub code: Code,
    pub message: String,
    /// Whether to answer with `Retry-After` (not for a poisoned store: only a restart clears it).
    pub retry_after: bool,
}

pub type SqsResult<T> = Result<T, SqsError>;

impl SqsError {
    pub fn new(code: Code, message: impl Into<String>) -> SqsError {
        let retry_after = code.status() == 503;
        SqsError { code, message: message.into(), retry_after }
    }

    pub fn invalid(message: impl Into<String>) -> SqsError {
        SqsError::new(Code::InvalidParameterValue, message)
    }

    pub fn missing(parameter: &str) -> SqsError {
        SqsError::new(
            Code::MissingParameter,
            format!("The request must contain the parameter {parameter}."),
        )
    }
}

impl fmt::Display for SqsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.query_code(), self.message)
    }
}

impl From<Error> for SqsError {
    fn from(e: Error) -> SqsError {
        let code = match &e {
            Error::QueueNotFound(_) => Code::QueueDoesNotExist,
            Error::QueueExists(_) => Code::QueueNameExists,
            Error::InvalidQueueName(_)
            | Error::InvalidParameter { .. }
            | Error::MessageTooLarge { .. }
            | Error::StaleReceipt => Code::InvalidParameterValue,
            Error::MalformedRequest(_) => Code::MalformedInput,
            Error::RequestTooLarge { .. } => Code::BatchRequestTooLong,
            Error::RouteNotFound | Error::MethodNotAllowed => Code::InvalidAction,
            Error::Timeout => Code::RequestTimeout,
            Error::BatchTooLarge { .. } => Code::TooManyEntriesInBatchRequest,
            Error::EmptyBatch => Code::EmptyBatchRequest,
            Error::JobNotFound(_) | Error::InvalidReceipt => Code::ReceiptHandleIsInvalid,
            Error::ProposalNotFound(_) | Error::PolicyNotFound(_) => Code::ResourceNotFound,
            Error::LimitExceeded { .. } => Code::OverLimit,
            Error::Overloaded
            | Error::Poisoned(_)
            | Error::StoreUnavailable(_)
            | Error::ShuttingDown => Code::ServiceUnavailable,
            _ => Code::InternalError,
        };
        if !e.is_public() {
            tracing::error!(error = ?e, "internal error");
        }
        let message = match &e {
            Error::QueueNotFound(q) => format!("The specified queue does not exist: {q}."),
            e => e.to_string(),
        };
        SqsError { retry_after: e.retry_after_s().is_some(), ..SqsError::new(code, message) }
    }
}
