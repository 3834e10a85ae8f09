//! SetQueueAttributes: changes settable attributes (FifoQueue only at creation).

use redrive_core::Broker;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sqs::actions::Empty;
use crate::sqs::attributes::{check_dead_letter_target, to_patch};
use crate::sqs::error::SqsResult;
use crate::sqs::wire::string_map;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(deserialize_with = "string_map")]
    attributes: BTreeMap<String, String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    let q = cx.broker().get_queue(name.clone()).await?;
    let home = &cx.settings().region;
    let patch = to_patch(home, &input.attributes, &q.config.sqs_attributes, q.config.fifo, false)?;
    check_dead_letter_target(cx, &name, &patch, q.config.fifo, &input.attributes).await?;
    cx.broker().put_queue(name, patch).await?;
    Ok(Empty)
}
