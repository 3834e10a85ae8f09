//! Job routes: enqueue, receive (one queue or several), ack, fail, extend, status by id.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use redrive_core::broker::{check_acks, check_batch};
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
use crate::reply::Json;
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

/// A receive's reply: the jobs, and the ack results when the request carried receipts.
#[derive(Serialize)]
pub struct ReceiveReply {
    jobs: Vec<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acked: Option<Vec<AckResult>>,
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
    /// Receipts to ack before receiving: a worker's finished jobs, settled in the same request
    /// that asks for more (and, where the store can, in the same commit).
    ack: Option<Vec<String>>,
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
    caller: Caller,
    client: Client,
    headers: HeaderMap,
    JsonBody(mut b): JsonBody<ReceiveBody>,
) -> ApiResult<Json<ReceiveReply>> {
    if !b.queues.is_empty() {
        return Err(Error::invalid(
            "queues",
            "the queue is in the path; use /v1/receive for several",
        )
        .into());
    }
    let ack = b.ack.take();
    receive(&s, &caller, &client, &headers, ack, b.into_request(vec![q])).await
}

pub async fn receive_many<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    client: Client,
    headers: HeaderMap,
    JsonBody(mut b): JsonBody<ReceiveBody>,
) -> ApiResult<Json<ReceiveReply>> {
    let queues = std::mem::take(&mut b.queues);
    for q in &queues {
        caller.allow(Action::Receive, q)?;
    }
    let ack = b.ack.take();
    receive(&s, &caller, &client, &headers, ack, b.into_request(queues)).await
}

/// Acks what `ack` names (if anything), then receives, and hands out signed receipts (the key
/// is read first: a lease is never taken for a reply that cannot be made). One that may wait (a
/// `wait_ms` above 0, or the queue's default) is a long poll: counted against its caller and
/// abandoned if the client goes away (the acks it carried stand once made).
async fn receive<B: Broker>(
    s: &Shared<B>,
    caller: &Caller,
    client: &Client,
    headers: &HeaderMap,
    ack: Option<Vec<String>>,
    req: ReceiveRequest,
) -> ApiResult<Json<ReceiveReply>> {
    let key = s.receipts().await?;
    let queues = req.queues.join(",");
    let poll = req.wait_ms != Some(0);
    let (acked, mut jobs) = match ack {
        None if poll => (None, s.overload.long_poll(client, s.broker.receive(req)).await?),
        None => (None, s.broker.receive(req).await?),
        Some(receipts) => {
            req.check()?;
            check_acks(receipts.len())?;
            let mut settling = Settling::open(s, caller, &receipts).await?;
            let call = s.broker.ack_receive(std::mem::take(&mut settling.valid), req);
            let (settled, jobs) =
                if poll { s.overload.long_poll(client, call).await? } else { call.await? };
            (Some(settling.answers(s, settled)?), jobs)
        }
    };
    for d in &mut jobs {
        d.receipt = key.seal(&d.queue, &d.receipt);
    }
    s.traces.receive(&queues, traces::from_headers(headers).as_ref(), &jobs);
    Ok(Json(ReceiveReply { jobs, acked }))
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
    let mut settling = Settling::open(&s, &caller, &b.receipts).await?;
    let valid = std::mem::take(&mut settling.valid);
    let settled = if valid.is_empty() { Vec::new() } else { s.broker.ack(valid).await? };
    Ok(Json(AckReply { results: settling.answers(&s, settled)? }))
}

/// Receipts a client sent to ack. Those whose tag does not verify are unknown, as any malformed
/// receipt; the others go to the store in one batch, once the caller may settle jobs of each
/// one's queue.
struct Settling {
    /// The store's receipts of those that verify, in order (taken to send them).
    valid: Vec<String>,
    /// Per receipt sent, whether it verified.
    verified: Vec<bool>,
    /// The jobs `valid` names as they were before the ack, for their spans (traces on only).
    traced: Vec<Option<JobInfo>>,
}

impl Settling {
    async fn open<B: Broker>(
        s: &Shared<B>,
        caller: &Caller,
        receipts: &[String],
    ) -> ApiResult<Self> {
        let key = s.receipts().await?;
        let opened: Vec<Option<Opened>> = receipts.iter().map(|r| key.open(r)).collect();
        for o in opened.iter().flatten() {
            caller.allow(Action::Receive, o.queue)?;
        }
        let valid: Vec<String> = opened.iter().flatten().map(|o| o.inner.to_string()).collect();
        let traced = traces::jobs_of(s, &valid).await;
        Ok(Settling { valid, verified: opened.iter().map(Option::is_some).collect(), traced })
    }

    /// One result per receipt sent: the store's for those that verified, in order.
    fn answers<B: Broker>(
        self,
        s: &Shared<B>,
        settled: Vec<AckResult>,
    ) -> Result<Vec<AckResult>, Error> {
        if settled.len() != self.verified.iter().filter(|v| **v).count() {
            return Err(Error::Internal("ack lost an answer".into()));
        }
        for (job, r) in self.traced.iter().zip(&settled) {
            if let (Some(job), AckResult::Ok) = (job, r) {
                s.traces.settle("ack", job, None);
            }
        }
        let mut settled = settled.into_iter();
        let results = self.verified.iter().map(|&v| match v {
            true => settled.next().expect("as many answers as valid receipts"),
            false => AckResult::Unknown,
        });
        Ok(results.collect())
    }
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
