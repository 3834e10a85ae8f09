//! The triage vocabulary every side speaks: the closed sets of categories and actions, a
//! decision, the policy a person sets per queue, and the proposals the server stores for a
//! person to decide. The agent (`redrive-triage`) produces these, the server stores and executes
//! them, the client and the CLI carry them; their serde shapes are the wire format of
//! `/v1/triage/*` (pinned by the OpenAPI document and `docs/api.md`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::JobId;

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
    /// RFC 6902 operations, for `redrive_patched`. Kept as JSON: the server checks their shape
    /// when the proposal is posted and applies them at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// Why, for the person who reads the proposal or the escalation.
    pub analysis: String,
}

/// How much a policy lets run without a person.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Record decisions only.
    Observe,
    /// A person approves every action.
    #[default]
    Propose,
    /// Execute what the rest of the policy allows.
    Auto,
}

/// What a person lets the agent do without them, for one queue (or by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub mode: Mode,
    /// Categories `auto` may execute.
    pub auto_categories: Vec<Category>,
    pub min_confidence: f64,
    /// `redrive_patched` changes a body, so it needs approval unless this is set.
    pub auto_patch: bool,
    /// Jobs redriven automatically per minute, at most.
    pub redrives_per_minute: u32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            mode: Mode::Propose,
            auto_categories: vec![Category::Transient, Category::RateLimited],
            min_confidence: 0.8,
            auto_patch: false,
            redrives_per_minute: 600,
        }
    }
}

/// Every queue's policy set on the server (`GET /v1/triage/policies`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyList {
    pub policies: BTreeMap<String, Policy>,
}

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    /// Approved, but executing the action failed (see `result`); it may be approved again.
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] =
        [Status::Pending, Status::Approved, Status::Rejected, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the agent reports about an escalation's webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub delivered: bool,
    /// Why the webhook did not take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A proposal as posted (`POST /v1/triage/proposals`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProposal {
    /// The queue the dead jobs sit in.
    pub queue: String,
    pub source_queue: String,
    pub signature: String,
    pub job_ids: Vec<JobId>,
    pub decision: Decision,
    /// Why the policy asked a person.
    pub reason: String,
    /// For escalations: whether the webhook took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

/// A stored proposal: what was posted, at the top level, beside the server's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    pub created_at: String,
    /// What was proposed, as it was posted.
    #[serde(flatten)]
    pub proposed: NewProposal,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// What executing the action did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ProposalResult>,
}

/// What approving a proposal did, by action. Untagged: each shape is told apart by its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProposalResult {
    /// `redrive`: the jobs moved.
    Moved { moved: u64, ids: Vec<JobId> },
    /// `redrive_patched`: the jobs replaced by their repaired copies, and those that were not.
    Patched { patched: Vec<PatchedJob>, failed: Vec<PatchFailure> },
    /// `escalate` and `hold`: nothing was executed.
    Acknowledged { acknowledged: bool },
    /// Executing the action failed (the proposal is `failed`).
    Error { error: String },
}

/// A dead job (`from`) and the repaired job that replaced it (`to`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchedJob {
    pub from: JobId,
    pub to: JobId,
}

/// A dead job a patched redrive could not replace, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchFailure {
    pub id: JobId,
    pub error: String,
}

/// `GET /v1/triage/proposals`: oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalList {
    pub proposals: Vec<Proposal>,
}

/// The body of `POST /v1/triage/proposals/{id}/approve|reject`: who decides, and why (required
/// to reject).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// Who decides, on a server without authentication; with it, the key that decides is
    /// recorded instead and this is ignored.
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub why: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stored proposal reads back whole: the posted fields sit beside the server's at the top
    /// level of the JSON, as the API documents them.
    #[test]
    fn a_stored_proposal_reads_back_with_the_posted_fields_at_the_top_level() {
        let posted = json!({
            "queue": "emails-dlq", "source_queue": "emails", "signature": "Timeout: smtp",
            "job_ids": ["0190a4a2-0000-7000-8000-000000000001"],
            "decision": {"category": "transient", "action": "redrive", "confidence": 0.9,
                         "analysis": "timeouts"},
            "reason": "policy asks a person"
        });
        let n: NewProposal = serde_json::from_value(posted.clone()).unwrap();
        let p = Proposal {
            id: "p1".into(),
            created_at: "2025-11-22T08:30:00.000Z".into(),
            proposed: n,
            status: Status::Pending,
            decided_by: None,
            decided_why: None,
            decided_at: None,
            result: None,
        };
        let stored = serde_json::to_value(&p).unwrap();
        assert_eq!(stored["signature"], posted["signature"]);
        assert_eq!(stored["job_ids"], posted["job_ids"]);
        let back: Proposal = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), stored);
    }

    /// Each result shape is the JSON the server has always stored, and reads back as itself.
    #[test]
    fn proposal_results_keep_their_json_shapes() {
        let id: JobId = "0190a4a2-0000-7000-8000-000000000001".parse().unwrap();
        let cases = [
            (ProposalResult::Moved { moved: 1, ids: vec![id] }, json!({"moved": 1, "ids": [id]})),
            (
                ProposalResult::Patched {
                    patched: vec![PatchedJob { from: id, to: id }],
                    failed: vec![PatchFailure { id, error: "e".into() }],
                },
                json!({"patched": [{"from": id, "to": id}], "failed": [{"id": id, "error": "e"}]}),
            ),
            (ProposalResult::Acknowledged { acknowledged: true }, json!({"acknowledged": true})),
            (ProposalResult::Error { error: "e".into() }, json!({"error": "e"})),
        ];
        for (result, wire) in cases {
            assert_eq!(serde_json::to_value(&result).unwrap(), wire);
            assert_eq!(serde_json::from_value::<ProposalResult>(wire).unwrap(), result);
        }
    }

    #[test]
    fn names_are_the_wire_names() {
        for c in Category::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_str()));
        }
        for s in Status::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}
