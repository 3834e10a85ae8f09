"""The real `aws` CLI (v1) against redrive's SQS API: a dead-letter round trip."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_helpers import wait_until


def aws_executable():
    """The venv's `aws` (next to this Python), else the one on PATH."""
    beside_python = Path(sys.executable).with_name("aws")
    found = str(beside_python) if beside_python.exists() else shutil.which("aws")
    if not found:
        pytest.fail("no `aws` CLI: install tests/sqs/requirements.txt (scripts/test-sqs-python)")
    return found


@pytest.fixture
def aws_sqs(endpoint):
    """Runs `aws sqs ARGS...` against the server; returns its JSON output ({} for none)."""
    command = [aws_executable(), "--endpoint-url", endpoint, "--output", "json", "sqs"]

    def run(*args):
        result = subprocess.run(command + list(args), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"aws sqs {' '.join(args)}: {result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else {}

    return run


def test_dead_letter_and_redrive_with_the_aws_cli(aws_sqs, queue_name):
    dlq_url = aws_sqs("create-queue", "--queue-name", queue_name())["QueueUrl"]
    dlq_arn = aws_sqs(
        "get-queue-attributes", "--queue-url", dlq_url, "--attribute-names", "QueueArn"
    )["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    source_url = aws_sqs(
        "create-queue",
        "--queue-name",
        queue_name(),
        "--attributes",
        json.dumps({"RedrivePolicy": policy}),
    )["QueueUrl"]

    aws_sqs("send-message", "--queue-url", source_url, "--message-body", "hello from the cli")

    def receive(url, *args, wait=1):
        return aws_sqs(
            "receive-message", "--queue-url", url, "--wait-time-seconds", str(wait), *args
        )

    # Received twice without being deleted; the third receive moves it to the DLQ.
    receives = 0
    while receive(source_url, "--visibility-timeout", "0").get("Messages"):
        receives += 1
        assert receives <= 2, "still in the source queue after maxReceiveCount receives"
    assert receives == 2

    def dlq_depth():
        return aws_sqs(
            "get-queue-attributes",
            "--queue-url",
            dlq_url,
            "--attribute-names",
            "ApproximateNumberOfMessages",
        )["Attributes"]["ApproximateNumberOfMessages"]

    wait_until(lambda: dlq_depth() == "1", what="the message in the dead-letter queue")

    assert aws_sqs("start-message-move-task", "--source-arn", dlq_arn)["TaskHandle"]

    def finished_task():
        [task] = aws_sqs("list-message-move-tasks", "--source-arn", dlq_arn)["Results"]
        return task if task["Status"] != "RUNNING" else None

    task = wait_until(finished_task, timeout=30, what="the message move task to finish")
    assert task["Status"] == "COMPLETED"
    assert task["ApproximateNumberOfMessagesMoved"] == 1

    [message] = receive(source_url, wait=10)["Messages"]
    assert message["Body"] == "hello from the cli"
    aws_sqs(
        "delete-message", "--queue-url", source_url, "--receipt-handle", message["ReceiptHandle"]
    )
