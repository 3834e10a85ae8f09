//! `/healthz` (the process answers) and `/readyz` (the store takes requests: not poisoned, and
//! its database, if it has one, answers).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use redrive_core::{limits, Broker, Error};
use serde_json::{json, Value};

use crate::reply::Json;
use crate::Shared;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz<B: Broker>(State(s): State<Shared<B>>) -> (StatusCode, Json<Value>) {
    let h = s.broker.health();
    let bound = Duration::from_millis(limits::READY_CHECK_MAX_MS);
    let ready = match tokio::time::timeout(bound, s.broker.ready()).await {
        Ok(r) => r,
        Err(_) => Err(Error::StoreUnavailable(format!(
            "the store did not answer within {} ms",
            limits::READY_CHECK_MAX_MS
        ))),
    };
    let (status, error) = match ready {
        Ok(()) => {
            return (StatusCode::OK, Json(json!({ "status": "ready", "durability": h.durability })))
        }
        Err(Error::Poisoned(p)) => ("poisoned", p),
        Err(Error::StoreUnavailable(reason)) => ("unavailable", reason),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            ("unavailable", "internal error".to_owned())
        }
    };
    let body = json!({ "status": status, "error": error, "durability": h.durability });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}
