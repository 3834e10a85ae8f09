//! What every operation shares: running cached statements, mapping driver errors to the core
//! error, reading a queue's row, bumping lifetime totals, and waking long polls.

use deadpool_postgres::GenericClient;
use redrive_core::{Error, QueueConfig, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Rows of `queue_totals` per queue: concurrent writers bump different rows.
pub const TOTALS_SHARDS: u32 = 8;

/// A driver error: a lost or refused connection is `StoreUnavailable` (retry later, nothing
/// was changed that the caller was told of); anything else is a bug or an unexpected database
/// state, logged and answered as `internal`.
pub fn internal(e: tokio_postgres::Error) -> Error {
    use std::error::Error as _;
    let io = e.source().is_some_and(|s| s.is::<std::io::Error>());
    let Some(db) = e.as_db_error() else {
        // The client's own text names only the step ("error connecting to server"); its cause
        // says what went wrong (refused, timed out, no such host).
        let text = match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        if e.is_closed() || io {
            return Error::StoreUnavailable(format!("database: {text}"));
        }
        tracing::error!(error = %text, "database client error");
        return Error::Internal(format!("database client: {text}"));
    };
    // 40001 serialization failure, 40P01 deadlock, 57P01–03 shut down or starting up, 53300 too
    // many connections, 08xxx connection failures: nothing was changed, a retry may succeed.
    // 28xxx (no such role, a wrong password) and 3D000 (no such database): the server cannot
    // reach its store until someone fixes the URL or the database, and the text says which.
    let code = db.code().code();
    let unavailable = matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
        || code == "3D000"
        || code.starts_with("08")
        || code.starts_with("28");
    if unavailable {
        return Error::StoreUnavailable(format!("database: {db}"));
    }
    tracing::error!(error = %db, "database error");
    Error::Internal(format!("database: {db}"))
}

pub fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    Error::StoreUnavailable(format!("database pool: {e}"))
}

pub async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(internal)?;
    c.query(&st, params).await.map_err(internal)
}

pub async fn query_one(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row> {
    let st = c.prepare_cached(sql).await.map_err(internal)?;
    c.query_one(&st, params).await.map_err(internal)
}

pub async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let st = c.prepare_cached(sql).await.map_err(internal)?;
    c.query_opt(&st, params).await.map_err(internal)
}

pub async fn execute(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let st = c.prepare_cached(sql).await.map_err(internal)?;
    c.execute(&st, params).await.map_err(internal)
}

/// A queue as stored.
#[derive(Clone, Debug)]
pub struct QueueRow {
    pub id: i32,
    pub name: String,
    pub config: QueueConfig,
    pub version: i32,
    pub created_at: u64,
    pub updated_at: u64,
}

pub fn queue_row(r: &Row) -> Result<QueueRow> {
    let config: String = r.get(2);
    let config = serde_json::from_str(&config)
        .map_err(|e| Error::Internal(format!("queue config in the database: {e}")))?;
    Ok(QueueRow {
        id: r.get(0),
        name: r.get(1),
        config,
        version: r.get(3),
        created_at: ms(r.get(4)),
        updated_at: ms(r.get(5)),
    })
}

pub async fn queue_by_name(c: &impl GenericClient, name: &str) -> Result<QueueRow> {
    const SQL: &str = "SELECT id, name, config::text, version, created_at, updated_at \
                       FROM redrive.queues WHERE name = $1";
    match query_opt(c, SQL, &[&name]).await? {
        Some(r) => queue_row(&r),
        None => Err(Error::QueueNotFound(name.to_owned())),
    }
}

pub async fn queue_by_id(c: &impl GenericClient, id: i32) -> Result<Option<QueueRow>> {
    const SQL: &str = "SELECT id, name, config::text, version, created_at, updated_at \
                       FROM redrive.queues WHERE id = $1";
    query_opt(c, SQL, &[&id]).await?.map(|r| queue_row(&r)).transpose()
}

/// The lifetime counters of a queue, one column each in `queue_totals`.
#[derive(Clone, Copy, Debug)]
pub enum Total {
    Failed,
    LeaseExpired,
    DeadLettered,
    Expired,
    Purged,
    Redriven,
    /// Completed jobs deleted past `completed_retention_ms` (not a total users see: the
    /// completed count is acked less forgotten).
    Forgotten,
}

macro_rules! bump_sql {
    ($f:literal) => {
        concat!(
            "INSERT INTO redrive.queue_totals (queue_id, shard, ",
            $f,
            ") VALUES ($1, $2, $3) ON CONFLICT (queue_id, shard) DO UPDATE SET ",
            $f,
            " = redrive.queue_totals.",
            $f,
            " + EXCLUDED.",
            $f
        )
    };
}

/// Adds `n` to one lifetime total of a queue, in the caller's transaction.
pub async fn bump(
    c: &impl GenericClient,
    queue_id: i32,
    shard: i16,
    total: Total,
    n: i64,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let sql = match total {
        Total::Failed => bump_sql!("failed"),
        Total::LeaseExpired => bump_sql!("lease_expired"),
        Total::DeadLettered => bump_sql!("dead_lettered"),
        Total::Expired => bump_sql!("expired"),
        Total::Purged => bump_sql!("purged"),
        Total::Redriven => bump_sql!("redriven"),
        Total::Forgotten => bump_sql!("forgotten"),
    };
    execute(c, sql, &[&queue_id, &shard, &n]).await.map(drop)
}

/// Wakes long polls on every server for this queue once the caller's transaction commits.
pub async fn notify(c: &impl GenericClient, queue_id: i32) -> Result<()> {
    const SQL: &str = "SELECT pg_notify('redrive_ready', $1::int::text)";
    query(c, SQL, &[&queue_id]).await.map(drop)
}

/// Milliseconds from a `bigint` column (never negative in this schema).
pub fn ms(v: i64) -> u64 {
    v.max(0) as u64
}

pub fn opt_ms(v: Option<i64>) -> Option<u64> {
    v.map(ms)
}

/// The database's clock now, in ms.
pub async fn now_ms(c: &impl GenericClient) -> Result<u64> {
    Ok(ms(query_one(c, "SELECT redrive.now_ms()", &[]).await?.get(0)))
}

/// A millisecond count as a `bigint` parameter (every bound in `limits` is far below i64::MAX).
pub fn sql_ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
