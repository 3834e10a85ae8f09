//! Recent history for the dashboard's charts: every [`FINE_STEP_MS`] the server samples each
//! queue's depth and lifetime totals and keeps them for [`FINE_KEEP`] steps (six hours), and
//! every [`COARSE_EVERY`]th sample also goes to a second ring kept for seven days. Totals are
//! cumulative, so a chart's rates are differences between points and a point lost here and
//! there loses no event. History lives in memory: a restarted server starts a new one, and
//! each server of a PostgreSQL fleet keeps its own (the totals it samples are the fleet's).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{Broker, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::Shared;

pub const FINE_STEP_MS: u64 = 10_000;
const FINE_KEEP: usize = 6 * 360;
const COARSE_EVERY: u64 = 30;
const COARSE_KEEP: usize = 7 * 24 * 12;
/// Queues sampled at most, the first by name; the others are left out of the charts.
pub const HISTORY_QUEUES_MAX: usize = 200;
/// Points one answer holds at most (longer windows are thinned evenly).
const POINTS_MAX: usize = 400;

#[derive(Clone, Debug, Default, Serialize)]
pub struct QueuePoint {
    ready: u64,
    delayed: u64,
    leased: u64,
    dead: u64,
    dead_letters: u64,
    oldest_ready_age_ms: u64,
    enqueued: u64,
    delivered: u64,
    acked: u64,
    failed: u64,
    dead_lettered: u64,
}

#[derive(Clone, Debug, Serialize)]
struct Point {
    #[serde(with = "redrive_core::time::rfc3339")]
    at: u64,
    queues: BTreeMap<String, QueuePoint>,
}

#[derive(Default)]
pub struct History {
    fine: Mutex<VecDeque<Point>>,
    coarse: Mutex<VecDeque<Point>>,
    taken: std::sync::atomic::AtomicU64,
}

fn push(ring: &Mutex<VecDeque<Point>>, p: Point, keep: usize) {
    let mut r = ring.lock().expect("history lock");
    if r.len() == keep {
        r.pop_front();
    }
    r.push_back(p);
}

impl History {
    async fn sample<B: Broker>(&self, broker: &B) -> redrive_core::Result<()> {
        let mut queues = BTreeMap::new();
        for q in broker.list_queues().await?.into_iter().take(HISTORY_QUEUES_MAX) {
            let (c, t) = (&q.stats.counts, &q.stats.totals);
            let p = QueuePoint {
                ready: c.ready,
                delayed: c.delayed,
                leased: c.leased,
                dead: c.dead,
                dead_letters: q.stats.dead_letters,
                oldest_ready_age_ms: q.stats.oldest_ready_age_ms,
                enqueued: t.enqueued,
                delivered: t.delivered,
                acked: t.acked,
                failed: t.failed,
                dead_lettered: t.dead_lettered,
            };
            queues.insert(q.name, p);
        }
        let p = Point { at: now_ms(), queues };
        let n = self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(COARSE_EVERY) {
            push(&self.coarse, p.clone(), COARSE_KEEP);
        }
        push(&self.fine, p, FINE_KEEP);
        Ok(())
    }

    /// Samples every [`FINE_STEP_MS`] until the server stops.
    pub fn spawn_sampler<B: Broker>(state: &Shared<B>) {
        let s = state.clone();
        state.background.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(FINE_STEP_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = s.background.stopping.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = s.history.sample(&s.broker).await {
                    tracing::debug!(error = %e, "history sample skipped");
                }
            }
        });
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    window: Option<String>,
    queue: Option<String>,
}

/// `GET /v1/history?window=1h|6h|24h|7d[&queue=q]`.
pub async fn show<B: Broker>(
    State(s): State<Shared<B>>,
    caller: crate::auth::Caller,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(h) = query.map_err(|e| Error::MalformedRequest(e.body_text()))?;
    let (span_ms, ring, step) = match h.window.as_deref().unwrap_or("1h") {
        "1h" => (3_600_000, &s.history.fine, FINE_STEP_MS),
        "6h" => (6 * 3_600_000, &s.history.fine, FINE_STEP_MS),
        "24h" => (24 * 3_600_000, &s.history.coarse, FINE_STEP_MS * COARSE_EVERY),
        "7d" => (7 * 24 * 3_600_000, &s.history.coarse, FINE_STEP_MS * COARSE_EVERY),
        _ => return Err(Error::invalid("window", "one of 1h, 6h, 24h, 7d").into()),
    };
    let since = now_ms().saturating_sub(span_ms);
    let mut points: Vec<Point> = {
        let r = ring.lock().expect("history lock");
        r.iter().filter(|p| p.at >= since).cloned().collect()
    };
    let thin = points.len().div_ceil(POINTS_MAX).max(1);
    if thin > 1 {
        points = points.into_iter().step_by(thin).collect();
    }
    for p in &mut points {
        // A key sees the queues it may read, and only those.
        p.queues.retain(|name, _| {
            h.queue.as_ref().is_none_or(|q| q == name)
                && caller.allow(crate::auth::Action::Read, name).is_ok()
        });
    }
    Ok(Json(json!({"step_ms": step * thin as u64, "points": points})))
}

fn now_ms() -> u64 {
    SystemClock.now_ms()
}
