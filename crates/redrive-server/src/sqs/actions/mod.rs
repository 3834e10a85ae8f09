//! Every SQS action, behind the closed [`SqsAction`] enum: one file per action, each with its
//! input (deserialized from either protocol) and output (serialized in the JSON protocol's
//! shape).

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{self, SqsError, SqsResult};
use super::wire::NOT_AN_INTEGER;
use super::Cx;
use crate::receipts::ReceiptKey;
use redrive_core::broker::AckResult;
use redrive_core::limits;
use redrive_core::model::{JobState, Receipt};
use redrive_core::Broker;

macro_rules! actions {
    ($($name:ident => $module:ident),* $(,)?) => {
        $(mod $module;)*

        /// The SQS actions redrive answers; anything else is `InvalidAction`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum SqsAction { $($name),* }

        impl SqsAction {
            pub const ALL: &'static [SqsAction] = &[$(SqsAction::$name),*];

            pub fn from_name(name: &str) -> Option<SqsAction> {
                match name {
                    $(stringify!($name) => Some(SqsAction::$name),)*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self { $(SqsAction::$name => stringify!($name)),* }
            }

            pub async fn run<B: Broker>(self, cx: &Cx<'_, B>, params: Value) -> SqsResult<Value> {
                match self {
                    $(SqsAction::$name => output($module::run(cx, input(params)?).await?),)*
                }
            }
        }
    };
}

pub use receive_message::ReceiveAttempts;

actions! {
    CreateQueue => create_queue,
    DeleteQueue => delete_queue,
    GetQueueUrl => get_queue_url,
    ListQueues => list_queues,
    GetQueueAttributes => get_queue_attributes,
    SetQueueAttributes => set_queue_attributes,
    PurgeQueue => purge_queue,
    SendMessage => send_message,
    SendMessageBatch => send_message_batch,
    ReceiveMessage => receive_message,
    DeleteMessage => delete_message,
    DeleteMessageBatch => delete_message_batch,
    ChangeMessageVisibility => change_message_visibility,
    ChangeMessageVisibilityBatch => change_message_visibility_batch,
    TagQueue => tag_queue,
    UntagQueue => untag_queue,
    ListQueueTags => list_queue_tags,
    AddPermission => add_permission,
    RemovePermission => remove_permission,
    ListDeadLetterSourceQueues => list_dead_letter_source_queues,
    StartMessageMoveTask => start_message_move_task,
    ListMessageMoveTasks => list_message_move_tasks,
    CancelMessageMoveTask => cancel_message_move_task,
}

/// Reads an action's input; a missing required member is `MissingParameter`, a JSON value
/// where an integer belongs is `SerializationException` (as AWS's JSON front end answers it),
/// anything else malformed is `InvalidParameterValue`.
fn input<T: DeserializeOwned>(params: Value) -> SqsResult<T> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        if msg.ends_with(NOT_AN_INTEGER) {
            // A flattened structure's members leave no name in the path ("." or "Entries[0]").
            if path == "." || path.ends_with(']') {
                return error::NOT_AN_INTEGER_JSON_UNNAMED.with(&[("detail", &msg)]);
            }
            return error::NOT_AN_INTEGER_JSON.with(&[("detail", &msg), ("member", &path)]);
        }
        match msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            Some(field) => SqsError::missing(field),
            None => error::INVALID_MEMBER.with(&[("detail", &msg)]),
        }
    })
}

fn output<T: Serialize>(out: T) -> SqsResult<Value> {
    Ok(serde_json::to_value(out).expect("outputs serialize"))
}

/// A range-checked integer parameter.
fn int_in(name: &str, v: Option<i64>, lo: i64, hi: i64) -> SqsResult<Option<i64>> {
    match v {
        Some(n) if !(lo..=hi).contains(&n) => Err(error::OUT_OF_RANGE.with(&[
            ("value", &n),
            ("parameter", &name),
            ("min", &lo),
            ("max", &hi),
        ])),
        v => Ok(v),
    }
}

/// Entries a batch carries at most.
const BATCH_ENTRIES_MAX: usize = limits::SQS_BATCH_ENTRIES_MAX;

/// Checks a batch's entry ids: 1 to 10 entries, distinct ids of `[A-Za-z0-9_-]{1,80}`.
fn check_batch<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> SqsResult<()> {
    match ids.len() {
        0 => return Err(error::EMPTY_BATCH.err()),
        n if n > BATCH_ENTRIES_MAX => {
            return Err(error::TOO_MANY_ENTRIES.with(&[("max", &BATCH_ENTRIES_MAX), ("count", &n)]))
        }
        _ => {}
    }
    let mut seen = HashSet::new();
    for id in ids {
        let valid = !id.is_empty()
            && id.len() <= 80
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(error::INVALID_BATCH_ENTRY_ID.err());
        }
        if !seen.insert(id) {
            return Err(error::BATCH_ENTRY_IDS_NOT_DISTINCT.with(&[("id", &id)]));
        }
    }
    Ok(())
}

/// A failed batch entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchError {
    id: String,
    sender_fault: bool,
    code: &'static str,
    message: String,
}

impl BatchError {
    fn new(id: &str, e: SqsError) -> BatchError {
        BatchError {
            id: id.to_owned(),
            sender_fault: e.code().sender_fault(),
            code: e.code().query_code(),
            message: e.message(),
        }
    }
}

/// A succeeded batch entry that carries only its id.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchOk {
    id: String,
}

/// The answer of DeleteMessageBatch and ChangeMessageVisibilityBatch.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResult {
    successful: Vec<BatchOk>,
    failed: Vec<BatchError>,
}

/// An action that answers nothing: no `<Action>Result` element in XML, `{}` in JSON.
#[derive(Debug, Serialize)]
struct Empty;

/// Inputs that name only a queue.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueOnly {
    #[serde(default)]
    queue_url: Option<String>,
}

/// A receipt handle that is not one of ours (malformed, forged, or of another queue).
fn malformed_receipt(handle: &str) -> SqsError {
    error::RECEIPT_INVALID.with(&[("handle", &handle)])
}

/// The store's receipt inside a handle this store's servers issued for `queue`.
fn store_receipt(key: &ReceiptKey, queue: &str, handle: &str) -> Option<String> {
    key.open(handle).filter(|o| o.queue == queue).map(|o| o.inner.to_string())
}

/// What DeleteMessage answers for an ack's result. On a FIFO queue a receipt whose lease ran
/// out deletes nothing and is an error, as SQS answers ("The receipt handle has expired"); a
/// repeated delete of a message already deleted is not. Elsewhere a late or repeated delete
/// is never an error (SQS does not tell).
async fn deleted<B: Broker>(
    cx: &Cx<'_, B>,
    queue: &str,
    handle: &str,
    receipt: &str,
    result: AckResult,
) -> SqsResult<()> {
    if result != AckResult::Stale || !queue.ends_with(".fifo") {
        return Ok(());
    }
    let id = receipt.parse::<Receipt>().map(|r| r.id);
    if let Ok(id) = id {
        if cx.broker().get_job(id).await.is_ok_and(|j| j.state == JobState::Acked) {
            return Ok(());
        }
    }
    Err(error::RECEIPT_EXPIRED.with(&[("handle", &handle)]))
}

/// One page of sorted queue names after `next_token` (the last name of the previous page).
/// Without `max_results`, up to 1000 names and no token, as SQS answers.
fn page(
    mut names: Vec<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
) -> SqsResult<(Vec<String>, Option<String>)> {
    let max = int_in("MaxResults", max_results, 1, limits::SQS_LIST_RESULTS_MAX)?;
    names.sort();
    if let Some(after) = next_token.filter(|t| !t.is_empty()) {
        names.retain(|n| n.as_str() > after.as_str());
    }
    let limit = max.unwrap_or(limits::SQS_LIST_RESULTS_MAX) as usize;
    let more = names.len() > limit;
    names.truncate(limit);
    let token = (more && max.is_some()).then(|| names.last().cloned()).flatten();
    Ok((names, token))
}

#[cfg(test)]
mod tests {
    use super::SqsAction;

    #[test]
    fn all_23_actions_are_answered_by_name() {
        assert_eq!(SqsAction::ALL.len(), 23);
        for a in SqsAction::ALL {
            assert_eq!(SqsAction::from_name(a.name()), Some(*a));
        }
        assert_eq!(SqsAction::from_name("Frobnicate"), None);
    }
}
