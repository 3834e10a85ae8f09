//! GetQueueAttributes: `All` or named attributes, counts included.

use redrive_core::Broker;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sqs::attributes::render;
use crate::sqs::error::SqsResult;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<String, String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    let q = cx.broker().get_queue(name).await?;
    Ok(Output { attributes: render(cx, &q, &input.attribute_names)? })
}
