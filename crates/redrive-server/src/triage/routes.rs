//! The HTTP handlers of `/v1/triage/*`: policies per queue, and proposals stored, listed,
//! approved (which executes them) and rejected. Posted bodies are checked here, at the door;
//! the store and execution modules take only checked values.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use redrive_core::time::{to_rfc3339, Clock, SystemClock};
use redrive_core::triage::{
    DecideRequest, NewProposal, Policy, PolicyList, Proposal, ProposalList, ProposalResult, Status,
};
use redrive_core::{limits, Broker, Error};
use serde::Deserialize;

use super::store::load;
use super::{execute, patch};
use crate::audit;
use crate::auth::{Action, Caller};
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::reply::Json;
use crate::Shared;

pub fn routes<B: Broker>() -> Router<Shared<B>> {
    Router::new()
        .route("/v1/triage/policies", get(list_policies::<B>))
        .route(
            "/v1/triage/policies/{queue}",
            get(get_policy::<B>).put(put_policy::<B>).delete(delete_policy::<B>),
        )
        .route("/v1/triage/proposals", post(create::<B>).get(list::<B>))
        .route("/v1/triage/proposals/{id}", get(show::<B>))
        .route("/v1/triage/proposals/{id}/approve", post(approve::<B>))
        .route("/v1/triage/proposals/{id}/reject", post(reject::<B>))
}

async fn list_policies<B: Broker>(State(s): State<Shared<B>>) -> ApiResult<Json<PolicyList>> {
    load(&s).await?;
    Ok(Json(PolicyList { policies: s.policies.all() }))
}

async fn get_policy<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
) -> ApiResult<Json<Policy>> {
    load(&s).await?;
    Ok(Json(s.policies.get(&q).ok_or(Error::PolicyNotFound(q))?))
}

async fn put_policy<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
    JsonBody(p): JsonBody<Policy>,
) -> ApiResult<Json<Policy>> {
    if !redrive_core::model::valid_queue_name(&q) {
        return Err(Error::InvalidQueueName(q).into());
    }
    if !(0.0..=1.0).contains(&p.min_confidence) {
        return Err(Error::invalid("min_confidence", "from 0 to 1").into());
    }
    s.policies.put(&s.broker, q.clone(), Some(p.clone())).await?;
    let detail = serde_json::to_value(&p).unwrap_or_default();
    audit::record(&s, &caller, "triage.policy.put", &q, detail).await;
    Ok(Json(p))
}

async fn delete_policy<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
) -> ApiResult<StatusCode> {
    load(&s).await?;
    if s.policies.get(&q).is_none() {
        return Err(Error::PolicyNotFound(q).into());
    }
    s.policies.put(&s.broker, q.clone(), None).await?;
    audit::record(&s, &caller, "triage.policy.delete", &q, serde_json::Value::Null).await;
    Ok(StatusCode::NO_CONTENT)
}

fn now() -> String {
    to_rfc3339(SystemClock.now_ms())
}

async fn create<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    JsonBody(n): JsonBody<NewProposal>,
) -> ApiResult<(StatusCode, Json<Proposal>)> {
    caller.allow(Action::Triage, &n.queue)?;
    caller.allow(Action::Triage, &n.source_queue)?;
    if n.job_ids.is_empty() {
        return Err(Error::invalid("job_ids", "a proposal names at least one job").into());
    }
    if let Some(p) = &n.decision.patch {
        patch::check_shape(p).map_err(|e| Error::invalid("decision.patch", e.to_string()))?;
    }
    if n.job_ids.len() > limits::TRIAGE_PROPOSAL_JOBS_COUNT_MAX {
        let (count, max) = (n.job_ids.len(), limits::TRIAGE_PROPOSAL_JOBS_COUNT_MAX);
        return Err(Error::BatchTooLarge { count, max }.into());
    }
    let size = serde_json::to_vec(&n).expect("serializes").len();
    if size > limits::TRIAGE_PROPOSAL_POSTED_BYTES_MAX {
        let max = limits::TRIAGE_PROPOSAL_POSTED_BYTES_MAX;
        let why = format!("{size} bytes is over TRIAGE_PROPOSAL_POSTED_BYTES_MAX ({max})");
        return Err(Error::invalid("proposal", why).into());
    }
    if !(0.0..=1.0).contains(&n.decision.confidence) {
        return Err(Error::invalid("decision.confidence", "from 0 to 1").into());
    }
    let p = Proposal {
        id: uuid::Uuid::now_v7().to_string(),
        created_at: now(),
        proposed: n,
        status: Status::Pending,
        decided_by: None,
        decided_why: None,
        decided_at: None,
        result: None,
    };
    // The store bounds the count; only at the bound does the oldest decided one make room.
    let stored = match s.proposals.put(&s.broker, p.clone()).await {
        Err(Error::LimitExceeded { .. }) => {
            load(&s).await?;
            s.proposals.make_room(&s.broker).await?;
            s.proposals.put(&s.broker, p).await?
        }
        stored => stored?,
    };
    Ok((StatusCode::CREATED, Json(stored)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<Status>,
}

async fn list<B: Broker>(
    State(s): State<Shared<B>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<ProposalList>> {
    let Query(q) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    load(&s).await?;
    Ok(Json(ProposalList { proposals: s.proposals.list(q.status) }))
}

async fn show<B: Broker>(
    State(s): State<Shared<B>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Proposal>> {
    load(&s).await?;
    Ok(Json(s.proposals.get(&id)?))
}

async fn reject<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(v): JsonBody<DecideRequest>,
) -> ApiResult<Json<Proposal>> {
    if v.why.as_deref().is_none_or(|w| w.trim().is_empty()) {
        return Err(Error::invalid("why", "a rejection says why").into());
    }
    let by = decider(&caller, &v)?;
    load(&s).await?;
    allow_decision(&s, &caller, &id)?;
    let mut p = s.proposals.claim(&s.broker, &id, &by, Status::Rejected).await?;
    p.decided_by = Some(by);
    p.decided_why = v.why;
    p.decided_at = Some(now());
    audit::record(&s, &caller, "triage.proposal.reject", &id, serde_json::Value::Null).await;
    Ok(Json(s.proposals.put(&s.broker, p).await?))
}

/// Who a decision is recorded as: the key that made it; only on a server without
/// authentication, the name the request gives (`anonymous` if none).
fn decider(caller: &Caller, v: &DecideRequest) -> Result<String, Error> {
    Ok(match caller {
        Caller::Key(k) => format!("key {} ({})", k.id, k.name),
        Caller::Anonymous if v.by.trim().is_empty() => "anonymous".to_string(),
        Caller::Anonymous => v.by.clone(),
    })
}

/// Deciding a proposal acts on its queues: it needs `triage` on both.
fn allow_decision<B: Broker>(s: &Shared<B>, caller: &Caller, id: &str) -> Result<(), Error> {
    let p = s.proposals.get(id)?;
    caller.allow(Action::Triage, &p.proposed.queue)?;
    caller.allow(Action::Triage, &p.proposed.source_queue)
}

async fn approve<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(v): JsonBody<DecideRequest>,
) -> ApiResult<Json<Proposal>> {
    let by = decider(&caller, &v)?;
    load(&s).await?;
    allow_decision(&s, &caller, &id)?;
    let mut p = s.proposals.claim(&s.broker, &id, &by, Status::Approved).await?;
    let outcome = execute::execute(&s, &p).await;
    p.status = if outcome.is_ok() { Status::Approved } else { Status::Failed };
    p.result = Some(outcome.unwrap_or_else(|e| ProposalResult::Error { error: e.to_string() }));
    p.decided_by = Some(by);
    p.decided_why = v.why;
    p.decided_at = Some(now());
    let detail = serde_json::json!({"status": p.status, "result": p.result});
    audit::record(&s, &caller, "triage.proposal.approve", &id, detail).await;
    Ok(Json(s.proposals.put(&s.broker, p).await?))
}
