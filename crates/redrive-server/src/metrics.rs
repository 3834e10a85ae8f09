//! `/metrics` in the Prometheus text format: per-queue gauges and totals, the enqueue→start
//! latency, the store's own series (WAL or database figures), and HTTP request counts.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redrive_core::metrics::{Histogram, Value};
use redrive_core::Broker;

use crate::error::ApiResult;
use crate::Shared;

/// HTTP requests answered, by status class (1xx..5xx).
#[derive(Default)]
pub struct HttpMetrics {
    by_class: [AtomicU64; 5],
}

pub async fn count<B: Broker>(State(s): State<Shared<B>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    s.http.by_class[class].fetch_add(1, Ordering::Relaxed);
    resp
}

/// Reads one lifetime total of a queue.
type TotalOf = fn(&redrive_core::broker::QueueTotals) -> u64;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram, scale: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, b) in h.bounds.iter().enumerate() {
        cumulative += h.counts[i];
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / scale);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum as f64 / scale, h.count);
}

pub async fn render<B: Broker>(State(s): State<Shared<B>>) -> ApiResult<Response> {
    let snap = s.broker.snapshot().await?;
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP redrive_jobs Jobs held, by queue and state.\n# TYPE redrive_jobs gauge"
    );
    for q in &snap.queues {
        let c = &q.stats.counts;
        let n = escape(&q.name);
        for (state, v) in [
            ("delayed", c.delayed),
            ("ready", c.ready),
            ("leased", c.leased),
            ("dead", c.dead),
            ("completed", c.completed),
        ] {
            let _ = writeln!(out, "redrive_jobs{{queue=\"{n}\",state=\"{state}\"}} {v}");
        }
    }
    let _ = writeln!(out, "# HELP redrive_dead_letters Jobs holding dead-letter information, by queue.\n# TYPE redrive_dead_letters gauge");
    for q in &snap.queues {
        let _ = writeln!(
            out,
            "redrive_dead_letters{{queue=\"{}\"}} {}",
            escape(&q.name),
            q.stats.dead_letters
        );
    }
    let _ = writeln!(out, "# HELP redrive_oldest_ready_age_seconds Age of the oldest ready job, by queue.\n# TYPE redrive_oldest_ready_age_seconds gauge");
    for q in &snap.queues {
        let _ = writeln!(
            out,
            "redrive_oldest_ready_age_seconds{{queue=\"{}\"}} {}",
            escape(&q.name),
            q.stats.oldest_ready_age_ms as f64 / 1000.0
        );
    }
    let totals: [(&str, &str, TotalOf); 10] = [
        ("enqueued", "Jobs enqueued", |t| t.enqueued),
        ("duplicates", "Enqueues answered from the idempotency window", |t| t.duplicates),
        ("delivered", "Leases handed out", |t| t.delivered),
        ("acked", "Jobs completed", |t| t.acked),
        ("failed", "Failures reported by workers", |t| t.failed),
        ("lease_expired", "Leases that ended without ack or fail", |t| t.lease_expired),
        ("dead_lettered", "Jobs that died (moved to a dead-letter queue or parked)", |t| {
            t.dead_lettered
        }),
        ("expired", "Jobs whose retention ran out", |t| t.expired),
        ("purged", "Jobs removed by purge", |t| t.purged),
        ("redriven", "Dead jobs redriven into this queue", |t| t.redriven),
    ];
    for (name, help, get) in totals {
        let _ = writeln!(out, "# HELP redrive_jobs_{name}_total {help}, by queue.\n# TYPE redrive_jobs_{name}_total counter");
        for q in &snap.queues {
            let _ = writeln!(
                out,
                "redrive_jobs_{name}_total{{queue=\"{}\"}} {}",
                escape(&q.name),
                get(&q.stats.totals)
            );
        }
    }
    histogram(
        &mut out,
        "redrive_enqueue_to_start_seconds",
        "Time from a job becoming ready to its lease starting.",
        &snap.start_latency_ms,
        1e3,
    );
    for series in &snap.store {
        let (name, help) = (series.name, series.help);
        match &series.value {
            Value::Gauge(v) => {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
            Value::Counter(v) => {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
            }
            Value::Histogram { histogram: h, scale } => histogram(&mut out, name, help, h, *scale),
        }
    }
    let gauges = [
        ("redrive_long_poll_waiters", "Receivers parked in a long poll.", snap.waiters as f64),
        (
            "redrive_long_polls_open",
            "Long polls whose client is still connected, all callers together.",
            s.overload.long_polls_open() as f64,
        ),
        (
            "redrive_http_requests_in_flight",
            "Requests in flight, counted against REQUESTS_IN_FLIGHT_MAX.",
            s.overload.in_flight() as f64,
        ),
        (
            "redrive_store_poisoned",
            "1 when the store refuses writes after an I/O failure.",
            s.broker.health().poisoned.is_some() as u8 as f64,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let _ = writeln!(out, "# HELP redrive_http_requests_total HTTP requests answered, by status class.\n# TYPE redrive_http_requests_total counter");
    for (i, c) in s.http.by_class.iter().enumerate() {
        let _ = writeln!(
            out,
            "redrive_http_requests_total{{class=\"{}xx\"}} {}",
            i + 1,
            c.load(Ordering::Relaxed)
        );
    }
    s.proposals.render_metrics(&mut out);
    if let Some(hook) = &s.metrics_hook {
        hook(&mut out);
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}
