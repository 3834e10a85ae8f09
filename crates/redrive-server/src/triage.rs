//! Triage proposals: decisions the policy did not let run without a person, stored for approval
//! or rejection (with who and why). Approving executes the action: `redrive` moves the jobs back
//! to their source queues (after the decision's delay); `redrive_patched` applies the decision's
//! JSON Patch to each job's body, enqueues the repaired job into its source queue (attribute
//! `redrive:patched_from` names the dead job) and deletes the dead one; `escalate` and `hold` are
//! acknowledged. Escalations are stored as proposals too, with their webhook delivery, for a
//! person to acknowledge. The server also keeps a triage policy per queue
//! (`/v1/triage/policies/{queue}`) that agents apply before their own. Both are documents in
//! the store ([`DocKind`]), written through the engine's group commit and bounded; this module
//! keeps a copy in memory for reads, loaded at start-up ([`load`]).

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use redrive_core::broker::{DocKind, NewJob, RedriveRequest};
use redrive_core::model::JobId;
use redrive_core::time::{to_rfc3339, Clock, SystemClock};
use redrive_core::{limits, Broker, Error};
use redrive_triage::policy::Policy;
use redrive_triage::{Action, Decision};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::Shared;

/// The attribute a patched job carries: the id of the dead job it replaces.
pub const PATCHED_FROM: &str = "redrive:patched_from";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    /// Approved, but executing the action failed (see `result`); it may be approved again.
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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

/// What the triage agent reports about an escalation's webhook (its `agent::Escalation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub delivered: bool,
    /// Why the webhook did not take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub result: Option<Value>,
}

/// The proposals in the store, as last written through [`Proposals::put`] (or loaded).
#[derive(Default)]
pub struct Proposals {
    all: Mutex<Vec<Proposal>>,
}

impl Proposals {
    /// Takes a pending proposal for deciding: under the lock, so two decisions racing for the
    /// same proposal cannot both run it.
    fn claim(&self, id: &str, by: &str, status: Status) -> Result<Proposal, Error> {
        let mut all = self.all.lock().expect("not poisoned");
        let p = all
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::ProposalNotFound(id.to_owned()))?;
        // A proposal whose execution failed may be decided again.
        if !matches!(p.status, Status::Pending | Status::Failed) {
            return Err(Error::invalid(
                "status",
                format!("the proposal is already {:?}", p.status),
            ));
        }
        if by.trim().is_empty() {
            return Err(Error::invalid("by", "say who decides"));
        }
        p.status = status;
        Ok(p.clone())
    }

    /// Proposals by status, for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let all = self.all.lock().expect("not poisoned");
        let _ = writeln!(out, "# HELP redrive_triage_proposals Triage proposals, by status.\n# TYPE redrive_triage_proposals gauge");
        for (name, st) in [
            ("pending", Status::Pending),
            ("approved", Status::Approved),
            ("rejected", Status::Rejected),
            ("failed", Status::Failed),
        ] {
            let n = all.iter().filter(|p| p.status == st).count();
            let _ = writeln!(out, "redrive_triage_proposals{{status=\"{name}\"}} {n}");
        }
    }

    fn get(&self, id: &str) -> Result<Proposal, Error> {
        let all = self.all.lock().expect("not poisoned");
        all.iter()
            .find(|p| p.id == id)
            .cloned()
            .ok_or_else(|| Error::ProposalNotFound(id.to_owned()))
    }

    /// Stores `p` (replacing the proposal with its id), then updates the copy in memory.
    async fn put(&self, broker: &impl Broker, p: Proposal) -> Result<Proposal, Error> {
        let text = serde_json::to_string(&p).expect("serializes");
        broker.put_doc(DocKind::TriageProposal, p.id.clone(), Some(text)).await?;
        let mut all = self.all.lock().expect("not poisoned");
        match all.iter_mut().find(|x| x.id == p.id) {
            Some(x) => *x = p.clone(),
            None => all.push(p.clone()),
        }
        Ok(p)
    }

    /// Makes room for one more proposal: at `TRIAGE_PROPOSALS_COUNT_MAX`, the oldest decided
    /// one is forgotten; when every proposal still waits for a person, nothing is.
    async fn make_room(&self, broker: &impl Broker) -> Result<(), Error> {
        let oldest_decided = {
            let all = self.all.lock().expect("not poisoned");
            if all.len() < limits::TRIAGE_PROPOSALS_COUNT_MAX {
                return Ok(());
            }
            let decided = |p: &&Proposal| matches!(p.status, Status::Approved | Status::Rejected);
            all.iter().find(decided).map(|p| p.id.clone())
        };
        let Some(id) = oldest_decided else {
            return Err(Error::LimitExceeded {
                limit: "TRIAGE_PROPOSALS_COUNT_MAX",
                max: limits::TRIAGE_PROPOSALS_COUNT_MAX as u64,
            });
        };
        broker.put_doc(DocKind::TriageProposal, id.clone(), None).await?;
        self.all.lock().expect("not poisoned").retain(|p| p.id != id);
        Ok(())
    }
}

/// Fills the copies in memory from the store's documents (at start-up).
pub async fn load<B: Broker>(state: &crate::AppState<B>) -> Result<(), Error> {
    let mut proposals = Vec::new();
    for (id, text) in state.broker.list_docs(DocKind::TriageProposal).await? {
        let p: Proposal = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored triage proposal {id}: {e}")))?;
        proposals.push(p);
    }
    // Ids are UUIDv7: in creation order once sorted.
    proposals.sort_by(|a, b| a.id.cmp(&b.id));
    *state.proposals.all.lock().expect("not poisoned") = proposals;
    let mut policies = BTreeMap::new();
    for (queue, text) in state.broker.list_docs(DocKind::TriagePolicy).await? {
        let p: Policy = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored triage policy of {queue}: {e}")))?;
        policies.insert(queue, p);
    }
    *state.policies.all.lock().expect("not poisoned") = policies;
    Ok(())
}

/// Moves proposals and policies that an older version kept in JSON files beside the log into
/// the store, then renames each file to `*.imported`. Returns how many documents it moved.
pub async fn import_files<B: Broker>(
    state: &crate::AppState<B>,
    proposals: &FsPath,
    policies: &FsPath,
) -> Result<usize, Error> {
    let mut moved = 0;
    for p in read_json::<Vec<Proposal>>(proposals)?.into_iter().flatten() {
        state.proposals.make_room(&state.broker).await?;
        state.proposals.put(&state.broker, p).await?;
        moved += 1;
    }
    for (queue, p) in read_json::<BTreeMap<String, Policy>>(policies)?.into_iter().flatten() {
        let text = serde_json::to_string(&p).expect("serializes");
        state.broker.put_doc(DocKind::TriagePolicy, queue.clone(), Some(text)).await?;
        state.policies.all.lock().expect("not poisoned").insert(queue, p);
        moved += 1;
    }
    for file in [proposals, policies] {
        if file.exists() {
            std::fs::rename(file, file.with_extension("json.imported"))
                .map_err(|e| Error::Internal(format!("renaming {}: {e}", file.display())))?;
        }
    }
    Ok(moved)
}

/// A JSON file, or `None` if it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(file: &FsPath) -> Result<Option<T>, Error> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Internal(format!("reading {}: {e}", file.display()));
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| bad(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(&e)),
    }
}

/// Triage policies by queue, set by a person through the API (the store's, as last written).
#[derive(Default)]
pub struct Policies {
    all: Mutex<BTreeMap<String, Policy>>,
}

async fn list_policies<B: Broker>(State(s): State<Shared<B>>) -> Json<Value> {
    let all = s.policies.all.lock().expect("not poisoned");
    Json(json!({ "policies": *all }))
}

async fn get_policy<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
) -> ApiResult<Json<Policy>> {
    let all = s.policies.all.lock().expect("not poisoned");
    Ok(Json(all.get(&q).cloned().ok_or(Error::PolicyNotFound(q))?))
}

async fn put_policy<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
    JsonBody(p): JsonBody<Policy>,
) -> ApiResult<Json<Policy>> {
    if !redrive_core::model::valid_queue_name(&q) {
        return Err(Error::InvalidQueueName(q).into());
    }
    if !(0.0..=1.0).contains(&p.min_confidence) {
        return Err(Error::invalid("min_confidence", "from 0 to 1").into());
    }
    let text = serde_json::to_string(&p).expect("serializes");
    s.broker.put_doc(DocKind::TriagePolicy, q.clone(), Some(text)).await?;
    s.policies.all.lock().expect("not poisoned").insert(q, p.clone());
    Ok(Json(p))
}

async fn delete_policy<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
) -> ApiResult<StatusCode> {
    if !s.policies.all.lock().expect("not poisoned").contains_key(&q) {
        return Err(Error::PolicyNotFound(q).into());
    }
    s.broker.put_doc(DocKind::TriagePolicy, q.clone(), None).await?;
    s.policies.all.lock().expect("not poisoned").remove(&q);
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes<B: Broker>() -> Router<Shared<B>> {
    Router::new()
        .route("/v1/triage/policies", get(list_policies::<B>))
        .route(
            "/v1/triage/policies/{queue}",
            get(get_policy::<B>).put(put_policy::<B>).delete(delete_policy::<B>),
        )
        .route("/v1/triage/proposals", post(create::<B>).get(list::<B>))
        .route("/v1/triage/proposals/{id}", get(show::<B>))
        .route("/v1/triage/proposals/{id}/approve", post(approve::<B>))
        .route("/v1/triage/proposals/{id}/reject", post(reject::<B>))
}

fn now() -> String {
    to_rfc3339(SystemClock.now_ms())
}

/// Checks that a patch is RFC 6902 operations as the OpenAPI document's `JsonPatch` describes
/// them, so that nothing else is stored and shown back; whether it applies is found at approval.
fn patch_shape(patch: &Value) -> Result<(), String> {
    const OPS: [&str; 6] = ["add", "remove", "replace", "move", "copy", "test"];
    let ops = patch.as_array().ok_or("a JSON Patch is an array of operations")?;
    for (i, op) in ops.iter().enumerate() {
        let text = |name: &str| op.get(name).map(|v| v.as_str().ok_or(()));
        match (text("op"), text("path"), text("from")) {
            (Some(Ok(o)), Some(Ok(_)), None | Some(Ok(_))) if OPS.contains(&o) => {}
            _ => return Err(format!("operation {i} needs a known \"op\" and a \"path\" string")),
        }
    }
    Ok(())
}

async fn create<B: Broker>(
    State(s): State<Shared<B>>,
    JsonBody(n): JsonBody<NewProposal>,
) -> ApiResult<(StatusCode, Json<Proposal>)> {
    if n.job_ids.is_empty() {
        return Err(Error::invalid("job_ids", "a proposal names at least one job").into());
    }
    if let Some(patch) = &n.decision.patch {
        patch_shape(patch).map_err(|m| Error::invalid("decision.patch", m))?;
    }
    if n.job_ids.len() > limits::TRIAGE_PROPOSAL_JOBS_COUNT_MAX {
        let (count, max) = (n.job_ids.len(), limits::TRIAGE_PROPOSAL_JOBS_COUNT_MAX);
        return Err(Error::BatchTooLarge { count, max }.into());
    }
    let size = serde_json::to_vec(&n).expect("serializes").len();
    if size > limits::TRIAGE_PROPOSAL_POSTED_BYTES_MAX {
        let max = limits::TRIAGE_PROPOSAL_POSTED_BYTES_MAX;
        let why = format!("{size} bytes is over TRIAGE_PROPOSAL_POSTED_BYTES_MAX ({max})");
        return Err(Error::invalid("proposal", why).into());
    }
    s.proposals.make_room(&s.broker).await?;
    if !(0.0..=1.0).contains(&n.decision.confidence) {
        return Err(Error::invalid("decision.confidence", "from 0 to 1").into());
    }
    let p = Proposal {
        id: uuid::Uuid::now_v7().to_string(),
        created_at: now(),
        proposed: n,
        status: Status::Pending,
        decided_by: None,
        decided_why: None,
        decided_at: None,
        result: None,
    };
    Ok((StatusCode::CREATED, Json(s.proposals.put(&s.broker, p).await?)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<Status>,
}

async fn list<B: Broker>(
    State(s): State<Shared<B>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    let all = s.proposals.all.lock().expect("not poisoned");
    let picked: Vec<&Proposal> =
        all.iter().filter(|p| q.status.is_none_or(|st| p.status == st)).collect();
    Ok(Json(json!({ "proposals": picked })))
}

async fn show<B: Broker>(
    State(s): State<Shared<B>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Proposal>> {
    Ok(Json(s.proposals.get(&id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    by: String,
    #[serde(default)]
    why: Option<String>,
}

async fn reject<B: Broker>(
    State(s): State<Shared<B>>,
    Path(id): Path<String>,
    JsonBody(v): JsonBody<Verdict>,
) -> ApiResult<Json<Proposal>> {
    if v.why.as_deref().is_none_or(|w| w.trim().is_empty()) {
        return Err(Error::invalid("why", "a rejection says why").into());
    }
    let mut p = s.proposals.claim(&id, &v.by, Status::Rejected)?;
    p.decided_by = Some(v.by);
    p.decided_why = v.why;
    p.decided_at = Some(now());
    Ok(Json(s.proposals.put(&s.broker, p).await?))
}

async fn approve<B: Broker>(
    State(s): State<Shared<B>>,
    Path(id): Path<String>,
    JsonBody(v): JsonBody<Verdict>,
) -> ApiResult<Json<Proposal>> {
    let mut p = s.proposals.claim(&id, &v.by, Status::Approved)?;
    let outcome = execute(&s, &p).await;
    p.status = if outcome.is_ok() { Status::Approved } else { Status::Failed };
    p.result = Some(outcome.unwrap_or_else(|e| json!({ "error": e.to_string() })));
    p.decided_by = Some(v.by);
    p.decided_why = v.why;
    p.decided_at = Some(now());
    Ok(Json(s.proposals.put(&s.broker, p).await?))
}

/// Runs an approved proposal's action; returns what it did.
async fn execute<B: Broker>(s: &Shared<B>, p: &Proposal) -> Result<Value, Error> {
    let d = &p.proposed.decision;
    match d.action {
        Action::Escalate | Action::Hold => Ok(json!({ "acknowledged": true })),
        Action::Redrive => {
            let req = RedriveRequest {
                ids: Some(p.proposed.job_ids.clone()),
                delay_ms: d.delay_ms,
                ..RedriveRequest::default()
            };
            let r = s.broker.redrive(p.proposed.queue.clone(), req).await?;
            Ok(json!({ "moved": r.moved, "ids": r.ids }))
        }
        Action::RedrivePatched => {
            let patch = d
                .patch
                .as_ref()
                .ok_or_else(|| Error::invalid("patch", "the decision has no patch"))?;
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for &id in &p.proposed.job_ids {
                match patched_redrive(s, id, patch).await {
                    Ok(new_id) => done.push(json!({ "from": id, "to": new_id })),
                    Err(e) => failed.push(json!({ "id": id, "error": result_line(&e) })),
                }
            }
            if done.is_empty() && !failed.is_empty() {
                return Err(Error::invalid(
                    "patch",
                    format!("no job could be patched: {failed:?}"),
                ));
            }
            Ok(json!({ "patched": done, "failed": failed }))
        }
    }
}

/// An error as one job's line of a stored result: cut so that a result naming every job of a
/// proposal stays within `TRIAGE_RESULT_LINE_BYTES_MAX` a job.
fn result_line(e: &Error) -> String {
    let mut text = e.to_string();
    if text.len() > limits::TRIAGE_RESULT_LINE_BYTES_MAX - 60 {
        let mut cut = limits::TRIAGE_RESULT_LINE_BYTES_MAX - 63;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Replaces one dead job by its patched copy in its source queue.
async fn patched_redrive<B: Broker>(
    s: &Shared<B>,
    id: JobId,
    patch: &Value,
) -> Result<JobId, Error> {
    let job = s.broker.get_job(id).await?;
    if job.state == redrive_core::model::JobState::Leased {
        let why = format!("job {id} is leased; approve again after its lease ends");
        return Err(Error::invalid("job_ids", why));
    }
    let dead = job
        .dead
        .as_ref()
        .ok_or_else(|| Error::invalid("job_ids", format!("job {id} is not a dead job")))?;
    let body: Value = serde_json::from_str(job.body.as_deref().unwrap_or_default())
        .map_err(|_| Error::invalid("patch", format!("job {id}'s body is not JSON")))?;
    let patched =
        redrive_triage::patch::apply(&body, patch).map_err(|e| Error::invalid("patch", e))?;
    let mut attributes = job.attributes.clone();
    attributes.insert(PATCHED_FROM.to_owned(), id.to_string());
    let new = NewJob {
        body: patched.to_string(),
        priority: Some(job.priority),
        attributes,
        traceparent: None,
        ..NewJob::default()
    };
    let enqueued = s.broker.enqueue(dead.source_queue.clone(), vec![new]).await?;
    s.broker.delete_job(id).await?;
    Ok(enqueued[0].id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            created_at: now(),
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
}
