//! The fleet lock: one holder at a time, released when its holder goes away.

mod common;

use redrive_postgres::fleet_lock::{FleetLock, TRIAGE_AGENT_LOCK_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_released_with_its_connection() {
    let url = common::fresh_database().await;
    let key = TRIAGE_AGENT_LOCK_KEY;
    let first = FleetLock::try_acquire(&url, key).await.unwrap().expect("a free lock is taken");
    assert!(FleetLock::try_acquire(&url, key).await.unwrap().is_none(), "held by the first");
    drop(first);
    // The session ends asynchronously after the drop: the next holder may need a few tries.
    let retry = std::time::Duration::from_millis(50);
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        FleetLock::acquire(&url, key, retry),
    )
    .await
    .expect("taken over once the first holder is gone");
    assert!(FleetLock::try_acquire(&url, key).await.unwrap().is_none());
    drop(second);
}
