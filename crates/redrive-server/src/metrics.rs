//! `/metrics`: one registry (the `prometheus-client` library's) for everything the server
//! exports, in the OpenMetrics text format Prometheus, Grafana Agent and Datadog's OpenMetrics
//! check read.
//!
//! Two kinds of series go into it:
//! - the server's own, kept in the registry's metrics and updated as requests are answered:
//!   HTTP requests by route, method and status with their latency, SQS actions by outcome,
//!   and whatever the binary adds (the triage agent's counters);
//! - the store's, read at scrape time ([`Broker::snapshot`]) and encoded by [`StoreCollector`]:
//!   per-queue depth by state and priority, oldest ready age, lifetime totals (kept by the
//!   store, so they survive restarts), per-queue enqueue→start, processing time and attempts,
//!   and the store's own figures (WAL and fsync, or the PostgreSQL pool and statements).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use redrive_core::broker::QueueTotals;
use redrive_core::metrics::{Histogram, StoreSnapshot, Value};
use redrive_core::Broker;

use crate::error::ApiResult;
use crate::Shared;

type Labels = Vec<(&'static str, String)>;

/// The route pattern that matched (never the raw path, whose queue names and ids would make a
/// series each) and the method: labels shared with the router's own strings, so counting a
/// request allocates nothing.
#[derive(Clone, Debug)]
struct Route {
    path: Option<MatchedPath>,
    method: Method,
}

impl Route {
    fn path(&self) -> &str {
        self.path.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.path() == other.path() && self.method == other.method
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.path().hash(h);
        self.method.hash(h);
    }
}

impl EncodeLabelSet for Route {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        [("route", self.path()), ("method", self.method.as_str())].encode(encoder)
    }
}

/// A request's [`Route`] and the status it was answered with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Answered {
    route: Route,
    status: u16,
}

impl EncodeLabelSet for Answered {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let class = CLASSES[usize::from((self.status / 100).clamp(1, 5)) - 1];
        self.route.encode(encoder)?;
        [("status", self.status)].encode(encoder)?;
        [("class", class)].encode(encoder)
    }
}

/// HTTP latency buckets, seconds: from a cached read to a long poll's 20 s.
const HTTP_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 25.0];

/// What a scrape reads besides the registry's own metrics, gathered before encoding.
#[derive(Debug, Default)]
struct Scrape {
    snap: Option<StoreSnapshot>,
    /// `(name, help, value)` gauges of the server itself.
    gauges: Vec<(&'static str, &'static str, f64)>,
    proposals: Vec<(String, u64)>,
}

/// Encodes the scrape in hand: set by [`render`] right before the registry is encoded.
#[derive(Debug, Default, Clone)]
struct StoreCollector(Arc<Mutex<Scrape>>);

pub struct Metrics {
    registry: Registry,
    http: Family<Answered, Counter>,
    http_seconds: Family<Route, PromHistogram>,
    sqs: Family<Labels, Counter>,
    scrape: StoreCollector,
    /// One scrape at a time fills and encodes the slot.
    encoding: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let http = Family::<Answered, Counter>::default();
        let http_seconds = Family::<Route, PromHistogram>::new_with_constructor(
            (|| PromHistogram::new(HTTP_BUCKETS)) as fn() -> PromHistogram,
        );
        let sqs = Family::<Labels, Counter>::default();
        registry.register(
            "redrive_http_requests",
            "HTTP requests answered, by route, method, status and status class",
            http.clone(),
        );
        registry.register(
            "redrive_http_request_duration_seconds",
            "Time to answer HTTP requests, by route and method (long polls included)",
            http_seconds.clone(),
        );
        registry.register(
            "redrive_sqs_requests",
            "SQS API actions answered, by action and outcome (ok or the SQS error code)",
            sqs.clone(),
        );
        let scrape = StoreCollector::default();
        registry.register_collector(Box::new(scrape.clone()));
        Metrics { registry, http, http_seconds, sqs, scrape, encoding: Mutex::new(()) }
    }
}

impl Metrics {
    /// Where the binary registers more series (the triage agent's), before serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A gauge that reads 1 while `flag` is set (the triage agent's "active on this server").
    pub fn register_flag(
        &mut self,
        name: &'static str,
        help: &'static str,
        flag: Arc<std::sync::atomic::AtomicBool>,
    ) {
        self.registry.register_collector(Box::new(Flag { name, help, flag }));
    }

    pub fn sqs_action(&self, action: &str, outcome: &str) {
        let labels = vec![("action", action.to_owned()), ("outcome", outcome.to_owned())];
        self.sqs.get_or_create(&labels).inc();
    }
}

/// Counts every answer by its [`Route`] and status, and times it.
pub async fn count<B: Broker>(State(s): State<Shared<B>>, req: Request, next: Next) -> Response {
    let route = Route {
        path: req.extensions().get::<MatchedPath>().cloned(),
        method: req.method().clone(),
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    s.metrics.http_seconds.get_or_create(&route).observe(started.elapsed().as_secs_f64());
    s.metrics.http.get_or_create(&Answered { route, status: resp.status().as_u16() }).inc();
    resp
}

pub async fn render<B: Broker>(State(s): State<Shared<B>>) -> ApiResult<Response> {
    let snap = s.broker.snapshot().await?;
    let scrape = Scrape {
        gauges: vec![
            ("redrive_long_poll_waiters", "Receivers parked in a long poll", snap.waiters as f64),
            (
                "redrive_long_polls_open",
                "Long polls whose client is still connected, all callers together",
                s.overload.long_polls_open() as f64,
            ),
            (
                "redrive_http_requests_in_flight",
                "Requests in flight, counted against REQUESTS_IN_FLIGHT_MAX",
                s.overload.in_flight() as f64,
            ),
            (
                "redrive_store_poisoned",
                "1 when the store refuses writes after an I/O failure",
                f64::from(u8::from(s.broker.health().poisoned.is_some())),
            ),
        ],
        proposals: s.proposals.counts(),
        snap: Some(snap),
    };
    let mut out = String::with_capacity(16 * 1024);
    {
        let _one = s.metrics.encoding.lock().expect("metrics lock");
        *s.metrics.scrape.0.lock().expect("metrics lock") = scrape;
        prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry)
            .expect("writing to a String cannot fail");
        *s.metrics.scrape.0.lock().expect("metrics lock") = Scrape::default();
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([("content-type", content_type)], out).into_response())
}

#[derive(Debug)]
struct Flag {
    name: &'static str,
    help: &'static str,
    flag: Arc<std::sync::atomic::AtomicBool>,
}

impl Collector for Flag {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let v = i64::from(self.flag.load(std::sync::atomic::Ordering::Relaxed));
        ConstGauge::new(v).encode(e.encode_descriptor(
            self.name,
            self.help,
            None,
            MetricType::Gauge,
        )?)
    }
}

/// Reads one lifetime total of a queue.
type TotalOf = fn(&QueueTotals) -> u64;

const TOTALS: [(&str, &str, TotalOf); 10] = [
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

/// A histogram of ours in base units (`scale` = units per base unit); the library sums the
/// buckets and writes `f64::MAX` as `+Inf`.
fn encode_histogram(
    enc: &mut prometheus_client::encoding::MetricEncoder<'_>,
    h: &Histogram,
    scale: f64,
) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .zip(&h.counts)
        .map(|(b, c)| (*b as f64 / scale, *c))
        .chain(std::iter::once((f64::MAX, h.counts[h.bounds.len()])))
        .collect();
    enc.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        h.sum as f64 / scale,
        h.count,
        &buckets,
        None,
    )
}

impl Collector for StoreCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let slot = self.0.lock().expect("metrics lock");
        let Scrape { snap, gauges, proposals } = &*slot;
        let Some(snap) = snap else { return Ok(()) };
        let queue = |name: &str| vec![("queue", name.to_owned())];

        let mut m = e.encode_descriptor(
            "redrive_jobs",
            "Jobs held, by queue and state",
            None,
            MetricType::Gauge,
        )?;
        for q in &snap.queues {
            let c = &q.stats.counts;
            let states = [
                ("delayed", c.delayed),
                ("ready", c.ready),
                ("leased", c.leased),
                ("dead", c.dead),
                ("completed", c.completed),
            ];
            for (state, v) in states {
                let labels = vec![("queue", q.name.clone()), ("state", state.to_owned())];
                ConstGauge::new(v as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "redrive_jobs_ready",
            "Ready jobs (deliverable now), by queue and priority",
            None,
            MetricType::Gauge,
        )?;
        for q in &snap.queues {
            let p = &q.stats.ready_by_priority;
            for (prio, v) in [("high", p.high), ("standard", p.standard), ("low", p.low)] {
                let labels = vec![("queue", q.name.clone()), ("priority", prio.to_owned())];
                ConstGauge::new(v as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "redrive_dead_letters",
            "Jobs holding dead-letter information, by queue",
            None,
            MetricType::Gauge,
        )?;
        for q in &snap.queues {
            ConstGauge::new(q.stats.dead_letters as i64)
                .encode(m.encode_family(&queue(&q.name))?)?;
        }
        let mut m = e.encode_descriptor(
            "redrive_oldest_ready_age_seconds",
            "Age of the oldest ready job, by queue",
            None,
            MetricType::Gauge,
        )?;
        for q in &snap.queues {
            let age = q.stats.oldest_ready_age_ms as f64 / 1e3;
            ConstGauge::new(age).encode(m.encode_family(&queue(&q.name))?)?;
        }
        let mut m = e.encode_descriptor(
            "redrive_queue_paused",
            "1 while the queue is paused (it takes jobs and hands none out)",
            None,
            MetricType::Gauge,
        )?;
        for q in &snap.queues {
            ConstGauge::new(i64::from(q.config.paused))
                .encode(m.encode_family(&queue(&q.name))?)?;
        }
        for (name, help, get) in TOTALS {
            let name = format!("redrive_jobs_{name}");
            let help = format!("{help}, by queue (kept by the store: survives restarts).");
            let mut m = e.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for q in &snap.queues {
                ConstCounter::new(get(&q.stats.totals))
                    .encode(m.encode_family(&queue(&q.name))?)?;
            }
        }
        type LatencyOf = fn(&redrive_core::metrics::QueueLatency) -> &Histogram;
        let latencies: [(&str, &str, LatencyOf, f64); 3] = [
            (
                "redrive_enqueue_to_start_seconds",
                "Time from a job becoming ready to its lease starting, by queue",
                |l| &l.start_ms,
                1e3,
            ),
            (
                "redrive_processing_seconds",
                "Time from the lease that completed a job starting to its ack, by queue",
                |l| &l.process_ms,
                1e3,
            ),
            (
                "redrive_attempts_per_job",
                "Deliveries each completed job took, by queue",
                |l| &l.attempts,
                1.0,
            ),
        ];
        for (name, help, get, scale) in latencies {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (q, l) in &snap.latency {
                encode_histogram(&mut m.encode_family(&queue(q))?, get(l), scale)?;
            }
        }
        for series in &snap.store {
            match &series.value {
                Value::Gauge(v) => {
                    let m =
                        e.encode_descriptor(series.name, series.help, None, MetricType::Gauge)?;
                    ConstGauge::new(*v).encode(m)?;
                }
                Value::Counter(v) => {
                    // The library adds the `_total` of a counter's samples itself.
                    let name = series.name.strip_suffix("_total").unwrap_or(series.name);
                    let m = e.encode_descriptor(name, series.help, None, MetricType::Counter)?;
                    ConstCounter::new(*v).encode(m)?;
                }
                Value::Histogram { histogram, scale } => {
                    let mut m =
                        e.encode_descriptor(series.name, series.help, None, MetricType::Histogram)?;
                    encode_histogram(&mut m, histogram, *scale)?;
                }
            }
        }
        for (name, help, v) in gauges {
            ConstGauge::new(*v).encode(e.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        let mut m = e.encode_descriptor(
            "redrive_triage_proposals",
            "Triage proposals, by status",
            None,
            MetricType::Gauge,
        )?;
        for (status, n) in proposals {
            ConstGauge::new(*n as i64)
                .encode(m.encode_family(&vec![("status", status.clone())])?)?;
        }
        Ok(())
    }
}
