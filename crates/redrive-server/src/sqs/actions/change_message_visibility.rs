//! ChangeMessageVisibility: ends a received message's visibility timeout that many seconds from
//! now (0 makes it visible at once).
//!
//! As SQS answers: a handle whose visibility timeout already ended, its message not received
//! again since, changes nothing and is not an error (on a FIFO queue it is, as DeleteMessage's
//! "The receipt handle has expired"); a message deleted, moved to its dead-letter queue or
//! received again under another handle "does not exist or is not available". redrive never
//! extends a lease through an older receipt (fencing), where SQS would change the message's
//! current visibility.

use redrive_core::model::{JobState, Receipt};
use redrive_core::{Broker, Error};
use serde::Deserialize;

use crate::sqs::actions::{int_in, malformed_receipt, store_receipt, Empty};
use crate::sqs::error::{self, SqsError, SqsResult};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;
use redrive_core::limits;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    receipt_handle: String,
    #[serde(deserialize_with = "opt_int")]
    visibility_timeout: Option<i64>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Empty> {
    let queue = cx.queue_name(input.queue_url.as_deref())?;
    let handle = input.receipt_handle;
    match change(cx, &queue, &handle, input.visibility_timeout).await? {
        Changed::Yes => Ok(Empty),
        Changed::NotAvailable => Err(error::MESSAGE_NOT_AVAILABLE.with(&[("handle", &handle)])),
    }
}

/// Whether a visibility change found its message.
pub enum Changed {
    /// Changed, or the timeout had ended with nobody holding the message since.
    Yes,
    NotAvailable,
}

/// One visibility change, shared with the batch action.
pub async fn change<B: Broker>(
    cx: &Cx<'_, B>,
    queue: &str,
    handle: &str,
    seconds: Option<i64>,
) -> SqsResult<Changed> {
    let seconds = int_in("VisibilityTimeout", seconds, 0, limits::SQS_VISIBILITY_TIMEOUT_MAX_S)?
        .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    let key = cx.state.receipts().await?;
    let Some(receipt) = store_receipt(key, queue, handle) else {
        return Err(malformed_receipt(handle));
    };
    let id = receipt.parse::<Receipt>().map(|r| r.id);
    match cx.broker().extend(receipt, seconds as u64 * 1000).await {
        Ok(_) => Ok(Changed::Yes),
        Err(Error::StaleReceipt) => {
            // The job's own state tells a lease that ran out (the job waits in this queue for
            // its next receive) from one taken over or settled.
            let waiting = match id {
                Ok(id) => cx.broker().get_job(id).await.is_ok_and(|j| {
                    j.queue == queue && matches!(j.state, JobState::Ready | JobState::Delayed)
                }),
                Err(()) => false,
            };
            if !waiting {
                Ok(Changed::NotAvailable)
            } else if queue.ends_with(".fifo") {
                Err(error::RECEIPT_EXPIRED.with(&[("handle", &handle)]))
            } else {
                Ok(Changed::Yes)
            }
        }
        Err(Error::JobNotFound(_)) => Ok(Changed::NotAvailable),
        Err(e) => Err(e.into()),
    }
}
