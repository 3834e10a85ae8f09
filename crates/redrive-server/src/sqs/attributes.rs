//! Queue attributes as SQS names them, to and from redrive's queue configuration.

use std::collections::BTreeMap;

use redrive_core::broker::QueueInfo;
use redrive_core::limits;
use redrive_core::{Broker, QueueConfig, QueuePatch};
use serde_json::Value;

use super::error::{self, SqsError, SqsResult};
use super::wire::parse_integer;
use super::Cx;

/// Attributes stored and echoed but not acted on.
const STORED: [&str; 7] = [
    "Policy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

const READ_ONLY: [&str; 6] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

const SETTABLE: [&str; 8] = [
    "VisibilityTimeout",
    "DelaySeconds",
    "MessageRetentionPeriod",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
];

fn bad_value(name: &str, why: &str) -> SqsError {
    error::ATTRIBUTE_VALUE.with(&[("attribute", &name), ("reason", &why)])
}

/// An integer attribute: plain decimal digits (no sign `+`, no spaces), from `lo` to `hi`.
fn seconds(name: &str, v: &str, lo: u64, hi: u64) -> SqsResult<u64> {
    match parse_integer(v).and_then(|n| u64::try_from(n).ok()) {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(bad_value(name, &format!("It must be an integer from {lo} to {hi}."))),
    }
}

fn boolean(name: &str, v: &str) -> SqsResult<bool> {
    match v {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(bad_value(name, "It must be true or false.")),
    }
}

/// Attributes only a FIFO queue has: on a standard queue, even `FifoQueue=false`, the first two
/// are unknown names and the high-throughput ones are named as FIFO-only, as SQS answers.
const FIFO_ONLY: [&str; 2] = ["FifoQueue", "ContentBasedDeduplication"];
const FIFO_THROUGHPUT: [&str; 2] = ["DeduplicationScope", "FifoThroughputLimit"];

/// The patch that sets `attrs` on a queue that is (or is being created as) FIFO or not;
/// `stored_base` holds the stored-only attributes to merge into. `creating` allows
/// `FifoQueue`; later it may only repeat what the queue is.
/// `home` is the configured region (a `RedrivePolicy` ARN names a queue in its region).
pub fn to_patch(
    home: &str,
    attrs: &BTreeMap<String, String>,
    stored_base: &BTreeMap<String, String>,
    fifo: bool,
    creating: bool,
) -> SqsResult<QueuePatch> {
    let mut p = QueuePatch::default();
    let mut stored = stored_base.clone();
    for (name, v) in attrs {
        if !fifo && FIFO_ONLY.contains(&name.as_str()) {
            return Err(unknown(name));
        }
        if !fifo && FIFO_THROUGHPUT.contains(&name.as_str()) {
            return Err(error::FIFO_ONLY_ATTRIBUTE.with(&[("attribute", name)]));
        }
        match name.as_str() {
            "VisibilityTimeout" => {
                p.visibility_timeout_ms =
                    Some(seconds(name, v, 0, limits::SQS_VISIBILITY_TIMEOUT_MAX_S as u64)? * 1000)
            }
            "DelaySeconds" => {
                p.delay_ms = Some(seconds(name, v, 0, limits::SQS_DELAY_MAX_S as u64)? * 1000)
            }
            "MessageRetentionPeriod" => {
                p.retention_ms = Some(
                    seconds(
                        name,
                        v,
                        limits::SQS_RETENTION_MIN_S as u64,
                        limits::SQS_RETENTION_MAX_S as u64,
                    )? * 1000,
                )
            }
            "MaximumMessageSize" => {
                p.max_message_bytes = Some(seconds(name, v, 1024, 1_048_576)? as u32)
            }
            "ReceiveMessageWaitTimeSeconds" => {
                p.receive_wait_ms =
                    Some(seconds(name, v, 0, limits::SQS_WAIT_TIME_MAX_S as u64)? * 1000)
            }
            "RedrivePolicy" => {
                let (dlq, max) = redrive_policy(home, v)?;
                p.dead_letter_queue = Some(dlq);
                p.max_receive_count = Some(max);
            }
            "FifoQueue" if creating => p.fifo = Some(boolean(name, v)?),
            "FifoQueue" => {
                if !boolean(name, v)? {
                    return Err(bad_value(name, "Reason: Modifying queue type is not supported."));
                }
            }
            "ContentBasedDeduplication" => p.content_based_dedup = Some(boolean(name, v)?),
            "DeduplicationScope" if !matches!(v.as_str(), "messageGroup" | "queue") => {
                return Err(bad_value(name, "It must be messageGroup or queue."))
            }
            "FifoThroughputLimit" if !matches!(v.as_str(), "perQueue" | "perMessageGroupId") => {
                return Err(bad_value(name, "It must be perQueue or perMessageGroupId."))
            }
            "SqsManagedSseEnabled" => {
                stored.insert(name.clone(), boolean(name, v)?.to_string());
            }
            "KmsDataKeyReusePeriodSeconds" => {
                stored.insert(name.clone(), seconds(name, v, 60, 86_400)?.to_string());
            }
            // An empty key switches SSE-KMS off: both KMS attributes go.
            "KmsMasterKeyId" if v.is_empty() => {
                stored.remove(name);
                stored.remove("KmsDataKeyReusePeriodSeconds");
            }
            // An empty policy removes the policy.
            "Policy" | "RedriveAllowPolicy" if v.is_empty() => {
                stored.remove(name);
            }
            n if STORED.contains(&n) => {
                stored.insert(name.clone(), v.clone());
            }
            _ => return Err(unknown(name)),
        }
    }
    // High throughput deduplicates per group: a per-group limit with a queue-wide scope is
    // refused (the scope is `queue` unless set).
    let per_group_limit =
        stored.get("FifoThroughputLimit").is_some_and(|v| v == "perMessageGroupId");
    if per_group_limit && stored.get("DeduplicationScope").is_none_or(|v| v != "messageGroup") {
        return Err(bad_value(
            "FifoThroughputLimit",
            "Reason: The perMessageGroupId value is allowed only when the value for DeduplicationScope is messageGroup.",
        ));
    }
    if stored != *stored_base {
        p.sqs_attributes = Some(stored);
    }
    Ok(p)
}

fn unknown(name: &str) -> SqsError {
    error::UNKNOWN_ATTRIBUTE.with(&[("attribute", &name)])
}

/// Whether two configurations look the same through SQS: stored-only attributes compare as
/// reported (an attribute set to its default value is the same as one never set).
pub fn same_for_sqs(a: &QueueConfig, b: &QueueConfig) -> bool {
    let bare = |c: &QueueConfig| QueueConfig { sqs_attributes: BTreeMap::new(), ..c.clone() };
    stored_view(a) == stored_view(b) && bare(a) == bare(b)
}

/// The stored-only attributes as SQS reports them, defaults filled in: encryption at rest by
/// SQS-managed keys unless a KMS key is set (then the key's reuse period, 300 s by default),
/// and for a FIFO queue deduplication and throughput per queue.
fn stored_view(c: &QueueConfig) -> BTreeMap<String, String> {
    let mut out = c.sqs_attributes.clone();
    let default = |out: &mut BTreeMap<String, String>, k: &str, v: &str| {
        out.entry(k.to_owned()).or_insert_with(|| v.to_owned());
    };
    if out.contains_key("KmsMasterKeyId") {
        default(&mut out, "KmsDataKeyReusePeriodSeconds", "300");
        out.insert("SqsManagedSseEnabled".into(), "false".into());
    } else {
        out.remove("KmsDataKeyReusePeriodSeconds");
        default(&mut out, "SqsManagedSseEnabled", "true");
    }
    if c.fifo {
        default(&mut out, "DeduplicationScope", "queue");
        default(&mut out, "FifoThroughputLimit", "perQueue");
    }
    out
}

/// Refuses a patch of queue `name` (FIFO or not: `fifo`) whose redrive policy names a queue
/// that does not exist, is in another region or is of the other kind, in SQS's words; `attrs`
/// are the attributes the patch came from. A queue may name itself.
pub async fn check_dead_letter_target<B: Broker>(
    cx: &Cx<'_, B>,
    name: &str,
    p: &QueuePatch,
    fifo: bool,
    attrs: &BTreeMap<String, String>,
) -> SqsResult<()> {
    let policy = attrs.get("RedrivePolicy").map_or("", String::as_str);
    if let Some(Some(dlq)) = p.dead_letter_queue.as_ref().filter(|d| d.as_deref() != Some(name)) {
        if cx.region_of_queue(dlq) != cx.region_of_queue(name) {
            return Err(error::DEAD_LETTER_REGION.with(&[("arn", &cx.arn(dlq))]));
        }
        match cx.broker().get_queue(dlq.clone()).await {
            Err(redrive_core::Error::QueueNotFound(_)) => {
                return Err(error::DEAD_LETTER_MISSING.with(&[("policy", &policy)]))
            }
            Err(e) => return Err(e.into()),
            Ok(target) if target.config.fifo != fifo => {
                return Err(error::DEAD_LETTER_KIND.with(&[("policy", &policy)]));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// `{"deadLetterTargetArn": …, "maxReceiveCount": …}`, or empty to remove the policy.
fn redrive_policy(home: &str, v: &str) -> SqsResult<(Option<String>, Option<u32>)> {
    if v.trim().is_empty() {
        return Ok((None, None));
    }
    let bad = |why: &str| error::REDRIVE_POLICY_INVALID.with(&[("policy", &v), ("reason", &why)]);
    let missing =
        |what: &str| bad(&format!("Redrive policy does not contain mandatory attribute: {what}."));
    let policy: Value =
        serde_json::from_str(v).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let policy =
        policy.as_object().ok_or_else(|| bad("Redrive policy is not a valid JSON map."))?;
    let arn = policy.get("deadLetterTargetArn").ok_or_else(|| missing("deadLetterTargetArn"))?;
    let count = policy.get("maxReceiveCount").ok_or_else(|| missing("maxReceiveCount"))?;
    let max = match count {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_integer(s).and_then(|n| u64::try_from(n).ok()),
        _ => None,
    }
    .filter(|n| (1..=u64::from(limits::RECEIVE_COUNT_MAX)).contains(n))
    .ok_or_else(|| {
        let shown = match count {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        bad(&format!(
            "Invalid value for maxReceiveCount: {shown}, valid values are from 1 to {} both inclusive.",
            limits::RECEIVE_COUNT_MAX
        ))
    })?;
    let dlq = arn
        .as_str()
        .and_then(|arn| super::queue_of_arn(home, arn))
        .ok_or_else(|| bad("Invalid value for deadLetterTargetArn."))?;
    Ok((Some(dlq), Some(max as u32)))
}

/// The attributes `names` asks for (`All` for every one), as GetQueueAttributes answers.
pub fn render<B: Broker>(
    cx: &Cx<'_, B>,
    q: &QueueInfo,
    names: &[String],
) -> SqsResult<BTreeMap<String, String>> {
    let c: &QueueConfig = &q.config;
    let all = names.iter().any(|n| n == "All");
    let mut out = BTreeMap::new();
    let want = |n: &str| all || names.iter().any(|x| x == n);
    for n in names {
        let known = n == "All"
            || SETTABLE.contains(&n.as_str())
            || READ_ONLY.contains(&n.as_str())
            || STORED.contains(&n.as_str());
        if !known {
            return Err(unknown(n));
        }
    }
    let counts = &q.stats.counts;
    let values: [(&str, Option<String>); 14] = [
        ("ApproximateNumberOfMessages", Some(counts.ready.to_string())),
        ("ApproximateNumberOfMessagesNotVisible", Some(counts.leased.to_string())),
        ("ApproximateNumberOfMessagesDelayed", Some(counts.delayed.to_string())),
        ("CreatedTimestamp", Some((q.created_at / 1000).to_string())),
        ("LastModifiedTimestamp", Some((q.updated_at / 1000).to_string())),
        ("QueueArn", Some(cx.arn(&q.name))),
        ("VisibilityTimeout", Some((c.visibility_timeout_ms / 1000).to_string())),
        ("DelaySeconds", Some((c.delay_ms / 1000).to_string())),
        ("MessageRetentionPeriod", Some((c.retention_ms / 1000).to_string())),
        ("MaximumMessageSize", Some(c.max_message_bytes.to_string())),
        ("ReceiveMessageWaitTimeSeconds", Some((c.receive_wait_ms / 1000).to_string())),
        (
            "RedrivePolicy",
            c.dead_letter_queue.as_ref().zip(c.max_receive_count).map(|(dlq, max)| {
                serde_json::json!({"deadLetterTargetArn": cx.arn(dlq), "maxReceiveCount": max})
                    .to_string()
            }),
        ),
        ("FifoQueue", c.fifo.then(|| "true".to_owned())),
        ("ContentBasedDeduplication", c.fifo.then(|| c.content_based_dedup.to_string())),
    ];
    for (name, v) in values {
        if let (true, Some(v)) = (want(name), v) {
            out.insert(name.to_owned(), v);
        }
    }
    for (name, v) in stored_view(c) {
        if want(&name) {
            out.insert(name, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn attributes_map_to_a_patch_with_sqs_ranges() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#;
        let p = to_patch(
            "us-east-1",
            &attrs(&[("VisibilityTimeout", "45"), ("RedrivePolicy", policy), ("Policy", "{}")]),
            &BTreeMap::new(),
            false,
            true,
        )
        .unwrap();
        assert_eq!(p.visibility_timeout_ms, Some(45_000));
        assert_eq!(p.dead_letter_queue, Some(Some("dlq".into())));
        assert_eq!(p.max_receive_count, Some(Some(3)));
        assert_eq!(p.sqs_attributes.unwrap()["Policy"], "{}");
        let code = |a: &[(&str, &str)], fifo: bool| {
            to_patch("us-east-1", &attrs(a), &BTreeMap::new(), fifo, false).unwrap_err().code()
        };
        use crate::sqs::error::Code;
        assert_eq!(code(&[("VisibilityTimeout", "43201")], false), Code::InvalidAttributeValue);
        assert_eq!(code(&[("DelaySeconds", "x")], false), Code::InvalidAttributeValue);
        assert_eq!(code(&[("Nope", "1")], false), Code::InvalidAttributeName);
        for fifo_only in ["FifoQueue", "ContentBasedDeduplication"] {
            assert_eq!(code(&[(fifo_only, "false")], false), Code::InvalidAttributeName);
        }
        assert_eq!(code(&[("FifoQueue", "false")], true), Code::InvalidAttributeValue);
        to_patch("us-east-1", &attrs(&[("FifoQueue", "true")]), &BTreeMap::new(), true, false)
            .expect("a FIFO queue may repeat that it is one");
    }

    #[test]
    fn empty_kms_key_and_policy_remove_them() {
        let base = attrs(&[
            ("KmsMasterKeyId", "alias/aws/sqs"),
            ("KmsDataKeyReusePeriodSeconds", "600"),
            ("Policy", "{}"),
        ]);
        let p = to_patch(
            "us-east-1",
            &attrs(&[("KmsMasterKeyId", ""), ("Policy", "")]),
            &base,
            false,
            false,
        )
        .unwrap();
        assert_eq!(p.sqs_attributes, Some(BTreeMap::new()));
        let view = stored_view(&QueueConfig::default());
        assert_eq!(view.get("SqsManagedSseEnabled").map(String::as_str), Some("true"));
        let kms = QueueConfig { sqs_attributes: base, ..QueueConfig::default() };
        let view = stored_view(&kms);
        assert_eq!(view["SqsManagedSseEnabled"], "false");
        assert_eq!(view["KmsDataKeyReusePeriodSeconds"], "600");
        let sse = attrs(&[("SqsManagedSseEnabled", "true")]);
        let explicit = QueueConfig { sqs_attributes: sse, ..QueueConfig::default() };
        assert!(same_for_sqs(&explicit, &QueueConfig::default()), "a default is the same as unset");
        assert!(!same_for_sqs(&kms, &QueueConfig::default()));
        let fifo = stored_view(&QueueConfig { fifo: true, ..QueueConfig::default() });
        assert_eq!(
            (fifo["DeduplicationScope"].as_str(), fifo["FifoThroughputLimit"].as_str()),
            ("queue", "perQueue")
        );
    }
}
