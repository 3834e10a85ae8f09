//! The native JSON API under `/v1` (DESIGN §3a; shapes in docs/api.md and /v1/openapi.json).

pub mod browse;
pub mod dead;
pub mod health;
pub mod jobs;
pub mod queues;

use axum::routing::{get, post, put};
use axum::Router;

use crate::Shared;
use redrive_core::Broker;

const OPENAPI: &str = include_str!("../openapi.json");

pub fn routes<B: Broker>() -> Router<Shared<B>> {
    Router::new()
        .route("/v1/queues", get(queues::list::<B>))
        .route(
            "/v1/queues/{q}",
            put(queues::put::<B>).get(queues::show::<B>).delete(queues::delete::<B>),
        )
        .route("/v1/queues/{q}/stats", get(queues::stats::<B>))
        .route("/v1/queues/{q}/jobs", post(jobs::enqueue::<B>).get(browse::list::<B>))
        .route("/v1/queues/{q}/jobs/delete", post(browse::delete::<B>))
        .route("/v1/queues/{q}/pause", post(browse::pause::<B>))
        .route("/v1/queues/{q}/resume", post(browse::resume::<B>))
        .route("/v1/queues/{q}/dead/groups", get(browse::dead_groups::<B>))
        .route("/v1/jobs/{id}/redrive", post(browse::redrive_one::<B>))
        .route("/v1/history", get(crate::history::show::<B>))
        .route("/v1/whoami", get(browse::whoami::<B>))
        .route("/v1/queues/{q}/receive", post(jobs::receive_one::<B>))
        .route("/v1/receive", post(jobs::receive_many::<B>))
        .route("/v1/ack", post(jobs::ack::<B>))
        .route("/v1/fail", post(jobs::fail::<B>))
        .route("/v1/extend", post(jobs::extend::<B>))
        .route("/v1/jobs/{id}", get(jobs::show::<B>).delete(jobs::delete::<B>))
        .route("/v1/queues/{q}/dead", get(dead::list::<B>))
        .route("/v1/queues/{q}/redrive", post(dead::redrive::<B>))
        .route("/v1/queues/{q}/purge", post(dead::purge::<B>))
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
}
