//! `redrive`, the one binary: the server (`serve`), the client commands that drive a running
//! server through its native API, `bench`, and `migrate` (embedded store → PostgreSQL).
//!
//! # Layout
//! - `serve`: flags and configuration of the server, and its lifecycle.
//! - `cli`: the client commands, their output tables and flag parsers.
//! - `bench`: the end-to-end throughput and latency benchmark.
//! - `triage`: the dead-letter triage agent's commands.
//! - `rekey`: moving a store's sealed values to the current key (embedded: stopped; PostgreSQL:
//!   live).
//! - `fleet`: `serve --triage` on one server of a PostgreSQL fleet at a time.
//!
//! Errors end the process with exit code 1 and one line on stderr; usage errors exit with 2.

mod bench;
mod bench_bare;
mod bench_redis;
mod bench_sdk;
#[cfg(feature = "sqs-bench")]
mod bench_sqs;
mod cli;
mod fleet;
mod rekey;
mod serve;
mod triage;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{ClientCommand, Ctx};

/// A durable job queue server that speaks SQS, and its command-line client.
#[derive(Parser, Debug)]
#[command(name = "redrive", version, propagate_version = true)]
struct Cli {
    /// Server of the client commands [default: http://127.0.0.1:9324]; for bench, a server to
    /// measure instead of starting one
    #[arg(long, global = true, env = "REDRIVE_URL", value_name = "URL", display_order = 900)]
    url: Option<String>,
    /// Print the server's JSON instead of tables
    #[arg(long, global = true, display_order = 901)]
    json: bool,
    #[command(flatten)]
    tls: cli::TlsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Measure end-to-end throughput and enqueue-to-start latency
    Bench(bench::BenchArgs),
    /// The dead-letter triage agent
    #[command(subcommand)]
    Triage(triage::TriageCommand),
    /// Copy a stopped embedded store (queues, configs, jobs not completed) into PostgreSQL
    Migrate(cli::migrate::MigrateArgs),
    /// Seal what older encryption keys sealed under the first key (a stopped embedded store, or
    /// a PostgreSQL database, live)
    Rekey(rekey::RekeyArgs),
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        // The server builds its own runtime and threads.
        Command::Serve(args) => serve::run(args),
        Command::Client(cmd) => cli::runtime().and_then(|rt| {
            let ctx = Ctx::new(cli.url.as_deref(), &cli.tls, cli.json)?;
            rt.block_on(cmd.run(&ctx))
        }),
        Command::Bench(args) => {
            cli::runtime().and_then(|rt| rt.block_on(bench::run(args, cli.url, cli.json)))
        }
        Command::Triage(cmd) => triage::run(cmd, cli.url.as_deref(), &cli.tls, cli.json),
        Command::Rekey(args) => rekey::run(args, cli.json),
        Command::Migrate(args) => {
            cli::runtime().and_then(|rt| rt.block_on(cli::migrate::run(args, cli.json)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The allocator asks the kernel for transparent huge pages, and where the system's `defrag`
/// setting is `madvise` (Debian's and most distributions' default) the first touch of each 2 MiB
/// then compacts memory on the spot: 5–7 ms on the thread that touched it. The engine thread
/// touches fresh memory all the time (the log's buffer, the job table), so every request waited
/// that long once per 2 MiB written, and throughput at batches of 10 and 100 was 8–16% lower
/// (docs/benchmarks.md, "What the remaining stalls are"). Small pages cost nothing measurable.
/// Process-wide, for every command (the bench client allocates as fast as the server).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Only a kernel older than 3.15 lacks it; the process then runs as it would have.
        eprintln!("warning: cannot turn transparent huge pages off: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli =
            Cli::try_parse_from(["redrive", "queue", "list", "--json", "--url", "http://x:1"])
                .unwrap();
        assert!(cli.json);
        assert_eq!(cli.url.as_deref(), Some("http://x:1"));
    }
}
