//! The SQS API through the official `aws-sdk-sqs` crate (endpoint override, dummy credentials)
//! against a real `redrive serve`, plus raw Query-protocol forms shaped like older SDKs send
//! them and malformed requests.

mod common;

use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use md5::{Digest, Md5};

struct Sqs {
    client: Client,
    server: common::Server,
    _dir: tempfile::TempDir,
}

impl Sqs {
    fn start() -> Sqs {
        Sqs::start_in(tempfile::tempdir().unwrap())
    }

    /// A server over `dir` (and its database, on PostgreSQL).
    fn start_in(dir: tempfile::TempDir) -> Sqs {
        let server = common::start(dir.path(), &[]);
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&server.url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Sqs { client: Client::from_conf(conf), server, _dir: dir }
    }

    /// Stops the server (`signal`: `TERM` to shut down, `KILL` to crash) and starts another
    /// over the same data.
    fn restart(self, signal: &str) -> Sqs {
        let Sqs { mut server, _dir: dir, .. } = self;
        let pid = server.child.id().to_string();
        let kill = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status();
        assert!(kill.unwrap().success());
        server.child.wait().unwrap();
        drop(server);
        Sqs::start_in(dir)
    }

    async fn queue(&self, name: &str, attrs: &[(QueueAttributeName, &str)]) -> String {
        let mut req = self.client.create_queue().queue_name(name);
        for (k, v) in attrs {
            req = req.attributes(k.clone(), *v);
        }
        req.send().await.unwrap().queue_url.unwrap()
    }

    async fn send(&self, url: &str, body: &str) -> String {
        let r = self.client.send_message().queue_url(url).message_body(body).send().await;
        r.unwrap().message_id.unwrap()
    }

    async fn receive(
        &self,
        url: &str,
        max: i32,
        visibility: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let r = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        r.unwrap().messages.unwrap_or_default()
    }

    async fn attribute(&self, url: &str, name: QueueAttributeName) -> String {
        let r = self.client.get_queue_attributes().queue_url(url).attribute_names(name.clone());
        r.send().await.unwrap().attributes.unwrap_or_default().remove(&name).unwrap_or_default()
    }

    fn arn(name: &str) -> String {
        format!("arn:aws:sqs:us-east-1:000000000000:{name}")
    }

    /// A raw POST, for protocol shapes and malformed input the SDK would never send.
    async fn raw(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let mut req = reqwest::Client::new().post(format!("{}{path}", self.server.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_owned()).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn json(&self, action: &str, body: &str) -> (u16, String) {
        let target = format!("AmazonSQS.{action}");
        let headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", &target)];
        self.raw("/", &headers, body).await
    }

    /// A Query-protocol form, with the signature header every SDK sends (a server without
    /// `--auth` does not verify it, but refuses unsigned forms that change queues).
    async fn form(&self, path: &str, body: &str) -> (u16, String) {
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20261206/us-east-1/sqs/aws4_request",
            ),
        ];
        self.raw(path, &headers, body).await
    }
}

/// The SQS error code of a failed call (SDKs read it from `x-amzn-query-error`).
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    r.expect_err("the call should fail").code().unwrap_or("<none>").to_owned()
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn queues_are_created_listed_paged_configured_and_deleted() {
    let s = Sqs::start();
    let url = s.queue("lc-a", &[(QueueAttributeName::VisibilityTimeout, "45")]).await;
    assert!(url.ends_with("/000000000000/lc-a"), "{url}");
    s.queue("lc-b", &[]).await;
    s.queue("lc-c", &[]).await;
    s.queue("other", &[]).await;

    let again = s.queue("lc-a", &[(QueueAttributeName::VisibilityTimeout, "45")]).await;
    assert_eq!(again, url, "same name and attributes: the existing queue");
    let clash = s
        .client
        .create_queue()
        .queue_name("lc-a")
        .attributes(QueueAttributeName::VisibilityTimeout, "46")
        .send()
        .await;
    assert_eq!(code(clash), "QueueAlreadyExists");

    let page = s.client.list_queues().queue_name_prefix("lc-").max_results(2).send().await.unwrap();
    assert_eq!(page.queue_urls().len(), 2);
    let token = page.next_token.expect("a second page");
    let rest = s.client.list_queues().queue_name_prefix("lc-").max_results(2).next_token(token);
    let rest = rest.send().await.unwrap();
    assert_eq!(rest.queue_urls().len(), 1);
    assert!(rest.queue_urls()[0].ends_with("lc-c") && rest.next_token.is_none());
    assert_eq!(s.client.list_queues().send().await.unwrap().queue_urls().len(), 4);

    let all =
        s.client.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All);
    let all = all.send().await.unwrap().attributes.unwrap();
    assert_eq!(all[&QueueAttributeName::VisibilityTimeout], "45");
    assert_eq!(all[&QueueAttributeName::QueueArn], Sqs::arn("lc-a"));
    assert_eq!(all[&QueueAttributeName::ApproximateNumberOfMessages], "0");
    assert!(all[&QueueAttributeName::CreatedTimestamp].parse::<u64>().unwrap() > 1_600_000_000);
    assert!(!all.contains_key(&QueueAttributeName::FifoQueue), "standard queues have no FifoQueue");

    s.client
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::DelaySeconds, "5")
        .attributes(QueueAttributeName::MaximumMessageSize, "2048")
        .attributes(QueueAttributeName::Policy, r#"{"Version":"2012-10-17"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(s.attribute(&url, QueueAttributeName::DelaySeconds).await, "5");
    assert_eq!(s.attribute(&url, QueueAttributeName::Policy).await, r#"{"Version":"2012-10-17"}"#);
    let bad = s.client.set_queue_attributes().queue_url(&url);
    let bad = bad.attributes(QueueAttributeName::VisibilityTimeout, "43201").send().await;
    assert_eq!(code(bad), "InvalidAttributeValue");
    let (status, body) = s
        .json(
            "SetQueueAttributes",
            &format!(r#"{{"QueueUrl":"{url}","Attributes":{{"Nope":"1"}}}}"#),
        )
        .await;
    assert!(status == 400 && body.contains("InvalidAttributeName"), "{body}");

    let got = s.client.get_queue_url().queue_name("lc-b").send().await.unwrap();
    assert!(got.queue_url.unwrap().ends_with("/lc-b"));
    s.client.delete_queue().queue_url(&url).send().await.unwrap();
    let gone = s.client.get_queue_url().queue_name("lc-a").send().await;
    let err = gone.expect_err("deleted");
    assert!(err.as_service_error().is_some_and(|e| e.is_queue_does_not_exist()), "{err:?}");
    assert_eq!(err.code(), Some("AWS.SimpleQueueService.NonExistentQueue"));
}

#[tokio::test]
async fn messages_round_trip_with_typed_attributes_and_sqs_digests() {
    let s = Sqs::start();
    let url = s.queue("m", &[]).await;
    let string = |v: &str| {
        MessageAttributeValue::builder().data_type("String").string_value(v).build().unwrap()
    };
    let sent = s
        .client
        .send_message()
        .queue_url(&url)
        .message_body("héllo <world> & co")
        .message_attributes("color", string("red"))
        .message_attributes(
            "count",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("42")
                .build()
                .unwrap(),
        )
        .message_attributes(
            "blob",
            MessageAttributeValue::builder()
                .data_type("Binary.gzip")
                .binary_value(Blob::new(vec![0u8, 1, 2, 255]))
                .build()
                .unwrap(),
        )
        .message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value("Root=1-5759e988-bd862e3fe1be46a994272793")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sent.md5_of_message_body(), Some(md5_hex("héllo <world> & co".as_bytes()).as_str()));
    assert!(
        sent.md5_of_message_attributes.is_some() && sent.md5_of_message_system_attributes.is_some()
    );

    let got = s.receive(&url, 10, 30).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id, sent.message_id);
    assert_eq!(m.body(), Some("héllo <world> & co"));
    assert_eq!(m.md5_of_body(), sent.md5_of_message_body());
    assert_eq!(
        m.md5_of_message_attributes, sent.md5_of_message_attributes,
        "same attributes, same digest"
    );
    let attrs = m.message_attributes.as_ref().unwrap();
    assert_eq!(attrs["count"].data_type(), "Number");
    assert_eq!(attrs["blob"].data_type(), "Binary.gzip");
    assert_eq!(attrs["blob"].binary_value.as_ref().unwrap().as_ref(), &[0u8, 1, 2, 255]);
    let system = m.attributes.as_ref().unwrap();
    assert_eq!(system[&MessageSystemAttributeName::ApproximateReceiveCount], "1");
    assert_eq!(system[&MessageSystemAttributeName::SenderId], "000000000000");
    assert_eq!(
        system[&MessageSystemAttributeName::AwsTraceHeader],
        "Root=1-5759e988-bd862e3fe1be46a994272793"
    );
    assert!(system[&MessageSystemAttributeName::SentTimestamp].parse::<u64>().is_ok());
    assert!(system.contains_key(&MessageSystemAttributeName::ApproximateFirstReceiveTimestamp));

    // Attribute selection by prefix; the digest covers what is returned.
    s.client
        .send_message()
        .queue_url(&url)
        .message_body("b")
        .message_attributes("app.a", string("1"))
        .message_attributes("app.b", string("2"))
        .message_attributes("other", string("3"))
        .send()
        .await
        .unwrap();
    let r = s
        .client
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("app.*")
        .send()
        .await
        .unwrap();
    let m = &r.messages()[0];
    let mut names: Vec<_> = m.message_attributes.as_ref().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["app.a", "app.b"]);

    s.client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(got[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    // Deleting again with the same (now stale) handle succeeds, as on SQS; garbage does not.
    s.client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(got[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let garbage = s.client.delete_message().queue_url(&url).receipt_handle("nope").send().await;
    assert_eq!(code(garbage), "ReceiptHandleIsInvalid");
}

#[tokio::test]
async fn batches_succeed_and_fail_entry_by_entry() {
    let s = Sqs::start();
    let url = s.queue("b", &[]).await;
    let entry = |id: &str, body: &str| {
        SendMessageBatchRequestEntry::builder().id(id).message_body(body).build().unwrap()
    };
    let bad_attr = SendMessageBatchRequestEntry::builder()
        .id("bad")
        .message_body("x")
        .message_attributes(
            "AWS.reserved",
            MessageAttributeValue::builder().data_type("String").string_value("v").build().unwrap(),
        )
        .build()
        .unwrap();
    let r = s
        .client
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("a", "one"))
        .entries(bad_attr)
        .entries(entry("c", "three"))
        .send()
        .await
        .unwrap();
    let ok: Vec<_> = r.successful().iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(ok, ["a", "c"]);
    assert_eq!(r.failed().len(), 1);
    assert_eq!(
        (r.failed()[0].id(), r.failed()[0].code(), r.failed()[0].sender_fault()),
        ("bad", "InvalidParameterValue", true)
    );
    assert_eq!(r.successful()[0].md5_of_message_body(), md5_hex(b"one"));

    let got = s.receive(&url, 10, 30).await;
    assert_eq!(got.len(), 2);
    let vis = s
        .client
        .change_message_visibility_batch()
        .queue_url(&url)
        .entries(
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id("v1")
                .receipt_handle(got[0].receipt_handle().unwrap())
                .visibility_timeout(60)
                .build()
                .unwrap(),
        )
        .entries(
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id("v2")
                .receipt_handle("0".repeat(40))
                .visibility_timeout(60)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(vis.successful().len(), 1);
    assert_eq!(vis.failed()[0].id(), "v2");
    let del = s
        .client
        .delete_message_batch()
        .queue_url(&url)
        .entries(
            DeleteMessageBatchRequestEntry::builder()
                .id("d1")
                .receipt_handle(got[0].receipt_handle().unwrap())
                .build()
                .unwrap(),
        )
        .entries(
            DeleteMessageBatchRequestEntry::builder()
                .id("d2")
                .receipt_handle(got[1].receipt_handle().unwrap())
                .build()
                .unwrap(),
        )
        .entries(
            DeleteMessageBatchRequestEntry::builder()
                .id("d3")
                .receipt_handle("garbage")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(del.successful().len(), 2);
    assert_eq!((del.failed()[0].id(), del.failed()[0].code()), ("d3", "ReceiptHandleIsInvalid"));
    assert_eq!(
        s.attribute(&url, QueueAttributeName::ApproximateNumberOfMessagesNotVisible).await,
        "0"
    );

    let batch = |entries: Vec<SendMessageBatchRequestEntry>| {
        s.client.send_message_batch().queue_url(&url).set_entries(Some(entries)).send()
    };
    let eleven = (0..11).map(|i| entry(&format!("e{i}"), "x")).collect();
    assert_eq!(code(batch(eleven).await), "AWS.SimpleQueueService.TooManyEntriesInBatchRequest");
    assert_eq!(code(batch(vec![]).await), "AWS.SimpleQueueService.EmptyBatchRequest");
    assert_eq!(
        code(batch(vec![entry("x", "1"), entry("x", "2")]).await),
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    );
    assert_eq!(
        code(batch(vec![entry("no spaces", "1")]).await),
        "AWS.SimpleQueueService.InvalidBatchEntryId"
    );
    let big = "x".repeat(200_000);
    let too_long = (0..6).map(|i| entry(&format!("e{i}"), &big)).collect();
    assert_eq!(code(batch(too_long).await), "AWS.SimpleQueueService.BatchRequestTooLong");
    assert_eq!(
        s.attribute(&url, QueueAttributeName::ApproximateNumberOfMessages).await,
        "0",
        "refused batches wrote nothing"
    );
}

#[tokio::test]
async fn long_polls_wait_and_visibility_changes_redeliver() {
    let s = Sqs::start();
    let url = s.queue("lp", &[]).await;
    let empty =
        s.client.receive_message().queue_url(&url).wait_time_seconds(1).send().await.unwrap();
    assert!(empty.messages.is_none());

    let waiting = {
        let client = s.client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            client.receive_message().queue_url(url).wait_time_seconds(20).send().await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = s.send(&url, "wake up").await;
    let woke = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the long poll returns early");
    let woke = woke.unwrap().unwrap();
    assert_eq!(woke.messages()[0].message_id(), Some(id.as_str()));

    assert!(s.receive(&url, 1, 30).await.is_empty(), "invisible while leased");
    let receipt = woke.messages()[0].receipt_handle().unwrap();
    s.client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(receipt)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let again = s.receive(&url, 1, 30).await;
    assert_eq!(
        again[0].attributes.as_ref().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount],
        "2"
    );
    let stale = s
        .client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(receipt)
        .visibility_timeout(5)
        .send()
        .await;
    assert_eq!(code(stale), "InvalidParameterValue", "the message was received again");
    let range = s
        .client
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(again[0].receipt_handle().unwrap())
        .visibility_timeout(43_201)
        .send()
        .await;
    assert_eq!(code(range), "InvalidParameterValue");

    let delayed = s
        .client
        .send_message()
        .queue_url(&url)
        .message_body("later")
        .delay_seconds(900)
        .send()
        .await
        .unwrap();
    assert!(delayed.message_id.is_some());
    assert_eq!(
        s.attribute(&url, QueueAttributeName::ApproximateNumberOfMessagesDelayed).await,
        "1"
    );
    let too_late =
        s.client.send_message().queue_url(&url).message_body("x").delay_seconds(901).send().await;
    assert_eq!(code(too_late), "InvalidParameterValue");
}

/// What SQS answers for a handle whose receive is over: a timeout that ran out with nobody
/// receiving the message since changes nothing and is no error (but on a FIFO queue); a message
/// received again or deleted "does not exist or is not available", as a single change and as a
/// batch entry.
#[tokio::test]
async fn visibility_changes_through_stale_handles_answer_as_sqs_does() {
    let s = Sqs::start();
    let url = s.queue("stale", &[]).await;
    s.send(&url, "m").await;
    let change = |queue: &str, handle: &str, seconds: i32| {
        let r = s.client.change_message_visibility().queue_url(queue).receipt_handle(handle);
        r.visibility_timeout(seconds).send()
    };
    let first = s.receive(&url, 1, 1).await.remove(0).receipt_handle.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    change(&url, &first, 60).await.expect("a timeout that ran out: no error");
    let again = s.receive(&url, 1, 30).await;
    assert_eq!(again.len(), 1, "and the change hid nothing");
    let second = again[0].receipt_handle.clone().unwrap();

    let not_available = |r: Result<_, aws_sdk_sqs::error::SdkError<_, _>>, handle: &str| {
        let e = r.expect_err("refused");
        let e = e.meta().clone();
        assert_eq!(e.code(), Some("InvalidParameterValue"));
        assert_eq!(
            e.message().unwrap(),
            format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not \
                 exist or is not available for visibility timeout change."
            )
        );
    };
    not_available(change(&url, &first, 60).await, &first);
    s.client.delete_message().queue_url(&url).receipt_handle(&second).send().await.unwrap();
    not_available(change(&url, &second, 60).await, &second);

    let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
        .id("gone")
        .receipt_handle(&second)
        .visibility_timeout(60)
        .build()
        .unwrap();
    let batch = s.client.change_message_visibility_batch().queue_url(&url).entries(entry);
    let batch = batch.send().await.unwrap();
    let failed = &batch.failed()[0];
    assert_eq!(
        (failed.id(), failed.code(), failed.sender_fault()),
        ("gone", "ReceiptHandleIsInvalid", true)
    );
    assert_eq!(
        failed.message(),
        Some("Message does not exist or is not available for visibility timeout change")
    );

    // On a FIFO queue the message's group moves on once the timeout ran out.
    let fifo = s.queue("stale.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let send = s.client.send_message().queue_url(&fifo).message_body("f").message_group_id("g");
    send.message_deduplication_id("f").send().await.unwrap();
    let handle = s.receive(&fifo, 1, 1).await.remove(0).receipt_handle.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = change(&fifo, &handle, 60).await.expect_err("expired");
    let e = e.meta().clone();
    assert_eq!(e.code(), Some("InvalidParameterValue"));
    assert!(e.message().unwrap().ends_with("Reason: The receipt handle has expired."), "{e:?}");
}

#[tokio::test]
async fn dead_letters_after_max_receives_and_move_back_with_a_task() {
    let s = Sqs::start();
    let dlq = s.queue("orders-dlq", &[]).await;
    let policy =
        format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"2"}}"#, Sqs::arn("orders-dlq"));
    let url = s.queue("orders", &[(QueueAttributeName::RedrivePolicy, &policy)]).await;
    let rp = s.attribute(&url, QueueAttributeName::RedrivePolicy).await;
    assert!(rp.contains("orders-dlq") && rp.contains("\"maxReceiveCount\":2"), "{rp}");
    let id = s.send(&url, "poison").await;
    for n in 1..=2 {
        let got = s.receive(&url, 1, 0).await;
        assert_eq!(got.len(), 1, "receive {n}");
    }
    assert!(s.receive(&url, 1, 0).await.is_empty(), "the third receive moves it to the DLQ");
    let dead = s.receive(&dlq, 1, 0).await;
    assert_eq!(dead[0].message_id(), Some(id.as_str()));
    assert_eq!(
        dead[0].attributes.as_ref().unwrap()[&MessageSystemAttributeName::DeadLetterQueueSourceArn],
        Sqs::arn("orders")
    );

    let sources = s.client.list_dead_letter_source_queues().queue_url(&dlq).send().await.unwrap();
    assert_eq!(sources.queue_urls(), std::slice::from_ref(&url));
    let not_dlq = s.client.start_message_move_task().source_arn(Sqs::arn("orders")).send().await;
    assert_eq!(code(not_dlq), "InvalidParameterValue");

    let task =
        s.client.start_message_move_task().source_arn(Sqs::arn("orders-dlq")).send().await.unwrap();
    assert!(task.task_handle.is_some());
    let mut status = String::new();
    for _ in 0..200 {
        let list = s
            .client
            .list_message_move_tasks()
            .source_arn(Sqs::arn("orders-dlq"))
            .send()
            .await
            .unwrap();
        let t = &list.results()[0];
        status = t.status().unwrap_or_default().to_owned();
        if status == "COMPLETED" {
            assert_eq!(t.approximate_number_of_messages_moved, 1);
            assert_eq!(t.approximate_number_of_messages_to_move, Some(1));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "COMPLETED");
    let back = s.receive(&url, 1, 30).await;
    assert_eq!(back[0].message_id(), Some(id.as_str()), "moved back to its source queue");
    let cancel =
        s.client.cancel_message_move_task().task_handle(task.task_handle.unwrap()).send().await;
    assert_eq!(code(cancel), "ResourceNotFoundException", "a finished task cannot be cancelled");
}

/// A move task still running when its server stops is resumed by the server started next over
/// the same store and completes there: released at once after a shutdown, and after a crash
/// once the dead server's claim on it runs out (`MOVE_TASK_LEASE_MS`).
async fn a_running_move_task_survives(signal: &str) {
    let s = Sqs::start();
    let dlq = s.queue("moves-dlq", &[]).await;
    let policy =
        format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"1"}}"#, Sqs::arn("moves-dlq"));
    let url = s.queue("moves", &[(QueueAttributeName::RedrivePolicy, &policy)]).await;
    for i in 0..4 {
        s.send(&url, &format!("m{i}")).await;
    }
    assert_eq!(s.receive(&url, 10, 0).await.len(), 4);
    assert!(s.receive(&url, 10, 0).await.is_empty(), "the second receive dead-letters them");
    let dead = s.attribute(&dlq, QueueAttributeName::ApproximateNumberOfMessages).await;
    assert_eq!(dead, "4");

    let source = Sqs::arn("moves-dlq");
    let start = s.client.start_message_move_task().source_arn(&source);
    let handle = start.max_number_of_messages_per_second(1).send().await.unwrap().task_handle;
    let list = |s: &Sqs| {
        let req = s.client.list_message_move_tasks().source_arn(&source).max_results(10);
        async move { req.send().await.unwrap().results.unwrap_or_default() }
    };
    let mut moved_before = 0;
    for _ in 0..100 {
        moved_before = list(&s).await[0].approximate_number_of_messages_moved;
        if moved_before > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved_before > 0, "the task made progress before the restart");

    let s = s.restart(signal);
    let tasks = list(&s).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].status(), Some("RUNNING"), "{tasks:?}");
    assert_eq!(tasks[0].task_handle, handle, "the same task, still running");
    let mut task = tasks[0].clone();
    for _ in 0..600 {
        task = list(&s).await[0].clone();
        if task.status() != Some("RUNNING") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(task.status(), Some("COMPLETED"), "{task:?}");
    let moved = task.approximate_number_of_messages_moved;
    // A crash loses the count (never the moves) of the steps after the last progress written.
    let counted = if signal == "TERM" { moved == 4 } else { (moved_before..=4).contains(&moved) };
    assert!(counted, "{moved} moved, {moved_before} before the restart: {task:?}");
    assert_eq!(task.approximate_number_of_messages_to_move, Some(4));
    assert_eq!(s.attribute(&dlq, QueueAttributeName::ApproximateNumberOfMessages).await, "0");
    let back = s.receive(&url, 10, 30).await;
    assert_eq!(back.len(), 4, "every message moved back to its source queue, once");
}

#[tokio::test]
async fn a_running_move_task_survives_a_restart() {
    a_running_move_task_survives("TERM").await;
}

#[tokio::test]
async fn a_running_move_task_survives_a_crash() {
    a_running_move_task_survives("KILL").await;
}

#[tokio::test]
async fn fifo_queues_keep_group_order_and_deduplicate() {
    let s = Sqs::start();
    let url = s.queue("jobs.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let send = |group: &str, body: &str, dedup: &str| {
        s.client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
    };
    let first = send("g1", "g1-1", "d1").await.unwrap();
    send("g2", "g2-1", "d2").await.unwrap();
    send("g1", "g1-2", "d3").await.unwrap();
    let third = send("g1", "g1-3", "d4").await.unwrap();
    let dup = send("g1", "g1-1 again", "d1").await.unwrap();
    assert_eq!(
        dup.message_id, first.message_id,
        "a duplicate within 5 minutes returns the first id"
    );
    let seq = |r: &aws_sdk_sqs::operation::send_message::SendMessageOutput| {
        r.sequence_number().unwrap().parse::<u128>().unwrap()
    };
    assert!(seq(&third) > seq(&first));

    let bodies = |ms: &[aws_sdk_sqs::types::Message]| {
        ms.iter().map(|m| m.body().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let a = s.receive(&url, 1, 30).await;
    assert_eq!(bodies(&a), ["g1-1"]);
    assert_eq!(
        a[0].attributes.as_ref().unwrap()[&MessageSystemAttributeName::MessageGroupId],
        "g1"
    );
    let b = s.receive(&url, 10, 30).await;
    assert_eq!(bodies(&b), ["g2-1"], "g1 is held back while g1-1 is in flight");
    s.client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(a[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bodies(&s.receive(&url, 10, 30).await), ["g1-2", "g1-3"]);

    let no_group = s
        .client
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_deduplication_id("d9")
        .send()
        .await;
    assert_eq!(code(no_group), "MissingParameter");
    let no_dedup = s
        .client
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_group_id("g")
        .send()
        .await;
    assert_eq!(code(no_dedup), "InvalidParameterValue");

    let cbd = s
        .queue(
            "cbd.fifo",
            &[
                (QueueAttributeName::FifoQueue, "true"),
                (QueueAttributeName::ContentBasedDeduplication, "true"),
            ],
        )
        .await;
    let one = s
        .client
        .send_message()
        .queue_url(&cbd)
        .message_body("same")
        .message_group_id("g")
        .send()
        .await
        .unwrap();
    let two = s
        .client
        .send_message()
        .queue_url(&cbd)
        .message_body("same")
        .message_group_id("g")
        .send()
        .await
        .unwrap();
    assert_eq!(one.message_id, two.message_id);
    assert_eq!(s.attribute(&cbd, QueueAttributeName::ApproximateNumberOfMessages).await, "1");
    let plain_dlq = s.queue("plain-dlq", &[]).await;
    let policy =
        format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":3}}"#, Sqs::arn("plain-dlq"));
    let mixed = s
        .client
        .create_queue()
        .queue_name("x.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .send()
        .await;
    assert_eq!(
        code(mixed),
        "InvalidParameterValue",
        "a FIFO queue's DLQ must be FIFO ({plain_dlq})"
    );
    let bad_name = s
        .client
        .create_queue()
        .queue_name("nofifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await;
    assert_eq!(code(bad_name), "InvalidParameterValue");
}

#[tokio::test]
async fn tags_and_permissions_are_kept() {
    let s = Sqs::start();
    let url = s.queue("t", &[]).await;
    s.client
        .tag_queue()
        .queue_url(&url)
        .tags("team", "payments")
        .tags("env", "prod")
        .send()
        .await
        .unwrap();
    s.client.untag_queue().queue_url(&url).tag_keys("env").send().await.unwrap();
    let tags = s.client.list_queue_tags().queue_url(&url).send().await.unwrap().tags.unwrap();
    assert_eq!(tags.into_iter().collect::<Vec<_>>(), [("team".to_owned(), "payments".to_owned())]);

    s.client
        .add_permission()
        .queue_url(&url)
        .label("senders")
        .aws_account_ids("111122223333")
        .actions("SendMessage")
        .send()
        .await
        .unwrap();
    let policy = s.attribute(&url, QueueAttributeName::Policy).await;
    assert!(
        policy.contains("\"Sid\":\"senders\"") && policy.contains("SQS:SendMessage"),
        "{policy}"
    );
    let twice = s
        .client
        .add_permission()
        .queue_url(&url)
        .label("senders")
        .aws_account_ids("1")
        .actions("*")
        .send()
        .await;
    assert_eq!(code(twice), "InvalidParameterValue");
    s.client.remove_permission().queue_url(&url).label("senders").send().await.unwrap();
    assert_eq!(s.attribute(&url, QueueAttributeName::Policy).await, "");
    let unknown = s.client.remove_permission().queue_url(&url).label("senders").send().await;
    assert_eq!(code(unknown), "InvalidParameterValue");
}

#[tokio::test]
async fn sqs_and_native_api_are_two_doors_to_the_same_queues() {
    let s = Sqs::start();
    let url = s.queue("shared", &[]).await;
    let id = s.send(&url, "from sqs").await;
    let job: serde_json::Value =
        reqwest::get(format!("{}/v1/jobs/{id}", s.server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(job["body"], "from sqs");
    assert_eq!(job["queue"], "shared");
    let got = s.receive(&url, 1, 30).await;
    s.client
        .delete_message()
        .queue_url(&url)
        .receipt_handle(got[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let native = serde_json::json!({"jobs": [{"body": "from native", "attributes": {"k": "v"}}]});
    let r = http
        .post(format!("{}/v1/queues/shared/jobs", s.server.url))
        .json(&native)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let got = s.receive(&url, 1, 30).await;
    assert_eq!(got[0].body(), Some("from native"));
    assert_eq!(got[0].message_attributes.as_ref().unwrap()["k"].string_value(), Some("v"));

    // redrive.priority: a later high-priority message overtakes an earlier low one.
    let prio = |p: &str| {
        MessageAttributeValue::builder().data_type("String").string_value(p).build().unwrap()
    };
    s.client
        .send_message()
        .queue_url(&url)
        .message_body("low")
        .message_attributes("redrive.priority", prio("low"))
        .send()
        .await
        .unwrap();
    s.client
        .send_message()
        .queue_url(&url)
        .message_body("high")
        .message_attributes("redrive.priority", prio("high"))
        .send()
        .await
        .unwrap();
    assert_eq!(s.receive(&url, 1, 30).await[0].body(), Some("high"));
    let wrong = s
        .client
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_attributes("redrive.priority", prio("urgent"))
        .send()
        .await;
    assert_eq!(code(wrong), "InvalidParameterValue");
}

#[tokio::test]
async fn query_protocol_forms_get_xml_answers() {
    let s = Sqs::start();
    let (status, xml) = s.form("/", "Action=CreateQueue&QueueName=qp&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=40&Version=2012-11-05").await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<CreateQueueResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><CreateQueueResult><QueueUrl>"), "{xml}");
    assert!(xml.contains("<ResponseMetadata><RequestId>"), "{xml}");

    let send = "Action=SendMessage&MessageBody=a%26b&MessageAttribute.1.Name=color&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=red";
    let (status, xml) = s.form("/000000000000/qp", send).await;
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(&format!("<MD5OfMessageBody>{}</MD5OfMessageBody>", md5_hex(b"a&b"))),
        "{xml}"
    );
    assert!(xml.contains("<MD5OfMessageAttributes>"), "{xml}");

    let (_, xml) = s.form("/000000000000/qp", "Action=ReceiveMessage&AttributeName.1=All&MessageAttributeName.1=All&MaxNumberOfMessages=5").await;
    assert!(xml.contains("<Message><MessageId>") && xml.contains("<Body>a&amp;b</Body>"), "{xml}");
    assert!(
        xml.contains("<Attribute><Name>ApproximateReceiveCount</Name><Value>1</Value></Attribute>"),
        "{xml}"
    );
    assert!(xml.contains("<MessageAttribute><Name>color</Name><Value><DataType>String</DataType><StringValue>red</StringValue></Value></MessageAttribute>"), "{xml}");
    let receipt =
        xml.split("<ReceiptHandle>").nth(1).unwrap().split('<').next().unwrap().to_owned();

    let del = format!("Action=DeleteMessageBatch&QueueUrl=http%3A%2F%2Fanyhost%2F000000000000%2Fqp&DeleteMessageBatchRequestEntry.1.Id=ok&DeleteMessageBatchRequestEntry.1.ReceiptHandle={receipt}&DeleteMessageBatchRequestEntry.2.Id=bad&DeleteMessageBatchRequestEntry.2.ReceiptHandle=zz");
    let (_, xml) = s.form("/", &del).await;
    assert!(
        xml.contains("<DeleteMessageBatchResultEntry><Id>ok</Id></DeleteMessageBatchResultEntry>"),
        "{xml}"
    );
    assert!(xml.contains("<BatchResultErrorEntry><Id>bad</Id><SenderFault>true</SenderFault><Code>ReceiptHandleIsInvalid</Code>"), "{xml}");

    let (_, xml) = s.form("/000000000000/qp", "Action=ReceiveMessage").await;
    assert!(
        xml.contains("<ReceiveMessageResult></ReceiveMessageResult>"),
        "an empty result keeps its element: {xml}"
    );
    let (_, xml) = s.form("/000000000000/qp", "Action=PurgeQueue").await;
    assert!(xml.contains("<PurgeQueueResponse") && !xml.contains("PurgeQueueResult"), "{xml}");

    let (_, xml) = s.form("/", "Action=GetQueueAttributes&QueueUrl=http://h/000000000000/qp&AttributeName.1=VisibilityTimeout").await;
    assert!(
        xml.contains("<Attribute><Name>VisibilityTimeout</Name><Value>40</Value></Attribute>"),
        "{xml}"
    );

    let (status, xml) = s.form("/", "Action=GetQueueUrl&QueueName=missing").await;
    assert_eq!(status, 400);
    assert!(
        xml.contains("<ErrorResponse")
            && xml.contains(
                "<Type>Sender</Type><Code>AWS.SimpleQueueService.NonExistentQueue</Code>"
            ),
        "{xml}"
    );
    let (status, xml) = s.form("/", "Action=ListQueues&MaxResults=many").await;
    assert_eq!(status, 400);
    assert!(xml.contains("<Code>InvalidParameterValue</Code>"), "{xml}");
    let (_, xml) = s.form("/", "QueueName=x").await;
    assert!(xml.contains("<Code>MissingParameter</Code>"), "{xml}");
}

#[tokio::test]
async fn bad_requests_get_sqs_errors_and_change_nothing() {
    let s = Sqs::start();
    let url = s.queue("safe", &[(QueueAttributeName::MaximumMessageSize, "1024")]).await;
    let q = format!(r#""QueueUrl":"{url}""#);
    let cases: [(&str, String, &str); 7] = [
        ("Frobnicate", "{}".into(), "InvalidAction"),
        ("SendMessage", "{not json".into(), "SerializationException"),
        // Errors outside SQS's model carry AWS's common JSON shape names.
        ("SendMessage", format!("{{{q}}}"), "MissingRequiredParameterException"),
        ("CreateQueue", "{}".into(), "MissingRequiredParameterException"),
        // The JSON protocol takes integers only as JSON numbers, as AWS's JSON front end does.
        (
            "ReceiveMessage",
            format!(r#"{{{q},"MaxNumberOfMessages":"abc"}}"#),
            "SerializationException",
        ),
        (
            "ReceiveMessage",
            format!(r#"{{{q},"MaxNumberOfMessages":11}}"#),
            "InvalidParameterValueException",
        ),
        ("SendMessage", format!(r#"{{{q},"MessageBody":"a\u0001b"}}"#), "InvalidMessageContents"),
    ];
    for (action, body, expect) in cases {
        let (status, answer) = s.json(action, &body).await;
        assert_eq!(status, 400, "{action} {body}: {answer}");
        assert!(answer.contains(&format!("#{expect}\"")), "{action} {body}: {answer}");
    }
    let too_big =
        s.client.send_message().queue_url(&url).message_body("x".repeat(2000)).send().await;
    assert_eq!(code(too_big), "InvalidParameterValue");
    let unknown = s
        .client
        .send_message()
        .queue_url("http://elsewhere/000000000000/nope")
        .message_body("x")
        .send()
        .await;
    assert_eq!(code(unknown), "AWS.SimpleQueueService.NonExistentQueue");
    assert_eq!(
        s.attribute(&url, QueueAttributeName::ApproximateNumberOfMessages).await,
        "0",
        "nothing was written"
    );
}

#[tokio::test]
async fn in_flight_messages_are_capped_like_sqs() {
    let s = Sqs::start();
    let url = s.queue("busy", &[]).await;
    let http = reqwest::Client::new();
    let jobs: Vec<_> = (0..1000).map(|i| serde_json::json!({"body": i.to_string()})).collect();
    let batch = serde_json::json!({ "jobs": jobs });
    for _ in 0..121 {
        let r = http
            .post(format!("{}/v1/queues/busy/jobs", s.server.url))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let receive = serde_json::json!({"max": 1000, "lease_ms": 600000});
    for _ in 0..120 {
        let r = http
            .post(format!("{}/v1/queues/busy/receive", s.server.url))
            .json(&receive)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let over = s.client.receive_message().queue_url(&url).send().await;
    assert_eq!(code(over), "OverLimit");
}

/// Each region is its own namespace of queues, as on AWS: the same name in two regions is two
/// queues, with ARNs of their regions, and a region's listing shows only its queues. The
/// region is the one the SDK signs for; the native API sees the other region's queue as
/// `<region>:<name>`.
#[tokio::test]
async fn each_region_is_its_own_namespace_of_queues() {
    let s = Sqs::start();
    let conf = s.client.config().to_builder().region(Region::new("eu-west-1")).build();
    let eu = Client::from_conf(conf);
    let us_url = s.queue("orders", &[]).await;
    let eu_url = eu.create_queue().queue_name("orders").send().await.unwrap().queue_url.unwrap();
    s.send(&us_url, "from us").await;
    eu.send_message().queue_url(&eu_url).message_body("from eu").send().await.unwrap();

    let got = s.receive(&us_url, 10, 30).await;
    assert_eq!(got.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), ["from us"]);
    let got = eu.receive_message().queue_url(&eu_url).max_number_of_messages(10).send().await;
    let got = got.unwrap().messages.unwrap_or_default();
    assert_eq!(got.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), ["from eu"]);

    let arn = |c: &Client, url: &str| {
        let r =
            c.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::QueueArn);
        async move { r.send().await.unwrap().attributes.unwrap()[&QueueAttributeName::QueueArn].clone() }
    };
    assert_eq!(arn(&s.client, &us_url).await, "arn:aws:sqs:us-east-1:000000000000:orders");
    assert_eq!(arn(&eu, &eu_url).await, "arn:aws:sqs:eu-west-1:000000000000:orders");

    // A redrive policy names its dead-letter queue by ARN, region included.
    eu.create_queue().queue_name("orders-dlq").send().await.unwrap();
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:orders-dlq","maxReceiveCount":3}"#;
    eu.set_queue_attributes()
        .queue_url(&eu_url)
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .send()
        .await
        .unwrap();
    let across = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:orders","maxReceiveCount":3}"#;
    let refused = eu
        .set_queue_attributes()
        .queue_url(&eu_url)
        .attributes(QueueAttributeName::RedrivePolicy, across)
        .send()
        .await;
    assert_eq!(code(refused), "InvalidParameterValue", "a dead-letter queue of another region");
    let listed = eu.list_queues().send().await.unwrap().queue_urls.unwrap_or_default();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let us_listed = s.client.list_queues().send().await.unwrap().queue_urls.unwrap_or_default();
    assert!(!us_listed.iter().any(|u| u.ends_with("orders-dlq")), "{us_listed:?}");
    let native =
        reqwest::get(format!("{}/v1/queues/eu-west-1:orders", s.server.url)).await.unwrap();
    assert_eq!(native.status(), 200);
}
