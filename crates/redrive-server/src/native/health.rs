//! `/healthz` (the process answers) and `/readyz` (the store accepts writes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use redrive_core::Broker;
use serde_json::{json, Value};

use crate::Shared;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz<B: Broker>(State(s): State<Shared<B>>) -> (StatusCode, Json<Value>) {
    let h = s.broker.health();
    match h.poisoned {
        None => (StatusCode::OK, Json(json!({ "status": "ready", "durability": h.durability }))),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "poisoned", "error": p, "durability": h.durability })),
        ),
    }
}
