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
//! - `failure`: fail, backoff, dead letters, signature filter, max receives, redrive, purge;
//! - `control`: idempotency, long polls, multi-queue receive, docs, stats, drain;
//! - `fifo`: group order, one batch of a group in flight, deduplication;
//! - `wakeups`: long polls woken by delays, lease expiry, backoff and redrive;
//! - `retention`: expiry to the dead-letter queue or deletion, and retention changes;
//! - `ack_receive`: acks carried by a receive.

mod ack_receive;
mod control;
mod delivery;
mod failure;
mod fifo;
mod retention;
mod wakeups;

pub use ack_receive::*;
pub use control::*;
pub use delivery::*;
pub use failure::*;
pub use fifo::*;
pub use retention::*;
pub use wakeups::*;

use std::time::Duration;

use redrive_core::broker::{Delivery, FailRequest, NewJob, ReceiveRequest};
use redrive_core::model::{ErrorInfo, Priority};
use redrive_core::{Broker, QueuePatch};

/// Short delays and leases: long enough to observe "not yet", short enough to wait out.
pub const SOON_MS: u64 = 300;
/// How long to wait for something due after `SOON_MS`: generous, so scheduling never fails it.
pub const AFTER_SOON: Duration = Duration::from_millis(1500);
/// A long poll woken by a write or by time answers well within this, far sooner than its wait.
pub const WAKE_BOUND: Duration = Duration::from_secs(5);

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

/// A receive of one job from `queues` that waits as long as a receive may.
pub fn long_poll(queues: &[&str]) -> ReceiveRequest {
    ReceiveRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        max: 1,
        wait_ms: Some(redrive_core::limits::RECEIVE_WAIT_MAX_MS),
        lease_ms: None,
        worker_id: None,
    }
}

/// Waits until `n` receives are parked in the store, or fails.
pub async fn until_parked<B: Broker>(b: &B, n: usize) {
    for _ in 0..500 {
        if b.snapshot().await.unwrap().waiters >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} receives never parked");
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
            a_late_ack_with_the_latest_receipt_completes_a_job_nobody_received_again,
            heartbeats_extend_and_zero_releases,
            unknown_and_malformed_receipts,
            oversized_messages_are_refused_whole,
            failures_retry_then_dead_letter_with_the_attempt_log,
            non_retryable_failures_die_at_once_and_park_without_a_dlq,
            max_receive_count_dead_letters_on_the_next_receive,
            a_queue_may_be_its_own_dead_letter_queue,
            redrive_by_ids_with_dry_run_and_lineage,
            dead_letters_list_in_pages_and_filter_by_error,
            dead_letters_filter_by_failure_signature,
            dead_letters_move_page_by_page_to_another_queue,
            leases_that_ran_out_are_over_for_listing_redrive_purge_and_delete,
            redrive_with_a_delay_holds_the_jobs_back,
            an_idempotency_key_is_free_again_after_its_window,
            purge_drops_waiting_and_running_jobs_and_forgets_keys,
            delete_job_refuses_leased_jobs,
            idempotent_enqueue_returns_the_first_id,
            a_long_poll_is_woken_by_an_enqueue,
            drain_answers_parked_long_polls,
            multi_queue_receive_follows_preference_order,
            documents_put_list_and_delete,
            conditional_document_writes_win_once,
            stats_count_by_state_and_priority,
            jobs_list_by_state_priority_error_and_page,
            a_paused_queue_hands_out_nothing_until_resumed,
            fifo_groups_keep_order_and_one_batch_in_flight,
            fifo_deduplicates_by_key_even_after_completion,
            fifo_redelivers_an_expired_lease_before_the_groups_later_jobs,
            fifo_batches_fill_by_group_and_only_jobs_behind_a_lease_wait,
            fifo_an_ack_after_the_lease_ran_out_is_stale,
            fifo_a_group_back_from_a_lease_goes_after_the_groups_that_waited,
            fifo_a_long_held_group_does_not_hide_the_groups_behind_it,
            a_long_poll_gets_a_delayed_job_when_it_becomes_ready,
            a_long_poll_gets_a_job_whose_lease_ran_out,
            a_long_poll_gets_a_retry_after_its_backoff,
            a_long_poll_gets_a_redriven_job,
            a_long_poll_gets_a_fifo_groups_next_job_when_the_group_is_acked,
            a_long_poll_on_several_queues_is_woken_by_any,
            retention_expires_jobs_and_a_change_applies_to_existing_ones,
            completed_jobs_count_until_they_are_forgotten,
            ack_receive_acks_then_leases,
            a_refused_ack_receive_acks_nothing,
            ack_receive_acks_before_its_long_poll_waits,
            ack_receive_over_several_queues_and_fifo_groups
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
