//! The agent's counters. They register into the server's one metrics registry
//! ([`TriageMetrics::register`]) when the agent runs in process.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::model::{Action, Category};
use crate::policy::Verdict;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
pub struct TriageMetrics {
    decisions: Family<Labels, Counter>,
    /// Auto-redriven jobs that since completed or died again, by category.
    outcomes: Family<Labels, Counter>,
    /// Jobs by verdict: execute, propose, escalate, record.
    verdicts: Family<Labels, Counter>,
    redriven: Counter,
    escalations_delivered: Counter,
    escalations_failed: Counter,
    provider_calls: Counter,
    provider_errors: Counter,
    provider_latency_s: Counter<f64, std::sync::atomic::AtomicU64>,
    prompt_tokens: Counter,
    completion_tokens: Counter,
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Execute => "execute",
        Verdict::Propose(_) => "propose",
        Verdict::Escalate(_) => "escalate",
        Verdict::Record(_) => "record",
    }
}

impl TriageMetrics {
    pub fn decision(&self, category: Category, action: Action) {
        let labels = vec![("category", category.to_string()), ("action", action.to_string())];
        self.decisions.get_or_create(&labels).inc();
    }

    pub fn outcome(&self, category: Category, succeeded: bool) {
        let o = if succeeded { "succeeded" } else { "died_again" };
        let labels = vec![("category", category.to_string()), ("outcome", o.to_owned())];
        self.outcomes.get_or_create(&labels).inc();
    }

    pub fn verdict(&self, v: &Verdict) {
        self.verdicts.get_or_create(&vec![("verdict", verdict_name(v).to_owned())]).inc();
    }

    pub fn redriven(&self, n: u64) {
        self.redriven.inc_by(n);
    }

    pub fn escalation(&self, delivered: bool) {
        let c = if delivered { &self.escalations_delivered } else { &self.escalations_failed };
        c.inc();
    }

    /// One model call: how long it took, whether it failed, and its tokens.
    pub fn provider_call(&self, latency_us: u64, failed: bool, prompt: u64, completion: u64) {
        self.provider_calls.inc();
        self.provider_errors.inc_by(u64::from(failed));
        self.provider_latency_s.inc_by(latency_us as f64 / 1e6);
        self.prompt_tokens.inc_by(prompt);
        self.completion_tokens.inc_by(completion);
    }

    /// Registers every series (the registry holds handles to the same counters).
    pub fn register(&self, r: &mut Registry) {
        let m = self.clone();
        r.register(
            "redrive_triage_decisions",
            "Group decisions, by category and action",
            m.decisions,
        );
        r.register(
            "redrive_triage_redrive_outcomes",
            "Auto-redriven jobs that completed or died again, by category (success rate = succeeded / all)",
            m.outcomes,
        );
        r.register("redrive_triage_jobs", "Dead jobs by the policy's verdict", m.verdicts);
        r.register("redrive_triage_redriven", "Jobs the agent redrove automatically", m.redriven);
        r.register(
            "redrive_triage_escalations",
            "Escalations delivered to the webhook",
            m.escalations_delivered,
        );
        r.register(
            "redrive_triage_escalation_failures",
            "Escalations the webhook did not take after retries",
            m.escalations_failed,
        );
        r.register("redrive_triage_provider_calls", "Model provider calls", m.provider_calls);
        r.register(
            "redrive_triage_provider_errors",
            "Model provider calls that failed (the rules decided instead)",
            m.provider_errors,
        );
        r.register(
            "redrive_triage_provider_latency_seconds",
            "Time spent in model provider calls",
            m.provider_latency_s,
        );
        r.register(
            "redrive_triage_prompt_tokens",
            "Prompt tokens sent to the model provider",
            m.prompt_tokens,
        );
        r.register(
            "redrive_triage_completion_tokens",
            "Completion tokens the model provider returned",
            m.completion_tokens,
        );
    }
}
