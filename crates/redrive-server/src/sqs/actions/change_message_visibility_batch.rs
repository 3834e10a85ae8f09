//! ChangeMessageVisibilityBatch: up to 10 visibility changes, each succeeding or failing alone.

use serde::Deserialize;

use crate::sqs::actions::change_message_visibility::{change, Changed};
use crate::sqs::actions::{check_batch, BatchError, BatchOk, BatchResult};
use crate::sqs::error::{self, SqsResult};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;
use redrive_core::Broker;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    id: String,
    receipt_handle: String,
    #[serde(default, deserialize_with = "opt_int")]
    visibility_timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(default)]
    entries: Vec<Entry>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<BatchResult> {
    let queue = cx.queue_name(input.queue_url.as_deref())?;
    check_batch(input.entries.iter().map(|e| e.id.as_str()))?;
    let mut out = BatchResult::default();
    for e in input.entries {
        match change(cx, &queue, &e.receipt_handle, e.visibility_timeout).await {
            Ok(Changed::Yes) => out.successful.push(BatchOk { id: e.id }),
            Ok(Changed::NotAvailable) => {
                out.failed.push(BatchError::new(&e.id, error::ENTRY_NOT_AVAILABLE.err()))
            }
            Err(err) => out.failed.push(BatchError::new(&e.id, err)),
        }
    }
    Ok(out)
}
