//! CancelMessageMoveTask: stops a running move task; what it moved stays moved.

use serde::{Deserialize, Serialize};

use crate::sqs::error::{self, SqsResult};
use crate::sqs::moves::task_id_of;
use crate::sqs::Cx;
use redrive_core::Broker;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    task_handle: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    approximate_number_of_messages_moved: u64,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let (id, source_arn) =
        task_id_of(&input.task_handle).ok_or_else(|| error::TASK_HANDLE_INVALID.err())?;
    // A handle whose source queue is gone names a missing resource, as SQS answers, not a
    // missing task.
    let source = cx.queue_of_arn(&source_arn).map_err(|_| error::MOVE_SOURCE_MISSING.err())?;
    cx.require_move_source(&source).await?;
    let task = cx
        .state
        .moves
        .cancel(cx.broker(), &id)
        .await?
        .ok_or_else(|| error::TASK_MISSING.err())?;
    Ok(Output { approximate_number_of_messages_moved: task.moved })
}
