//! DeleteMessage: completes a received message. As on SQS, a receipt whose lease already ended
//! is not an error (the message may or may not be deleted); a malformed one is.

use redrive_core::Broker;
use serde::Deserialize;

use crate::sqs::actions::{is_receipt, malformed_receipt, Empty};
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
    cx.queue_name(input.queue_url.as_deref())?;
    if !is_receipt(&input.receipt_handle) {
        return Err(malformed_receipt(&input.receipt_handle));
    }
    cx.broker().ack(vec![input.receipt_handle]).await?;
    Ok(Empty)
}
