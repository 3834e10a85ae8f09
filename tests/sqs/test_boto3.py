"""redrive's SQS API driven by boto3, the way applications use SQS.

Tests taking `sqs_any` run twice, over JSON 1.0 and over the Query protocol. boto3 does not
verify the MD5 digests SQS returns (other SDKs do), so the helpers in sqs_helpers check every
MD5OfMessageBody / MD5OfBody / MD5OfMessageAttributes the server sends.
"""

import json
import threading
import time

import pytest

from sqs_helpers import (
    assert_empty,
    assert_sent_checksums,
    bodies,
    md5_of_attributes,
    message_counts,
    native_api,
    now_ms,
    queue_attributes,
    receive,
    receive_one,
    receive_until,
    send,
    sqs_error,
    wait_until,
)

NON_EXISTENT_QUEUE = "AWS.SimpleQueueService.NonExistentQueue"


def redrive_policy(dead_letter_queue, max_receive_count):
    return json.dumps(
        {"deadLetterTargetArn": dead_letter_queue.arn, "maxReceiveCount": max_receive_count}
    )


def send_and_receive(sqs, url, count, **receive_kwargs):
    """Sends `count` messages and receives them all; returns the received messages."""
    for i in range(count):
        send(sqs, url, f"message {i}")
    messages = receive_until(sqs, url, count, **receive_kwargs)
    assert sorted(bodies(messages)) == [f"message {i}" for i in range(count)]
    return messages


def assert_one_failure(response, entry_id, code):
    [failure] = response["Failed"]
    assert failure["Id"] == entry_id
    assert failure["SenderFault"] is True
    assert failure["Code"] == code


# Queues


def test_create_get_url_and_delete_queue(sqs_any, queue_name):
    name = queue_name()
    url = sqs_any.create_queue(QueueName=name)["QueueUrl"]
    assert url.endswith("/" + name)
    assert sqs_any.get_queue_url(QueueName=name)["QueueUrl"] == url
    # Creating an existing queue with the same attributes returns it.
    assert sqs_any.create_queue(QueueName=name)["QueueUrl"] == url

    sqs_any.delete_queue(QueueUrl=url)
    with sqs_error(NON_EXISTENT_QUEUE, sqs_any.exceptions.QueueDoesNotExist):
        sqs_any.get_queue_url(QueueName=name)


def test_list_queues_by_name_prefix(sqs_any, queue, queue_name):
    prefix = queue_name()
    mine = [queue(name=f"{prefix}-{i}").url for i in range(3)]
    queue()  # same test, other prefix

    assert sorted(sqs_any.list_queues(QueueNamePrefix=prefix)["QueueUrls"]) == sorted(mine)
    assert sqs_any.list_queues(QueueNamePrefix=prefix + "-none").get("QueueUrls", []) == []


def test_list_queues_pages_with_max_results_and_next_token(sqs_any, queue, queue_name):
    prefix = queue_name()
    mine = [queue(name=f"{prefix}-{i}").url for i in range(5)]

    first = sqs_any.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert len(first["QueueUrls"]) == 2 and first["NextToken"]
    pages = sqs_any.get_paginator("list_queues").paginate(
        QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2}
    )
    listed = [url for page in pages for url in page.get("QueueUrls", [])]
    assert sorted(listed) == sorted(mine)


def test_create_existing_queue_with_other_attributes_is_refused(sqs_any, queue):
    existing = queue(attributes={"VisibilityTimeout": "30"}, client=sqs_any)
    with sqs_error("QueueAlreadyExists", sqs_any.exceptions.QueueNameExists):
        sqs_any.create_queue(QueueName=existing.name, Attributes={"VisibilityTimeout": "60"})


UNKNOWN_QUEUE_CALLS = {
    "GetQueueUrl": lambda sqs, gone: sqs.get_queue_url(QueueName=gone.name),
    "SendMessage": lambda sqs, gone: sqs.send_message(QueueUrl=gone.url, MessageBody="x"),
    "ReceiveMessage": lambda sqs, gone: sqs.receive_message(QueueUrl=gone.url),
    "GetQueueAttributes": lambda sqs, gone: sqs.get_queue_attributes(QueueUrl=gone.url),
    "PurgeQueue": lambda sqs, gone: sqs.purge_queue(QueueUrl=gone.url),
    "DeleteQueue": lambda sqs, gone: sqs.delete_queue(QueueUrl=gone.url),
}


@pytest.mark.parametrize("operation", UNKNOWN_QUEUE_CALLS)
def test_unknown_queue_is_reported_as_non_existent(sqs_any, queue, operation):
    gone = queue()
    sqs_any.delete_queue(QueueUrl=gone.url)
    with sqs_error(NON_EXISTENT_QUEUE, sqs_any.exceptions.QueueDoesNotExist):
        UNKNOWN_QUEUE_CALLS[operation](sqs_any, gone)


# Queue attributes

DEFAULT_ATTRIBUTES = {
    "VisibilityTimeout": "30",
    "DelaySeconds": "0",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "ApproximateNumberOfMessages": "0",
    "ApproximateNumberOfMessagesNotVisible": "0",
    "ApproximateNumberOfMessagesDelayed": "0",
}


def test_new_queue_has_the_sqs_default_attributes(sqs_any, queue):
    created = queue()
    attributes = queue_attributes(sqs_any, created.url)
    assert attributes.items() >= DEFAULT_ATTRIBUTES.items()
    assert attributes["QueueArn"] == created.arn
    # The API reference says 1 MiB since August 2025, 256 KiB before.
    assert attributes["MaximumMessageSize"] in ("262144", "1048576")
    created_at = int(attributes["CreatedTimestamp"])  # seconds since the epoch
    assert abs(created_at - time.time()) < 600
    assert int(attributes["LastModifiedTimestamp"]) >= created_at
    assert "RedrivePolicy" not in attributes
    assert "FifoQueue" not in attributes


def test_set_and_get_attributes_one_by_one_and_all(sqs_any, queue):
    changed = queue()
    changes = {
        "VisibilityTimeout": "45",
        "DelaySeconds": "3",
        "MessageRetentionPeriod": "3600",
        "MaximumMessageSize": "2048",
        "ReceiveMessageWaitTimeSeconds": "5",
    }
    sqs_any.set_queue_attributes(QueueUrl=changed.url, Attributes=changes)

    assert queue_attributes(sqs_any, changed.url, *changes) == changes
    for name, value in changes.items():
        assert queue_attributes(sqs_any, changed.url, name) == {name: value}
    assert queue_attributes(sqs_any, changed.url).items() >= changes.items()


def test_create_queue_with_attributes(sqs, queue):
    attributes = {"VisibilityTimeout": "5", "DelaySeconds": "1", "MaximumMessageSize": "1024"}
    created = queue(attributes=attributes)
    assert queue_attributes(sqs, created.url, *attributes) == attributes


def test_redrive_policy_is_returned_as_json_and_can_be_removed(sqs, queue):
    dead_letters = queue()
    source = queue(attributes={"RedrivePolicy": redrive_policy(dead_letters, 2)})

    policy = json.loads(queue_attributes(sqs, source.url, "RedrivePolicy")["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == dead_letters.arn
    assert int(policy["maxReceiveCount"]) == 2

    sqs.set_queue_attributes(QueueUrl=source.url, Attributes={"RedrivePolicy": ""})
    assert "RedrivePolicy" not in queue_attributes(sqs, source.url)


def test_approximate_message_counts(sqs, queue):
    counted = queue()
    send(sqs, counted.url, "visible")
    send(sqs, counted.url, "received")
    send(sqs, counted.url, "delayed", DelaySeconds=600)
    receive_one(sqs, counted.url, VisibilityTimeout=600)
    assert message_counts(sqs, counted.url) == (1, 1, 1)


@pytest.mark.parametrize(
    "name, value",
    [
        ("VisibilityTimeout", "43201"),
        ("VisibilityTimeout", "soon"),
        ("DelaySeconds", "901"),
        ("MessageRetentionPeriod", "59"),
        ("MaximumMessageSize", "1023"),
        ("ReceiveMessageWaitTimeSeconds", "21"),
        ("SqsManagedSseEnabled", "yes"),
        ("KmsDataKeyReusePeriodSeconds", "59"),
        ("KmsDataKeyReusePeriodSeconds", "86401"),
        ("KmsDataKeyReusePeriodSeconds", "five"),
    ],
)
def test_invalid_attribute_value_is_refused(sqs_any, queue, queue_name, name, value):
    existing = queue()
    with sqs_error("InvalidAttributeValue"):
        sqs_any.set_queue_attributes(QueueUrl=existing.url, Attributes={name: value})
    with sqs_error("InvalidAttributeValue"):
        sqs_any.create_queue(QueueName=queue_name(), Attributes={name: value})


def test_unknown_attribute_name_is_refused(sqs, queue, queue_name):
    existing = queue()
    with sqs_error("InvalidAttributeName"):
        sqs.set_queue_attributes(QueueUrl=existing.url, Attributes={"Colour": "blue"})
    with sqs_error("InvalidAttributeName"):
        sqs.get_queue_attributes(QueueUrl=existing.url, AttributeNames=["Colour"])
    with sqs_error("InvalidAttributeName"):
        sqs.create_queue(QueueName=queue_name(), Attributes={"Colour": "blue"})


# Messages


def test_send_receive_delete(sqs_any, queue):
    work = queue()
    body = 'héllo wörld ✓ <xml> & "json"'
    sent = send(sqs_any, work.url, body)

    message = receive_one(sqs_any, work.url)
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == body
    assert message_counts(sqs_any, work.url) == (0, 1, 0)

    sqs_any.delete_message(QueueUrl=work.url, ReceiptHandle=message["ReceiptHandle"])
    assert message_counts(sqs_any, work.url) == (0, 0, 0)


MESSAGE_ATTRIBUTES = {
    "text": {"DataType": "String", "StringValue": "héllo ✓"},
    "count": {"DataType": "Number", "StringValue": "-12.5"},
    "blob": {"DataType": "Binary", "BinaryValue": bytes(range(256))},
    "colour": {"DataType": "String.custom", "StringValue": "blue"},
    "ratio": {"DataType": "Number.float", "StringValue": "0.25"},
    "thumbnail": {"DataType": "Binary.png", "BinaryValue": b"\x89PNG\r\n\x1a\n"},
}


def test_message_attributes_round_trip_with_their_md5(sqs_any, queue):
    work = queue()
    sent = send(sqs_any, work.url, "with attributes", MessageAttributes=MESSAGE_ATTRIBUTES)

    message = receive_one(sqs_any, work.url, MessageAttributeNames=["All"])
    assert message["MessageAttributes"] == MESSAGE_ATTRIBUTES
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]


def test_message_attribute_names_select_what_is_returned(sqs, queue):
    work = queue()
    names = ("app.user", "app.tenant", "trace")
    send(
        sqs,
        work.url,
        "filtered",
        MessageAttributes={name: {"DataType": "String", "StringValue": name} for name in names},
    )

    def returned(*requested):
        kwargs = {"MessageAttributeNames": list(requested)} if requested else {}
        message = receive_one(sqs, work.url, VisibilityTimeout=0, **kwargs)
        return set(message.get("MessageAttributes", {}))

    assert returned("All") == set(names)
    assert returned(".*") == set(names)
    assert returned("app.*") == {"app.user", "app.tenant"}
    assert returned("trace", "missing") == {"trace"}
    assert returned("missing") == set()
    assert returned() == set()


def test_system_attributes(sqs, queue):
    work = queue()
    before = now_ms()
    send(sqs, work.url, "x")

    first = receive_one(sqs, work.url, VisibilityTimeout=0, MessageSystemAttributeNames=["All"])
    attributes = first["Attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert before - 5000 <= int(attributes["SentTimestamp"]) <= now_ms() + 5000
    assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])
    assert attributes["SenderId"]

    # The older AttributeNames parameter does the same.
    second = receive_one(sqs, work.url, VisibilityTimeout=0, AttributeNames=["All"])["Attributes"]
    assert second["ApproximateReceiveCount"] == "2"
    for name in ("SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"):
        assert second[name] == attributes[name]

    picked = ["SentTimestamp", "ApproximateReceiveCount"]
    third = receive_one(sqs, work.url, VisibilityTimeout=0, MessageSystemAttributeNames=picked)
    assert set(third["Attributes"]) == set(picked)
    assert "Attributes" not in receive_one(sqs, work.url)


def test_aws_trace_header_system_attribute(sqs, queue):
    work = queue()
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    trace = {"AWSTraceHeader": {"DataType": "String", "StringValue": header}}
    sent = sqs.send_message(QueueUrl=work.url, MessageBody="traced", MessageSystemAttributes=trace)
    assert sent["MD5OfMessageSystemAttributes"] == md5_of_attributes(trace)

    message = receive_one(sqs, work.url, MessageSystemAttributeNames=["AWSTraceHeader"])
    assert message["Attributes"] == {"AWSTraceHeader": header}


def test_priority_attribute_high_is_received_first(sqs, queue):
    work = queue()
    send(sqs, work.url, "routine")
    high = {"redrive.priority": {"DataType": "String", "StringValue": "high"}}
    send(sqs, work.url, "urgent", MessageAttributes=high)

    assert bodies(receive(sqs, work.url, MaxNumberOfMessages=1)) == ["urgent"]
    assert bodies(receive(sqs, work.url, MaxNumberOfMessages=1)) == ["routine"]


def test_message_over_maximum_size_is_refused(sqs_any, queue):
    small = queue(attributes={"MaximumMessageSize": "1024"})
    send(sqs_any, small.url, "x" * 1024)
    with sqs_error("InvalidParameterValue"):
        sqs_any.send_message(QueueUrl=small.url, MessageBody="x" * 2000)


def string_attribute(value):
    return {"DataType": "String", "StringValue": value}


@pytest.mark.parametrize(
    "attributes",
    [
        {"empty": string_attribute("")},
        {"empty": {"DataType": "Binary", "BinaryValue": b""}},
        {"typeless": {"DataType": "Text", "StringValue": "x"}},
        {"count": {"DataType": "Number", "StringValue": "twelve"}},
        {f"a{i}": string_attribute("x") for i in range(11)},
        {"AWS.reserved": string_attribute("x")},
        {"two..dots": string_attribute("x")},
        {"redrive.priority": string_attribute("urgent")},
    ],
    ids=[
        "empty-string",
        "empty-binary",
        "unknown-type",
        "not-a-number",
        "11-attributes",
        "reserved-prefix",
        "consecutive-periods",
        "unknown-priority",
    ],
)
def test_invalid_message_attributes_are_refused(sqs, queue, attributes):
    work = queue()
    with sqs_error("InvalidParameterValue"):
        sqs.send_message(QueueUrl=work.url, MessageBody="x", MessageAttributes=attributes)
    assert message_counts(sqs, work.url) == (0, 0, 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda sqs, url: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11),
        lambda sqs, url: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21),
        lambda sqs, url: sqs.receive_message(QueueUrl=url, VisibilityTimeout=43201),
        lambda sqs, url: sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=901),
    ],
    ids=["MaxNumberOfMessages", "WaitTimeSeconds", "VisibilityTimeout", "DelaySeconds"],
)
def test_out_of_range_parameter_is_refused(sqs, queue, call):
    with sqs_error("InvalidParameterValue"):
        call(sqs, queue().url)


def test_body_with_characters_outside_the_sqs_set_is_refused(sqs, queue):
    with sqs_error("InvalidMessageContents"):
        sqs.send_message(QueueUrl=queue().url, MessageBody="nul \x00 inside")


def test_garbage_receipt_handle_is_refused(sqs_any, queue):
    work = queue()
    with sqs_error("ReceiptHandleIsInvalid"):
        sqs_any.delete_message(QueueUrl=work.url, ReceiptHandle="garbage")
    with sqs_error("ReceiptHandleIsInvalid"):
        sqs_any.change_message_visibility(
            QueueUrl=work.url, ReceiptHandle="garbage", VisibilityTimeout=0
        )


# Batches


def test_send_message_batch(sqs_any, queue):
    work = queue()
    entries = [
        {
            "Id": f"entry-{i}",
            "MessageBody": f"body {i}",
            "MessageAttributes": {"i": {"DataType": "Number", "StringValue": str(i)}},
        }
        for i in range(3)
    ] + [{"Id": "plain_entry", "MessageBody": "no attributes"}]

    response = sqs_any.send_message_batch(QueueUrl=work.url, Entries=entries)
    assert response.get("Failed", []) == []
    sent = {entry["Id"]: entry for entry in response["Successful"]}
    assert set(sent) == {entry["Id"] for entry in entries}
    for entry in entries:
        assert_sent_checksums(
            sent[entry["Id"]], entry["MessageBody"], entry.get("MessageAttributes")
        )

    received = receive_until(sqs_any, work.url, len(entries), MessageAttributeNames=["All"])
    assert {m["MessageId"]: m["Body"] for m in received} == {
        sent[entry["Id"]]["MessageId"]: entry["MessageBody"] for entry in entries
    }


def test_delete_message_batch_fails_only_the_bad_entry(sqs_any, queue):
    work = queue()
    messages = send_and_receive(sqs_any, work.url, 2)
    entries = [
        {"Id": f"good{i}", "ReceiptHandle": message["ReceiptHandle"]}
        for i, message in enumerate(messages)
    ] + [{"Id": "bad", "ReceiptHandle": "garbage"}]

    response = sqs_any.delete_message_batch(QueueUrl=work.url, Entries=entries)
    assert sorted(entry["Id"] for entry in response["Successful"]) == ["good0", "good1"]
    assert_one_failure(response, "bad", "ReceiptHandleIsInvalid")
    assert message_counts(sqs_any, work.url) == (0, 0, 0)


def test_change_message_visibility_batch_fails_only_the_bad_entry(sqs_any, queue):
    work = queue()
    messages = send_and_receive(sqs_any, work.url, 2, VisibilityTimeout=600)
    entries = [
        {"Id": f"good{i}", "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
        for i, message in enumerate(messages)
    ] + [{"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0}]

    response = sqs_any.change_message_visibility_batch(QueueUrl=work.url, Entries=entries)
    assert sorted(entry["Id"] for entry in response["Successful"]) == ["good0", "good1"]
    assert_one_failure(response, "bad", "ReceiptHandleIsInvalid")
    assert sorted(bodies(receive_until(sqs_any, work.url, 2))) == sorted(bodies(messages))


BATCH_CALLS = {
    "SendMessageBatch": lambda sqs, url, ids: sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": i, "MessageBody": "x"} for i in ids]
    ),
    "DeleteMessageBatch": lambda sqs, url, ids: sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": i, "ReceiptHandle": "x"} for i in ids]
    ),
    "ChangeMessageVisibilityBatch": lambda sqs, url, ids: sqs.change_message_visibility_batch(
        QueueUrl=url, Entries=[{"Id": i, "ReceiptHandle": "x", "VisibilityTimeout": 0} for i in ids]
    ),
}


@pytest.mark.parametrize("operation", BATCH_CALLS)
@pytest.mark.parametrize(
    "ids, error",
    [
        ([f"e{i}" for i in range(11)], "TooManyEntriesInBatchRequest"),
        ([], "EmptyBatchRequest"),
        (["same", "other", "same"], "BatchEntryIdsNotDistinct"),
        (["not valid!"], "InvalidBatchEntryId"),
        (["x" * 81], "InvalidBatchEntryId"),
    ],
    ids=["11-entries", "no-entries", "duplicate-ids", "bad-characters", "id-too-long"],
)
def test_malformed_batch_is_refused(sqs, queue, operation, ids, error):
    work = queue()
    with sqs_error(f"AWS.SimpleQueueService.{error}", getattr(sqs.exceptions, error)):
        BATCH_CALLS[operation](sqs, work.url, ids)


# Long polling, visibility, delays


def test_long_poll_on_an_empty_queue_waits_then_returns_nothing(sqs_any, queue):
    empty = queue()
    started = time.monotonic()
    assert receive(sqs_any, empty.url, WaitTimeSeconds=2) == []
    assert 1.5 <= time.monotonic() - started < 10


def test_queue_receive_wait_time_makes_every_receive_a_long_poll(sqs, queue):
    empty = queue(attributes={"ReceiveMessageWaitTimeSeconds": "2"})
    started = time.monotonic()
    assert receive(sqs, empty.url) == []
    assert 1.5 <= time.monotonic() - started < 10


def test_long_poll_returns_a_message_sent_during_the_wait(sqs, queue):
    work = queue()
    sender = threading.Timer(1.0, send, args=(sqs, work.url, "arrived"))
    sender.start()
    started = time.monotonic()
    try:
        messages = receive(sqs, work.url, WaitTimeSeconds=20)
    finally:
        sender.join()
    assert bodies(messages) == ["arrived"]
    assert time.monotonic() - started < 15


def assert_hidden_then_redelivered(sqs, url, **receive_kwargs):
    """A received message is invisible until its visibility timeout (2 s) ends, then delivered
    again with a new receipt handle."""
    sent = send(sqs, url, "work")
    first = receive_one(sqs, url, **receive_kwargs)
    assert receive(sqs, url) == []
    again = receive_one(sqs, url, timeout=15, AttributeNames=["ApproximateReceiveCount"])
    assert again["MessageId"] == first["MessageId"] == sent["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert again["ReceiptHandle"] != first["ReceiptHandle"]


def test_receive_visibility_timeout_hides_the_message_until_it_ends(sqs_any, queue):
    assert_hidden_then_redelivered(sqs_any, queue().url, VisibilityTimeout=2)


def test_queue_visibility_timeout_applies_to_receives(sqs, queue):
    assert_hidden_then_redelivered(sqs, queue(attributes={"VisibilityTimeout": "2"}).url)


def test_change_message_visibility_to_zero_makes_it_visible_at_once(sqs_any, queue):
    work = queue()
    send(sqs_any, work.url, "work")
    first = receive_one(sqs_any, work.url, VisibilityTimeout=600)
    assert receive(sqs_any, work.url) == []

    sqs_any.change_message_visibility(
        QueueUrl=work.url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = receive(sqs_any, work.url)
    assert again["MessageId"] == first["MessageId"]


def assert_delivered_after_delay(sqs, url, **send_kwargs):
    """A message sent now is delayed (counted as such, not receivable), then delivered."""
    started = time.monotonic()
    send(sqs, url, "delayed", **send_kwargs)
    assert receive(sqs, url) == []
    assert message_counts(sqs, url) == (0, 0, 1)
    assert receive_one(sqs, url, timeout=15)["Body"] == "delayed"
    assert time.monotonic() - started >= 1.5


def test_message_delay_seconds(sqs_any, queue):
    assert_delivered_after_delay(sqs_any, queue().url, DelaySeconds=2)


def test_queue_delay_seconds(sqs, queue):
    assert_delivered_after_delay(sqs, queue(attributes={"DelaySeconds": "2"}).url)


def test_message_delay_overrides_the_queue_delay(sqs, queue):
    delayed = queue(attributes={"DelaySeconds": "600"})
    send(sqs, delayed.url, "now", DelaySeconds=0)
    assert bodies(receive(sqs, delayed.url)) == ["now"]


# Dead-letter queues and message move tasks


@pytest.fixture
def source_and_dlq(queue):
    """A queue whose messages move to a dead-letter queue on their third receive."""
    dead_letters = queue()
    source = queue(attributes={"RedrivePolicy": redrive_policy(dead_letters, 2)})
    return source, dead_letters


def dead_letter(sqs, source, body):
    """Sends `body` to `source` and receives it twice without deleting it; the third receive
    moves it to the dead-letter queue. Returns its message id."""
    message_id = send(sqs, source.url, body)["MessageId"]
    for _ in range(2):
        assert receive_one(sqs, source.url, VisibilityTimeout=0)["MessageId"] == message_id
    assert_empty(sqs, source.url)
    return message_id


def test_message_moves_to_the_dead_letter_queue_after_max_receive_count(sqs_any, source_and_dlq):
    source, dead_letters = source_and_dlq
    message_id = dead_letter(sqs_any, source, "poison")

    message = receive_one(sqs_any, dead_letters.url)
    assert (message["MessageId"], message["Body"]) == (message_id, "poison")
    assert message_counts(sqs_any, source.url) == (0, 0, 0)


def test_list_dead_letter_source_queues(sqs_any, queue):
    dead_letters = queue()
    sources = [queue(attributes={"RedrivePolicy": redrive_policy(dead_letters, 3)}) for _ in "ab"]
    not_a_source = queue()

    listed = sqs_any.list_dead_letter_source_queues(QueueUrl=dead_letters.url)["queueUrls"]
    assert sorted(listed) == sorted(source.url for source in sources)
    none = sqs_any.list_dead_letter_source_queues(QueueUrl=not_a_source.url)
    assert none.get("queueUrls", []) == []


def finished_move_task(sqs, source_arn):
    """Waits for the latest message move task of `source_arn` to complete; returns it."""

    def latest_if_finished():
        [task] = sqs.list_message_move_tasks(SourceArn=source_arn)["Results"]
        return task if task["Status"] != "RUNNING" else None

    task = wait_until(latest_if_finished, timeout=30, what="the message move task to finish")
    assert task["Status"] == "COMPLETED", task
    return task


def test_message_move_task_returns_dead_letters_to_their_source(sqs, source_and_dlq):
    source, dead_letters = source_and_dlq
    for body in ("poison 1", "poison 2"):
        dead_letter(sqs, source, body)
    wait_until(lambda: message_counts(sqs, dead_letters.url)[0] == 2, what="2 dead letters")

    handle = sqs.start_message_move_task(SourceArn=dead_letters.arn)["TaskHandle"]
    task = finished_move_task(sqs, dead_letters.arn)
    # ListMessageMoveTasks gives a TaskHandle only for RUNNING tasks.
    assert task["SourceArn"] == dead_letters.arn
    assert "DestinationArn" not in task
    assert task["ApproximateNumberOfMessagesMoved"] == 2
    assert task["ApproximateNumberOfMessagesToMove"] == 2
    assert task["StartedTimestamp"] > 0

    assert sorted(bodies(receive_until(sqs, source.url, 2))) == ["poison 1", "poison 2"]
    assert message_counts(sqs, dead_letters.url) == (0, 0, 0)
    with sqs_error("ResourceNotFoundException"):
        sqs.cancel_message_move_task(TaskHandle=handle)


def test_message_move_task_to_another_queue(sqs, source_and_dlq, queue):
    source, dead_letters = source_and_dlq
    elsewhere = queue()
    dead_letter(sqs, source, "rerouted")
    wait_until(lambda: message_counts(sqs, dead_letters.url)[0] == 1, what="the dead letter")

    sqs.start_message_move_task(SourceArn=dead_letters.arn, DestinationArn=elsewhere.arn)
    assert finished_move_task(sqs, dead_letters.arn)["DestinationArn"] == elsewhere.arn
    assert receive_one(sqs, elsewhere.url)["Body"] == "rerouted"
    assert_empty(sqs, source.url)


# Purge and tags


def test_purge_queue(sqs_any, queue):
    work = queue()
    for i in range(3):
        send(sqs_any, work.url, f"doomed {i}")
    sqs_any.purge_queue(QueueUrl=work.url)
    assert_empty(sqs_any, work.url)
    assert message_counts(sqs_any, work.url) == (0, 0, 0)


def test_tag_untag_and_list_queue_tags(sqs_any, queue):
    tagged = queue(tags={"team": "payments"}, client=sqs_any)

    def tags():
        return sqs_any.list_queue_tags(QueueUrl=tagged.url).get("Tags", {})

    assert tags() == {"team": "payments"}
    sqs_any.tag_queue(QueueUrl=tagged.url, Tags={"env": "test", "team": "billing"})
    assert tags() == {"env": "test", "team": "billing"}
    sqs_any.untag_queue(QueueUrl=tagged.url, TagKeys=["team", "not-there"])
    assert tags() == {"env": "test"}
    sqs_any.untag_queue(QueueUrl=tagged.url, TagKeys=["env"])
    assert tags() == {}


# FIFO queues


@pytest.fixture
def fifo_queue(queue):
    """A FIFO queue with content-based deduplication."""
    return queue(fifo=True, attributes={"ContentBasedDeduplication": "true"})


def test_fifo_queue_attributes(sqs, fifo_queue):
    attributes = queue_attributes(sqs, fifo_queue.url, "FifoQueue", "ContentBasedDeduplication")
    assert attributes == {"FifoQueue": "true", "ContentBasedDeduplication": "true"}


def test_fifo_group_is_delivered_in_order_and_held_while_in_flight(sqs_any, fifo_queue):
    url = fifo_queue.url
    group_a = ["a1", "a2", "a3"]
    for body in group_a:
        send(sqs_any, url, body, MessageGroupId="A")

    [first] = receive(sqs_any, url, MaxNumberOfMessages=1)
    assert first["Body"] == "a1"
    # a1 is in flight, so the rest of group A is held back.
    assert receive(sqs_any, url, MaxNumberOfMessages=10) == []

    send(sqs_any, url, "b1", MessageGroupId="B")
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=10)) == ["b1"]

    # a1 visible again: the whole group comes back, in order.
    sqs_any.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=10)) == group_a


def test_fifo_deduplication_id_returns_the_first_message(sqs, queue):
    fifo = queue(fifo=True)
    first = send(sqs, fifo.url, "once", MessageGroupId="g", MessageDeduplicationId="order-1")
    again = send(sqs, fifo.url, "once", MessageGroupId="g", MessageDeduplicationId="order-1")
    assert again["MessageId"] == first["MessageId"]
    other = send(sqs, fifo.url, "once", MessageGroupId="g", MessageDeduplicationId="order-2")
    assert other["MessageId"] != first["MessageId"]

    assert message_counts(sqs, fifo.url) == (2, 0, 0)
    received = receive(sqs, fifo.url, MaxNumberOfMessages=10)
    assert [m["MessageId"] for m in received] == [first["MessageId"], other["MessageId"]]


def test_fifo_content_based_deduplication(sqs, fifo_queue):
    first = send(sqs, fifo_queue.url, "same", MessageGroupId="g")
    assert send(sqs, fifo_queue.url, "same", MessageGroupId="g")["MessageId"] == first["MessageId"]
    different = send(sqs, fifo_queue.url, "different", MessageGroupId="g")
    assert different["MessageId"] != first["MessageId"]
    assert bodies(receive(sqs, fifo_queue.url, MaxNumberOfMessages=10)) == ["same", "different"]


def test_fifo_sequence_numbers_increase(sqs, fifo_queue):
    numbers = [
        send(sqs, fifo_queue.url, f"m{i}", MessageGroupId="g")["SequenceNumber"] for i in range(3)
    ]
    assert all(number.isdigit() for number in numbers)
    assert [int(n) for n in numbers] == sorted({int(n) for n in numbers})

    received = receive(
        sqs, fifo_queue.url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )
    assert [m["Attributes"]["SequenceNumber"] for m in received] == numbers
    assert {m["Attributes"]["MessageGroupId"] for m in received} == {"g"}
    assert all(m["Attributes"]["MessageDeduplicationId"] for m in received)


def test_fifo_send_needs_a_group_and_a_deduplication_id(sqs, fifo_queue, queue):
    with sqs_error("MissingParameter"):
        sqs.send_message(QueueUrl=fifo_queue.url, MessageBody="no group")
    without_content_dedup = queue(fifo=True)
    with sqs_error("InvalidParameterValue"):
        sqs.send_message(QueueUrl=without_content_dedup.url, MessageBody="x", MessageGroupId="g")


# The native API sees the same queues and jobs


def test_message_sent_over_sqs_is_a_native_job(sqs, queue, endpoint):
    work = queue()
    sent = send(sqs, work.url, "from sqs")
    job = native_api(endpoint, "GET", f"/v1/jobs/{sent['MessageId']}")
    assert (job["id"], job["queue"], job["body"]) == (sent["MessageId"], work.name, "from sqs")


def test_native_job_is_received_over_sqs(sqs, queue, endpoint):
    work = queue()
    [job] = native_api(
        endpoint, "POST", f"/v1/queues/{work.name}/jobs", {"jobs": [{"body": "from native"}]}
    )["jobs"]
    message = receive_one(sqs, work.url)
    assert (message["MessageId"], message["Body"]) == (job["id"], "from native")
