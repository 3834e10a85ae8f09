//! Counters and histograms the engine keeps on its own thread; the server renders a snapshot of
//! them as Prometheus text. Plain integers: only the engine thread writes them.

/// A cumulative histogram with fixed upper bounds (Prometheus `le` buckets).
#[derive(Clone, Debug)]
pub struct Histogram {
    pub bounds: &'static [u64],
    /// `counts[i]` = observations `<= bounds[i]`, non-cumulative; the last slot is `+Inf`.
    pub counts: Vec<u64>,
    pub sum: u64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0, count: 0 }
    }

    pub fn record(&mut self, v: u64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// Enqueue→start latency buckets, milliseconds.
pub const LATENCY_BOUNDS_MS: &[u64] =
    &[0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000];
/// fsync latency buckets, microseconds.
pub const FSYNC_BOUNDS_US: &[u64] =
    &[50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 1_000_000];

/// Engine-wide figures; per-queue lifetime totals live in each queue (`QueueTotals`).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub completed_evicted: u64,
    pub batches: u64,
    pub batch_requests: u64,
    pub compacted_segments: u64,
    pub deleted_segments: u64,
    /// Time from a job becoming ready to its lease starting.
    pub start_latency_ms: Histogram,
    pub fsync_us: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            completed_evicted: 0,
            batches: 0,
            batch_requests: 0,
            compacted_segments: 0,
            deleted_segments: 0,
            start_latency_ms: Histogram::new(LATENCY_BOUNDS_MS),
            fsync_us: Histogram::new(FSYNC_BOUNDS_US),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let mut h = super::Histogram::new(&[1, 10]);
        for v in [0, 1, 2, 10, 11] {
            h.record(v);
        }
        assert_eq!(h.counts, vec![2, 2, 1]);
        assert_eq!((h.sum, h.count), (24, 5));
    }
}
