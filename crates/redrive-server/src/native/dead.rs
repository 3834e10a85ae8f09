//! Dead-letter routes: list with filters, redrive, purge.

use axum::extract::{Path, Query, State};
use redrive_core::broker::{DeadFilter, JobPage, RedriveRequest, RedriveResult};
use redrive_core::model::JobId;
use redrive_core::time::from_rfc3339;
use redrive_core::{Broker, Error};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::reply::Json;
use crate::Shared;

const DEAD_PAGE_DEFAULT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    error_type: Option<String>,
    signature: Option<String>,
    source_queue: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

fn time(field: &'static str, v: Option<String>) -> Result<Option<u64>, ApiError> {
    v.map(|s| {
        from_rfc3339(&s).ok_or_else(|| ApiError(Error::invalid(field, "expected an RFC 3339 time")))
    })
    .transpose()
}

pub async fn list<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<JobPage>> {
    let Query(d) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    let filter = DeadFilter {
        error_type: d.error_type,
        signature: d.signature,
        source_queue: d.source_queue,
        since: time("since", d.since)?,
        until: time("until", d.until)?,
    };
    let after = d
        .after
        .map(|a| a.parse::<JobId>().map_err(|()| Error::invalid("after", "a job id")))
        .transpose()?;
    Ok(Json(s.broker.list_dead(q, filter, after, d.limit.unwrap_or(DEAD_PAGE_DEFAULT)).await?))
}

pub async fn redrive<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
    JsonBody(b): JsonBody<RedriveRequest>,
) -> ApiResult<Json<RedriveResult>> {
    if let Some(to) = &b.to {
        caller.allow(Action::Send, to)?;
    }
    let (dry_run, b_to) = (b.dry_run, b.to.clone());
    let r = s.broker.redrive(q.clone(), b).await?;
    if !dry_run {
        crate::traces::redriven(&s, &q, &r.ids).await;
        let detail = json!({"moved": r.moved, "to": b_to});
        crate::audit::record(&s, &caller, "queue.redrive", &q, detail).await;
    }
    Ok(Json(r))
}

pub async fn purge<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
) -> ApiResult<Json<Value>> {
    let purged = s.broker.purge(q.clone()).await?;
    crate::audit::record(&s, &caller, "queue.purge", &q, json!({"purged": purged})).await;
    Ok(Json(json!({ "purged": purged })))
}
