//! Decoders under random input, through the whole router (in process, `oneshot`): SQS requests
//! in both protocols (JSON 1.0 and Query, with and without a valid action) and native `/v1`
//! request bodies. Whatever arrives, the answer is never a 5xx other than 503 (a panic would be
//! a caught 500), and an error is in the caller's shape: `{"__type", "message"}` for SQS JSON,
//! an XML `ErrorResponse` for Query, `{"error": {"code", "message"}}` for the native API.
//!
//! Generated values mix the real parameter names and values (queue URLs, action names) with
//! random ones, so they get past the first checks into each action's parsing.
//! `PROPTEST_CASES=<n>` sets the number of cases (see docs/testing.md).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use proptest::prelude::*;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{Broker, QueuePatch};
use redrive_engine::{Durability, Engine, EngineHandle, MemStorage, Store};
use redrive_server::sqs::{SqsAction, SqsSettings};
use redrive_server::AppState;
use serde_json::{Map, Value};
use tower::ServiceExt;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES_DEFAULT: u32 = 256;
/// Bodies are read whole up to this (error bodies are small).
const BODY_READ_MAX_BYTES: usize = 1 << 20;
/// No request here long-polls (wait parameters are left out), so this only stops a hang.
const ANSWER_BOUND: Duration = Duration::from_secs(25);
const QUEUE_URL: &str = "http://localhost/000000000000/q";
const FIFO_URL: &str = "http://localhost/000000000000/o.fifo";

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok());
    ProptestConfig { cases: cases.unwrap_or(CASES_DEFAULT), ..ProptestConfig::default() }
}

struct Rig {
    rt: tokio::runtime::Runtime,
    router: Router,
    broker: EngineHandle,
}

/// One server for every case: an engine on memory storage and the router over it.
fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store =
            Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
        let engine = Engine::start(store, clock);
        let broker = engine.handle.clone();
        std::mem::forget(engine); // lives as long as the test process
        let state = Arc::new(AppState::new(broker.clone(), SqsSettings::default()));
        let router = rt.block_on(async { redrive_server::router(state) });
        Rig { rt, router, broker }
    })
}

/// Sends one request; returns the status, content type and body.
fn send(req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let r = rig();
    r.rt.block_on(async {
        // The fuzzer may have deleted them; without them most cases stop at "no such queue".
        for q in ["q", "o.fifo"] {
            let _ = r.broker.put_queue(q.into(), QueuePatch::default()).await;
        }
        let resp = tokio::time::timeout(ANSWER_BOUND, r.router.clone().oneshot(req))
            .await
            .expect("answered")
            .expect("infallible");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(resp.into_body(), BODY_READ_MAX_BYTES).await.unwrap();
        (status, content_type, body.to_vec())
    })
}

/// Never a server error other than 503 (overloaded or unavailable is an honest answer).
fn check_status(status: StatusCode, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

fn check_sqs_json(status: StatusCode, ct: &str, body: &[u8]) -> Result<(), TestCaseError> {
    check_status(status, body)?;
    if status.is_success() {
        return Ok(());
    }
    prop_assert!(ct.starts_with("application/x-amz-json-1.0"), "{status} {ct}");
    let v: Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ty = v["__type"].as_str().unwrap_or_default();
    prop_assert!(ty.starts_with("com.amazonaws.sqs#") && ty.len() > 18, "{v}");
    prop_assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    Ok(())
}

fn check_sqs_query(status: StatusCode, ct: &str, body: &[u8]) -> Result<(), TestCaseError> {
    check_status(status, body)?;
    if status.is_success() {
        return Ok(());
    }
    let xml = String::from_utf8_lossy(body);
    prop_assert!(ct.starts_with("text/xml"), "{status} {ct} {xml}");
    prop_assert!(xml.contains("<ErrorResponse"), "{xml}");
    prop_assert!(xml.contains("<Code>") && xml.contains("<Message>"), "{xml}");
    prop_assert!(!xml.contains("<Code></Code>"), "{xml}");
    Ok(())
}

fn check_native(status: StatusCode, ct: &str, body: &[u8]) -> Result<(), TestCaseError> {
    check_status(status, body)?;
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    prop_assert!(ct.starts_with("application/json"), "{status} {ct}: {text}");
    let v: Value =
        serde_json::from_slice(body).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    prop_assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    Ok(())
}

// ---- generated values ----------------------------------------------------------------------

/// SQS parameter names (long-poll waits left out: a case must not wait 20 s).
const SQS_KEYS: &[&str] = &[
    "QueueUrl",
    "QueueName",
    "MessageBody",
    "DelaySeconds",
    "MaxNumberOfMessages",
    "VisibilityTimeout",
    "ReceiptHandle",
    "Attributes",
    "MessageAttributes",
    "Entries",
    "Id",
    "AttributeNames",
    "MessageAttributeNames",
    "MessageSystemAttributeNames",
    "Tags",
    "TagKeys",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SourceArn",
    "DestinationArn",
    "TaskHandle",
    "MaxResults",
    "NextToken",
    "QueueNamePrefix",
    "Label",
    "AWSAccountIds",
    "Actions",
    "MessageSystemAttributes",
    "ReceiveRequestAttemptId",
    "MaxNumberOfMessagesPerSecond",
    "QueueOwnerAWSAccountId",
    "StringValue",
    "BinaryValue",
    "DataType",
    "StringListValues",
    "VisibilityTimeout",
    "RedrivePolicy",
    "FifoQueue",
    "MessageRetentionPeriod",
    "MaximumMessageSize",
    "ContentBasedDeduplication",
    "Policy",
    "All",
];

/// Native body field names (long-poll waits left out).
const NATIVE_KEYS: &[&str] = &[
    "body",
    "priority",
    "delay_ms",
    "run_at",
    "idempotency_key",
    "attributes",
    "max_attempts",
    "traceparent",
    "group",
    "jobs",
    "queues",
    "max",
    "lease_ms",
    "worker_id",
    "receipts",
    "receipt",
    "error",
    "kind",
    "message",
    "detail",
    "retry_after_ms",
    "non_retryable",
    "ids",
    "filter",
    "to",
    "dry_run",
    "error_type",
    "signature",
    "source_queue",
    "since",
    "until",
    "visibility_timeout_ms",
    "max_message_bytes",
    "retention_ms",
    "backoff",
    "base_ms",
    "max_ms",
    "dead_letter_queue",
    "max_receive_count",
    "priority_aging_ms",
    "fifo",
    "content_based_dedup",
    "dedup_window_ms",
    "completed_retention_ms",
    "tags",
    "sqs_attributes",
    "job_ids",
    "category",
    "action",
    "patch",
    "reason",
    "confidence",
    "queue",
    "policy",
    "status",
];

/// Strings that mean something somewhere, and some that break things.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,24}",
        2 => any::<String>(),
        1 => prop::sample::select(vec![
            QUEUE_URL, FIFO_URL, "q", "o.fifo", "q-dlq", "high", "low", "String", "Number",
            "Binary", "String.x", "2020-01-01T00:00:00Z", "not-a-date", "-1", "0", "1", "10",
            "4294967296", "1e309", "NaN", "true", "AQID", "arn:aws:sqs:us-east-1:000000000000:q",
            "018bcfe5-92de-7ff6-bf6f-869dc3be19ed", "", "\u{0}", "é", "All", "Policy",
        ])
        .prop_map(str::to_owned),
    ]
}

fn key(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(pool).prop_map(str::to_owned), 1 => "[a-zA-Z_.0-9]{0,12}"]
}

/// A JSON value whose object keys mostly come from `pool`.
fn json(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..100).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(pool), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object (most request bodies are one), sometimes any value.
fn json_body(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec((key(pool), json(pool)), 0..8)
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()).to_string().into_bytes()),
        1 => json(pool).prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn action() -> impl Strategy<Value = String> {
    let names: Vec<String> = SqsAction::ALL.iter().map(|a| a.name().to_owned()).collect();
    prop_oneof![6 => prop::sample::select(names), 1 => "[A-Za-z]{0,20}"]
}

/// Query form fields: real names with list and map suffixes (`Entries.2.Id`), and random ones.
fn query_field() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        3 => prop::sample::select(SQS_KEYS).prop_map(str::to_owned),
        3 => (
            prop::sample::select(SQS_KEYS),
            0u32..4,
            prop::option::of(prop::sample::select(vec!["Name", "Value", "Id", "Key", "Value.StringValue", "Value.DataType", "ReceiptHandle", "MessageBody"])),
        )
            .prop_map(|(k, n, sub)| match sub {
                Some(s) => format!("{k}.{n}.{s}"),
                None => format!("{k}.{n}"),
            }),
        1 => "[A-Za-z.0-9]{0,16}",
    ];
    (name, string())
}

fn form(fields: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Native routes with a body: method and path.
const NATIVE_ROUTES: &[(&str, &str)] = &[
    ("PUT", "/v1/queues/q"),
    ("PUT", "/v1/queues/fuzz-made"),
    ("POST", "/v1/queues/q/jobs"),
    ("POST", "/v1/queues/o.fifo/jobs"),
    ("POST", "/v1/queues/q/receive"),
    ("POST", "/v1/receive"),
    ("POST", "/v1/ack"),
    ("POST", "/v1/fail"),
    ("POST", "/v1/extend"),
    ("POST", "/v1/queues/q-dlq/redrive"),
    ("POST", "/v1/queues/q/purge"),
    ("PUT", "/v1/triage/policies/q"),
    ("POST", "/v1/triage/proposals"),
    ("POST", "/v1/triage/proposals/018bcfe5-92de-7ff6-bf6f-869dc3be19ed/approve"),
    ("POST", "/v1/triage/proposals/1/reject"),
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sqs_json_requests_get_a_json_answer_or_error(
        action in action(),
        body in json_body(SQS_KEYS),
        path in prop::sample::select(vec!["/", "/000000000000/q", "/000000000000/nope"]),
        url in prop::option::of(prop::sample::select(vec![QUEUE_URL, FIFO_URL])),
    ) {
        // Most actions need a queue: name one often, so that cases get past that check.
        let body = match (serde_json::from_slice::<Value>(&body), url) {
            (Ok(Value::Object(mut m)), Some(u)) => {
                m.insert("QueueUrl".into(), u.into());
                Value::Object(m).to_string().into_bytes()
            }
            _ => body,
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(body))
            .unwrap();
        let (status, ct, body) = send(req);
        check_sqs_json(status, &ct, &body)?;
    }

    #[test]
    fn sqs_query_requests_get_an_xml_answer_or_error(
        action in prop::option::of(action()),
        fields in prop::collection::vec(query_field(), 0..12),
        in_url in any::<bool>(),
        path in prop::sample::select(vec!["/", "/000000000000/q", "/000000000000/o.fifo"]),
        url in prop::option::of(prop::sample::select(vec![QUEUE_URL, FIFO_URL])),
    ) {
        let mut all = fields;
        if let Some(u) = url {
            all.insert(0, ("QueueUrl".into(), u.into()));
        }
        if let Some(a) = action {
            all.insert(0, ("Action".into(), a));
        }
        let encoded = form(&all);
        let (uri, body) =
            if in_url { (format!("{path}?{encoded}"), String::new()) } else { (path.to_owned(), encoded) };
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (status, ct, body) = send(req);
        check_sqs_query(status, &ct, &body)?;
    }

    #[test]
    fn sqs_raw_bodies_get_an_error_in_the_protocol_asked_for(
        body in prop::collection::vec(any::<u8>(), 0..512),
        target in prop::option::of("[ -~]{0,40}"),
    ) {
        let mut req = Request::builder().method(Method::POST).uri("/");
        if let Some(t) = &target {
            req = req.header("x-amz-target", t.as_str());
        }
        let (status, ct, body) = send(req.body(Body::from(body)).unwrap());
        match target {
            Some(_) => check_sqs_json(status, &ct, &body)?,
            None => check_sqs_query(status, &ct, &body)?,
        }
    }

    #[test]
    fn native_bodies_get_a_json_answer_or_error(
        route in prop::sample::select(NATIVE_ROUTES),
        body in json_body(NATIVE_KEYS),
        content_type in prop::sample::select(vec!["application/json", "text/plain", ""]),
    ) {
        let (method, path) = route;
        let mut req = Request::builder().method(method).uri(path);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let (status, ct, body) = send(req.body(Body::from(body)).unwrap());
        check_native(status, &ct, &body)?;
    }
}
