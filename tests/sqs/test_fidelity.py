"""SQS fidelity details: FIFO receive order, FIFO send
and delete rules, PurgeQueue, ReceiveRequestAttemptId, message move task handles and errors,
queue attribute defaults and rules, non-ASCII message attribute names, Query protocol details
and the wire names and texts of common errors.

Tests taking `sqs_any` run twice, over JSON 1.0 and over the Query protocol. Raw requests are
SigV4-signed with the suite's credentials (the server's admin key under REDRIVE_SQS_AUTH=1;
without --auth a signature is not checked, but it marks a mutating form request as a client's),
except the GET on a queue URL, which is answered before any authentication.
"""

import base64
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sqs_helpers import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    assert_empty,
    bodies,
    md5_hex,
    message_counts,
    native_api,
    queue_arn,
    queue_attributes,
    receive,
    receive_one,
    send,
    sqs_error,
    wait_until,
)

NON_EXISTENT_QUEUE = "AWS.SimpleQueueService.NonExistentQueue"
UNSUPPORTED_OPERATION = "AWS.SimpleQueueService.UnsupportedOperation"
JSON_NO_SUCH_QUEUE = "The specified queue does not exist."
QUERY_NO_SUCH_QUEUE = "The specified queue does not exist for this wsdl version."
DELAY_901 = (
    "Value 901 for parameter DelaySeconds is invalid. Reason: Must be between 0 and 900, "
    "if provided."
)


@contextlib.contextmanager
def sqs_failure(code, message, exception=ClientError):
    """Expects the block to fail with this SQS error code and exactly this message."""
    with sqs_error(code, exception) as caught:
        yield caught
    assert caught.value.response["Error"]["Message"] == message, caught.value.response


def protocol_of(client):
    """The protocol a boto3 client speaks: `json` or `query`."""
    return client.meta.service_model.protocol


def fifo(queue, **attributes):
    """A FIFO queue with content-based deduplication (and these attributes)."""
    return queue(fifo=True, attributes={"ContentBasedDeduplication": "true", **attributes})


def send_to_groups(sqs, url, sends):
    """Sends `(body, group)` pairs one by one, a little apart, so that their order of arrival
    (and of becoming visible) is the order given."""
    for body, group in sends:
        send(sqs, url, body, MessageGroupId=group)
        time.sleep(0.05)


# Raw HTTP requests


@dataclass
class Answer:
    status: int
    headers: dict  # lower-case names
    text: str

    def json(self):
        return json.loads(self.text)

    def xml(self, tag):
        """The texts of every element named `tag` (any namespace), in document order."""
        root = ElementTree.fromstring(self.text)
        return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == tag]


CREDENTIALS = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY)


def http(url, method="POST", body=b"", headers=None, sign=True):
    """One raw HTTP request, SigV4-signed unless `sign` is false; its answer."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if sign:
        SigV4Auth(CREDENTIALS, "sqs", REGION).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(
        prepared.url,
        data=prepared.body or None,
        method=prepared.method,
        headers=dict(prepared.headers),
    )
    try:
        with urllib.request.urlopen(raw, timeout=30) as r:
            status, headers, text = r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, e.headers, e.read().decode()
    return Answer(status, {k.lower(): v for k, v in headers.items()}, text)


def query_call(url, action, params=(), accept=None):
    """A Query protocol request (a signed form POST) to `url`; `params` as pairs, sent in order."""
    form = urllib.parse.urlencode([("Action", action), ("Version", "2012-11-05"), *params])
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if accept:
        headers["Accept"] = accept
    return http(url, body=form.encode(), headers=headers)


def json_call(endpoint, action, params):
    """A JSON 1.0 protocol request (signed) to the endpoint."""
    return http(
        endpoint + "/",
        body=json.dumps(params).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{action}",
        },
    )


def assert_query_error(answer, status, code, message):
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("text/xml"), answer
    assert answer.xml("Code") == [code], answer
    assert answer.xml("Message") == [message], answer


def assert_json_error(answer, status, json_type, query_error, message):
    """A JSON protocol error: `__type` (after its namespace), the `x-amzn-query-error` header
    SDKs read the code from, and the message."""
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/x-amz-json-1.0", answer
    body = answer.json()
    assert body["__type"].rsplit("#", 1)[-1] == json_type, body
    assert body["message"] == message, body
    assert answer.headers["x-amzn-query-error"] == query_error, answer


# 1. FIFO receive order


def test_fifo_receive_fills_the_batch_group_by_group(sqs_any, queue):
    url = fifo(queue).url
    send_to_groups(
        sqs_any, url, [("a1", "A"), ("b1", "B"), ("a2", "A"), ("c1", "C"), ("b2", "B"), ("a3", "A")]
    )
    expected = ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=10)) == expected


def test_fifo_batch_takes_a_whole_group_before_the_next_one(sqs_any, queue):
    url = fifo(queue).url
    send_to_groups(sqs_any, url, [("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B")])
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=3)) == ["a1", "a2", "b1"]
    # b2 is behind b1, in flight: nothing is deliverable.
    assert receive(sqs_any, url, MaxNumberOfMessages=10) == []


def test_fifo_group_back_from_a_lease_goes_after_the_groups_that_waited(sqs_any, queue):
    url = fifo(queue).url
    send_to_groups(sqs_any, url, [("a1", "A"), ("a2", "A")])
    [a1] = receive(sqs_any, url, MaxNumberOfMessages=1)
    assert a1["Body"] == "a1"
    send_to_groups(sqs_any, url, [("b1", "B"), ("b2", "B")])
    sqs_any.change_message_visibility(
        QueueUrl=url, ReceiptHandle=a1["ReceiptHandle"], VisibilityTimeout=0
    )
    # Group A's first message became visible again after B's did: B first, then A in order.
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=10)) == ["b1", "b2", "a1", "a2"]


def test_fifo_group_back_from_an_expired_lease_goes_after_the_groups_that_waited(sqs, queue):
    url = fifo(queue).url
    send_to_groups(sqs, url, [("a1", "A"), ("a2", "A")])
    assert bodies(receive(sqs, url, MaxNumberOfMessages=1, VisibilityTimeout=1)) == ["a1"]
    send_to_groups(sqs, url, [("b1", "B")])
    time.sleep(1.5)
    assert bodies(receive(sqs, url, MaxNumberOfMessages=10)) == ["b1", "a1", "a2"]


def test_fifo_visible_message_ahead_of_the_in_flight_ones_goes_out_at_once(sqs_any, queue):
    url = fifo(queue).url
    send_to_groups(sqs_any, url, [("a1", "A"), ("a2", "A"), ("a3", "A")])
    a1, a2 = receive(sqs_any, url, MaxNumberOfMessages=2)
    assert (a1["Body"], a2["Body"]) == ("a1", "a2")
    sqs_any.change_message_visibility(
        QueueUrl=url, ReceiptHandle=a1["ReceiptHandle"], VisibilityTimeout=0
    )
    # a1 is ahead of a2 (in flight) and goes out; a3, behind a2, is held back.
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=10)) == ["a1"]


def test_fifo_priorities_do_not_reorder_the_queue(sqs_any, queue):
    url = fifo(queue).url

    def priority(level):
        return {"redrive.priority": {"DataType": "String", "StringValue": level}}

    for body, group, level in [("a1", "A", "low"), ("b1", "B", "high"), ("a2", "A", "high")]:
        send(sqs_any, url, body, MessageGroupId=group, MessageAttributes=priority(level))
        time.sleep(0.05)
    assert bodies(receive(sqs_any, url, MaxNumberOfMessages=10)) == ["a1", "a2", "b1"]


def test_fifo_receive_orders_only_the_first_1000_deliverable_messages(sqs, queue):
    url = queue(fifo=True).url
    group_a = [f"a{i}" for i in range(1, 1011)]  # a1 .. a1010
    for start in range(0, len(group_a), 10):
        entries = [
            {"Id": f"e{i}", "MessageBody": b, "MessageGroupId": "A", "MessageDeduplicationId": b}
            for i, b in enumerate(group_a[start : start + 10])
        ]
        assert sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", []) == []
    send(sqs, url, "b1", MessageGroupId="B", MessageDeduplicationId="b1")
    [a1] = receive(sqs, url, MaxNumberOfMessages=1)
    assert a1["Body"] == "a1"
    time.sleep(0.05)
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=a1["ReceiptHandle"], VisibilityTimeout=0
    )

    # Group B became visible before group A came back from its lease, but b1 is the 1,011th
    # deliverable message: it is not among the first 1,000, so A goes out.
    assert bodies(receive(sqs, url, MaxNumberOfMessages=10)) == group_a[:10]
    # a11 .. a1010 are held back behind a1 .. a10 and do not count: b1 is deliverable now.
    assert bodies(receive(sqs, url, MaxNumberOfMessages=10)) == ["b1"]


# 2. FIFO sends


def test_fifo_send_with_delay_seconds_zero_takes_the_queue_delay(sqs_any, queue):
    undelayed = fifo(queue).url
    send(sqs_any, undelayed, "now", MessageGroupId="g", DelaySeconds=0)
    assert bodies(receive(sqs_any, undelayed)) == ["now"]

    delayed = fifo(queue, DelaySeconds="2").url
    started = time.monotonic()
    send(sqs_any, delayed, "later", MessageGroupId="g", DelaySeconds=0)
    assert message_counts(sqs_any, delayed) == (0, 0, 1)
    assert receive(sqs_any, delayed) == []
    assert receive_one(sqs_any, delayed, timeout=15)["Body"] == "later"
    assert time.monotonic() - started >= 1.5


def test_fifo_send_with_a_message_delay_is_refused(sqs_any, queue):
    url = fifo(queue).url
    message = (
        "Value 5 for parameter DelaySeconds is invalid. Reason: The request include parameter "
        "that is not valid for this queue type."
    )
    with sqs_failure("InvalidParameterValue", message):
        sqs_any.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", DelaySeconds=5)
    assert message_counts(sqs_any, url) == (0, 0, 0)


def test_fifo_batch_entry_without_a_group_fails_the_whole_request(sqs_any, queue):
    url = fifo(queue).url
    entries = [
        {"Id": "grouped", "MessageBody": "one", "MessageGroupId": "g"},
        {"Id": "groupless", "MessageBody": "two"},
    ]
    # A SendMessage without a group is MissingParameter; AWS answers a batch entry so.
    message = "The request must contain the parameter MessageGroupId."
    with sqs_failure("InvalidParameterValue", message):
        sqs_any.send_message_batch(QueueUrl=url, Entries=entries)
    assert message_counts(sqs_any, url) == (0, 0, 0)


def test_fifo_batch_entry_without_a_deduplication_id_fails_the_whole_request(sqs_any, queue):
    url = queue(fifo=True).url  # no content-based deduplication
    entries = [
        {"Id": "full", "MessageBody": "one", "MessageGroupId": "g", "MessageDeduplicationId": "d1"},
        {"Id": "no-dedup", "MessageBody": "two", "MessageGroupId": "g"},
    ]
    message = (
        "The queue should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly"
    )
    with sqs_failure("InvalidParameterValue", message):
        sqs_any.send_message_batch(QueueUrl=url, Entries=entries)
    assert message_counts(sqs_any, url) == (0, 0, 0)


# 3. Late deletes


def expired_handle_message(handle):
    return (
        f"Value {handle} for parameter ReceiptHandle is invalid. "
        "Reason: The receipt handle has expired."
    )


def test_fifo_delete_after_the_visibility_timeout_is_refused_and_deletes_nothing(sqs_any, queue):
    url = fifo(queue).url
    sent = send(sqs_any, url, "late", MessageGroupId="g")
    first = receive_one(sqs_any, url, VisibilityTimeout=1)
    time.sleep(1.5)

    with sqs_failure("InvalidParameterValue", expired_handle_message(first["ReceiptHandle"])):
        sqs_any.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])

    again = receive_one(sqs_any, url)
    assert again["MessageId"] == sent["MessageId"]
    sqs_any.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    # Deleting the deleted message again is a success.
    sqs_any.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    assert message_counts(sqs_any, url) == (0, 0, 0)


def test_fifo_delete_batch_entry_after_the_visibility_timeout_fails_alone(sqs_any, queue):
    url = fifo(queue).url
    send_to_groups(sqs_any, url, [("late", "g1"), ("fresh", "g2")])
    expired = {
        m["Body"]: m for m in receive(sqs_any, url, MaxNumberOfMessages=10, VisibilityTimeout=1)
    }
    assert sorted(expired) == ["fresh", "late"]
    time.sleep(1.5)
    current = {m["Body"]: m for m in receive(sqs_any, url, MaxNumberOfMessages=10)}
    assert sorted(current) == ["fresh", "late"]

    late_handle = expired["late"]["ReceiptHandle"]
    response = sqs_any.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "late", "ReceiptHandle": late_handle},
            {"Id": "fresh", "ReceiptHandle": current["fresh"]["ReceiptHandle"]},
        ],
    )
    assert [entry["Id"] for entry in response["Successful"]] == ["fresh"]
    [failure] = response["Failed"]
    assert failure == {
        "Id": "late",
        "SenderFault": True,
        "Code": "InvalidParameterValue",
        "Message": expired_handle_message(late_handle),
    }
    assert message_counts(sqs_any, url) == (0, 1, 0)  # "late" stays, in flight


def test_standard_queue_late_delete_of_a_grouped_message_deletes_it(sqs, queue):
    url = queue().url
    send(sqs, url, "fair", MessageGroupId="tenant-1")
    first = receive_one(sqs, url, VisibilityTimeout=1)
    time.sleep(1.5)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert message_counts(sqs, url) == (0, 0, 0)
    assert bodies(receive(sqs, url, WaitTimeSeconds=1)) == []


@pytest.mark.parametrize("fifo_queue", [True, False], ids=["fifo", "standard"])
def test_native_late_ack_of_a_grouped_job_is_stale_on_fifo_queues(endpoint, queue_name, fifo_queue):
    name = queue_name(fifo_queue)
    native_api(endpoint, "PUT", f"/v1/queues/{name}", {"dead_letter_queue": None})
    [job] = native_api(
        endpoint, "POST", f"/v1/queues/{name}/jobs", {"jobs": [{"body": "grouped", "group": "g"}]}
    )["jobs"]
    [leased] = native_api(
        endpoint, "POST", f"/v1/queues/{name}/receive", {"max": 1, "lease_ms": 1000}
    )["jobs"]
    assert leased["id"] == job["id"]
    time.sleep(1.5)
    results = native_api(endpoint, "POST", "/v1/ack", {"receipts": [leased["receipt"]]})["results"]
    # SQS's late-delete rule: refused on a FIFO queue, a late ack still completes elsewhere.
    assert results == (["stale"] if fifo_queue else ["ok"])
    state = native_api(endpoint, "GET", f"/v1/jobs/{job['id']}")["state"]
    assert (state == "acked") is not fifo_queue, state


# 4. PurgeQueue


def test_purge_queue_drops_ready_delayed_and_in_flight_messages(sqs_any, queue):
    url = queue().url
    send(sqs_any, url, "in flight")
    received_at = time.monotonic()
    assert receive_one(sqs_any, url, VisibilityTimeout=2)["Body"] == "in flight"
    send(sqs_any, url, "ready")
    send(sqs_any, url, "delayed", DelaySeconds=600)
    assert message_counts(sqs_any, url) == (1, 1, 1)

    sqs_any.purge_queue(QueueUrl=url)
    assert message_counts(sqs_any, url) == (0, 0, 0)
    # Once the in-flight message's visibility timeout is over, it does not come back.
    time.sleep(max(0, 2.5 - (time.monotonic() - received_at)))
    assert_empty(sqs_any, url)


def test_purge_queue_forgets_deduplication_ids(sqs_any, queue):
    url = queue(fifo=True).url
    first = send(sqs_any, url, "order", MessageGroupId="g", MessageDeduplicationId="order-1")
    sqs_any.purge_queue(QueueUrl=url)
    again = send(sqs_any, url, "order", MessageGroupId="g", MessageDeduplicationId="order-1")
    assert again["MessageId"] != first["MessageId"]
    assert message_counts(sqs_any, url) == (1, 0, 0)
    assert receive_one(sqs_any, url)["MessageId"] == again["MessageId"]

    by_content = fifo(queue).url
    first = send(sqs_any, by_content, "same", MessageGroupId="g")
    sqs_any.purge_queue(QueueUrl=by_content)
    assert send(sqs_any, by_content, "same", MessageGroupId="g")["MessageId"] != first["MessageId"]
    assert message_counts(sqs_any, by_content) == (1, 0, 0)


def test_purge_queue_again_at_once_is_allowed(sqs_any, queue):
    url = queue().url
    send(sqs_any, url, "first")
    sqs_any.purge_queue(QueueUrl=url)
    send(sqs_any, url, "second")
    sqs_any.purge_queue(QueueUrl=url)
    assert message_counts(sqs_any, url) == (0, 0, 0)


def test_native_purge_drops_waiting_and_leased_jobs_but_keeps_parked_dead_ones(
    endpoint, queue_name
):
    name = queue_name()
    path = f"/v1/queues/{name}"
    native_api(endpoint, "PUT", path, {"dead_letter_queue": None})

    def enqueue(**job):
        return native_api(endpoint, "POST", f"{path}/jobs", {"jobs": [job]})["jobs"][0]

    def lease():
        [job] = native_api(endpoint, "POST", f"{path}/receive", {"max": 1})["jobs"]
        return job

    dead = enqueue(body="dead")["id"]
    dying = lease()
    assert dying["id"] == dead
    failed = native_api(
        endpoint,
        "POST",
        "/v1/fail",
        {
            "receipt": dying["receipt"],
            "error": {"type": "Poison", "message": "unprocessable"},
            "non_retryable": True,
        },
    )
    assert failed["state"] == "dead"
    leased_id = enqueue(body="leased")["id"]
    leased = lease()
    assert leased["id"] == leased_id
    first = enqueue(body="ready", idempotency_key="key-1")
    enqueue(body="delayed", delay_ms=600_000)

    assert native_api(endpoint, "POST", f"{path}/purge") == {"purged": 3}

    parked = native_api(endpoint, "GET", f"{path}/dead")["jobs"]
    assert [(job["id"], job["state"]) for job in parked] == [(dead, "dead")]
    # The idempotency key is forgotten: the same key makes a new job.
    again = enqueue(body="ready", idempotency_key="key-1")
    assert again["duplicate"] is False and again["id"] != first["id"], again
    counts = native_api(endpoint, "GET", path)["stats"]["counts"]
    assert {k: counts[k] for k in ("ready", "delayed", "leased", "dead")} == {
        "ready": 1,
        "delayed": 0,
        "leased": 0,
        "dead": 1,
    }
    # A worker still holding a purged job cannot complete it: the job is gone (docs/api.md).
    acked = native_api(endpoint, "POST", "/v1/ack", {"receipts": [leased["receipt"]]})
    assert acked["results"] == ["unknown"]


# 5. ReceiveRequestAttemptId


def test_receive_request_attempt_id_retry_returns_the_first_answer(sqs_any, queue):
    url = fifo(queue).url
    send_to_groups(sqs_any, url, [("a1", "A"), ("a2", "A"), ("b1", "B")])

    first = receive(sqs_any, url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="attempt-1")
    assert bodies(first) == ["a1", "a2"]
    retry = receive(sqs_any, url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="attempt-1")
    assert [(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in retry] == [
        (m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in first
    ]
    # Another attempt id is a new receive: group A is in flight, B is next.
    assert bodies(
        receive(sqs_any, url, MaxNumberOfMessages=10, ReceiveRequestAttemptId="attempt-2")
    ) == ["b1"]
    # The retried handles are the live ones.
    for message in retry:
        sqs_any.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert message_counts(sqs_any, url) == (0, 1, 0)


def test_receive_request_attempt_id_empty_answer_is_not_kept(sqs_any, queue):
    url = fifo(queue).url
    assert receive(sqs_any, url, ReceiveRequestAttemptId="early") == []
    send(sqs_any, url, "arrived", MessageGroupId="g")
    assert bodies(receive(sqs_any, url, ReceiveRequestAttemptId="early")) == ["arrived"]


def test_receive_request_attempt_id_retry_keeps_the_visibility_timeout(sqs, queue):
    url = fifo(queue).url
    send(sqs, url, "work", MessageGroupId="g")
    started = time.monotonic()
    [first] = receive(sqs, url, VisibilityTimeout=4, ReceiveRequestAttemptId="slow")
    time.sleep(max(0, 2 - (time.monotonic() - started)))
    [retry] = receive(sqs, url, VisibilityTimeout=4, ReceiveRequestAttemptId="slow")
    assert retry["ReceiptHandle"] == first["ReceiptHandle"]
    # The timeout still ends 4 s after the first receive, not 4 s after the retry (6 s).
    time.sleep(max(0, 4.3 - (time.monotonic() - started)))
    again = receive(sqs, url, WaitTimeSeconds=1)
    assert time.monotonic() - started < 5.8, "too slow to tell the two timeouts apart"
    assert [m["MessageId"] for m in again] == [first["MessageId"]]


@pytest.mark.parametrize(
    "attempt_id",
    ["", "x" * 129, "with space", "naïve"],
    ids=["empty", "129-chars", "space", "non-ascii"],
)
def test_invalid_receive_request_attempt_id_is_refused(sqs_any, queue, attempt_id):
    url = fifo(queue).url
    send(sqs_any, url, "kept", MessageGroupId="g")
    with sqs_error("InvalidParameterValue"):
        sqs_any.receive_message(QueueUrl=url, ReceiveRequestAttemptId=attempt_id)
    assert message_counts(sqs_any, url) == (1, 0, 0)


def test_receive_request_attempt_id_of_128_printable_characters_is_taken(sqs_any, queue):
    url = fifo(queue).url
    send(sqs_any, url, "taken", MessageGroupId="g")
    attempt_id = ("!~Az09-_" * 16)[:128]
    assert bodies(receive(sqs_any, url, ReceiveRequestAttemptId=attempt_id)) == ["taken"]


def test_receive_request_attempt_id_is_ignored_on_standard_queues(sqs_any, queue):
    url = queue().url
    send(sqs_any, url, "first")
    send(sqs_any, url, "second")
    got = bodies(receive(sqs_any, url, ReceiveRequestAttemptId="same"))
    got += bodies(receive(sqs_any, url, ReceiveRequestAttemptId="same"))
    assert sorted(got) == ["first", "second"]
    # Not even checked there.
    assert receive(sqs_any, url, ReceiveRequestAttemptId="not valid here") == []


# 6. Message move tasks


def redrive_policy(dead_letter_queue, max_receive_count):
    return json.dumps(
        {"deadLetterTargetArn": dead_letter_queue.arn, "maxReceiveCount": max_receive_count}
    )


def wire_handle(task_id, source_arn):
    return base64.b64encode(
        json.dumps({"taskId": task_id, "sourceArn": source_arn}).encode()
    ).decode()


def test_move_task_handle_is_base64_json_of_the_task_id_and_source_arn(sqs_any, queue):
    dead_letters = queue()
    queue(attributes={"RedrivePolicy": redrive_policy(dead_letters, 1)})
    handle = sqs_any.start_message_move_task(SourceArn=dead_letters.arn)["TaskHandle"]
    decoded = json.loads(base64.b64decode(handle, validate=True))
    assert set(decoded) == {"taskId", "sourceArn"}
    assert decoded["sourceArn"] == dead_letters.arn
    assert isinstance(decoded["taskId"], str) and decoded["taskId"]


def test_second_move_task_of_a_source_is_refused_while_one_runs(sqs, queue):
    dead_letters = queue()
    source = queue(attributes={"RedrivePolicy": redrive_policy(dead_letters, 1)})
    for i in range(5):
        send(sqs, source.url, f"poison {i}")
    assert len(receive(sqs, source.url, MaxNumberOfMessages=10, VisibilityTimeout=0)) == 5
    assert_empty(sqs, source.url)  # this receive moves them to the dead-letter queue
    wait_until(lambda: message_counts(sqs, dead_letters.url)[0] == 5, what="5 dead letters")

    handle = sqs.start_message_move_task(
        SourceArn=dead_letters.arn, MaxNumberOfMessagesPerSecond=1
    )["TaskHandle"]
    message = (
        "There is already a task running. Only one active task is allowed for each source "
        "queue arn at a given time."
    )
    with sqs_failure(UNSUPPORTED_OPERATION, message, sqs.exceptions.UnsupportedOperation):
        sqs.start_message_move_task(SourceArn=dead_letters.arn)
    [running] = sqs.list_message_move_tasks(SourceArn=dead_letters.arn)["Results"]
    assert (running["Status"], running["TaskHandle"]) == ("RUNNING", handle)

    assert sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"] < 5

    wait_until(
        lambda: task_status(sqs, dead_letters.arn) == "CANCELLED",
        what="the move task to be cancelled",
    )
    with sqs_failure("ResourceNotFoundException", "Task does not exist."):
        sqs.cancel_message_move_task(TaskHandle=handle)
    # With no task running, a new one may start.
    assert sqs.start_message_move_task(SourceArn=dead_letters.arn)["TaskHandle"] != handle


def task_status(sqs, source_arn):
    """The status of the source queue's most recent move task."""
    [task] = sqs.list_message_move_tasks(SourceArn=source_arn)["Results"]
    return task["Status"]


@pytest.mark.parametrize(
    "handle",
    [
        "not a task handle",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(json.dumps({"taskId": "t"}).encode()).decode(),
    ],
    ids=["not-base64", "not-json", "no-source-arn"],
)
def test_cancel_with_a_malformed_task_handle_is_refused(sqs_any, handle):
    with sqs_failure("InvalidParameterValue", "Value for parameter TaskHandle is invalid."):
        sqs_any.cancel_message_move_task(TaskHandle=handle)


def test_cancel_of_an_unknown_or_finished_task_is_resource_not_found(sqs_any, queue):
    dead_letters = queue()
    queue(attributes={"RedrivePolicy": redrive_policy(dead_letters, 1)})
    unknown = wire_handle(str(uuid.uuid4()), dead_letters.arn)
    with sqs_failure("ResourceNotFoundException", "Task does not exist."):
        sqs_any.cancel_message_move_task(TaskHandle=unknown)

    handle = sqs_any.start_message_move_task(SourceArn=dead_letters.arn)["TaskHandle"]

    wait_until(
        lambda: task_status(sqs_any, dead_letters.arn) == "COMPLETED",
        what="the empty move task to complete",
    )
    with sqs_failure("ResourceNotFoundException", "Task does not exist."):
        sqs_any.cancel_message_move_task(TaskHandle=handle)


# 7. Queue attributes


def test_queues_report_sqs_managed_encryption_by_default(sqs_any, queue):
    attributes = queue_attributes(sqs_any, queue().url)
    assert attributes["SqsManagedSseEnabled"] == "true"
    for absent in (
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "DeduplicationScope",
        "FifoThroughputLimit",
        "Policy",
        "RedriveAllowPolicy",
    ):
        assert absent not in attributes


def test_kms_key_turns_sqs_managed_encryption_off_and_an_empty_key_removes_it(sqs_any, queue):
    url = queue().url
    sse = ("SqsManagedSseEnabled", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds")

    def reported():
        attributes = queue_attributes(sqs_any, url)
        return {name: attributes[name] for name in sse if name in attributes}

    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": "alias/aws/sqs"})
    assert reported() == {
        "SqsManagedSseEnabled": "false",
        "KmsMasterKeyId": "alias/aws/sqs",
        "KmsDataKeyReusePeriodSeconds": "300",
    }
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"KmsDataKeyReusePeriodSeconds": "600"})
    assert reported()["KmsDataKeyReusePeriodSeconds"] == "600"

    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": ""})
    assert reported() == {"SqsManagedSseEnabled": "true"}

    created = queue(attributes={"KmsMasterKeyId": "alias/aws/sqs"}, client=sqs_any)
    assert queue_attributes(sqs_any, created.url, *sse) == {
        "SqsManagedSseEnabled": "false",
        "KmsMasterKeyId": "alias/aws/sqs",
        "KmsDataKeyReusePeriodSeconds": "300",
    }


@pytest.mark.parametrize("name", ["Policy", "RedriveAllowPolicy"])
def test_an_empty_policy_removes_it(sqs_any, queue, name):
    url = queue().url
    policy = {
        "Policy": json.dumps({"Version": "2012-10-17", "Statement": []}),
        "RedriveAllowPolicy": json.dumps({"redrivePermission": "allowAll"}),
    }[name]
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={name: policy})
    assert queue_attributes(sqs_any, url, name) == {name: policy}
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={name: ""})
    assert name not in queue_attributes(sqs_any, url)
    answer = sqs_any.get_queue_attributes(QueueUrl=url, AttributeNames=[name])
    assert "Attributes" not in answer


def test_fifo_queue_reports_deduplication_scope_and_throughput_limit(sqs_any, queue):
    url = queue(fifo=True).url
    names = ("FifoQueue", "DeduplicationScope", "FifoThroughputLimit", "SqsManagedSseEnabled")
    assert queue_attributes(sqs_any, url, *names) == {
        "FifoQueue": "true",
        "DeduplicationScope": "queue",
        "FifoThroughputLimit": "perQueue",
        "SqsManagedSseEnabled": "true",
    }
    high_throughput = {
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes=high_throughput)
    assert queue_attributes(sqs_any, url, *high_throughput) == high_throughput


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("FifoQueue", "false", "Unknown Attribute FifoQueue."),
        ("ContentBasedDeduplication", "false", "Unknown Attribute ContentBasedDeduplication."),
        (
            "DeduplicationScope",
            "queue",
            "You can specify the DeduplicationScope only when FifoQueue is set to true.",
        ),
        (
            "FifoThroughputLimit",
            "perQueue",
            "You can specify the FifoThroughputLimit only when FifoQueue is set to true.",
        ),
    ],
)
def test_fifo_only_attribute_on_a_standard_queue_is_refused_by_name(
    sqs_any, queue, queue_name, name, value, message
):
    with sqs_failure("InvalidAttributeName", message):
        sqs_any.create_queue(QueueName=queue_name(), Attributes={name: value})
    standard = queue()
    with sqs_failure("InvalidAttributeName", message):
        sqs_any.set_queue_attributes(QueueUrl=standard.url, Attributes={name: value})


def test_fifo_queue_attribute_cannot_change_the_queue_type(sqs_any, queue):
    url = queue(fifo=True).url
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "true"})
    message = (
        "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported."
    )
    with sqs_failure("InvalidAttributeValue", message):
        sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "false"})
    assert queue_attributes(sqs_any, url, "FifoQueue") == {"FifoQueue": "true"}


@pytest.mark.parametrize(
    "name, value",
    [
        ("SqsManagedSseEnabled", "false"),
        ("KmsDataKeyReusePeriodSeconds", "60"),
        ("KmsDataKeyReusePeriodSeconds", "86400"),
    ],
)
def test_valid_encryption_attribute_is_taken(sqs_any, queue, name, value):
    url = queue().url
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes={name: value})
    if name == "KmsDataKeyReusePeriodSeconds":
        sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": "alias/aws/sqs"})
    assert queue_attributes(sqs_any, url, name) == {name: value}


def test_create_existing_queue_names_the_first_differing_attribute(sqs_any, queue):
    existing = queue(attributes={"DelaySeconds": "5", "VisibilityTimeout": "30"})
    message = "A queue already exists with the same name and a different value for attribute {}"
    with sqs_failure(
        "QueueAlreadyExists",
        message.format("VisibilityTimeout"),
        sqs_any.exceptions.QueueNameExists,
    ):
        sqs_any.create_queue(
            QueueName=existing.name, Attributes={"DelaySeconds": "5", "VisibilityTimeout": "60"}
        )
    with sqs_failure(
        "QueueAlreadyExists", message.format("DelaySeconds"), sqs_any.exceptions.QueueNameExists
    ):
        sqs_any.create_queue(
            QueueName=existing.name, Attributes={"DelaySeconds": "6", "VisibilityTimeout": "60"}
        )
    same = sqs_any.create_queue(
        QueueName=existing.name, Attributes={"DelaySeconds": "5", "VisibilityTimeout": "30"}
    )
    assert same["QueueUrl"] == existing.url


def test_create_existing_queue_with_the_reported_encryption_default_returns_it(sqs_any, queue):
    standard = queue()
    again = sqs_any.create_queue(
        QueueName=standard.name,
        Attributes={"SqsManagedSseEnabled": "true", "VisibilityTimeout": "30"},
    )
    assert again["QueueUrl"] == standard.url


def test_create_existing_fifo_queue_with_the_reported_fifo_defaults_returns_it(sqs_any, queue):
    fifo_queue = queue(fifo=True)
    again = sqs_any.create_queue(
        QueueName=fifo_queue.name,
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "false",
            "DeduplicationScope": "queue",
            "FifoThroughputLimit": "perQueue",
        },
    )
    assert again["QueueUrl"] == fifo_queue.url


# 8. Message attribute names


def test_message_attribute_names_may_use_letters_and_digits_of_any_script(sqs_any, queue):
    url = queue().url
    attributes = {
        "größe": {"DataType": "String", "StringValue": "groß"},
        "名前": {"DataType": "String", "StringValue": "値"},
        "число_٣-x.y": {"DataType": "Number", "StringValue": "3"},
    }
    sent = send(sqs_any, url, "names", MessageAttributes=attributes)  # checks the MD5
    message = receive_one(sqs_any, url, VisibilityTimeout=0, MessageAttributeNames=["All"])
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    picked = receive_one(sqs_any, url, MessageAttributeNames=["名前"])
    assert picked["MessageAttributes"] == {"名前": attributes["名前"]}


@pytest.mark.parametrize(
    "name",
    ["名 前", "größe!", ".größe", "größe.", "grö..ße"],
    ids=["space", "bang", "leading-dot", "trailing-dot", "two-dots"],
)
def test_message_attribute_name_rules_still_apply_to_other_scripts(sqs_any, queue, name):
    url = queue().url
    with sqs_failure("InvalidParameterValue", f"Message attribute name '{name}' is invalid."):
        sqs_any.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={name: {"DataType": "String", "StringValue": "v"}},
        )
    assert message_counts(sqs_any, url) == (0, 0, 0)


# 9. Query protocol details


def test_query_empty_list_is_an_empty_list(endpoint, queue):
    url = queue(tags={"team": "payments"}).url
    for empty in ("AttributeName", "AttributeName.member"):
        answer = query_call(endpoint + "/", "GetQueueAttributes", [("QueueUrl", url), (empty, "")])
        assert answer.status == 200, answer
        assert answer.xml("Attribute") == [], answer
        assert answer.xml("GetQueueAttributesResult") == [""], answer

    for empty in ("TagKey", "TagKey.member"):
        answer = query_call(endpoint + "/", "UntagQueue", [("QueueUrl", url), (empty, "")])
        assert answer.status == 200, answer
    answer = query_call(endpoint + "/", "ListQueueTags", [("QueueUrl", url)])
    assert (answer.xml("Key"), answer.xml("Value")) == (["team"], ["payments"]), answer

    send_answer = query_call(
        endpoint + "/", "SendMessage", [("QueueUrl", url), ("MessageBody", "x")]
    )
    assert send_answer.status == 200, send_answer
    answer = query_call(
        endpoint + "/",
        "ReceiveMessage",
        [
            ("QueueUrl", url),
            ("AttributeName.member", ""),
            ("MessageAttributeName", ""),
            ("MessageSystemAttributeName.member", ""),
        ],
    )
    assert answer.status == 200, answer
    assert answer.xml("Body") == ["x"], answer
    assert answer.xml("Attribute") == [] and answer.xml("MessageAttribute") == [], answer


def test_query_client_sends_an_empty_list(sqs_query, queue):
    url = queue().url
    answer = sqs_query.get_queue_attributes(QueueUrl=url, AttributeNames=[])
    assert "Attributes" not in answer


def test_query_non_flattened_lists_read_like_flattened_ones(endpoint, queue):
    url = queue(tags={"team": "payments", "env": "test"}).url
    answer = query_call(
        endpoint + "/",
        "GetQueueAttributes",
        [
            ("QueueUrl", url),
            ("AttributeName.member.1", "VisibilityTimeout"),
            ("AttributeName.member.2", "DelaySeconds"),
        ],
    )
    assert answer.status == 200, answer
    assert sorted(zip(answer.xml("Name"), answer.xml("Value"), strict=True)) == [
        ("DelaySeconds", "0"),
        ("VisibilityTimeout", "30"),
    ]

    answer = query_call(
        endpoint + "/", "UntagQueue", [("QueueUrl", url), ("TagKey.member.1", "team")]
    )
    assert answer.status == 200, answer
    answer = query_call(endpoint + "/", "ListQueueTags", [("QueueUrl", url)])
    assert (answer.xml("Key"), answer.xml("Value")) == (["env"], ["test"]), answer

    answer = query_call(
        endpoint + "/",
        "SendMessageBatch",
        [
            ("QueueUrl", url),
            ("SendMessageBatchRequestEntry.member.1.Id", "one"),
            ("SendMessageBatchRequestEntry.member.1.MessageBody", "first"),
            ("SendMessageBatchRequestEntry.member.2.Id", "two"),
            ("SendMessageBatchRequestEntry.member.2.MessageBody", "second"),
        ],
    )
    assert answer.status == 200, answer
    assert answer.xml("Id") == ["one", "two"], answer
    assert answer.xml("MD5OfMessageBody") == [md5_hex("first"), md5_hex("second")], answer


def test_get_on_a_queue_url_without_an_action_is_an_unknown_operation(endpoint, queue):
    url = queue().url
    message = (
        "The request names no operation: send an Action parameter (Query protocol) or an "
        "X-Amz-Target header (JSON protocol)."
    )
    for target in (url, url + "?Version=2012-11-05"):
        answer = http(target, method="GET", body=None, sign=False)
        assert answer.status == 404, answer
        assert answer.xml("Code") == ["UnknownOperationException"], answer
        assert answer.xml("Message") == [message], answer

    # With an Action, or as the JSON protocol, a GET is an operation.
    answer = http(
        url + "?Action=GetQueueAttributes&AttributeName.1=VisibilityTimeout&Version=2012-11-05",
        method="GET",
        body=None,
    )
    assert answer.status == 200, answer
    assert answer.xml("Value") == ["30"], answer
    answer = http(
        url,
        method="GET",
        body=json.dumps({"AttributeNames": ["VisibilityTimeout"]}).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.GetQueueAttributes",
        },
    )
    assert answer.status == 200, answer
    assert answer.json() == {"Attributes": {"VisibilityTimeout": "30"}}


@pytest.mark.parametrize("action", ["CreateQueue", "ListQueues"])
def test_account_action_sent_to_a_queue_url_is_an_invalid_action(
    sqs, endpoint, queue, queue_name, action
):
    url = queue().url
    name = queue_name()
    params = [("QueueName", name)] if action == "CreateQueue" else []
    answer = query_call(url, action, params)
    assert_query_error(
        answer, 400, "InvalidAction", f"The action {action} is not valid for this endpoint."
    )
    with sqs_error(NON_EXISTENT_QUEUE):  # not created
        sqs.get_queue_url(QueueName=name)
    # A queue action at the queue URL works there.
    answer = query_call(url, "GetQueueAttributes", [("AttributeName.1", "VisibilityTimeout")])
    assert answer.status == 200 and answer.xml("Value") == ["30"], answer


def test_query_request_accepting_json_is_answered_as_json(endpoint, queue, queue_name):
    existing = queue()
    answer = query_call(
        endpoint + "/", "GetQueueUrl", [("QueueName", existing.name)], accept="application/json"
    )
    assert answer.status == 200, answer
    assert answer.headers["content-type"] == "application/x-amz-json-1.0"
    assert answer.json() == {"QueueUrl": existing.url}

    answer = query_call(
        endpoint + "/",
        "SendMessage",
        [("QueueUrl", existing.url), ("MessageBody", "hi")],
        accept="application/json",
    )
    assert answer.status == 200, answer
    sent = answer.json()
    assert sent["MD5OfMessageBody"] == md5_hex("hi") and sent["MessageId"], sent

    answer = query_call(
        endpoint + "/", "GetQueueUrl", [("QueueName", queue_name())], accept="application/json"
    )
    assert_json_error(
        answer, 400, "QueueDoesNotExist", f"{NON_EXISTENT_QUEUE};Sender", JSON_NO_SUCH_QUEUE
    )

    # Without the header the same request is answered in XML.
    answer = query_call(endpoint + "/", "GetQueueUrl", [("QueueName", existing.name)])
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/xml"), answer
    assert answer.xml("QueueUrl") == [existing.url]


# 10. Error wire names and texts


def test_json_error_types_of_common_errors(endpoint, queue, queue_name):
    url = queue().url
    answer = json_call(
        endpoint, "SendMessage", {"QueueUrl": url, "MessageBody": "x", "DelaySeconds": 901}
    )
    assert_json_error(
        answer, 400, "InvalidParameterValueException", "InvalidParameterValue;Sender", DELAY_901
    )
    answer = json_call(endpoint, "SendMessage", {"QueueUrl": url})
    assert_json_error(
        answer,
        400,
        "MissingRequiredParameterException",
        "MissingParameter;Sender",
        "The request must contain the parameter MessageBody.",
    )
    answer = json_call(endpoint, "GetQueueUrl", {"QueueName": queue_name()})
    assert_json_error(
        answer, 400, "QueueDoesNotExist", f"{NON_EXISTENT_QUEUE};Sender", JSON_NO_SUCH_QUEUE
    )


def test_query_error_codes_of_common_errors(endpoint, queue, queue_name):
    url = queue().url
    answer = query_call(
        endpoint + "/",
        "SendMessage",
        [("QueueUrl", url), ("MessageBody", "x"), ("DelaySeconds", "901")],
    )
    assert_query_error(answer, 400, "InvalidParameterValue", DELAY_901)
    answer = query_call(endpoint + "/", "SendMessage", [("QueueUrl", url)])
    assert_query_error(
        answer, 400, "MissingParameter", "The request must contain the parameter MessageBody."
    )
    answer = query_call(endpoint + "/", "GetQueueUrl", [("QueueName", queue_name())])
    assert_query_error(answer, 400, NON_EXISTENT_QUEUE, QUERY_NO_SUCH_QUEUE)


def test_non_existent_queue_message_depends_on_the_protocol(sqs_any, queue):
    gone = queue()
    sqs_any.delete_queue(QueueUrl=gone.url)
    message = JSON_NO_SUCH_QUEUE if protocol_of(sqs_any) == "json" else QUERY_NO_SUCH_QUEUE
    with sqs_failure(NON_EXISTENT_QUEUE, message, sqs_any.exceptions.QueueDoesNotExist):
        sqs_any.get_queue_url(QueueName=gone.name)
    with sqs_failure(NON_EXISTENT_QUEUE, message, sqs_any.exceptions.QueueDoesNotExist):
        sqs_any.send_message(QueueUrl=gone.url, MessageBody="x")


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("MaxNumberOfMessages", 11, "Must be between 1 and 10, if provided."),
        ("WaitTimeSeconds", 21, "Must be >= 0 and <= 20, if provided."),
        ("WaitTimeSeconds", -1, "Must be >= 0 and <= 20, if provided."),
    ],
)
def test_range_error_names_the_value_and_the_range(sqs_any, queue, name, value, reason):
    message = f"Value {value} for parameter {name} is invalid. Reason: {reason}"
    with sqs_failure("InvalidParameterValue", message):
        sqs_any.receive_message(QueueUrl=queue().url, **{name: value})


def test_a_batch_entry_over_the_size_limit_fails_alone_in_the_batch_words(sqs_any, queue):
    url = queue(attributes={"MaximumMessageSize": "1024"}).url
    entries = [{"Id": "big", "MessageBody": "a" * 1025}, {"Id": "small", "MessageBody": "a"}]
    answer = sqs_any.send_message_batch(QueueUrl=url, Entries=entries)
    assert [e["Id"] for e in answer["Successful"]] == ["small"]
    (failed,) = answer["Failed"]
    assert failed["Id"] == "big" and failed["SenderFault"] is True
    assert failed["Code"] == "InvalidParameterValue"
    assert failed["Message"] == (
        "One or more parameters cannot be validated. Reason: Message must be shorter than 1024 bytes."
    )


@pytest.mark.parametrize(
    "policy, reason",
    [
        ({"maxReceiveCount": "5"}, "Redrive policy does not contain mandatory attribute: deadLetterTargetArn."),
        ({"deadLetterTargetArn": "DLQ"}, "Redrive policy does not contain mandatory attribute: maxReceiveCount."),
        (
            {"deadLetterTargetArn": "DLQ", "maxReceiveCount": 0},
            "Invalid value for maxReceiveCount: 0, valid values are from 1 to 1000 both inclusive.",
        ),
        (
            {"deadLetterTargetArn": "DLQ", "maxReceiveCount": "1001"},
            "Invalid value for maxReceiveCount: 1001, valid values are from 1 to 1000 both inclusive.",
        ),
        ({"deadLetterTargetArn": "GONE", "maxReceiveCount": 3}, "Dead letter target does not exist."),
    ],
)
def test_a_redrive_policy_without_what_it_needs_is_refused_in_sqs_words(sqs_any, queue, policy, reason):
    dead_letters = queue()
    arns = {"DLQ": dead_letters.arn, "GONE": dead_letters.arn + "-gone"}
    policy = json.dumps({k: arns.get(v, v) for k, v in policy.items()})
    message = f"Value {policy} for parameter RedrivePolicy is invalid. Reason: {reason}"
    with sqs_failure("InvalidParameterValue", message):
        sqs_any.set_queue_attributes(QueueUrl=queue().url, Attributes={"RedrivePolicy": policy})


def test_a_dead_letter_queue_of_the_other_kind_is_refused_naming_the_policy(sqs_any, queue):
    policy = json.dumps({"deadLetterTargetArn": fifo(queue).arn, "maxReceiveCount": 3})
    message = (
        f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be "
        "same type of queue as the source.."
    )
    with sqs_failure("InvalidParameterValue", message):
        sqs_any.set_queue_attributes(QueueUrl=queue().url, Attributes={"RedrivePolicy": policy})


def test_a_per_group_throughput_limit_needs_per_group_deduplication(sqs_any, queue):
    url = fifo(queue).url
    with sqs_error("InvalidAttributeValue"):
        sqs_any.set_queue_attributes(
            QueueUrl=url, Attributes={"FifoThroughputLimit": "perMessageGroupId"}
        )
    high = {"DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"}
    sqs_any.set_queue_attributes(QueueUrl=url, Attributes=high)
    with sqs_error("InvalidAttributeValue"):
        sqs_any.set_queue_attributes(QueueUrl=url, Attributes={"DeduplicationScope": "queue"})


@pytest.mark.parametrize("data_type", ["Binary", "Number"])
def test_a_trace_header_that_is_not_a_string_is_refused(sqs_any, queue, data_type):
    url = queue().url
    value = {"DataType": data_type}
    value["BinaryValue" if data_type == "Binary" else "StringValue"] = (
        b"abc" if data_type == "Binary" else "1"
    )
    with sqs_error("InvalidParameterValue"):
        sqs_any.send_message(
            QueueUrl=url, MessageBody="t", MessageSystemAttributes={"AWSTraceHeader": value}
        )
    assert message_counts(sqs_any, url) == (0, 0, 0)


def test_invalid_batch_entry_id_is_not_echoed(sqs_any, queue):
    url = queue().url
    message = (
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
        "It can be at most 80 letters long."
    )
    with sqs_failure(
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        message,
        sqs_any.exceptions.InvalidBatchEntryId,
    ):
        sqs_any.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "<script>bad id</script>", "MessageBody": "x"}]
        )


# 11. A queue may be its own dead-letter queue


def test_a_queue_may_be_its_own_dead_letter_queue(sqs_any, queue_name):
    name = queue_name()
    arn = queue_arn(name)
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})
    url = sqs_any.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sqs_any.send_message(QueueUrl=url, MessageBody="loops")
    [first] = receive(sqs_any, url, MaxNumberOfMessages=1, VisibilityTimeout=1)
    time.sleep(1.5)
    # Past maxReceiveCount it dies into its own queue and starts over: received again, as a
    # dead letter of itself, its receive count back to 1.
    [again] = receive(sqs_any, url, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"])
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "1"
    assert again["Attributes"]["DeadLetterQueueSourceArn"] == arn
    listed = sqs_any.list_dead_letter_source_queues(QueueUrl=url)["queueUrls"]
    assert listed == [url]
