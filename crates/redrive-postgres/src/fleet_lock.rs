//! Work that must run on one server of a fleet at a time (the in-process triage agent) holds a
//! session advisory lock on a connection of its own, outside the pool.
//!
//! Why a session lock on a dedicated connection: the lock lives exactly as long as the
//! connection, so a server that is killed, or cut off from the database, loses it when its
//! connection ends (at once for a kill, since the kernel closes the socket; after TCP keepalive
//! for a partition), and another server takes it on its next try. No lease table, no clock.
//! A pooled connection would not do: returned to the pool, it would carry the lock to whichever
//! operation borrows it next.

use std::time::Duration;

use redrive_core::Result;
use tokio::task::JoinHandle;

use crate::db::internal;

/// `pg_advisory_lock` key of the in-process triage agent ("triage" in ASCII, as a bigint).
/// Keys of this crate: `schema::MIGRATION_LOCK_KEY` and this one.
pub const TRIAGE_AGENT_LOCK_KEY: i64 = 0x7472_6961_6765;

/// A held advisory lock: held until dropped or until its connection is lost.
pub struct FleetLock {
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
}

impl FleetLock {
    /// One try: the lock if no other session holds `key`, `None` if one does.
    pub async fn try_acquire(url: &str, key: i64) -> Result<Option<FleetLock>> {
        let (mut config, tls) = crate::tls::parse_url(url)?;
        config.application_name("redrive-fleet-lock");
        config.keepalives_idle(Duration::from_secs(10));
        let (client, conn) = config.connect(tls).await.map_err(internal)?;
        let connection = tokio::spawn(async move {
            let _ = conn.await;
        });
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(internal)?
            .get(0);
        if !got {
            connection.abort();
            return Ok(None);
        }
        Ok(Some(FleetLock { client, connection }))
    }

    /// Tries every `retry` until the lock is held; errors (database down) count as "not yet".
    pub async fn acquire(url: &str, key: i64, retry: Duration) -> FleetLock {
        loop {
            match FleetLock::try_acquire(url, key).await {
                Ok(Some(lock)) => return lock,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "fleet lock: database not reachable"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Resolves when the lock is lost: its connection ended, or a check every `check` found it
    /// unusable (a half-open socket answers nothing, so the check has a timeout).
    pub async fn lost(&mut self, check: Duration) {
        loop {
            if self.connection.is_finished() {
                return;
            }
            tokio::time::sleep(check).await;
            let ping = self.client.simple_query("SELECT 1");
            match tokio::time::timeout(check, ping).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        // Closing the session releases the lock.
        self.connection.abort();
    }
}
