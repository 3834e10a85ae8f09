//! One triage pass over a dead-letter queue, as a client of the native API: read every dead job
//! with its attempt log, group, decide once per group, apply the policy per job, execute what may
//! run (redrives, by id, with the decision's delay), escalate to a webhook, and append one audit
//! record per group to a JSON-lines file. Decisions the policy leaves to a person are stored on
//! the server as proposals (`/v1/triage/proposals`). The audit log is also the agent's memory: a
//! job it redrove that is dead again is escalated, never redriven a second time, and a death it
//! already proposed, escalated or recorded is not decided again (a later death of the same job
//! is).

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use redrive_client::{Client, DeadQuery, JobInfo, RedriveRequest};
use redrive_core::limits;
use redrive_core::model::{JobId, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::group::{group, GroupKey};
use crate::model::{Action, DeadCase, FailedAttempt};
use crate::policy::{Policy, RateLimiter, Verdict};
use crate::provider::{decide, Decided, Provider};
use crate::redact::redact_case;

/// Dead jobs read per page.
const PAGE: u32 = 1000;
/// Job ids listed in an escalation message at most.
const ESCALATION_IDS_MAX: usize = 20;
const WEBHOOK_ATTEMPTS: u32 = 3;

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
    pub metrics: std::sync::Arc<crate::metrics::TriageMetrics>,
    limiter: RateLimiter,
    /// Jobs this agent redrove whose outcome is not known yet, with the decision's category.
    following: BTreeMap<JobId, crate::model::Category>,
    http: reqwest::Client,
}

/// What a pass did with one group: the audit record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub queue: String,
    pub source_queue: String,
    pub signature: String,
    pub shape: String,
    pub job_ids: Vec<JobId>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
    /// A hash of the redacted input the provider saw (the input itself is not kept).
    pub input_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub decision: Value,
    /// Job id → the policy's verdict for it.
    pub verdicts: BTreeMap<String, Verdict>,
    /// Job id → when it died (ms), so a later death of the same job is told apart.
    #[serde(default)]
    pub died_at: BTreeMap<String, u64>,
    /// The proposal stored on the server for the jobs a person decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    /// The escalation as stored on the server (a proposal to acknowledge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_proposal: Option<String>,
    /// Jobs redriven by this pass.
    pub executed: Vec<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    pub actor: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Escalation {
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Totals of one pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub dead_jobs: usize,
    pub skipped: usize,
    pub groups: usize,
    pub executed: usize,
    pub proposed: usize,
    pub escalated: usize,
    pub recorded: usize,
    pub records: Vec<AuditRecord>,
}

/// What earlier passes did, read back from the audit log.
#[derive(Default)]
struct Memory {
    redriven: HashSet<JobId>,
    /// Deaths already decided: (job, died at).
    settled: HashSet<(JobId, u64)>,
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
            limiter: RateLimiter::default(),
            following: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    fn memory(&self) -> Result<Memory, String> {
        let mut m = Memory::default();
        let text = match std::fs::read_to_string(&self.audit_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(m),
            Err(e) => return Err(format!("reading {}: {e}", self.audit_path.display())),
        };
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let r: AuditRecord = serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", self.audit_path.display(), i + 1))?;
            m.redriven.extend(r.executed.iter().copied());
            for (id, v) in &r.verdicts {
                if let (false, Ok(job), Some(at)) =
                    (*v == Verdict::Execute, id.parse(), r.died_at.get(id))
                {
                    m.settled.insert((job, *at));
                }
            }
        }
        Ok(m)
    }

    async fn dead_jobs(&self, queue: &str) -> Result<Vec<JobInfo>, String> {
        let mut all = Vec::new();
        let mut query = DeadQuery { limit: Some(PAGE), ..DeadQuery::default() };
        loop {
            let page = self.client.list_dead(queue, &query).await.map_err(|e| e.to_string())?;
            all.extend(page.jobs);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The queues to watch: `queues` if given, else every queue some queue names as its
    /// dead-letter queue.
    pub async fn dead_letter_queues(&self, queues: &[String]) -> Result<Vec<String>, String> {
        if !queues.is_empty() {
            return Ok(queues.to_vec());
        }
        let all = self.client.list_queues().await.map_err(|e| e.to_string())?;
        let mut dlqs: Vec<String> =
            all.iter().filter_map(|q| q.config.dead_letter_queue.clone()).collect();
        dlqs.sort();
        dlqs.dedup();
        Ok(dlqs)
    }

    /// Runs a pass over every watched queue every `interval` until `stop` resolves. A failed
    /// pass is logged and tried again at the next tick.
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
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        match self.run_once(&q, now).await {
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

    /// The policy for `queue`: the one set on the server, else the policy file's, else the
    /// agent's default.
    pub async fn policy_for(&self, queue: &str) -> Result<Policy, String> {
        match self.client.triage_policy(queue).await {
            Ok(Some(v)) => serde_json::from_value(v)
                .map_err(|e| format!("the server's policy for {queue}: {e}")),
            Ok(None) => Ok(self.queue_policies.get(queue).unwrap_or(&self.policy).clone()),
            Err(e) => Err(format!("reading the policy for {queue}: {e}")),
        }
    }

    /// Counts how the jobs this agent redrove turned out: completed (or forgotten after
    /// completion), or dead again; the rest are followed on the next pass.
    async fn follow_outcomes(&mut self) {
        let ids: Vec<JobId> = self.following.keys().copied().collect();
        for id in ids {
            let done = match self.client.get_job(id).await {
                Ok(j) if j.dead.is_some() => Some(false),
                Ok(j) if j.state == redrive_core::model::JobState::Acked => Some(true),
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
    pub async fn run_once(&mut self, queue: &str, now: u64) -> Result<PassReport, String> {
        self.follow_outcomes().await;
        let policy = self.policy_for(queue).await?;
        let memory = self.memory()?;
        let jobs = self.dead_jobs(queue).await?;
        let mut report = PassReport { dead_jobs: jobs.len(), ..PassReport::default() };
        let (jobs, skipped): (Vec<JobInfo>, Vec<JobInfo>) =
            jobs.into_iter().partition(|j| !memory.settled.contains(&(j.id, died_at(j))));
        report.skipped = skipped.len();
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
            let proposed: Vec<JobId> = members
                .iter()
                .map(|&i| jobs[i].id)
                .filter(|id| matches!(verdicts[&id.to_string()], Verdict::Propose(_)))
                .collect();
            let proposal = self.propose(queue, &key, &decided, &proposed, &verdicts, None).await;
            let escalated: Vec<JobId> = members
                .iter()
                .map(|&i| jobs[i].id)
                .filter(|id| matches!(verdicts[&id.to_string()], Verdict::Escalate(_)))
                .collect();
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
                decision: serde_json::to_value(&decided.decision).expect("serializes"),
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
            self.append(&record)?;
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
                self.client.redrive(queue, &req).await.map(|r| r.ids).map_err(|e| e.to_string())
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
    ) -> Result<Vec<JobId>, String> {
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
    ) -> Result<Vec<JobId>, String> {
        let body = proposal(queue, key, decided, ids, "auto_patch: executed by the agent", None);
        let p = self.client.propose(&body).await.map_err(|e| e.to_string())?;
        let id = p["id"].as_str().ok_or("the server answered no proposal id")?;
        let done = self
            .client
            .decide_proposal(id, true, "redrive-triage-agent", Some("auto_patch"))
            .await
            .map_err(|e| e.to_string())?;
        let patched: Vec<JobId> = done["result"]["patched"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["from"].as_str()?.parse().ok())
            .collect();
        if patched.is_empty() {
            return Err(format!("the patch applied to no job: {}", done["result"]));
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
                Ok(p) => p["id"].as_str().unwrap_or("(no id)").to_owned(),
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
            .take(ESCALATION_IDS_MAX)
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
        for attempt in 0..WEBHOOK_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            match self.http.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    return Escalation { delivered: true, error: None }
                }
                Ok(r) => last = format!("the webhook answered {}", r.status()),
                Err(e) => last = format!("cannot reach the webhook: {e}"),
            }
        }
        Escalation { delivered: false, error: Some(last) }
    }

    fn append(&self, record: &AuditRecord) -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.audit_path)
            .map_err(|e| format!("opening {}: {e}", self.audit_path.display()))?;
        let line = serde_json::to_string(record).expect("serializes");
        writeln!(f, "{line}").map_err(|e| format!("writing {}: {e}", self.audit_path.display()))
    }
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
) -> Value {
    json!({
        "queue": queue,
        "source_queue": key.queue,
        "signature": key.signature,
        "job_ids": ids,
        "decision": decided.decision,
        "reason": reason,
        "escalation": escalation,
    })
}

fn died_at(j: &JobInfo) -> u64 {
    j.dead.as_ref().map_or(0, |d| d.died_at)
}

fn input_hash(case: &DeadCase) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(case).expect("serializes");
    redrive_core::model::hex(&Sha256::digest(text.as_bytes()))
}
