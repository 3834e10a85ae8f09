//! AddPermission: adds a labelled statement to the queue's `Policy`. Stored and shown, not
//! enforced (see docs/sqs-compatibility.md).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::sqs::actions::Empty;
use crate::sqs::error::{self, SqsResult};
use crate::sqs::Cx;
use redrive_core::Broker;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    label: String,
    #[serde(rename = "AWSAccountIds")]
    aws_account_ids: Vec<String>,
    actions: Vec<String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    let valid_label = !input.label.is_empty()
        && input.label.len() <= 80
        && input.label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_label || input.aws_account_ids.is_empty() || input.actions.is_empty() {
        return Err(error::PERMISSION_SHAPE.err());
    }
    let arn = cx.arn(&name);
    super::remove_permission::edit_policy(cx, name, |statements| {
        if statements.iter().any(|s| s["Sid"] == input.label.as_str()) {
            return Err(error::LABEL_EXISTS.with(&[("label", &input.label)]));
        }
        let principals: Vec<Value> =
            input.aws_account_ids.iter().map(|a| json!(format!("arn:aws:iam::{a}:root"))).collect();
        let actions: Vec<Value> = input.actions.iter().map(|a| json!(format!("SQS:{a}"))).collect();
        statements.push(json!({
            "Sid": input.label,
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": actions,
            "Resource": arn,
        }));
        Ok(())
    })
    .await?;
    Ok(Empty)
}
