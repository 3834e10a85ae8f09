//! ChangeMessageVisibility: ends a received message's visibility timeout that many seconds from
//! now (0 makes it visible at once).

use redrive_core::Broker;
use serde::Deserialize;

use crate::sqs::actions::{int_in, malformed_receipt, store_receipt, Empty};
use crate::sqs::error::{self, SqsError, SqsResult};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;
use redrive_core::limits;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    receipt_handle: String,
    #[serde(deserialize_with = "opt_int")]
    visibility_timeout: Option<i64>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let queue = cx.queue_name(input.queue_url.as_deref())?;
    change(cx, &queue, input.receipt_handle, input.visibility_timeout).await?;
    Ok(Empty)
}

/// One visibility change, shared with the batch action.
pub async fn change<B: Broker>(
    cx: &Cx<'_, B>,
    queue: &str,
    handle: String,
    seconds: Option<i64>,
) -> SqsResult<()> {
    let seconds = int_in("VisibilityTimeout", seconds, 0, limits::SQS_VISIBILITY_TIMEOUT_MAX_S)?
        .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    let key = cx.state.receipts().await?;
    let Some(receipt) = store_receipt(key, queue, &handle) else {
        return Err(malformed_receipt(&handle));
    };
    match cx.broker().extend(receipt, seconds as u64 * 1000).await {
        Ok(_) => Ok(()),
        Err(redrive_core::Error::StaleReceipt) => Err(error::MESSAGE_NOT_INFLIGHT.err()),
        Err(e) => Err(e.into()),
    }
}
