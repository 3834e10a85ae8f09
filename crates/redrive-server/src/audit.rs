//! The audit log: every privileged action (queue create/update/delete/purge, redrive, key
//! create/revoke, proposal approve/reject, policy change) and authentication failures in
//! aggregate, each with who (key id, or `anonymous` on a server without `--auth`), what, on
//! what, when and from where (the client's address). Each entry is logged as one JSON line (target `redrive::audit`)
//! and kept in the store as an [`DocKind::Audit`] document (time-ordered ids), the newest
//! `AUDIT_ENTRIES_COUNT_MAX` of them, for `GET /v1/audit` on any server.
//!
//! Recording never fails the action it records: the action has happened; a store that cannot
//! take the entry is logged as such.

use std::sync::Mutex;

use redrive_core::broker::DocKind;
use redrive_core::time::{to_rfc3339, Clock, SystemClock};
use redrive_core::{limits, Broker, Error, Result};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::Shared;

tokio::task_local! {
    /// The address of the client whose request is being served, set by `auth::require`.
    pub static FROM: Option<std::net::IpAddr>;
}

/// The client's address, if a request is being served and the socket told it.
fn from() -> Option<String> {
    FROM.try_with(|f| f.map(|a| a.to_string())).ok().flatten()
}

/// How often authentication failures are written, as one entry with their counts.
const FAILURES_EVERY_MS: u64 = 60_000;

pub async fn record<B: Broker>(
    s: &Shared<B>,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: Value,
) {
    let who = caller.key_id().unwrap_or("anonymous");
    write(s, json!({"key": who, "action": action, "target": target, "detail": detail})).await;
}

async fn write<B: Broker>(s: &Shared<B>, mut entry: Value) {
    let now = SystemClock.now_ms();
    entry["at"] = json!(to_rfc3339(now));
    if entry.get("from").is_none() {
        entry["from"] = json!(from());
    }
    let text = entry.to_string();
    tracing::info!(target: "redrive::audit", "{text}");
    let id = uuid::Uuid::now_v7().to_string();
    let mut r = s.broker.put_doc(DocKind::Audit, id.clone(), Some(text.clone())).await;
    if matches!(r, Err(Error::LimitExceeded { .. })) {
        r = make_room(&s.broker).await;
        if r.is_ok() {
            r = s.broker.put_doc(DocKind::Audit, id, Some(text)).await;
        }
    }
    if let Err(e) = r {
        tracing::error!(error = %e, "an audit entry could not be stored (it is in this log)");
    }
}

/// Drops the oldest tenth of the stored entries.
async fn make_room<B: Broker>(broker: &B) -> Result<()> {
    let docs = broker.list_docs(DocKind::Audit).await?;
    for (k, _) in docs.into_iter().take(limits::AUDIT_ENTRIES_COUNT_MAX / 10) {
        broker.put_doc(DocKind::Audit, k, None).await?;
    }
    Ok(())
}

/// The newest `limit` entries, oldest first.
pub async fn recent<B: Broker>(broker: &B, limit: usize) -> Result<Vec<Value>> {
    let docs = broker.list_docs(DocKind::Audit).await?;
    let skip = docs.len().saturating_sub(limit);
    Ok(docs.into_iter().skip(skip).filter_map(|(_, v)| serde_json::from_str(&v).ok()).collect())
}

/// Authentication failures since the last entry that counted them, by reason.
#[derive(Default)]
pub struct Failures {
    inner: Mutex<(u64, std::collections::BTreeMap<String, u64>)>,
}

impl Failures {
    /// Counts one; every `FAILURES_EVERY_MS` the counts become an audit entry.
    pub async fn count<B: Broker>(s: &Shared<B>, reason: &str) {
        let flush = {
            let mut g = s.auth_failures.inner.lock().expect("failures lock");
            *g.1.entry(reason.to_string()).or_default() += 1;
            let now = SystemClock.now_ms();
            if now >= g.0 + FAILURES_EVERY_MS {
                g.0 = now;
                Some(std::mem::take(&mut g.1))
            } else {
                None
            }
        };
        if let Some(counts) = flush {
            let entry = json!({"key": null, "action": "auth.failures", "target": "",
                               "detail": {"counts": counts}});
            write(s, entry).await;
        }
    }
}
