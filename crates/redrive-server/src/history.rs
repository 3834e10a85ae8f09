//! Recent history for the dashboard's charts: every [`FINE_STEP_MS`] the server samples each
//! queue's depth, lifetime totals and the latency percentiles of the step, and keeps them for
//! [`FINE_KEEP`] steps (one hour); every [`COARSE_EVERY`]th sample (five minutes) also goes to a
//! second ring kept for seven days. Totals are
//! cumulative, so a chart's rates are differences between points and a point lost here and
//! there loses no event. History lives in memory: a restarted server starts a new one, and
//! each server of a PostgreSQL fleet keeps its own (the totals it samples are the fleet's).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Query, State};
use redrive_core::metrics::{Histogram, QueueLatency, StoreSnapshot};
use redrive_core::time::{Clock, SystemClock};
use redrive_core::{Broker, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::reply::Json;
use crate::Shared;

pub const FINE_STEP_MS: u64 = 10_000;
const FINE_KEEP: usize = 360;
const COARSE_EVERY: u64 = 30;
const COARSE_KEEP: usize = 7 * 24 * 12;
/// Queues sampled at most, the first by name; the others are left out of the charts.
pub const HISTORY_QUEUES_MAX: usize = 100;
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
    /// Percentiles (ms) of enqueue→start and processing time over the step before this point,
    /// from the jobs this server handed out and saw acked; absent when it saw none.
    #[serde(skip_serializing_if = "Option::is_none")]
    start_p50_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_p95_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_p99_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_p50_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_p95_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process_p99_ms: Option<u64>,
}

/// The upper bound (ms) of the bucket holding the `q` quantile of what `now` recorded since
/// `before`; `None` if nothing was recorded. An observation past the last bound reads as it.
fn quantile(now: &Histogram, before: Option<&Histogram>, q: f64) -> Option<u64> {
    let counts: Vec<u64> = match before {
        Some(b) if b.count <= now.count => {
            now.counts.iter().zip(&b.counts).map(|(n, b)| n.saturating_sub(*b)).collect()
        }
        _ => now.counts.clone(),
    };
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(*now.bounds.get(i).or(now.bounds.last()).unwrap_or(&0));
        }
    }
    now.bounds.last().copied()
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
    /// Each queue's latency histograms at the last fine and the last coarse point: the
    /// percentiles of a point are those of the jobs since the one before it.
    last_latency: Mutex<(Latencies, Latencies)>,
}

type Latencies = BTreeMap<String, QueueLatency>;

/// One point: each queue's depth and totals now, and its percentiles since `before`.
fn point(at: u64, snap: &StoreSnapshot, before: &Latencies) -> Point {
    let mut queues = BTreeMap::new();
    for q in snap.queues.iter().take(HISTORY_QUEUES_MAX) {
        let (c, t) = (&q.stats.counts, &q.stats.totals);
        let (now, before) = (snap.latency.get(&q.name), before.get(&q.name));
        let pct = |pick: fn(&QueueLatency) -> &Histogram, p: f64| {
            now.and_then(|n| quantile(pick(n), before.map(pick), p))
        };
        let start: fn(&QueueLatency) -> &Histogram = |l| &l.start_ms;
        let process: fn(&QueueLatency) -> &Histogram = |l| &l.process_ms;
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
            start_p50_ms: pct(start, 0.5),
            start_p95_ms: pct(start, 0.95),
            start_p99_ms: pct(start, 0.99),
            process_p50_ms: pct(process, 0.5),
            process_p95_ms: pct(process, 0.95),
            process_p99_ms: pct(process, 0.99),
        };
        queues.insert(q.name.clone(), p);
    }
    Point { at, queues }
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
        let snap = broker.snapshot().await?;
        let at = now_ms();
        let n = self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = self.last_latency.lock().expect("history lock");
        push(&self.fine, point(at, &snap, &last.0), FINE_KEEP);
        last.0.clone_from(&snap.latency);
        if n.is_multiple_of(COARSE_EVERY) {
            // Its percentiles are those of the five minutes since the last coarse point.
            push(&self.coarse, point(at, &snap, &last.1), COARSE_KEEP);
            last.1 = snap.latency;
        }
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
        "6h" => (6 * 3_600_000, &s.history.coarse, FINE_STEP_MS * COARSE_EVERY),
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

#[cfg(test)]
mod tests {
    use redrive_core::metrics::{Histogram, LATENCY_BOUNDS_MS};

    use super::quantile;

    #[test]
    fn quantiles_are_of_the_step_not_of_the_lifetime() {
        let mut h = Histogram::new(LATENCY_BOUNDS_MS);
        for _ in 0..99 {
            h.record(3); // bucket le=5
        }
        h.record(700); // bucket le=1000
        assert_eq!(quantile(&h, None, 0.5), Some(5));
        assert_eq!(quantile(&h, None, 0.99), Some(5));
        assert_eq!(quantile(&h, None, 1.0), Some(1000));
        let before = h.clone();
        assert_eq!(quantile(&h, Some(&before), 0.5), None, "nothing new in the step");
        for _ in 0..10 {
            h.record(40); // bucket le=50
        }
        assert_eq!(quantile(&h, Some(&before), 0.5), Some(50), "only the step's jobs count");
        h.record(120_000); // past the last bound
        assert_eq!(quantile(&h, Some(&before), 1.0), Some(60_000));
    }
}
