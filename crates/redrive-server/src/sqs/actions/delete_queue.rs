//! DeleteQueue: deletes the queue and its messages.

use crate::sqs::actions::{Empty, QueueOnly};
use crate::sqs::error::SqsResult;
use crate::sqs::Cx;
use redrive_core::Broker;

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: QueueOnly) -> SqsResult<Empty> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    cx.broker().delete_queue(name).await?;
    Ok(Empty)
}
