//! GetQueueUrl: the URL of a queue by name.

use redrive_core::Broker;
use serde::{Deserialize, Serialize};

use crate::sqs::error::{self, SqsResult};
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    queue_name: String,
    /// Accepted; there is one account.
    #[serde(default, rename = "QueueOwnerAWSAccountId")]
    _owner: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    queue_url: String,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    // A name, not a URL: `../q` or `x/q` names no queue, even though `q` exists.
    if !crate::sqs::sqs_queue_name(&input.queue_name) {
        return Err(error::NON_EXISTENT_QUEUE.err());
    }
    let q = cx.broker().get_queue(cx.internal(&input.queue_name)).await?;
    Ok(Output { queue_url: cx.queue_url(&q.name) })
}
