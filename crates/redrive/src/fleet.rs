//! `serve --triage` across a fleet: on the embedded store the agent simply runs; on PostgreSQL,
//! where several servers share the dead letters, it runs only on the server holding the triage
//! advisory lock, so two agents never triage (and redrive) the same jobs. The others try for
//! the lock every few seconds and take over when its holder dies or loses the database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redrive_postgres::fleet_lock::{FleetLock, TRIAGE_AGENT_LOCK_KEY};
use redrive_triage::agent::{Agent, Watching};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often a server without the lock tries for it, and the holder checks it still holds it.
const FLEET_LOCK_RETRY_MS: u64 = 2_000;

/// The agent as `serve` runs it.
pub enum TriageRunner {
    Local(Watching),
    Fleet { stop: oneshot::Sender<()>, task: JoinHandle<bool> },
}

impl TriageRunner {
    /// Starts the agent: at once on the embedded store, under the fleet lock on PostgreSQL.
    /// `active` is 1 while this server's agent runs (`redrive_triage_agent_active`).
    pub fn start(
        postgres: Option<String>,
        make: impl Fn() -> anyhow::Result<Agent> + Send + 'static,
        interval: Duration,
        active: Arc<AtomicBool>,
    ) -> anyhow::Result<TriageRunner> {
        let Some(url) = postgres else {
            active.store(true, Ordering::Relaxed);
            tracing::info!("triage agent running in process");
            return Ok(TriageRunner::Local(make()?.spawn_watch(Vec::new(), interval)));
        };
        make()?; // the configuration is checked before serving, not on taking the lock
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let retry = Duration::from_millis(FLEET_LOCK_RETRY_MS);
            let bound = Duration::from_millis(redrive_core::limits::TRIAGE_AGENT_STOP_MAX_MS);
            loop {
                let mut lock = tokio::select! {
                    l = FleetLock::acquire(&url, TRIAGE_AGENT_LOCK_KEY, retry) => l,
                    _ = &mut stopped => return true,
                };
                let Ok(agent) = make() else { return true };
                tracing::info!(
                    "triage agent running in process (this server holds the fleet lock)"
                );
                active.store(true, Ordering::Relaxed);
                let watching = agent.spawn_watch(Vec::new(), interval);
                let stopping = tokio::select! {
                    _ = lock.lost(retry) => false,
                    _ = &mut stopped => true,
                };
                let clean = watching.stop(bound).await;
                active.store(false, Ordering::Relaxed);
                drop(lock);
                if stopping {
                    return clean;
                }
                tracing::warn!("triage agent stopped: the fleet lock was lost with its connection");
            }
        });
        Ok(TriageRunner::Fleet { stop, task })
    }

    /// Stops the agent after its pass in flight, at most `bound`; `false` if cut short.
    pub async fn stop(self, bound: Duration) -> bool {
        match self {
            TriageRunner::Local(w) => w.stop(bound).await,
            TriageRunner::Fleet { stop, task } => {
                let _ = stop.send(());
                let abort = task.abort_handle();
                match tokio::time::timeout(bound, task).await {
                    Ok(Ok(clean)) => clean,
                    _ => {
                        abort.abort();
                        false
                    }
                }
            }
        }
    }
}
