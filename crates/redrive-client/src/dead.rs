//! Dead-letter routes: list a dead-letter queue's jobs page by page, and redrive them.

use redrive_core::broker::{DeadFilter, JobPage, RedriveRequest, RedriveResult};
use redrive_core::JobId;

use crate::routes::{dead_list, endpoint};
use crate::transport::Retry;
use crate::{Client, Error};

/// Which page of which dead jobs to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadQuery {
    pub filter: DeadFilter,
    /// The `next` of the previous page.
    pub after: Option<JobId>,
    /// Page size; `None` = the server's default.
    pub limit: Option<u32>,
}

impl Client {
    /// `GET /v1/queues/{q}/dead`: one page of the queue's dead jobs, oldest first.
    pub async fn list_dead(&self, queue: &str, query: &DeadQuery) -> Result<JobPage, Error> {
        self.get_json(dead_list(&self.base, queue, query)).await
    }

    /// `POST /v1/queues/{q}/redrive`: moves dead jobs back to their source queue (or `req.to`).
    /// Sent once; with `dry_run` nothing moves and the reply says what would.
    pub async fn redrive(&self, queue: &str, req: &RedriveRequest) -> Result<RedriveResult, Error> {
        let url = endpoint(&self.base, &["v1", "queues", queue, "redrive"]);
        self.post_json(url, req, Retry::Once).await
    }
}
