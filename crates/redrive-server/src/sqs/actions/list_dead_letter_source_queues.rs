//! ListDeadLetterSourceQueues: the queues whose redrive policy names this queue.

use redrive_core::Broker;
use serde::{Deserialize, Serialize};

use crate::sqs::actions::page;
use crate::sqs::error::SqsResult;
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Output {
    #[serde(rename = "queueUrls")]
    queue_urls: Vec<String>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    cx.broker().get_queue(name.clone()).await?;
    let sources = cx
        .broker()
        .list_queues()
        .await?
        .into_iter()
        .filter(|q| q.config.dead_letter_queue.as_deref() == Some(name.as_str()))
        .map(|q| q.name)
        .collect();
    let (names, next_token) = page(sources, input.max_results, input.next_token)?;
    Ok(Output { queue_urls: names.iter().map(|n| cx.queue_url(n)).collect(), next_token })
}
