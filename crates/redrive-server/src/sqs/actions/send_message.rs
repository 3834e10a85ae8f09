//! SendMessage, and the per-message rules SendMessageBatch shares: body and attribute checks,
//! size, FIFO group and deduplication, priority, digests.

use redrive_core::broker::{Enqueued, NewJob, QueueInfo};
use redrive_core::Broker;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sqs::actions::int_in;
use crate::sqs::error::{self, SqsError, SqsResult};
use crate::sqs::message::{self, Attributes, DEDUP_KEY, TRACE_KEY};
use crate::sqs::wire::opt_int;
use crate::sqs::Cx;
use redrive_core::limits;

/// One message as SendMessage and each SendMessageBatch entry carry it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    message_body: String,
    #[serde(default, deserialize_with = "opt_int")]
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: Attributes,
    #[serde(default)]
    message_system_attributes: Attributes,
    #[serde(default)]
    message_deduplication_id: Option<String>,
    #[serde(default)]
    message_group_id: Option<String>,
}

impl Message {
    /// The bytes SQS counts against the size limits: body, attribute names, types and values.
    pub fn size(&self) -> usize {
        self.message_body.len() + message::attributes_size(&self.message_attributes)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    #[serde(default)]
    queue_url: Option<String>,
    #[serde(flatten)]
    message: Message,
}

/// What SendMessage answers (and, with an `Id`, each successful batch entry).
#[derive(Debug, Serialize)]
pub struct Sent {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "MD5OfMessageBody")]
    md5_body: String,
    #[serde(rename = "MD5OfMessageAttributes", skip_serializing_if = "Option::is_none")]
    md5_attributes: Option<String>,
    #[serde(rename = "MD5OfMessageSystemAttributes", skip_serializing_if = "Option::is_none")]
    md5_system: Option<String>,
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
}

/// A message checked and turned into a job, with the digests of what the sender sent.
pub struct Prepared {
    pub job: NewJob,
    md5_body: String,
    md5_attributes: Option<String>,
    md5_system: Option<String>,
    fifo: bool,
}

impl Prepared {
    pub fn sent(&self, e: &Enqueued) -> Sent {
        Sent {
            message_id: e.id.to_string(),
            md5_body: self.md5_body.clone(),
            md5_attributes: self.md5_attributes.clone(),
            md5_system: self.md5_system.clone(),
            sequence_number: self.fifo.then(|| e.id.0.to_string()),
        }
    }
}

/// `MessageGroupId` and `MessageDeduplicationId`: 1 to 128 printable ASCII characters.
fn check_token(name: &str, v: &str) -> SqsResult<()> {
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(error::FIFO_ID_INVALID.with(&[("value", &v), ("parameter", &name)]));
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    redrive_core::model::hex(&Sha256::digest(bytes))
}

/// A message to a FIFO queue names its group, and its deduplication id unless the queue
/// deduplicates by content. In a batch, one entry without them fails the whole request.
pub fn fifo_ids(q: &QueueInfo, m: &Message) -> SqsResult<()> {
    if !q.config.fifo {
        return Ok(());
    }
    if m.message_group_id.is_none() {
        return Err(SqsError::missing("MessageGroupId"));
    }
    if m.message_deduplication_id.is_none() && !q.config.content_based_dedup {
        return Err(error::MISSING_DEDUPLICATION_ID.err());
    }
    Ok(())
}

/// Checks one message against SQS's rules and the queue's settings.
pub fn prepare(q: &QueueInfo, m: Message) -> SqsResult<Prepared> {
    let c = &q.config;
    message::check_body(&m.message_body)?;
    message::check_attributes(&m.message_attributes)?;
    message::check_attributes(&m.message_system_attributes)?;
    if let Some(name) = m.message_system_attributes.keys().find(|k| *k != "AWSTraceHeader") {
        return Err(error::SYSTEM_ATTRIBUTE_NAME.with(&[("name", name)]));
    }
    if let Some(trace) = m.message_system_attributes.get("AWSTraceHeader") {
        if trace.data_type != "String" {
            return Err(error::SYSTEM_ATTRIBUTE_TYPE.err());
        }
    }
    let size = m.size();
    if size > c.max_message_bytes as usize {
        return Err(error::MESSAGE_TOO_LONG.with(&[("max", &c.max_message_bytes)]));
    }
    let delay = int_in("DelaySeconds", m.delay_seconds, 0, limits::SQS_DELAY_MAX_S)?;
    let mut job = NewJob {
        priority: message::priority(&m.message_attributes)?,
        delay_ms: delay.map(|s| s as u64 * 1000),
        ..NewJob::default()
    };
    if let Some(g) = &m.message_group_id {
        check_token("MessageGroupId", g)?;
    }
    if c.fifo {
        // Zero is the same as no delay (the queue's applies); anything else is per-message.
        if let Some(d) = delay.filter(|d| *d != 0) {
            return Err(error::FIFO_DELAY.with(&[("value", &d)]));
        }
        job.delay_ms = None;
        fifo_ids(q, &m)?;
        let group = m.message_group_id.as_deref().unwrap_or_default();
        let dedup = match &m.message_deduplication_id {
            Some(d) => {
                check_token("MessageDeduplicationId", d)?;
                d.clone()
            }
            None => sha256_hex(m.message_body.as_bytes()),
        };
        let per_group =
            c.sqs_attributes.get("DeduplicationScope").is_some_and(|s| s == "messageGroup");
        job.idempotency_key = Some(if per_group {
            sha256_hex(format!("{group}\0{dedup}").as_bytes())
        } else {
            dedup.clone()
        });
        job.attributes.insert(DEDUP_KEY.to_owned(), dedup);
    } else if m.message_deduplication_id.is_some() {
        return Err(error::DEDUPLICATION_ON_STANDARD.err());
    }
    job.group = m.message_group_id;
    message::store(&m.message_attributes, &mut job.attributes);
    if let Some(trace) = m.message_system_attributes.get("AWSTraceHeader") {
        let header = trace.string_value.clone().unwrap_or_default();
        // The message's own trace is its creation context.
        job.traceparent = crate::traces::parse_aws_trace_header(&header)
            .map(|c| crate::traces::traceparent(&c));
        job.attributes.insert(TRACE_KEY.to_owned(), header);
    }
    Ok(Prepared {
        md5_body: message::md5_hex(m.message_body.as_bytes()),
        md5_attributes: message::md5_of_attributes(&m.message_attributes),
        md5_system: message::md5_of_attributes(&m.message_system_attributes),
        fifo: c.fifo,
        job: NewJob { body: m.message_body, ..job },
    })
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Sent> {
    let name = cx.queue_name(input.queue_url.as_deref())?;
    let q = cx.broker().get_queue(name.clone()).await?;
    let mut p = prepare(&q, input.message)?;
    let span = cx.state.traces.creation(&name, cx.trace.as_ref(), std::slice::from_mut(&mut p.job));
    let enqueued = cx.broker().enqueue(name, vec![p.job.clone()]).await;
    crate::traces::Traces::sent(span, &enqueued);
    Ok(p.sent(&enqueued?[0]))
}
