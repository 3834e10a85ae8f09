//! Control-plane documents (triage proposals and policies): text by kind and key, last write
//! wins, bounded per kind as the engine bounds them.

use deadpool_postgres::GenericClient;
use redrive_core::broker::DocKind;
use redrive_core::{limits, Error, Result};

use crate::db::{execute, query, query_one};

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
    if key.is_empty() || key.len() > limits::DOC_KEY_BYTES_MAX {
        let max = limits::DOC_KEY_BYTES_MAX;
        return Err(Error::invalid("key", format!("a document key has 1 to {max} bytes")));
    }
    let k = kind as i16;
    let Some(value) = value else {
        const DEL: &str = "DELETE FROM redrive.docs WHERE kind = $1 AND key = $2";
        return execute(c, DEL, &[&k, &key]).await.map(drop);
    };
    if value.len() > limits::DOC_VALUE_BYTES_MAX {
        return Err(Error::LimitExceeded {
            limit: "DOC_VALUE_BYTES_MAX",
            max: limits::DOC_VALUE_BYTES_MAX as u64,
        });
    }
    execute(c, "SELECT pg_advisory_xact_lock($1)", &[&(DOCS_LOCK_BASE + i64::from(k))]).await?;
    const COUNT: &str = "SELECT count(*), count(*) FILTER (WHERE key = $2) \
                         FROM redrive.docs WHERE kind = $1";
    let r = query_one(c, COUNT, &[&k, &key]).await?;
    let (count, exists): (i64, i64) = (r.get(0), r.get(1));
    if exists == 0 && count as usize >= kind.count_max() {
        return Err(Error::LimitExceeded {
            limit: kind.limit_name(),
            max: kind.count_max() as u64,
        });
    }
    const PUT: &str = "INSERT INTO redrive.docs (kind, key, value) VALUES ($1, $2, $3) \
                       ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value";
    execute(c, PUT, &[&k, &key, &value]).await.map(drop)
}

/// Every document of a kind, by key.
pub async fn list(c: &impl GenericClient, kind: DocKind) -> Result<Vec<(String, String)>> {
    const SQL: &str = "SELECT key, value FROM redrive.docs WHERE kind = $1 ORDER BY key";
    let rows = query(c, SQL, &[&(kind as i16)]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
