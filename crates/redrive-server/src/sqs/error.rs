//! SQS errors as answers: a code from the closed set in `redrive_core::error::SqsCode` (where the
//! one wire table maps every core error to its SQS code) and a message for people.

use std::fmt;

use redrive_core::Error;

pub use redrive_core::error::SqsCode as Code;

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
        let code = e.wire().sqs;
        if !e.is_public() {
            tracing::error!(error = ?e, "internal error");
        }
        let message = match &e {
            Error::QueueNotFound(_) => super::no_such_queue().message,
            e => e.to_string(),
        };
        SqsError { retry_after: e.retry_after_s().is_some(), ..SqsError::new(code, message) }
    }
}
