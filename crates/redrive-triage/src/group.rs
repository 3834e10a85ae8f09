//! Grouping: dead jobs with the same failure signature, source queue and payload shape get one
//! decision, so 10,000 identical timeouts cost one classification (and one model call).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::DeadCase;

/// What makes two dead jobs "the same failure".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub queue: String,
    /// The last error's type and message with ids, numbers, hex, UUIDs, quoted values and paths
    /// masked ([`redrive_core::model::signature`]); `<no error>` when none was recorded.
    pub signature: String,
    /// The body's top-level JSON keys, sorted (`{a,b}`), `[]` for arrays, or `text`.
    pub shape: String,
}

impl GroupKey {
    pub fn of(case: &DeadCase) -> GroupKey {
        let signature = match case.last_error() {
            Some(e) => redrive_core::model::signature(&e.kind, &e.message),
            None => "<no error>".to_owned(),
        };
        GroupKey { queue: case.queue.clone(), signature, shape: shape(&case.body) }
    }
}

fn shape(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(m)) => {
            // Sorted here: with serde_json's `preserve_order` (enabled elsewhere in the workspace)
            // maps keep the body's key order.
            let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
            keys.sort_unstable();
            format!("{{{}}}", keys.join(","))
        }
        Ok(Value::Array(_)) => "[]".to_owned(),
        _ => "text".to_owned(),
    }
}

/// Groups cases by [`GroupKey`]; each group lists its cases' indexes in input order.
pub fn group(cases: &[DeadCase]) -> BTreeMap<GroupKey, Vec<usize>> {
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        groups.entry(GroupKey::of(c)).or_default().push(i);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FailedAttempt;

    fn case(queue: &str, body: &str, message: &str) -> DeadCase {
        DeadCase {
            queue: queue.into(),
            body: body.into(),
            errors: vec![FailedAttempt {
                kind: "Timeout".into(),
                message: message.into(),
                detail: None,
            }],
            ..DeadCase::default()
        }
    }

    #[test]
    fn the_same_failure_on_different_jobs_is_one_group() {
        let cases = [
            case("emails", r#"{"to":"a@x.io","id":1}"#, "timed out after 30s calling 10.0.0.7:25"),
            case("emails", r#"{"id":2,"to":"b@x.io"}"#, "timed out after 31s calling 10.0.0.9:25"),
            case("emails", r#"{"to":"c@x.io"}"#, "timed out after 30s calling 10.0.0.7:25"),
            case("billing", r#"{"to":"a@x.io","id":1}"#, "timed out after 30s calling 10.0.0.7:25"),
        ];
        let groups: Vec<Vec<usize>> = group(&cases).into_values().collect();
        assert_eq!(groups, [vec![3], vec![0, 1], vec![2]], "by queue, then shape");
    }
}
