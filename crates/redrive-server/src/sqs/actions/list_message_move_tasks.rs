//! ListMessageMoveTasks: the most recent move tasks of a source queue (1 by default, at most 10).

use redrive_core::{limits, Broker};
use serde::{Deserialize, Serialize};

use crate::sqs::actions::int_in;
use crate::sqs::error::SqsResult;
use crate::sqs::moves::{wire_handle, Status};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    source_arn: String,
    #[serde(default, deserialize_with = "opt_int")]
    max_results: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(skip_serializing_if = "Option::is_none")]
    task_handle: Option<String>,
    status: &'static str,
    source_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_number_of_messages_per_second: Option<u32>,
    approximate_number_of_messages_moved: u64,
    approximate_number_of_messages_to_move: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    started_timestamp: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    results: Vec<Task>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let source = cx.queue_of_arn(&input.source_arn)?;
    cx.require_move_source(&source).await?;
    let most = limits::SQS_MOVE_TASKS_PER_SOURCE_MAX as i64;
    let max = int_in("MaxResults", input.max_results, 1, most)?.unwrap_or(1) as usize;
    let results = cx
        .state
        .moves
        .list(cx.broker(), &source, max)
        .await?
        .into_iter()
        .map(|t| Task {
            task_handle: (t.status == Status::Running).then(|| wire_handle(&t.handle, &t.source_arn)),
            status: t.status.as_str(),
            source_arn: t.source_arn,
            destination_arn: t.destination_arn,
            max_number_of_messages_per_second: t.rate,
            approximate_number_of_messages_moved: t.moved,
            approximate_number_of_messages_to_move: t.to_move,
            failure_reason: t.failure_reason,
            started_timestamp: t.started_at,
        })
        .collect();
    Ok(Output { results })
}
