//! `redrive triage`: the dead-letter triage agent's commands: `run` (one pass over a dead-letter
//! queue), the proposals a person decides (`list`, `show`, `approve`, `reject`), and `eval`
//! (score a provider on a labelled dataset).

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use redrive_core::limits;
use redrive_core::triage::{PolicyList, Proposal, ProposalList, Status};
use redrive_triage::agent::Agent;
use redrive_triage::eval;
use redrive_triage::openai::{OpenAi, OpenAiConfig};
use redrive_triage::policy::Policy;

use crate::cli::TlsArgs;
use redrive_triage::provider::Provider;

#[derive(Subcommand, Debug)]
pub enum TriageCommand {
    /// One triage pass over a queue's dead jobs
    Run(RunArgs),
    /// Triage dead-letter queues continuously (every queue used as a DLQ, or --queue ones)
    Watch(WatchArgs),
    /// How the agent's redrives turned out, by category (from the audit log)
    Outcomes {
        #[arg(long, default_value = "redrive-triage-audit.jsonl")]
        audit: PathBuf,
    },
    /// List the agent's proposals
    List {
        /// pending, approved, rejected or failed
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one proposal
    Show { id: String },
    /// Approve a proposal: its action runs now
    Approve(DecideArgs),
    /// Reject a proposal (say why)
    Reject(DecideArgs),
    /// The policies the server keeps per queue (they beat an agent's own)
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Score a provider against a labelled dataset of dead jobs (JSON lines)
    Eval(EvalArgs),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Every queue's policy
    List,
    /// One queue's policy
    Get { queue: String },
    /// Set a queue's policy from a TOML file (mode, auto_categories, min_confidence, …)
    Set {
        queue: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a queue's policy (agents fall back to their own)
    Delete { queue: String },
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    id: String,
    /// Who decides [default: $USER]
    #[arg(long, env = "USER")]
    by: String,
    /// Why (required to reject)
    #[arg(long)]
    why: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The dead-letter queue (or a queue with parked dead jobs)
    #[arg(long)]
    queue: String,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Queues to watch (repeatable) [default: every queue used as a dead-letter queue]
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Seconds between passes
    #[arg(long, default_value_t = 10)]
    interval_s: u64,
    #[command(flatten)]
    agent: AgentArgs,
}

/// How the agent decides and reports, shared by `run`, `watch` and `serve --triage`.
#[derive(Args, Default)]
pub struct AgentArgs {
    /// Policy file (TOML: mode, auto_categories, min_confidence, auto_patch, redrives_per_minute)
    #[arg(long)]
    pub(crate) policy: Option<PathBuf>,
    /// Overrides the policy's mode: observe, propose or auto
    #[arg(long)]
    pub(crate) mode: Option<String>,
    /// Audit log (JSON lines), also the agent's memory between passes
    #[arg(long, default_value = "redrive-triage-audit.jsonl")]
    pub(crate) audit: PathBuf,
    /// Slack-compatible webhook for escalations (its URL is a secret: never shown)
    #[arg(long, env = "REDRIVE_TRIAGE_WEBHOOK", hide_env_values = true)]
    pub(crate) webhook: Option<String>,
    /// JSON pointer redacted from bodies before a model sees them (repeatable)
    #[arg(long = "redact")]
    pub(crate) redact: Vec<String>,
    /// `rules` (built in, offline) or `openai` (any OpenAI-compatible endpoint)
    #[arg(long, default_value = "rules")]
    pub(crate) provider: String,
    /// Base URL of the chat-completions endpoint, e.g. https://api.openai.com/v1
    #[arg(long, env = "REDRIVE_TRIAGE_OPENAI_BASE_URL")]
    pub(crate) openai_base_url: Option<String>,
    #[arg(long, env = "REDRIVE_TRIAGE_OPENAI_MODEL")]
    pub(crate) openai_model: Option<String>,
}

/// Debug output without the webhook URL, whose path is its secret.
impl std::fmt::Debug for AgentArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentArgs")
            .field("policy", &self.policy)
            .field("mode", &self.mode)
            .field("audit", &self.audit)
            .field("webhook", &self.webhook.as_ref().map(|_| "[redacted]"))
            .field("redact", &self.redact)
            .field("provider", &self.provider)
            .field("openai_base_url", &self.openai_base_url)
            .field("openai_model", &self.openai_model)
            .finish()
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The dataset, e.g. crates/redrive-triage/eval/dead_jobs.jsonl
    #[arg(long)]
    dataset: PathBuf,
    /// `rules` (built in, offline)
    #[arg(long, default_value = "rules")]
    provider: String,
    /// Also list every case decided differently from its label
    #[arg(long)]
    mistakes: bool,
}

pub fn run(cmd: TriageCommand, url: Option<&str>, tls: &TlsArgs, json: bool) -> anyhow::Result<()> {
    match cmd {
        TriageCommand::Run(args) => {
            crate::cli::runtime().and_then(|rt| rt.block_on(run_cmd(args, url, tls, json)))
        }
        TriageCommand::Watch(args) => crate::cli::runtime().and_then(|rt| {
            rt.block_on(async {
                let url = url.unwrap_or(crate::cli::URL_DEFAULT);
                let mut agent = build_agent(&args.agent, url, tls)?;
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                agent.watch(&args.queues, Duration::from_secs(args.interval_s.max(1)), stop).await;
                Ok(())
            })
        }),
        TriageCommand::Outcomes { audit } => {
            crate::cli::runtime().and_then(|rt| rt.block_on(outcomes_cmd(&audit, url, tls, json)))
        }
        TriageCommand::Eval(args) => eval_cmd(args, json),
        cmd => crate::cli::runtime().and_then(|rt| rt.block_on(proposals_cmd(cmd, url, tls, json))),
    }
}

async fn proposals_cmd(
    cmd: TriageCommand,
    url: Option<&str>,
    tls: &TlsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let client = tls.client(url)?;
    let proposals = match &cmd {
        TriageCommand::Policy(p) => {
            return match p {
                PolicyCommand::List => {
                    print(&PolicyList { policies: client.triage_policies().await? })
                }
                PolicyCommand::Get { queue } => print(
                    &client
                        .triage_policy(queue)
                        .await?
                        .with_context(|| format!("no triage policy is set for {queue}"))?,
                ),
                PolicyCommand::Set { queue, file } => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let policy: Policy = toml::from_str(&text)
                        .with_context(|| format!("parsing {}", file.display()))?;
                    print(&client.set_triage_policy(queue, &policy).await?)
                }
                PolicyCommand::Delete { queue } => {
                    client.delete_triage_policy(queue).await?;
                    print(&serde_json::json!({ "deleted": queue }))
                }
            };
        }
        TriageCommand::List { status } => {
            let status = match status {
                Some(s) => Some(
                    serde_json::from_value::<Status>(serde_json::Value::String(s.clone()))
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "--status must be pending, approved, rejected or failed"
                            )
                        })?,
                ),
                None => None,
            };
            let proposals = client.proposals(status).await?;
            if json {
                return print(&ProposalList { proposals });
            }
            proposals
        }
        TriageCommand::Show { id } => vec![client.proposal(id).await?],
        TriageCommand::Approve(a) => {
            vec![client.decide_proposal(&a.id, true, &a.by, a.why.as_deref()).await?]
        }
        TriageCommand::Reject(a) => {
            vec![client.decide_proposal(&a.id, false, &a.by, a.why.as_deref()).await?]
        }
        _ => unreachable!("only the proposal commands get here"),
    };
    let listing = matches!(cmd, TriageCommand::List { .. });
    if json {
        return print(&proposals[0]);
    }
    let one = |p: &Proposal| {
        let d = &p.proposed.decision;
        println!(
            "{}  {:<8}  {} job(s) in {}  {} → {} ({:.2})  {}",
            p.id,
            p.status,
            p.proposed.job_ids.len(),
            p.proposed.queue,
            d.category,
            d.action,
            d.confidence,
            p.proposed.signature
        );
    };
    match (listing, proposals.as_slice()) {
        (true, []) => println!("no proposals"),
        (true, all) => all.iter().for_each(one),
        (false, [p, ..]) => {
            one(p);
            println!("  why proposed: {}", p.proposed.reason);
            println!("  analysis:     {}", p.proposed.decision.analysis);
            if let Some(patch) = p.proposed.decision.patch.as_ref().filter(|p| !p.is_null()) {
                println!("  patch:        {patch}");
                print_patch_diff(&client, p, patch).await;
            }
            if let Some(result) = &p.result {
                println!("  result:       {}", serde_json::to_string(result)?);
            }
        }
        (false, []) => unreachable!("one proposal was read"),
    }
    Ok(())
}

fn print<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn provider(args: &AgentArgs) -> anyhow::Result<Provider> {
    match args.provider.as_str() {
        "rules" => Ok(Provider::Rules),
        "openai" => {
            let base_url = args.openai_base_url.clone().context("--openai-base-url is required")?;
            let model = args.openai_model.clone().context("--openai-model is required")?;
            let cfg = OpenAiConfig {
                base_url,
                model: model.clone(),
                api_key: std::env::var("OPENAI_API_KEY").ok(),
                timeout: Duration::from_millis(limits::TRIAGE_MODEL_TIMEOUT_DEFAULT_MS),
                retries: limits::TRIAGE_MODEL_RETRIES_DEFAULT,
            };
            let client = OpenAi::new(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Provider::OpenAi { client, model })
        }
        other => bail!("unknown provider {other:?}: use rules or openai"),
    }
}

/// An agent for the server at `url`, configured by `args`.
pub fn build_agent(args: &AgentArgs, url: &str, tls: &TlsArgs) -> anyhow::Result<Agent> {
    let client = tls.client(Some(url))?;
    let (mut policy, queue_policies) = match &args.policy {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            redrive_triage::policy::parse_file(&text)
                .map_err(|e| anyhow::anyhow!("parsing {}: {e}", p.display()))?
        }
        None => (Policy::default(), Default::default()),
    };
    if let Some(mode) = &args.mode {
        policy.mode = serde_json::from_value(serde_json::Value::String(mode.clone()))
            .map_err(|_| anyhow::anyhow!("--mode must be observe, propose or auto"))?;
    }
    let mut agent = Agent::new(client, url.to_owned(), provider(args)?, args.audit.clone());
    agent.policy = policy;
    agent.queue_policies = queue_policies;
    agent.webhook = args.webhook.clone();
    agent.redact_pointers = args.redact.clone();
    Ok(agent)
}

async fn run_cmd(
    args: RunArgs,
    url: Option<&str>,
    tls: &TlsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let mut agent = build_agent(&args.agent, url.unwrap_or(crate::cli::URL_DEFAULT), tls)?;
    let now = agent.clock.now_ms();
    let report = agent.run_once(&args.queue, now).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{} dead jobs ({} already handled), {} groups: {} redriven, {} proposed, {} escalated, {} recorded",
        report.dead_jobs,
        report.skipped,
        report.groups,
        report.executed,
        report.proposed,
        report.escalated,
        report.recorded
    );
    for r in &report.records {
        println!(
            "  {} job(s) {} — {} → {} [{}]",
            r.job_ids.len(),
            r.signature,
            r.decision.category,
            r.decision.action,
            r.provider
        );
    }
    println!("audit: {}", args.agent.audit.display());
    Ok(())
}

/// Follows every job the agent redrove: succeeded (completed), died again, or still on its way.
async fn outcomes_cmd(
    audit: &std::path::Path,
    url: Option<&str>,
    tls: &TlsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let client = tls.client(url)?;
    let text =
        std::fs::read_to_string(audit).with_context(|| format!("reading {}", audit.display()))?;
    let mut by_category: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: redrive_triage::agent::AuditRecord = serde_json::from_str(line)?;
        let category = r.decision.category.to_string();
        for id in &r.executed {
            let slot = match client.get_job(*id).await {
                Ok(j) if j.dead.is_some() => 1,
                Ok(j) if j.state == redrive_core::JobState::Acked => 0,
                // Forgotten after completed_retention, or still queued.
                Ok(_) => 2,
                Err(redrive_client::Error::NotFound { .. }) => 0,
                Err(e) => return Err(e.into()),
            };
            by_category.entry(category.clone()).or_default()[slot] += 1;
        }
    }
    if json {
        let v: serde_json::Map<String, serde_json::Value> = by_category
            .iter()
            .map(|(c, [ok, dead, open])| {
                (
                    c.clone(),
                    serde_json::json!({"succeeded": ok, "died_again": dead, "in_progress": open}),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(v));
        return Ok(());
    }
    println!(
        "{:<16} {:>9} {:>10} {:>11} {:>8}",
        "category", "succeeded", "died again", "in progress", "success"
    );
    for (c, [ok, dead, open]) in &by_category {
        let done = ok + dead;
        let rate = if done == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}%", *ok as f64 * 100.0 / done as f64)
        };
        println!("{c:<16} {ok:>9} {dead:>10} {open:>11} {rate:>8}");
    }
    Ok(())
}

fn eval_cmd(args: EvalArgs, json: bool) -> anyhow::Result<()> {
    if args.provider != "rules" {
        bail!("provider {:?} is not available; the built-in provider is \"rules\"", args.provider);
    }
    let text = std::fs::read_to_string(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let cases =
        eval::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.dataset.display()))?;
    let report = eval::evaluate(&cases, redrive_triage::rules::decide);
    let s = &report.scores;
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    println!("provider:          {}", args.provider);
    println!("cases:             {}", s.cases);
    println!("category accuracy: {:.1}%", s.category_accuracy * 100.0);
    println!("action accuracy:   {:.1}%", s.action_accuracy * 100.0);
    println!("macro-F1:          {:.3}", s.macro_f1);
    println!("unsafe decisions:  {}", s.unsafe_decisions);
    for &i in &report.unsafe_cases {
        let d = &report.decisions[i];
        println!("  case {}: {} {} ({:.2})", i + 1, d.category, d.action, d.confidence);
    }
    println!("\n{}", eval::confusion_table(&report.confusion));
    if args.mistakes {
        for (i, (l, d)) in cases.iter().zip(&report.decisions).enumerate() {
            if d.category != l.expected.category || d.action != l.expected.action {
                let last = l
                    .case
                    .errors
                    .last()
                    .map_or(String::new(), |e| format!("{}: {}", e.kind, e.message));
                let last: String = last.chars().take(160).collect();
                println!(
                    "case {}: expected {}/{}, got {}/{} — {}",
                    i + 1,
                    l.expected.category,
                    l.expected.action,
                    d.category,
                    d.action,
                    last.replace('\n', " ")
                );
            }
        }
    }
    Ok(())
}

/// Shows what the patch does to the first job's body, as a line diff of the pretty-printed JSON.
async fn print_patch_diff(
    client: &redrive_client::Client,
    proposal: &Proposal,
    patch: &serde_json::Value,
) {
    let Some(&id) = proposal.proposed.job_ids.first() else { return };
    let Ok(job) = client.get_job(id).await else { return };
    let Ok(before) =
        serde_json::from_str::<serde_json::Value>(job.body.as_deref().unwrap_or_default())
    else {
        return;
    };
    match redrive_server::triage::patch::apply(&before, patch) {
        Ok(after) => {
            println!("  diff of job {id}'s body:");
            for line in diff_lines(
                &serde_json::to_string_pretty(&before).unwrap_or_default(),
                &serde_json::to_string_pretty(&after).unwrap_or_default(),
            ) {
                println!("    {line}");
            }
        }
        Err(e) => println!("  the patch does not apply to job {id}: {e}"),
    }
}

/// A line diff (longest common subsequence): unchanged lines with two spaces, removed with `-`,
/// added with `+`.
fn diff_lines(a: &str, b: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_shows_removed_and_added_lines() {
        let d =
            super::diff_lines("{\n  \"a\": \"3\",\n  \"b\": 1\n}", "{\n  \"a\": 3,\n  \"b\": 1\n}");
        assert_eq!(d, ["  {", "-   \"a\": \"3\",", "+   \"a\": 3,", "    \"b\": 1", "  }"]);
    }
}
