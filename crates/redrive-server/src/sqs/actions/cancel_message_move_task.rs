//! CancelMessageMoveTask: stops a running move task; what it moved stays moved.

use serde::{Deserialize, Serialize};

use crate::sqs::error::{Code, SqsError, SqsResult};
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
    let task = cx.state.moves.cancel(cx.broker(), &input.task_handle).await?.ok_or_else(|| {
        SqsError::new(Code::ResourceNotFound, "No running message move task has this handle.")
    })?;
    Ok(Output { approximate_number_of_messages_moved: task.moved })
}
