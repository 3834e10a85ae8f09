//! What a person lets the agent do without them, per queue: `observe` (record only), `propose`
//! (a person approves), `auto` (execute when the category is allowed, the confidence is high
//! enough, the job was never auto-redriven before, and the rate limit allows). The [`Policy`]
//! type is the shared one in `redrive_core::triage`; this module judges decisions by it.

use std::collections::VecDeque;

use redrive_core::limits;
pub use redrive_core::triage::{Mode, Policy};
use serde::{Deserialize, Serialize};

use crate::model::{Action, Decision};

/// A policy file: the default policy's fields at the top level, and `[queues.<name>]` tables
/// for queues that differ (each a whole policy; absent fields take the defaults).
pub fn parse_file(
    text: &str,
) -> Result<(Policy, std::collections::BTreeMap<String, Policy>), String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let queues = match table.remove("queues") {
        Some(q) => q.try_into().map_err(|e: toml::de::Error| format!("[queues]: {e}"))?,
        None => Default::default(),
    };
    let default =
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.to_string())?;
    Ok((default, queues))
}

/// What becomes of a decision for one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// Run the action now.
    Execute,
    /// Store a proposal for a person to approve or reject.
    Propose(String),
    /// Record the decision and do nothing.
    Record(String),
    /// Notify a person (the decision's own escalation, or a job that must not loop).
    Escalate(String),
}

/// Auto-redrives per sliding minute.
#[derive(Debug, Default)]
pub struct RateLimiter {
    taken: VecDeque<u64>,
}

impl RateLimiter {
    /// Takes one slot at `now` (ms) if fewer than `per_minute` were taken in the last
    /// `TRIAGE_RATE_WINDOW_MS`.
    pub fn try_take(&mut self, per_minute: u32, now: u64) -> bool {
        let window = limits::TRIAGE_RATE_WINDOW_MS;
        while self.taken.front().is_some_and(|t| now.saturating_sub(*t) >= window) {
            self.taken.pop_front();
        }
        if self.taken.len() >= per_minute as usize {
            return false;
        }
        self.taken.push_back(now);
        true
    }
}

/// The verdict of `policy` for one job at `now` (ms). `auto_redriven_before`: the agent already
/// redrove this job once (it died again), so it is escalated, never looped.
pub fn verdict(
    policy: &Policy,
    d: &Decision,
    auto_redriven_before: bool,
    limiter: &mut RateLimiter,
    now: u64,
) -> Verdict {
    if policy.mode == Mode::Observe {
        return Verdict::Record("observe mode: decisions are recorded only".into());
    }
    if d.action.redrives() && auto_redriven_before {
        return Verdict::Escalate(
            "the job died again after the agent redrove it; a person decides now".into(),
        );
    }
    match d.action {
        Action::Escalate => return Verdict::Escalate(d.analysis.clone()),
        Action::Hold => return Verdict::Record("hold: left in the dead-letter queue".into()),
        Action::Redrive | Action::RedrivePatched => {}
    }
    if policy.mode == Mode::Propose {
        return Verdict::Propose("propose mode: a person approves every action".into());
    }
    if !policy.auto_categories.contains(&d.category) {
        return Verdict::Propose(format!("category {} is not in auto_categories", d.category));
    }
    if d.confidence < policy.min_confidence {
        return Verdict::Propose(format!(
            "confidence {:.2} is below min_confidence {:.2}",
            d.confidence, policy.min_confidence
        ));
    }
    if d.action == Action::RedrivePatched && !policy.auto_patch {
        return Verdict::Propose("a patched redrive needs approval (auto_patch is off)".into());
    }
    if !limiter.try_take(policy.redrives_per_minute, now) {
        return Verdict::Propose(format!(
            "rate limit of {} auto-redrives per minute reached",
            policy.redrives_per_minute
        ));
    }
    Verdict::Execute
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Category;

    fn decision(category: Category, action: Action, confidence: f64) -> Decision {
        Decision { category, action, confidence, delay_ms: None, patch: None, analysis: "a".into() }
    }

    fn auto() -> Policy {
        Policy { mode: Mode::Auto, redrives_per_minute: 100, ..Policy::default() }
    }

    #[test]
    fn auto_executes_only_what_the_policy_allows() {
        let mut l = RateLimiter::default();
        let p = auto();
        let v = |d: Decision, l: &mut RateLimiter| verdict(&p, &d, false, l, 0);
        assert_eq!(
            v(decision(Category::Transient, Action::Redrive, 0.9), &mut l),
            Verdict::Execute
        );
        assert!(matches!(
            v(decision(Category::Transient, Action::Redrive, 0.5), &mut l),
            Verdict::Propose(_)
        ));
        assert!(matches!(
            v(decision(Category::BadData, Action::RedrivePatched, 0.95), &mut l),
            Verdict::Propose(_)
        ));
        assert!(matches!(
            v(decision(Category::Bug, Action::Escalate, 0.9), &mut l),
            Verdict::Escalate(_)
        ));
        assert!(matches!(
            v(decision(Category::DependencyDown, Action::Hold, 0.9), &mut l),
            Verdict::Record(_)
        ));
        let patched =
            Policy { auto_patch: true, auto_categories: vec![Category::BadData], ..auto() };
        let d = decision(Category::BadData, Action::RedrivePatched, 0.9);
        assert_eq!(verdict(&patched, &d, false, &mut l, 0), Verdict::Execute);
        let observe = Policy { mode: Mode::Observe, ..auto() };
        assert!(matches!(verdict(&observe, &d, false, &mut l, 0), Verdict::Record(_)));
    }

    #[test]
    fn a_policy_file_has_a_default_and_queue_sections() {
        let (default, queues) = parse_file(
            "mode = \"auto\"\nmin_confidence = 0.9\n[queues.payments-dlq]\nmode = \"observe\"\n",
        )
        .unwrap();
        assert_eq!((default.mode, default.min_confidence), (Mode::Auto, 0.9));
        assert_eq!(queues["payments-dlq"].mode, Mode::Observe);
        assert_eq!(queues["payments-dlq"].min_confidence, 0.8, "absent fields take the defaults");
        assert!(parse_file("mode = \"yolo\"").is_err());
        assert!(parse_file("nope = 1").is_err(), "unknown settings are refused");
    }

    #[test]
    fn a_burst_of_1000_respects_the_rate_limit_and_never_redrives_a_job_twice() {
        let p = auto();
        let mut l = RateLimiter::default();
        let d = decision(Category::Transient, Action::Redrive, 0.9);
        // 1,000 dead jobs at once, the first 300 of which the agent had redriven before.
        let verdicts: Vec<Verdict> =
            (0..1000).map(|i| verdict(&p, &d, i < 300, &mut l, 1_000)).collect();
        let executed = verdicts.iter().filter(|v| **v == Verdict::Execute).count();
        let escalated = verdicts.iter().filter(|v| matches!(v, Verdict::Escalate(_))).count();
        assert_eq!((executed, escalated), (100, 300), "100 per minute; died-again jobs escalate");
        assert!(verdicts[..300].iter().all(|v| matches!(v, Verdict::Escalate(_))));
        // A minute later the limiter has room again.
        assert_eq!(verdict(&p, &d, false, &mut l, 61_000), Verdict::Execute);
    }
}
