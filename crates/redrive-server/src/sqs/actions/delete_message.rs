//! DeleteMessage: completes a received message. As on SQS, a receipt whose lease already ended
//! is not an error (the message may or may not be deleted) but on a FIFO queue; a malformed one
//! is.

use redrive_core::Broker;
use serde::Deserialize;

use crate::sqs::actions::{deleted, malformed_receipt, store_receipt, Empty};
use crate::sqs::error::SqsResult;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    receipt_handle: String,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let queue = cx.queue_name(input.queue_url.as_deref())?;
    let key = cx.state.receipts().await?;
    let Some(receipt) = store_receipt(key, &queue, &input.receipt_handle) else {
        return Err(malformed_receipt(&input.receipt_handle));
    };
    let traced = crate::traces::jobs_of(cx.state, std::slice::from_ref(&receipt)).await;
    let r = cx.broker().ack(vec![receipt.clone()]).await?;
    if let ([Some(job)], [redrive_core::broker::AckResult::Ok]) = (traced.as_slice(), r.as_slice()) {
        cx.state.traces.settle("ack", job, None);
    }
    deleted(cx, &queue, &input.receipt_handle, &receipt, r[0]).await?;
    Ok(Empty)
}
