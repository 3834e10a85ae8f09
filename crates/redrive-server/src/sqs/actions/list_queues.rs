//! ListQueues: queue URLs by name prefix, paginated with MaxResults and NextToken.

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
    queue_name_prefix: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    queue_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let prefix = input.queue_name_prefix.unwrap_or_default();
    let names = cx
        .broker()
        .list_queues()
        .await?
        .into_iter()
        .map(|q| q.name)
        .filter(|n| cx.in_region(n) && crate::sqs::bare_name(n).starts_with(&prefix))
        .collect();
    let (names, next_token) = page(names, input.max_results, input.next_token)?;
    Ok(Output { queue_urls: names.iter().map(|n| cx.queue_url(n)).collect(), next_token })
}
