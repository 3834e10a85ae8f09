//! `dlq list` and `dlq redrive`: look at a dead-letter queue's jobs by failure, and move them
//! back to work.

use clap::{Args, Subcommand};
use redrive_client::{DeadFilter, DeadQuery, JobId, JobInfo, RedriveRequest};

use super::format::{clip, parse_job_id, parse_time, time, wire_name};
use super::table::Table;
use super::Ctx;

/// Characters of the last error shown per job.
const ERROR_CELL_CHARS_MAX: usize = 60;

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead jobs, oldest first, one page at a time
    List(ListArgs),
    /// Move dead jobs back to their source queue (or --to)
    Redrive(RedriveArgs),
}

/// Which dead jobs: all given filters must match.
#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Error type of the last failure
    #[arg(long, value_name = "TYPE")]
    error_type: Option<String>,
    /// Failure signature of the last failure
    #[arg(long)]
    signature: Option<String>,
    /// Queue the job died in
    #[arg(long, value_name = "QUEUE")]
    source_queue: Option<String>,
    /// Died at or after: RFC 3339, or a duration ago (30m, 2h, 7d)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<u64>,
    /// Died before: RFC 3339, or a duration ago
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<u64>,
}

impl FilterArgs {
    fn into_filter(self) -> DeadFilter {
        DeadFilter {
            error_type: self.error_type,
            signature: self.signature,
            source_queue: self.source_queue,
            since: self.since,
            until: self.until,
        }
    }
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The dead-letter queue
    queue: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Start after this job (the `next` of the previous page)
    #[arg(long, value_name = "ID", value_parser = parse_job_id)]
    after: Option<JobId>,
    /// Jobs per page
    #[arg(long)]
    limit: Option<u32>,
}

#[derive(Args, Debug)]
pub struct RedriveArgs {
    /// The dead-letter queue
    queue: String,
    /// Redrive only this job; repeatable (default: every job the filters match)
    #[arg(long = "id", value_name = "ID", value_parser = parse_job_id)]
    ids: Vec<JobId>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Target queue instead of each job's source queue
    #[arg(long, value_name = "QUEUE")]
    to: Option<String>,
    /// Deliver the redriven jobs after this delay
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// Say what would move, move nothing
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Ctx, cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List(a) => list(ctx, a).await,
        DlqCommand::Redrive(a) => redrive(ctx, a).await,
    }
}

async fn list(ctx: &Ctx, a: ListArgs) -> anyhow::Result<()> {
    let query = DeadQuery { filter: a.filter.into_filter(), after: a.after, limit: a.limit };
    let page = ctx.client.list_dead(&a.queue, &query).await?;
    if ctx.json {
        return ctx.print_json(&page);
    }
    let mut t = Table::new(&["ID", "SOURCE", "REASON", "DIED", "RECEIVES", "LAST ERROR"]);
    for j in &page.jobs {
        let (source, reason, died) = match &j.dead {
            Some(d) => (d.source_queue.clone(), wire_name(&d.reason), time(d.died_at)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        t.row(vec![
            j.id.to_string(),
            source,
            reason,
            died,
            j.receive_count.to_string(),
            clip(&last_error(j), ERROR_CELL_CHARS_MAX),
        ]);
    }
    t.print();
    if let Some(next) = page.next {
        println!("more: redrive dlq list {} --after {next}", a.queue);
    }
    Ok(())
}

/// `type: message` of the job's most recent failure, or `-`.
fn last_error(j: &JobInfo) -> String {
    let last = j.attempts.iter().rev().find_map(|a| a.error.as_ref());
    last.map_or_else(|| "-".into(), |e| format!("{}: {}", e.kind, e.message))
}

async fn redrive(ctx: &Ctx, a: RedriveArgs) -> anyhow::Result<()> {
    let filter = a.filter.into_filter();
    let req = RedriveRequest {
        ids: (!a.ids.is_empty()).then_some(a.ids),
        filter: (filter != DeadFilter::default()).then_some(filter),
        to: a.to,
        delay_ms: a.delay_ms,
        dry_run: a.dry_run,
    };
    let res = ctx.client.redrive(&a.queue, &req).await?;
    if ctx.json {
        return ctx.print_json(&res);
    }
    if res.dry_run {
        println!("would redrive {} jobs (dry run, nothing moved):", res.moved);
        for id in &res.ids {
            println!("{id}");
        }
    } else {
        println!("redrove {} jobs", res.moved);
    }
    for s in &res.skipped {
        let why = match s.reason {
            redrive_core::broker::SkipReason::NotDead => "not a dead job in this queue",
            redrive_core::broker::SkipReason::Leased => "leased by a consumer of this queue",
        };
        println!("skipped {}: {why}", s.id);
    }
    Ok(())
}
