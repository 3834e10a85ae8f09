//! `redrive bench --sqs`: the same run through the official `aws-sdk-sqs` crate against the SQS
//! API, as an existing SQS application would drive redrive: SendMessageBatch (SendMessage for a
//! batch of 1), long-polling ReceiveMessage, DeleteMessageBatch (DeleteMessage). The SDK signs
//! every request (SigV4) with dummy credentials, so its CPU cost is in the figures.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};
use hdrhistogram::Histogram;

use crate::bench::{now_us, BenchArgs, Run, LATENCY_MAX_US, LEASE_MS};

/// SQS's most messages per batch call.
pub(crate) const SQS_BATCH_MAX: u32 = 10;

pub(crate) fn client(url: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "static"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// Runs the jobs through the SQS API; returns (enqueued, when enqueueing ended, latencies).
pub(crate) async fn run(
    run: Arc<Run>,
    args: &BenchArgs,
    url: &str,
) -> anyhow::Result<(u64, Duration, Histogram<u64>)> {
    let sqs = client(url);
    let queue_url = sqs
        .create_queue()
        .queue_name(&run.queue)
        .send()
        .await
        .context("creating the bench queue over SQS")?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let consumers: Vec<_> = (0..args.consumers)
        .map(|_| tokio::spawn(consume(run.clone(), sqs.clone(), queue_url.clone(), args.batch)))
        .collect();
    let producers: Vec<_> = (0..args.producers)
        .map(|i| {
            tokio::spawn(produce(run.clone(), sqs.clone(), queue_url.clone(), i, args.clone()))
        })
        .collect();
    let mut enqueued = 0;
    for p in producers {
        enqueued += p.await.context("a producer panicked")??;
    }
    let enqueue_end = run.start.elapsed();
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    for c in consumers {
        latency.add(c.await.context("a consumer panicked")??)?;
    }
    Ok((enqueued, enqueue_end, latency))
}

fn stamp() -> MessageAttributeValue {
    let t = now_us().to_string();
    MessageAttributeValue::builder().data_type("Number").string_value(t).build().expect("complete")
}

async fn produce(
    run: Arc<Run>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    index: u32,
    args: BenchArgs,
) -> anyhow::Result<u64> {
    let producers = u64::from(args.producers);
    let share = run.jobs / producers + u64::from(u64::from(index) < run.jobs % producers);
    let body = "x".repeat(args.body_bytes as usize);
    let mut sent = 0;
    while sent < share && !run.over() {
        let n = (share - sent).min(u64::from(args.batch));
        if n == 1 {
            sqs.send_message()
                .queue_url(&queue_url)
                .message_body(&body)
                .message_attributes("t", stamp())
                .send()
                .await
                .context("SendMessage")?;
        } else {
            let entries = (0..n)
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&body)
                        .message_attributes("t", stamp())
                        .build()
                        .expect("complete")
                })
                .collect();
            let r = sqs
                .send_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("SendMessageBatch")?;
            anyhow::ensure!(
                r.failed().is_empty(),
                "SendMessageBatch entries failed: {:?}",
                r.failed()
            );
        }
        sent += n;
    }
    Ok(sent)
}

async fn consume(
    run: Arc<Run>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    batch: u32,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)?;
    while !run.over() {
        let receive = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(batch as i32)
            .wait_time_seconds(1)
            .visibility_timeout((LEASE_MS / 1000) as i32)
            .message_attribute_names("t")
            .send();
        let got = tokio::select! {
            r = receive => r.context("ReceiveMessage")?,
            () = run.ended.notified() => break,
        };
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let now = now_us();
        for m in &messages {
            let t = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("t"))
                .and_then(|v| v.string_value());
            if let Some(t) = t.and_then(|t| t.parse::<u64>().ok()) {
                latency.saturating_record(now.saturating_sub(t).clamp(1, LATENCY_MAX_US));
            }
        }
        let handles = messages.iter().filter_map(|m| m.receipt_handle.clone());
        let deleted = if messages.len() == 1 {
            let handle = messages[0].receipt_handle().context("no receipt handle")?;
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .context("DeleteMessage")?;
            1
        } else {
            let entries = handles
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .expect("complete")
                })
                .collect();
            let r = sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("DeleteMessageBatch")?;
            r.successful().len() as u64
        };
        let acked = run.acked.fetch_add(deleted, Ordering::Relaxed) + deleted;
        if acked >= run.jobs && run.done_at.set(run.start.elapsed()).is_ok() {
            run.ended.notify_waiters();
        }
    }
    Ok(latency)
}
