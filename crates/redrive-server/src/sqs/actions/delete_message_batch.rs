//! DeleteMessageBatch: up to 10 receipts in one acknowledgement; malformed ones fail alone.

use redrive_core::Broker;
use serde::Deserialize;

use crate::sqs::actions::{
    check_batch, deleted, malformed_receipt, store_receipt, BatchError, BatchOk, BatchResult,
};
use crate::sqs::error::SqsResult;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    id: String,
    receipt_handle: String,
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
    let key = cx.state.receipts().await?;
    let mut out = BatchResult::default();
    let mut good = Vec::new();
    for e in input.entries {
        match store_receipt(key, &queue, &e.receipt_handle) {
            Some(r) => good.push((e, r)),
            None => out.failed.push(BatchError::new(&e.id, malformed_receipt(&e.receipt_handle))),
        }
    }
    if good.is_empty() {
        return Ok(out);
    }
    let results = cx.broker().ack(good.iter().map(|(_, r)| r.clone()).collect()).await?;
    for ((e, receipt), result) in good.into_iter().zip(results) {
        match deleted(cx, &queue, &e.receipt_handle, &receipt, result).await {
            Ok(()) => out.successful.push(BatchOk { id: e.id }),
            Err(err) => out.failed.push(BatchError::new(&e.id, err)),
        }
    }
    Ok(out)
}
