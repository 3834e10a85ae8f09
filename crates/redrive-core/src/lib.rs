//! The vocabulary every other redrive crate shares: jobs, queues, their configuration, the limits
//! on all of them, the error type with its wire codes, and the [`Broker`] contract that the
//! embedded engine and the PostgreSQL backend both implement.
//!
//! # Layout
//! - [`limits`]: every bound, named in one place.
//! - [`model`]: ids, priorities, states, attempt log entries, receipts.
//! - [`config`]: queue configuration, its defaults and validation.
//! - [`error`]: the one error enum and its mapping to HTTP status and codes.
//! - [`broker`]: request and reply types and the async contract of a store.
//! - [`metrics`]: what a store reports for `/metrics` (histograms, store-specific series).
//! - [`sealed`]: the text form of a value encrypted at rest, and its plaintext size.
//! - [`time`]: milliseconds since the epoch and RFC 3339 rendering.
//! - [`triage`]: triage decisions, policies and proposals (agent, server and client share them).

pub mod broker;
pub mod config;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod sealed;
pub mod time;
pub mod trace_context;
pub mod triage;

pub use broker::Broker;
pub use config::{Backoff, QueueConfig, QueuePatch};
pub use error::{Error, Result};
pub use model::{JobId, JobState, Priority, Receipt};
