//! The vocabulary: a dead job as triage sees it, the closed sets of categories and actions, and
//! a decision.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a job died. A closed set: anything a provider says outside it is not a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Timeouts, resets, deadlocks: likely to pass on a retry.
    Transient,
    /// 429s and throttling: passes on a later retry.
    RateLimited,
    /// A dependency failing every attempt: wait for it to come back.
    DependencyDown,
    /// The payload is invalid: retrying the same body fails the same way.
    BadData,
    /// The job kills or hangs the worker (OOM, SIGKILL, lease expiries, no recorded error).
    Poison,
    /// A defect in the worker's code.
    Bug,
    /// Credentials, permissions, missing settings.
    Config,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Transient,
        Category::RateLimited,
        Category::DependencyDown,
        Category::BadData,
        Category::Poison,
        Category::Bug,
        Category::Config,
        Category::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transient => "transient",
            Category::RateLimited => "rate_limited",
            Category::DependencyDown => "dependency_down",
            Category::BadData => "bad_data",
            Category::Poison => "poison",
            Category::Bug => "bug",
            Category::Config => "config",
            Category::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a group. A closed set: nothing else is ever executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send the jobs back to their source queue (after `delay_ms`, if any).
    Redrive,
    /// Apply the decision's JSON Patch to each body, then redrive.
    RedrivePatched,
    /// Hand to a person, with the analysis.
    Escalate,
    /// Leave the jobs where they are for now.
    Hold,
}

impl Action {
    pub const ALL: [Action; 4] =
        [Action::Redrive, Action::RedrivePatched, Action::Escalate, Action::Hold];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Redrive => "redrive",
            Action::RedrivePatched => "redrive_patched",
            Action::Escalate => "escalate",
            Action::Hold => "hold",
        }
    }

    /// Whether executing it puts jobs back to work.
    pub fn redrives(self) -> bool {
        matches!(self, Action::Redrive | Action::RedrivePatched)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// A provider's decision for one group. Unknown fields are refused: a model's output with more
/// than the schema is not a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub category: Category,
    pub action: Action,
    /// 0 to 1.
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// RFC 6902 operations, for `redrive_patched`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// Why, for the person who reads the proposal or the escalation.
    pub analysis: String,
}
