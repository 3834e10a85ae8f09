//! The dead-letter triage agent: it reads dead jobs through the native API like any client,
//! decides what to do with each group of identical failures, and applies a person's policy.
//! The vocabulary it speaks (categories, actions, decisions, policies, proposals) is
//! `redrive_core::triage`, shared with the server and the client.
//!
//! # Layout
//! Decision code: synchronous and deterministic, no I/O, time passed in as `now` (ms).
//! - [`model`]: a dead job as triage sees it ([`DeadCase`]); re-exports core's decision types.
//! - [`group`]: dead jobs grouped by failure signature.
//! - [`rules`]: the offline rules that classify a group and pick an action.
//! - [`policy`]: what a person's policy lets run without them, and the rate limiter.
//! - [`redact`]: what is hidden before anything leaves for a model.
//! - [`eval`]: scoring a provider against a labelled dataset.
//!
//! I/O, built on the above:
//! - [`provider`] and [`openai`]: a model (any OpenAI-compatible endpoint) with the rules as its
//!   fallback.
//! - [`agent`]: the pass over a dead-letter queue, as a client of the server; `watch` takes
//!   each pass's `now` from the agent's [`redrive_core::time::Clock`].
//! - [`audit`]: the audit log, and the agent's memory read back from it.
//! - [`metrics`]: the agent's counters for `/metrics`.

pub mod agent;
pub mod audit;
pub mod eval;
pub mod group;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod policy;
pub mod provider;
pub mod redact;
pub mod rules;

pub use model::{Action, Category, DeadCase, Decision, FailedAttempt};
