//! `redrive bench --bare-postgres URL`: the same workload as the redrive run (producers,
//! consumers, batch, jobs, body size) through the bare `FOR UPDATE SKIP LOCKED` lease pattern on
//! a plain table, for a side-by-side figure on the same database in the same run.
//!
//! The pattern, as applications hand-write it: `INSERT … SELECT unnest(…)` to enqueue a batch,
//! `UPDATE … WHERE id IN (SELECT … ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED) RETURNING` to
//! lease one, `DELETE … WHERE id = ANY(…)` to ack. One connection per producer and consumer,
//! `synchronous_commit = on`, no pool, no notifications (an empty receive sleeps briefly):
//! none of redrive's bookkeeping (priorities, attempts, totals, fencing epochs, dead letters).
//! `--bare-notify` adds the one thing redrive's enqueue needs to wake long polls on every
//! server, a `NOTIFY` in each enqueue's transaction, to measure what that alone costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio_postgres::Client;

use crate::bench::{join_peer, now_us, share, PeerRun, LATENCY_MAX_US};

/// Table of the bare pattern, dropped and created at the start of each run.
const TABLE: &str = "redrive_bench_bare";
/// Pause of a consumer that found nothing (the bare pattern polls).
const EMPTY_POLL_PAUSE_MS: u64 = 2;

async fn connect(url: &str) -> anyhow::Result<Client> {
    // As redrive's own connections to the same URL (its TLS included).
    let (mut config, tls) = redrive_postgres::tls::parse_url(url)?;
    config.options("-c synchronous_commit=on");
    config.application_name("redrive-bench-bare");
    let (client, conn) = config.connect(tls).await.context("connecting to PostgreSQL")?;
    tokio::spawn(conn);
    Ok(client)
}

pub async fn run(
    url: &str,
    producers: u32,
    consumers: u32,
    jobs: u64,
    batch: u32,
    body_bytes: u32,
    notify: bool,
) -> anyhow::Result<PeerRun> {
    let setup = connect(url).await?;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {TABLE};
             CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, body text NOT NULL,
               enqueued_us bigint NOT NULL, leased_until timestamptz);"
        ))
        .await
        .context("creating the bare table")?;
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..producers {
        let share = share(jobs, producers, i);
        let client = connect(url).await?;
        tasks.push(tokio::spawn(async move {
            produce(client, share, batch, body_bytes, notify).await.map(|()| None)
        }));
    }
    for _ in 0..consumers {
        let client = connect(url).await?;
        let acked = acked.clone();
        tasks
            .push(tokio::spawn(async move { consume(client, batch, jobs, acked).await.map(Some) }));
    }
    let run = join_peer(tasks, start, &acked).await?;
    setup.batch_execute(&format!("DROP TABLE IF EXISTS {TABLE}")).await.ok();
    Ok(run)
}

/// Enqueues `share` jobs in batches; with `notify`, each enqueue also `NOTIFY`s in its
/// transaction, as redrive's enqueue does to wake long polls on every server.
async fn produce(
    client: Client,
    share: u64,
    batch: u32,
    body_bytes: u32,
    notify: bool,
) -> anyhow::Result<()> {
    let insert = format!(
        "INSERT INTO {TABLE} (body, enqueued_us) SELECT * FROM unnest($1::text[], $2::int8[])"
    );
    let insert = match notify {
        false => client.prepare(&insert).await?,
        true => {
            let sql = format!(
                "WITH ins AS ({insert} RETURNING 1) \
                 SELECT count(pg_notify('{TABLE}', '')) FROM (SELECT 1 FROM ins LIMIT 1) s"
            );
            client.prepare(&sql).await?
        }
    };
    let body = "x".repeat(body_bytes as usize);
    let mut sent = 0u64;
    while sent < share {
        let n = (share - sent).min(u64::from(batch)) as usize;
        let t = now_us() as i64;
        let bodies = vec![body.as_str(); n];
        let times = vec![t; n];
        client.query(&insert, &[&bodies, &times]).await.context("bare enqueue")?;
        sent += n as u64;
    }
    Ok(())
}

async fn consume(
    client: Client,
    batch: u32,
    jobs: u64,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Histogram<u64>> {
    let lease = client
        .prepare(&format!(
            "UPDATE {TABLE} SET leased_until = now() + interval '60 seconds' WHERE id IN ( \
               SELECT id FROM {TABLE} WHERE leased_until IS NULL OR leased_until < now() \
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, enqueued_us"
        ))
        .await?;
    let delete = client.prepare(&format!("DELETE FROM {TABLE} WHERE id = ANY($1)")).await?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    let mut ids: Vec<i64> = Vec::with_capacity(batch as usize);
    while acked.load(Ordering::Relaxed) < jobs {
        let rows = client.query(&lease, &[&i64::from(batch)]).await.context("bare lease")?;
        if rows.is_empty() {
            tokio::time::sleep(Duration::from_millis(EMPTY_POLL_PAUSE_MS)).await;
            continue;
        }
        let now = now_us();
        ids.clear();
        for r in &rows {
            ids.push(r.get(0));
            let t: i64 = r.get(1);
            latency.saturating_record(now.saturating_sub(t as u64).clamp(1, LATENCY_MAX_US));
        }
        let n = client.execute(&delete, &[&ids]).await.context("bare ack")?;
        acked.fetch_add(n, Ordering::Relaxed);
    }
    Ok(latency)
}
