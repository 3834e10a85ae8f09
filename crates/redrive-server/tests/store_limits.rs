//! What the store promises at its edges, seen through the HTTP router (in process): queue
//! configs too large to log are refused before anything is acknowledged, a full disk gives a
//! clear 503 while reads go on and loses nothing acknowledged, and only errors that clear by
//! themselves carry `Retry-After`, and triage proposals and policies are bounded documents in
//! the store that survive restarts.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: axum::Router,
    engine: Engine,
}

async fn start(storage: &MemStorage) -> App {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(storage.clone()), Durability::Sync, clock.now_ms())
        .expect("the store opens");
    let engine = Engine::start(store, clock);
    let state = AppState::new(engine.handle.clone(), SqsSettings::default());
    redrive_server::triage::load(&state).await.expect("triage documents load");
    App { router: redrive_server::router(Arc::new(state)), engine }
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, retry_after, body }
    }

    async fn native(&self, method: &str, path: &str, body: Value) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    async fn sqs(&self, action: &str, body: Value) -> Reply {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    async fn stop(self) {
        drop(self.router);
        self.engine.shutdown().await;
    }
}

fn code(r: &Reply) -> &str {
    r.body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn queue_configs_too_large_to_log_are_refused_and_the_store_still_restarts() {
    let storage = MemStorage::new();
    let app = start(&storage).await;
    let huge = "x".repeat(2_200_000);
    let r = app.native("PUT", "/v1/queues/q", json!({ "tags": { "t": huge } })).await;
    assert_eq!((r.status, code(&r)), (StatusCode::BAD_REQUEST, "invalid_parameter"), "{}", r.body);
    assert!(app.native("GET", "/v1/queues/q", json!({})).await.status == StatusCode::NOT_FOUND);

    let r = app.native("PUT", "/v1/queues/q", json!({ "visibility_timeout_ms": 1000 })).await;
    assert!(r.status.is_success(), "{}", r.body);
    let url = "http://localhost:9324/000000000000/q";
    let r = app.sqs("TagQueue", json!({ "QueueUrl": url, "Tags": { "big": huge } })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let tags: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = app.sqs("TagQueue", json!({ "QueueUrl": url, "Tags": tags })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "51 tags: {}", r.body);
    let policy = format!("{{\"Version\":\"2012-10-17\",\"Id\":\"{}\"}}", "p".repeat(2 << 20));
    let attrs = json!({ "QueueUrl": url, "Attributes": { "Policy": policy } });
    let r = app.sqs("SetQueueAttributes", attrs).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a 2 MiB policy: {}", r.body);

    // The largest config that is allowed is acknowledged and reads back after a restart.
    let wide = |n: usize| "\u{1d11e}".repeat(n);
    let tags: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("{}{i:04}", wide(124)), json!(wide(256)))).collect();
    let r = app.native("PUT", "/v1/queues/q", json!({ "tags": tags })).await;
    assert!(r.status.is_success(), "{}", r.body);
    app.stop().await;

    let app = start(&storage.crash(0)).await;
    let r = app.native("GET", "/v1/queues/q", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["config"]["tags"].as_object().unwrap().len(), 50);
    app.stop().await;
}

#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_keeps_reads_and_loses_nothing_acknowledged() {
    let storage = MemStorage::new();
    let app = start(&storage).await;
    assert!(app.native("PUT", "/v1/queues/q", json!({})).await.status.is_success());
    storage.set_capacity(Some(storage.total_bytes() + 20_000));
    let mut acked = Vec::new();
    let failure = loop {
        let body =
            json!({ "jobs": [{ "body": format!("job {} {}", acked.len(), "x".repeat(500)) }] });
        let r = app.native("POST", "/v1/queues/q/jobs", body).await;
        if !r.status.is_success() {
            break r;
        }
        acked.push(r.body["jobs"][0]["id"].as_str().unwrap().to_owned());
        assert!(acked.len() < 1000, "the disk never filled");
    };
    assert_eq!(failure.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&failure), "store_poisoned");
    let msg = failure.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("No space left on device"), "names the cause: {msg}");
    assert!(failure.retry_after.is_none(), "a poisoned store does not clear by waiting");
    assert!(acked.len() > 5, "{} jobs before the disk filled", acked.len());

    let r = app.native("GET", &format!("/v1/jobs/{}", acked[0]), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "reads keep working: {}", r.body);
    let r = app.native("GET", "/v1/queues/q/stats", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.native("GET", "/readyz", json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "not ready for writes: {}", r.body);
    app.stop().await;

    // Space freed, restarted: every acknowledged job is there and writes work again.
    let storage = storage.crash(0);
    storage.set_capacity(None);
    let app = start(&storage).await;
    for id in &acked {
        let r = app.native("GET", &format!("/v1/jobs/{id}"), json!({})).await;
        assert_eq!(r.body["state"], "ready", "{id}: {}", r.body);
    }
    let r = app.native("POST", "/v1/queues/q/jobs", json!({ "jobs": [{ "body": "after" }] })).await;
    assert!(r.status.is_success(), "{}", r.body);
    app.stop().await;
}

fn proposal(ids: usize) -> Value {
    let ids: Vec<String> = (0..ids).map(|i| format!("0190a4a2-0000-7000-8000-{i:012}")).collect();
    json!({
        "queue": "emails-dlq", "source_queue": "emails", "signature": "Timeout: smtp",
        "job_ids": ids,
        "decision": {"category": "transient", "action": "escalate", "confidence": 0.9,
                     "analysis": "timeouts"},
        "reason": "policy asks a person"
    })
}

#[tokio::test]
async fn triage_proposals_and_policies_are_bounded_and_survive_restarts() {
    let mut storage = MemStorage::new();
    let app = start(&storage).await;
    let r = app.native("POST", "/v1/triage/proposals", proposal(1001)).await;
    assert_eq!((r.status, code(&r)), (StatusCode::BAD_REQUEST, "batch_too_large"), "{}", r.body);
    let mut big = proposal(1);
    big["decision"]["analysis"] = json!("x".repeat(100 * 1024));
    let r = app.native("POST", "/v1/triage/proposals", big).await;
    assert_eq!((r.status, code(&r)), (StatusCode::BAD_REQUEST, "invalid_parameter"), "{}", r.body);

    let r = app.native("POST", "/v1/triage/proposals", proposal(1000)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let first = r.body["id"].as_str().unwrap().to_owned();
    let r = app.native("POST", "/v1/triage/proposals", proposal(2)).await;
    let second = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .native(
            "POST",
            &format!("/v1/triage/proposals/{second}/reject"),
            json!({"by": "ada", "why": "known"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let policy = json!({"mode": "propose", "min_confidence": 0.8});
    let r = app.native("PUT", "/v1/triage/policies/emails", policy).await;
    assert!(r.status.is_success(), "{}", r.body);
    app.stop().await;

    storage = storage.crash(0);
    let app = start(&storage).await;
    let r = app.native("GET", "/v1/triage/proposals", json!({})).await;
    let all = r.body["proposals"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{}", r.body);
    assert_eq!(all[0]["id"], first.as_str());
    assert_eq!(all[0]["job_ids"].as_array().unwrap().len(), 1000);
    assert_eq!(all[1]["status"], "rejected");
    let r = app.native("GET", "/v1/triage/policies/emails", json!({})).await;
    assert_eq!(r.body["min_confidence"], 0.8, "{}", r.body);
    let r = app.native("DELETE", "/v1/triage/policies/emails", json!({})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.stop().await;
    storage = storage.crash(0);
    let app = start(&storage).await;
    let r = app.native("GET", "/v1/triage/policies/emails", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a deleted policy stays deleted: {}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn at_the_proposal_bound_the_oldest_decided_one_makes_room_and_pending_ones_never_do() {
    let storage = MemStorage::new();
    let app = start(&storage).await;
    let mut ids = Vec::new();
    for _ in 0..redrive_core::limits::TRIAGE_PROPOSALS_COUNT_MAX {
        let r = app.native("POST", "/v1/triage/proposals", proposal(1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let r = app.native("POST", "/v1/triage/proposals", proposal(1)).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::TOO_MANY_REQUESTS, "limit_exceeded"),
        "{}",
        r.body
    );
    assert!(r.body["error"]["message"].as_str().unwrap().contains("TRIAGE_PROPOSALS_COUNT_MAX"));
    let verdict = json!({"by": "ada", "why": "seen"});
    for id in [&ids[7], &ids[3]] {
        let r =
            app.native("POST", &format!("/v1/triage/proposals/{id}/reject"), verdict.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = app.native("POST", "/v1/triage/proposals", proposal(1)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.native("GET", &format!("/v1/triage/proposals/{}", ids[3]), json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the oldest decided proposal made room");
    let r = app.native("GET", &format!("/v1/triage/proposals/{}", ids[7]), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "one was enough");
    let r = app.native("GET", &format!("/v1/triage/proposals/{}", ids[0]), json!({})).await;
    assert_eq!(r.body["status"], "pending", "pending proposals are kept");
    app.stop().await;
}

#[tokio::test]
async fn proposals_and_policies_from_the_old_json_files_move_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (proposals, policies) = (dir.path().join("p.json"), dir.path().join("q.json"));
    let mut old = proposal(1);
    old["id"] = json!("0190a4a2-0000-7000-8000-00000000abcd");
    old["created_at"] = json!("2026-01-01T00:00:00.000Z");
    old["status"] = json!("pending");
    std::fs::write(&proposals, json!([old]).to_string()).unwrap();
    let policy = json!({"emails": {"mode": "observe", "min_confidence": 0.5}});
    std::fs::write(&policies, policy.to_string()).unwrap();

    let mut storage = MemStorage::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(storage.clone()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let state = AppState::new(engine.handle.clone(), SqsSettings::default());
    let moved = redrive_server::triage::import_files(&state, &proposals, &policies).await.unwrap();
    assert_eq!(moved, 2);
    assert!(!proposals.exists() && dir.path().join("p.json.imported").exists());
    drop(state);
    engine.shutdown().await;

    storage = storage.crash(0);
    let app = start(&storage).await;
    let r = app
        .native("GET", "/v1/triage/proposals/0190a4a2-0000-7000-8000-00000000abcd", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.native("GET", "/v1/triage/policies/emails", json!({})).await;
    assert_eq!(r.body["mode"], "observe", "{}", r.body);
    app.stop().await;
}

/// Two servers over one store (each with its own copy of the proposals in memory, as servers
/// sharing a PostgreSQL database have) decide the same proposal at once: exactly one decision
/// is taken, the other is told the proposal is already decided, and the store keeps the one.
#[tokio::test]
async fn one_proposal_is_decided_once_across_servers() {
    let storage = MemStorage::new();
    let a = start(&storage).await;
    let state = AppState::new(a.engine.handle.clone(), SqsSettings::default());
    let b = redrive_server::router(Arc::new(state));
    for round in 0..20 {
        let r = a.native("POST", "/v1/triage/proposals", proposal(1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let approve = |who: &'static str| {
            Request::builder()
                .method("POST")
                .uri(format!("/v1/triage/proposals/{id}/approve"))
                .header("content-type", "application/json")
                .body(Body::from(json!({"by": who}).to_string()))
                .unwrap()
        };
        let (ra, rb) = tokio::join!(
            a.router.clone().oneshot(approve("ada")),
            b.clone().oneshot(approve("bob"))
        );
        let statuses = [ra.unwrap().status(), rb.unwrap().status()];
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "round {round}: {statuses:?}");
        let shown = a.native("GET", &format!("/v1/triage/proposals/{id}"), Value::Null).await;
        let by = shown.body["decided_by"].as_str().unwrap();
        assert!(by == "ada" || by == "bob", "{}", shown.body);
    }
    drop(b);
    a.stop().await;
}
