//! Jobs' creation contexts as OpenTelemetry span contexts, for spans about a job made outside
//! the server: the worker's `process` span, the triage agent's decisions.

use opentelemetry::trace::SpanContext;
use redrive_core::trace_context::TraceParent;

/// The remote span context a job's `traceparent` names, if it is valid.
pub fn creation_context(traceparent: &str) -> Option<SpanContext> {
    TraceParent::parse(traceparent).map(|tp| tp.span_context())
}
