//! `queue create|list|show|delete|purge` and `stats`.

use clap::{Args, Subcommand};
use redrive_client::{Error, QueueConfig, QueueInfo, QueuePatch, QueueStats};
use redrive_core::Backoff;

use super::format::{duration, opt, time};
use super::table::{Fields, Table};
use super::Ctx;

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Create a queue, or change the given settings of an existing one
    Create(CreateArgs),
    /// List queues with their job counts
    List,
    /// Show a queue's configuration and statistics
    Show { name: String },
    /// Delete a queue and its jobs
    Delete { name: String },
    /// Drop every ready and delayed job of a queue
    Purge { name: String },
}

/// Settings left out keep their current value (or the default, for a new queue).
#[derive(Args, Debug)]
pub struct CreateArgs {
    name: String,
    /// Lease time of a received job
    #[arg(long, value_name = "MS")]
    visibility_timeout_ms: Option<u64>,
    /// Failed attempts before a job dies
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Dead-letter queue (default for a new queue: NAME-dlq)
    #[arg(long, value_name = "QUEUE", conflicts_with = "no_dlq")]
    dlq: Option<String>,
    /// Keep dead jobs in this queue instead of a dead-letter queue
    #[arg(long)]
    no_dlq: bool,
    /// Receives after which a job dies (SQS maxReceiveCount)
    #[arg(long, value_name = "N")]
    max_receive_count: Option<u32>,
    /// Delay of every new job
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// How long a job is kept before it expires
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    #[arg(long, value_name = "BYTES")]
    max_message_bytes: Option<u32>,
    /// Default long-poll time of a receive
    #[arg(long, value_name = "MS")]
    receive_wait_ms: Option<u64>,
    /// Wait after which a job is served one priority level higher
    #[arg(long, value_name = "MS")]
    priority_aging_ms: Option<u64>,
    /// Retry backoff: the first retry waits up to this long
    #[arg(long, value_name = "MS")]
    backoff_base_ms: Option<u64>,
    /// Retry backoff: no retry waits longer than this
    #[arg(long, value_name = "MS")]
    backoff_max_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    queue: String,
}

pub async fn run(ctx: &Ctx, cmd: QueueCommand) -> anyhow::Result<()> {
    match cmd {
        QueueCommand::Create(args) => create(ctx, args).await,
        QueueCommand::List => {
            let queues = ctx.client.list_queues().await?;
            if ctx.json {
                return ctx.print_json(&serde_json::json!({ "queues": queues }));
            }
            print_list(&queues);
            Ok(())
        }
        QueueCommand::Show { name } => {
            let q = ctx.client.get_queue(&name).await?;
            if ctx.json {
                return ctx.print_json(&q);
            }
            print_queue(&q);
            Ok(())
        }
        QueueCommand::Delete { name } => {
            ctx.client.delete_queue(&name).await?;
            if !ctx.json {
                println!("deleted queue {name}");
            }
            Ok(())
        }
        QueueCommand::Purge { name } => {
            let purged = ctx.client.purge(&name).await?;
            if ctx.json {
                return ctx.print_json(&serde_json::json!({ "purged": purged }));
            }
            println!("purged {purged} jobs from {name}");
            Ok(())
        }
    }
}

pub async fn stats(ctx: &Ctx, args: StatsArgs) -> anyhow::Result<()> {
    let stats = ctx.client.queue_stats(&args.queue).await?;
    if ctx.json {
        return ctx.print_json(&stats);
    }
    stats_fields(&stats).print();
    Ok(())
}

async fn create(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<()> {
    let backoff = match (a.backoff_base_ms, a.backoff_max_ms) {
        (None, None) => None,
        (Some(base_ms), Some(max_ms)) => Some(Backoff { base_ms, max_ms }),
        // The wire takes both halves: fill the missing one from the queue as it is now.
        (base, max) => {
            let current = match ctx.client.get_queue(&a.name).await {
                Ok(q) => q.config.backoff,
                Err(Error::NotFound { .. }) => QueueConfig::default().backoff,
                Err(e) => return Err(e.into()),
            };
            Some(Backoff {
                base_ms: base.unwrap_or(current.base_ms),
                max_ms: max.unwrap_or(current.max_ms),
            })
        }
    };
    let patch = QueuePatch {
        visibility_timeout_ms: a.visibility_timeout_ms,
        delay_ms: a.delay_ms,
        max_message_bytes: a.max_message_bytes,
        retention_ms: a.retention_ms,
        receive_wait_ms: a.receive_wait_ms,
        max_attempts: a.max_attempts.map(Some),
        backoff,
        dead_letter_queue: if a.no_dlq { Some(None) } else { a.dlq.map(Some) },
        max_receive_count: a.max_receive_count.map(Some),
        priority_aging_ms: a.priority_aging_ms.map(Some),
        ..QueuePatch::default()
    };
    let (q, created) = ctx.client.put_queue(&a.name, &patch).await?;
    if ctx.json {
        return ctx.print_json(&q);
    }
    let dlq = q.config.dead_letter_queue.as_deref().unwrap_or("none");
    let verb = if created { "created" } else { "updated" };
    println!("{verb} queue {} (dead-letter queue: {dlq})", q.name);
    Ok(())
}

fn print_list(queues: &[QueueInfo]) {
    let mut t = Table::new(&["NAME", "READY", "DELAYED", "LEASED", "DEAD", "OLDEST", "DLQ"]);
    for q in queues {
        let c = &q.stats.counts;
        t.row(vec![
            q.name.clone(),
            c.ready.to_string(),
            c.delayed.to_string(),
            c.leased.to_string(),
            c.dead.to_string(),
            duration(q.stats.oldest_ready_age_ms),
            opt(q.config.dead_letter_queue.as_deref()),
        ]);
    }
    t.print();
}

fn print_queue(q: &QueueInfo) {
    let c = &q.config;
    let mut f = Fields::new();
    f.add("name", q.name.clone())
        .add("created", time(q.created_at))
        .add("updated", time(q.updated_at))
        .add("visibility timeout", duration(c.visibility_timeout_ms))
        .add("delay", duration(c.delay_ms))
        .add("max message bytes", c.max_message_bytes.to_string())
        .add("retention", duration(c.retention_ms))
        .add("receive wait", duration(c.receive_wait_ms))
        .add("max attempts", opt(c.max_attempts))
        .add(
            "backoff",
            format!("{} .. {}", duration(c.backoff.base_ms), duration(c.backoff.max_ms)),
        )
        .add("dead-letter queue", opt(c.dead_letter_queue.as_deref()))
        .add("max receive count", opt(c.max_receive_count))
        .add("priority aging", opt(c.priority_aging_ms.map(duration)))
        .add("fifo", c.fifo.to_string())
        .add("dedup window", duration(c.dedup_window_ms))
        .add("completed retention", duration(c.completed_retention_ms));
    f.print();
    println!();
    stats_fields(&q.stats).print();
}

fn stats_fields(s: &QueueStats) -> Fields {
    let (c, p, t) = (&s.counts, &s.ready_by_priority, &s.totals);
    let mut f = Fields::new();
    f.add(
        "ready",
        format!("{} (high {}, standard {}, low {})", c.ready, p.high, p.standard, p.low),
    )
    .add("delayed", c.delayed.to_string())
    .add("leased", c.leased.to_string())
    .add("dead", c.dead.to_string())
    .add("dead letters", s.dead_letters.to_string())
    .add("completed", c.completed.to_string())
    .add("oldest ready", duration(s.oldest_ready_age_ms))
    .add("enqueue rate", format!("{:.1}/s", s.enqueue_rate))
    .add("ack rate", format!("{:.1}/s", s.ack_rate))
    .add(
        "totals",
        format!(
            "enqueued {}, duplicates {}, delivered {}, acked {}, failed {}, lease expired {}",
            t.enqueued, t.duplicates, t.delivered, t.acked, t.failed, t.lease_expired
        ),
    )
    .add(
        "",
        format!(
            "dead-lettered {}, expired {}, purged {}, redriven {}",
            t.dead_lettered, t.expired, t.purged, t.redriven
        ),
    );
    f
}
