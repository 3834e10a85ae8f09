//! Running an approved proposal's action. `redrive` moves the jobs back to their source queues
//! (after the decision's delay); `redrive_patched` applies the decision's JSON Patch to each
//! job's body, enqueues the repaired job into its source queue (attribute
//! [`PATCHED_FROM`] names the dead job) and deletes the dead one; `escalate` and `hold` are
//! acknowledged.

use redrive_core::broker::{NewJob, RedriveRequest};
use redrive_core::model::{JobId, JobState};
use redrive_core::triage::{Action, PatchFailure, PatchedJob, Proposal, ProposalResult};
use redrive_core::{limits, Broker, Error};
use serde_json::Value;

use super::patch;
use crate::Shared;

/// The attribute a patched job carries: the id of the dead job it replaces.
pub const PATCHED_FROM: &str = "redrive:patched_from";

/// Runs an approved proposal's action; returns what it did.
pub(super) async fn execute<B: Broker>(
    s: &Shared<B>,
    p: &Proposal,
) -> Result<ProposalResult, Error> {
    let d = &p.proposed.decision;
    match d.action {
        Action::Escalate | Action::Hold => Ok(ProposalResult::Acknowledged { acknowledged: true }),
        Action::Redrive => {
            let req = RedriveRequest {
                ids: Some(p.proposed.job_ids.clone()),
                delay_ms: d.delay_ms,
                ..RedriveRequest::default()
            };
            let r = s.broker.redrive(p.proposed.queue.clone(), req).await?;
            crate::traces::redriven(s, &p.proposed.queue, &r.ids).await;
            Ok(ProposalResult::Moved { moved: r.moved, ids: r.ids })
        }
        Action::RedrivePatched => {
            let patch = d
                .patch
                .as_ref()
                .ok_or_else(|| Error::invalid("patch", "the decision has no patch"))?;
            let mut patched = Vec::new();
            let mut failed = Vec::new();
            for &id in &p.proposed.job_ids {
                match patched_redrive(s, id, patch, None, false, "job_ids").await {
                    Ok(r) => {
                        let to = r.id.expect("not a dry run");
                        crate::traces::redriven(s, &p.proposed.queue, &[to]).await;
                        patched.push(PatchedJob { from: id, to })
                    }
                    Err(e) => failed.push(PatchFailure { id, error: result_line(&e) }),
                }
            }
            if patched.is_empty() && !failed.is_empty() {
                let why: Vec<String> =
                    failed.iter().map(|f| format!("{}: {}", f.id, f.error)).collect();
                let why = format!("no job could be patched: {}", why.join("; "));
                return Err(Error::invalid("patch", why));
            }
            Ok(ProposalResult::Patched { patched, failed })
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

/// A dead job's repaired copy: where it goes and the body it runs with.
pub struct Repaired {
    /// The copy's id; `None` on a dry run.
    pub id: Option<JobId>,
    pub queue: String,
    pub body: String,
}

/// Replaces one dead job by its patched copy in its source queue (or `to`): the copy carries
/// the dead job's priority and attributes plus [`PATCHED_FROM`], and the dead job is deleted.
/// `field` names the request field an error is about.
pub async fn patched_redrive<B: Broker>(
    s: &Shared<B>,
    id: JobId,
    patch: &Value,
    to: Option<String>,
    dry_run: bool,
    field: &'static str,
) -> Result<Repaired, Error> {
    let job = s.broker.get_job(id).await?;
    if job.state == JobState::Leased {
        let why = format!("job {id} is leased; try again after its lease ends");
        return Err(Error::invalid(field, why));
    }
    let dead = job
        .dead
        .as_ref()
        .ok_or_else(|| Error::invalid(field, format!("job {id} is not a dead job")))?;
    let body: Value = serde_json::from_str(job.body.as_deref().unwrap_or_default())
        .map_err(|_| Error::invalid("patch", format!("job {id}'s body is not JSON")))?;
    let patched = patch::apply(&body, patch).map_err(|e| Error::invalid("patch", e.to_string()))?;
    let queue = to.unwrap_or_else(|| dead.source_queue.clone());
    let body = patched.to_string();
    if dry_run {
        s.broker.get_queue(queue.clone()).await?;
        return Ok(Repaired { id: None, queue, body });
    }
    let mut attributes = job.attributes.clone();
    attributes.insert(PATCHED_FROM.to_owned(), id.to_string());
    let new = NewJob {
        body: body.clone(),
        priority: Some(job.priority),
        attributes,
        // The copy keeps the job's creation context: its trace goes on where it began.
        traceparent: job.traceparent.clone(),
        ..NewJob::default()
    };
    let enqueued = s.broker.enqueue(queue.clone(), vec![new]).await?;
    s.broker.delete_job(id).await?;
    Ok(Repaired { id: Some(enqueued[0].id), queue, body })
}
