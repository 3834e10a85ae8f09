//! The native JSON API under `/v1` (DESIGN §3a; shapes in docs/api.md and /v1/openapi.json).

pub mod dead;
pub mod health;
pub mod jobs;
pub mod queues;

use axum::routing::{get, post, put};
use axum::Router;

use crate::Shared;

const OPENAPI: &str = include_str!("../openapi.json");

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{q}", put(queues::put).get(queues::show).delete(queues::delete))
        .route("/v1/queues/{q}/stats", get(queues::stats))
        .route("/v1/queues/{q}/jobs", post(jobs::enqueue))
        .route("/v1/queues/{q}/receive", post(jobs::receive_one))
        .route("/v1/receive", post(jobs::receive_many))
        .route("/v1/ack", post(jobs::ack))
        .route("/v1/fail", post(jobs::fail))
        .route("/v1/extend", post(jobs::extend))
        .route("/v1/jobs/{id}", get(jobs::show).delete(jobs::delete))
        .route("/v1/queues/{q}/dead", get(dead::list))
        .route("/v1/queues/{q}/redrive", post(dead::redrive))
        .route("/v1/queues/{q}/purge", post(dead::purge))
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
}
