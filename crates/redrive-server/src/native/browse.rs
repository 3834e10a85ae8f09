//! The job browser the dashboard stands on: jobs of a queue by state, priority, error, time
//! and payload; deleting a selection or everything a filter matches; dead letters grouped by
//! failure signature; redriving one dead job with its body repaired by a JSON Patch; pausing a
//! queue; and who the caller is.
//!
//! The store filters by what it indexes (state, priority, time, error type). Payload filters
//! (`where`, `text`) are matched here, on opened bodies, so they work the same on both stores
//! and with encryption at rest; a request reads at most [`SCAN_MAX`] jobs and answers `next`
//! to go on from.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use redrive_core::broker::{DeadFilter, JobFilter, JobInfo, RedriveRequest};
use redrive_core::model::{signature, JobId, JobState, Priority};
use redrive_core::time::from_rfc3339;
use redrive_core::{limits, Broker, Error, QueuePatch, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{Action, Caller};
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::reply::Json;
use crate::triage::execute::patched_redrive;
use crate::Shared;

/// Jobs a payload-filtered request reads from the store at most.
const SCAN_MAX: usize = 10_000;
/// Jobs one store call reads while matching payloads.
const SCAN_PAGE: usize = 1_000;
const PAGE_DEFAULT: usize = 100;

/// One payload condition: `$.a.b=VALUE` on the JSON body, `@NAME=VALUE` on an attribute.
#[derive(Clone, Debug, PartialEq)]
enum Where {
    Body { path: Vec<String>, raw: String, value: Value },
    Attribute { name: String, raw: String },
}

impl Where {
    fn parse(s: &str) -> Result<Where> {
        let bad =
            || Error::invalid("where", format!("{s:?}: expected $.path=VALUE or @attribute=VALUE"));
        let (lhs, raw) = s.split_once('=').ok_or_else(bad)?;
        let raw = raw.to_owned();
        if let Some(name) = lhs.strip_prefix('@') {
            return if name.is_empty() {
                Err(bad())
            } else {
                Ok(Where::Attribute { name: name.into(), raw })
            };
        }
        let rest = lhs.strip_prefix('$').ok_or_else(bad)?;
        let path: Vec<String> = match rest {
            "" => Vec::new(),
            r => r.strip_prefix('.').ok_or_else(bad)?.split('.').map(str::to_owned).collect(),
        };
        if path.iter().any(String::is_empty) {
            return Err(bad());
        }
        let value = serde_json::from_str(&raw).unwrap_or_else(|_| Value::String(raw.clone()));
        Ok(Where::Body { path, raw, value })
    }

    fn matches(&self, job: &JobInfo, body: Option<&Value>) -> bool {
        match self {
            Where::Attribute { name, raw } => job.attributes.get(name) == Some(raw),
            Where::Body { path, raw, value } => {
                let mut at = body;
                for seg in path {
                    at = at.and_then(|v| match v {
                        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                        v => v.get(seg),
                    });
                }
                // `$.id=42` finds `42` and `"42"` alike: a URL cannot say which was meant.
                at.is_some_and(|v| v == value || v.as_str() == Some(raw.as_str()))
            }
        }
    }
}

/// A whole filter: what the store matches, and the payload conditions matched here.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    state: Vec<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default, rename = "where")]
    where_: Vec<String>,
    #[serde(default)]
    text: Option<String>,
}

struct Compiled {
    store: JobFilter,
    wheres: Vec<Where>,
    text: Option<String>,
}

fn time(field: &'static str, v: &Option<String>) -> Result<Option<u64>> {
    v.as_deref()
        .map(|s| from_rfc3339(s).ok_or_else(|| Error::invalid(field, "expected an RFC 3339 time")))
        .transpose()
}

fn state(s: &str) -> Result<JobState> {
    // The dashboard says "completed" for what the job status calls "acked".
    let s = if s == "completed" { "acked" } else { s };
    JobState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
        Error::invalid("state", format!("{s:?}: one of delayed, ready, leased, dead, completed"))
    })
}

impl Filter {
    fn compile(&self) -> Result<Compiled> {
        let states = self.state.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty());
        Ok(Compiled {
            store: JobFilter {
                states: states.map(state).collect::<Result<_>>()?,
                priority: self.priority,
                error_type: self.error_type.clone(),
                since: time("since", &self.since)?,
                until: time("until", &self.until)?,
            },
            wheres: self.where_.iter().map(|w| Where::parse(w)).collect::<Result<_>>()?,
            text: self.text.as_ref().map(|t| t.to_lowercase()),
        })
    }
}

impl Compiled {
    fn payload_free(&self) -> bool {
        self.wheres.is_empty() && self.text.is_none()
    }

    fn matches(&self, job: &JobInfo) -> bool {
        let body = job.body.as_deref();
        if let Some(t) = &self.text {
            if !body.is_some_and(|b| b.to_lowercase().contains(t)) {
                return false;
            }
        }
        if self.wheres.is_empty() {
            return true;
        }
        // Parsed once per job, and only when a condition needs it.
        let parsed: Option<Value> = body.and_then(|b| serde_json::from_str(b).ok());
        self.wheres.iter().all(|w| w.matches(job, parsed.as_ref()))
    }
}

#[derive(Serialize)]
pub struct Page {
    jobs: Vec<JobInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<JobId>,
    /// Jobs read to answer (payload filters read more than they return).
    scanned: usize,
}

/// Up to `limit` jobs matching `f` after `after`, reading at most `budget` jobs.
async fn find<B: Broker>(
    s: &Shared<B>,
    queue: &str,
    f: &Compiled,
    mut after: Option<JobId>,
    limit: usize,
    budget: usize,
) -> Result<Page> {
    if f.payload_free() {
        let page = s.broker.list_jobs(queue.to_owned(), f.store.clone(), after, limit).await?;
        let scanned = page.jobs.len();
        return Ok(Page { jobs: page.jobs, next: page.next, scanned });
    }
    let mut jobs = Vec::new();
    let mut scanned = 0;
    loop {
        let page = s.broker.list_jobs(queue.to_owned(), f.store.clone(), after, SCAN_PAGE).await?;
        for job in page.jobs {
            scanned += 1;
            after = Some(job.id);
            if f.matches(&job) {
                jobs.push(job);
            }
            if jobs.len() == limit || scanned == budget {
                // There may be more: the caller asks again from here.
                return Ok(Page { jobs, next: after, scanned });
            }
        }
        if page.next.is_none() {
            return Ok(Page { jobs, next: None, scanned });
        }
    }
}

/// `GET /v1/queues/{q}/jobs`: the query string holds the filter (`where` may repeat), `after`
/// and `limit`.
pub async fn list<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page>> {
    let mut f = Filter::default();
    let (mut after, mut limit) = (None, PAGE_DEFAULT);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "state" => f.state.push(v),
            "priority" => {
                f.priority = Some(
                    serde_json::from_value(Value::String(v))
                        .map_err(|_| Error::invalid("priority", "one of high, standard, low"))?,
                )
            }
            "error_type" => f.error_type = Some(v),
            "since" => f.since = Some(v),
            "until" => f.until = Some(v),
            "where" => f.where_.push(v),
            "text" => f.text = Some(v),
            "after" => {
                after = Some(v.parse::<JobId>().map_err(|()| Error::invalid("after", "a job id"))?)
            }
            "limit" => {
                limit = v.parse().map_err(|_| Error::invalid("limit", "a number"))?;
            }
            other => {
                return Err(
                    Error::MalformedRequest(format!("unknown query parameter {other:?}")).into()
                )
            }
        }
    }
    let limit = limit.clamp(1, limits::DEAD_PAGE_COUNT_MAX);
    Ok(Json(find(&s, &q, &f.compile()?, after, limit, SCAN_MAX).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    #[serde(default)]
    ids: Option<Vec<JobId>>,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize)]
struct Skip {
    id: JobId,
    reason: &'static str,
}

/// `POST /v1/queues/{q}/jobs/delete`: the named jobs, or every job the filter matches (at most
/// `REDRIVE_COUNT_MAX` a call, among as many read; call again for more). Leased jobs are left
/// to their worker.
pub async fn delete<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
    JsonBody(b): JsonBody<DeleteRequest>,
) -> ApiResult<Json<Value>> {
    let mut picked: Vec<JobId> = Vec::new();
    let mut skipped: Vec<Skip> = Vec::new();
    match (b.ids, b.filter) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("ids", "give ids or filter, not both").into())
        }
        (Some(ids), None) => {
            s.broker.get_queue(q.clone()).await?;
            if ids.len() > limits::REDRIVE_COUNT_MAX {
                let why = format!("at most {} ids", limits::REDRIVE_COUNT_MAX);
                return Err(Error::invalid("ids", why).into());
            }
            let mut seen = std::collections::HashSet::new();
            for id in ids.into_iter().filter(|id| seen.insert(id.0)) {
                match s.broker.get_job(id).await {
                    Ok(j) if j.queue == q && j.state != JobState::Acked => picked.push(id),
                    Ok(_) | Err(Error::JobNotFound(_)) => {
                        skipped.push(Skip { id, reason: "not_found" })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        (None, filter) => {
            let f = filter.unwrap_or_default().compile()?;
            let mut after = None;
            // At most REDRIVE_COUNT_MAX jobs picked, and read: a call again goes on from there.
            let mut scanned = 0;
            while picked.len() < limits::REDRIVE_COUNT_MAX && scanned < limits::REDRIVE_COUNT_MAX {
                let want = limits::REDRIVE_COUNT_MAX - picked.len();
                let budget = limits::REDRIVE_COUNT_MAX - scanned;
                let page = find(&s, &q, &f, after, want.min(SCAN_PAGE), budget).await?;
                scanned += page.scanned;
                picked.extend(page.jobs.iter().map(|j| j.id));
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
    }
    let mut deleted = Vec::new();
    for id in picked {
        if b.dry_run {
            // What the delete below would answer, job by job.
            match s.broker.get_job(id).await.map(|j| j.state) {
                Ok(JobState::Leased) => skipped.push(Skip { id, reason: "leased" }),
                Ok(JobState::Acked) | Err(Error::JobNotFound(_)) => {
                    skipped.push(Skip { id, reason: "not_found" })
                }
                Ok(_) => deleted.push(id),
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        match s.broker.delete_job(id).await {
            Ok(()) => deleted.push(id),
            Err(Error::JobNotFound(_)) => skipped.push(Skip { id, reason: "not_found" }),
            // The one refusal for a job that exists: it is leased.
            Err(Error::InvalidParameter { .. }) => skipped.push(Skip { id, reason: "leased" }),
            Err(e) => return Err(e.into()),
        }
    }
    if !b.dry_run {
        crate::audit::record(
            &s,
            &caller,
            "queue.delete_jobs",
            &q,
            json!({"deleted": deleted.len()}),
        )
        .await;
    }
    let mut out = json!({"deleted": deleted.len(), "dry_run": b.dry_run, "ids": deleted});
    if !skipped.is_empty() {
        out["skipped"] = json!(skipped);
    }
    Ok(Json(out))
}

#[derive(Serialize)]
struct Group {
    signature: String,
    error_type: Option<String>,
    count: u64,
    #[serde(with = "redrive_core::time::rfc3339")]
    first_seen: u64,
    #[serde(with = "redrive_core::time::rfc3339")]
    last_seen: u64,
    source_queues: Vec<String>,
    example_id: JobId,
}

/// `GET /v1/queues/{q}/dead/groups`: the dead letters of `q` by failure signature (jobs whose
/// log holds no error group as `"(no error)"`), biggest group first; first/last seen are death
/// times. Reads at most `REDRIVE_COUNT_MAX` dead letters.
pub async fn dead_groups<B: Broker>(
    State(s): State<Shared<B>>,
    Path(q): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let (mut after, mut read) = (None, 0);
    loop {
        let page = s
            .broker
            .list_dead(q.clone(), DeadFilter::default(), after, limits::DEAD_PAGE_COUNT_MAX)
            .await?;
        for j in &page.jobs {
            let err = j.attempts.iter().rev().find_map(|a| a.error.as_ref());
            let sig =
                err.map_or_else(|| "(no error)".to_owned(), |e| signature(&e.kind, &e.message));
            let (died, source) = j
                .dead
                .as_ref()
                .map_or((j.visible_at, q.clone()), |d| (d.died_at, d.source_queue.clone()));
            let g = groups.entry(sig.clone()).or_insert_with(|| Group {
                signature: sig,
                error_type: err.map(|e| e.kind.clone()),
                count: 0,
                first_seen: died,
                last_seen: died,
                source_queues: Vec::new(),
                example_id: j.id,
            });
            g.count += 1;
            g.first_seen = g.first_seen.min(died);
            g.last_seen = g.last_seen.max(died);
            if !g.source_queues.contains(&source) {
                g.source_queues.push(source);
            }
        }
        read += page.jobs.len();
        match page.next {
            Some(n) if read < limits::REDRIVE_COUNT_MAX => after = Some(n),
            _ => break,
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.signature.cmp(&b.signature)));
    Ok(Json(json!({ "groups": groups })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveOne {
    #[serde(default)]
    patch: Option<Value>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/jobs/{id}/redrive`: one dead job back to work, its body repaired by `patch` (the
/// repaired copy replaces it, as an approved `redrive_patched` proposal does) or as it is.
pub async fn redrive_one<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RedriveOne>,
) -> ApiResult<Json<Value>> {
    let id: JobId = id.parse().map_err(|()| Error::invalid("id", "not a job id"))?;
    let job = s.broker.get_job(id).await?;
    caller.allow(Action::Manage, &job.queue)?;
    let dead = job
        .dead
        .as_ref()
        .ok_or_else(|| Error::invalid("id", format!("job {id} is not a dead job")))?;
    let target = b.to.clone().unwrap_or_else(|| dead.source_queue.clone());
    caller.allow(Action::Send, &target)?;
    let Some(patch) = b.patch else {
        // No repair: the job itself goes back, as it is, with its lineage.
        let req = RedriveRequest {
            ids: Some(vec![id]),
            to: Some(target.clone()),
            dry_run: b.dry_run,
            ..RedriveRequest::default()
        };
        let r = s.broker.redrive(job.queue.clone(), req).await?;
        if let Some(skip) = r.skipped.first() {
            let why = format!("job {id} cannot be redriven now: {:?}", skip.reason);
            return Err(Error::invalid("id", why).into());
        }
        if !b.dry_run {
            crate::traces::redriven(&s, &job.queue, &r.ids).await;
            let detail = json!({"id": id, "to": target});
            crate::audit::record(&s, &caller, "job.redrive", &job.queue, detail).await;
        }
        let body = job.body.unwrap_or_default();
        return Ok(Json(json!({"id": id, "queue": target, "body": body, "dry_run": b.dry_run})));
    };
    crate::triage::patch::check_shape(&patch)
        .map_err(|e| Error::invalid("patch", e.to_string()))?;
    let r = patched_redrive(&s, id, &patch, Some(target), b.dry_run, "id").await?;
    if let (false, Some(copy)) = (b.dry_run, r.id) {
        crate::traces::redriven(&s, &job.queue, &[copy]).await;
        let detail = json!({"id": id, "to": r.queue, "new_id": r.id, "patch": patch});
        crate::audit::record(&s, &caller, "job.redrive", &job.queue, detail).await;
    }
    Ok(Json(
        json!({"id": r.id.unwrap_or(id), "queue": r.queue, "body": r.body, "dry_run": b.dry_run}),
    ))
}

async fn set_paused<B: Broker>(
    s: &Shared<B>,
    caller: &Caller,
    q: String,
    paused: bool,
) -> ApiResult<Json<Value>> {
    let patch = QueuePatch { paused: Some(paused), ..QueuePatch::default() };
    s.broker.get_queue(q.clone()).await?;
    let (info, _) = s.broker.put_queue(q.clone(), patch).await?;
    let action = if paused { "queue.pause" } else { "queue.resume" };
    crate::audit::record(s, caller, action, &q, json!({})).await;
    Ok(Json(serde_json::to_value(info).map_err(|e| Error::Internal(e.to_string()))?))
}

/// `POST /v1/queues/{q}/pause`: the queue takes jobs but hands none out.
pub async fn pause<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
) -> ApiResult<Json<Value>> {
    set_paused(&s, &caller, q, true).await
}

pub async fn resume<B: Broker>(
    State(s): State<Shared<B>>,
    caller: Caller,
    Path(q): Path<String>,
) -> ApiResult<Json<Value>> {
    set_paused(&s, &caller, q, false).await
}

/// `GET /v1/whoami`: the key the request came with and its grants, so a client (the dashboard)
/// can offer only what the key may do.
pub async fn whoami<B: Broker>(State(s): State<Shared<B>>, caller: Caller) -> Json<Value> {
    match caller {
        Caller::Key(k) => {
            Json(json!({"auth": true, "key_id": k.id, "name": k.name, "grants": k.allow}))
        }
        Caller::Anonymous => Json(json!({"auth": s.auth.enabled})),
    }
}
