//! Shutdown reaches the server's background work: a message move task still moving when the
//! server is told to stop stops before `serve_with` returns, instead of moving on against a
//! store that is about to close, and releases its claim (it stays RUNNING in the store, with
//! its progress, for the next server to resume) rather than failing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use redrive_core::broker::DocKind;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::Broker;
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::{AppState, ConnLimits};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(router: &axum::Router, req: Request<Body>) -> Value {
    let resp = router.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn native(router: &axum::Router, method: &str, path: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    call(router, req).await
}

async fn sqs(router: &axum::Router, action: &str, body: Value) -> Value {
    let req = Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(body.to_string()))
        .unwrap();
    call(router, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_move_task_stops_when_the_server_shuts_down() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::default()), Durability::Sync, clock.now_ms())
        .expect("the store opens");
    let engine = Engine::start(store, clock);
    let state = Arc::new(AppState::new(engine.handle.clone(), SqsSettings::default()));
    let router = redrive_server::router(state.clone());

    // Five dead jobs in q-dlq.
    native(&router, "PUT", "/v1/queues/q", json!({"max_attempts": 1})).await;
    let jobs: Vec<Value> = (0..5).map(|i| json!({"body": format!("job {i}")})).collect();
    native(&router, "POST", "/v1/queues/q/jobs", json!({ "jobs": jobs })).await;
    let got = native(&router, "POST", "/v1/queues/q/receive", json!({"max": 5})).await;
    for job in got["jobs"].as_array().unwrap() {
        let fail = json!({"receipt": job["receipt"], "error": {"type": "E", "message": "m"}});
        native(&router, "POST", "/v1/fail", fail).await;
    }
    let dead = native(&router, "GET", "/v1/queues/q-dlq/dead", Value::Null).await;
    assert_eq!(dead["jobs"].as_array().map(Vec::len), Some(5), "{dead}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let limits = ConnLimits { open_max: 16, idle_timeout: Duration::from_secs(5) };
    let server = tokio::spawn(redrive_server::serve_with(
        listener,
        state.clone(),
        shutdown,
        Duration::from_secs(2),
        limits,
    ));

    // One message a second: the task would run for five seconds.
    let arn = "arn:aws:sqs:us-east-1:000000000000:q-dlq";
    let started = sqs(
        &router,
        "StartMessageMoveTask",
        json!({"SourceArn": arn, "MaxNumberOfMessagesPerSecond": 1}),
    )
    .await;
    assert!(started["TaskHandle"].is_string(), "{started}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns within its bounds")
        .unwrap()
        .unwrap();
    let tasks = sqs(&router, "ListMessageMoveTasks", json!({"SourceArn": arn})).await;
    let task = &tasks["Results"][0];
    assert_eq!(task["Status"], "RUNNING", "released for the next server, not failed: {tasks}");
    assert_eq!(task["TaskHandle"], started["TaskHandle"]);
    let moved = task["ApproximateNumberOfMessagesMoved"].as_u64().unwrap();
    assert!(moved < 5, "the task stopped before it was done: {moved} moved");
    let docs = engine.handle.list_docs(DocKind::MoveTask).await.unwrap();
    let (_, stored) = docs.iter().find(|(k, _)| k.starts_with("task/")).expect("stored");
    let stored: Value = serde_json::from_str(stored).unwrap();
    assert_eq!(stored["lease_until_ms"], 0, "the claim was released: {stored}");

    // Nothing moves after serve returned.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dead = native(&router, "GET", "/v1/queues/q-dlq/dead", Value::Null).await;
    assert_eq!(dead["jobs"].as_array().map(Vec::len), Some(5 - moved as usize), "{dead}");
    drop(router);
    drop(state);
    engine.shutdown().await;
}
