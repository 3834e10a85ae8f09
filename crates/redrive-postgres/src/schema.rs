//! The database schema as embedded, numbered migrations, and the start-up step that applies the
//! missing ones under an advisory lock so that several servers starting at once migrate once.
//!
//! Invariant: a migration, once released, is never edited; a change is a new migration. A
//! database whose `schema_version` is ahead of [`MIGRATIONS`] was written by a newer redrive,
//! and this one refuses to start against it rather than misread its rows.

use redrive_core::{Error, Result};
use tokio_postgres::Client;

use crate::db::internal;

/// `pg_advisory_lock` key of the migration step ("redrive" in ASCII, as a bigint).
const MIGRATION_LOCK_KEY: i64 = 0x0072_6564_7269_7665;

/// Every migration, in order; migration `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9];

/// The schema version this crate writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Times are milliseconds since the epoch (`bigint`), as in the core types: no conversion on
/// the hot path, and arithmetic (`visible_at + lease_ms`) stays integer. The database's clock
/// (`redrive.now_ms()`, the statement's start) is the one clock every server shares.
const V1: &str = r#"
CREATE FUNCTION redrive.now_ms() RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT (extract(epoch FROM statement_timestamp()) * 1000)::bigint $$;

-- Appends one attempt-log entry, keeping the newest ATTEMPT_LOG_ENTRIES_MAX (20).
CREATE FUNCTION redrive.push_attempt(log jsonb, entry jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN jsonb_array_length(log) >= 20 THEN (log - 0) || jsonb_build_array(entry)
                 ELSE log || jsonb_build_array(entry) END $$;

CREATE TABLE redrive.queues (
  id serial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  config jsonb NOT NULL,
  version integer NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

-- Lifetime totals, spread over a few rows per queue so that concurrent writers do not queue
-- up on one row lock; readers sum the shards.
CREATE TABLE redrive.queue_totals (
  queue_id integer NOT NULL REFERENCES redrive.queues (id) ON DELETE CASCADE,
  shard smallint NOT NULL,
  enqueued bigint NOT NULL DEFAULT 0,
  duplicates bigint NOT NULL DEFAULT 0,
  delivered bigint NOT NULL DEFAULT 0,
  acked bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  lease_expired bigint NOT NULL DEFAULT 0,
  dead_lettered bigint NOT NULL DEFAULT 0,
  expired bigint NOT NULL DEFAULT 0,
  purged bigint NOT NULL DEFAULT 0,
  redriven bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (queue_id, shard)
);

-- state: 0 delayed, 1 ready, 2 leased, 3 acked, 4 dead (parked). A delayed job whose
-- visible_at has passed is ready: nothing flips it, every reader treats it so.
CREATE TABLE redrive.jobs (
  id uuid PRIMARY KEY,
  queue_id integer NOT NULL REFERENCES redrive.queues (id) ON DELETE CASCADE,
  state smallint NOT NULL,
  priority smallint NOT NULL,
  body text,
  attributes jsonb,
  idempotency_key text,
  group_id text,
  traceparent text,
  receive_count integer NOT NULL DEFAULT 0,
  failures integer NOT NULL DEFAULT 0,
  max_attempts integer,
  lease_epoch integer NOT NULL DEFAULT 0,
  enqueued_at bigint NOT NULL,
  visible_at bigint NOT NULL,
  leased_at bigint,
  first_received_at bigint,
  completed_at bigint,
  expires_at bigint NOT NULL,
  dead_reason smallint,
  source_queue_id integer,
  redrive_count integer NOT NULL DEFAULT 0,
  redriven_from_queue_id integer,
  worker_id text,
  attempts jsonb NOT NULL DEFAULT '[]'
);
-- The receive path: per queue and level, by ready time.
CREATE INDEX jobs_ready ON redrive.jobs (queue_id, priority, visible_at, id) WHERE state IN (0, 1);
-- Lease expiry.
CREATE INDEX jobs_leased ON redrive.jobs (visible_at) WHERE state = 2;
-- Retention and forgetting completed jobs.
CREATE INDEX jobs_expiry ON redrive.jobs (expires_at);
-- Dead-letter listing and redrive, in id (time) order.
CREATE INDEX jobs_dead ON redrive.jobs (queue_id, id) WHERE dead_reason IS NOT NULL AND state <> 3;
-- Counts by state, purge, queue deletion.
CREATE INDEX jobs_queue_state ON redrive.jobs (queue_id, state);

CREATE TABLE redrive.dedup (
  queue_id integer NOT NULL REFERENCES redrive.queues (id) ON DELETE CASCADE,
  key text NOT NULL,
  job_id uuid NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (queue_id, key)
);
CREATE INDEX dedup_expiry ON redrive.dedup (expires_at);

CREATE TABLE redrive.docs (
  kind smallint NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (kind, key)
);
"#;

/// Migration 2: transactional enqueue, `redrive.enqueue(queue, body, options)`, called by an
/// application inside its own transaction (the SQL text lives in `sql/enqueue.sql`).
const V2: &str = include_str!("sql/enqueue.sql");

/// Migration 3: the retention index leaves leased jobs out (the sweep never takes a leased
/// job: its lease ends first), so a lease, which is not a HOT update, adds no entry to it: 7.5%
/// more throughput at (4, 4, 10) (docs/benchmarks.md). Building it locks writes to the jobs
/// table while it runs, once, at the first start of this version.
const V3: &str = "DROP INDEX redrive.jobs_expiry;
CREATE INDEX jobs_expiry ON redrive.jobs (expires_at) WHERE state <> 2;";

/// Migration 4: a change to a queue row is announced on `redrive_queue` at commit, so that
/// every server forgets the queue rows it cached (`queue_cache`). One notification per
/// statement: the listener forgets every row whatever the payload.
const V4: &str = "CREATE FUNCTION redrive.queue_changed() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_notify('redrive_queue', ''); RETURN NULL; END $$;
CREATE TRIGGER queue_changed AFTER UPDATE OR DELETE ON redrive.queues
  FOR EACH STATEMENT EXECUTE FUNCTION redrive.queue_changed();";

/// Migration 5: no index holds every version of a job any more. `jobs_queue_state (queue_id,
/// state)` took an entry at every insert, lease and ack; the queue's jobs are now found through
/// the partial indexes, which lead with the queue: `jobs_leased (queue_id, visible_at)` for
/// leased jobs and `jobs_expiry (queue_id, expires_at)` for the others (the sweeps go queue by
/// queue). Deleting a queue reads the whole table (its cascade has no index to go by): a rare
/// operation, where every lease and ack is a frequent one. Building the two indexes locks writes
/// to the jobs table while it runs, once, at the first start of this version.
const V5: &str = "DROP INDEX redrive.jobs_queue_state;
DROP INDEX redrive.jobs_leased;
CREATE INDEX jobs_leased ON redrive.jobs (queue_id, visible_at) WHERE state = 2;
DROP INDEX redrive.jobs_expiry;
CREATE INDEX jobs_expiry ON redrive.jobs (queue_id, expires_at) WHERE state <> 2;";

/// Migration 6: completed jobs forgotten past `completed_retention_ms`, counted, so that a
/// queue's completed count is `acked - forgotten` instead of a count of its completed rows (an
/// hour of every job by default), which every statistics read made.
const V6: &str = "ALTER TABLE redrive.queue_totals ADD COLUMN forgotten bigint NOT NULL DEFAULT 0;";

/// Migration 7: the jobs table's foreign key to its queue is gone. It cost every enqueue a
/// lookup of the queue row per job and a lock of it shared by every concurrent producer (a
/// multixact): 3.5% of the database's CPU at (4, 4, 10) (docs/benchmarks.md). Deleting a queue
/// now deletes its jobs itself and records the queue in `deleted_queues`; for a while after,
/// the sweep deletes any job a statement that began before the deletion still gave it (queue
/// ids are never reused). The SQL function `redrive.enqueue`, which runs in the application's
/// transaction, however old its snapshot, locks the queue row instead: a deletion waits for
/// that transaction, and a deleted queue is refused. Its text is migration 2's with that lock
/// (released migrations are never edited, so the change is made to the installed function).
const V7: &str = "ALTER TABLE redrive.jobs DROP CONSTRAINT jobs_queue_id_fkey;
CREATE TABLE redrive.deleted_queues (id integer PRIMARY KEY, deleted_at bigint NOT NULL);
DO $$
DECLARE
  def text := pg_get_functiondef('redrive.enqueue(text, text, jsonb)'::regprocedure);
  lookup text := 'FROM redrive.queues WHERE name = enqueue.queue;';
BEGIN
  IF position(lookup IN def) = 0 THEN
    RAISE EXCEPTION 'migration 7: redrive.enqueue is not the function migration 2 installed';
  END IF;
  EXECUTE replace(def, lookup, 'FROM redrive.queues WHERE name = enqueue.queue FOR KEY SHARE;');
END $$;";

/// Migration 8: a FIFO receive reads its queue's first ready jobs in enqueue order from an
/// index of its own, `jobs_fifo`, and asks `jobs_fifo_leased` whether each is behind a lease
/// of its group; it used to sort every ready job of the queue and look through every lease of
/// the queue for each, at every receive (40,547 buffers behind 20,000 jobs; docs/benchmarks.md).
/// Both are partial on `ordered`, true when the job's queue is FIFO, so a standard queue's jobs
/// take no entry in them. It defaults to true: a row written without it (by a server of an
/// earlier version, while a fleet upgrades) is still found by a FIFO receive, and a standard
/// one costs an index entry, no more. `redrive.enqueue` (migration 2's, as migration 7 left it)
/// writes it from the queue's kind; the jobs already there keep the default. Building the
/// indexes locks writes to the jobs table while it runs, once.
const V8: &str = "ALTER TABLE redrive.jobs ADD COLUMN ordered boolean NOT NULL DEFAULT true;
CREATE INDEX jobs_fifo ON redrive.jobs (queue_id, enqueued_at, id) WHERE state IN (0, 1) AND ordered;
CREATE INDEX jobs_fifo_leased ON redrive.jobs (queue_id, group_id, enqueued_at, id)
  WHERE state = 2 AND ordered AND group_id IS NOT NULL;
CREATE FUNCTION redrive.is_fifo(queue integer) RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT coalesce((SELECT (config->>'fifo')::boolean FROM redrive.queues WHERE id = queue), true) $$;
DO $$
DECLARE
  def text := pg_get_functiondef('redrive.enqueue(text, text, jsonb)'::regprocedure);
  columns text := 'max_attempts, enqueued_at, visible_at, expires_at)';
  retention text := 'v_now + (q.config->>''retention_ms'')::bigint);';
BEGIN
  IF position(columns IN def) = 0 OR position(retention IN def) = 0 THEN
    RAISE EXCEPTION 'migration 8: redrive.enqueue is not the function migration 7 left';
  END IF;
  def := replace(def, columns, 'max_attempts, enqueued_at, visible_at, expires_at, ordered)');
  EXECUTE replace(def, retention, 'v_now + (q.config->>''retention_ms'')::bigint, '
    || 'coalesce((q.config->>''fifo'')::boolean, false));');
END $$;";

/// Migration 9: a FIFO receive that finds its look-ahead (the first 1,000 ready jobs in enqueue
/// order) held by leases walks the queue group by group instead: `jobs_fifo_groups` gives each
/// group's ready jobs in order, so a group held by a lease is passed over in one index probe
/// however many jobs wait behind its lease. Before it, a receive behind one held group of
/// 20,000 jobs walked all of them, 29 ms under the queue's lock (docs/benchmarks.md).
const V9: &str =
    "CREATE INDEX jobs_fifo_groups ON redrive.jobs (queue_id, group_id, enqueued_at, id)
  WHERE state IN (0, 1) AND ordered;";

/// Brings the schema up to [`SCHEMA_VERSION`], or refuses a newer one.
pub async fn migrate(client: &mut Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(internal)?;
    let r = migrate_locked(client).await;
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
    r?;
    unlock.map_err(internal)?;
    Ok(())
}

async fn migrate_locked(client: &mut Client) -> Result<()> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS redrive;
             CREATE TABLE IF NOT EXISTS redrive.schema_version (
               version integer PRIMARY KEY,
               applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(internal)?;
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM redrive.schema_version", &[])
        .await
        .map_err(internal)?;
    let current: i32 = row.get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::StoreUnavailable(format!(
            "the database schema is version {current}, newer than this redrive knows \
             ({SCHEMA_VERSION}); upgrade redrive"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        let tx = client.transaction().await.map_err(internal)?;
        tx.batch_execute(sql).await.map_err(internal)?;
        tx.execute("INSERT INTO redrive.schema_version (version) VALUES ($1)", &[&version])
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}
