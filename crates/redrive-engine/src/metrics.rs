//! Counters and histograms the engine keeps on its own thread, reported through
//! [`redrive_core::Broker::snapshot`]. Plain integers: only the engine thread writes them.

pub use redrive_core::metrics::{Histogram, QueueLatency};
use rustc_hash::FxHashMap;

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
    /// Latencies by queue id (dropped with the queue).
    pub latency: FxHashMap<u32, QueueLatency>,
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
            latency: FxHashMap::default(),
            fsync_us: Histogram::new(FSYNC_BOUNDS_US),
        }
    }
}
