//! The rules provider against the shipped labelled datasets: the targets of issue 5 (category
//! accuracy ≥ 85%, no unsafe decisions). `dead_jobs.jsonl` is the set the rules were tuned on;
//! `held_out.jsonl` was written without looking at the rules.

use redrive_triage::eval::{evaluate, parse};

fn score(file: &str) -> redrive_triage::eval::Report {
    let path = format!("{}/eval/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let cases = parse(&text).unwrap();
    evaluate(&cases, redrive_triage::rules::decide)
}

#[test]
fn rules_meet_the_targets_on_the_dataset() {
    let r = score("dead_jobs.jsonl");
    assert!(r.scores.cases >= 150, "{} cases", r.scores.cases);
    assert!(r.scores.category_accuracy >= 0.85, "{:?}", r.scores);
    assert_eq!(r.scores.unsafe_decisions, 0, "unsafe: {:?}", r.unsafe_cases);
}
