//! `send`, `receive`, `ack`, `fail` and `job show`: the life of one job from the command line.

use std::collections::BTreeMap;
use std::io::Read as _;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use redrive_client::{AckResult, FailRequest, JobId, JobInfo, NewJob, Priority, ReceiveOptions};
use redrive_core::model::ErrorInfo;

use super::format::{clip, duration, opt, opt_time, parse_job_id, parse_pair, parse_priority};
use super::format::{time, wire_name};
use super::table::{Fields, Table};
use super::Ctx;

/// Characters of a body shown in a table cell.
const BODY_CELL_CHARS_MAX: usize = 48;

#[derive(Args, Debug)]
pub struct SendArgs {
    queue: String,
    /// The job body; `-` reads it from stdin (as is, trailing newline included)
    body: String,
    /// high, standard or low
    #[arg(long, value_parser = parse_priority)]
    priority: Option<Priority>,
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// A second send with the same key within the dedup window returns the first job
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Failed attempts before this job dies (default: the queue's)
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// An attribute, repeatable
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_pair)]
    attrs: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct ReceiveArgs {
    queue: String,
    /// Most jobs to lease
    #[arg(long, default_value_t = 1)]
    max: u32,
    /// Long-poll time (default: the queue's receive wait)
    #[arg(long, value_name = "MS")]
    wait_ms: Option<u64>,
    /// Lease time (default: the queue's visibility timeout)
    #[arg(long, value_name = "MS")]
    lease_ms: Option<u64>,
    /// Recorded in the jobs' attempt logs
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct AckArgs {
    /// Receipts from `receive`
    #[arg(required = true)]
    receipts: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FailArgs {
    receipt: String,
    /// Error type, used to group failures
    #[arg(long = "type", value_name = "TYPE")]
    kind: String,
    #[arg(long)]
    message: String,
    /// Longer detail, such as a stack trace
    #[arg(long)]
    detail: Option<String>,
    /// Dead-letter the job now instead of retrying it
    #[arg(long)]
    non_retryable: bool,
    /// Retry after this long instead of the queue's backoff
    #[arg(long, value_name = "MS")]
    retry_after_ms: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Show a job's state, timestamps and attempt log
    Show {
        #[arg(value_parser = parse_job_id)]
        id: JobId,
    },
}

pub async fn send(ctx: &Ctx, a: SendArgs) -> anyhow::Result<()> {
    let body = if a.body == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the body from stdin")?;
        s
    } else {
        a.body
    };
    let job = NewJob {
        body,
        priority: a.priority,
        delay_ms: a.delay_ms,
        idempotency_key: a.idempotency_key,
        attributes: a.attrs.into_iter().collect::<BTreeMap<_, _>>(),
        max_attempts: a.max_attempts,
        ..NewJob::default()
    };
    let done = ctx.client.enqueue(&a.queue, std::slice::from_ref(&job)).await?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "jobs": done }));
    }
    let Some(first) = done.first() else { bail!("the server enqueued nothing and said nothing") };
    let note =
        if first.duplicate { " (duplicate: the job sent earlier with this key)" } else { "" };
    println!("{}{note}", first.id);
    Ok(())
}

pub async fn receive(ctx: &Ctx, a: ReceiveArgs) -> anyhow::Result<()> {
    let opts = ReceiveOptions {
        max: Some(a.max),
        wait_ms: a.wait_ms,
        lease_ms: a.lease_ms,
        worker_id: a.worker_id,
    };
    let jobs = ctx.client.receive(&a.queue, &opts).await?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "jobs": jobs }));
    }
    if jobs.is_empty() {
        eprintln!("no job ready in {}", a.queue);
        return Ok(());
    }
    let mut t = Table::new(&["ID", "RECEIPT", "ATTEMPT", "PRIORITY", "LEASE UNTIL", "BODY"]);
    for j in &jobs {
        t.row(vec![
            j.id.to_string(),
            j.receipt.clone(),
            j.attempt.to_string(),
            j.priority.as_str().into(),
            time(j.lease_expires_at),
            clip(&j.body, BODY_CELL_CHARS_MAX),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn ack(ctx: &Ctx, a: AckArgs) -> anyhow::Result<()> {
    let results = ctx.client.ack(&a.receipts).await?;
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "results": results }))?;
    } else {
        let mut t = Table::new(&["RECEIPT", "RESULT"]);
        for (r, res) in a.receipts.iter().zip(&results) {
            t.row(vec![r.clone(), wire_name(res)]);
        }
        t.print();
    }
    let missed = results.iter().filter(|r| **r != AckResult::Ok).count();
    if missed > 0 {
        bail!("{missed} of {} receipts were not acked (stale or unknown)", results.len());
    }
    Ok(())
}

pub async fn fail(ctx: &Ctx, a: FailArgs) -> anyhow::Result<()> {
    let req = FailRequest {
        receipt: a.receipt,
        error: ErrorInfo { kind: a.kind, message: a.message, detail: a.detail },
        retry_after_ms: a.retry_after_ms,
        non_retryable: a.non_retryable,
    };
    let res = ctx.client.fail(&req).await?;
    if ctx.json {
        return ctx.print_json(&res);
    }
    match (res.retry_at, res.dead_reason) {
        (_, Some(reason)) => println!("job dead ({}) in {}", wire_name(&reason), res.queue),
        (Some(at), None) => println!("job will be retried at {} in {}", time(at), res.queue),
        (None, None) => println!("job is {} in {}", res.state.as_str(), res.queue),
    }
    Ok(())
}

pub async fn job(ctx: &Ctx, cmd: JobCommand) -> anyhow::Result<()> {
    let JobCommand::Show { id } = cmd;
    let job = ctx.client.get_job(id).await?;
    if ctx.json {
        return ctx.print_json(&job);
    }
    print_job(&job);
    Ok(())
}

fn print_job(j: &JobInfo) {
    let mut f = Fields::new();
    f.add("id", j.id.to_string())
        .add("queue", j.queue.clone())
        .add("state", j.state.as_str())
        .add("priority", j.priority.as_str())
        .add("receives", j.receive_count.to_string())
        .add("failures", format!("{} of {} allowed", j.failures, opt(j.max_attempts)))
        .add("enqueued", time(j.enqueued_at))
        .add("visible at", time(j.visible_at))
        .add("first received", opt_time(j.first_received_at))
        .add("completed", opt_time(j.completed_at))
        .add("idempotency key", opt(j.idempotency_key.as_deref()));
    if let Some(d) = &j.dead {
        let why =
            format!("{} from {} at {}", wire_name(&d.reason), d.source_queue, time(d.died_at));
        f.add("dead", why);
    }
    if j.redrive_count > 0 {
        f.add(
            "redriven",
            format!("{} times, last from {}", j.redrive_count, opt(j.redriven_from.as_deref())),
        );
    }
    for (k, v) in &j.attributes {
        f.add("attribute", format!("{k}={v}"));
    }
    if let Some(body) = &j.body {
        f.add("body", clip(body, 4 * BODY_CELL_CHARS_MAX));
    }
    f.print();
    if j.attempts.is_empty() {
        return;
    }
    println!();
    let mut t = Table::new(&["#", "WORKER", "STARTED", "TOOK", "OUTCOME", "ERROR"]);
    for a in &j.attempts {
        let error = a.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message));
        t.row(vec![
            a.attempt.to_string(),
            opt(a.worker_id.as_deref()),
            time(a.started_at),
            duration(a.ended_at.saturating_sub(a.started_at)),
            wire_name(&a.outcome),
            clip(&error.unwrap_or_default(), 2 * BODY_CELL_CHARS_MAX),
        ]);
    }
    t.print();
}
