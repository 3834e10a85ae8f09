//! The native API over a real socket, written once against a server's URL and run against each
//! store: in process over the embedded engine (`http_api.rs` beside this directory) and as a
//! `redrive serve --store postgres://…` child (`crates/redrive/tests/http_api_postgres.rs`),
//! each test with a server of its own. Semantics that need a clock and a network (long polls,
//! fencing over HTTP), and bad input getting clear errors with nothing written.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct Server {
    pub url: String,
    pub http: reqwest::Client,
    /// A series only this store exports, looked for in `/metrics`.
    pub store_metric: &'static str,
    /// Whatever keeps the server running (a child process, a data directory); dropped with it.
    _running: Box<dyn std::any::Any>,
}

impl Server {
    pub fn new(url: String, store_metric: &'static str, running: Box<dyn std::any::Any>) -> Self {
        Server { url, http: reqwest::Client::new(), store_metric, _running: running }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts raw bytes on a connection of its own: a body the server refuses unread ends its
    /// connection, which a pooled client could otherwise pick for the next request.
    pub async fn raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let alone = reqwest::Client::new();
        let resp = alone.post(format!("{}{path}", self.url)).body(body).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn queue(&self, name: &str, config: Value) {
        let (s, b) = self.call("PUT", &format!("/v1/queues/{name}"), Some(config)).await;
        assert!(s.is_success(), "{s} {b}");
    }

    pub async fn enqueued(&self, q: &str) -> u64 {
        let (_, stats) = self.call("GET", &format!("/v1/queues/{q}/stats"), None).await;
        stats["totals"]["enqueued"].as_u64().unwrap()
    }
}

pub fn code(b: &Value) -> &str {
    b["error"]["code"].as_str().unwrap_or("<none>")
}

pub async fn long_poll_returns_as_soon_as_a_job_is_enqueued(s: &Server) {
    s.queue("q", json!({})).await;
    let waiter = {
        let (http, url) = (s.http.clone(), s.url.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r: Value = http
                .post(format!("{url}/v1/queues/q/receive"))
                .json(&json!({"wait_ms": 20000}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (t.elapsed(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, _) =
        s.call("POST", "/v1/queues/q/jobs", Some(json!({"jobs":[{"body":"wake"}]}))).await;
    assert_eq!(st, StatusCode::OK);
    let (elapsed, r) = waiter.await.unwrap();
    assert_eq!(r["jobs"][0]["body"], "wake");
    assert!(
        elapsed < Duration::from_secs(10),
        "served by the enqueue, not the 20 s timeout: {elapsed:?}"
    );
    let (_, r) = s.call("POST", "/v1/queues/q/receive", Some(json!({"wait_ms": 200}))).await;
    assert_eq!(r["jobs"], json!([]), "an empty long poll ends at its wait time");
}

pub async fn a_long_poll_whose_client_went_away_leases_nothing(s: &Server) {
    s.queue("gone", json!({})).await;
    let quitter = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let r = quitter
        .post(format!("{}/v1/queues/gone/receive", s.url))
        .json(&json!({"wait_ms": 20000}))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up on its long poll");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.call("POST", "/v1/queues/gone/jobs", Some(json!({"jobs":[{"body":"x"}]}))).await;
    let (_, stats) = s.call("GET", "/v1/queues/gone/stats", None).await;
    assert_eq!(
        (stats["counts"]["ready"].as_u64(), stats["counts"]["leased"].as_u64()),
        (Some(1), Some(0)),
        "the job waits for a live receiver: {stats}"
    );
}

pub async fn multi_queue_receive_prefers_queues_in_order(s: &Server) {
    s.queue("a", json!({})).await;
    s.queue("b", json!({})).await;
    s.call("POST", "/v1/queues/b/jobs", Some(json!({"jobs":[{"body":"from b"}]}))).await;
    s.call("POST", "/v1/queues/a/jobs", Some(json!({"jobs":[{"body":"from a"}]}))).await;
    let (_, r) = s.call("POST", "/v1/receive", Some(json!({"queues":["a","b"],"max":1}))).await;
    assert_eq!(r["jobs"][0]["queue"], "a");
    let (_, r) = s.call("POST", "/v1/receive", Some(json!({"queues":["a","b"],"max":5}))).await;
    assert_eq!(r["jobs"][0]["queue"], "b");
}

/// A receive that carries `ack` acks those receipts first (one result each, in `acked`) and
/// leases other jobs; one without it answers no `acked`; a refused one acks nothing.
pub async fn a_receive_acks_the_receipts_it_carries(s: &Server) {
    s.queue("q", json!({})).await;
    let jobs = json!({"jobs":[{"body":"a"},{"body":"b"},{"body":"c"}]});
    s.call("POST", "/v1/queues/q/jobs", Some(jobs)).await;
    let (_, first) = s.call("POST", "/v1/queues/q/receive", Some(json!({"wait_ms": 0}))).await;
    assert!(first.get("acked").is_none(), "{first}");
    let done = first["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    let id = first["jobs"][0]["id"].as_str().unwrap().to_owned();
    // Refused as a whole: the receipt is not acked.
    let bad = json!({"ack": [done], "max": 0});
    let (st, b) = s.call("POST", "/v1/queues/q/receive", Some(bad)).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "invalid_parameter"), "{b}");
    let (st, b) = s.call("POST", "/v1/queues/nope/receive", Some(json!({"ack": [done]}))).await;
    assert_eq!((st, code(&b)), (StatusCode::NOT_FOUND, "queue_not_found"), "{b}");
    let many: Vec<&str> = vec![done.as_str(); 1001];
    let (st, b) = s.call("POST", "/v1/queues/q/receive", Some(json!({"ack": many}))).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "batch_too_large"), "{b}");
    let (_, job) = s.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(job["state"], "leased");

    let body = json!({"ack": [done, "garbage"], "max": 10, "wait_ms": 5000});
    let (st, r) = s.call("POST", "/v1/queues/q/receive", Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["acked"], json!(["ok", "unknown"]));
    let bodies: Vec<&str> =
        r["jobs"].as_array().unwrap().iter().map(|j| j["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["b", "c"]);
    let (_, job) = s.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(job["state"], "acked");
    // Over several queues too; an empty `ack` is a plain receive that still answers `acked`.
    let rest: Vec<Value> =
        r["jobs"].as_array().unwrap().iter().map(|j| j["receipt"].clone()).collect();
    let many = json!({"queues": ["q"], "ack": rest, "wait_ms": 0});
    let (_, r) = s.call("POST", "/v1/receive", Some(many)).await;
    assert_eq!((r["acked"].clone(), r["jobs"].clone()), (json!(["ok", "ok"]), json!([])));
    let (_, r) =
        s.call("POST", "/v1/queues/q/receive", Some(json!({"ack": [], "wait_ms": 0}))).await;
    assert_eq!(r, json!({"jobs": [], "acked": []}));
}

pub async fn expired_lease_redelivers_and_stale_receipts_get_409(s: &Server) {
    s.queue("q", json!({"visibility_timeout_ms": 200})).await;
    let (_, r) = s
        .call("POST", "/v1/queues/q/jobs", Some(json!({"jobs":[{"body":"x","priority":"high"}]})))
        .await;
    let id = r["jobs"][0]["id"].as_str().unwrap().to_owned();
    let (_, first) = s.call("POST", "/v1/queues/q/receive", Some(json!({}))).await;
    let old = first["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    let (_, again) = s.call("POST", "/v1/queues/q/receive", Some(json!({"wait_ms": 5000}))).await;
    assert_eq!(again["jobs"][0]["id"], id.as_str());
    assert_eq!(again["jobs"][0]["attempt"], 2);
    let fail = json!({"receipt": old, "error": {"type": "Timeout", "message": "late"}});
    let (st, b) = s.call("POST", "/v1/fail", Some(fail)).await;
    assert_eq!((st, code(&b)), (StatusCode::CONFLICT, "stale_receipt"));
    let (st, b) =
        s.call("POST", "/v1/extend", Some(json!({"receipt": old, "lease_ms": 1000}))).await;
    assert_eq!((st, code(&b)), (StatusCode::CONFLICT, "stale_receipt"));
    let (_, b) = s.call("POST", "/v1/ack", Some(json!({"receipts": [old, "garbage"]}))).await;
    assert_eq!(b["results"], json!(["stale", "unknown"]));
    let new = again["jobs"][0]["receipt"].as_str().unwrap();
    let (_, b) = s.call("POST", "/v1/ack", Some(json!({"receipts": [new]}))).await;
    assert_eq!(b["results"], json!(["ok"]));
    let (_, job) = s.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(job["state"], "acked");
    assert_eq!(job["attempts"][0]["outcome"], "lease_expired");
}

pub async fn failures_reach_the_dead_letter_queue_and_redrive_brings_them_back(s: &Server) {
    s.queue("orders", json!({"max_attempts": 1})).await;
    s.call("POST", "/v1/queues/orders/jobs", Some(json!({"jobs":[{"body":"{\"n\":1}"}]}))).await;
    let (_, r) = s.call("POST", "/v1/queues/orders/receive", Some(json!({"worker_id":"w9"}))).await;
    let fail = json!({"receipt": r["jobs"][0]["receipt"], "error": {"type":"KeyError","message":"'sku'","detail":"Traceback ..."}});
    let (st, b) = s.call("POST", "/v1/fail", Some(fail)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        (b["queue"].as_str(), b["dead_reason"].as_str()),
        (Some("orders-dlq"), Some("max_attempts"))
    );
    let (_, dead) = s.call("GET", "/v1/queues/orders-dlq/dead?error_type=KeyError", None).await;
    assert_eq!(dead["jobs"][0]["attempts"][0]["error"]["detail"], "Traceback ...");
    assert_eq!(dead["jobs"][0]["attempts"][0]["worker_id"], "w9");
    let (_, none) = s.call("GET", "/v1/queues/orders-dlq/dead?error_type=Other", None).await;
    assert_eq!(none["jobs"], json!([]));
    let (_, rd) = s.call("POST", "/v1/queues/orders-dlq/redrive", Some(json!({}))).await;
    assert_eq!(rd["moved"], 1);
    let (_, st) = s.call("GET", "/v1/queues/orders/stats", None).await;
    assert_eq!(st["counts"]["ready"], 1);
    let (_, p) = s.call("POST", "/v1/queues/orders/purge", None).await;
    assert_eq!(p["purged"], 1);
}

pub async fn idempotent_enqueue_over_http(s: &Server) {
    s.queue("q", json!({})).await;
    let body = json!({"jobs":[{"body":"a","idempotency_key":"k-1"}]});
    let (_, a) = s.call("POST", "/v1/queues/q/jobs", Some(body.clone())).await;
    let (_, b) = s.call("POST", "/v1/queues/q/jobs", Some(body)).await;
    assert_eq!(a["jobs"][0]["id"], b["jobs"][0]["id"]);
    assert_eq!(
        (a["jobs"][0]["duplicate"].as_bool(), b["jobs"][0]["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(s.enqueued("q").await, 1);
}

pub async fn bad_input_gets_clear_errors_and_writes_nothing(s: &Server) {
    s.queue("q", json!({"max_message_bytes": 1024})).await;
    let (st, b) =
        s.call("POST", "/v1/queues/nope/jobs", Some(json!({"jobs":[{"body":"x"}]}))).await;
    assert_eq!((st, code(&b)), (StatusCode::NOT_FOUND, "queue_not_found"));
    let (st, b) = s.call("PUT", "/v1/queues/bad%20name", Some(json!({}))).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "invalid_queue_name"));
    let (st, b) = s.raw("/v1/queues/q/jobs", b"{\"jobs\": [".to_vec()).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "malformed_request"));
    let (st, b) = s
        .call("POST", "/v1/queues/q/jobs", Some(json!({"jobs":[{"body":"x","priority":"urgent"}]})))
        .await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "malformed_request"), "{b}");
    // One job too large rejects the whole batch: the valid one is not written either.
    let big = "x".repeat(1025);
    let (st, b) = s
        .call("POST", "/v1/queues/q/jobs", Some(json!({"jobs":[{"body":"ok"},{"body": big}]})))
        .await;
    assert_eq!((st, code(&b)), (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"));
    assert!(b["error"]["message"].as_str().unwrap().contains("1024"), "{b}");
    let jobs: Vec<Value> = (0..1001).map(|_| json!({"body": "x"})).collect();
    let (st, b) = s.call("POST", "/v1/queues/q/jobs", Some(json!({ "jobs": jobs }))).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "batch_too_large"));
    let (st, b) = s.raw("/v1/queues/q/jobs", vec![b' '; 9 * 1024 * 1024]).await;
    assert_eq!((st, code(&b)), (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"));
    assert!(b["error"]["message"].as_str().unwrap().contains("REQUEST_BODY_MAX_BYTES"), "{b}");
    let (st, b) = s.call("PUT", "/v1/queues/q", Some(json!({"visibility_timeout_ms": -1}))).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "malformed_request"));
    let (st, b) = s.call("PUT", "/v1/queues/q", Some(json!({"retention_ms": 5}))).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (st, b) = s.call("POST", "/v1/queues/q/receive", Some(json!({"max": 0}))).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (st, b) = s.call("GET", "/v1/jobs/not-a-uuid", None).await;
    assert_eq!((st, code(&b)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (st, b) = s.call("GET", "/v1/jobs/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", None).await;
    assert_eq!((st, code(&b)), (StatusCode::NOT_FOUND, "job_not_found"));
    let (st, b) = s.call("GET", "/v2/nothing", None).await;
    assert_eq!((st, code(&b)), (StatusCode::NOT_FOUND, "route_not_found"));
    let (st, b) = s.call("DELETE", "/v1/ack", None).await;
    assert_eq!((st, code(&b)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    assert_eq!(s.enqueued("q").await, 0, "no rejected request wrote anything");
}

pub async fn metrics_and_openapi_are_served(s: &Server) {
    s.queue("q", json!({})).await;
    s.call("POST", "/v1/queues/q/jobs", Some(json!({"jobs":[{"body":"x"}]}))).await;
    let (_, r) = s.call("POST", "/v1/queues/q/receive", Some(json!({}))).await;
    s.call("POST", "/v1/ack", Some(json!({"receipts":[r["jobs"][0]["receipt"]]}))).await;
    s.call("GET", "/no/such/route", None).await;
    let text = s.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    for needle in [
        "redrive_jobs{queue=\"q\",state=\"completed\"} 1",
        "redrive_jobs_ready{queue=\"q\",priority=\"high\"} 0",
        "redrive_jobs_enqueued_total{queue=\"q\"} 1",
        "redrive_jobs_acked_total{queue=\"q\"} 1",
        "redrive_queue_paused{queue=\"q\"} 0",
        "redrive_enqueue_to_start_seconds_count{queue=\"q\"} 1",
        "redrive_enqueue_to_start_seconds_bucket{le=\"+Inf\",queue=\"q\"} 1",
        "redrive_processing_seconds_count{queue=\"q\"} 1",
        "redrive_attempts_per_job_bucket{le=\"1.0\",queue=\"q\"} 1",
        s.store_metric,
        "redrive_http_requests_total{route=\"/v1/ack\",method=\"POST\",status=\"200\",class=\"2xx\"} 1",
        "redrive_http_request_duration_seconds_count{route=\"/v1/queues/{q}/receive\",method=\"POST\"} 1",
        "redrive_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\",class=\"4xx\"} 1",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("route=\"/v1/queues/q/"), "routes are patterns, never raw paths");
    let (st, spec) = s.call("GET", "/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
}

pub async fn priorities_receive_limits_non_retryable_and_backoff_over_http(s: &Server) {
    s.queue("p", json!({"priority_aging_ms": null})).await;
    for (body, priority) in [("low", "low"), ("std", "standard"), ("high", "high")] {
        s.call(
            "POST",
            "/v1/queues/p/jobs",
            Some(json!({"jobs":[{"body": body, "priority": priority}]})),
        )
        .await;
    }
    let (_, r) = s.call("POST", "/v1/queues/p/receive", Some(json!({"max": 3}))).await;
    let order: Vec<&str> =
        r["jobs"].as_array().unwrap().iter().map(|j| j["body"].as_str().unwrap()).collect();
    assert_eq!(order, ["high", "std", "low"]);

    // SQS-style receive limit: the third receive moves the job to the dead-letter queue.
    s.queue(
        "r",
        json!({"max_receive_count": 2, "max_attempts": null, "visibility_timeout_ms": 100}),
    )
    .await;
    s.call("POST", "/v1/queues/r/jobs", Some(json!({"jobs":[{"body":"poison"}]}))).await;
    for _ in 0..2 {
        let (_, r) = s.call("POST", "/v1/queues/r/receive", Some(json!({"wait_ms": 2000}))).await;
        assert_eq!(r["jobs"].as_array().unwrap().len(), 1);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, r) = s.call("POST", "/v1/queues/r/receive", Some(json!({}))).await;
    assert_eq!(r["jobs"], json!([]));
    let (_, r) = s.call("POST", "/v1/queues/r-dlq/receive", Some(json!({}))).await;
    assert_eq!(r["jobs"][0]["dead"]["reason"], "max_receives");
    assert_eq!(r["jobs"][0]["dead"]["source_queue"], "r");

    // Non-retryable goes straight to the dead-letter queue; retryable failures back off within bounds.
    s.queue("f", json!({"backoff": {"base_ms": 1000, "max_ms": 4000}, "max_attempts": 5})).await;
    s.call("POST", "/v1/queues/f/jobs", Some(json!({"jobs":[{"body":"a"},{"body":"b"}]}))).await;
    let (_, r) = s.call("POST", "/v1/queues/f/receive", Some(json!({"max": 2}))).await;
    let fail = |receipt: &Value, non_retryable: bool| json!({"receipt": receipt, "error": {"type": "E", "message": "m"}, "non_retryable": non_retryable});
    let (_, dead) = s.call("POST", "/v1/fail", Some(fail(&r["jobs"][0]["receipt"], true))).await;
    assert_eq!(
        (dead["dead_reason"].as_str(), dead["queue"].as_str()),
        (Some("non_retryable"), Some("f-dlq"))
    );
    let before = std::time::SystemTime::now();
    let (_, retry) = s.call("POST", "/v1/fail", Some(fail(&r["jobs"][1]["receipt"], false))).await;
    assert!(matches!(retry["state"].as_str(), Some("delayed" | "ready")), "{retry}");
    let at = redrive_core::time::from_rfc3339(retry["retry_at"].as_str().unwrap()).unwrap();
    let now = before.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(
        at <= now + 1000 + 50,
        "first retry waits at most base_ms: {} ms",
        at.saturating_sub(now)
    );
}

pub async fn openapi_lists_every_error_code_the_server_can_answer(s: &Server) {
    use redrive_core::Error;
    let (_, spec) = s.call("GET", "/v1/openapi.json", None).await;
    let codes: Vec<&str> = spec["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let id = redrive_core::JobId(1);
    let every = [
        Error::QueueNotFound("q".into()),
        Error::QueueExists("q".into()),
        Error::InvalidQueueName("q".into()),
        Error::invalid("f", "m"),
        Error::MalformedRequest("m".into()),
        Error::RequestTooLarge { max: 1 },
        Error::RouteNotFound,
        Error::MethodNotAllowed,
        Error::Timeout,
        Error::MessageTooLarge { size: 2, max: 1 },
        Error::BatchTooLarge { count: 2, max: 1 },
        Error::EmptyBatch,
        Error::JobNotFound(id),
        Error::ProposalNotFound("p".into()),
        Error::PolicyNotFound("q".into()),
        Error::StaleReceipt,
        Error::InvalidReceipt,
        Error::LimitExceeded { limit: "X", max: 1 },
        Error::Overloaded,
        Error::Poisoned("p".into()),
        Error::ShuttingDown,
        Error::Internal("i".into()),
    ];
    for e in every {
        assert!(
            codes.contains(&e.wire().code),
            "{} missing from the OpenAPI ErrorCode enum",
            e.wire().code
        );
    }
}

/// The dashboard's job browser: payload search by JSON path, attribute and text; deleting a
/// selection and a filter (leased jobs are left alone); dead letters grouped by signature; one
/// dead job redriven with its body repaired by a JSON Patch (previewed first); pause/resume;
/// and the history and whoami answers.
pub async fn the_job_browser_searches_payloads_and_acts_on_selections(s: &Server) {
    s.queue("orders", json!({"max_attempts": 1})).await;
    let jobs = json!({"jobs": [
        {"body": "{\"customer\": {\"id\": 42}, \"sku\": \"A-1\"}", "attributes": {"tenant": "acme"}},
        {"body": "{\"customer\": {\"id\": 7}, \"sku\": \"B-2\"}", "attributes": {"tenant": "zeta"}},
        {"body": "{\"customer\": {\"id\": \"42\"}, \"sku\": \"C-3\"}"},
        {"body": "not json, Mentions Widget"}
    ]});
    let (st, sent) = s.call("POST", "/v1/queues/orders/jobs", Some(jobs)).await;
    assert!(st.is_success(), "{sent}");
    let id = |i: usize| sent["jobs"][i]["id"].as_str().unwrap().to_owned();
    let listed = |v: &Value| -> Vec<String> {
        v["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
    };
    let get = |q: &'static str| async move {
        let (st, v) = s.call("GET", &format!("/v1/queues/orders/jobs{q}"), None).await;
        assert_eq!(st, StatusCode::OK, "{q}: {v}");
        v
    };
    assert_eq!(listed(&get("").await), [id(0), id(1), id(2), id(3)]);
    // `42` finds the number and the string alike.
    assert_eq!(listed(&get("?where=%24.customer.id%3D42").await), [id(0), id(2)]);
    assert_eq!(listed(&get("?where=%24.sku%3D%22B-2%22").await), [id(1)]);
    assert_eq!(listed(&get("?where=%40tenant%3Dacme").await), [id(0)]);
    assert_eq!(listed(&get("?where=%24.customer.id%3D42&where=%40tenant%3Dacme").await), [id(0)]);
    assert_eq!(listed(&get("?text=widget").await), [id(3)]);
    assert_eq!(listed(&get("?state=ready&priority=standard&limit=2").await), [id(0), id(1)]);
    let page = get("?limit=3").await;
    assert_eq!(page["next"].as_str(), Some(id(2).as_str()));
    for bad in ["?where=customer.id", "?state=sleeping", "?since=yesterday", "?limit=x", "?nope=1"]
    {
        let (st, v) = s.call("GET", &format!("/v1/queues/orders/jobs{bad}"), None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (st, v) = s.call("GET", "/v1/queues/nope/jobs", None).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "queue_not_found"));

    // Lease the first job: a filter that matches it leaves it to its worker.
    let (_, got) = s.call("POST", "/v1/queues/orders/receive", Some(json!({}))).await;
    let receipt = got["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    let by_filter = json!({"filter": {"where": ["$.customer.id=42"]}, "dry_run": true});
    let (_, dry) = s.call("POST", "/v1/queues/orders/jobs/delete", Some(by_filter)).await;
    assert_eq!((dry["deleted"].as_u64(), dry["dry_run"].as_bool()), (Some(1), Some(true)), "{dry}");
    assert_eq!(dry["skipped"][0]["reason"], "leased");
    assert_eq!(listed(&get("").await).len(), 4, "a dry run deletes nothing");
    let by_ids = json!({"ids": [id(1), id(1), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]});
    let (_, del) = s.call("POST", "/v1/queues/orders/jobs/delete", Some(by_ids)).await;
    assert_eq!(del["deleted"].as_u64(), Some(1), "{del}");
    assert_eq!(del["skipped"][0]["reason"], "not_found");
    assert_eq!(listed(&get("").await), [id(0), id(2), id(3)]);

    // The leased job fails into the dead-letter queue; another dies with the same signature.
    let fail = |r: String, n: u32| json!({"receipt": r, "error": {"type": "PaymentDeclined", "message": format!("card {n} declined")}});
    let (st, v) = s.call("POST", "/v1/fail", Some(fail(receipt, 1111))).await;
    assert!(st.is_success(), "{v}");
    let (_, got) = s.call("POST", "/v1/queues/orders/receive", Some(json!({}))).await;
    let r2 = got["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    s.call("POST", "/v1/fail", Some(fail(r2, 2222))).await;
    let (_, groups) = s.call("GET", "/v1/queues/orders-dlq/dead/groups", None).await;
    let g = &groups["groups"][0];
    assert_eq!(g["signature"], "PaymentDeclined: card <n> declined", "{groups}");
    assert_eq!((g["count"].as_u64(), g["source_queues"][0].as_str()), (Some(2), Some("orders")));

    // Repair the first dead job's body: preview, then redrive; the copy replaces it.
    let patch = json!([{"op": "replace", "path": "/sku", "value": "A-9"}]);
    let path = format!("/v1/jobs/{}/redrive", id(0));
    let (st, pre) = s.call("POST", &path, Some(json!({"patch": patch, "dry_run": true}))).await;
    assert_eq!(st, StatusCode::OK, "{pre}");
    let body: Value = serde_json::from_str(pre["body"].as_str().unwrap()).unwrap();
    assert_eq!((body["sku"].as_str(), pre["queue"].as_str()), (Some("A-9"), Some("orders")));
    let (st, done) = s.call("POST", &path, Some(json!({"patch": patch}))).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let new_id = done["id"].as_str().unwrap();
    assert_ne!(new_id, id(0));
    let (_, copy) = s.call("GET", &format!("/v1/jobs/{new_id}"), None).await;
    assert_eq!(copy["attributes"]["redrive:patched_from"].as_str(), Some(id(0).as_str()));
    let (st, _) = s.call("GET", &format!("/v1/jobs/{}", id(0)), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the dead original is gone");
    let bad = json!({"patch": [{"op": "replace", "path": "/missing/x", "value": 1}]});
    let other_dead = format!("/v1/jobs/{}/redrive", id(2));
    let (st, v) = s.call("POST", &other_dead, Some(bad)).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "invalid_parameter"), "{v}");
    let (st, v) = s.call("POST", &format!("/v1/jobs/{new_id}/redrive"), Some(json!({}))).await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "invalid_parameter"), "not dead: {v}");

    // Pause: nothing goes out, the queue says so; resume: the job goes out.
    let (st, q) = s.call("POST", "/v1/queues/orders/pause", None).await;
    assert_eq!((st, q["config"]["paused"].as_bool()), (StatusCode::OK, Some(true)), "{q}");
    let (_, got) = s.call("POST", "/v1/queues/orders/receive", Some(json!({}))).await;
    assert!(got["jobs"].as_array().unwrap().is_empty(), "{got}");
    let (_, q) = s.call("POST", "/v1/queues/orders/resume", None).await;
    assert_eq!(q["config"]["paused"].as_bool(), Some(false));
    let (_, got) = s.call("POST", "/v1/queues/orders/receive", Some(json!({}))).await;
    assert_eq!(got["jobs"].as_array().unwrap().len(), 1, "{got}");

    // Without a patch the dead job itself goes back, whatever its body.
    s.queue("misc", json!({"max_attempts": 1})).await;
    let (_, sent) =
        s.call("POST", "/v1/queues/misc/jobs", Some(json!({"jobs": [{"body": "plain"}]}))).await;
    let plain = sent["jobs"][0]["id"].as_str().unwrap().to_owned();
    let (_, got) = s.call("POST", "/v1/queues/misc/receive", Some(json!({}))).await;
    let r = got["jobs"][0]["receipt"].as_str().unwrap().to_owned();
    s.call("POST", "/v1/fail", Some(fail(r, 1))).await;
    let (st, back) = s.call("POST", &format!("/v1/jobs/{plain}/redrive"), Some(json!({}))).await;
    assert_eq!(
        (st, back["id"].as_str(), back["body"].as_str()),
        (StatusCode::OK, Some(plain.as_str()), Some("plain")),
        "{back}"
    );
    let (_, job) = s.call("GET", &format!("/v1/jobs/{plain}"), None).await;
    assert_eq!(
        (job["queue"].as_str(), job["redrive_count"].as_u64()),
        (Some("misc"), Some(1)),
        "{job}"
    );
    // A completed job: the dry run answers what the delete answers.
    let (_, got) = s.call("POST", "/v1/queues/misc/receive", Some(json!({}))).await;
    s.call("POST", "/v1/ack", Some(json!({"receipts": [got["jobs"][0]["receipt"]]}))).await;
    let completed = json!({"filter": {"state": ["completed"]}, "dry_run": true});
    let (_, dry) = s.call("POST", "/v1/queues/misc/jobs/delete", Some(completed)).await;
    let (_, real) = s
        .call(
            "POST",
            "/v1/queues/misc/jobs/delete",
            Some(json!({"filter": {"state": ["completed"]}})),
        )
        .await;
    assert_eq!(
        (dry["deleted"].as_u64(), real["deleted"].as_u64()),
        (Some(0), Some(0)),
        "{dry} {real}"
    );
    assert_eq!(dry["skipped"], real["skipped"]);
    // A queue whose dead-letter queue is gone can still be paused.
    let (st, _) = s.call("DELETE", "/v1/queues/misc-dlq", None).await;
    assert!(st.is_success());
    let (st, q) = s.call("POST", "/v1/queues/misc/pause", None).await;
    assert_eq!((st, q["config"]["paused"].as_bool()), (StatusCode::OK, Some(true)), "{q}");
    let (st, v) =
        s.call("POST", "/v1/queues/nope/jobs/delete", Some(json!({"ids": [plain]}))).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "queue_not_found"));

    let (st, h) = s.call("GET", "/v1/history?window=1h", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["step_ms"].as_u64().unwrap() > 0 && h["points"].is_array(), "{h}");
    let (st, _) = s.call("GET", "/v1/history?window=1y", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, me) = s.call("GET", "/v1/whoami", None).await;
    assert_eq!(me, json!({"auth": false}));
}

/// One `#[tokio::test]` per case, each over a fresh server from `$start` (an async fn returning
/// a [`Server`]).
macro_rules! http_api_cases {
    ($start:path) => {
        http_api_cases!(@tests $start;
            long_poll_returns_as_soon_as_a_job_is_enqueued,
            a_long_poll_whose_client_went_away_leases_nothing,
            multi_queue_receive_prefers_queues_in_order,
            expired_lease_redelivers_and_stale_receipts_get_409,
            a_receive_acks_the_receipts_it_carries,
            failures_reach_the_dead_letter_queue_and_redrive_brings_them_back,
            idempotent_enqueue_over_http,
            bad_input_gets_clear_errors_and_writes_nothing,
            metrics_and_openapi_are_served,
            priorities_receive_limits_non_retryable_and_backoff_over_http,
            openapi_lists_every_error_code_the_server_can_answer,
            the_job_browser_searches_payloads_and_acts_on_selections
        );
    };
    (@tests $start:path; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let s = $start().await;
                cases::$name(&s).await;
            }
        )*
    };
}
