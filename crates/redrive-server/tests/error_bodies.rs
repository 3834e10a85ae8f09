//! Every error the router can answer, in process (`oneshot`): native routes answer with the
//! `{"error": {"code", "message"}}` envelope and SQS routes in SQS's error shape, whatever
//! produced the error (handlers, extractor rejections, the fallbacks, the body limit), with no
//! Rust type names or internals in the text. Also the request shapes the API refuses or accepts
//! where serde's defaults would differ from `/v1/openapi.json`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use redrive_core::limits;
use redrive_core::time::{to_rfc3339, Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

fn app() -> (Router, Engine) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
    (redrive_server::router(state), engine)
}

struct Reply {
    status: StatusCode,
    content_type: String,
    /// The `connection` header, if any.
    connection: Option<String>,
    body: String,
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let connection = resp.headers().get("connection").map(|v| v.to_str().unwrap().to_owned());
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply { status, content_type, connection, body: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn json(app: &Router, method: &str, uri: &str, body: &str) -> Reply {
    send(app, method, uri, &[("content-type", "application/json")], body.as_bytes().to_vec()).await
}

/// Words that would mean Rust leaked into a message.
const RUST: &[&str] =
    &["struct ", "enum ", "u64", "u32", "usize", "i64", "::", "Rejection", "panicked"];

fn assert_envelope(what: &str, r: &Reply) -> String {
    assert!(r.status.is_client_error() || r.status.is_server_error(), "{what}: {}", r.status);
    assert!(r.content_type.starts_with("application/json"), "{what}: {}", r.content_type);
    let v: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.body));
    let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
    let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(!message.is_empty(), "{what}: {v}");
    for word in RUST {
        assert!(!message.contains(word), "{what}: {word:?} in {message:?}");
    }
    code.to_owned()
}

#[tokio::test]
async fn every_native_error_is_the_json_envelope() {
    let (app, _engine) = app();
    assert_eq!(json(&app, "PUT", "/v1/queues/q", "{}").await.status, StatusCode::CREATED);
    let huge = vec![b' '; limits::REQUEST_BODY_MAX_BYTES + 1];
    let cases: Vec<(&str, &str, &str, Vec<u8>, &str)> = vec![
        ("unknown route", "GET", "/nope", vec![], "route_not_found"),
        ("wrong method", "DELETE", "/v1/receive", vec![], "method_not_allowed"),
        ("array for an object", "PUT", "/v1/queues/q", b"[5000]".to_vec(), "malformed_request"),
        (
            "array for a nested object",
            "PUT",
            "/v1/queues/q",
            br#"{"backoff": [1000]}"#.to_vec(),
            "malformed_request",
        ),
        ("a number for an object", "PUT", "/v1/queues/q", b"5000".to_vec(), "malformed_request"),
        ("not JSON", "POST", "/v1/queues/q/jobs", b"{jobs".to_vec(), "malformed_request"),
        (
            "wrong type",
            "POST",
            "/v1/queues/q/jobs",
            br#"{"jobs": "x"}"#.to_vec(),
            "malformed_request",
        ),
        (
            "struct for a string",
            "POST",
            "/v1/queues/q/jobs",
            br#"{"jobs": [{"body": {}}]}"#.to_vec(),
            "malformed_request",
        ),
        (
            "bad enum",
            "POST",
            "/v1/queues/q/jobs",
            br#"{"jobs": [{"body": "x", "priority": 1}]}"#.to_vec(),
            "malformed_request",
        ),
        (
            "fraction for an integer",
            "POST",
            "/v1/receive",
            br#"{"queues": ["q"], "max": 1.5}"#.to_vec(),
            "malformed_request",
        ),
        (
            "integer out of range",
            "POST",
            "/v1/receive",
            br#"{"queues": ["q"], "max": 4294967296}"#.to_vec(),
            "malformed_request",
        ),
        (
            "unknown field in fail's error",
            "POST",
            "/v1/fail",
            br#"{"receipt": "x", "error": {"type": "E", "message": "m", "extra": 1}}"#.to_vec(),
            "malformed_request",
        ),
        ("body over the limit", "POST", "/v1/queues/q/jobs", huge, "request_too_large"),
        ("path not UTF-8", "GET", "/v1/queues/%FF%FE", vec![], "malformed_request"),
        ("path not UTF-8, triage", "GET", "/v1/triage/proposals/%FF", vec![], "malformed_request"),
        (
            "query of the wrong type",
            "GET",
            "/v1/queues/q/dead?limit=abc",
            vec![],
            "malformed_request",
        ),
        ("unknown query field", "GET", "/v1/queues/q/dead?color=red", vec![], "malformed_request"),
        (
            "bad query enum",
            "GET",
            "/v1/triage/proposals?status=sideways",
            vec![],
            "malformed_request",
        ),
        ("bad job id", "GET", "/v1/jobs/not-a-uuid", vec![], "invalid_parameter"),
        (
            "bad redrive ids",
            "POST",
            "/v1/queues/q/redrive",
            br#"{"ids": "x"}"#.to_vec(),
            "malformed_request",
        ),
        ("missing queue", "GET", "/v1/queues/none", vec![], "queue_not_found"),
    ];
    for (what, method, uri, body, code) in cases {
        let r = send(&app, method, uri, &[("content-type", "application/json")], body).await;
        assert_eq!(assert_envelope(what, &r), code, "{what}: {}", r.body);
        // The rest of an oversized body is never read: the connection must not be reused.
        let closes = r.connection.as_deref() == Some("close");
        assert_eq!(closes, code == "request_too_large", "{what}: connection {:?}", r.connection);
    }
    // No content type at all is no reason to refuse JSON.
    let r = send(&app, "PUT", "/v1/queues/q2", &[], br#"{"visibility_timeout_ms": 1000}"#.to_vec())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn sqs_errors_keep_sqs_shapes() {
    let (app, _engine) = app();
    let target = [
        ("x-amz-target", "AmazonSQS.NoSuchAction"),
        ("content-type", "application/x-amz-json-1.0"),
    ];
    let r = send(&app, "POST", "/", &target, b"{}".to_vec()).await;
    assert!(r.content_type.starts_with("application/x-amz-json-1.0"), "{}", r.content_type);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["__type"].is_string(), "{v}");

    let huge = vec![b'a'; limits::REQUEST_BODY_MAX_BYTES + 1];
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (what, method, uri, body) in [
        ("body over the limit", "POST", "/", huge),
        ("queue path not UTF-8", "POST", "/000000000000/%FF", b"Action=GetQueueUrl".to_vec()),
        ("method the route lacks", "PUT", "/000000000000/q", b"Action=GetQueueUrl".to_vec()),
    ] {
        let r = send(&app, method, uri, &form, body).await;
        assert!(r.status.is_client_error(), "{what}: {}", r.status);
        assert!(r.content_type.starts_with("text/xml"), "{what}: {} {}", r.content_type, r.body);
        assert!(
            r.body.contains("<ErrorResponse") && r.body.contains("<Code>"),
            "{what}: {}",
            r.body
        );
        for word in RUST {
            assert!(!r.body.contains(word), "{what}: {word:?} in {}", r.body);
        }
    }
}

#[tokio::test]
async fn integral_floats_and_date_time_offsets_are_read_as_the_document_says() {
    let (app, _engine) = app();
    let r = json(&app, "PUT", "/v1/queues/q", r#"{"visibility_timeout_ms": 5000.0}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["config"]["visibility_timeout_ms"], 5000);
    // A day ahead, whole seconds, written two hours east of UTC.
    let at = (SystemClock.now_ms() / 1000 + 86_400) * 1000;
    let east = to_rfc3339(at + 2 * 3600 * 1000).replace(".000Z", "+02:00");
    let body = json!({"jobs": [{"body": "x", "run_at": east}]}).to_string();
    let r = json(&app, "POST", "/v1/queues/q/jobs", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = serde_json::from_str::<Value>(&r.body).unwrap()["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = json(&app, "GET", &format!("/v1/jobs/{id}"), "").await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["visible_at"], to_rfc3339(at), "{east} {v}");
}

#[tokio::test]
async fn redriving_one_id_named_five_times_moves_one_job() {
    let (app, _engine) = app();
    json(&app, "PUT", "/v1/queues/q", r#"{"max_attempts": 1}"#).await;
    let r = json(&app, "POST", "/v1/queues/q/jobs", r#"{"jobs": [{"body": "x"}]}"#).await;
    let id = serde_json::from_str::<Value>(&r.body).unwrap()["jobs"][0]["id"].clone();
    let r = json(&app, "POST", "/v1/queues/q/receive", "{}").await;
    let receipt = serde_json::from_str::<Value>(&r.body).unwrap()["jobs"][0]["receipt"].clone();
    let fail = json!({"receipt": receipt, "error": {"type": "E", "message": "m"}}).to_string();
    let r = json(&app, "POST", "/v1/fail", &fail).await;
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["queue"], "q-dlq", "{}", r.body);
    let body = json!({ "ids": [id, id, id, id, id] }).to_string();
    let r = json(&app, "POST", "/v1/queues/q-dlq/redrive", &body).await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((v["moved"].clone(), v["ids"].clone()), (json!(1), json!([id])), "{v}");
}

#[tokio::test]
async fn proposals_take_the_escalation_the_agent_sends_and_nothing_else() {
    let (app, _engine) = app();
    let proposal = |escalation: Value| {
        json!({
            "queue": "q-dlq", "source_queue": "q", "signature": "E: m",
            "job_ids": ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"],
            "decision": {"category": "bad_data", "action": "escalate", "confidence": 0.9,
                         "analysis": "a person should look"},
            "reason": "escalated",
            "escalation": escalation,
        })
        .to_string()
    };
    for sent in
        [json!({"delivered": true}), json!({"delivered": false, "error": "503"}), json!(null)]
    {
        let r = json(&app, "POST", "/v1/triage/proposals", &proposal(sent.clone())).await;
        assert_eq!(r.status, StatusCode::CREATED, "{sent}: {}", r.body);
    }
    for sent in [json!([1]), json!("sent"), json!({"delivered": true, "to": "ops"}), json!({})] {
        let r = json(&app, "POST", "/v1/triage/proposals", &proposal(sent.clone())).await;
        assert_eq!(assert_envelope("escalation", &r), "malformed_request", "{sent}: {}", r.body);
        assert!(
            r.body.contains("escalation") || r.body.contains("delivered") || r.body.contains("to"),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn a_proposal_patch_must_be_json_patch_operations() {
    let (app, _engine) = app();
    let proposal = |patch: Value| {
        json!({
            "queue": "q-dlq", "source_queue": "q", "signature": "E: m",
            "job_ids": ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"],
            "decision": {"category": "bad_data", "action": "redrive_patched", "confidence": 0.9,
                         "analysis": "fix the quantity", "patch": patch},
            "reason": "patched redrives need a person",
        })
        .to_string()
    };
    let good = json!([{"op": "replace", "path": "/quantity", "value": 3}]);
    let r = json(&app, "POST", "/v1/triage/proposals", &proposal(good)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for bad in [json!([null]), json!({"op": "add"}), json!([{"op": "frob", "path": "/a"}])] {
        let r = json(&app, "POST", "/v1/triage/proposals", &proposal(bad.clone())).await;
        assert_eq!(assert_envelope("patch", &r), "invalid_parameter", "{bad}: {}", r.body);
    }
}
