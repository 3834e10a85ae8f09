//! RemovePermission: removes a labelled statement from the queue's `Policy`.

use redrive_core::Broker;
use redrive_core::QueuePatch;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::sqs::actions::Empty;
use crate::sqs::error::{self, SqsResult};
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    label: String,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    edit_policy(cx, name, |statements| {
        let before = statements.len();
        statements.retain(|s| s["Sid"] != input.label.as_str());
        if statements.len() == before {
            return Err(error::LABEL_MISSING.with(&[("label", &input.label)]));
        }
        Ok(())
    })
    .await
}

/// Applies `edit` to the statements of the queue's stored `Policy` and stores it back (the
/// attribute is removed when no statement is left).
pub async fn edit_policy<B: Broker>(
    cx: &Cx<'_, B>,
    name: String,
    edit: impl FnOnce(&mut Vec<Value>) -> SqsResult<()>,
) -> SqsResult<Empty> {
    let q = cx.broker().get_queue(name.clone()).await?;
    let mut stored = q.config.sqs_attributes;
    let mut policy: Value = stored
        .get("Policy")
        .and_then(|p| serde_json::from_str(p).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"Version": "2012-10-17", "Id": format!("{}/SQSDefaultPolicy", cx.arn(&name))}));
    let mut statements = match policy.get_mut("Statement").map(Value::take) {
        Some(Value::Array(s)) => s,
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    edit(&mut statements)?;
    if statements.is_empty() {
        stored.remove("Policy");
    } else {
        policy["Statement"] = Value::Array(statements);
        stored.insert("Policy".into(), policy.to_string());
    }
    let patch = QueuePatch { sqs_attributes: Some(stored), ..QueuePatch::default() };
    cx.broker().put_queue(name, patch).await?;
    Ok(Empty)
}
