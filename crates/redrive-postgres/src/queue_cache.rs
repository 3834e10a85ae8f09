//! Queue rows as last read, so that enqueue and receive do not read `redrive.queues` (and parse
//! its config) at every request: two of the five statements a batch cost end to end.
//!
//! Every change to a queue row fires a trigger that sends `NOTIFY redrive_queue` at commit
//! (migration 4); each server's listener then forgets its whole cache, and the server that made
//! the change forgets at once, before it answers. A row read before a change and put in the
//! cache after the change was forgotten would stay stale, so a read caches its row only if no
//! change was announced while it read (the generation is unchanged). While the listener is
//! down, changes may go unannounced: nothing is cached until it is back. A change on another
//! server is thus seen within a notification's delivery, as SQS's own attribute changes take
//! a while to reach every host. An enqueue through a stale row of a deleted queue finds the row
//! gone (its statement looks) and is answered as an unknown queue; a deletion that commits while
//! such a statement runs leaves its jobs to the sweep (`queues::delete_jobs_of_deleted_queues`),
//! and no queue row leads to them meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;

use deadpool_postgres::GenericClient;
use redrive_core::Result;

use crate::db::{self, QueueRow};

#[derive(Default)]
pub struct QueueCache(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// Bumped by every forgetting.
    generation: u64,
    /// Whether changes are announced to this server (its listener is up).
    live: bool,
    rows: HashMap<String, QueueRow>,
}

impl QueueCache {
    /// The queue named `name`, from the cache or read (and cached).
    pub async fn get(&self, c: &impl GenericClient, name: &str) -> Result<QueueRow> {
        let generation = {
            let g = self.0.lock().expect("queue cache lock");
            if let Some(q) = g.rows.get(name) {
                return Ok(q.clone());
            }
            g.generation
        };
        let q = db::queue_by_name(c, name).await?;
        let mut g = self.0.lock().expect("queue cache lock");
        if g.live && g.generation == generation {
            g.rows.insert(name.to_owned(), q.clone());
        }
        Ok(q)
    }

    /// Forgets every row: some queue changed.
    pub fn forget(&self) {
        self.0.lock().expect("queue cache lock").forget();
    }

    /// Whether changes are announced to this server from now on; either way, what was cached
    /// is forgotten (changes may have gone unannounced).
    pub fn set_live(&self, live: bool) {
        let mut g = self.0.lock().expect("queue cache lock");
        g.forget();
        g.live = live;
    }
}

impl Inner {
    fn forget(&mut self) {
        self.generation += 1;
        self.rows.clear();
    }
}
