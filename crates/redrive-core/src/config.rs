//! Queue configuration: the validated [`QueueConfig`] every store holds, and the partial
//! [`QueuePatch`] that create and update requests carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::limits;
use crate::model::valid_queue_name;

/// Exponential backoff with full jitter: the n-th retry waits a uniform random time in
/// `[0, min(max_ms, base_ms * 2^(n-1))]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// The upper bound of the wait before retry number `attempt` (1-based).
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(40);
        self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms)
    }
}

/// A queue's validated configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub visibility_timeout_ms: u64,
    pub delay_ms: u64,
    pub max_message_bytes: u32,
    pub retention_ms: u64,
    pub receive_wait_ms: u64,
    /// Failed attempts before the job dies; `None` = unlimited (SQS queues).
    pub max_attempts: Option<u32>,
    pub backoff: Backoff,
    /// Where dead jobs go; `None` = they stay in this queue as `dead`.
    pub dead_letter_queue: Option<String>,
    /// SQS `maxReceiveCount`: a job received this many times dies on its next receive.
    pub max_receive_count: Option<u32>,
    /// A job waiting this long is served as if one priority level higher; `None` = off.
    pub priority_aging_ms: Option<u64>,
    pub fifo: bool,
    pub content_based_dedup: bool,
    pub dedup_window_ms: u64,
    pub completed_retention_ms: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A paused queue takes jobs but hands none out (receives answer empty, long polls wait)
    /// until it is resumed.
    #[serde(default)]
    pub paused: bool,
    /// SQS attributes that are stored and echoed but not acted on (Policy, RedriveAllowPolicy,
    /// KMS and SSE settings, DeduplicationScope, FifoThroughputLimit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sqs_attributes: BTreeMap<String, String>,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            visibility_timeout_ms: limits::VISIBILITY_TIMEOUT_DEFAULT_MS,
            delay_ms: 0,
            max_message_bytes: limits::MESSAGE_SIZE_DEFAULT_BYTES,
            retention_ms: limits::RETENTION_DEFAULT_MS,
            receive_wait_ms: 0,
            max_attempts: Some(limits::ATTEMPTS_DEFAULT),
            backoff: Backoff {
                base_ms: limits::BACKOFF_BASE_DEFAULT_MS,
                max_ms: limits::BACKOFF_CAP_DEFAULT_MS,
            },
            dead_letter_queue: None,
            max_receive_count: None,
            priority_aging_ms: Some(limits::PRIORITY_AGING_DEFAULT_MS),
            fifo: false,
            content_based_dedup: false,
            dedup_window_ms: limits::DEDUP_WINDOW_DEFAULT_MS,
            completed_retention_ms: limits::COMPLETED_RETENTION_DEFAULT_MS,
            tags: BTreeMap::new(),
            paused: false,
            sqs_attributes: BTreeMap::new(),
        }
    }
}

/// A partial configuration: absent fields keep their current (or default) value. For the
/// nullable fields, an explicit `null` clears the value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_wait_ms: Option<u64>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<Option<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub max_receive_count: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub priority_aging_ms: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fifo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_based_dedup: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_retention_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqs_attributes: Option<BTreeMap<String, String>>,
}

/// `Some(None)` for an explicit `null`, `None` (via `default`) for an absent field.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl QueuePatch {
    /// Applies the patch over `base` and validates the result.
    pub fn apply(&self, base: &QueueConfig) -> Result<QueueConfig> {
        let mut c = base.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            visibility_timeout_ms,
            delay_ms,
            max_message_bytes,
            retention_ms,
            receive_wait_ms,
            max_attempts,
            backoff,
            dead_letter_queue,
            max_receive_count,
            priority_aging_ms,
            fifo,
            content_based_dedup,
            dedup_window_ms,
            completed_retention_ms,
            tags,
            paused,
            sqs_attributes
        );
        c.validate()?;
        Ok(c)
    }
}

impl QueuePatch {
    /// The configuration of a new queue named `name`: this patch over the defaults, FIFO when
    /// the name ends in `.fifo` unless the patch says otherwise, and FIFO names for FIFO queues
    /// only. A native queue that names no dead-letter queue (and is not one, by its `-dlq`
    /// suffix, nor FIFO) gets `<name>-dlq`: see [`QueuePatch::auto_dead_letter_queue`].
    pub fn new_queue_config(&self, name: &str) -> Result<QueueConfig> {
        let mut config = self.apply(&QueueConfig::default())?;
        if self.fifo.is_none() {
            config.fifo = name.ends_with(".fifo");
        }
        if config.fifo != name.ends_with(".fifo") {
            return Err(Error::invalid("fifo", "FIFO queues, and only they, are named *.fifo"));
        }
        Ok(config)
    }

    /// The dead-letter queue a new queue gets without asking, and the patch to create it with
    /// (no dead-letter queue of its own, the longest retention), or `None`.
    pub fn auto_dead_letter_queue(
        &self,
        name: &str,
        config: &QueueConfig,
    ) -> Option<(String, QueuePatch)> {
        let wanted = self.dead_letter_queue.is_none() && !name.ends_with("-dlq") && !config.fifo;
        let dlq = format!("{name}-dlq");
        (wanted && dlq.len() <= limits::QUEUE_NAME_LENGTH_MAX).then(|| {
            let patch = QueuePatch {
                dead_letter_queue: Some(None),
                retention_ms: Some(limits::RETENTION_MAX_MS),
                ..QueuePatch::default()
            };
            (dlq, patch)
        })
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Result<()> {
        fn range(field: &'static str, v: u64, lo: u64, hi: u64) -> Result<()> {
            if v < lo || v > hi {
                return Err(Error::invalid(field, format!("{v} is outside {lo}..={hi}")));
            }
            Ok(())
        }
        range(
            "visibility_timeout_ms",
            self.visibility_timeout_ms,
            0,
            limits::LEASE_DURATION_MAX_MS,
        )?;
        range("delay_ms", self.delay_ms, 0, limits::DELAY_MAX_MS)?;
        range(
            "max_message_bytes",
            self.max_message_bytes.into(),
            limits::MESSAGE_SIZE_MIN_BYTES.into(),
            limits::MESSAGE_SIZE_MAX_BYTES.into(),
        )?;
        range(
            "retention_ms",
            self.retention_ms,
            limits::RETENTION_MIN_MS,
            limits::RETENTION_MAX_MS,
        )?;
        range("receive_wait_ms", self.receive_wait_ms, 0, limits::RECEIVE_WAIT_MAX_MS)?;
        if let Some(n) = self.max_attempts {
            range("max_attempts", n.into(), 1, limits::ATTEMPTS_MAX.into())?;
        }
        range("backoff.base_ms", self.backoff.base_ms, 1, limits::DELAY_MAX_MS)?;
        range("backoff.max_ms", self.backoff.max_ms, self.backoff.base_ms, limits::DELAY_MAX_MS)?;
        if let Some(n) = self.max_receive_count {
            range("max_receive_count", n.into(), 1, limits::RECEIVE_COUNT_MAX.into())?;
        }
        if let Some(ms) = self.priority_aging_ms {
            range("priority_aging_ms", ms, 1, limits::RETENTION_MAX_MS)?;
        }
        range("dedup_window_ms", self.dedup_window_ms, 0, limits::DEDUP_WINDOW_MAX_MS)?;
        range("completed_retention_ms", self.completed_retention_ms, 0, limits::RETENTION_MAX_MS)?;
        if let Some(dlq) = &self.dead_letter_queue {
            if !valid_queue_name(dlq) {
                return Err(Error::InvalidQueueName(dlq.clone()));
            }
        }
        self.validate_tags()?;
        self.validate_sqs_attributes()
    }

    /// Tags as SQS bounds them, so that the whole config always fits one log record.
    fn validate_tags(&self) -> Result<()> {
        if self.tags.len() > limits::QUEUE_TAGS_COUNT_MAX {
            let max = limits::QUEUE_TAGS_COUNT_MAX;
            return Err(Error::invalid("tags", format!("at most {max} tags")));
        }
        for (k, v) in &self.tags {
            let key_len = k.chars().count();
            if key_len == 0 || key_len > limits::QUEUE_TAG_KEY_LENGTH_MAX {
                let max = limits::QUEUE_TAG_KEY_LENGTH_MAX;
                return Err(Error::invalid("tags", format!("a tag key has 1 to {max} characters")));
            }
            if v.chars().count() > limits::QUEUE_TAG_VALUE_LENGTH_MAX {
                let max = limits::QUEUE_TAG_VALUE_LENGTH_MAX;
                return Err(Error::invalid(
                    "tags",
                    format!("the value of tag {k:?} is longer than {max} characters"),
                ));
            }
        }
        Ok(())
    }

    fn validate_sqs_attributes(&self) -> Result<()> {
        if self.sqs_attributes.len() > limits::QUEUE_SQS_ATTRIBUTES_COUNT_MAX {
            let max = limits::QUEUE_SQS_ATTRIBUTES_COUNT_MAX;
            return Err(Error::invalid("sqs_attributes", format!("at most {max} attributes")));
        }
        for (k, v) in &self.sqs_attributes {
            if k.is_empty() || k.len() > limits::QUEUE_SQS_ATTRIBUTE_NAME_BYTES_MAX {
                let max = limits::QUEUE_SQS_ATTRIBUTE_NAME_BYTES_MAX;
                return Err(Error::invalid(
                    "sqs_attributes",
                    format!("an attribute name has 1 to {max} bytes"),
                ));
            }
            if v.len() > limits::QUEUE_SQS_ATTRIBUTE_VALUE_BYTES_MAX {
                let max = limits::QUEUE_SQS_ATTRIBUTE_VALUE_BYTES_MAX;
                return Err(Error::invalid(
                    "sqs_attributes",
                    format!("{k} is longer than {max} bytes"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_distinguishes_null_from_absent() {
        let p: QueuePatch = serde_json::from_str(r#"{"dead_letter_queue": null}"#).unwrap();
        assert_eq!(p.dead_letter_queue, Some(None));
        let p: QueuePatch = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(p.dead_letter_queue, None);
        let base = QueueConfig { dead_letter_queue: Some("x".into()), ..QueueConfig::default() };
        let p: QueuePatch = serde_json::from_str(r#"{"visibility_timeout_ms": 5}"#).unwrap();
        let c = p.apply(&base).unwrap();
        assert_eq!((c.visibility_timeout_ms, c.dead_letter_queue.as_deref()), (5, Some("x")));
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let p: QueuePatch = serde_json::from_str(r#"{"retention_ms": 1}"#).unwrap();
        let e = p.apply(&QueueConfig::default()).unwrap_err();
        assert!(e.to_string().contains("retention_ms"), "{e}");
        assert!(serde_json::from_str::<QueuePatch>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let b = Backoff { base_ms: 100, max_ms: 1000 };
        assert_eq!([1, 2, 3, 4, 5, 60].map(|n| b.ceiling_ms(n)), [100, 200, 400, 800, 1000, 1000]);
    }
}
