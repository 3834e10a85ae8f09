//! Triage proposals: decisions the policy did not let run without a person, stored for approval
//! or rejection (with who and why). Approving executes the action: `redrive` moves the jobs back
//! to their source queues (after the decision's delay); `redrive_patched` applies the decision's
//! JSON Patch to each job's body, enqueues the repaired job into its source queue (attribute
//! `redrive:patched_from` names the dead job) and deletes the dead one; `escalate` and `hold` are
//! acknowledged. Escalations are stored as proposals too, with their webhook delivery, for a
//! person to acknowledge. The server also keeps a triage policy per queue
//! (`/v1/triage/policies/{queue}`) that agents apply before their own. Both are kept in JSON
//! files in the data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use redrive_core::broker::{NewJob, RedriveRequest};
use redrive_core::model::JobId;
use redrive_core::time::{to_rfc3339, Clock, SystemClock};
use redrive_core::{Broker, Error};
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
    /// For escalations: whether the webhook took it (`{"delivered", "error"?}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Value>,
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

/// The store: in memory, written through to a file when one is given.
#[derive(Default)]
pub struct Proposals {
    file: Option<PathBuf>,
    all: Mutex<Vec<Proposal>>,
}

impl Proposals {
    /// Loads the proposals kept in `file` (none if it does not exist yet).
    pub fn open(file: PathBuf) -> std::io::Result<Proposals> {
        Ok(Proposals { all: Mutex::new(load_json(&file)?), file: Some(file) })
    }

    fn save(&self, all: &[Proposal]) -> Result<(), Error> {
        save_json(self.file.as_deref(), all)
    }

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

    fn put(&self, p: Proposal) -> Result<Proposal, Error> {
        let mut all = self.all.lock().expect("not poisoned");
        match all.iter_mut().find(|x| x.id == p.id) {
            Some(x) => *x = p.clone(),
            None => all.push(p.clone()),
        }
        self.save(&all)?;
        Ok(p)
    }
}

/// Loads a JSON file, or the default value if it does not exist yet.
fn load_json<T: serde::de::DeserializeOwned + Default>(
    file: &std::path::Path,
) -> std::io::Result<T> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Writes a JSON file durably: a temporary file, fsynced, renamed over the old one, and the
/// directory fsynced. Nothing is written without a file (an in-memory store).
fn save_json<T: Serialize + ?Sized>(
    file: Option<&std::path::Path>,
    value: &T,
) -> Result<(), Error> {
    let Some(file) = file else { return Ok(()) };
    let tmp = file.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).expect("serializes");
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| Error::Internal(format!("writing {}: {e}", file.display())))
}

/// Triage policies by queue, set by a person through the API.
#[derive(Default)]
pub struct Policies {
    file: Option<PathBuf>,
    all: Mutex<BTreeMap<String, Policy>>,
}

impl Policies {
    pub fn open(file: PathBuf) -> std::io::Result<Policies> {
        Ok(Policies { all: Mutex::new(load_json(&file)?), file: Some(file) })
    }
}

async fn list_policies(State(s): State<Shared>) -> Json<Value> {
    let all = s.policies.all.lock().expect("not poisoned");
    Json(json!({ "policies": *all }))
}

async fn get_policy(State(s): State<Shared>, Path(q): Path<String>) -> ApiResult<Json<Policy>> {
    let all = s.policies.all.lock().expect("not poisoned");
    Ok(Json(all.get(&q).cloned().ok_or(Error::PolicyNotFound(q))?))
}

async fn put_policy(
    State(s): State<Shared>,
    Path(q): Path<String>,
    JsonBody(p): JsonBody<Policy>,
) -> ApiResult<Json<Policy>> {
    if !redrive_core::model::valid_queue_name(&q) {
        return Err(Error::InvalidQueueName(q).into());
    }
    if !(0.0..=1.0).contains(&p.min_confidence) {
        return Err(Error::invalid("min_confidence", "from 0 to 1").into());
    }
    let mut all = s.policies.all.lock().expect("not poisoned");
    all.insert(q, p.clone());
    save_json(s.policies.file.as_deref(), &*all)?;
    Ok(Json(p))
}

async fn delete_policy(State(s): State<Shared>, Path(q): Path<String>) -> ApiResult<StatusCode> {
    let mut all = s.policies.all.lock().expect("not poisoned");
    all.remove(&q).ok_or_else(|| Error::PolicyNotFound(q.clone()))?;
    save_json(s.policies.file.as_deref(), &*all)?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/triage/policies", get(list_policies))
        .route("/v1/triage/policies/{queue}", get(get_policy).put(put_policy).delete(delete_policy))
        .route("/v1/triage/proposals", post(create).get(list))
        .route("/v1/triage/proposals/{id}", get(show))
        .route("/v1/triage/proposals/{id}/approve", post(approve))
        .route("/v1/triage/proposals/{id}/reject", post(reject))
}

fn now() -> String {
    to_rfc3339(SystemClock.now_ms())
}

async fn create(
    State(s): State<Shared>,
    JsonBody(n): JsonBody<NewProposal>,
) -> ApiResult<(StatusCode, Json<Proposal>)> {
    if n.job_ids.is_empty() {
        return Err(Error::invalid("job_ids", "a proposal names at least one job").into());
    }
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
    Ok((StatusCode::CREATED, Json(s.proposals.put(p)?)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<Status>,
}

async fn list(
    State(s): State<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    let all = s.proposals.all.lock().expect("not poisoned");
    let picked: Vec<&Proposal> =
        all.iter().filter(|p| q.status.is_none_or(|st| p.status == st)).collect();
    Ok(Json(json!({ "proposals": picked })))
}

async fn show(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Proposal>> {
    Ok(Json(s.proposals.get(&id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    by: String,
    #[serde(default)]
    why: Option<String>,
}

async fn reject(
    State(s): State<Shared>,
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
    Ok(Json(s.proposals.put(p)?))
}

async fn approve(
    State(s): State<Shared>,
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
    Ok(Json(s.proposals.put(p)?))
}

/// Runs an approved proposal's action; returns what it did.
async fn execute(s: &Shared, p: &Proposal) -> Result<Value, Error> {
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
                    Err(e) => failed.push(json!({ "id": id, "error": e.to_string() })),
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

/// Replaces one dead job by its patched copy in its source queue.
async fn patched_redrive(s: &Shared, id: JobId, patch: &Value) -> Result<JobId, Error> {
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
