//! CreateQueue: creates the queue, or returns the URL of an existing one whose attributes match.

use redrive_core::Broker;
use std::collections::BTreeMap;

use redrive_core::{Error, QueuePatch};
use serde::{Deserialize, Serialize};

use crate::sqs::attributes::{check_dead_letter_target, same_for_sqs, to_patch};
use crate::sqs::error::{self, SqsResult};
use crate::sqs::wire::string_map;
use crate::sqs::Cx;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input {
    queue_name: String,
    #[serde(default, deserialize_with = "string_map")]
    attributes: BTreeMap<String, String>,
    #[serde(default, rename = "tags", alias = "Tags", deserialize_with = "string_map")]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    queue_url: String,
}

pub async fn run<B: Broker>(cx: &Cx<'_, B>, input: Input) -> SqsResult<Output> {
    if !crate::sqs::sqs_queue_name(&input.queue_name) {
        return Err(error::INVALID_QUEUE_NAME.err());
    }
    let fifo = input.attributes.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let name = cx.internal(&input.queue_name);
    if fifo != name.ends_with(".fifo") {
        return Err(error::FIFO_NAME.err());
    }
    let queue_url = cx.queue_url(&name);
    match cx.broker().get_queue(name.clone()).await {
        Ok(existing) => {
            let (home, current) = (&cx.settings().region, &existing.config);
            // The first attribute whose value differs is named, as SQS does.
            for (attr, v) in &input.attributes {
                let one = BTreeMap::from([(attr.clone(), v.clone())]);
                let wanted = to_patch(home, &one, &current.sqs_attributes, fifo, true)?;
                if !same_for_sqs(&wanted.apply(current)?, current) {
                    return Err(error::QUEUE_NAME_EXISTS.with(&[("attribute", attr)]));
                }
            }
            Ok(Output { queue_url })
        }
        Err(Error::QueueNotFound(_)) => {
            let home = &cx.settings().region;
            let mut patch: QueuePatch =
                to_patch(home, &input.attributes, &BTreeMap::new(), fifo, true)?;
            check_dead_letter_target(cx, &name, &patch, fifo, &input.attributes).await?;
            // SQS queues retry until the redrive policy (if any) says otherwise, get no
            // dead-letter queue of their own, and take messages up to 1 MiB by default.
            patch.max_attempts = Some(None);
            patch.dead_letter_queue.get_or_insert(None);
            patch.max_message_bytes.get_or_insert(redrive_core::limits::MESSAGE_SIZE_MAX_BYTES);
            if !input.tags.is_empty() {
                patch.tags = Some(input.tags);
            }
            cx.broker().put_queue(name, patch).await?;
            Ok(Output { queue_url })
        }
        Err(e) => Err(e.into()),
    }
}
