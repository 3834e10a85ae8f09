//! TagQueue: adds or replaces tags (at most 50 per queue).

use redrive_core::Broker;
use std::collections::BTreeMap;

use redrive_core::QueuePatch;
use serde::Deserialize;

use crate::sqs::actions::Empty;
use crate::sqs::error::SqsResult;
use crate::sqs::wire::string_map;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(deserialize_with = "string_map")]
    tags: BTreeMap<String, String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    let mut tags = cx.broker().get_queue(name.clone()).await?.config.tags;
    tags.extend(input.tags);
    let patch = QueuePatch { tags: Some(tags), ..QueuePatch::default() };
    cx.broker().put_queue(name, patch).await?;
    Ok(Empty)
}
