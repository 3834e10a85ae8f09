//! SQS message move tasks live in the store: several servers (`AppState`s) over one engine
//! stand in for a PostgreSQL fleet or for one server restarted. A task released at shutdown is
//! resumed by the next server, a task whose server stopped renewing its claim is taken over
//! once the claim runs out (and the old runner stops), racing starts for one source start one
//! task, and each source keeps its ten most recent tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use redrive_core::broker::DocKind;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::Broker;
use redrive_engine::{Durability, Engine, EngineHandle, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::{AppState, ConnLimits, Shared};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

const ARN: &str = "arn:aws:sqs:us-east-1:000000000000:q-dlq";
/// Longer than anything here may take; a test that reaches it has hung.
const HANG: Duration = Duration::from_secs(30);

/// One server over the shared engine; `serve` starts its sweeper as `redrive serve` does.
struct Node {
    state: Shared<EngineHandle>,
    router: axum::Router,
    serving: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Node {
    fn new(engine: &EngineHandle) -> Node {
        let state = Arc::new(AppState::new(engine.clone(), SqsSettings::default()));
        let router = redrive_server::router(state.clone());
        Node { state, router, serving: None }
    }

    async fn serve(mut self) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let limits = ConnLimits { open_max: 16, idle_timeout: Duration::from_secs(5) };
        let state = self.state.clone();
        let done = tokio::spawn(async move {
            let drain = Duration::from_secs(2);
            redrive_server::serve_with(listener, state, shutdown, drain, limits).await.unwrap();
        });
        self.serving = Some((stop, done));
        self
    }

    async fn stop(&mut self) {
        let (stop, done) = self.serving.take().expect("serving");
        stop.send(()).unwrap();
        tokio::time::timeout(HANG, done).await.expect("serve returns").unwrap();
    }

    async fn call(&self, req: Request<Body>) -> Value {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    async fn native(&self, method: &str, path: &str, body: Value) -> Value {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.call(req).await
    }

    async fn sqs(&self, action: &str, body: Value) -> Value {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.call(req).await
    }

    /// The most recent task of q-dlq, as ListMessageMoveTasks shows it.
    async fn task(&self) -> Value {
        let tasks = self.sqs("ListMessageMoveTasks", json!({"SourceArn": ARN})).await;
        tasks["Results"][0].clone()
    }

    /// Waits until the most recent task's status is `status`; returns it.
    async fn until_status(&self, status: &str) -> Value {
        let deadline = Instant::now() + HANG;
        loop {
            let task = self.task().await;
            if task["Status"] == status {
                return task;
            }
            assert!(Instant::now() < deadline, "never {status}: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn dead(&self) -> usize {
        let dead = self.native("GET", "/v1/queues/q-dlq/dead", Value::Null).await;
        dead["jobs"].as_array().map(Vec::len).expect("a dead-letter page")
    }
}

fn engine() -> Engine {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::default()), Durability::Sync, clock.now_ms())
        .expect("the store opens");
    Engine::start(store, clock)
}

/// `n` dead letters in q-dlq.
async fn dead_letters(node: &Node, n: usize) {
    node.native("PUT", "/v1/queues/q", json!({"max_attempts": 1})).await;
    if n == 0 {
        return;
    }
    let jobs: Vec<Value> = (0..n).map(|i| json!({"body": format!("job {i}")})).collect();
    node.native("POST", "/v1/queues/q/jobs", json!({ "jobs": jobs })).await;
    let got = node.native("POST", "/v1/queues/q/receive", json!({"max": n})).await;
    for job in got["jobs"].as_array().unwrap() {
        let fail = json!({"receipt": job["receipt"], "error": {"type": "E", "message": "m"}});
        node.native("POST", "/v1/fail", fail).await;
    }
    assert_eq!(node.dead().await, n);
}

/// The stored task documents (`task/<handle>`), parsed.
async fn stored_tasks(engine: &EngineHandle) -> Vec<(String, Value)> {
    let docs = engine.list_docs(DocKind::MoveTask).await.unwrap();
    let tasks = docs.into_iter().filter(|(k, _)| k.starts_with("task/"));
    tasks.map(|(k, v)| (k, serde_json::from_str(&v).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_released_at_shutdown_is_resumed_by_the_next_server_and_completes() {
    let engine = engine();
    let first = Node::new(&engine.handle).serve().await;
    dead_letters(&first, 4).await;
    let rate = json!({"SourceArn": ARN, "MaxNumberOfMessagesPerSecond": 1});
    let started = first.sqs("StartMessageMoveTask", rate).await;
    let handle = started["TaskHandle"].as_str().expect("started").to_owned();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut first = first;
    first.stop().await;
    let released = first.task().await;
    assert_eq!(released["Status"], "RUNNING", "{released}");
    let moved_before = released["ApproximateNumberOfMessagesMoved"].as_u64().unwrap();
    assert!((1..4).contains(&moved_before), "stopped midway: {released}");

    let second = Node::new(&engine.handle).serve().await;
    let resumed = second.task().await;
    assert_eq!(resumed["TaskHandle"], handle.as_str(), "the same task: {resumed}");
    let done = second.until_status("COMPLETED").await;
    assert_eq!(done["ApproximateNumberOfMessagesMoved"], 4, "progress carried over: {done}");
    assert_eq!(done["StartedTimestamp"], released["StartedTimestamp"]);
    assert_eq!(second.dead().await, 0);
    let back = second.native("GET", "/v1/queues/q", Value::Null).await;
    assert_eq!(back["stats"]["counts"]["ready"], 4, "{back}");
    let mut second = second;
    second.stop().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_claim_was_taken_stops_and_resumes_when_the_claim_runs_out() {
    let engine = engine();
    // The first server runs the task but has no sweeper (it never serves).
    let first = Node::new(&engine.handle);
    dead_letters(&first, 4).await;
    let rate = json!({"SourceArn": ARN, "MaxNumberOfMessagesPerSecond": 1});
    assert!(first.sqs("StartMessageMoveTask", rate).await["TaskHandle"].is_string());

    // A server that then dies claims the task for three seconds.
    let claim_ends = SystemClock.now_ms() + 3000;
    loop {
        let docs = engine.handle.list_docs(DocKind::MoveTask).await.unwrap();
        let (key, old) = docs.into_iter().find(|(k, _)| k.starts_with("task/")).unwrap();
        let mut task: Value = serde_json::from_str(&old).unwrap();
        task["runner"] = json!("a server that died");
        task["lease_until_ms"] = json!(claim_ends);
        let new = Some(task.to_string());
        if engine.handle.put_doc_if(DocKind::MoveTask, key, Some(old), new).await.unwrap() {
            break;
        }
    }
    let deadline = Instant::now() + HANG;
    while !first.state.background.tasks.is_empty() {
        assert!(Instant::now() < deadline, "the first server's runner saw it lost the task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead_then = first.dead().await;

    // Another server's sweeper leaves the claim alone while it lasts, then resumes the task.
    let second = Node::new(&engine.handle).serve().await;
    let until_claim_ends = claim_ends.saturating_sub(SystemClock.now_ms() + 300);
    tokio::time::sleep(Duration::from_millis(until_claim_ends)).await;
    assert_eq!(second.dead().await, dead_then, "nothing moves while the dead server's claim lasts");
    assert_eq!(second.task().await["Status"], "RUNNING");
    second.until_status("COMPLETED").await;
    assert_eq!(second.dead().await, 0);
    let (_, task) = stored_tasks(&engine.handle).await.remove(0);
    assert_ne!(task["runner"], "a server that died", "{task}");
    let mut second = second;
    second.stop().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_starts_for_one_source_start_one_task_and_cancel_ends_it() {
    let engine = engine();
    let node = Node::new(&engine.handle).serve().await;
    dead_letters(&node, 3).await;
    let starts = (0..8).map(|_| {
        let router = node.router.clone();
        tokio::spawn(async move {
            let body = json!({"SourceArn": ARN, "MaxNumberOfMessagesPerSecond": 1}).to_string();
            let req = Request::builder()
                .method("POST")
                .uri("/")
                .header("x-amz-target", "AmazonSQS.StartMessageMoveTask")
                .header("content-type", "application/x-amz-json-1.0")
                .body(Body::from(body))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    });
    let mut handles = Vec::new();
    for start in starts.collect::<Vec<_>>() {
        let answer = start.await.unwrap();
        match answer["TaskHandle"].as_str() {
            Some(h) => handles.push(h.to_owned()),
            None => assert!(answer["__type"].as_str().unwrap().contains("UnsupportedOperation")),
        }
    }
    assert_eq!(handles.len(), 1, "one of the racing starts wins: {handles:?}");
    assert_eq!(stored_tasks(&engine.handle).await.len(), 1, "the losers left no task behind");

    let cancel = node.sqs("CancelMessageMoveTask", json!({"TaskHandle": handles[0]})).await;
    assert!(cancel["ApproximateNumberOfMessagesMoved"].is_u64(), "{cancel}");
    let cancelled = node.until_status("CANCELLED").await;
    assert!(cancelled.get("TaskHandle").is_none(), "{cancelled}");
    let again = node.sqs("CancelMessageMoveTask", json!({"TaskHandle": handles[0]})).await;
    assert!(again["__type"].as_str().unwrap().contains("ResourceNotFound"), "{again}");
    let next = node.sqs("StartMessageMoveTask", json!({"SourceArn": ARN})).await;
    assert!(next["TaskHandle"].is_string(), "a cancelled task frees the source: {next}");
    node.until_status("COMPLETED").await;
    let mut node = node;
    node.stop().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_of_a_stopped_server_ends_at_the_next_servers_sweep() {
    let engine = engine();
    let mut first = Node::new(&engine.handle).serve().await;
    dead_letters(&first, 3).await;
    let rate = json!({"SourceArn": ARN, "MaxNumberOfMessagesPerSecond": 1});
    let handle = first.sqs("StartMessageMoveTask", rate).await["TaskHandle"].clone();
    first.stop().await;
    let cancel = first.sqs("CancelMessageMoveTask", json!({ "TaskHandle": handle })).await;
    assert!(cancel["ApproximateNumberOfMessagesMoved"].is_u64(), "{cancel}");
    assert_eq!(first.task().await["Status"], "CANCELLING");
    let mut second = Node::new(&engine.handle).serve().await;
    second.until_status("CANCELLED").await;
    second.stop().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_keeps_its_ten_most_recent_tasks() {
    let engine = engine();
    let node = Node::new(&engine.handle);
    dead_letters(&node, 0).await;
    let mut handles = Vec::new();
    for _ in 0..12 {
        let started = node.sqs("StartMessageMoveTask", json!({"SourceArn": ARN})).await;
        handles.push(started["TaskHandle"].as_str().expect("started").to_owned());
        node.until_status("COMPLETED").await;
    }
    let listed =
        node.sqs("ListMessageMoveTasks", json!({"SourceArn": ARN, "MaxResults": 10})).await;
    let listed = listed["Results"].as_array().unwrap();
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|t| t["Status"] == "COMPLETED"));
    let stored: Vec<String> =
        stored_tasks(&engine.handle).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(stored.len(), 10, "the two oldest are forgotten: {stored:?}");
    for old in &handles[..2] {
        assert!(!stored.contains(&format!("task/{old}")), "{old} is forgotten");
    }
    drop(node);
    engine.shutdown().await;
}
