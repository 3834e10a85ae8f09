//! `redrive triage`: the dead-letter triage agent's commands. Today `eval` (score a provider on a
//! labelled dataset); the agent loop (`watch`, `run`) and proposals (`list`, `approve`, …) come
//! with the rest of the agent.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use redrive_triage::eval;

#[derive(Subcommand, Debug)]
pub enum TriageCommand {
    /// Score a provider against a labelled dataset of dead jobs (JSON lines)
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The dataset, e.g. crates/redrive-triage/eval/dead_jobs.jsonl
    #[arg(long)]
    dataset: PathBuf,
    /// `rules` (built in, offline)
    #[arg(long, default_value = "rules")]
    provider: String,
}

pub fn run(cmd: TriageCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        TriageCommand::Eval(args) => eval_cmd(args, json),
    }
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
    for (line, d) in &report.unsafe_cases {
        println!("  case {line}: {} {} ({:.2})", d.category, d.action, d.confidence);
    }
    println!("\n{}", eval::confusion_table(&report.confusion));
    Ok(())
}
