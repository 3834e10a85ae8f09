//! Jobs' creation contexts as OpenTelemetry span contexts, for spans about a job made outside
//! the server: the worker's `process` span, the triage agent's decisions.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use redrive_core::trace_context::TraceParent;

/// The remote span context a job's `traceparent` names, if it is valid.
pub fn creation_context(traceparent: &str) -> Option<SpanContext> {
    let tp = TraceParent::parse(traceparent)?;
    Some(SpanContext::new(
        TraceId::from_bytes(tp.trace_id.to_be_bytes()),
        SpanId::from_bytes(tp.span_id.to_be_bytes()),
        TraceFlags::new(tp.flags),
        true,
        TraceState::default(),
    ))
}
