//! Queue routes: create or update, list, show, delete, stats.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use redrive_core::broker::{QueueInfo, QueueStats};
use redrive_core::{Broker, QueuePatch};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::reply::Json;
use crate::Shared;

pub async fn put<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
    JsonBody(patch): JsonBody<QueuePatch>,
) -> ApiResult<(StatusCode, Json<QueueInfo>)> {
    let detail = serde_json::to_value(&patch).unwrap_or_default();
    let (info, created) = s.broker.put_queue(q.clone(), patch).await?;
    let action = if created { "queue.create" } else { "queue.update" };
    crate::audit::record(&s, &caller, action, &q, detail).await;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(info)))
}

pub async fn list<B: Broker>(State(s): State<Shared<B>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "queues": s.broker.list_queues().await? })))
}

pub async fn show<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
) -> ApiResult<Json<QueueInfo>> {
    Ok(Json(s.broker.get_queue(q).await?))
}

pub async fn delete<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
) -> ApiResult<StatusCode> {
    s.broker.delete_queue(q.clone()).await?;
    crate::audit::record(&s, &caller, "queue.delete", &q, Value::Null).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn stats<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
) -> ApiResult<Json<QueueStats>> {
    Ok(Json(s.broker.get_queue(q).await?.stats))
}
