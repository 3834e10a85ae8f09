//! Receipts cannot be forged: knowing a job's id (from its status page, a log, a dead-letter
//! listing) is not enough to settle another worker's lease, on the native API or on SQS, and a
//! receipt from one queue does not settle a job through another queue's URL. Genuine receipts
//! keep verifying after the store restarts.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use redrive_core::model::{JobId, Receipt};
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, FsStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

fn app(dir: &std::path::Path) -> (Router, Engine) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let storage = FsStorage::new(dir).unwrap();
    let store = Store::open(Box::new(storage), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
    (redrive_server::router(state), engine)
}

async fn call(app: &Router, method: &str, uri: &str, ctype: &str, body: String) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ctype)
        .header("x-amz-target", if ctype.contains("amz-json") { target(&body) } else { "" })
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The SQS action is passed in the body's `"Action"` member by these tests, for brevity.
fn target(body: &str) -> &'static str {
    let v: Value = serde_json::from_str(body).unwrap();
    match v["Action"].as_str().unwrap() {
        "DeleteMessage" => "AmazonSQS.DeleteMessage",
        "ReceiveMessage" => "AmazonSQS.ReceiveMessage",
        "ChangeMessageVisibility" => "AmazonSQS.ChangeMessageVisibility",
        other => panic!("{other}"),
    }
}

async fn native(app: &Router, method: &str, uri: &str, body: Value) -> (u16, Value) {
    call(app, method, uri, "application/json", body.to_string()).await
}

async fn sqs(app: &Router, action: &str, mut body: Value) -> (u16, Value) {
    body["Action"] = json!(action);
    let (status, v) = call(app, "POST", "/", "application/x-amz-json-1.0", body.to_string()).await;
    (status, v)
}

async fn enqueue_and_receive(app: &Router, queue: &str) -> (String, String) {
    assert_eq!(native(app, "PUT", &format!("/v1/queues/{queue}"), json!({})).await.0, 201);
    let (s, v) =
        native(app, "POST", &format!("/v1/queues/{queue}/jobs"), json!({"jobs": [{"body": "x"}]}))
            .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = native(app, "POST", &format!("/v1/queues/{queue}/receive"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let job = &v["jobs"][0];
    (job["id"].as_str().unwrap().to_owned(), job["receipt"].as_str().unwrap().to_owned())
}

/// What anyone who knows a job id could write: the store's own receipt for the first lease.
fn forged(id: &str) -> String {
    Receipt { id: id.parse::<JobId>().unwrap(), epoch: 1 }.encode()
}

#[tokio::test]
async fn a_receipt_made_from_a_job_id_settles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _engine) = app(dir.path());
    let (id, genuine) = enqueue_and_receive(&app, "payments").await;
    assert_ne!(genuine, forged(&id), "a handed-out receipt is not the bare store receipt");

    let (s, v) = native(&app, "POST", "/v1/ack", json!({"receipts": [forged(&id)]})).await;
    assert_eq!((s, &v["results"]), (200, &json!(["unknown"])), "{v}");
    let fail = json!({"receipt": forged(&id), "error": {"type": "x", "message": "y"}});
    let (s, v) = native(&app, "POST", "/v1/fail", fail).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_receipt")), "{v}");
    let (s, v) =
        native(&app, "POST", "/v1/extend", json!({"receipt": forged(&id), "lease_ms": 0})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_receipt")), "{v}");
    // A tag of the right shape, but not the server's.
    let retagged = format!("{}.{}.payments", forged(&id), "0".repeat(32));
    let (s, v) = native(&app, "POST", "/v1/ack", json!({"receipts": [retagged]})).await;
    assert_eq!((s, &v["results"]), (200, &json!(["unknown"])), "{v}");

    let url = "http://localhost/000000000000/payments";
    let (s, v) =
        sqs(&app, "DeleteMessage", json!({"QueueUrl": url, "ReceiptHandle": forged(&id)})).await;
    assert_eq!((s, v["__type"].as_str()), (400, Some("com.amazonaws.sqs#ReceiptHandleIsInvalid")));

    // The job is still leased to its worker, whose receipt settles it.
    let (_, job) = native(&app, "GET", &format!("/v1/jobs/{id}"), Value::Null).await;
    assert_eq!(job["state"], "leased", "{job}");
    let (s, v) = native(&app, "POST", "/v1/ack", json!({"receipts": [genuine]})).await;
    assert_eq!((s, &v["results"]), (200, &json!(["ok"])), "{v}");
}

#[tokio::test]
async fn a_receipt_settles_only_through_its_own_queue_on_sqs() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _engine) = app(dir.path());
    let (_, receipt) = enqueue_and_receive(&app, "a").await;
    assert_eq!(native(&app, "PUT", "/v1/queues/b", json!({})).await.0, 201);
    let other = "http://localhost/000000000000/b";
    let (s, v) =
        sqs(&app, "DeleteMessage", json!({"QueueUrl": other, "ReceiptHandle": receipt})).await;
    assert_eq!((s, v["__type"].as_str()), (400, Some("com.amazonaws.sqs#ReceiptHandleIsInvalid")));
    let own = "http://localhost/000000000000/a";
    let (s, v) =
        sqs(&app, "DeleteMessage", json!({"QueueUrl": own, "ReceiptHandle": receipt})).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn receipts_stay_valid_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receipt = {
        let (app, engine) = app(dir.path());
        let (_, receipt) = enqueue_and_receive(&app, "jobs").await;
        engine.shutdown().await;
        receipt
    };
    let (app, _engine) = app(dir.path());
    let (s, v) =
        native(&app, "POST", "/v1/extend", json!({"receipt": receipt, "lease_ms": 60_000})).await;
    // The embedded store ends leases at a restart, so the receipt is stale; were the key the
    // process's own, it would be invalid.
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("stale_receipt")), "{v}");
}
