//! The behaviour suite every redrive store must pass, written once over the [`Broker`]
//! contract and run against each backend (`tests/engine.rs`, `tests/postgres.rs`).
//!
//! Each function is one behaviour as a user of SQS, Sidekiq or River would state it. They
//! assert what a client observes, never how fast: where time matters (delays, leases, long
//! polls) the waits are generous multiples of the times set, so a slow machine cannot fail
//! them and a missing behaviour cannot pass. Each expects a store of its own.
//!
//! # Layout
//! - helpers (`queue`, `job`, `take`, …) at the top;
//! - `delivery`: enqueue, receive, priorities, delays, leases and fencing;
//! - `failure`: fail, backoff, dead letters, max receives, redrive, purge;
//! - `control`: idempotency, long polls, multi-queue receive, docs, stats, drain.

mod control;
mod delivery;
mod failure;

pub use control::*;
pub use delivery::*;
pub use failure::*;

use std::time::Duration;

use redrive_core::broker::{Delivery, FailRequest, NewJob, ReceiveRequest};
use redrive_core::model::{ErrorInfo, Priority};
use redrive_core::{Broker, QueuePatch};

/// Short delays and leases: long enough to observe "not yet", short enough to wait out.
pub const SOON_MS: u64 = 300;
/// How long to wait for something due after `SOON_MS`: generous, so scheduling never fails it.
pub const AFTER_SOON: Duration = Duration::from_millis(1500);

/// Creates a queue with a 30 s visibility timeout plus `f`'s changes.
pub async fn queue<B: Broker>(b: &B, name: &str, f: impl FnOnce(&mut QueuePatch)) {
    let mut p = QueuePatch { visibility_timeout_ms: Some(30_000), ..QueuePatch::default() };
    f(&mut p);
    b.put_queue(name.into(), p).await.expect("queue created");
}

pub fn job(body: &str) -> NewJob {
    NewJob { body: body.into(), ..NewJob::default() }
}

pub fn prio(body: &str, p: Priority) -> NewJob {
    NewJob { priority: Some(p), ..job(body) }
}

pub async fn send<B: Broker>(b: &B, q: &str, jobs: Vec<NewJob>) -> Vec<redrive_core::JobId> {
    b.enqueue(q.into(), jobs).await.expect("enqueued").into_iter().map(|e| e.id).collect()
}

/// Receives up to `max` without waiting.
pub async fn take<B: Broker>(b: &B, q: &str, max: u32, lease_ms: Option<u64>) -> Vec<Delivery> {
    let req = ReceiveRequest {
        queues: vec![q.into()],
        max,
        wait_ms: Some(0),
        lease_ms,
        worker_id: Some("worker-1".into()),
    };
    b.receive(req).await.expect("received")
}

pub fn bodies(d: &[Delivery]) -> Vec<&str> {
    d.iter().map(|d| d.body.as_str()).collect()
}

pub fn failure(receipt: &str, retry_after_ms: Option<u64>, non_retryable: bool) -> FailRequest {
    FailRequest {
        receipt: receipt.into(),
        error: ErrorInfo {
            kind: "Timeout".into(),
            message: "upstream timed out after 30s".into(),
            detail: None,
        },
        retry_after_ms,
        non_retryable,
    }
}

/// Generates one `#[tokio::test]` per behaviour, each over a fresh store from `$backend` (an
/// async fn returning a `Broker + Clone`).
#[macro_export]
macro_rules! suite {
    ($backend:path) => {
        $crate::suite!(@tests $backend;
            enqueue_receive_ack,
            priorities_are_strict_and_fifo_within_a_level,
            delayed_jobs_wait_for_their_time,
            an_expired_lease_redelivers_and_fences_the_old_receipt,
            heartbeats_extend_and_zero_releases,
            unknown_and_malformed_receipts,
            oversized_messages_are_refused_whole,
            failures_retry_then_dead_letter_with_the_attempt_log,
            non_retryable_failures_die_at_once_and_park_without_a_dlq,
            max_receive_count_dead_letters_on_the_next_receive,
            redrive_by_ids_with_dry_run_and_lineage,
            dead_letters_list_in_pages_and_filter_by_error,
            purge_drops_ready_and_delayed_and_counts_them,
            delete_job_refuses_leased_jobs,
            idempotent_enqueue_returns_the_first_id,
            a_long_poll_is_woken_by_an_enqueue,
            drain_answers_parked_long_polls,
            multi_queue_receive_follows_preference_order,
            documents_put_list_and_delete,
            stats_count_by_state_and_priority
        );
    };
    (@tests $backend:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let b = $backend().await;
                $crate::$name(&b).await;
            }
        )*
    };
}
