//! Every scope allows exactly what it says and refuses the rest, with nothing written when it
//! refuses: a table of (route, scope it needs) tried with a key of each single scope, on a
//! queue the key covers and on one it does not. Also: no token, a wrong secret, a revoked and
//! an expired key are 401; cross-site requests are refused without auth too; a triage decision
//! is recorded as the deciding key.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::{Durability, Engine, MemStorage, Store};
use redrive_server::auth::{self, AuthSettings};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "ADMINKEY0001.admin-secret-admin-secret";

struct Rig {
    router: Router,
    _engine: Engine,
}

async fn rig(enabled: bool) -> Rig {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(Box::new(MemStorage::new()), Durability::Sync, clock.now_ms()).unwrap();
    let engine = Engine::start(store, clock);
    let mut state = AppState::new(engine.handle.clone(), SqsSettings::default());
    state.auth = AuthSettings { enabled, metrics_public: false };
    let (id, secret) = ADMIN.split_once('.').unwrap();
    let admin = auth::record(id.into(), "admin", secret, &["admin:*".into()], None, None);
    auth::store(&state.broker, &admin).await.unwrap();
    Rig { router: redrive_server::router(Arc::new(state)), _engine: engine }
}

impl Rig {
    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(uri).header("host", "localhost");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => {
                req.header("content-type", "application/json").body(Body::from(b.to_string()))
            }
            None => req.body(Body::empty()),
        };
        let resp = self.router.clone().oneshot(req.unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(Some(ADMIN), method, uri, body).await;
        assert!((200..300).contains(&s), "{method} {uri}: {s} {v}");
        v
    }

    async fn key(&self, allow: &[&str]) -> String {
        let v = self.admin("POST", "/v1/keys", Some(json!({"name": "k", "allow": allow}))).await;
        v["token"].as_str().unwrap().to_string()
    }

    /// Jobs in a queue, any state: what a refused request must leave as it was.
    async fn jobs(&self, q: &str) -> u64 {
        let s = self.admin("GET", &format!("/v1/queues/{q}/stats"), None).await;
        s["counts"].as_object().unwrap().values().map(|v| v.as_u64().unwrap_or(0)).sum()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Each route a scope governs, as (scope, method, path with {q}, body).
fn table() -> Vec<(&'static str, &'static str, &'static str, Option<Value>)> {
    vec![
        ("send", "POST", "/v1/queues/{q}/jobs", Some(json!({"jobs": [{"body": "x"}]}))),
        ("receive", "POST", "/v1/queues/{q}/receive", Some(json!({}))),
        ("receive", "POST", "/v1/receive", Some(json!({"queues": ["{q}"]}))),
        ("read", "GET", "/v1/queues/{q}", None),
        ("read", "GET", "/v1/queues/{q}/stats", None),
        ("read", "GET", "/v1/queues/{q}/dead", None),
        ("read", "GET", "/v1/queues/{q}/jobs", None),
        ("read", "GET", "/v1/queues/{q}/dead/groups", None),
        ("manage", "PUT", "/v1/queues/{q}", Some(json!({"visibility_timeout_ms": 7000}))),
        ("manage", "POST", "/v1/queues/{q}/purge", Some(json!({}))),
        ("manage", "POST", "/v1/queues/{q}/redrive", Some(json!({"dry_run": true}))),
        ("manage", "POST", "/v1/queues/{q}/jobs/delete", Some(json!({"ids": []}))),
        ("manage", "POST", "/v1/queues/{q}/pause", None),
        ("manage", "POST", "/v1/queues/{q}/resume", None),
        ("triage", "PUT", "/v1/triage/policies/{q}", Some(json!({"mode": "observe"}))),
        ("admin", "GET", "/v1/keys", None),
        ("admin", "GET", "/v1/audit", None),
    ]
}

#[tokio::test]
async fn each_scope_allows_exactly_its_routes_on_its_queues() {
    let r = rig(true).await;
    for q in ["orders-1", "payments"] {
        r.admin("PUT", &format!("/v1/queues/{q}"), Some(json!({}))).await;
    }
    for scope in ["send", "receive", "read", "manage", "triage"] {
        let token = r.key(&[&format!("{scope}:orders-*")]).await;
        for (needs, method, path, body) in table() {
            for (q, covered) in [("orders-1", true), ("payments", false)] {
                let uri = path.replace("{q}", q);
                let body = body
                    .clone()
                    .map(|b| serde_json::from_str(&b.to_string().replace("{q}", q)).unwrap());
                let before = r.jobs(q).await;
                let (s, v) = r.call(Some(&token), method, &uri, body).await;
                let allowed = needs == scope && covered;
                if allowed {
                    assert!(
                        s < 400 || code(&v) != "forbidden",
                        "{scope} key, {method} {uri}: {s} {v}"
                    );
                } else {
                    assert_eq!(
                        (s, code(&v)),
                        (403, "forbidden"),
                        "{scope} key, {method} {uri}: {v}"
                    );
                    let says = v["error"]["message"].as_str().unwrap();
                    assert!(says.contains(needs), "names the action: {says}");
                    assert_eq!(r.jobs(q).await, before, "a refused {method} {uri} wrote nothing");
                }
            }
        }
    }
}

#[tokio::test]
async fn settling_a_lease_needs_receive_on_the_receipts_queue() {
    let r = rig(true).await;
    r.admin("PUT", "/v1/queues/orders-1", Some(json!({}))).await;
    r.admin("POST", "/v1/queues/orders-1/jobs", Some(json!({"jobs": [{"body": "x"}]}))).await;
    let worker = r.key(&["receive:orders-*"]).await;
    let (_, got) =
        r.call(Some(&worker), "POST", "/v1/queues/orders-1/receive", Some(json!({}))).await;
    let receipt = got["jobs"][0]["receipt"].as_str().unwrap().to_string();
    let sender = r.key(&["send:*", "read:*"]).await;
    for (path, body) in [
        ("/v1/ack", json!({"receipts": [receipt]})),
        ("/v1/extend", json!({"receipt": receipt, "lease_ms": 0})),
        ("/v1/fail", json!({"receipt": receipt, "error": {"type": "x", "message": "y"}})),
    ] {
        let (s, v) = r.call(Some(&sender), "POST", path, Some(body)).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{path}: {v}");
    }
    // A receive may carry acks only of queues its key may receive from.
    r.admin("PUT", "/v1/queues/other-1", Some(json!({}))).await;
    let other = r.key(&["receive:other-*"]).await;
    let carried = json!({"ack": [receipt], "wait_ms": 0});
    let (s, v) = r.call(Some(&other), "POST", "/v1/queues/other-1/receive", Some(carried)).await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) =
        r.call(Some(&worker), "POST", "/v1/ack", Some(json!({"receipts": [receipt]}))).await;
    assert_eq!((s, &v["results"]), (200, &json!(["ok"])), "{v}");
}

#[tokio::test]
async fn missing_wrong_revoked_and_expired_credentials_are_401() {
    let r = rig(true).await;
    r.admin("PUT", "/v1/queues/q", Some(json!({}))).await;
    let (s, v) = r.call(None, "GET", "/v1/queues", None).await;
    assert_eq!((s, code(&v)), (401, "unauthorized"));
    let (id, _) = ADMIN.split_once('.').unwrap();
    let (s, v) = r.call(Some(&format!("{id}.wrong-secret")), "GET", "/v1/queues", None).await;
    assert_eq!((s, code(&v)), (401, "unauthorized"));
    assert!(!v.to_string().contains("admin-secret"), "no secret in errors: {v}");
    let (s, _) = r.call(Some("NOSUCHKEY.x"), "GET", "/v1/queues", None).await;
    assert_eq!(s, 401);
    // Open routes stay open; /metrics needs read.
    assert_eq!(r.call(None, "GET", "/healthz", None).await.0, 200);
    assert_eq!(r.call(None, "GET", "/metrics", None).await.0, 401);

    let token = r.key(&["send:*"]).await;
    let id = token.split_once('.').unwrap().0.to_string();
    let enqueue = json!({"jobs": [{"body": "x"}]});
    assert_eq!(
        r.call(Some(&token), "POST", "/v1/queues/q/jobs", Some(enqueue.clone())).await.0,
        200
    );
    r.admin("DELETE", &format!("/v1/keys/{id}"), None).await;
    let (s, v) = r.call(Some(&token), "POST", "/v1/queues/q/jobs", Some(enqueue.clone())).await;
    assert_eq!((s, code(&v)), (401, "unauthorized"), "revoked on the next request: {v}");
    assert_eq!(r.jobs("q").await, 1);

    let soon = SystemClock.now_ms() + 300;
    let v = r
        .admin(
            "POST",
            "/v1/keys",
            Some(json!({"name": "t", "allow": ["send:*"], "expires_at": soon})),
        )
        .await;
    let token = v["token"].as_str().unwrap();
    assert_eq!(
        r.call(Some(token), "POST", "/v1/queues/q/jobs", Some(enqueue.clone())).await.0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(r.call(Some(token), "POST", "/v1/queues/q/jobs", Some(enqueue)).await.0, 401);

    // The listing shows no secret, and the audit log names who did what.
    let keys = r.admin("GET", "/v1/keys", None).await;
    assert!(!keys.to_string().contains("secret"), "{keys}");
    let log = r.admin("GET", "/v1/audit", None).await;
    let revoke = log["entries"].as_array().unwrap().iter().find(|e| e["action"] == "key.revoke");
    assert_eq!(revoke.map(|e| e["key"].clone()), Some(json!("ADMINKEY0001")), "{log}");
}

#[tokio::test]
async fn without_auth_a_web_page_still_cannot_act() {
    let r = rig(false).await;
    r.admin("PUT", "/v1/queues/q", Some(json!({}))).await;
    r.admin("POST", "/v1/queues/q/jobs", Some(json!({"jobs": [{"body": "x"}]}))).await;
    // An <img> or a link: GET with a Query action that deletes.
    let get =
        Request::get("/?Action=DeleteQueue&QueueUrl=http%3A%2F%2Flocalhost%2F000000000000%2Fq")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
    assert_eq!(r.router.clone().oneshot(get).await.unwrap().status().as_u16(), 403);
    // A form posted from another site, to the native API and to the SQS door.
    let form = Request::post("/v1/queues/q/purge")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("a=b"))
        .unwrap();
    assert_eq!(r.router.clone().oneshot(form).await.unwrap().status().as_u16(), 400);
    let cross = Request::post("/v1/queues/q/purge")
        .header("host", "localhost:9324")
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(r.router.clone().oneshot(cross).await.unwrap().status().as_u16(), 403);
    let sqs_form = Request::post("/")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("Action=PurgeQueue&QueueUrl=http%3A%2F%2Flocalhost%2F000000000000%2Fq"))
        .unwrap();
    assert_eq!(r.router.clone().oneshot(sqs_form).await.unwrap().status().as_u16(), 403);
    assert_eq!(r.jobs("q").await, 1, "nothing was purged or deleted");
    // Reading stays open to a plain GET.
    let list = Request::get("/?Action=ListQueues")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    assert_eq!(r.router.clone().oneshot(list).await.unwrap().status().as_u16(), 200);
}
