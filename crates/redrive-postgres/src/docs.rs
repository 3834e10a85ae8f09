//! Control-plane documents (triage proposals and policies, SQS move tasks): text by kind and
//! key, last write wins or the first of racing conditional writes, bounded per kind as the
//! engine bounds them.

use deadpool_postgres::GenericClient;
use redrive_core::broker::DocKind;
use redrive_core::{limits, Error, Result};

use crate::db::{execute, query, query_one, query_opt};

/// `pg_advisory_xact_lock` keys of document writes: this base plus the kind, so that the
/// per-kind count is exact across servers.
const DOCS_LOCK_BASE: i64 = 0x7264_646f_6300_0000;

/// Stores (`Some`) or deletes (`None`) one document, inside the caller's transaction.
pub async fn put(
    c: &impl GenericClient,
    kind: DocKind,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    check(key, value)?;
    let k = kind as i16;
    let Some(value) = value else {
        const DEL: &str = "DELETE FROM redrive.docs WHERE kind = $1 AND key = $2";
        return execute(c, DEL, &[&k, &key]).await.map(drop);
    };
    lock_kind(c, kind).await?;
    const COUNT: &str = "SELECT count(*), count(*) FILTER (WHERE key = $2) \
                         FROM redrive.docs WHERE kind = $1";
    let r = query_one(c, COUNT, &[&k, &key]).await?;
    let (count, exists): (i64, i64) = (r.get(0), r.get(1));
    if exists == 0 {
        room_for_one(kind, count)?;
    }
    const PUT: &str = "INSERT INTO redrive.docs (kind, key, value) VALUES ($1, $2, $3) \
                       ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value";
    execute(c, PUT, &[&k, &key, &value]).await.map(drop)
}

/// Stores or deletes one document if its value is `expected` (`None`: there is none), inside
/// the caller's transaction; returns whether it did. Each case is one statement whose `WHERE`
/// (or `ON CONFLICT DO NOTHING`) is the comparison, so the row lock makes it atomic: a racing
/// writer waits for the first to commit and then finds the value changed. Only an insert, which
/// can grow the kind, takes the per-kind lock for the count.
pub async fn put_if(
    c: &impl GenericClient,
    kind: DocKind,
    key: &str,
    expected: Option<&str>,
    value: Option<&str>,
) -> Result<bool> {
    check(key, value)?;
    let k = kind as i16;
    let changed = match (expected, value) {
        (None, None) => {
            const ABSENT: &str =
                "SELECT NOT EXISTS (SELECT 1 FROM redrive.docs WHERE kind = $1 AND key = $2)";
            return Ok(query_one(c, ABSENT, &[&k, &key]).await?.get(0));
        }
        (None, Some(value)) => {
            lock_kind(c, kind).await?;
            const COUNT: &str = "SELECT count(*) FROM redrive.docs WHERE kind = $1";
            room_for_one(kind, query_one(c, COUNT, &[&k]).await?.get(0))?;
            const ADD: &str = "INSERT INTO redrive.docs (kind, key, value) VALUES ($1, $2, $3) \
                               ON CONFLICT (kind, key) DO NOTHING";
            execute(c, ADD, &[&k, &key, &value]).await?
        }
        (Some(old), Some(value)) => {
            const SWAP: &str = "UPDATE redrive.docs SET value = $4 \
                                WHERE kind = $1 AND key = $2 AND value = $3";
            execute(c, SWAP, &[&k, &key, &old, &value]).await?
        }
        (Some(old), None) => {
            const DEL: &str =
                "DELETE FROM redrive.docs WHERE kind = $1 AND key = $2 AND value = $3";
            execute(c, DEL, &[&k, &key, &old]).await?
        }
    };
    Ok(changed == 1)
}

/// One document's value.
pub async fn get(c: &impl GenericClient, kind: DocKind, key: &str) -> Result<Option<String>> {
    const SQL: &str = "SELECT value FROM redrive.docs WHERE kind = $1 AND key = $2";
    Ok(query_opt(c, SQL, &[&(kind as i16), &key]).await?.map(|r| r.get(0)))
}

/// Every document of a kind, by key.
pub async fn list(c: &impl GenericClient, kind: DocKind) -> Result<Vec<(String, String)>> {
    const SQL: &str = "SELECT key, value FROM redrive.docs WHERE kind = $1 ORDER BY key";
    let rows = query(c, SQL, &[&(kind as i16)]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The bounds every document write checks before anything else.
fn check(key: &str, value: Option<&str>) -> Result<()> {
    if key.is_empty() || key.len() > limits::DOC_KEY_BYTES_MAX {
        let max = limits::DOC_KEY_BYTES_MAX;
        return Err(Error::invalid("key", format!("a document key has 1 to {max} bytes")));
    }
    if value.is_some_and(|v| v.len() > limits::DOC_VALUE_BYTES_MAX) {
        return Err(Error::LimitExceeded {
            limit: "DOC_VALUE_BYTES_MAX",
            max: limits::DOC_VALUE_BYTES_MAX as u64,
        });
    }
    Ok(())
}

/// Serializes the writes that may add a document of `kind` until the transaction ends.
async fn lock_kind(c: &impl GenericClient, kind: DocKind) -> Result<()> {
    let key = DOCS_LOCK_BASE + i64::from(kind as i16);
    execute(c, "SELECT pg_advisory_xact_lock($1)", &[&key]).await.map(drop)
}

/// Refuses a new document when `kind` already holds `count`, its most.
fn room_for_one(kind: DocKind, count: i64) -> Result<()> {
    if count as usize >= kind.count_max() {
        return Err(Error::LimitExceeded {
            limit: kind.limit_name(),
            max: kind.count_max() as u64,
        });
    }
    Ok(())
}
