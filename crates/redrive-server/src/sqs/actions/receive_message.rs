//! ReceiveMessage: up to 10 messages, long polling, a visibility timeout for this receive, and
//! the system and message attributes asked for.

use redrive_core::Broker;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redrive_core::broker::{Delivery, ReceiveRequest};
use serde::{Deserialize, Serialize};

use crate::sqs::actions::int_in;
use crate::sqs::error::{self, SqsResult};
use crate::sqs::message::{self, Attributes, DEDUP_KEY, TRACE_KEY};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;
use redrive_core::limits;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    max_number_of_messages: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    wait_time_seconds: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    visibility_timeout: Option<i64>,
    /// The older name of `MessageSystemAttributeNames`.
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
    /// On a FIFO queue, a retry with the same id within five minutes gets the first answer.
    #[serde(default)]
    receive_request_attempt_id: Option<String>,
}

/// The answers of FIFO receives by queue and `ReceiveRequestAttemptId`, for five minutes: SQS
/// answers a retried receive with the messages and receipt handles of its first answer, so
/// that messages whose answer was lost on the way do not stay leased to nobody until their
/// visibility timeout ends. Kept in memory by each server, at most `ATTEMPTS_MAX` answers.
#[derive(Debug, Default)]
pub struct ReceiveAttempts(Mutex<Attempts>);

#[derive(Debug, Default)]
struct Attempts {
    answers: HashMap<(String, String), (Instant, Vec<Message>)>,
    /// Keys by age, for pruning.
    order: VecDeque<(Instant, (String, String))>,
}

const ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
const ATTEMPTS_MAX: usize = 10_000;

impl ReceiveAttempts {
    fn get(&self, key: &(String, String)) -> Option<Vec<Message>> {
        let a = self.0.lock().expect("attempts lock");
        a.answers.get(key).filter(|(at, _)| at.elapsed() < ATTEMPT_WINDOW).map(|(_, m)| m.clone())
    }

    fn put(&self, key: (String, String), messages: Vec<Message>) {
        let mut a = self.0.lock().expect("attempts lock");
        let now = Instant::now();
        while let Some((at, _)) = a.order.front() {
            if now.duration_since(*at) < ATTEMPT_WINDOW && a.order.len() < ATTEMPTS_MAX {
                break;
            }
            let (at, old) = a.order.pop_front().expect("checked");
            if a.answers.get(&old).is_some_and(|(t, _)| *t == at) {
                a.answers.remove(&old);
            }
        }
        a.order.push_back((now, key.clone()));
        a.answers.insert(key, (now, messages));
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Message {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "ReceiptHandle")]
    receipt_handle: String,
    #[serde(rename = "MD5OfBody")]
    md5_body: String,
    #[serde(rename = "Body")]
    body: String,
    #[serde(rename = "Attributes", skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<String, String>,
    #[serde(rename = "MD5OfMessageAttributes", skip_serializing_if = "Option::is_none")]
    md5_attributes: Option<String>,
    #[serde(rename = "MessageAttributes", skip_serializing_if = "BTreeMap::is_empty")]
    message_attributes: Attributes,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<Message>,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    let max = int_in(
        "MaxNumberOfMessages",
        input.max_number_of_messages,
        1,
        limits::SQS_RECEIVE_COUNT_MAX,
    )?
    .unwrap_or(1);
    // Range-checked as `int_in` does, in the words SQS has for this parameter.
    let wait = input.wait_time_seconds;
    if let Some(w) = wait.filter(|w| !(0..=limits::SQS_WAIT_TIME_MAX_S).contains(w)) {
        return Err(error::WAIT_OUT_OF_RANGE.with(&[("value", &w)]));
    }
    let visibility = int_in(
        "VisibilityTimeout",
        input.visibility_timeout,
        0,
        limits::SQS_VISIBILITY_TIMEOUT_MAX_S,
    )?;
    let fifo = name.ends_with(".fifo");
    let attempt = match input.receive_request_attempt_id.filter(|_| fifo) {
        Some(id) if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(error::ATTEMPT_ID_INVALID.with(&[("value", &id)]))
        }
        Some(id) => Some((name.clone(), id)),
        None => None,
    };
    if let Some(messages) = attempt.as_ref().and_then(|k| cx.state.receive_attempts.get(k)) {
        return Ok(Output { messages });
    }
    // Read before leasing: a lease is never taken for a reply that cannot be made.
    let key = cx.state.receipts().await?;
    let req = ReceiveRequest {
        queues: vec![name],
        max: max as u32,
        wait_ms: wait.map(|s| s as u64 * 1000),
        lease_ms: visibility.map(|s| s as u64 * 1000),
        worker_id: None,
    };
    // One that may wait (`WaitTimeSeconds` above 0, or the queue's default) is a long poll:
    // counted against its caller and abandoned if the client goes away.
    let deliveries = if req.wait_ms == Some(0) {
        cx.broker().receive(req).await?
    } else {
        cx.state.overload.long_poll(&cx.client, cx.broker().receive(req)).await?
    };
    cx.state.traces.receive(&name_of(&deliveries), cx.trace.as_ref(), &deliveries);
    let mut system_names = input.attribute_names;
    system_names.extend(input.message_system_attribute_names);
    let messages = deliveries
        .into_iter()
        .map(|d| {
            let attributes = system_attributes(cx, &d, &system_names, fifo);
            let message_attributes =
                message::select(message::load(&d.attributes), &input.message_attribute_names);
            Message {
                message_id: d.id.to_string(),
                md5_body: message::md5_hex(d.body.as_bytes()),
                md5_attributes: message::md5_of_attributes(&message_attributes),
                receipt_handle: key.seal(&d.queue, &d.receipt),
                body: d.body,
                attributes,
                message_attributes,
            }
        })
        .collect::<Vec<_>>();
    if let Some(key) = attempt.filter(|_| !messages.is_empty()) {
        cx.state.receive_attempts.put(key, messages.clone());
    }
    Ok(Output { messages })
}

fn name_of(d: &[Delivery]) -> String {
    d.first().map(|d| d.queue.clone()).unwrap_or_default()
}

/// The system attributes `names` asks for (`All` for all that apply).
fn system_attributes<B: Broker>(
    cx: &Cx<'_, B>,
    d: &Delivery,
    names: &[String],
    fifo: bool,
) -> BTreeMap<String, String> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    let all = names.iter().any(|n| n == "All");
    let values: [(&str, Option<String>); 9] = [
        ("SenderId", Some(cx.settings().account_id.clone())),
        ("SentTimestamp", Some(d.enqueued_at.to_string())),
        ("ApproximateReceiveCount", Some(d.attempt.to_string())),
        ("ApproximateFirstReceiveTimestamp", Some(d.first_received_at.to_string())),
        ("MessageGroupId", d.group.clone()),
        ("MessageDeduplicationId", d.attributes.get(DEDUP_KEY).cloned()),
        ("SequenceNumber", fifo.then(|| d.id.0.to_string())),
        // As sent, else the creation context (a `traceparent`, or the `X-Amzn-Trace-Id` header
        // of the send) in X-Ray's form.
        (
            "AWSTraceHeader",
            d.attributes.get(TRACE_KEY).cloned().or_else(|| {
                let tp = d.traceparent.as_deref()?;
                crate::traces::parse_traceparent(tp).map(|c| crate::traces::aws_trace_header(&c))
            }),
        ),
        ("DeadLetterQueueSourceArn", d.dead.as_ref().map(|dead| cx.arn(&dead.source_queue))),
    ];
    values
        .into_iter()
        .filter(|(n, _)| all || names.iter().any(|x| x == n))
        .filter_map(|(n, v)| Some((n.to_owned(), v?)))
        .collect()
}
