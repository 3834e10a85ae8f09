//! Traces through a job's whole life, as OpenTelemetry's messaging conventions describe them.
//!
//! Each job carries a **creation context**: the W3C `traceparent` the producer gave the job, or
//! else the context of the `send` span that enqueued it (itself a child of the request's own
//! `traceparent` header, or of SQS's `AWSTraceHeader`). It is stored with the job and nothing
//! downstream overwrites it, so retries, a stay in the dead-letter queue and a redrive days
//! later all point back at the one place the job was made.
//!
//! Spans: `send` (PRODUCER) at enqueue; `receive` (CLIENT) per receive, linking every job it
//! leased; `ack`, `nack` and `dead_letter` (CLIENT, settle) per job; `redrive` per redriven job;
//! the SDK's `process` span (CONSUMER) around the handler. Every span carries `messaging.*`
//! attributes, the job id and the attempt. By default an attempt's spans **link** to the
//! creation context ([`Mode::Links`]); [`Mode::Children`] makes them its children, for one
//! waterfall per job.
//!
//! Spans go to the global tracer provider, which `redrive serve --otlp-endpoint` installs with
//! [`otlp_provider`]; without it they are never recorded and cost next to nothing, and the
//! extra reads a settle span needs (the job's context) are skipped ([`Traces::on`]).

use std::time::Duration;

use opentelemetry::trace::{
    Link, Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer,
};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message;
use redrive_core::broker::{Delivery, Enqueued, JobInfo, NewJob};
use redrive_core::model::{JobId, Receipt};
use redrive_core::trace_context::TraceParent;

/// `messaging.system` of every span.
pub const SYSTEM: &str = "redrive";
/// Links a span keeps at most (the SDK's default limit).
const LINKS_MAX: usize = 128;

/// How an attempt's spans relate to the job's creation context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Linked to it: retries and redrives can be days apart, and a batch has no one parent.
    #[default]
    Links,
    /// Children of it: one waterfall per job, for teams that want it.
    Children,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "links" => Ok(Mode::Links),
            "children" => Ok(Mode::Children),
            _ => Err(format!("{s:?}: expected links or children")),
        }
    }
}

/// Whether spans are exported, and how attempts relate to their creation context.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traces {
    pub on: bool,
    pub mode: Mode,
}

/// A W3C `traceparent` as a remote span context.
pub fn parse_traceparent(s: &str) -> Option<SpanContext> {
    TraceParent::parse(s).map(|tp| tp.span_context())
}

pub fn traceparent(sc: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
}

/// An AWS X-Ray trace header (`Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1`), SQS's
/// `AWSTraceHeader`, as a span context: X-Ray's trace id is the W3C one split in two.
pub fn parse_aws_trace_header(s: &str) -> Option<SpanContext> {
    let (mut root, mut parent, mut sampled) = (None, None, true);
    for part in s.split(';') {
        match part.trim().split_once('=')? {
            ("Root", v) => root = Some(v),
            ("Parent", v) => parent = Some(v),
            ("Sampled", v) => sampled = v != "0",
            _ => {}
        }
    }
    let mut root = root?.split('-');
    let (version, time, rest) = (root.next()?, root.next()?, root.next()?);
    if version != "1" || time.len() != 8 || rest.len() != 24 {
        return None;
    }
    let sc = SpanContext::new(
        TraceId::from_hex(&format!("{time}{rest}")).ok()?,
        SpanId::from_hex(parent?).ok()?,
        if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

pub fn aws_trace_header(sc: &SpanContext) -> String {
    let t = sc.trace_id().to_string();
    let sampled = u8::from(sc.is_sampled());
    format!("Root=1-{}-{};Parent={};Sampled={sampled}", &t[..8], &t[8..], sc.span_id())
}

fn tracer() -> global::BoxedTracer {
    global::tracer("redrive")
}

/// `messaging.*` attributes of a span about `queue`.
fn messaging(op_type: &'static str, op_name: &'static str, queue: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", SYSTEM),
        KeyValue::new("messaging.operation.type", op_type),
        KeyValue::new("messaging.operation.name", op_name),
        KeyValue::new("messaging.destination.name", queue.to_owned()),
    ]
}

fn job_attributes(id: JobId, attempt: u32) -> [KeyValue; 2] {
    [
        KeyValue::new("messaging.message.id", id.to_string()),
        KeyValue::new("redrive.job.attempt", i64::from(attempt)),
    ]
}

fn remote(parent: Option<&SpanContext>) -> Context {
    parent.map_or_else(Context::new, |p| Context::new().with_remote_span_context(p.clone()))
}

impl Traces {
    /// The `send` span of one enqueue request; its context becomes the creation context of
    /// every job that brings none of its own. `parent` is the request's trace context.
    pub fn send(
        &self,
        queue: &str,
        parent: Option<&SpanContext>,
        jobs: usize,
    ) -> global::BoxedSpan {
        let mut attrs = messaging("send", "send", queue);
        attrs.push(KeyValue::new("messaging.batch.message_count", jobs as i64));
        tracer()
            .span_builder(format!("send {queue}"))
            .with_kind(SpanKind::Producer)
            .with_attributes(attrs)
            .start_with_context(&tracer(), &remote(parent))
    }

    /// Gives every job without a creation context one: the `send` span's when traces are on
    /// (returned, to end with [`Traces::sent`]), else the request's own context if it has one.
    pub fn creation(
        &self,
        queue: &str,
        parent: Option<&SpanContext>,
        jobs: &mut [NewJob],
    ) -> Option<global::BoxedSpan> {
        // Without a request context, one job's own context is the send span's parent.
        let own = match (parent, &*jobs) {
            (None, [one]) => one.traceparent.as_deref().and_then(parse_traceparent),
            _ => None,
        };
        let parent = parent.or(own.as_ref());
        let span = self.on.then(|| self.send(queue, parent, jobs.len()));
        let context = span.as_ref().map(|s| s.span_context().clone()).or_else(|| parent.cloned());
        if let Some(c) = context {
            let tp = traceparent(&c);
            for j in jobs.iter_mut() {
                j.traceparent.get_or_insert_with(|| tp.clone());
            }
        }
        span
    }

    /// Ends a `send` span with what the enqueue did.
    pub fn sent(span: Option<global::BoxedSpan>, r: &redrive_core::Result<Vec<Enqueued>>) {
        let Some(mut span) = span else { return };
        match r {
            Ok(done) => {
                if let [one] = done.as_slice() {
                    span.set_attribute(KeyValue::new("messaging.message.id", one.id.to_string()));
                }
            }
            Err(e) => span.set_status(Status::error(e.to_string())),
        }
        span.end();
    }

    /// The `receive` span of one receive that leased `jobs`, linking each one's creation
    /// context; none for an empty receive (it says nothing about any job) or with traces off.
    pub fn receive(&self, queue: &str, parent: Option<&SpanContext>, jobs: &[Delivery]) {
        if !self.on || jobs.is_empty() {
            return;
        }
        let links = jobs
            .iter()
            .filter_map(|d| d.traceparent.as_deref().and_then(parse_traceparent))
            .take(LINKS_MAX)
            .map(Link::with_context)
            .collect();
        let mut attrs = messaging("receive", "receive", queue);
        attrs.push(KeyValue::new("messaging.batch.message_count", jobs.len() as i64));
        if let [d] = jobs {
            attrs.extend(job_attributes(d.id, d.attempt));
        }
        let mut span = tracer()
            .span_builder(format!("receive {queue}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .with_links(links)
            .start_with_context(&tracer(), &remote(parent));
        span.end();
    }

    /// A span about one job in its own right (settle, dead-letter, redrive, a triage
    /// decision): linked to its creation context, or its child in [`Mode::Children`].
    pub fn about_job(
        &self,
        name: &str,
        kind: SpanKind,
        mut attrs: Vec<KeyValue>,
        job: &JobInfo,
        error: Option<String>,
    ) {
        let creation = job.traceparent.as_deref().and_then(parse_traceparent);
        let (parent, links) = match (self.mode, creation) {
            (Mode::Children, Some(c)) => (Some(c), Vec::new()),
            (_, c) => (None, c.into_iter().map(Link::with_context).collect()),
        };
        attrs.extend(job_attributes(job.id, job.receive_count));
        let mut span = tracer()
            .span_builder(format!("{name} {}", job.queue))
            .with_kind(kind)
            .with_attributes(attrs)
            .with_links(links)
            .start_with_context(&tracer(), &remote(parent.as_ref()));
        if let Some(e) = error {
            span.set_status(Status::error(e));
        }
        span.end();
    }

    /// `ack`, `nack` or `dead_letter` of one job (a settle span).
    pub fn settle(&self, op: &'static str, job: &JobInfo, error: Option<(String, String)>) {
        let mut attrs = messaging("settle", op, &job.queue);
        if let Some((kind, _)) = &error {
            attrs.push(KeyValue::new("error.type", kind.clone()));
        }
        let status = error.map(|(kind, message)| format!("{kind}: {message}"));
        self.about_job(op, SpanKind::Client, attrs, job, status);
    }

    /// A dead job sent back to work, from `from`.
    pub fn redrive(&self, from: &str, job: &JobInfo) {
        let mut attrs = messaging("send", "redrive", &job.queue);
        attrs.push(KeyValue::new("redrive.redrive.from", from.to_owned()));
        self.about_job("redrive", SpanKind::Producer, attrs, job, None);
    }
}

/// The jobs the store receipts name, as they are before a settle, for its spans: only when
/// traces are on (one read per job), and `None` for a receipt whose job cannot be read.
pub async fn jobs_of<B: redrive_core::Broker>(
    s: &crate::Shared<B>,
    receipts: &[String],
) -> Vec<Option<JobInfo>> {
    if !s.traces.on {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(receipts.len());
    for r in receipts {
        out.push(match r.parse::<Receipt>() {
            Ok(r) => s.broker.get_job(r.id).await.ok(),
            Err(()) => None,
        });
    }
    out
}

/// `redrive` spans for the jobs a redrive out of `from` moved (at most the first thousand),
/// when traces are on.
pub async fn redriven<B: redrive_core::Broker>(s: &crate::Shared<B>, from: &str, ids: &[JobId]) {
    if !s.traces.on {
        return;
    }
    for id in ids.iter().take(1000) {
        if let Ok(job) = s.broker.get_job(*id).await {
            s.traces.redrive(from, &job);
        }
    }
}

/// Runs a request that came with a trace context inside a `request` log span carrying its
/// `trace_id` and `span_id`, so every log line it causes can be found from the trace.
pub async fn log_context(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    match from_headers(req.headers()) {
        Some(c) => {
            let span = tracing::info_span!(
                "request",
                trace_id = %c.trace_id(),
                span_id = %c.span_id(),
            );
            next.run(req).instrument(span).await
        }
        None => next.run(req).await,
    }
}

/// The request's trace context: its W3C `traceparent` header, else AWS's `X-Amzn-Trace-Id`.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<SpanContext> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    get("traceparent")
        .and_then(parse_traceparent)
        .or_else(|| get("x-amzn-trace-id").and_then(parse_aws_trace_header))
}

/// Where and how [`OtlpExporter`] sends: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is),
/// else `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended, and the
/// headers of `OTEL_EXPORTER_OTLP_HEADERS` / `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
/// (`k=v,k2=v2`, values URL-encoded).
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
}

impl OtlpConfig {
    /// From a base URL (`--otlp-endpoint`) and the standard variables; `None` when neither
    /// names an endpoint.
    pub fn from_env(base: Option<&str>) -> Option<OtlpConfig> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let url = match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(full) => full,
            None => {
                let base =
                    base.map(str::to_owned).or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
        };
        let mut headers = Vec::new();
        for var in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            for pair in env(var).unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
                if let Some((k, v)) = pair.split_once('=') {
                    let v = form_urlencoded::parse(format!("v={v}").as_bytes())
                        .next()
                        .map_or_else(|| v.to_owned(), |(_, v)| v.into_owned());
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
        }
        let service_name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| "redrive".into());
        Some(OtlpConfig { url, headers, service_name })
    }
}

/// OTLP over HTTP with protobuf: the SDK's spans converted to the collector's messages by the
/// OpenTelemetry proto crate and posted with our HTTP client. The SDK's batch processor calls
/// [`SpanExporter::export`] on a thread of its own; the POST runs on the server's runtime.
#[derive(Debug)]
pub struct OtlpExporter {
    config: OtlpConfig,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    resource: ResourceAttributesWithSchema,
    last_warned: std::sync::Mutex<Option<std::time::Instant>>,
}

impl OtlpExporter {
    pub fn new(config: OtlpConfig, runtime: tokio::runtime::Handle) -> OtlpExporter {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with default settings builds");
        let resource = (&Resource::builder_empty().build()).into();
        OtlpExporter { config, http, runtime, resource, last_warned: Default::default() }
    }
}

impl SpanExporter for OtlpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        let mut post = self
            .http
            .post(&self.config.url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec());
        for (k, v) in &self.config.headers {
            post = post.header(k, v);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(post.send().await.and_then(reqwest::Response::error_for_status));
        });
        let failed = match rx.await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => format!("OTLP export: {e}"),
            Err(_) => "OTLP export: runtime stopped".to_owned(),
        };
        // Spans that could not be sent are dropped: say so, at most once a minute.
        let now = std::time::Instant::now();
        let mut last = self.last_warned.lock().expect("exporter lock");
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            *last = Some(now);
            tracing::warn!(url = %self.config.url, error = %failed, "traces dropped");
        }
        Err(OTelSdkError::InternalFailure(failed))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

/// A tracer provider exporting through [`OtlpExporter`] in batches, named by
/// `config.service_name`; install it with `opentelemetry::global::set_tracer_provider` and
/// shut it down at exit to send what is left.
pub fn otlp_provider(config: OtlpConfig, runtime: tokio::runtime::Handle) -> SdkTracerProvider {
    let resource = Resource::builder().with_service_name(config.service_name.clone()).build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(OtlpExporter::new(config, runtime))
        .build()
}

/// The installed exporter, to flush and stop at exit.
pub struct Exporting(SdkTracerProvider);

/// Installs the OTLP exporter as the global tracer provider when `config` names an endpoint;
/// the spans of this process (the server's, and the in-process triage agent's) go there.
pub fn install(config: OtlpConfig) -> Exporting {
    let provider = otlp_provider(config, tokio::runtime::Handle::current());
    global::set_tracer_provider(provider.clone());
    Exporting(provider)
}

impl Exporting {
    /// Sends the spans still buffered, then stops (off the async threads: it blocks).
    pub async fn shutdown(self) {
        let provider = self.0;
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || provider.shutdown()).await {
            tracing::warn!(error = %e, "flushing traces at exit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_and_aws_headers_carry_the_same_context() {
        let tp = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01";
        let sc = parse_traceparent(tp).unwrap();
        assert_eq!(traceparent(&sc), tp);
        let aws = aws_trace_header(&sc);
        assert_eq!(
            aws,
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        let back = parse_aws_trace_header(&aws).unwrap();
        assert_eq!((back.trace_id(), back.span_id()), (sc.trace_id(), sc.span_id()));
        for bad in [
            "",
            "00-0000-1-01",
            "ff-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
            "00-00000000000000000000000000000000-53995c3f42cd8ad8-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        assert!(parse_aws_trace_header("Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8").is_none());
    }
}
