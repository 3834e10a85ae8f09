//! `redrive migrate --from-data-dir DIR --to postgres://…`: copies a stopped embedded store into
//! PostgreSQL — queues and their configuration and totals, every job that has not completed
//! (ready, delayed, dead, with attempt logs, dead-letter information, delays and priorities),
//! the idempotency keys still in their window, and the triage documents — in one transaction,
//! then says what it copied. Completed jobs are not copied. The embedded store is only read.

use std::path::PathBuf;

use anyhow::{bail, Context};
use redrive_core::time::{Clock, SystemClock};
use redrive_engine::state::{Export, ExportedJob};
use redrive_engine::{Durability, FsStorage, Store};
use redrive_postgres::import::{Import, ImportJob, ImportKey, ImportQueue, ImportReport};
use redrive_postgres::{PgBroker, PgOptions};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Data directory of the embedded store (its server must be stopped)
    #[arg(long, value_name = "DIR")]
    from_data_dir: PathBuf,
    /// PostgreSQL database to copy into: postgres://USER@HOST:PORT/DB (it must not already hold
    /// these queues)
    #[arg(long, value_name = "URL")]
    to: String,
}

pub async fn run(args: MigrateArgs, json: bool) -> anyhow::Result<()> {
    if !args.from_data_dir.is_dir() {
        bail!("{} is not a directory", args.from_data_dir.display());
    }
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        bail!("--to must be a postgres://USER@HOST:PORT/DB URL, not {:?}", args.to);
    }
    let now = SystemClock.now_ms();
    // The directory's lock file refuses a store that a running server holds.
    let storage = FsStorage::new(&args.from_data_dir)
        .with_context(|| format!("opening {}", args.from_data_dir.display()))?;
    let store = Store::open(Box::new(storage), Durability::Sync, now)
        .with_context(|| format!("reading the store in {}", args.from_data_dir.display()))?;
    let total = store.job_count() as u64;
    let export = store.export(now).context("reading the store")?;
    drop(store);
    let completed = total - export.jobs.len() as u64;
    let options = PgOptions { pool_size: 2, ..PgOptions::default() };
    let broker = PgBroker::connect(&args.to, options).await.context("connecting to PostgreSQL")?;
    let report = broker.import(&to_import(export)).await.context("writing into PostgreSQL")?;
    print_report(&report, completed, &args, json);
    Ok(())
}

fn to_import(e: Export) -> Import {
    Import {
        queues: e
            .queues
            .into_iter()
            .map(|q| ImportQueue {
                name: q.name,
                config: q.config,
                created_at: q.created_at,
                updated_at: q.updated_at,
                totals: q.totals,
            })
            .collect(),
        jobs: e.jobs.into_iter().map(job).collect(),
        keys: e
            .keys
            .into_iter()
            .map(|k| ImportKey { queue: k.queue, key: k.key, job: k.job, expires_at: k.expires_at })
            .collect(),
        docs: e.docs,
    }
}

fn job(j: ExportedJob) -> ImportJob {
    ImportJob {
        id: j.id,
        queue: j.queue,
        state: j.state,
        priority: j.priority,
        body: j.body,
        attributes: j.attributes,
        idempotency_key: j.idempotency_key,
        traceparent: j.traceparent,
        group: j.group,
        receive_count: j.receive_count,
        failures: j.failures,
        max_attempts: j.max_attempts,
        epoch: j.epoch,
        enqueued_at: j.enqueued_at,
        visible_at: j.visible_at,
        first_received_at: j.first_received_at,
        leased_at: j.leased_at,
        completed_at: j.completed_at,
        expires_at: j.expires_at,
        dead_reason: j.dead_reason,
        source_queue: j.source_queue,
        redrive_count: j.redrive_count,
        redriven_from: j.redriven_from,
        worker: j.worker,
        attempts: j.attempts,
    }
}

fn print_report(r: &ImportReport, completed: u64, args: &MigrateArgs, json: bool) {
    if json {
        let v = json!({
            "queues": r.queues,
            "jobs": {"ready": r.ready, "delayed": r.delayed, "dead": r.dead},
            "dead_letters": r.dead_letters,
            "attempt_entries": r.attempt_entries,
            "idempotency_keys": r.keys,
            "documents": r.docs,
            "completed_not_copied": completed,
        });
        println!("{v}");
        return;
    }
    let jobs = r.ready + r.delayed + r.dead;
    println!("copied from {} into PostgreSQL:", args.from_data_dir.display());
    println!("  queues            {}", r.queues);
    println!(
        "  jobs              {jobs} ({} ready, {} delayed, {} dead)",
        r.ready, r.delayed, r.dead
    );
    println!("  dead letters      {} (with their dead-letter information)", r.dead_letters);
    println!("  attempt entries   {}", r.attempt_entries);
    println!("  idempotency keys  {} (still in their window)", r.keys);
    println!("  triage documents  {}", r.docs);
    println!("not copied: {completed} completed jobs");
}
