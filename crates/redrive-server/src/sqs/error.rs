//! Every error the SQS door answers with, as data: one [`Row`] per error, naming its [`Code`]
//! (which brings the HTTP status, the Query code and the JSON protocol's `__type`) and its message as a template whose `{hole}`s the call fills.
//! [`TABLE`] lists them all; `tests/sqs_errors.rs` sends a request that meets each row over both
//! protocols, and `docs/sqs-compatibility.md` prints the table.
//!
//! The messages are AWS's where AWS's are known (the API reference, and answers recorded from
//! SQS); where redrive refuses something AWS has no error for, the message says so in AWS's
//! manner ("Value … for parameter … is invalid. Reason: …").

use std::fmt;

use redrive_core::Error;

use super::wire::Protocol;

/// The closed set of SQS error codes redrive answers with, each with its JSON-protocol type name,
/// its Query-protocol code and HTTP status (as AWS answers them).
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

impl Code {
    /// `(JSON __type name, Query code, HTTP status)`.
    fn names(self) -> (&'static str, &'static str, u16) {
        use Code::*;
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

/// One error: its code and its message template. `query_message` is the Query protocol's
/// wording where AWS words the error differently there.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub name: &'static str,
    pub code: Code,
    pub message: &'static str,
    pub query_message: Option<&'static str>,
}

macro_rules! table {
    ($($(#[$doc:meta])* $name:ident: $code:ident, $message:literal $(, query: $query:literal)?;)*) => {
        $($(#[$doc])* pub static $name: Row = Row {
            name: stringify!($name),
            code: Code::$code,
            message: $message,
            query_message: table!(@query $($query)?),
        };)*
        /// Every row, in the order of the table.
        pub static TABLE: &[&Row] = &[$(&$name),*];
    };
    (@query) => { None };
    (@query $query:literal) => { Some($query) };
}

table! {
    // Queues and URLs.
    NON_EXISTENT_QUEUE: QueueDoesNotExist, "The specified queue does not exist.",
        query: "The specified queue does not exist for this wsdl version.";
    /// CreateQueue of an existing name with other attributes: names the first that differs.
    QUEUE_NAME_EXISTS: QueueNameExists,
        "A queue already exists with the same name and a different value for attribute {attribute}";
    /// The store refused a CreateQueue that raced another one of the same name.
    QUEUE_CREATED_MEANWHILE: QueueNameExists,
        "A queue already exists with the same name and a different value for an attribute";
    INVALID_QUEUE_NAME: InvalidParameterValue,
        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length. A FIFO queue's name ends with .fifo.";
    FIFO_NAME: InvalidParameterValue,
        "The name of a FIFO queue must end with the .fifo suffix, and only FIFO queues (FifoQueue=true) may use it.";
    NOT_A_QUEUE_ARN: InvalidParameterValue, "{arn} is not an SQS queue ARN.";

    // Request shape.
    MISSING_PARAMETER: MissingParameter, "The request must contain the parameter {parameter}.";
    OUT_OF_RANGE: InvalidParameterValue,
        "Value {value} for parameter {parameter} is invalid. Reason: Must be between {min} and {max}, if provided.";
    /// ReceiveMessage's `WaitTimeSeconds` out of range, in AWS's words for it.
    WAIT_OUT_OF_RANGE: InvalidParameterValue,
        "Value {value} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.";
    NOT_AN_INTEGER: InvalidParameterValue,
        "Value {value} for parameter {parameter} is invalid. Reason: it must be an integer.";
    /// A JSON value where SQS's model has an integer, as AWS's JSON front end answers it.
    NOT_AN_INTEGER_JSON: MalformedInput, "{detail} (member {member}).";
    /// The same where the member's name is not known (a member of a flattened structure).
    NOT_AN_INTEGER_JSON_UNNAMED: MalformedInput, "{detail}.";
    INVALID_MEMBER: InvalidParameterValue, "Invalid request: {detail}";
    /// A parameter sent twice, or as both a value and a structure. AWS documents
    /// `InvalidQueryParameter` for this, which is not among SQS's codes; `InvalidParameterValue`
    /// has the same status and every SDK reads it as the caller's fault.
    REPEATED_PARAMETER: InvalidParameterValue,
        "The request has more than one value for the parameter {parameter}.";
    REPEATED_MAP_KEY: InvalidParameterValue,
        "The {member} {key} is named more than once in the request.";
    NAME_NOT_UTF8: InvalidParameterValue, "A parameter name in the request is not valid UTF-8.";
    VALUE_NOT_UTF8: InvalidParameterValue,
        "Value for parameter {parameter} is invalid. Reason: it is not valid UTF-8.";
    BODY_NOT_UTF8: InvalidMessageContents,
        "Invalid binary character in the parameter {parameter}: the value is not valid UTF-8. The set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.";
    NOT_JSON: MalformedInput, "The body is not valid JSON: {detail}";
    NOT_A_JSON_OBJECT: MalformedInput, "The body must be a JSON object.";
    /// A request that names no action: AWS answers a GET of a queue URL so.
    NO_OPERATION: UnknownOperation,
        "The request names no operation: send an Action parameter (Query protocol) or an X-Amz-Target header (JSON protocol).";
    INVALID_ACTION: InvalidAction, "The action {action} is not valid for this endpoint.";
    /// A request the HTTP layer could not read (a path that is not UTF-8, a body cut off).
    MALFORMED_REQUEST: MalformedInput, "The request is malformed: {detail}";
    /// A method or path the SQS routes do not take (they take POST, and GET with an Action, at
    /// `/` and at queue URLs).
    NOT_AN_SQS_ROUTE: InvalidAction, "The HTTP method or path of the request is not valid for this endpoint.";
    /// The HTTP body is over the server's limit, before it is read as a request.
    REQUEST_TOO_LONG: BatchRequestTooLong,
        "The request body is over the limit of {max} bytes.";

    // Batches.
    EMPTY_BATCH: EmptyBatchRequest, "There should be at least one entry in the request.";
    TOO_MANY_ENTRIES: TooManyEntriesInBatchRequest,
        "Maximum number of entries per request are {max}. You have sent {count}.";
    INVALID_BATCH_ENTRY_ID: InvalidBatchEntryId,
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.";
    BATCH_ENTRY_IDS_NOT_DISTINCT: BatchEntryIdsNotDistinct, "Id {id} repeated.";
    BATCH_TOO_LONG: BatchRequestTooLong,
        "Batch requests cannot be longer than {max} bytes. You have sent {size} bytes.";

    // Messages.
    /// An empty body, as AWS answers it: a body of no characters is a body not sent.
    EMPTY_BODY: MissingParameter, "The request must contain the parameter MessageBody.";
    MESSAGE_TOO_LONG: InvalidParameterValue,
        "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes.";
    /// The same, as a SendMessageBatch entry's failure (AWS words it apart).
    ENTRY_TOO_LONG: InvalidParameterValue,
        "One or more parameters cannot be validated. Reason: Message must be shorter than {max} bytes.";
    INVALID_CHARACTERS: InvalidMessageContents,
        "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF; found {character}.";
    TOO_MANY_ATTRIBUTES: InvalidParameterValue,
        "Number of message attributes [{count}] exceeds the allowed maximum [{max}].";
    ATTRIBUTE_NAME_INVALID: InvalidParameterValue, "Message attribute name '{name}' is invalid.";
    ATTRIBUTE_TYPE_INVALID: InvalidParameterValue,
        "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String, each optionally followed by a period and a custom label.";
    ATTRIBUTE_VALUE_EMPTY: InvalidParameterValue,
        "Message (user) attribute '{name}' must contain a non-empty value of type '{type}'.";
    ATTRIBUTE_CHARACTER: InvalidParameterValue,
        "Message (user) attribute '{name}' contains the character {character}, outside the characters SQS allows.";
    ATTRIBUTE_NOT_A_NUMBER: InvalidParameterValue,
        "Can't cast the value of message (user) attribute '{name}' to a number: up to 38 digits, from 10^-128 to 10^+126.";
    ATTRIBUTE_NOT_BASE64: InvalidParameterValue,
        "Value for parameter MessageAttribute.{name}.BinaryValue is invalid. Reason: it is not base64.";
    /// redrive's own message attribute, for the job's priority.
    PRIORITY_ATTRIBUTE: InvalidParameterValue,
        "The message attribute 'redrive.priority' must be a String: high, standard or low.";
    SYSTEM_ATTRIBUTE_NAME: InvalidParameterValue,
        "Message system attribute name '{name}' is invalid; only AWSTraceHeader can be sent.";
    SYSTEM_ATTRIBUTE_TYPE: InvalidParameterValue,
        "The type of message system attribute 'AWSTraceHeader' is invalid: it must be String.";

    // FIFO.
    FIFO_ID_INVALID: InvalidParameterValue,
        "Value {value} for parameter {parameter} is invalid. Reason: {parameter} can only include alphanumeric and punctuation characters. 1 to 128 in length.";
    /// A FIFO SendMessageBatch entry without its group: AWS answers this code there (and
    /// `MissingParameter` to a SendMessage).
    ENTRY_GROUP_MISSING: InvalidParameterValue,
        "The request must contain the parameter MessageGroupId.";
    MISSING_DEDUPLICATION_ID: InvalidParameterValue,
        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly";
    FIFO_DELAY: InvalidParameterValue,
        "Value {value} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.";
    DEDUPLICATION_ON_STANDARD: InvalidParameterValue,
        "The request include parameter MessageDeduplicationId that is not valid for this queue type (only FIFO queues deduplicate).";

    // Receipts.
    RECEIPT_INVALID: ReceiptHandleIsInvalid,
        "The input receipt handle \"{handle}\" is not a valid receipt handle.";
    RECEIPT_EXPIRED: InvalidParameterValue,
        "Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.";
    /// A receipt the store no longer knows, met where the handle is not at hand.
    RECEIPT_UNKNOWN: ReceiptHandleIsInvalid, "The input receipt handle is not a valid receipt handle.";
    /// A visibility change for a message that is gone (deleted, forgotten, moved to its
    /// dead-letter queue) or held under a newer receipt.
    MESSAGE_NOT_AVAILABLE: InvalidParameterValue,
        "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.";
    /// The same, as a ChangeMessageVisibilityBatch entry's failure (AWS words it apart).
    ENTRY_NOT_AVAILABLE: ReceiptHandleIsInvalid,
        "Message does not exist or is not available for visibility timeout change";

    // Queue attributes and permissions.
    ATTRIBUTE_VALUE: InvalidAttributeValue, "Invalid value for the parameter {attribute}. {reason}";
    UNKNOWN_ATTRIBUTE: InvalidAttributeName, "Unknown Attribute {attribute}.";
    /// A FIFO-only attribute given to a standard queue.
    FIFO_ONLY_ATTRIBUTE: InvalidAttributeName,
        "You can specify the {attribute} only when FifoQueue is set to true.";
    REDRIVE_POLICY_INVALID: InvalidParameterValue,
        "Value {policy} for parameter RedrivePolicy is invalid. Reason: {reason}";
    DEAD_LETTER_KIND: InvalidParameterValue,
        "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source..";
    DEAD_LETTER_REGION: InvalidParameterValue,
        "Value for parameter RedrivePolicy is invalid. Reason: The dead letter target {arn} must be in the same region as the source queue.";
    DEAD_LETTER_MISSING: InvalidParameterValue,
        "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.";
    PERMISSION_SHAPE: InvalidParameterValue,
        "A permission needs a label of up to 80 alphanumeric characters, hyphens or underscores, at least one account id and at least one action.";
    LABEL_EXISTS: InvalidParameterValue,
        "Value {label} for parameter Label is invalid. Reason: Already exists.";
    LABEL_MISSING: InvalidParameterValue,
        "Value {label} for parameter Label is invalid. Reason: can't find label.";
    ATTEMPT_ID_INVALID: InvalidParameterValue,
        "Value {value} for parameter ReceiveRequestAttemptId is invalid. Reason: 1 to 128 alphanumeric or punctuation characters.";
    /// Any other parameter the store refuses (its field and why).
    STORE_REFUSED: InvalidParameterValue, "Value for parameter {parameter} is invalid. Reason: {reason}";

    // Move tasks.
    MOVE_SOURCE_MISSING: ResourceNotFound,
        "The resource that you specified for the SourceArn parameter doesn't exist.";
    MOVE_SOURCE_NOT_DEAD_LETTER: InvalidParameterValue,
        "Source queue must be configured as a Dead Letter Queue.";
    MOVE_DESTINATION_MISSING: ResourceNotFound,
        "The resource that you specified for the DestinationArn parameter doesn't exist.";
    MOVE_ALREADY_RUNNING: UnsupportedOperation,
        "There is already a task running. Only one active task is allowed for each source queue arn at a given time.";
    TASK_HANDLE_INVALID: InvalidParameterValue, "Value for parameter TaskHandle is invalid.";
    TASK_MISSING: ResourceNotFound, "Task does not exist.";

    // Who may call.
    MISSING_TOKEN: MissingAuthenticationToken, "Request is missing Authentication Token";
    INVALID_TOKEN: InvalidClientTokenId, "The security token included in the request is invalid.";
    SIGNATURE_MISMATCH: SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
    /// The credential scope names another service, or a malformed date or region.
    SCOPE_MISMATCH: SignatureDoesNotMatch, "{detail}";
    INCOMPLETE_SIGNATURE: IncompleteSignature, "{detail}";
    REQUEST_EXPIRED: RequestExpired, "{detail}";
    ACCESS_DENIED: AccessDenied, "Access to the resource {queue} is denied: this key may not {action} it.";
    /// Without `--auth`, a request a web page could send may only read.
    UNSIGNED_CHANGE: AccessDenied,
        "{action} changes the queues: send it signed (as AWS SDKs and the aws CLI do) or as the JSON protocol; unsigned form and GET requests may only read.";

    // The server's side.
    OVER_LIMIT: OverLimit, "The specified action violates a limit: {limit} of {max} reached.";
    SERVICE_UNAVAILABLE: ServiceUnavailable,
        "The request has failed due to a temporary failure of the server: {reason}";
    /// A write failed earlier and the store refuses writes until a restart (no `Retry-After`).
    STORE_POISONED: ServiceUnavailable,
        "The request has failed due to a failure of the server's store: {reason}";
    REQUEST_TIMEOUT: RequestTimeout, "The request took too long; retry it.";
    INTERNAL_ERROR: InternalError,
        "The request processing has failed because of an unknown error, exception or failure.";
}

/// An SQS error answer: its row and the values for the row's holes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsError {
    pub row: &'static Row,
    args: Vec<(&'static str, String)>,
}

pub type SqsResult<T> = Result<T, SqsError>;

impl Row {
    /// The error, for a row without holes.
    pub fn err(&'static self) -> SqsError {
        self.with(&[])
    }

    /// The error, with a value for each of the row's holes.
    pub fn with(&'static self, args: &[(&'static str, &dyn fmt::Display)]) -> SqsError {
        let args: Vec<_> = args.iter().map(|(k, v)| (*k, v.to_string())).collect();
        debug_assert_eq!(
            {
                let mut given: Vec<_> = args.iter().map(|(k, _)| *k).collect();
                given.sort_unstable();
                given
            },
            self.holes(),
            "the holes of {}",
            self.name
        );
        SqsError { row: self, args }
    }

    /// The names of the holes in the template, sorted.
    pub fn holes(&self) -> Vec<&'static str> {
        let mut holes: Vec<_> = pieces(self.message)
            .filter_map(|p| match p {
                Piece::Hole(h) => Some(h),
                Piece::Text(_) => None,
            })
            .collect();
        holes.sort_unstable();
        holes.dedup();
        holes
    }

    /// The message in `protocol`, its holes filled from `args` (a hole without a value stays).
    pub fn render(&self, protocol: Protocol, args: &[(&str, &str)]) -> String {
        let template = match protocol {
            Protocol::Query => self.query_message.unwrap_or(self.message),
            Protocol::Json => self.message,
        };
        let mut out = String::with_capacity(template.len() + 32);
        for piece in pieces(template) {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Hole(h) => match args.iter().find(|(k, _)| *k == h) {
                    Some((_, v)) => out.push_str(v),
                    None => out.extend(["{", h, "}"]),
                },
            }
        }
        out
    }
}

/// A part of a message template: text as it is, or the name of a `{hole}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Hole(&'a str),
}

/// A template's pieces in order. A `{` without its `}` is text.
pub fn pieces(template: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = template;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let hole = rest.find('{').and_then(|s| Some((s, s + rest[s..].find('}')?)));
        let (piece, next) = match hole {
            Some((0, end)) => (Piece::Hole(&rest[1..end]), end + 1),
            Some((start, _)) => (Piece::Text(&rest[..start]), start),
            None => (Piece::Text(rest), rest.len()),
        };
        rest = &rest[next..];
        Some(piece)
    })
}

impl SqsError {
    pub fn code(&self) -> Code {
        self.row.code
    }

    /// The message as the JSON protocol words it (also the batch entries' message).
    pub fn message(&self) -> String {
        self.message_in(Protocol::Json)
    }

    pub fn message_in(&self, protocol: Protocol) -> String {
        let args: Vec<(&str, &str)> = self.args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.row.render(protocol, &args)
    }

    /// Whether to answer with `Retry-After`: for a failure that clears by itself.
    pub fn retry_after(&self) -> bool {
        self.row.code.status() == 503 && self.row != &STORE_POISONED
    }

    pub fn missing(parameter: &str) -> SqsError {
        MISSING_PARAMETER.with(&[("parameter", &parameter)])
    }

    /// The error as SendMessageBatch words it (for an entry, or the whole request), where AWS
    /// words it apart from SendMessage.
    pub fn in_batch(self) -> SqsError {
        let group = self.args.iter().any(|(k, v)| *k == "parameter" && v == "MessageGroupId");
        let row: &'static Row = match self.row {
            r if r == &MESSAGE_TOO_LONG => &ENTRY_TOO_LONG,
            r if r == &MISSING_PARAMETER && group => &ENTRY_GROUP_MISSING,
            _ => return self,
        };
        SqsError { row, ..self }
    }
}

impl fmt::Display for SqsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code().query_code(), self.message())
    }
}

impl From<Error> for SqsError {
    /// The row a store or server error answers with on the SQS door.
    fn from(e: Error) -> SqsError {
        match e {
            Error::QueueNotFound(_) => NON_EXISTENT_QUEUE.err(),
            Error::QueueExists(_) => QUEUE_CREATED_MEANWHILE.err(),
            Error::InvalidQueueName(_) => INVALID_QUEUE_NAME.err(),
            Error::InvalidParameter { field, message } => {
                STORE_REFUSED.with(&[("parameter", &field), ("reason", &message)])
            }
            Error::MalformedRequest(detail) => MALFORMED_REQUEST.with(&[("detail", &detail)]),
            Error::MethodNotAllowed | Error::RouteNotFound => NOT_AN_SQS_ROUTE.err(),
            Error::MessageTooLarge { max, .. } => MESSAGE_TOO_LONG.with(&[("max", &max)]),
            Error::RequestTooLarge { max } => REQUEST_TOO_LONG.with(&[("max", &max)]),
            Error::BatchTooLarge { count, max } => {
                TOO_MANY_ENTRIES.with(&[("count", &count), ("max", &max)])
            }
            Error::EmptyBatch => EMPTY_BATCH.err(),
            Error::StaleReceipt
            | Error::InvalidReceipt
            | Error::UnknownReceipt
            | Error::JobNotFound(_) => RECEIPT_UNKNOWN.err(),
            Error::LimitExceeded { limit, max } => {
                OVER_LIMIT.with(&[("limit", &limit), ("max", &max)])
            }
            Error::Timeout => REQUEST_TIMEOUT.err(),
            Error::Unauthorized(_) => INVALID_TOKEN.err(),
            Error::Forbidden { action, queue } => {
                ACCESS_DENIED.with(&[("action", &action), ("queue", &queue)])
            }
            e @ Error::Poisoned(_) => STORE_POISONED.with(&[("reason", &e)]),
            e @ (Error::Overloaded | Error::StoreUnavailable(_) | Error::ShuttingDown) => {
                SERVICE_UNAVAILABLE.with(&[("reason", &e)])
            }
            e => {
                // Internal errors, and errors of routes the SQS door has none of: the text is
                // for the log, never for the client.
                tracing::error!(error = ?e, "internal error on the SQS door");
                INTERNAL_ERROR.err()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_unique_name_and_well_formed_holes() {
        let mut names: Vec<_> = TABLE.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len(), "row names repeat");
        for row in TABLE {
            for template in [Some(row.message), row.query_message].into_iter().flatten() {
                assert_eq!(
                    template.matches('{').count(),
                    template.matches('}').count(),
                    "{}: unbalanced holes",
                    row.name
                );
            }
            for hole in row.holes() {
                assert!(
                    !hole.is_empty() && hole.bytes().all(|b| b.is_ascii_lowercase()),
                    "{}: hole {hole:?}",
                    row.name
                );
            }
        }
    }

    #[test]
    fn a_message_fills_its_holes_and_the_query_wording_where_aws_has_one() {
        let e = OUT_OF_RANGE.with(&[
            ("value", &11),
            ("parameter", &"MaxNumberOfMessages"),
            ("min", &1),
            ("max", &10),
        ]);
        assert_eq!(
            e.message(),
            "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
        );
        let e = NON_EXISTENT_QUEUE.err();
        assert_eq!(e.message_in(Protocol::Json), "The specified queue does not exist.");
        assert_eq!(
            e.message_in(Protocol::Query),
            "The specified queue does not exist for this wsdl version."
        );
        let parts: Vec<_> = pieces("a {b} c{d").collect();
        assert_eq!(parts, [Piece::Text("a "), Piece::Hole("b"), Piece::Text(" c{d")]);
        // A value holding braces is not read as a hole.
        let e = ATTRIBUTE_NAME_INVALID.with(&[("name", &"{x}")]);
        assert_eq!(e.message(), "Message attribute name '{x}' is invalid.");
    }

    /// The table as `docs/sqs-compatibility.md` prints it.
    fn markdown() -> String {
        let mut out = String::from("| Row | Query code | HTTP | Message |\n|---|---|---|---|\n");
        for row in TABLE {
            let mut message = row.message.replace('|', "\\|");
            if let Some(q) = row.query_message {
                message.push_str(&format!(" (Query protocol: {})", q.replace('|', "\\|")));
            }
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {} |\n",
                row.name,
                row.code.query_code(),
                row.code.status(),
                message
            ));
        }
        out
    }

    /// The docs print the table as it is; `REDRIVE_WRITE_DOCS=1` rewrites their copy.
    #[test]
    fn the_docs_print_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sqs-compatibility.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let (start, end) = ("<!-- error table: start -->\n", "<!-- error table: end -->");
        let from = docs.find(start).expect("the start marker") + start.len();
        let to = docs.find(end).expect("the end marker");
        let table = markdown();
        if docs[from..to] != table && std::env::var_os("REDRIVE_WRITE_DOCS").is_some() {
            std::fs::write(path, format!("{}{table}{}", &docs[..from], &docs[to..])).unwrap();
            return;
        }
        assert!(
            docs[from..to] == table,
            "docs/sqs-compatibility.md lists another error table; rerun with REDRIVE_WRITE_DOCS=1"
        );
    }

    #[test]
    fn store_errors_map_to_their_rows_and_internal_text_stays_in() {
        let e = SqsError::from(Error::Internal("disk on fire at /var/x".into()));
        assert_eq!(e.row, &INTERNAL_ERROR);
        assert!(!e.message().contains("disk"));
        let e = SqsError::from(Error::Overloaded);
        assert_eq!(e.row, &SERVICE_UNAVAILABLE);
        assert!(e.retry_after());
        assert_eq!(SqsError::from(Error::QueueNotFound("q".into())).row, &NON_EXISTENT_QUEUE);
    }
}
