//! `/v1/keys` (create, list, revoke API keys) and `/v1/audit` (the audit log): `admin` only,
//! checked by `auth::require` before these run.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::Router;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{Broker, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit;
use crate::auth::{self, Caller, KeyInfo};
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::reply::Json;
use crate::Shared;

pub fn routes<B: Broker>() -> Router<Shared<B>> {
    Router::new()
        .route("/v1/keys", get(list::<B>).post(create::<B>))
        .route("/v1/keys/{id}", delete(revoke::<B>))
        .route("/v1/audit", get(audit_log::<B>))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    allow: Vec<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    rate_per_s: Option<u32>,
}

/// The one time a key's secret is shown.
#[derive(Serialize)]
pub struct Created {
    id: String,
    secret: String,
    /// `id.secret`, for `Authorization: Bearer` and `REDRIVE_TOKEN`.
    token: String,
    #[serde(flatten)]
    key: KeyInfo,
}

async fn create<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    if b.rate_per_s == Some(0) {
        return Err(Error::invalid("rate_per_s", "at least 1 (leave it out for no limit)").into());
    }
    if b.expires_at.is_some_and(|t| t <= SystemClock.now_ms()) {
        return Err(Error::invalid("expires_at", "already past").into());
    }
    let new = auth::new_key(&b.name, &b.allow, b.expires_at, b.rate_per_s)?;
    auth::store(&s.broker, &new.record).await?;
    audit::record(&s, &caller, "key.create", &new.record.id, json!({"allow": b.allow})).await;
    let token = format!("{}.{}", new.record.id, new.secret);
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: new.record.id.clone(),
            secret: new.secret,
            token,
            key: new.record.info(),
        }),
    ))
}

async fn list<B: Broker>(State(s): State<Shared<B>>) -> ApiResult<Json<Value>> {
    let docs = s.broker.list_docs(redrive_core::broker::DocKind::ApiKey).await?;
    let keys: Vec<KeyInfo> = docs
        .iter()
        .filter_map(|(_, v)| serde_json::from_str::<auth::KeyRecord>(v).ok())
        .map(|k| k.info())
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyInfo>> {
    let mut key = auth::load(&s.broker, &id)
        .await?
        .ok_or_else(|| Error::invalid("id", format!("no key {id:?}")))?;
    if key.revoked_at.is_none() {
        key.revoked_at = Some(SystemClock.now_ms());
        auth::store(&s.broker, &key).await?;
        audit::record(&s, &caller, "key.revoke", &id, Value::Null).await;
    }
    Ok(Json(key.info()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit_log<B: Broker>(
    State(s): State<Shared<B>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(json!({ "entries": audit::recent(&s.broker, limit).await? })))
}
