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
pub mod keys;
pub mod migrate;
pub mod queue;
pub mod table;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use redrive_client::Client;
use serde::Serialize;

use dlq::DlqCommand;
use jobs::{AckArgs, FailArgs, JobCommand, ReceiveArgs, SendArgs};
use queue::{QueueCommand, StatsArgs};

/// The server used when neither `--url` nor `REDRIVE_URL` names one.
pub const URL_DEFAULT: &str = "http://127.0.0.1:9324";

/// TLS settings of every command that talks to a server (global flags).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TlsArgs {
    /// CA certificates (PEM) to trust for an https:// server, instead of the public roots
    #[arg(long, global = true, env = "REDRIVE_CA_FILE", value_name = "PEM", display_order = 902)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one (mutual TLS); with --client-key
    #[arg(
        long,
        global = true,
        env = "REDRIVE_CLIENT_CERT",
        value_name = "PEM",
        display_order = 903
    )]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert
    #[arg(
        long,
        global = true,
        env = "REDRIVE_CLIENT_KEY",
        value_name = "PEM",
        display_order = 904
    )]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// A client of the server at `url` (or the default one) with these settings.
    pub fn client(&self, url: Option<&str>) -> anyhow::Result<Client> {
        let mut builder = Client::builder(url.unwrap_or(URL_DEFAULT));
        if let Some(ca) = &self.ca_file {
            builder = builder.ca_file(ca);
        }
        builder = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder.client_cert_files(cert, key),
            (None, None) => builder,
            _ => anyhow::bail!("--client-cert and --client-key go together"),
        };
        Ok(builder.build()?)
    }
}

/// What every client command needs: the client and the output mode.
#[derive(Debug)]
pub struct Ctx {
    pub client: Client,
    pub json: bool,
}

impl Ctx {
    pub fn new(url: Option<&str>, tls: &TlsArgs, json: bool) -> anyhow::Result<Ctx> {
        Ok(Ctx { client: tls.client(url)?, json })
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
    /// Create, list and revoke API keys (an admin key in REDRIVE_TOKEN)
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Show the newest audit log entries
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
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
            ClientCommand::Keys(cmd) => keys::run(ctx, cmd).await,
            ClientCommand::Audit { limit } => keys::audit(ctx, limit).await,
        }
    }
}
