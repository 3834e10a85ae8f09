//! Every row of the SQS error table (`redrive_server::sqs::error::TABLE`), met by a real request
//! over both protocols: the HTTP status, the Query code, the JSON protocol's `__type` and the
//! `x-amzn-query-error` header are AWS's (from the list below, written from the SQS API
//! reference and the SDKs' service models), and the message is the row's template filled with
//! what the request sent. A row without a case here fails the test; so does a case whose answer
//! comes from another row. The few rows no request can reach on purpose (a race, a timeout, a
//! bug) are listed with the reason, and their answers are checked as rendered.
//!
//! In process (`oneshot`), over the embedded engine on memory storage.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use redrive_core::time::{to_rfc3339, Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::auth::{self, AuthSettings};
use redrive_server::sqs::error::{pieces, Code, Piece, Row, TABLE};
use redrive_server::sqs::wire::Protocol;
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

const ACCOUNT_URL: &str = "http://localhost/000000000000";
const ARN: &str = "arn:aws:sqs:us-east-1:000000000000";
const ADMIN: (&str, &str) = ("ADMINKEY000000000001", "admin-secret-admin-secret-admin-secret-0");
const READER: (&str, &str) = ("READERKEY00000000001", "reader-secret-reader-secret-reader-secr");
const SLOW: (&str, &str) = ("SLOWKEY0000000000001", "slow-secret-slow-secret-slow-secret-slo");

/// Dead letters a move task moves at one a second, so that it runs through the test.
const DEAD_LETTERS: usize = 10;

/// AWS's names and status for each code: `(code, HTTP status, Query code, JSON type)`.
const AWS: &[(Code, u16, &str, &str)] = &[
    (Code::QueueDoesNotExist, 400, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"),
    (Code::QueueNameExists, 400, "QueueAlreadyExists", "QueueNameExists"),
    (Code::InvalidParameterValue, 400, "InvalidParameterValue", "InvalidParameterValueException"),
    (Code::MissingParameter, 400, "MissingParameter", "MissingRequiredParameterException"),
    (Code::InvalidAttributeName, 400, "InvalidAttributeName", "InvalidAttributeName"),
    (Code::InvalidAttributeValue, 400, "InvalidAttributeValue", "InvalidAttributeValue"),
    (Code::InvalidMessageContents, 400, "InvalidMessageContents", "InvalidMessageContents"),
    (Code::ReceiptHandleIsInvalid, 400, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
    (
        Code::BatchRequestTooLong,
        400,
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "BatchRequestTooLong",
    ),
    (
        Code::TooManyEntriesInBatchRequest,
        400,
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "TooManyEntriesInBatchRequest",
    ),
    (Code::EmptyBatchRequest, 400, "AWS.SimpleQueueService.EmptyBatchRequest", "EmptyBatchRequest"),
    (
        Code::BatchEntryIdsNotDistinct,
        400,
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "BatchEntryIdsNotDistinct",
    ),
    (
        Code::InvalidBatchEntryId,
        400,
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "InvalidBatchEntryId",
    ),
    (Code::OverLimit, 403, "OverLimit", "OverLimit"),
    (
        Code::UnsupportedOperation,
        400,
        "AWS.SimpleQueueService.UnsupportedOperation",
        "UnsupportedOperation",
    ),
    (Code::ResourceNotFound, 404, "ResourceNotFoundException", "ResourceNotFoundException"),
    (Code::InvalidAction, 400, "InvalidAction", "InvalidAction"),
    (Code::MalformedInput, 400, "MalformedQueryString", "SerializationException"),
    (Code::RequestTimeout, 408, "RequestTimeout", "RequestTimeout"),
    (Code::ServiceUnavailable, 503, "ServiceUnavailable", "ServiceUnavailable"),
    (Code::InternalError, 500, "InternalError", "InternalError"),
    (Code::AccessDenied, 403, "AccessDenied", "AccessDenied"),
    (
        Code::MissingAuthenticationToken,
        403,
        "MissingAuthenticationToken",
        "MissingAuthenticationToken",
    ),
    (Code::InvalidClientTokenId, 403, "InvalidClientTokenId", "InvalidClientTokenId"),
    (Code::SignatureDoesNotMatch, 403, "SignatureDoesNotMatch", "SignatureDoesNotMatch"),
    (Code::IncompleteSignature, 400, "IncompleteSignature", "IncompleteSignature"),
    (Code::RequestExpired, 400, "RequestExpired", "RequestExpired"),
    (Code::UnknownOperation, 404, "UnknownOperationException", "UnknownOperationException"),
];

/// Rows no request reaches on purpose, with the reason; their answers are checked as rendered.
const UNREACHABLE: &[(&str, &str)] = &[
    ("QUEUE_CREATED_MEANWHILE", "only when two CreateQueue calls of one name race"),
    (
        "RECEIPT_UNKNOWN",
        "a store error on a receipt whose handle verified: every action names the handle first",
    ),
    (
        "REQUEST_TIMEOUT",
        "the server's request timeout, which the in-process router has no clock for",
    ),
    ("INTERNAL_ERROR", "a bug"),
    (
        "ENTRY_NOT_AVAILABLE",
        "a ChangeMessageVisibilityBatch entry's failure, inside a 200 answer (tests/sqs.rs)",
    ),
    (
        "ENTRY_TOO_LONG",
        "a SendMessageBatch entry's failure, inside a 200 answer (tests/sqs/test_fidelity.py)",
    ),
];

/// The servers the cases run against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    /// Without `--auth`.
    Open,
    /// With `--auth`: an admin key, a key that may only read, and a key allowed one request a
    /// second.
    Auth,
    /// Its engine is shut down.
    Stopped,
    /// Its storage fails every write: the store refuses writes until a restart.
    Poisoned,
}

/// What a case needs before its request, each time it is sent.
#[derive(Clone, Copy)]
enum Setup {
    None,
    /// Sends a message to the queue and receives it with this visibility timeout, then deletes
    /// it if asked; `$RECEIPT` in the request is its receipt handle.
    Receipt {
        queue: &'static str,
        visibility: u32,
        delete: bool,
    },
    /// One request of the slow key first, so that the case's request is over its rate.
    SpendSlowKey,
}

/// How a case is sent.
enum Send {
    /// Parameters, as the JSON protocol has them; sent as JSON and as a Query form.
    Params(Value),
    /// Raw bodies: a form for the Query protocol and a JSON body, `None` where the row cannot
    /// arise in that protocol.
    Raw { query: Option<String>, json: Option<String> },
    /// A request built by hand for each protocol (signatures, GETs, tokens).
    Built(fn(Protocol) -> Option<Request<Body>>),
}

struct Case {
    row: &'static str,
    server: Server,
    setup: Setup,
    action: &'static str,
    send: Send,
    /// The values the message names; `None` for text the test cannot know (a parser's words).
    args: Vec<(&'static str, Option<String>)>,
}

fn case(row: &'static str, action: &'static str, params: Value) -> Case {
    Case {
        row,
        server: Server::Open,
        setup: Setup::None,
        action,
        send: Send::Params(params),
        args: vec![],
    }
}

impl Case {
    fn args(mut self, args: &[(&'static str, &str)]) -> Case {
        self.args.extend(args.iter().map(|(k, v)| (*k, Some((*v).to_owned()))));
        self
    }

    fn any(mut self, hole: &'static str) -> Case {
        self.args.push((hole, None));
        self
    }

    fn on(mut self, server: Server) -> Case {
        self.server = server;
        self
    }

    fn setup(mut self, setup: Setup) -> Case {
        self.setup = setup;
        self
    }

    fn raw(
        row: &'static str,
        action: &'static str,
        query: Option<String>,
        json: Option<String>,
    ) -> Case {
        Case { send: Send::Raw { query, json }, ..case(row, action, Value::Null) }
    }

    fn built(
        row: &'static str,
        server: Server,
        build: fn(Protocol) -> Option<Request<Body>>,
    ) -> Case {
        Case { server, send: Send::Built(build), ..case(row, "", Value::Null) }
    }
}

fn url(queue: &str) -> String {
    format!("{ACCOUNT_URL}/{queue}")
}

fn string_attr(v: &str) -> Value {
    json!({"DataType": "String", "StringValue": v})
}

fn entry(id: &str) -> Value {
    json!({"Id": id, "MessageBody": "x"})
}

fn cases() -> Vec<Case> {
    let big = "x".repeat(600 * 1024);
    let eleven_attrs: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("a{i}"), string_attr("v"))).collect();
    let many_tags: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
    let send = |attrs: Value| json!({"QueueUrl": url("sqsq"), "MessageBody": "x", "MessageAttributes": attrs});
    let fifo_send = |extra: Value| {
        let mut p = json!({"QueueUrl": url("fifo.fifo"), "MessageBody": "x"});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let redrive = |target: &str| json!({"QueueUrl": url("sqsq"), "Attributes": {"RedrivePolicy": json!({"deadLetterTargetArn": target, "maxReceiveCount": 3}).to_string()}});
    // The handle of a task that never existed, shaped as AWS shapes handles.
    let ghost_task = "eyJ0YXNrSWQiOiJnaG9zdCIsInNvdXJjZUFybiI6ImFybjphd3M6c3FzOnVzLWVhc3QtMTowMDAwMDAwMDAwMDA6ZGxxIn0=";
    let form = |rest: &str| Some(format!("Action={rest}"));
    vec![
        // First, while the move task started in `fill` surely runs.
        case("MOVE_ALREADY_RUNNING", "StartMessageMoveTask", json!({"SourceArn": format!("{ARN}:busy-dlq")})),
        // Queues and URLs.
        case("NON_EXISTENT_QUEUE", "GetQueueUrl", json!({"QueueName": "ghost"})),
        case("QUEUE_NAME_EXISTS", "CreateQueue", json!({"QueueName": "sqsq", "Attributes": {"VisibilityTimeout": "99"}}))
            .args(&[("attribute", "VisibilityTimeout")]),
        case("INVALID_QUEUE_NAME", "CreateQueue", json!({"QueueName": "no spaces"})),
        case("FIFO_NAME", "CreateQueue", json!({"QueueName": "plain.fifo"})),
        case("NOT_A_QUEUE_ARN", "StartMessageMoveTask", json!({"SourceArn": "not-an-arn"}))
            .args(&[("arn", "not-an-arn")]),
        // Request shape.
        case("MISSING_PARAMETER", "SendMessage", json!({"QueueUrl": url("sqsq")}))
            .args(&[("parameter", "MessageBody")]),
        case("OUT_OF_RANGE", "ReceiveMessage", json!({"QueueUrl": url("sqsq"), "MaxNumberOfMessages": 11}))
            .args(&[("value", "11"), ("parameter", "MaxNumberOfMessages"), ("min", "1"), ("max", "10")]),
        Case::raw("NOT_AN_INTEGER", "ReceiveMessage", form(&format!("ReceiveMessage&QueueUrl={}&MaxNumberOfMessages=ten", enc(&url("sqsq")))), None)
            .args(&[("value", "ten"), ("parameter", "MaxNumberOfMessages")]),
        Case::raw("NOT_AN_INTEGER_JSON_UNNAMED", "SendMessage", None, Some(json!({"QueueUrl": url("sqsq"), "MessageBody": "x", "DelaySeconds": "5"}).to_string()))
            .any("detail"),
        case("WAIT_OUT_OF_RANGE", "ReceiveMessage", json!({"QueueUrl": url("sqsq"), "WaitTimeSeconds": 21}))
            .args(&[("value", "21")]),
        Case::raw("NOT_AN_INTEGER_JSON", "ReceiveMessage", None, Some(json!({"QueueUrl": url("sqsq"), "MaxNumberOfMessages": "ten"}).to_string()))
            .args(&[("member", "MaxNumberOfMessages")]).any("detail"),
        Case::raw("INVALID_MEMBER", "GetQueueUrl", None, Some(r#"{"QueueName": 5}"#.into())).any("detail"),
        Case::raw("REPEATED_PARAMETER", "GetQueueUrl", form("GetQueueUrl&QueueName=a&QueueName=b"), None)
            .args(&[("parameter", "QueueName")]),
        Case::raw(
            "REPEATED_MAP_KEY",
            "CreateQueue",
            form("CreateQueue&QueueName=twice&Attribute.1.Name=DelaySeconds&Attribute.1.Value=1&Attribute.2.Name=DelaySeconds&Attribute.2.Value=2"),
            None,
        )
        .args(&[("member", "Attribute"), ("key", "DelaySeconds")]),
        Case::raw("NAME_NOT_UTF8", "ListQueues", form("ListQueues&%FF=1"), None),
        Case::raw("VALUE_NOT_UTF8", "GetQueueUrl", form("GetQueueUrl&QueueName=%FF"), None)
            .args(&[("parameter", "QueueName")]),
        Case::raw("BODY_NOT_UTF8", "SendMessage", form(&format!("SendMessage&QueueUrl={}&MessageBody=%FF", enc(&url("sqsq")))), None)
            .args(&[("parameter", "MessageBody")]),
        Case::raw("NOT_JSON", "ListQueues", None, Some("{".into())).any("detail"),
        Case::raw("NOT_A_JSON_OBJECT", "ListQueues", None, Some("[]".into())),
        Case::built("NO_OPERATION", Server::Open, |p| {
            (p == Protocol::Query).then(|| Request::get(url("sqsq")).body(Body::empty()).unwrap())
        }),
        Case::built("MALFORMED_REQUEST", Server::Open, |p| {
            let req = signed(Request::post("/000000000000/%FF"));
            Some(with_params(p, "GetQueueUrl", req, &json!({"QueueName": "sqsq"})))
        })
        .any("detail"),
        Case::built("NOT_AN_SQS_ROUTE", Server::Open, |p| {
            let req = signed(Request::put(url("sqsq")));
            Some(with_params(p, "GetQueueUrl", req, &json!({"QueueName": "sqsq"})))
        }),
        case("INVALID_ACTION", "Frobnicate", json!({})).args(&[("action", "Frobnicate")]),
        Case::built("REQUEST_TOO_LONG", Server::Open, |p| {
            let body = vec![b'x'; redrive_core::limits::REQUEST_BODY_MAX_BYTES + 1];
            Some(protocol_request(p, "SendMessage", Request::post("/")).body(Body::from(body)).unwrap())
        })
        .args(&[("max", &redrive_core::limits::REQUEST_BODY_MAX_BYTES.to_string())]),
        // Batches.
        case("EMPTY_BATCH", "SendMessageBatch", json!({"QueueUrl": url("sqsq"), "Entries": []})),
        case("TOO_MANY_ENTRIES", "SendMessageBatch", json!({"QueueUrl": url("sqsq"), "Entries": (0..11).map(|i| entry(&format!("e{i}"))).collect::<Vec<_>>()}))
            .args(&[("max", "10"), ("count", "11")]),
        case("INVALID_BATCH_ENTRY_ID", "DeleteMessageBatch", json!({"QueueUrl": url("sqsq"), "Entries": [{"Id": "no spaces", "ReceiptHandle": "r"}]})),
        case("BATCH_ENTRY_IDS_NOT_DISTINCT", "SendMessageBatch", json!({"QueueUrl": url("sqsq"), "Entries": [entry("a"), entry("a")]}))
            .args(&[("id", "a")]),
        case("BATCH_TOO_LONG", "SendMessageBatch", json!({"QueueUrl": url("sqsq"), "Entries": [
            {"Id": "a", "MessageBody": big}, {"Id": "b", "MessageBody": big}]}))
            .args(&[("max", "1048576"), ("size", &(2 * 600 * 1024).to_string())]),
        // Messages.
        case("EMPTY_BODY", "SendMessage", json!({"QueueUrl": url("sqsq"), "MessageBody": ""})),
        case("MESSAGE_TOO_LONG", "SendMessage", json!({"QueueUrl": url("small"), "MessageBody": "x".repeat(1025)}))
            .args(&[("max", "1024")]),
        case("INVALID_CHARACTERS", "SendMessage", json!({"QueueUrl": url("sqsq"), "MessageBody": "a\u{1}b"}))
            .args(&[("character", "U+0001")]),
        case("TOO_MANY_ATTRIBUTES", "SendMessage", send(Value::Object(eleven_attrs)))
            .args(&[("count", "11"), ("max", "10")]),
        case("ATTRIBUTE_NAME_INVALID", "SendMessage", send(json!({"aws.reserved": string_attr("v")})))
            .args(&[("name", "aws.reserved")]),
        case("ATTRIBUTE_TYPE_INVALID", "SendMessage", send(json!({"a": {"DataType": "Blob", "StringValue": "v"}})))
            .args(&[("name", "a")]),
        case("ATTRIBUTE_VALUE_EMPTY", "SendMessage", send(json!({"a": string_attr("")})))
            .args(&[("name", "a"), ("type", "String")]),
        case("ATTRIBUTE_CHARACTER", "SendMessage", send(json!({"a": string_attr("a\u{1}")})))
            .args(&[("name", "a"), ("character", "U+0001")]),
        case("ATTRIBUTE_NOT_A_NUMBER", "SendMessage", send(json!({"n": {"DataType": "Number", "StringValue": "twelve"}})))
            .args(&[("name", "n")]),
        case("ATTRIBUTE_NOT_BASE64", "SendMessage", send(json!({"b": {"DataType": "Binary", "BinaryValue": "!!not base64!!"}})))
            .args(&[("name", "b")]),
        case("PRIORITY_ATTRIBUTE", "SendMessage", send(json!({"redrive.priority": string_attr("urgent")}))),
        case("SYSTEM_ATTRIBUTE_NAME", "SendMessage", json!({"QueueUrl": url("sqsq"), "MessageBody": "x",
            "MessageSystemAttributes": {"Other": string_attr("v")}}))
            .args(&[("name", "Other")]),
        case("SYSTEM_ATTRIBUTE_TYPE", "SendMessage", json!({"QueueUrl": url("sqsq"), "MessageBody": "x",
            "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "Number", "StringValue": "1"}}})),
        // FIFO.
        case("FIFO_ID_INVALID", "SendMessage", fifo_send(json!({"MessageGroupId": "a b", "MessageDeduplicationId": "d"})))
            .args(&[("value", "a b"), ("parameter", "MessageGroupId")]),
        case("MISSING_DEDUPLICATION_ID", "SendMessage", fifo_send(json!({"MessageGroupId": "g"}))),
        case("ENTRY_GROUP_MISSING", "SendMessageBatch", json!({"QueueUrl": url("fifo.fifo"), "Entries": [
            {"Id": "a", "MessageBody": "x", "MessageDeduplicationId": "d"}]})),
        case("FIFO_DELAY", "SendMessage", fifo_send(json!({"MessageGroupId": "g", "MessageDeduplicationId": "d", "DelaySeconds": 5})))
            .args(&[("value", "5")]),
        case("DEDUPLICATION_ON_STANDARD", "SendMessage", json!({"QueueUrl": url("sqsq"), "MessageBody": "x", "MessageDeduplicationId": "d"})),
        // Receipts.
        case("RECEIPT_INVALID", "DeleteMessage", json!({"QueueUrl": url("sqsq"), "ReceiptHandle": "garbage"}))
            .args(&[("handle", "garbage")]),
        case("RECEIPT_EXPIRED", "DeleteMessage", json!({"QueueUrl": url("fifo.fifo"), "ReceiptHandle": "$RECEIPT"}))
            .setup(Setup::Receipt { queue: "fifo.fifo", visibility: 0, delete: false })
            .args(&[("handle", "$RECEIPT")]),
        case("MESSAGE_NOT_AVAILABLE", "ChangeMessageVisibility", json!({"QueueUrl": url("sqsq"), "ReceiptHandle": "$RECEIPT", "VisibilityTimeout": 10}))
            .setup(Setup::Receipt { queue: "sqsq", visibility: 30, delete: true })
            .args(&[("handle", "$RECEIPT")]),
        // Queue attributes and permissions.
        case("ATTRIBUTE_VALUE", "SetQueueAttributes", json!({"QueueUrl": url("sqsq"), "Attributes": {"VisibilityTimeout": "43201"}}))
            .args(&[("attribute", "VisibilityTimeout")]).any("reason"),
        case("UNKNOWN_ATTRIBUTE", "SetQueueAttributes", json!({"QueueUrl": url("sqsq"), "Attributes": {"Colour": "blue"}}))
            .args(&[("attribute", "Colour")]),
        case("FIFO_ONLY_ATTRIBUTE", "SetQueueAttributes", json!({"QueueUrl": url("sqsq"), "Attributes": {"DeduplicationScope": "queue"}}))
            .args(&[("attribute", "DeduplicationScope")]),
        case("REDRIVE_POLICY_INVALID", "SetQueueAttributes", json!({"QueueUrl": url("sqsq"), "Attributes": {"RedrivePolicy": json!({"deadLetterTargetArn": format!("{ARN}:dlq")}).to_string()}}))
            .args(&[("policy", &json!({"deadLetterTargetArn": format!("{ARN}:dlq")}).to_string()), ("reason", "Redrive policy does not contain mandatory attribute: maxReceiveCount.")]),
        case("DEAD_LETTER_KIND", "SetQueueAttributes", redrive(&format!("{ARN}:fifo.fifo")))
            .any("policy"),
        case("DEAD_LETTER_REGION", "SetQueueAttributes", redrive("arn:aws:sqs:eu-west-1:000000000000:dlq"))
            .args(&[("arn", "arn:aws:sqs:eu-west-1:000000000000:dlq")]),
        case("DEAD_LETTER_MISSING", "SetQueueAttributes", redrive(&format!("{ARN}:ghost")))
            .any("policy"),
        case("PERMISSION_SHAPE", "AddPermission", json!({"QueueUrl": url("sqsq"), "Label": "no spaces", "AWSAccountIds": ["111122223333"], "Actions": ["SendMessage"]})),
        case("LABEL_EXISTS", "AddPermission", json!({"QueueUrl": url("sqsq"), "Label": "shared", "AWSAccountIds": ["111122223333"], "Actions": ["SendMessage"]}))
            .args(&[("label", "shared")]),
        case("LABEL_MISSING", "RemovePermission", json!({"QueueUrl": url("sqsq"), "Label": "ghost"}))
            .args(&[("label", "ghost")]),
        case("ATTEMPT_ID_INVALID", "ReceiveMessage", json!({"QueueUrl": url("fifo.fifo"), "ReceiveRequestAttemptId": "a b"}))
            .args(&[("value", "a b")]),
        case("STORE_REFUSED", "TagQueue", json!({"QueueUrl": url("sqsq"), "Tags": Value::Object(many_tags)}))
            .args(&[("parameter", "tags")]).any("reason"),
        // Move tasks.
        case("MOVE_SOURCE_MISSING", "StartMessageMoveTask", json!({"SourceArn": format!("{ARN}:ghost")})),
        case("MOVE_SOURCE_NOT_DEAD_LETTER", "StartMessageMoveTask", json!({"SourceArn": format!("{ARN}:small")})),
        case("MOVE_DESTINATION_MISSING", "StartMessageMoveTask", json!({"SourceArn": format!("{ARN}:dlq"), "DestinationArn": format!("{ARN}:ghost")})),
        case("TASK_HANDLE_INVALID", "CancelMessageMoveTask", json!({"TaskHandle": "garbage"})),
        case("TASK_MISSING", "CancelMessageMoveTask", json!({"TaskHandle": ghost_task})),
        // Who may call.
        Case::built("MISSING_TOKEN", Server::Auth, |p| Some(list_queues(p, None))),
        Case::built("INVALID_TOKEN", Server::Auth, |p| {
            Some(list_queues(p, Some(signature("NOSUCHKEY00000000001", &amz_date(SystemTime::now()), None))))
        }),
        Case::built("SIGNATURE_MISMATCH", Server::Auth, |p| {
            Some(list_queues(p, Some(signature(ADMIN.0, &amz_date(SystemTime::now()), None))))
        }),
        Case::built("SCOPE_MISMATCH", Server::Auth, |p| {
            Some(list_queues(p, Some(signature(ADMIN.0, &amz_date(SystemTime::now()), Some("19990101")))))
        })
        .any("detail"),
        Case::built("INCOMPLETE_SIGNATURE", Server::Auth, |p| {
            Some(list_queues(p, Some(("AWS4-HMAC-SHA256 Credential=abc".into(), String::new()))))
        })
        .any("detail"),
        Case::built("REQUEST_EXPIRED", Server::Auth, |p| {
            Some(list_queues(p, Some(signature(ADMIN.0, "20200101T000000Z", None))))
        })
        .any("detail"),
        Case::built("ACCESS_DENIED", Server::Auth, |p| {
            let body = json!({"QueueUrl": url("sqsq"), "MessageBody": "x"});
            let req = bearer(Request::post("/"), READER);
            Some(with_params(p, "SendMessage", req, &body))
        })
        .args(&[("action", "send"), ("queue", "sqsq")]),
        Case::built("UNSIGNED_CHANGE", Server::Open, |p| {
            (p == Protocol::Query).then(|| {
                Request::post("/")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from("Action=CreateQueue&QueueName=unsigned"))
                    .unwrap()
            })
        })
        .args(&[("action", "CreateQueue")]),
        // The server's side.
        Case::built("OVER_LIMIT", Server::Auth, |p| {
            Some(with_params(p, "ListQueues", bearer(Request::post("/"), SLOW), &json!({})))
        })
        .setup(Setup::SpendSlowKey)
        .args(&[("limit", "KEY_RATE_PER_S"), ("max", "1")]),
        case("SERVICE_UNAVAILABLE", "GetQueueUrl", json!({"QueueName": "sqsq"}))
            .on(Server::Stopped)
            .any("reason"),
        // A queue per protocol: a failed write's outcome is unknown, and the store may show it.
        Case::built("STORE_POISONED", Server::Poisoned, |p| {
            let params = json!({"QueueName": format!("doomed-{p:?}")});
            Some(with_params(p, "CreateQueue", signed(Request::post("/")), &params))
        })
        .any("reason"),
    ]
}

/// Percent-encodes a form value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The JSON protocol's parameters as a Query form, as botocore flattens them.
fn to_form(action: &str, params: &Value) -> String {
    let mut pairs =
        vec![("Action".to_owned(), action.to_owned()), ("Version".into(), "2012-11-05".into())];
    flatten(action, "", params, &mut pairs);
    pairs.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&")
}

fn flatten(action: &str, prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let Value::Object(map) = v else { return };
    for (k, v) in map {
        let maps = [
            ("Attributes", "Attribute", "Name"),
            ("Tags", "Tag", "Key"),
            ("MessageAttributes", "MessageAttribute", "Name"),
            ("MessageSystemAttributes", "MessageSystemAttribute", "Name"),
        ];
        let lists = [
            ("AttributeNames", "AttributeName"),
            ("AWSAccountIds", "AWSAccountId"),
            ("Actions", "ActionName"),
            ("TagKeys", "TagKey"),
        ];
        if let Some((_, member, key)) = maps.iter().find(|m| m.0 == k) {
            for (i, (name, value)) in value_map(v).into_iter().enumerate() {
                let at = format!("{prefix}{member}.{}", i + 1);
                out.push((format!("{at}.{key}"), name));
                match value {
                    Value::String(s) => out.push((format!("{at}.Value"), s)),
                    typed => flatten(action, &format!("{at}.Value."), &typed, out),
                }
            }
        } else if let Some((_, member)) = lists.iter().find(|l| l.0 == k) {
            for (i, item) in v.as_array().unwrap().iter().enumerate() {
                out.push((format!("{prefix}{member}.{}", i + 1), text(item)));
            }
        } else if k == "Entries" {
            let entries = v.as_array().unwrap();
            if entries.is_empty() {
                out.push((format!("{prefix}Entries"), String::new()));
            }
            for (i, e) in entries.iter().enumerate() {
                flatten(action, &format!("{prefix}{action}RequestEntry.{}.", i + 1), e, out);
            }
        } else {
            out.push((format!("{prefix}{k}"), text(v)));
        }
    }
}

fn value_map(v: &Value) -> Vec<(String, Value)> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A request in `protocol`'s envelope, without a body yet.
fn protocol_request(
    p: Protocol,
    action: &str,
    req: axum::http::request::Builder,
) -> axum::http::request::Builder {
    match p {
        Protocol::Json => req
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0"),
        Protocol::Query => req.header("content-type", "application/x-www-form-urlencoded"),
    }
}

fn with_params(
    p: Protocol,
    action: &str,
    req: axum::http::request::Builder,
    params: &Value,
) -> Request<Body> {
    let body = match p {
        Protocol::Json => params.to_string(),
        Protocol::Query => to_form(action, params),
    };
    protocol_request(p, action, req).body(Body::from(body)).unwrap()
}

/// A signature header as SDKs send one: a server without `--auth` does not check it, but
/// refuses unsigned form requests that change queues (a web page could send those).
fn signed(req: axum::http::request::Builder) -> axum::http::request::Builder {
    req.header(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=test/20261206/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
    )
}

fn bearer(
    req: axum::http::request::Builder,
    (id, secret): (&str, &str),
) -> axum::http::request::Builder {
    req.header("authorization", format!("Bearer {id}.{secret}"))
}

/// ListQueues with this `Authorization` header and `X-Amz-Date`.
fn list_queues(p: Protocol, auth: Option<(String, String)>) -> Request<Body> {
    let mut req = Request::post("/").header("host", "localhost");
    if let Some((authorization, date)) = auth {
        req = req.header("authorization", authorization);
        if !date.is_empty() {
            req = req.header("x-amz-date", date);
        }
    }
    with_params(p, "ListQueues", req, &json!({}))
}

/// A well-formed SigV4 header for `key_id`, signed at `date` (scope date `scope`, else the
/// date's), whose signature is wrong.
fn signature(key_id: &str, date: &str, scope: Option<&str>) -> (String, String) {
    let scope = scope.unwrap_or(&date[..8]);
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{scope}/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
        "0".repeat(64)
    );
    (header, date.to_owned())
}

/// `t` in SigV4's basic ISO 8601 form (`20261206T101500Z`): the API's RFC 3339 form
/// (`2026-12-06T10:15:00.000Z`) without its separators and milliseconds.
fn amz_date(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    format!("{}Z", to_rfc3339(ms)[..19].replace(['-', ':'], ""))
}

struct Rig {
    router: Router,
    engine: Option<Engine>,
}

impl Rig {
    async fn start(server: Server) -> Rig {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let storage = MemStorage::new();
        let store =
            Store::open(Box::new(storage.clone()), Durability::Sync, clock.now_ms()).unwrap();
        let engine = Engine::start(store, clock);
        let mut state = AppState::new(engine.handle.clone(), SqsSettings::default());
        if server == Server::Auth {
            state.auth = AuthSettings { enabled: true, metrics_public: false };
            for ((id, secret), allow, rate) in
                [(ADMIN, "admin:*", None), (READER, "read:*", None), (SLOW, "admin:*", Some(1))]
            {
                let key = auth::record(id.into(), id, secret, &[allow.into()], None, rate);
                auth::store(&state.broker, &key).await.unwrap();
            }
        }
        let mut rig = Rig { router: redrive_server::router(Arc::new(state)), engine: Some(engine) };
        match server {
            Server::Open => rig.fill().await,
            Server::Auth => {}
            Server::Stopped => rig.engine.take().unwrap().shutdown().await,
            Server::Poisoned => storage.fail_writes(true),
        }
        rig
    }

    /// The queues, permission and move task the cases meet.
    async fn fill(&self) {
        let dlq_policy = |dlq: &str, max: u32| {
            json!({"deadLetterTargetArn": format!("{ARN}:{dlq}"), "maxReceiveCount": max})
                .to_string()
        };
        for (name, attrs) in [
            ("dlq", json!({})),
            ("sqsq", json!({"RedrivePolicy": dlq_policy("dlq", 5)})),
            ("small", json!({"MaximumMessageSize": "1024"})),
            ("fifo.fifo", json!({"FifoQueue": "true"})),
            ("busy-dlq", json!({})),
            ("busy", json!({"RedrivePolicy": dlq_policy("busy-dlq", 1)})),
        ] {
            self.ok("CreateQueue", json!({"QueueName": name, "Attributes": attrs})).await;
        }
        self.ok("AddPermission", json!({"QueueUrl": url("sqsq"), "Label": "shared", "AWSAccountIds": ["111122223333"], "Actions": ["SendMessage"]})).await;
        // Dead letters in busy-dlq (received once, as often as busy allows; the next receive
        // moves them), moved back at one a second: the task runs for the rest of the test.
        for i in 0..DEAD_LETTERS {
            self.ok(
                "SendMessage",
                json!({"QueueUrl": url("busy"), "MessageBody": format!("m{i}")}),
            )
            .await;
        }
        let receive =
            json!({"QueueUrl": url("busy"), "MaxNumberOfMessages": 10, "VisibilityTimeout": 0});
        let got = self.ok("ReceiveMessage", receive.clone()).await;
        assert_eq!(got["Messages"].as_array().map_or(0, Vec::len), DEAD_LETTERS, "{got}");
        let got = self.ok("ReceiveMessage", receive).await;
        assert!(got["Messages"].as_array().is_none_or(Vec::is_empty), "{got}");
        self.ok(
            "StartMessageMoveTask",
            json!({"SourceArn": format!("{ARN}:busy-dlq"), "MaxNumberOfMessagesPerSecond": 1}),
        )
        .await;
    }

    async fn send(&self, req: Request<Body>) -> (u16, axum::http::HeaderMap, String) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A JSON-protocol call that must succeed.
    async fn ok(&self, action: &str, params: Value) -> Value {
        let (status, _, body) =
            self.send(with_params(Protocol::Json, action, Request::post("/"), &params)).await;
        assert_eq!(status, 200, "{action}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Runs a case's setup; the receipt handle it made, if any.
    async fn prepare(&self, setup: Setup) -> Option<String> {
        match setup {
            Setup::None => None,
            Setup::Receipt { queue, visibility, delete } => {
                let unique = uuid::Uuid::now_v7().to_string();
                let mut p = json!({"QueueUrl": url(queue), "MessageBody": unique});
                if queue.ends_with(".fifo") {
                    p["MessageGroupId"] = json!(unique);
                    p["MessageDeduplicationId"] = json!(unique);
                }
                self.ok("SendMessage", p).await;
                let got = self
                    .ok(
                        "ReceiveMessage",
                        json!({"QueueUrl": url(queue), "VisibilityTimeout": visibility}),
                    )
                    .await;
                let handle =
                    got["Messages"][0]["ReceiptHandle"].as_str().expect("a message").to_owned();
                if delete {
                    self.ok(
                        "DeleteMessage",
                        json!({"QueueUrl": url(queue), "ReceiptHandle": handle}),
                    )
                    .await;
                }
                Some(handle)
            }
            Setup::SpendSlowKey => {
                let req = with_params(
                    Protocol::Json,
                    "ListQueues",
                    bearer(Request::post("/"), SLOW),
                    &json!({}),
                );
                // Answered, or already over the rate: either way this second is spent.
                let (status, _, body) = self.send(req).await;
                assert!(status == 200 || status == 403, "{body}");
                None
            }
        }
    }
}

/// Text matches a template whose holes are each given: a value (`Some`) or anything (`None`).
fn matches(text: &str, template: &str, args: &[(&str, Option<String>)]) -> bool {
    // The template as literal runs, with "anything" between them.
    let mut literals = vec![String::new()];
    for piece in pieces(template) {
        match piece {
            Piece::Text(t) => literals.last_mut().unwrap().push_str(t),
            Piece::Hole(hole) => match args.iter().find(|(k, _)| *k == hole) {
                Some((_, Some(v))) => literals.last_mut().unwrap().push_str(v),
                Some((_, None)) => literals.push(String::new()),
                None => panic!("the case gives no value for {{{hole}}} of {template:?}"),
            },
        }
    }
    if literals.len() == 1 {
        return text == literals[0];
    }
    let (first, last) = (&literals[0], &literals[literals.len() - 1]);
    if !text.starts_with(first.as_str()) || !text.ends_with(last.as_str()) {
        return false;
    }
    let mut at = first.len();
    for lit in &literals[1..literals.len() - 1] {
        match text[at..].find(lit.as_str()) {
            Some(i) => at += i + lit.len(),
            None => return false,
        }
    }
    at <= text.len() - last.len()
}

fn xml_text<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no {tag} in {xml}")) + open.len();
    &xml[start..start + xml[start..].find(&format!("</{tag}>")).unwrap()]
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Checks one answer against the row: AWS's status and names for its code, and its message.
fn check(
    row: &Row,
    p: Protocol,
    args: &[(&str, Option<String>)],
    (status, headers, body): &(u16, axum::http::HeaderMap, String),
) {
    let &(_, aws_status, query_code, json_type) = AWS
        .iter()
        .find(|a| a.0 == row.code)
        .unwrap_or_else(|| panic!("{:?} is not in the AWS list", row.code));
    let what = format!("{} over {p:?}: {body}", row.name);
    assert_eq!(*status, aws_status, "{what}");
    let (code, message, template) = match p {
        Protocol::Json => {
            let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {what}"));
            assert_eq!(v["__type"], format!("com.amazonaws.sqs#{json_type}"), "{what}");
            let header = headers.get("x-amzn-query-error").unwrap().to_str().unwrap();
            let fault = if aws_status < 500 { "Sender" } else { "Receiver" };
            assert_eq!(header, format!("{query_code};{fault}"), "{what}");
            (query_code.to_owned(), v["message"].as_str().unwrap().to_owned(), row.message)
        }
        Protocol::Query => (
            xml_text(body, "Code").to_owned(),
            unescape(xml_text(body, "Message")),
            row.query_message.unwrap_or(row.message),
        ),
    };
    assert_eq!(code, query_code, "{what}");
    assert!(matches(&message, template, args), "{what}\nexpected: {template}\nwith {args:?}");
    assert_eq!(
        headers.contains_key("retry-after"),
        aws_status == 503 && row.name != "STORE_POISONED",
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_error_table_is_answered_as_aws_answers_it_over_both_protocols() {
    let cases = cases();
    for row in TABLE {
        let covered = cases.iter().filter(|c| c.row == row.name).count();
        let unreachable = UNREACHABLE.iter().any(|(name, _)| *name == row.name);
        assert!(covered + usize::from(unreachable) == 1, "{}: {covered} cases", row.name);
    }
    let mut rigs = Vec::new();
    for server in [Server::Open, Server::Auth, Server::Stopped, Server::Poisoned] {
        rigs.push((server, Rig::start(server).await));
    }
    let mut unanswered = Vec::new();
    for c in &cases {
        let mut answered = 0;
        let row =
            TABLE.iter().find(|r| r.name == c.row).unwrap_or_else(|| panic!("no row {}", c.row));
        let rig = &rigs.iter().find(|(s, _)| *s == c.server).unwrap().1;
        for p in [Protocol::Json, Protocol::Query] {
            let receipt = rig.prepare(c.setup).await;
            let fill = |s: &str| match &receipt {
                Some(r) => s.replace("$RECEIPT", r),
                None => s.to_owned(),
            };
            let req = match &c.send {
                Send::Params(params) => {
                    let params: Value = serde_json::from_str(&fill(&params.to_string())).unwrap();
                    Some(with_params(p, c.action, signed(Request::post("/")), &params))
                }
                Send::Raw { query, json } => {
                    let body = if p == Protocol::Json { json } else { query };
                    body.as_ref().map(|b| {
                        protocol_request(p, c.action, signed(Request::post("/")))
                            .body(Body::from(b.clone()))
                            .unwrap()
                    })
                }
                Send::Built(build) => build(p),
            };
            let Some(req) = req else { continue };
            let args: Vec<_> =
                c.args.iter().map(|(k, v)| (*k, v.as_ref().map(|v| fill(v)))).collect();
            let mut answer = rig.send(req).await;
            // The key's rate is per second of the clock: the spent request and this one may
            // fall in two seconds. Then spend and ask again.
            if matches!(c.setup, Setup::SpendSlowKey) && answer.0 == 200 {
                rig.prepare(c.setup).await;
                let Send::Built(build) = &c.send else { unreachable!() };
                answer = rig.send(build(p).unwrap()).await;
            }
            check(row, p, &args, &answer);
            answered += 1;
        }
        if answered == 0 {
            unanswered.push(c.row);
        }
    }
    assert!(unanswered.is_empty(), "cases sent in neither protocol: {unanswered:?}");
    // The rows no request reaches, as each protocol renders them.
    for (name, _) in UNREACHABLE {
        let row = TABLE.iter().find(|r| r.name == *name).unwrap();
        let holes: Vec<(&'static str, &dyn std::fmt::Display)> = pieces(row.message)
            .filter_map(|p| match p {
                Piece::Hole(h) => Some((h, &"1" as &dyn std::fmt::Display)),
                Piece::Text(_) => None,
            })
            .collect();
        let e = row.with(&holes);
        let args: Vec<_> = holes.iter().map(|(h, _)| (*h, Some("1".to_owned()))).collect();
        for p in [Protocol::Json, Protocol::Query] {
            let resp = redrive_server::sqs::wire::error(p, &e, "req-1");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            check(row, p, &args, &(status, headers, String::from_utf8(body.to_vec()).unwrap()));
        }
    }
}

/// The rows whose words AWS documents or sends, word for word: `(row, JSON message, Query
/// message)` with the values the cases above fill in.
#[test]
fn rows_that_aws_words_keep_its_words() {
    use redrive_server::sqs::error::*;
    type Worded =
        (&'static Row, &'static [(&'static str, &'static str)], &'static str, &'static str);
    let cases: &[Worded] = &[
        (&NON_EXISTENT_QUEUE, &[], "The specified queue does not exist.", "The specified queue does not exist for this wsdl version."),
        (&QUEUE_NAME_EXISTS, &[("attribute", "DelaySeconds")], "A queue already exists with the same name and a different value for attribute DelaySeconds", ""),
        (&MISSING_PARAMETER, &[("parameter", "QueueUrl")], "The request must contain the parameter QueueUrl.", ""),
        (&OUT_OF_RANGE, &[("value", "11"), ("parameter", "MaxNumberOfMessages"), ("min", "1"), ("max", "10")], "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", ""),
        (&EMPTY_BATCH, &[], "There should be at least one entry in the request.", ""),
        (&TOO_MANY_ENTRIES, &[("max", "10"), ("count", "11")], "Maximum number of entries per request are 10. You have sent 11.", ""),
        (&INVALID_BATCH_ENTRY_ID, &[], "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.", ""),
        (&BATCH_ENTRY_IDS_NOT_DISTINCT, &[("id", "a")], "Id a repeated.", ""),
        (&BATCH_TOO_LONG, &[("max", "1048576"), ("size", "1228800")], "Batch requests cannot be longer than 1048576 bytes. You have sent 1228800 bytes.", ""),
        (&MISSING_DEDUPLICATION_ID, &[], "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly", ""),
        (&RECEIPT_EXPIRED, &[("handle", "h")], "Value h for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.", ""),
        (&MESSAGE_NOT_AVAILABLE, &[("handle", "h")], "Value h for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", ""),
        (&ENTRY_NOT_AVAILABLE, &[], "Message does not exist or is not available for visibility timeout change", ""),
        (&RECEIPT_INVALID, &[("handle", "h")], "The input receipt handle \"h\" is not a valid receipt handle.", ""),
        (&UNKNOWN_ATTRIBUTE, &[("attribute", "Colour")], "Unknown Attribute Colour.", ""),
        (&MOVE_ALREADY_RUNNING, &[], "There is already a task running. Only one active task is allowed for each source queue arn at a given time.", ""),
        (&TASK_MISSING, &[], "Task does not exist.", ""),
        (&MOVE_SOURCE_MISSING, &[], "The resource that you specified for the SourceArn parameter doesn't exist.", ""),
        (&MOVE_DESTINATION_MISSING, &[], "The resource that you specified for the DestinationArn parameter doesn't exist.", ""),
        (&EMPTY_BODY, &[], "The request must contain the parameter MessageBody.", ""),
        (&WAIT_OUT_OF_RANGE, &[("value", "21")], "Value 21 for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", ""),
        (&FIFO_ID_INVALID, &[("value", "a b"), ("parameter", "MessageGroupId")], "Value a b for parameter MessageGroupId is invalid. Reason: MessageGroupId can only include alphanumeric and punctuation characters. 1 to 128 in length.", ""),
        (&ENTRY_TOO_LONG, &[("max", "1024")], "One or more parameters cannot be validated. Reason: Message must be shorter than 1024 bytes.", ""),
        (&ENTRY_GROUP_MISSING, &[], "The request must contain the parameter MessageGroupId.", ""),
        (&FIFO_ONLY_ATTRIBUTE, &[("attribute", "DeduplicationScope")], "You can specify the DeduplicationScope only when FifoQueue is set to true.", ""),
        (&REDRIVE_POLICY_INVALID, &[("policy", "{}"), ("reason", "Redrive policy does not contain mandatory attribute: maxReceiveCount.")], "Value {} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: maxReceiveCount.", ""),
        (&DEAD_LETTER_MISSING, &[("policy", "{}")], "Value {} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", ""),
        (&DEAD_LETTER_KIND, &[("policy", "{}")], "Value {} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source..", ""),
        (&LABEL_MISSING, &[("label", "nope")], "Value nope for parameter Label is invalid. Reason: can't find label.", ""),
        (&TASK_HANDLE_INVALID, &[], "Value for parameter TaskHandle is invalid.", ""),
        (&MOVE_SOURCE_NOT_DEAD_LETTER, &[], "Source queue must be configured as a Dead Letter Queue.", ""),
        (&MISSING_TOKEN, &[], "Request is missing Authentication Token", ""),
        (&INVALID_TOKEN, &[], "The security token included in the request is invalid.", ""),
        (&SIGNATURE_MISMATCH, &[], "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.", ""),
        (&INTERNAL_ERROR, &[], "The request processing has failed because of an unknown error, exception or failure.", ""),
    ];
    for (row, args, json, query) in cases {
        let query = if query.is_empty() { json } else { query };
        assert_eq!(row.render(Protocol::Json, args), *json, "{}", row.name);
        assert_eq!(row.render(Protocol::Query, args), *query, "{}", row.name);
    }
}
