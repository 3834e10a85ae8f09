//! SendMessageBatch: up to 10 messages; each entry succeeds or fails on its own, but for a FIFO
//! entry without its group or deduplication id, which fails the whole request.

use redrive_core::Broker;
use serde::{Deserialize, Serialize};

use crate::sqs::actions::send_message::{fifo_ids, prepare, Message, Prepared, Sent};
use crate::sqs::actions::{check_batch, BatchError};
use crate::sqs::error::{self, SqsError, SqsResult};
use crate::sqs::Cx;
use redrive_core::limits;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    id: String,
    #[serde(flatten)]
    message: Message,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Serialize)]
pub struct SentEntry {
    #[serde(rename = "Id")]
    id: String,
    #[serde(flatten)]
    sent: Sent,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    successful: Vec<SentEntry>,
    failed: Vec<BatchError>,
}

/// The request as a whole may carry at most this many bytes of messages (SQS: 1 MiB).
const BATCH_BYTES_MAX: usize = limits::SQS_BATCH_BYTES_MAX;

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    check_batch(input.entries.iter().map(|e| e.id.as_str()))?;
    let total: usize = input.entries.iter().map(|e| e.message.size()).sum();
    if total > BATCH_BYTES_MAX {
        return Err(error::BATCH_TOO_LONG.with(&[("max", &BATCH_BYTES_MAX), ("size", &total)]));
    }
    let q = cx.broker().get_queue(name.clone()).await?;
    for e in &input.entries {
        fifo_ids(&q, &e.message).map_err(SqsError::in_batch)?;
    }
    let mut out = Output { successful: Vec::new(), failed: Vec::new() };
    let mut ready: Vec<(String, Prepared)> = Vec::new();
    for e in input.entries {
        match prepare(&q, e.message) {
            Ok(p) => ready.push((e.id, p)),
            Err(err) => out.failed.push(BatchError::new(&e.id, err.in_batch())),
        }
    }
    if ready.is_empty() {
        return Ok(out);
    }
    let mut jobs: Vec<_> = ready.iter().map(|(_, p)| p.job.clone()).collect();
    let span = cx.state.traces.creation(&name, cx.trace.as_ref(), &mut jobs);
    for ((_, p), j) in ready.iter_mut().zip(&jobs) {
        p.job.traceparent.clone_from(&j.traceparent);
    }
    let enqueued = cx.broker().enqueue(name.clone(), jobs).await;
    crate::traces::Traces::sent(span, &enqueued);
    match enqueued {
        Ok(enqueued) => {
            for ((id, p), e) in ready.into_iter().zip(&enqueued) {
                out.successful.push(SentEntry { sent: p.sent(e), id });
            }
        }
        // The store refuses a whole batch for one bad job: find which, one at a time.
        Err(
            redrive_core::Error::InvalidParameter { .. }
            | redrive_core::Error::MessageTooLarge { .. },
        ) => {
            for (id, p) in ready {
                match cx.broker().enqueue(name.clone(), vec![p.job.clone()]).await {
                    Ok(e) => out.successful.push(SentEntry { sent: p.sent(&e[0]), id }),
                    Err(err) => out.failed.push(BatchError::new(&id, SqsError::from(err).in_batch())),
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(out)
}
