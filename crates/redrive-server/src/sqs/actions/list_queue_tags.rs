//! ListQueueTags: a queue's tags.

use redrive_core::Broker;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::sqs::actions::QueueOnly;
use crate::sqs::error::SqsResult;
use crate::sqs::Cx;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: QueueOnly) -> SqsResult<Output> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    Ok(Output { tags: cx.broker().get_queue(name).await?.config.tags })
}
