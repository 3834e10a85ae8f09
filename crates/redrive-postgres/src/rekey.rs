//! Rewriting sealed values in place, for `redrive rekey --store postgres://…`: every job body,
//! attribute value and attempt error text (message and detail) that `reseal` changes (those an
//! older encryption key sealed) is written back in its new form, on a live database.
//!
//! Servers may be running: jobs are read in pages of [`BATCH`] rows in id order, without locks,
//! and each row that needs a change is written by one `UPDATE` that compares the body,
//! attributes and attempt log with the values read (compare-and-set). A row that a server
//! changed in between (an ack, a fail appending an attempt, a receive) fails the comparison and
//! is read again and redone, so no concurrent change is lost and no row is left out. A page's
//! updates commit together, holding its rows' locks only for that short transaction. Rows
//! inserted during the run are sealed with the current key already. The stores never hold a
//! key: the caller's `reseal` does the cryptography.

use redrive_core::{Error, Result};
use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::db::internal;
use crate::schema::SCHEMA_VERSION;

/// Rows per page and per transaction.
pub const BATCH: i64 = 500;

/// How often one row is read again after a concurrent change before giving up on the run.
const ROW_RETRIES: usize = 100;

/// The new form of a value, or `None` to leave it as it is.
pub type Reseal<'a> = &'a (dyn Fn(&str) -> Result<Option<String>> + Sync);

/// One job's sealable columns as stored (jsonb as text).
struct Content {
    body: Option<String>,
    attributes: Option<String>,
    attempts: String,
}

/// Rewrites every value of `redrive.jobs` at `url` that `reseal` changes; returns how many.
pub async fn rekey(url: &str, reseal: Reseal<'_>) -> Result<u64> {
    let (mut config, tls) = crate::tls::parse_url(url)?;
    config.options("-c synchronous_commit=on");
    config.application_name("redrive rekey");
    let (mut client, conn) = config.connect(tls).await.map_err(internal)?;
    let driver = tokio::spawn(conn);
    let r = run(&mut client, reseal).await;
    drop(client);
    let _ = driver.await;
    r
}

async fn run(client: &mut Client, reseal: Reseal<'_>) -> Result<u64> {
    let version: Option<i32> = client
        .query_one(
            "SELECT CASE WHEN to_regclass('redrive.schema_version') IS NULL THEN NULL \
             ELSE (SELECT max(version) FROM redrive.schema_version) END",
            &[],
        )
        .await
        .map_err(internal)?
        .get(0);
    match version {
        None => {
            return Err(Error::StoreUnavailable(
                "the database holds no redrive schema: nothing to rekey".into(),
            ))
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(Error::StoreUnavailable(format!(
                "the database schema is version {v}, newer than this redrive knows \
                 ({SCHEMA_VERSION}); upgrade redrive"
            )))
        }
        Some(_) => {}
    }
    let page = client
        .prepare(
            "SELECT id, body, attributes::text, attempts::text FROM redrive.jobs \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .await
        .map_err(internal)?;
    let mut after = Uuid::nil();
    let mut changed = 0u64;
    // The nil id is never generated (ids are time-ordered), but a page starting after it
    // must not skip one: read it on its own first.
    let mut first = true;
    loop {
        let rows = if first {
            first = false;
            client
                .query(
                    "SELECT id, body, attributes::text, attempts::text FROM redrive.jobs \
                     WHERE id >= $1 ORDER BY id LIMIT $2",
                    &[&after, &BATCH],
                )
                .await
                .map_err(internal)?
        } else {
            client.query(&page, &[&after, &BATCH]).await.map_err(internal)?
        };
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        let tx = client.transaction().await.map_err(internal)?;
        for r in &rows {
            let id: Uuid = r.get(0);
            let read = Content { body: r.get(1), attributes: r.get(2), attempts: r.get(3) };
            changed += rewrite_row(&tx, id, read, reseal).await?;
        }
        tx.commit().await.map_err(internal)?;
    }
    Ok(changed)
}

/// Rewrites one job, reading it again while a concurrent change beats the compare-and-set.
async fn rewrite_row(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    mut read: Content,
    reseal: Reseal<'_>,
) -> Result<u64> {
    for _ in 0..ROW_RETRIES {
        let (new, n) = reseal_content(&read, reseal)?;
        if n == 0 {
            return Ok(0);
        }
        let updated = tx
            .execute(
                "UPDATE redrive.jobs SET body = $2, attributes = $3::text::jsonb, \
                   attempts = $4::text::jsonb \
                 WHERE id = $1 AND body IS NOT DISTINCT FROM $5 \
                   AND attributes IS NOT DISTINCT FROM $6::text::jsonb \
                   AND attempts = $7::text::jsonb",
                &[
                    &id,
                    &new.body,
                    &new.attributes,
                    &new.attempts,
                    &read.body,
                    &read.attributes,
                    &read.attempts,
                ],
            )
            .await
            .map_err(internal)?;
        if updated == 1 {
            return Ok(n);
        }
        let Some(r) = tx
            .query_opt(
                "SELECT body, attributes::text, attempts::text FROM redrive.jobs WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(internal)?
        else {
            return Ok(0); // deleted meanwhile: nothing left to rewrite
        };
        read = Content { body: r.get(0), attributes: r.get(1), attempts: r.get(2) };
    }
    Err(Error::StoreUnavailable(format!(
        "job {id} kept changing while being rekeyed; run rekey again"
    )))
}

/// The job's columns with every value `reseal` changes replaced, and how many it changed.
fn reseal_content(c: &Content, reseal: Reseal<'_>) -> Result<(Content, u64)> {
    let mut n = 0;
    let mut one = |s: &mut String| -> Result<()> {
        if let Some(new) = reseal(s)? {
            *s = new;
            n += 1;
        }
        Ok(())
    };
    let mut body = c.body.clone();
    if let Some(b) = &mut body {
        one(b)?;
    }
    let bad = |what: &str, e: serde_json::Error| {
        Error::Internal(format!("job {what} in the database: {e}"))
    };
    let mut attributes = None;
    if let Some(a) = &c.attributes {
        let mut v: Value = serde_json::from_str(a).map_err(|e| bad("attributes", e))?;
        if let Some(map) = v.as_object_mut() {
            for val in map.values_mut() {
                if let Value::String(s) = val {
                    one(s)?;
                }
            }
        }
        attributes = Some(v.to_string());
    }
    // The attempt log as `transition::attempt_entry` writes it: message `m`, detail `d`.
    let mut log: Value = serde_json::from_str(&c.attempts).map_err(|e| bad("attempt log", e))?;
    if let Some(entries) = log.as_array_mut() {
        for e in entries {
            for k in ["m", "d"] {
                if let Some(Value::String(s)) = e.get_mut(k) {
                    one(s)?;
                }
            }
        }
    }
    let attempts = log.to_string();
    Ok((Content { body, attributes, attempts }, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_values_reseal_changes_are_rewritten() {
        let reseal = |s: &str| Ok(s.strip_prefix("old:").map(|r| format!("new:{r}")));
        let c = Content {
            body: Some("old:b".into()),
            attributes: Some(r#"{"a":"old:x","b":"plain"}"#.into()),
            attempts: r#"[{"n":1,"t":"T","m":"old:m","d":"old:d"},{"n":2,"t":"old:t"}]"#.into(),
        };
        let (new, n) = reseal_content(&c, &reseal).unwrap();
        assert_eq!(n, 4);
        assert_eq!(new.body.as_deref(), Some("new:b"));
        let a: Value = serde_json::from_str(new.attributes.as_deref().unwrap()).unwrap();
        assert_eq!(a, serde_json::json!({"a": "new:x", "b": "plain"}));
        let l: Value = serde_json::from_str(&new.attempts).unwrap();
        assert_eq!(l[0]["m"], "new:m");
        assert_eq!(l[0]["d"], "new:d");
        assert_eq!(l[1]["t"], "old:t", "error types stay as they are");
        let none = Content { body: None, attributes: None, attempts: "[]".into() };
        assert_eq!(reseal_content(&none, &reseal).unwrap().1, 0);
    }
}
