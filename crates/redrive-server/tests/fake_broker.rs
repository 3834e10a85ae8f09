//! The server over a store that is not the embedded engine: a fake `Broker` that is down for
//! maintenance. Both doors must answer its errors in their own format (native envelope, SQS
//! JSON and Query) with the status and `Retry-After` of the one wire table, and nothing may
//! reach for engine internals.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use redrive_core::broker::*;
use redrive_core::metrics::StoreSnapshot;
use redrive_core::model::JobId;
use redrive_core::{Broker, Error, QueuePatch, Result};
use redrive_server::sqs::SqsSettings;
use redrive_server::AppState;
use tower::ServiceExt;

/// Every operation fails as a store that cannot take requests right now would.
struct Down;

fn down<T>() -> Result<T> {
    Err(Error::StoreUnavailable("down for maintenance".into()))
}

impl Broker for Down {
    async fn put_queue(&self, _: String, _: QueuePatch) -> Result<(QueueInfo, bool)> {
        down()
    }
    async fn get_queue(&self, _: String) -> Result<QueueInfo> {
        down()
    }
    async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        Ok(Vec::new())
    }
    async fn delete_queue(&self, _: String) -> Result<()> {
        down()
    }
    async fn enqueue(&self, _: String, _: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        down()
    }
    async fn receive(&self, _: ReceiveRequest) -> Result<Vec<Delivery>> {
        down()
    }
    async fn ack(&self, _: Vec<String>) -> Result<Vec<AckResult>> {
        down()
    }
    async fn fail(&self, _: FailRequest) -> Result<FailResult> {
        down()
    }
    async fn extend(&self, _: String, _: u64) -> Result<u64> {
        down()
    }
    async fn get_job(&self, _: JobId) -> Result<JobInfo> {
        down()
    }
    async fn list_dead(
        &self,
        _: String,
        _: DeadFilter,
        _: Option<JobId>,
        _: usize,
    ) -> Result<JobPage> {
        down()
    }
    async fn list_jobs(
        &self,
        _: String,
        _: JobFilter,
        _: Option<JobId>,
        _: usize,
    ) -> Result<JobPage> {
        down()
    }
    async fn redrive(&self, _: String, _: RedriveRequest) -> Result<RedriveResult> {
        down()
    }
    async fn purge(&self, _: String) -> Result<u64> {
        down()
    }
    async fn delete_job(&self, _: JobId) -> Result<()> {
        down()
    }
    async fn put_doc(&self, _: DocKind, _: String, _: Option<String>) -> Result<()> {
        down()
    }
    async fn put_doc_if(
        &self,
        _: DocKind,
        _: String,
        _: Option<String>,
        _: Option<String>,
    ) -> Result<bool> {
        down()
    }
    async fn get_doc(&self, _: DocKind, _: String) -> Result<Option<String>> {
        Ok(None)
    }
    async fn list_docs(&self, _: DocKind) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    async fn snapshot(&self) -> Result<StoreSnapshot> {
        down()
    }
    async fn drain(&self) -> Result<()> {
        Ok(())
    }
    fn health(&self) -> Health {
        Health { poisoned: None, durability: "fake".into() }
    }
}

async fn call(req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let state = Arc::new(AppState::new(Down, SqsSettings::default()));
    let resp = redrive_server::router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, retry, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_store_that_is_down_is_answered_in_each_doors_format() {
    let native = Request::post("/v1/queues/q/jobs")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"jobs":[{"body":"x"}]}"#))
        .unwrap();
    let (status, retry, body) = call(native).await;
    assert_eq!((status, retry.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "store_unavailable", "{body}");

    let json = Request::post("/")
        .header("x-amz-target", "AmazonSQS.SendMessage")
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(r#"{"QueueUrl":"http://h/000000000000/q","MessageBody":"x"}"#))
        .unwrap();
    let (status, retry, body) = call(json).await;
    assert_eq!((status, retry.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["__type"], "com.amazonaws.sqs#ServiceUnavailable", "{body}");

    let query = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "AWS4-HMAC-SHA256 (not checked without --auth)")
        .body(Body::from(
            "Action=SendMessage&QueueUrl=http%3A%2F%2Fh%2F000000000000%2Fq&MessageBody=x",
        ))
        .unwrap();
    let (status, _, body) = call(query).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");

    // What the store can answer, it answers: listing works while writes are refused.
    let (status, _, body) = call(Request::get("/v1/queues").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
