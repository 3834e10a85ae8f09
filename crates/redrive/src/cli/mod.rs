//! The client commands of the binary (`queue`, `send`, `receive`, `ack`, `fail`, `job`, `dlq`,
//! `stats`): each parses its flags, makes one or two calls through `redrive-client`, and prints
//! an aligned table, or with `--json` the server's JSON.
//!
//! # Layout
//! - [`queue`]: `queue create|list|show|delete|purge` and `stats`.
//! - [`jobs`]: `send`, `receive`, `ack`, `fail`, `job show`.
//! - [`dlq`]: `dlq list`, `dlq redrive`.
//! - [`migrate`]: `migrate`, a stopped embedded store copied into PostgreSQL.
//! - [`table`], [`format`]: output helpers and flag-value parsers.

pub mod dlq;
pub mod format;
pub mod jobs;
pub mod migrate;
pub mod queue;
pub mod table;

use anyhow::Context as _;
use clap::Subcommand;
use redrive_client::Client;
use serde::Serialize;

use dlq::DlqCommand;
use jobs::{AckArgs, FailArgs, JobCommand, ReceiveArgs, SendArgs};
use queue::{QueueCommand, StatsArgs};

/// The server used when neither `--url` nor `REDRIVE_URL` names one.
pub const URL_DEFAULT: &str = "http://127.0.0.1:9324";

/// What every client command needs: the client and the output mode.
#[derive(Debug)]
pub struct Ctx {
    pub client: Client,
    pub json: bool,
}

impl Ctx {
    pub fn new(url: Option<&str>, json: bool) -> anyhow::Result<Ctx> {
        let client = Client::new(url.unwrap_or(URL_DEFAULT))?;
        Ok(Ctx { client, json })
    }

    /// Prints `value` as pretty JSON (the `--json` output of every command).
    pub fn print_json<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value).context("encoding JSON output")?);
        Ok(())
    }
}

/// The runtime of the client commands and of `bench`. `serve` builds its own.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The commands that talk to a running server.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, show, delete and purge queues
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Enqueue one job
    Send(SendArgs),
    /// Lease jobs from a queue
    Receive(ReceiveArgs),
    /// Complete leased jobs
    Ack(AckArgs),
    /// Report a failed attempt of a leased job
    Fail(FailArgs),
    /// Look up jobs by id
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect and redrive dead-letter queues
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Show a queue's counts, rates and totals
    Stats(StatsArgs),
}

impl ClientCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            ClientCommand::Queue(cmd) => queue::run(ctx, cmd).await,
            ClientCommand::Send(a) => jobs::send(ctx, a).await,
            ClientCommand::Receive(a) => jobs::receive(ctx, a).await,
            ClientCommand::Ack(a) => jobs::ack(ctx, a).await,
            ClientCommand::Fail(a) => jobs::fail(ctx, a).await,
            ClientCommand::Job(cmd) => jobs::job(ctx, cmd).await,
            ClientCommand::Dlq(cmd) => dlq::run(ctx, cmd).await,
            ClientCommand::Stats(a) => queue::stats(ctx, a).await,
        }
    }
}
