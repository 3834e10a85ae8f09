//! The agent's counters, rendered in the Prometheus text format (the server appends them to
//! `/metrics` when the agent runs in process).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::model::{Action, Category};
use crate::policy::Verdict;

#[derive(Debug, Default)]
pub struct TriageMetrics {
    decisions: Mutex<BTreeMap<(Category, Action), u64>>,
    /// Auto-redriven jobs that since completed (`true`) or died again (`false`), by category.
    outcomes: Mutex<BTreeMap<(Category, bool), u64>>,
    /// Jobs by verdict: execute, propose, escalate, record.
    verdicts: [AtomicU64; 4],
    redriven: AtomicU64,
    escalations_delivered: AtomicU64,
    escalations_failed: AtomicU64,
    provider_calls: AtomicU64,
    provider_errors: AtomicU64,
    provider_latency_us: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

fn verdict_index(v: &Verdict) -> usize {
    match v {
        Verdict::Execute => 0,
        Verdict::Propose(_) => 1,
        Verdict::Escalate(_) => 2,
        Verdict::Record(_) => 3,
    }
}

const VERDICTS: [&str; 4] = ["execute", "propose", "escalate", "record"];

impl TriageMetrics {
    pub fn decision(&self, category: Category, action: Action) {
        *self.decisions.lock().expect("not poisoned").entry((category, action)).or_default() += 1;
    }

    pub fn outcome(&self, category: Category, succeeded: bool) {
        *self.outcomes.lock().expect("not poisoned").entry((category, succeeded)).or_default() += 1;
    }

    pub fn verdict(&self, v: &Verdict) {
        self.verdicts[verdict_index(v)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn redriven(&self, n: u64) {
        self.redriven.fetch_add(n, Ordering::Relaxed);
    }

    pub fn escalation(&self, delivered: bool) {
        let c = if delivered { &self.escalations_delivered } else { &self.escalations_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One model call: how long it took, whether it failed, and its tokens.
    pub fn provider_call(&self, latency_us: u64, failed: bool, prompt: u64, completion: u64) {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        self.provider_errors.fetch_add(u64::from(failed), Ordering::Relaxed);
        self.provider_latency_us.fetch_add(latency_us, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP redrive_triage_decisions_total Group decisions, by category and action.\n# TYPE redrive_triage_decisions_total counter");
        for ((c, a), n) in self.decisions.lock().expect("not poisoned").iter() {
            let _ = writeln!(
                out,
                "redrive_triage_decisions_total{{category=\"{c}\",action=\"{a}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP redrive_triage_redrive_outcomes_total Auto-redriven jobs that completed or died again, by category (success rate = succeeded / all).\n# TYPE redrive_triage_redrive_outcomes_total counter");
        for ((c, ok), n) in self.outcomes.lock().expect("not poisoned").iter() {
            let o = if *ok { "succeeded" } else { "died_again" };
            let _ = writeln!(
                out,
                "redrive_triage_redrive_outcomes_total{{category=\"{c}\",outcome=\"{o}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP redrive_triage_jobs_total Dead jobs by the policy's verdict.\n# TYPE redrive_triage_jobs_total counter");
        for (name, c) in VERDICTS.iter().zip(&self.verdicts) {
            let _ = writeln!(
                out,
                "redrive_triage_jobs_total{{verdict=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "redrive_triage_redriven_total",
                "Jobs the agent redrove automatically.",
                load(&self.redriven),
            ),
            (
                "redrive_triage_escalations_total",
                "Escalations delivered to the webhook.",
                load(&self.escalations_delivered),
            ),
            (
                "redrive_triage_escalation_failures_total",
                "Escalations the webhook did not take after retries.",
                load(&self.escalations_failed),
            ),
            (
                "redrive_triage_provider_calls_total",
                "Model provider calls.",
                load(&self.provider_calls),
            ),
            (
                "redrive_triage_provider_errors_total",
                "Model provider calls that failed (the rules decided instead).",
                load(&self.provider_errors),
            ),
            (
                "redrive_triage_prompt_tokens_total",
                "Prompt tokens sent to the model provider.",
                load(&self.prompt_tokens),
            ),
            (
                "redrive_triage_completion_tokens_total",
                "Completion tokens the model provider returned.",
                load(&self.completion_tokens),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP redrive_triage_provider_latency_seconds_total Time spent in model provider calls.\n# TYPE redrive_triage_provider_latency_seconds_total counter\nredrive_triage_provider_latency_seconds_total {}",
            load(&self.provider_latency_us) as f64 / 1e6
        );
    }
}
