"""Small helpers shared by the SQS tests: checksums, polling, error assertions."""

import contextlib
import hashlib
import json
import os
import struct
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

ACCOUNT_ID = "000000000000"
# With REDRIVE_SQS_AUTH=1 the server runs with --auth and these are its admin key, so every
# request of the suite is SigV4-verified; without it they are any credentials, as AWS SDKs need.
AUTH = os.environ.get("REDRIVE_SQS_AUTH") == "1"
ACCESS_KEY_ID = "pytestadmin1" if AUTH else "test"
SECRET_ACCESS_KEY = "pytest-secret-0123456789abcdef" if AUTH else "test"
REGION = "us-east-1"


def queue_arn(name):
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


def md5_hex(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.md5(data).hexdigest()


def md5_of_attributes(attributes):
    """The MD5 SQS sends as MD5OfMessageAttributes (and MD5OfMessageSystemAttributes).

    boto3 does not check these (the Java, .NET and JS SDKs do), so the tests check them: each
    attribute, sorted by name, contributes its name, its data type, one transport byte (1 for a
    string value, 2 for binary) and its value, every string and value prefixed by its length
    as a 4-byte big-endian integer.
    """

    def field(data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        return struct.pack(">I", len(data)) + data

    encoded = b""
    for name in sorted(attributes):
        value = attributes[name]
        encoded += field(name) + field(value["DataType"])
        if "BinaryValue" in value:
            encoded += b"\x02" + field(value["BinaryValue"])
        else:
            encoded += b"\x01" + field(value["StringValue"])
    return md5_hex(encoded)


def assert_sent_checksums(response, body, attributes=None):
    """A SendMessage answer (or a SendMessageBatch `Successful` entry) carries the right MD5s."""
    assert response["MD5OfMessageBody"] == md5_hex(body)
    if attributes:
        assert response["MD5OfMessageAttributes"] == md5_of_attributes(attributes)
    else:
        assert "MD5OfMessageAttributes" not in response


def assert_received_checksums(message):
    """A received message's MD5s match its body and the message attributes returned with it."""
    assert message["MD5OfBody"] == md5_hex(message["Body"])
    if message.get("MessageAttributes"):
        assert message["MD5OfMessageAttributes"] == md5_of_attributes(message["MessageAttributes"])


def receive(sqs, url, **kwargs):
    """One ReceiveMessage call; its messages (checksums verified), possibly none."""
    messages = sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])
    for message in messages:
        assert_received_checksums(message)
    return messages


def receive_one(sqs, url, timeout=10, **kwargs):
    """Long-polls until one message arrives (failing after `timeout` seconds) and returns it."""
    messages = receive_until(sqs, url, count=1, timeout=timeout, **kwargs)
    assert len(messages) == 1, messages
    return messages[0]


def receive_until(sqs, url, count, timeout=10, **kwargs):
    """Receives until `count` messages have arrived or `timeout` seconds passed; returns them."""
    deadline = time.monotonic() + timeout
    messages = []
    while len(messages) < count and time.monotonic() < deadline:
        wait = max(1, min(5, int(deadline - time.monotonic())))
        messages += receive(
            sqs,
            url,
            MaxNumberOfMessages=min(10, count - len(messages)),
            WaitTimeSeconds=wait,
            **kwargs,
        )
    return messages


def assert_empty(sqs, url, wait=1, **kwargs):
    """Nothing is receivable now (a short long poll returns no message)."""
    assert receive(sqs, url, WaitTimeSeconds=wait, MaxNumberOfMessages=10, **kwargs) == []


def send(sqs, url, body, **kwargs):
    """SendMessage, checking the MD5s of the answer; returns the answer."""
    response = sqs.send_message(QueueUrl=url, MessageBody=body, **kwargs)
    assert_sent_checksums(response, body, kwargs.get("MessageAttributes"))
    return response


def queue_attributes(sqs, url, *names):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names or ["All"]))[
        "Attributes"
    ]


def message_counts(sqs, url):
    """(visible, not visible, delayed) as the queue's Approximate* attributes report them."""
    attributes = queue_attributes(
        sqs,
        url,
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


def wait_until(condition, timeout=15, interval=0.2, what="condition"):
    """Calls `condition` until it returns a truthy value, which is returned; fails on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def sqs_error(code, exception=ClientError):
    """Expects the block to fail with this SQS error code (`Error.Code` as the SDKs see it)."""
    with pytest.raises(exception) as caught:
        yield caught
    error = caught.value.response["Error"]
    assert error["Code"] == code, caught.value.response


def bodies(messages):
    return [message["Body"] for message in messages]


def now_ms():
    return int(time.time() * 1000)


def native_api(endpoint, method, path, body=None):
    """Calls redrive's native JSON API (docs/api.md); returns the decoded answer."""
    request = urllib.request.Request(
        endpoint + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json"}
        | ({"authorization": f"Bearer {ACCESS_KEY_ID}.{SECRET_ACCESS_KEY}"} if AUTH else {}),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
