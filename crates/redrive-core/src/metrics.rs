//! What a store reports for `/metrics`, whatever the store: every queue with its stats and
//! lifetime totals, the receivers parked in long polls, the enqueue→start latency, and the
//! store's own figures (for the embedded log: WAL size, fsync latency, group commits; for a
//! database: pool and statement latency) as named series the server renders as they are.

use std::collections::BTreeMap;

use crate::broker::QueueInfo;

/// A cumulative histogram with fixed upper bounds (Prometheus `le` buckets).
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// Adds another histogram with the same bounds.
    pub fn merge(&mut self, other: &Histogram) {
        assert_eq!(self.bounds, other.bounds, "merging histograms of different buckets");
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// Enqueue→start latency buckets, milliseconds.
pub const LATENCY_BOUNDS_MS: &[u64] =
    &[0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000];

/// Lease→ack (processing time) buckets, milliseconds: jobs run from milliseconds to an hour.
pub const PROCESS_BOUNDS_MS: &[u64] = &[
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000, 900_000,
    3_600_000,
];

/// Deliveries a completed job took.
pub const ATTEMPTS_BOUNDS: &[u64] = &[1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 50, 100];

/// The latencies a store records for one queue's jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueLatency {
    /// Time from a job becoming ready to its lease starting.
    pub start_ms: Histogram,
    /// Time from the lease that completed a job starting to its ack.
    pub process_ms: Histogram,
    /// Deliveries each completed job took.
    pub attempts: Histogram,
}

impl Default for QueueLatency {
    fn default() -> QueueLatency {
        QueueLatency {
            start_ms: Histogram::new(LATENCY_BOUNDS_MS),
            process_ms: Histogram::new(PROCESS_BOUNDS_MS),
            attempts: Histogram::new(ATTEMPTS_BOUNDS),
        }
    }
}

impl QueueLatency {
    /// One job completed: its last lease ran `process_ms` and it was delivered `deliveries` times.
    pub fn completed(&mut self, process_ms: u64, deliveries: u64) {
        self.process_ms.record(process_ms);
        self.attempts.record(deliveries);
    }
}

/// How a store-specific series is rendered.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Gauge(f64),
    Counter(u64),
    /// Observations in the histogram's unit, shown in base units after dividing by `scale`
    /// (1e6 for microseconds as seconds).
    Histogram {
        histogram: Histogram,
        scale: f64,
    },
}

/// One store-specific series: a full Prometheus name (`redrive_wal_bytes`), its help text, and
/// its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub value: Value,
}

/// A point-in-time view of a store.
#[derive(Clone, Debug)]
pub struct StoreSnapshot {
    pub queues: Vec<QueueInfo>,
    /// Receivers parked in long polls on this server.
    pub waiters: usize,
    /// Latencies by queue name, recorded by this process since it started (a PostgreSQL
    /// fleet's are summed by whatever scrapes every server).
    pub latency: BTreeMap<String, QueueLatency>,
    pub store: Vec<Series>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_buckets_are_upper_bounds_and_merge() {
        let mut h = super::Histogram::new(&[1, 10]);
        for v in [0, 1, 2, 10, 11] {
            h.record(v);
        }
        assert_eq!(h.counts, vec![2, 2, 1]);
        assert_eq!((h.sum, h.count), (24, 5));
        let copy = h.clone();
        h.merge(&copy);
        assert_eq!((h.counts, h.sum, h.count), (vec![4, 4, 2], 48, 10));
    }
}
