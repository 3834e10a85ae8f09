"""Fixtures for the SQS compatibility tests: one redrive server per session, SQS clients for it
(JSON 1.0 and Query protocol) and uniquely named queues."""

import json
import os
import queue as stdlib_queue
import re
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.config import Config

from query_protocol import query_model
from sqs_helpers import ACCESS_KEY_ID, AUTH, REGION, SECRET_ACCESS_KEY, queue_arn

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30
LISTENING_PREFIX = "redrive listening on "

# Every AWS_* variable of the caller is dropped: the tests must not pick up a profile, a
# config file, real credentials or an AWS_ENDPOINT_URL.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}

_server_log = None  # path of the server's stderr, reported when a test fails


@pytest.fixture(scope="session", autouse=True)
def aws_environment():
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory):
    """The base URL of a redrive server started for this session (and stopped after it)."""
    global _server_log
    binary = os.environ.get("REDRIVE_BIN", str(REPO / "target" / "debug" / "redrive"))
    if not os.access(binary, os.X_OK):
        pytest.exit(f"no redrive binary at {binary}: run `cargo build` or set REDRIVE_BIN", 2)
    workdir = tmp_path_factory.mktemp("redrive")
    _server_log = workdir / "server.log"
    command = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(workdir / "data")]
    env = dict(os.environ)
    if AUTH:
        command.append("--auth")
        env["REDRIVE_ADMIN_KEY_ID"] = ACCESS_KEY_ID
        env["REDRIVE_ADMIN_SECRET"] = SECRET_ACCESS_KEY
    with open(_server_log, "wb") as log:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        yield _await_listening_url(server)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _await_listening_url(server):
    """Reads the server's stdout until its `redrive listening on URL` line; keeps draining it."""
    lines = stdlib_queue.Queue()

    def pump():
        for line in server.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_S)
        except stdlib_queue.Empty:
            line = None
        if line is None:
            log_tail = _server_log.read_text(errors="replace")[-4000:]
            pytest.exit(
                f"redrive did not print '{LISTENING_PREFIX}URL' within {STARTUP_TIMEOUT_S}s "
                f"(exit code {server.poll()}); stdout: {seen!r}; stderr:\n{log_tail}",
                2,
            )
        if line.startswith(LISTENING_PREFIX):
            return line[len(LISTENING_PREFIX) :].strip()
        seen.append(line)


def pytest_terminal_summary(terminalreporter):
    if _server_log and (
        terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    ):
        terminalreporter.write_line(f"redrive server log: {_server_log}")


def _client(endpoint, botocore_session=None):
    session = boto3.Session(
        botocore_session=botocore_session,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    )
    # No retries: a retried 5xx or throttle would hide a server bug. Long polls last up to 20 s.
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
    return session.client("sqs", endpoint_url=endpoint, config=config)


@pytest.fixture(scope="session")
def sqs(endpoint):
    """A boto3 SQS client; botocore's current SQS model speaks JSON 1.0."""
    return _client(endpoint)


@pytest.fixture(scope="session")
def sqs_query(endpoint, tmp_path_factory):
    """A boto3 SQS client speaking the Query protocol (form-encoded requests, XML answers)."""
    model = query_model(botocore.loaders.create_loader().load_service_model("sqs", "service-2"))
    data_path = tmp_path_factory.mktemp("botocore-data")
    model_file = data_path / "sqs" / model["metadata"]["apiVersion"] / "service-2.json"
    model_file.parent.mkdir(parents=True)
    model_file.write_text(json.dumps(model))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(data_path))
    return _client(endpoint, session)


@pytest.fixture(params=["json", "query"])
def sqs_any(request):
    """The test runs twice: once over JSON 1.0, once over the Query protocol."""
    return request.getfixturevalue("sqs" if request.param == "json" else "sqs_query")


@dataclass(frozen=True)
class Queue:
    name: str
    url: str
    arn: str


@pytest.fixture
def queue_name(request):
    """Makes fresh queue names that start with the test's name."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name.removeprefix("test_"))[:40]

    def make(fifo=False):
        return f"{stem}-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")

    return make


@pytest.fixture
def queue(sqs, queue_name):
    """Creates a uniquely named queue: `queue(fifo=True, attributes={...}, tags={...})`."""

    def create(fifo=False, attributes=None, tags=None, name=None, client=sqs):
        name = name or queue_name(fifo)
        attributes = {**({"FifoQueue": "true"} if fifo else {}), **(attributes or {})}
        url = client.create_queue(QueueName=name, Attributes=attributes, tags=tags or {})[
            "QueueUrl"
        ]
        return Queue(name=name, url=url, arn=queue_arn(name))

    return create
