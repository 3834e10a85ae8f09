//! The dead-letter triage agent's decision core: what a dead job is ([`DeadCase`]), how dead jobs
//! group by failure ([`group`]), how the offline rules classify a group and pick an action
//! ([`rules`]), what a person's policy lets run without them ([`policy`]), what is hidden before
//! anything leaves for a model ([`redact`]), the OpenAI-compatible model provider with the rules
//! as its fallback ([`openai`], [`provider`]), and how a provider is scored against a labelled
//! dataset ([`eval`]).
//!
//! Everything here is synchronous and deterministic: time is passed in. The agent loop, the
//! model provider and the server's proposal store build on it.

pub mod agent;
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
