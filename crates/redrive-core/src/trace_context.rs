//! W3C trace context (`traceparent`): a job's creation context as stored and sent. Parsed here
//! once for every crate; the OpenTelemetry types are built from it where spans are made.

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, ids not all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

impl TraceParent {
    pub fn parse(s: &str) -> Option<TraceParent> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        // Version 00 has exactly four parts; later versions may add more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let tp = TraceParent {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (tp.trace_id != 0 && tp.span_id != 0).then_some(tp)
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

#[cfg(feature = "otel")]
impl TraceParent {
    /// As a remote OpenTelemetry span context (a link target, or a parent).
    pub fn span_context(&self) -> opentelemetry::trace::SpanContext {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.span_id.to_be_bytes()),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn parses_what_it_prints_and_refuses_the_invalid() {
        let s = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01";
        let tp = TraceParent::parse(s).unwrap();
        assert_eq!((tp.to_string(), tp.sampled()), (s.to_owned(), true));
        for bad in [
            "",
            "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8",
            "ff-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
            "00-00000000000000000000000000000000-53995c3f42cd8ad8-01",
            "00-5759e988bd862e3fe1be46a994272793-0000000000000000-01",
            "00-5759e988bd862e3fe1be46a99427279z-53995c3f42cd8ad8-01",
            "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01-extra",
            "00-+759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?}");
        }
    }
}
