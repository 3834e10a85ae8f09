"""A Celery app on the SQS broker transport, configured as one would configure it for Amazon SQS
and pointed at redrive. `run.py` publishes its tasks and runs its worker.

Settings come from the environment (set by run.py):
- REDRIVE_SQS_ENDPOINT: the server's base URL, e.g. http://127.0.0.1:9324
- APPS_QUEUE_PREFIX: prefix of this run's SQS queue names (the app's one queue is <prefix>jobs)
- APPS_DLQ_ARN: the dead-letter queue named in the queue's RedrivePolicy
- APPS_LEDGER: SQLite file in which every task execution is written down
"""

import os
import sqlite3
import time
from contextlib import closing
from urllib.parse import urlsplit

from celery import Celery

QUEUE = "jobs"
FAIL_EVERY = 10  # tasks 0, 10, 20, … always raise
VISIBILITY_TIMEOUT_S = 2
MAX_RECEIVE_COUNT = 2
LEDGER_BUSY_TIMEOUT_S = 30

endpoint = urlsplit(os.environ["REDRIVE_SQS_ENDPOINT"])

app = Celery("app")
app.conf.update(
    # kombu builds the endpoint from the broker URL's host and port, http because is_secure is
    # False; any key and secret are accepted by a server without --auth.
    broker_url=f"sqs://key:secret@{endpoint.hostname}:{endpoint.port}",
    broker_transport_options={
        "region": "us-east-1",
        "is_secure": False,
        "queue_name_prefix": os.environ["APPS_QUEUE_PREFIX"],
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "wait_time_seconds": 1,
        "polling_interval": 0.1,
        # Given to CreateQueue when kombu creates the queue on first use.
        "sqs-creation-attributes": {
            "RedrivePolicy": (
                '{"deadLetterTargetArn": "%s", "maxReceiveCount": "%d"}'
                % (os.environ["APPS_DLQ_ARN"], MAX_RECEIVE_COUNT)
            ),
        },
    },
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # A task's message is deleted only once the task has succeeded. A failure rejects it
    # without requeueing, which kombu leaves to the queue's RedrivePolicy: redelivered after the
    # visibility timeout, moved to the dead-letter queue after maxReceiveCount receives.
    task_acks_late=True,
    task_acks_on_failure_or_timeout=False,
    task_reject_on_worker_lost=True,
    # SQS has no fanout without SNS: no remote control, events, gossip or mingle.
    worker_enable_remote_control=False,
    worker_send_task_events=False,
)


def _ledger():
    db = sqlite3.connect(os.environ["APPS_LEDGER"], timeout=LEDGER_BUSY_TIMEOUT_S)
    db.execute(
        "CREATE TABLE IF NOT EXISTS runs (task_id TEXT, n INTEGER, outcome TEXT, result INTEGER,"
        " at REAL)"
    )
    return db


@app.task(bind=True, name="app.add")
def add(self, n, x, y):
    """Adds x and y; task n fails when n is a multiple of FAIL_EVERY."""
    failing = n % FAIL_EVERY == 0
    with closing(_ledger()) as db, db:
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
            (self.request.id, n, "raised" if failing else "ok", x + y, time.time()),
        )
    if failing:
        raise ValueError(f"task {n} fails on purpose")
    return x + y
