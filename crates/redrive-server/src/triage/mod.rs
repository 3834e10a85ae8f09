//! Triage on the server: the policies a person sets per queue (`/v1/triage/policies/{queue}`,
//! applied by agents before their own) and the proposals agents store for a person to approve
//! or reject. Approving executes the action. Escalations are stored as proposals too, with
//! their webhook delivery, for a person to acknowledge. The types are the shared ones in
//! [`redrive_core::triage`].
//!
//! # Layout
//! - [`store`]: the proposals and policies, documents in the store (written through its group
//!   commit, bounded) with a copy in memory for reads; loading and importing old JSON files.
//! - `routes`: the HTTP handlers of `/v1/triage/*`.
//! - `execute`: running an approved proposal's action.
//! - [`patch`]: RFC 6902 JSON Patch, checked when posted and applied at approval.

pub(crate) mod execute;
pub mod patch;
mod routes;
pub mod store;

pub use execute::PATCHED_FROM;
pub use routes::routes;
pub use store::{import_files, load, Policies, Proposals};
