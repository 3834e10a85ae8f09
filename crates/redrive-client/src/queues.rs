//! Queue routes: create or update, list, show, delete, stats and purge.

use reqwest::Method;
use serde::Deserialize;

use redrive_core::broker::{QueueInfo, QueueStats};
use redrive_core::QueuePatch;

use crate::routes::endpoint;
use crate::transport::{decode, Retry};
use crate::{Client, Error};

impl Client {
    /// `PUT /v1/queues/{q}`: creates the queue with `patch` over the defaults, or applies `patch`
    /// to the existing queue. Returns the queue and whether it was created.
    ///
    /// A new native queue gets a dead-letter queue `{q}-dlq` unless `patch` sets
    /// `dead_letter_queue: Some(None)`.
    pub async fn put_queue(
        &self,
        name: &str,
        patch: &QueuePatch,
    ) -> Result<(QueueInfo, bool), Error> {
        let url = endpoint(&self.base, &["v1", "queues", name]);
        let reply =
            self.send(Method::PUT, url, Some(patch), Retry::Idempotent, self.timeout).await?;
        let created = reply.status() == reqwest::StatusCode::CREATED;
        Ok((decode(reply).await?, created))
    }

    /// `GET /v1/queues`: every queue with its configuration and statistics.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>, Error> {
        #[derive(Deserialize)]
        struct Reply {
            queues: Vec<QueueInfo>,
        }
        let reply: Reply = self.get_json(endpoint(&self.base, &["v1", "queues"])).await?;
        Ok(reply.queues)
    }

    /// `GET /v1/queues/{q}`.
    pub async fn get_queue(&self, name: &str) -> Result<QueueInfo, Error> {
        self.get_json(endpoint(&self.base, &["v1", "queues", name])).await
    }

    /// `DELETE /v1/queues/{q}`. Retried like a GET: deleting twice deletes once, and a retry
    /// that finds the queue gone reports `NotFound`.
    pub async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let url = endpoint(&self.base, &["v1", "queues", name]);
        self.send(Method::DELETE, url, None::<&()>, Retry::Idempotent, self.timeout).await?;
        Ok(())
    }

    /// `GET /v1/queues/{q}/stats`.
    pub async fn queue_stats(&self, name: &str) -> Result<QueueStats, Error> {
        self.get_json(endpoint(&self.base, &["v1", "queues", name, "stats"])).await
    }

    /// `POST /v1/queues/{q}/purge`: drops every ready and delayed job; returns how many.
    pub async fn purge(&self, name: &str) -> Result<u64, Error> {
        #[derive(Deserialize)]
        struct Reply {
            purged: u64,
        }
        let url = endpoint(&self.base, &["v1", "queues", name, "purge"]);
        let reply: Reply = self.post_json(url, &serde_json::json!({}), Retry::Once).await?;
        Ok(reply.purged)
    }

    /// `GET /healthz`: `Ok` when the server answers at all.
    pub async fn health(&self) -> Result<(), Error> {
        self.probe("healthz").await
    }

    /// `GET /readyz`: `Ok` when the server can take writes (its store is not poisoned).
    pub async fn ready(&self) -> Result<(), Error> {
        self.probe("readyz").await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, Error> {
        let url = endpoint(&self.base, &["metrics"]);
        let reply =
            self.send(Method::GET, url, None::<&()>, Retry::Idempotent, self.timeout).await?;
        reply.text().await.map_err(|e| Error::Transport(crate::transport::describe(&e)))
    }

    async fn probe(&self, path: &str) -> Result<(), Error> {
        let url = endpoint(&self.base, &[path]);
        self.send(Method::GET, url, None::<&()>, Retry::Once, self.timeout).await?;
        Ok(())
    }
}
