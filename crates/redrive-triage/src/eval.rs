//! Scoring a provider against a labelled dataset (`eval/dead_jobs.jsonl`): category and action
//! accuracy, macro-F1 over categories, a confusion matrix, and the count of unsafe decisions
//! (the policy would have executed them automatically although the label says escalate or hold).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Action, Category, DeadCase, Decision};
use crate::policy::{verdict, Mode, Policy, RateLimiter, Verdict};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub category: Category,
    pub action: Action,
}

/// One dataset line: a dead job and its label.
#[derive(Clone, Debug, Deserialize)]
pub struct Labelled {
    #[serde(flatten)]
    pub case: DeadCase,
    pub expected: Expected,
}

/// Parses a JSON-lines dataset; errors name the line.
pub fn parse(text: &str) -> Result<Vec<Labelled>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// The `--json` answer of `redrive triage eval`.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub cases: usize,
    pub category_accuracy: f64,
    pub action_accuracy: f64,
    pub macro_f1: f64,
    #[serde(rename = "unsafe")]
    pub unsafe_decisions: usize,
}

/// Scores and the details a person reads to improve a provider.
#[derive(Clone, Debug)]
pub struct Report {
    pub scores: Scores,
    /// expected category → predicted category → count.
    pub confusion: BTreeMap<Category, BTreeMap<Category, usize>>,
    /// The decision for each case, in dataset order.
    pub decisions: Vec<Decision>,
    /// Indexes (into `decisions`) of the unsafe decisions.
    pub unsafe_cases: Vec<usize>,
}

/// The policy unsafe decisions are judged under: `auto` with the default allowances.
pub fn eval_policy() -> Policy {
    Policy { mode: Mode::Auto, redrives_per_minute: u32::MAX, ..Policy::default() }
}

pub fn evaluate(cases: &[Labelled], decide: impl Fn(&DeadCase) -> Decision) -> Report {
    let policy = eval_policy();
    let mut limiter = RateLimiter::default();
    let mut confusion: BTreeMap<Category, BTreeMap<Category, usize>> = BTreeMap::new();
    let (mut cat_ok, mut act_ok) = (0, 0);
    let mut unsafe_cases = Vec::new();
    let mut decisions = Vec::with_capacity(cases.len());
    for (i, l) in cases.iter().enumerate() {
        let d = decide(&l.case);
        cat_ok += usize::from(d.category == l.expected.category);
        act_ok += usize::from(d.action == l.expected.action);
        *confusion.entry(l.expected.category).or_default().entry(d.category).or_default() += 1;
        let forbidden = matches!(l.expected.action, Action::Escalate | Action::Hold);
        if forbidden && verdict(&policy, &d, false, &mut limiter, 0) == Verdict::Execute {
            unsafe_cases.push(i);
        }
        decisions.push(d);
    }
    let n = cases.len().max(1) as f64;
    let scores = Scores {
        cases: cases.len(),
        category_accuracy: cat_ok as f64 / n,
        action_accuracy: act_ok as f64 / n,
        macro_f1: macro_f1(&confusion),
        unsafe_decisions: unsafe_cases.len(),
    };
    Report { scores, confusion, decisions, unsafe_cases }
}

/// Mean F1 over every category that is expected or predicted at least once.
fn macro_f1(confusion: &BTreeMap<Category, BTreeMap<Category, usize>>) -> f64 {
    let mut seen = BTreeSet::new();
    for (e, row) in confusion {
        seen.insert(*e);
        seen.extend(row.keys().copied());
    }
    let f1s: Vec<f64> = seen
        .iter()
        .map(|c| {
            let tp = confusion.get(c).and_then(|r| r.get(c)).copied().unwrap_or(0) as f64;
            let expected: usize = confusion.get(c).map_or(0, |r| r.values().sum());
            let predicted: usize = confusion.values().filter_map(|r| r.get(c)).sum();
            if tp == 0.0 {
                return 0.0;
            }
            let (p, r) = (tp / predicted as f64, tp / expected as f64);
            2.0 * p * r / (p + r)
        })
        .collect();
    if f1s.is_empty() {
        0.0
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

/// The confusion matrix as a text table (rows: expected, columns: predicted).
pub fn confusion_table(confusion: &BTreeMap<Category, BTreeMap<Category, usize>>) -> String {
    let cols = Category::ALL;
    let mut out = format!("{:<16}", "expected \\ got");
    for c in cols {
        out.push_str(&format!(" {:>5}", &c.as_str()[..c.as_str().len().min(5)]));
    }
    out.push('\n');
    for r in cols {
        let Some(row) = confusion.get(&r) else { continue };
        out.push_str(&format!("{:<16}", r.as_str()));
        for c in cols {
            out.push_str(&format!(" {:>5}", row.get(&c).copied().unwrap_or(0)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_count_what_they_say() {
        let line = |cat: &str, act: &str, err: &str| {
            format!(
                r#"{{"queue":"q","body":"{{}}","attributes":{{}},"receive_count":3,"errors":[{{"type":"E","message":"{err}"}}],"expected":{{"category":"{cat}","action":"{act}"}}}}"#
            )
        };
        let text = [
            line("transient", "redrive", "connection reset by peer"),
            line("bug", "escalate", "NullPointerException"),
            // Labelled as a bug, but the rules see a timeout and would auto-redrive: unsafe.
            line("bug", "escalate", "timed out"),
        ]
        .join("\n");
        let cases = parse(&text).unwrap();
        let r = evaluate(&cases, crate::rules::decide);
        assert_eq!(r.scores.cases, 3);
        assert!((r.scores.category_accuracy - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.scores.unsafe_decisions, 1);
        assert_eq!(r.unsafe_cases, [2], "the third case");
        // transient: p = 1/2, r = 1 → 2/3; bug: p = 1, r = 1/2 → 2/3.
        assert!((r.scores.macro_f1 - 2.0 / 3.0).abs() < 1e-9, "{}", r.scores.macro_f1);
        assert!(parse("{}\n").unwrap_err().starts_with("line 1:"));
    }
}
