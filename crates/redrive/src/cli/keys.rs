//! `redrive keys create|list|revoke` and `redrive audit`: API keys and the audit log, through
//! a server (an `admin` key in `REDRIVE_TOKEN` when it runs with `--auth`).

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use redrive_core::time::{Clock, SystemClock};

use super::Ctx;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a key and print its secret, once (--json: {"id", "secret", "token", …})
    Create {
        /// What the key is for (shown in listings and the audit log)
        name: String,
        /// ACTION:QUEUE_GLOB, repeatable; actions send, receive, read, manage, triage, admin
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
        /// The key stops working after this long (e.g. 90d, 12h)
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
        /// Requests per second the key may make on each server
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List keys (never their secrets)
    List,
    /// Revoke a key: refused on its next request, on every server
    Revoke { id: String },
}

pub async fn run(ctx: &Ctx, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create { name, allow, expires_in, rate } => {
            let expires = expires_in.map(|d| SystemClock.now_ms() + d.as_millis() as u64);
            let key = ctx.client.create_key(&name, &allow, expires, rate).await?;
            if ctx.json {
                return ctx.print_json(&key);
            }
            let field = |k: &str| key[k].as_str().unwrap_or_default().to_string();
            println!("id:     {}", field("id"));
            println!("secret: {}", field("secret"));
            println!("token:  {}", field("token"));
            eprintln!(
                "The secret is shown this once. Use the token as REDRIVE_TOKEN (or Authorization: \
                 Bearer), or the id and secret as AWS credentials for the SQS API."
            );
            Ok(())
        }
        KeysCommand::List => {
            let keys = ctx.client.keys().await?;
            if ctx.json {
                return ctx.print_json(&keys);
            }
            for k in keys["keys"].as_array().context("a key list")? {
                let state = if k["revoked_at"].is_null() { "active" } else { "revoked" };
                let allow: Vec<&str> = k["allow"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str())
                    .collect();
                println!(
                    "{}  {:8}  {}  {}",
                    k["id"].as_str().unwrap_or_default(),
                    state,
                    k["name"].as_str().unwrap_or_default(),
                    allow.join(" ")
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            let key = ctx.client.revoke_key(&id).await?;
            if ctx.json {
                return ctx.print_json(&key);
            }
            println!("revoked {id}");
            Ok(())
        }
    }
}

/// `90d`, `12h`, `30m`, `45s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not like 90d, 12h, 30m or 45s"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("{s:?} is not like 90d, 12h, 30m or 45s")),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
}

pub async fn audit(ctx: &Ctx, limit: usize) -> anyhow::Result<()> {
    let log = ctx.client.audit(limit).await?;
    if ctx.json {
        return ctx.print_json(&log);
    }
    for e in log["entries"].as_array().context("audit entries")? {
        println!("{e}");
    }
    Ok(())
}
