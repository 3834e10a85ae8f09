//! Job routes: enqueue, receive (one queue or several), ack, fail, extend, status by id.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use redrive_core::broker::check_batch;
use redrive_core::broker::{
    AckResult, Delivery, Enqueued, FailRequest, FailResult, JobInfo, NewJob, ReceiveRequest,
};
use redrive_core::model::{ErrorInfo, JobId};
use redrive_core::time::to_rfc3339;
use redrive_core::{limits, Broker, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{Action, Caller};
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::overload::Client;
use crate::receipts::Opened;
use crate::{traces, Shared};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    jobs: Vec<NewJob>,
}

/// `{"jobs": [...]}`, serialized straight from the typed list (no intermediate JSON tree: this
/// is the hot path).
#[derive(Serialize)]
pub struct JobsReply<T> {
    jobs: Vec<T>,
}

#[derive(Serialize)]
pub struct AckReply {
    results: Vec<AckResult>,
}

pub async fn enqueue<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
    headers: HeaderMap,
    JsonBody(mut b): JsonBody<EnqueueBody>,
) -> ApiResult<Json<JobsReply<Enqueued>>> {
    let parent = traces::from_headers(&headers);
    let span = s.traces.creation(&q, parent.as_ref(), &mut b.jobs);
    let r = s.broker.enqueue(q, b.jobs).await;
    traces::Traces::sent(span, &r);
    Ok(Json(JobsReply { jobs: r? }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    #[serde(default)]
    queues: Vec<String>,
    max: Option<u32>,
    wait_ms: Option<u64>,
    lease_ms: Option<u64>,
    worker_id: Option<String>,
}

impl ReceiveBody {
    fn into_request(self, queues: Vec<String>) -> ReceiveRequest {
        ReceiveRequest {
            queues,
            max: self.max.unwrap_or(1),
            wait_ms: self.wait_ms,
            lease_ms: self.lease_ms,
            worker_id: self.worker_id,
        }
    }
}

pub async fn receive_one<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
    client: Client,
    headers: HeaderMap,
    JsonBody(b): JsonBody<ReceiveBody>,
) -> ApiResult<Json<JobsReply<Delivery>>> {
    if !b.queues.is_empty() {
        return Err(Error::invalid(
            "queues",
            "the queue is in the path; use /v1/receive for several",
        )
        .into());
    }
    receive(&s, &client, &headers, b.into_request(vec![q])).await
}

pub async fn receive_many<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    client: Client,
    headers: HeaderMap,
    JsonBody(mut b): JsonBody<ReceiveBody>,
) -> ApiResult<Json<JobsReply<Delivery>>> {
    let queues = std::mem::take(&mut b.queues);
    for q in &queues {
        caller.allow(Action::Receive, q)?;
    }
    receive(&s, &client, &headers, b.into_request(queues)).await
}

/// Receives, and hands out signed receipts (the key is read first: a lease is never taken for
/// a reply that cannot be made). One that may wait (a `wait_ms` above 0, or the queue's default)
/// is a long poll: counted against its caller and abandoned if the client goes away.
async fn receive<B: Broker>(
    s: &Shared<B>,
    client: &Client,
    headers: &HeaderMap,
    req: ReceiveRequest,
) -> ApiResult<Json<JobsReply<Delivery>>> {
    let key = s.receipts().await?;
    let queues = req.queues.join(",");
    let mut jobs = if req.wait_ms == Some(0) {
        s.broker.receive(req).await?
    } else {
        s.overload.long_poll(client, s.broker.receive(req)).await?
    };
    for d in &mut jobs {
        d.receipt = key.seal(&d.queue, &d.receipt);
    }
    s.traces.receive(&queues, traces::from_headers(headers).as_ref(), &jobs);
    Ok(Json(JobsReply { jobs }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    receipts: Vec<String>,
}

pub async fn ack<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    JsonBody(b): JsonBody<AckBody>,
) -> ApiResult<Json<AckReply>> {
    check_batch(b.receipts.len(), limits::ACK_BATCH_COUNT_MAX)?;
    let key = s.receipts().await?;
    // Receipts whose tag does not verify are unknown, as any malformed receipt; the others go
    // to the store in one batch, once the caller may settle jobs of each one's queue.
    let opened: Vec<Option<Opened>> = b.receipts.iter().map(|r| key.open(r)).collect();
    for o in opened.iter().flatten() {
        caller.allow(Action::Receive, o.queue)?;
    }
    let valid: Vec<String> = opened.iter().flatten().map(|o| o.inner.to_string()).collect();
    let traced = traces::jobs_of(&s, &valid).await;
    let mut settled = if valid.is_empty() { Vec::new() } else { s.broker.ack(valid).await? };
    for (job, r) in traced.iter().zip(&settled) {
        if let (Some(job), AckResult::Ok) = (job, r) {
            s.traces.settle("ack", job, None);
        }
    }
    settled.reverse();
    let results = opened
        .iter()
        .map(|o| match o {
            Some(_) => settled.pop().ok_or_else(|| Error::Internal("ack lost an answer".into())),
            None => Ok(AckResult::Unknown),
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(AckReply { results }))
}

/// The store's receipt in a client's, if the caller may settle jobs of its queue.
async fn unseal<B: Broker>(s: &Shared<B>, caller: &Caller, receipt: &str) -> ApiResult<String> {
    let opened = s.receipts().await?.unseal(receipt)?;
    caller.allow(Action::Receive, opened.queue)?;
    Ok(opened.inner.to_string())
}

/// `/v1/fail`'s body: [`FailRequest`], with unknown fields refused inside `error` too. (The core
/// `ErrorInfo` is also what clients read back in attempt logs, where fields added later must not
/// break them, so it stays lenient.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    receipt: String,
    error: FailError,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    non_retryable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailError {
    #[serde(rename = "type")]
    kind: String,
    message: String,
    #[serde(default)]
    detail: Option<String>,
}

pub async fn fail<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    JsonBody(b): JsonBody<FailBody>,
) -> ApiResult<Json<FailResult>> {
    let receipt = unseal(&s, &caller, &b.receipt).await?;
    let FailError { kind, message, detail } = b.error;
    let traced = traces::jobs_of(&s, std::slice::from_ref(&receipt)).await.pop().flatten();
    let error = (kind.clone(), message.clone());
    let req = FailRequest {
        receipt,
        error: ErrorInfo { kind, message, detail },
        retry_after_ms: b.retry_after_ms,
        non_retryable: b.non_retryable,
    };
    let r = s.broker.fail(req).await?;
    if let Some(job) = traced {
        let op = if r.dead_reason.is_some() { "dead_letter" } else { "nack" };
        s.traces.settle(op, &job, Some(error));
    }
    Ok(Json(r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    receipt: String,
    lease_ms: u64,
}

pub async fn extend<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    JsonBody(b): JsonBody<ExtendBody>,
) -> ApiResult<Json<Value>> {
    let receipt = unseal(&s, &caller, &b.receipt).await?;
    let at = s.broker.extend(receipt, b.lease_ms).await?;
    Ok(Json(json!({ "lease_expires_at": to_rfc3339(at) })))
}

pub async fn show<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobInfo>> {
    let id: JobId = id.parse().map_err(|()| Error::invalid("id", "job ids are UUIDs"))?;
    let job = s.broker.get_job(id).await?;
    caller.allow(Action::Read, &job.queue)?;
    Ok(Json(job))
}

pub async fn delete<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    let id: JobId = id.parse().map_err(|()| Error::invalid("id", "job ids are UUIDs"))?;
    let queue = s.broker.get_job(id).await?.queue;
    caller.allow(Action::Manage, &queue)?;
    s.broker.delete_job(id).await?;
    crate::audit::record(&s, &caller, "job.delete", &id.to_string(), Value::Null).await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
