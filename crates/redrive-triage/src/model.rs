//! A dead job as triage sees it. The closed sets of categories and actions and a decision are
//! the shared vocabulary in `redrive_core::triage`, re-exported here.

use std::collections::BTreeMap;

pub use redrive_core::triage::{Action, Category, Decision};
use serde::{Deserialize, Serialize};

/// One failed attempt of a dead job, as its attempt log records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttempt {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A dead job as triage sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadCase {
    /// The queue it died in (its source queue when it sits in a dead-letter queue).
    pub queue: String,
    pub body: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub receive_count: u32,
    /// Failed attempts, oldest first; empty when the worker never reported (it died).
    #[serde(default)]
    pub errors: Vec<FailedAttempt>,
}

impl DeadCase {
    pub fn last_error(&self) -> Option<&FailedAttempt> {
        self.errors.last()
    }
}
