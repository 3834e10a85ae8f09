//! A typed async client for redrive's native JSON API (`/v1`): one method per route, returning the
//! `redrive-core` wire types, over one pooled HTTP connection set.
//!
//! # Layout
//! - [`Client`] (here): limits, and the shared request path in `transport`.
//! - [`ClientBuilder`]: construction, and TLS (the CA to trust, a client certificate).
//! - [`error`]: the client's [`Error`] and how an HTTP error reply is decoded into it.
//! - `routes`: URL building (path segments are percent-encoded, dead-job filters become a query).
//! - `queues`, `jobs`, `dead`, `triage`: the route methods, grouped as the API table groups
//!   them; the triage ones speak `redrive_core::triage`'s types (re-exported here).
//! - [`producer`]: batching producer and typed jobs.
//! - [`worker`]: the worker runtime (fetching, heartbeats, ack/fail, graceful stop).
//!
//! Calls that are safe to repeat (GET, `PUT` of a queue, ack, extend) are retried with backoff on
//! 503/429 and on connection failures; enqueue, receive, fail, redrive and purge are sent once,
//! because repeating them could enqueue, lease or move jobs twice.

mod builder;
mod dead;
pub mod error;
mod jobs;
mod keys;
pub mod producer;
mod queues;
mod routes;
pub mod trace;
mod transport;
mod triage;
pub mod worker;

use std::time::Duration;

use reqwest::Url;

pub use builder::ClientBuilder;
pub use dead::DeadQuery;
pub use error::Error;
pub use jobs::ReceiveOptions;
pub use redrive_core::broker::{
    AckResult, DeadFilter, DeadInfo, Delivery, Enqueued, FailRequest, FailResult, JobInfo, JobPage,
    NewJob, QueueInfo, QueueStats, RedriveRequest, RedriveResult,
};
pub use redrive_core::triage::{
    Action, Category, Decision, Escalation, Mode, NewProposal, PatchFailure, PatchedJob, Policy,
    Proposal, ProposalResult, Status as ProposalStatus,
};
pub use redrive_core::{Backoff, JobId, Priority, QueueConfig, QueuePatch};

/// Tries of one idempotent call, the first included.
pub const TRIES_MAX: u32 = 3;
/// Wait before the first retry; doubles per retry up to `RETRY_BACKOFF_MAX_MS`.
pub const RETRY_BACKOFF_BASE_MS: u64 = 100;
pub const RETRY_BACKOFF_MAX_MS: u64 = 2_000;
/// Timeout of one request that is not a long poll (the server's own bound is 30 s).
pub const REQUEST_TIMEOUT_DEFAULT_MS: u64 = 35_000;
/// Added to a long poll's wait for its request timeout: the server answers at the end of the wait.
pub const LONG_POLL_MARGIN_MS: u64 = 10_000;
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Idle pooled connections are dropped after this long, before the server's idle timeout.
pub const POOL_IDLE_TIMEOUT_MS: u64 = redrive_core::limits::CONNECTION_IDLE_TIMEOUT_MS / 2;

const _: () = assert!(RETRY_BACKOFF_BASE_MS <= RETRY_BACKOFF_MAX_MS);
const _: () = assert!(POOL_IDLE_TIMEOUT_MS < redrive_core::limits::CONNECTION_IDLE_TIMEOUT_MS);
const _: () = assert!(REQUEST_TIMEOUT_DEFAULT_MS >= redrive_core::limits::REQUEST_TIMEOUT_MS);

/// A client of one redrive server. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Always an `http` or `https` URL (checked in [`ClientBuilder::build`]), so it can take path
    /// segments.
    base: Url,
    timeout: Duration,
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:9324`). A path in the URL is
    /// kept as a prefix, for servers behind a reverse proxy. An `https` server must have a
    /// certificate from a public CA; for a private CA or mutual TLS, see [`Client::builder`].
    pub fn new(base_url: &str) -> Result<Client, Error> {
        Client::builder(base_url).build()
    }

    /// A client of the server at `base_url`, with TLS settings and a timeout to choose.
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder::new(base_url)
    }

    /// Sets the timeout of calls that are not long polls.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The server URL this client talks to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_urls_that_are_not_http() {
        assert!(matches!(Client::new("nope"), Err(Error::InvalidUrl(_))));
        assert!(matches!(Client::new("mailto:a@b.c"), Err(Error::InvalidUrl(_))));
        assert!(Client::new("http://127.0.0.1:9324").is_ok());
    }
}
