//! StartMessageMoveTask: moves a dead-letter queue's messages back to their source queues, or to
//! `DestinationArn`, at `MaxNumberOfMessagesPerSecond` (at most 500) if given. The task lives in
//! the store (see `sqs::moves`).

use redrive_core::{limits, Broker};
use serde::{Deserialize, Serialize};

use crate::sqs::actions::int_in;
use crate::sqs::error::{self, SqsError, SqsResult};
use crate::sqs::moves::{wire_handle, NewTask, StartError};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    source_arn: String,
    #[serde(default)]
    destination_arn: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    max_number_of_messages_per_second: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    task_handle: String,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let source = cx.queue_of_arn(&input.source_arn)?;
    let most = i64::from(limits::SQS_MOVE_TASK_RATE_MAX);
    let rate =
        int_in("MaxNumberOfMessagesPerSecond", input.max_number_of_messages_per_second, 1, most)?;
    let queues = cx.broker().list_queues().await?;
    let Some(dlq) = queues.iter().find(|q| q.name == source) else {
        return Err(error::MOVE_SOURCE_MISSING.err());
    };
    if !queues.iter().any(|q| q.config.dead_letter_queue.as_deref() == Some(source.as_str())) {
        return Err(error::MOVE_SOURCE_NOT_DEAD_LETTER.err());
    }
    let destination = match &input.destination_arn {
        Some(arn) => {
            let name = cx.queue_of_arn(arn)?;
            if !queues.iter().any(|q| q.name == name) {
                return Err(error::MOVE_DESTINATION_MISSING.err());
            }
            Some(name)
        }
        None => None,
    };
    let source_arn = input.source_arn.clone();
    let task = NewTask {
        source_arn: input.source_arn,
        source,
        destination,
        destination_arn: input.destination_arn,
        rate: rate.map(|r| r as u32),
        to_move: dlq.stats.dead_letters,
    };
    let id = cx.state.moves.start(cx.state.clone(), task).await.map_err(|e| match e {
        StartError::AlreadyRunning(_) => error::MOVE_ALREADY_RUNNING.err(),
        StartError::Store(e) => SqsError::from(e),
    })?;
    Ok(Output { task_handle: wire_handle(&id, &source_arn) })
}
