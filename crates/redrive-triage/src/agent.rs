//! One triage pass over a dead-letter queue, as a client of the native API: read every dead job
//! with its attempt log, group, decide once per group, apply the policy per job, execute what may
//! run (redrives, by id, with the decision's delay), escalate to a webhook, and append one audit
//! record per group to a JSON-lines file. Decisions the policy leaves to a person are stored on
//! the server as proposals (`/v1/triage/proposals`). The audit log is also the agent's memory: a
//! job it redrove that is dead again is escalated, never redriven a second time, and a death it
//! already proposed, escalated or recorded is not decided again (a later death of the same job
//! is).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redrive_client::{Client, DeadQuery, JobInfo, RedriveRequest};
use redrive_core::limits;
use redrive_core::model::{JobId, JobState, Outcome};
use redrive_core::time::{Clock, SystemClock};
use redrive_core::triage::{Escalation, NewProposal, ProposalResult};

use crate::redact::redact_text;
use serde::Serialize;
use serde_json::json;

pub use crate::audit::AuditRecord;
use crate::audit::{self, Memory};
use crate::group::{group, GroupKey};
use crate::model::{Action, Category, DeadCase, FailedAttempt};
use crate::policy::{Policy, RateLimiter, Verdict};
use crate::provider::{decide, Decided, Provider};
use crate::redact::redact_case;

/// Why a pass (or a step of one) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server refused a call or could not be reached.
    Server(redrive_client::Error),
    /// The audit log could not be read or appended to.
    Audit { path: PathBuf, source: std::io::Error },
    /// A line of the audit log is not an audit record.
    AuditRecord { path: PathBuf, line: usize, source: serde_json::Error },
    /// The agent approved its own auto-patch proposal and the patch applied to no job.
    NothingPatched { proposal: String, result: Option<ProposalResult> },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(e) => write!(f, "{e}"),
            Error::Audit { path, source } => write!(f, "audit log {}: {source}", path.display()),
            Error::AuditRecord { path, line, source } => {
                write!(f, "{} line {line}: {source}", path.display())
            }
            Error::NothingPatched { proposal, result } => {
                let result = serde_json::to_string(result).expect("serializes");
                write!(f, "the patch of proposal {proposal} applied to no job: {result}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Server(e) => Some(e),
            Error::Audit { source, .. } => Some(source),
            Error::AuditRecord { source, .. } => Some(source),
            Error::NothingPatched { .. } => None,
        }
    }
}

impl From<redrive_client::Error> for Error {
    fn from(e: redrive_client::Error) -> Error {
        Error::Server(e)
    }
}

pub struct Agent {
    pub client: Client,
    /// Base URL of the server, for the links in escalations.
    pub server_url: String,
    pub provider: Provider,
    /// The policy for queues without one of their own (below, or set on the server).
    pub policy: Policy,
    /// Policies by queue from the agent's policy file; a policy set on the server beats both.
    pub queue_policies: BTreeMap<String, Policy>,
    /// JSON pointers redacted from bodies before a model sees them.
    pub redact_pointers: Vec<String>,
    /// Slack-compatible webhook for escalations.
    pub webhook: Option<String>,
    pub audit_path: PathBuf,
    pub metrics: Arc<crate::metrics::TriageMetrics>,
    /// Where [`Agent::watch`] takes each pass's `now` from.
    pub clock: Arc<dyn Clock>,
    limiter: RateLimiter,
    /// Jobs this agent redrove whose outcome is not known yet, with the decision's category.
    following: BTreeMap<JobId, Category>,
    http: reqwest::Client,
}

/// Totals of one pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    /// Dead jobs read (at most `TRIAGE_PASS_JOBS_COUNT_MAX` of them undecided).
    pub dead_jobs: usize,
    /// Of those, deaths an earlier pass already decided.
    pub skipped: usize,
    pub groups: usize,
    pub executed: usize,
    pub proposed: usize,
    pub escalated: usize,
    pub recorded: usize,
    pub records: Vec<AuditRecord>,
}

/// An agent watching in the background ([`Agent::spawn_watch`]): stopping it lets the pass in
/// flight finish, so every redrive it made is in the audit log before the agent ends.
pub struct Watching {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Watching {
    /// Asks the agent to stop after its pass in flight and waits for it, at most `bound`; past
    /// that the pass is cut short (aborted) and `false` is returned.
    pub async fn stop(self, bound: Duration) -> bool {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        match tokio::time::timeout(bound, self.task).await {
            Ok(_) => true,
            Err(_) => {
                abort.abort();
                false
            }
        }
    }
}

impl Agent {
    pub fn new(
        client: Client,
        server_url: String,
        provider: Provider,
        audit_path: PathBuf,
    ) -> Agent {
        Agent {
            client,
            server_url,
            provider,
            policy: Policy::default(),
            queue_policies: BTreeMap::new(),
            redact_pointers: Vec::new(),
            webhook: None,
            audit_path,
            metrics: Default::default(),
            clock: Arc::new(SystemClock),
            limiter: RateLimiter::default(),
            following: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(limits::TRIAGE_WEBHOOK_TIMEOUT_MS))
                .build()
                .expect("client"),
        }
    }

    /// The dead jobs of `queue` this pass decides: pages are read in order, deaths `memory`
    /// already settled are counted and dropped, and reading stops at
    /// `TRIAGE_PASS_JOBS_COUNT_MAX` undecided ones. Returns them and how many were read.
    async fn dead_jobs(
        &self,
        queue: &str,
        memory: &Memory,
    ) -> Result<(Vec<JobInfo>, usize), Error> {
        let mut undecided = Vec::new();
        let mut read = 0;
        let page_max = limits::DEAD_PAGE_COUNT_MAX as u32;
        let mut query = DeadQuery { limit: Some(page_max), ..DeadQuery::default() };
        loop {
            let page = self.client.list_dead(queue, &query).await?;
            for job in page.jobs {
                if undecided.len() == limits::TRIAGE_PASS_JOBS_COUNT_MAX {
                    return Ok((undecided, read));
                }
                read += 1;
                if !memory.settled.contains(&(job.id, died_at(&job))) {
                    undecided.push(job);
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok((undecided, read)),
            }
        }
    }

    /// The queues to watch: `queues` if given, else every queue some queue names as its
    /// dead-letter queue.
    pub async fn dead_letter_queues(&self, queues: &[String]) -> Result<Vec<String>, Error> {
        if !queues.is_empty() {
            return Ok(queues.to_vec());
        }
        let all = self.client.list_queues().await?;
        let mut dlqs: Vec<String> =
            all.iter().filter_map(|q| q.config.dead_letter_queue.clone()).collect();
        dlqs.sort();
        dlqs.dedup();
        Ok(dlqs)
    }

    /// Runs a pass over every watched queue every `interval` until `stop` resolves; a pass in
    /// flight is finished first (its redrives must reach the audit log). A failed pass is
    /// logged and tried again at the next tick.
    pub async fn watch(
        &mut self,
        queues: &[String],
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            match self.dead_letter_queues(queues).await {
                Ok(dlqs) => {
                    for q in dlqs {
                        match self.run_once(&q, self.clock.now_ms()).await {
                            Ok(r) if r.groups > 0 => tracing::info!(
                                queue = %q, groups = r.groups, redriven = r.executed,
                                proposed = r.proposed, escalated = r.escalated, "triage pass"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(queue = %q, error = %e, "triage pass failed"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list queues for triage"),
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// [`Agent::watch`] on a task of its own, until [`Watching::stop`].
    pub fn spawn_watch(mut self, queues: Vec<String>, interval: Duration) -> Watching {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                // A dropped sender stops the agent too.
                let _ = stopped.await;
            };
            self.watch(&queues, interval, stopped).await;
        });
        Watching { stop, task }
    }

    /// The policy for `queue`: the one set on the server, else the policy file's, else the
    /// agent's default.
    pub async fn policy_for(&self, queue: &str) -> Result<Policy, Error> {
        match self.client.triage_policy(queue).await? {
            Some(p) => Ok(p),
            None => Ok(self.queue_policies.get(queue).unwrap_or(&self.policy).clone()),
        }
    }

    /// Counts how the jobs this agent redrove turned out: completed (or forgotten after
    /// completion), or dead again; the rest are followed on the next pass.
    async fn follow_outcomes(&mut self) {
        let ids: Vec<JobId> = self.following.keys().copied().collect();
        for id in ids {
            let done = match self.client.get_job(id).await {
                Ok(j) if j.dead.is_some() => Some(false),
                Ok(j) if j.state == JobState::Acked => Some(true),
                Ok(_) => None,
                Err(redrive_client::Error::NotFound { .. }) => Some(true),
                Err(_) => None,
            };
            if let Some(ok) = done {
                let category = self.following.remove(&id).expect("listed");
                self.metrics.outcome(category, ok);
            }
        }
    }

    /// One pass over `queue`'s dead jobs at `now` (ms).
    pub async fn run_once(&mut self, queue: &str, now: u64) -> Result<PassReport, Error> {
        self.follow_outcomes().await;
        let policy = self.policy_for(queue).await?;
        let memory = Memory::read(&self.audit_path)?;
        let (jobs, read) = self.dead_jobs(queue, &memory).await?;
        let mut report =
            PassReport { dead_jobs: read, skipped: read - jobs.len(), ..PassReport::default() };
        let cases: Vec<DeadCase> = jobs.iter().map(dead_case).collect();
        let groups = group(&cases);
        report.groups = groups.len();
        for (key, members) in groups {
            let rep = &cases[members[0]];
            let started = std::time::Instant::now();
            let decided = decide(&self.provider, rep, members.len(), &self.redact_pointers).await;
            if decided.model.is_some() {
                self.metrics.provider_call(
                    started.elapsed().as_micros() as u64,
                    decided.fallback.is_some(),
                    decided.prompt_tokens,
                    decided.completion_tokens,
                );
            }
            self.metrics.decision(decided.decision.category, decided.decision.action);
            decision_span(queue, &decided, members.iter().map(|&i| &jobs[i]));
            let mut verdicts = BTreeMap::new();
            let mut to_redrive = Vec::new();
            for &i in &members {
                let id = jobs[i].id;
                let v =
                    decided.verdict(&policy, memory.redriven.contains(&id), &mut self.limiter, now);
                if v == Verdict::Execute {
                    to_redrive.push(id);
                }
                verdicts.insert(id.to_string(), v);
            }
            let executed = self.execute(queue, &key, &decided, to_redrive, &mut verdicts).await;
            let with_verdict = |pick: fn(&Verdict) -> bool| -> Vec<JobId> {
                members
                    .iter()
                    .map(|&i| jobs[i].id)
                    .filter(|id| pick(&verdicts[&id.to_string()]))
                    .collect()
            };
            let proposed = with_verdict(|v| matches!(v, Verdict::Propose(_)));
            let escalated = with_verdict(|v| matches!(v, Verdict::Escalate(_)));
            let proposal = self.propose(queue, &key, &decided, &proposed, &verdicts, None).await;
            let (escalation, escalation_proposal) = if escalated.is_empty() {
                (None, None)
            } else {
                let e = self.escalate(&key, &decided, &escalated).await;
                // Stored on the server too, with its delivery, for a person to acknowledge.
                let p = self.propose(queue, &key, &decided, &escalated, &verdicts, Some(&e)).await;
                (Some(e), p)
            };
            self.metrics.redriven(executed.len() as u64);
            for id in &executed {
                self.following.insert(*id, decided.decision.category);
            }
            if let Some(e) = &escalation {
                self.metrics.escalation(e.delivered);
            }
            for v in verdicts.values() {
                self.metrics.verdict(v);
                match v {
                    Verdict::Execute => report.executed += 1,
                    Verdict::Propose(_) => report.proposed += 1,
                    Verdict::Escalate(_) => report.escalated += 1,
                    Verdict::Record(_) => report.recorded += 1,
                }
            }
            let record = AuditRecord {
                at_ms: now,
                queue: queue.to_owned(),
                source_queue: key.queue.clone(),
                signature: key.signature.clone(),
                shape: key.shape.clone(),
                job_ids: members.iter().map(|&i| jobs[i].id).collect(),
                provider: decided.provider.to_owned(),
                model: decided.model.clone(),
                prompt_version: decided.prompt_version.map(str::to_owned),
                input_hash: input_hash(&redact_case(rep, &self.redact_pointers)),
                raw_output: decided.raw_output.clone(),
                fallback: decided.fallback.clone(),
                decision: decided.decision.clone(),
                died_at: members
                    .iter()
                    .map(|&i| (jobs[i].id.to_string(), died_at(&jobs[i])))
                    .collect(),
                verdicts,
                proposal,
                escalation_proposal,
                executed,
                escalation,
                actor: "agent".into(),
            };
            audit::append(&self.audit_path, &record)?;
            report.records.push(record);
        }
        Ok(report)
    }

    /// Redrives the jobs the policy let run. A patched redrive (allowed by `auto_patch`) runs
    /// through the server's proposal store, which applies patches: the agent stores the proposal
    /// and approves it itself, so the record says who did it. Jobs that could not be redriven
    /// become proposals.
    async fn execute(
        &self,
        queue: &str,
        key: &GroupKey,
        decided: &Decided,
        ids: Vec<JobId>,
        verdicts: &mut BTreeMap<String, Verdict>,
    ) -> Vec<JobId> {
        if ids.is_empty() {
            return ids;
        }
        let outcome = match decided.decision.action {
            Action::Redrive => {
                let req = RedriveRequest {
                    ids: Some(ids.clone()),
                    delay_ms: decided.decision.delay_ms,
                    ..RedriveRequest::default()
                };
                self.client.redrive(queue, &req).await.map(|r| r.ids).map_err(Error::from)
            }
            _ => self.patch_through_server(queue, key, decided, &ids).await,
        };
        match outcome {
            Ok(done) => done,
            Err(e) => {
                for id in &ids {
                    verdicts
                        .insert(id.to_string(), Verdict::Propose(format!("executing failed: {e}")));
                }
                Vec::new()
            }
        }
    }

    async fn patch_through_server(
        &self,
        queue: &str,
        key: &GroupKey,
        decided: &Decided,
        ids: &[JobId],
    ) -> Result<Vec<JobId>, Error> {
        let mut patched = Vec::new();
        for chunk in ids.chunks(limits::TRIAGE_PROPOSAL_JOBS_COUNT_MAX) {
            patched.extend(self.patch_chunk(queue, key, decided, chunk).await?);
        }
        Ok(patched)
    }

    /// One proposal's worth of [`Agent::patch_through_server`].
    async fn patch_chunk(
        &self,
        queue: &str,
        key: &GroupKey,
        decided: &Decided,
        ids: &[JobId],
    ) -> Result<Vec<JobId>, Error> {
        let body = proposal(queue, key, decided, ids, "auto_patch: executed by the agent", None);
        let p = self.client.propose(&body).await?;
        let done = self
            .client
            .decide_proposal(&p.id, true, "redrive-triage-agent", Some("auto_patch"))
            .await?;
        let patched: Vec<JobId> = match &done.result {
            Some(ProposalResult::Patched { patched, .. }) => {
                patched.iter().map(|j| j.from).collect()
            }
            _ => Vec::new(),
        };
        if patched.is_empty() {
            return Err(Error::NothingPatched { proposal: p.id, result: done.result });
        }
        Ok(patched)
    }

    /// Stores a proposal on the server for the jobs a person decides (one per
    /// `TRIAGE_PROPOSAL_JOBS_COUNT_MAX` jobs); returns their ids (or why one could not be stored).
    async fn propose(
        &self,
        queue: &str,
        key: &GroupKey,
        decided: &Decided,
        ids: &[JobId],
        verdicts: &BTreeMap<String, Verdict>,
        escalation: Option<&Escalation>,
    ) -> Option<String> {
        let first = ids.first()?;
        let reason = match verdicts.get(&first.to_string()) {
            Some(Verdict::Propose(r) | Verdict::Escalate(r)) => r,
            _ => return None,
        };
        let mut stored = Vec::new();
        for chunk in ids.chunks(limits::TRIAGE_PROPOSAL_JOBS_COUNT_MAX) {
            let body = proposal(queue, key, decided, chunk, reason, escalation);
            stored.push(match self.client.propose(&body).await {
                Ok(p) => p.id,
                Err(e) => format!("not stored: {e}"),
            });
        }
        Some(stored.join(", "))
    }

    /// Posts one message per group to the webhook (Slack-compatible `text`), with retries.
    async fn escalate(&self, key: &GroupKey, decided: &Decided, ids: &[JobId]) -> Escalation {
        let Some(url) = &self.webhook else {
            return Escalation { delivered: false, error: Some("no webhook configured".into()) };
        };
        let d = &decided.decision;
        let links: Vec<String> = ids
            .iter()
            .take(limits::TRIAGE_ESCALATION_JOB_LINKS_COUNT_MAX)
            .map(|id| format!("{}/v1/jobs/{id}", self.server_url.trim_end_matches('/')))
            .collect();
        let text = format!(
            "redrive triage: {} dead job(s) from {} need a person. {} / {} (confidence {:.2}). {}",
            ids.len(),
            key.queue,
            d.category,
            d.action,
            d.confidence,
            d.analysis
        );
        let body = json!({
            "text": text,
            "queue": key.queue,
            "signature": key.signature,
            "count": ids.len(),
            "category": d.category,
            "action": d.action,
            "analysis": d.analysis,
            "jobs": links,
        });
        let mut last = String::new();
        for attempt in 0..limits::TRIAGE_WEBHOOK_ATTEMPTS_MAX {
            if attempt > 0 {
                let backoff = limits::TRIAGE_RETRY_BACKOFF_BASE_MS << attempt;
                tokio::time::sleep(Duration::from_millis(backoff)).await;
            }
            match self.http.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    return Escalation { delivered: true, error: None }
                }
                Ok(r) => last = format!("the webhook answered {}", r.status()),
                Err(e) => last = unreachable_webhook(e),
            }
        }
        Escalation { delivered: false, error: Some(last) }
    }
}

/// Why the webhook could not be reached, without its URL: a Slack-style webhook URL is itself
/// the secret (its path is the token), and this text is stored in the proposal, which anyone
/// with `read` sees, and in the audit log.
fn unreachable_webhook(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    format!("cannot reach the webhook ({kind}): {}", redact_text(&why))
}

/// A dead job as triage sees it: failed attempts and lease expiries become its error history.
pub fn dead_case(j: &JobInfo) -> DeadCase {
    let errors = j
        .attempts
        .iter()
        .filter_map(|a| match (a.outcome, &a.error) {
            (Outcome::Failed, Some(e)) => Some(FailedAttempt {
                kind: e.kind.clone(),
                message: e.message.clone(),
                detail: e.detail.clone(),
            }),
            (Outcome::LeaseExpired, _) => Some(FailedAttempt {
                kind: "LeaseExpired".into(),
                message: "the lease expired without a result (the worker died or hung)".into(),
                detail: None,
            }),
            _ => None,
        })
        .collect();
    DeadCase {
        queue: j.dead.as_ref().map_or_else(|| j.queue.clone(), |d| d.source_queue.clone()),
        body: j.body.clone().unwrap_or_default(),
        attributes: j.attributes.clone(),
        receive_count: j.receive_count,
        errors,
    }
}

/// A proposal as the server stores it (`POST /v1/triage/proposals`).
fn proposal(
    queue: &str,
    key: &GroupKey,
    decided: &Decided,
    ids: &[JobId],
    reason: &str,
    escalation: Option<&Escalation>,
) -> NewProposal {
    NewProposal {
        queue: queue.to_owned(),
        source_queue: key.queue.clone(),
        signature: key.signature.clone(),
        job_ids: ids.to_vec(),
        decision: decided.decision.clone(),
        reason: reason.to_owned(),
        escalation: escalation.cloned(),
    }
}

fn died_at(j: &JobInfo) -> u64 {
    j.dead.as_ref().map_or(0, |d| d.died_at)
}

fn input_hash(case: &DeadCase) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(case).expect("serializes");
    redrive_core::model::hex(&Sha256::digest(text.as_bytes()))
}

/// A `triage <queue>` span for one group's decision, linked to the creation context of each of
/// its jobs (the first 128), so a job's trace shows why it was redriven, held or escalated.
/// Made on the global tracer provider: the server's when the agent runs in process.
fn decision_span<'a>(queue: &str, decided: &Decided, jobs: impl Iterator<Item = &'a JobInfo>) {
    use opentelemetry::trace::{Link, Span as _, SpanKind, Tracer as _};
    use opentelemetry::KeyValue;
    let jobs: Vec<&JobInfo> = jobs.collect();
    let links = jobs
        .iter()
        .filter_map(|j| j.traceparent.as_deref().and_then(redrive_client::trace::creation_context))
        .take(128)
        .map(Link::with_context)
        .collect();
    let d = &decided.decision;
    let mut attrs = vec![
        KeyValue::new("messaging.system", "redrive"),
        KeyValue::new("messaging.destination.name", queue.to_owned()),
        KeyValue::new("redrive.triage.category", d.category.to_string()),
        KeyValue::new("redrive.triage.action", d.action.to_string()),
        KeyValue::new("redrive.triage.confidence", d.confidence),
        KeyValue::new("messaging.batch.message_count", jobs.len() as i64),
    ];
    if let [one] = jobs.as_slice() {
        attrs.push(KeyValue::new("messaging.message.id", one.id.to_string()));
        attrs.push(KeyValue::new("redrive.job.attempt", i64::from(one.receive_count)));
    }
    let tracer = opentelemetry::global::tracer("redrive-triage");
    let mut span = tracer
        .span_builder(format!("triage {queue}"))
        .with_kind(SpanKind::Internal)
        .with_links(links)
        .with_attributes(attrs)
        .start(&tracer);
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_webhook_is_described_without_its_url() {
        // Port 9 (discard) is closed on loopback: the connection is refused.
        let url = "http://127.0.0.1:9/services/T0001/B0002/SECRETTOKEN123";
        let e = reqwest::Client::new().post(url).send().await.expect_err("nothing listens");
        let why = unreachable_webhook(e);
        assert!(why.starts_with("cannot reach the webhook (connection failed)"), "{why}");
        assert!(!why.contains("SECRETTOKEN123") && !why.contains("/services/"), "{why}");
    }
}
