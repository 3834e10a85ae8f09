"""Runs the Celery app in app.py against redrive and checks that every task was handled as on SQS.

It creates the dead-letter queue (kombu creates the app's queue itself on first use, with the
RedrivePolicy from the app's `sqs-creation-attributes`), publishes JOB_COUNT `add` tasks, runs a
real `celery worker` process until every task is settled, stops it, and checks: each good task
ran exactly once; each failing task ran exactly maxReceiveCount times and its message is in the
dead-letter queue, once; the app's queue is empty.

Usage: REDRIVE_SQS_ENDPOINT=http://127.0.0.1:PORT python run.py
Prints one line per check and ends with "N passed, N failed"; exits 1 if any check failed.
"""

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
JOB_COUNT = 300
SETTLE_DEADLINE_S = 90
WORKER_STOP_TIMEOUT_S = 30
POLL_INTERVAL_S = 0.25
# Once everything looks done the worker keeps polling this long: longer than a visibility
# timeout, so a message that was wrongly left in flight would be run a second time.
SETTLE_EXTRA_S = 3.5
EXPECTED_FAILURE_LOG = "raised unexpected: ValueError"


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def sqs_client(endpoint):
    # One attempt per call: a retried server error would hide a server bug.
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


COUNT_ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
EMPTY = {"visible": 0, "in_flight": 0, "delayed": 0}


def in_queue_counts(sqs, url):
    names = list(COUNT_ATTRIBUTES.values())
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {key: int(a[name]) for key, name in COUNT_ATTRIBUTES.items()}


def ledger_rows(path):
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=30)) as db:
        try:
            return db.execute("SELECT task_id, n, outcome, result FROM runs").fetchall()
        except sqlite3.OperationalError:  # the worker has not created the table yet
            return []


def drain_dead_letters(sqs, url):
    """Receives everything from the dead-letter queue, keeping it in flight so nothing repeats."""
    messages, empty_polls = [], 0
    while empty_polls < 2:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=120,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        empty_polls = empty_polls + 1 if not batch else 0
        messages.extend(batch)
    return messages


def task_id_of(sqs_message):
    """The Celery task id in a message kombu sent: base64 of a JSON envelope with headers."""
    return json.loads(base64.b64decode(sqs_message["Body"]))["headers"]["id"]


def describe(items, limit=10):
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{items[:limit]}{more}"


def main():
    endpoint = os.environ["REDRIVE_SQS_ENDPOINT"]
    workdir = Path(os.environ.get("APPS_WORKDIR") or tempfile.mkdtemp(prefix="apps-celery-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ledger = workdir / "ledger.sqlite"
    worker_log = workdir / "worker.log"
    prefix = f"apps-celery-{uuid.uuid4().hex[:8]}-"
    checks = Checks()
    sqs = sqs_client(endpoint)

    dlq_url = sqs.create_queue(QueueName=f"{prefix}jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    os.environ.update(APPS_QUEUE_PREFIX=prefix, APPS_DLQ_ARN=dlq_arn, APPS_LEDGER=str(ledger))
    sys.path.insert(0, str(HERE))
    import app  # reads the environment set just above

    jobs = Jobs(
        failing={n for n in range(JOB_COUNT) if n % app.FAIL_EVERY == 0},
        max_receives=app.MAX_RECEIVE_COUNT,
        task_ids={n: f"add-{n}-{uuid.uuid4().hex[:12]}" for n in range(JOB_COUNT)},
    )
    started = time.monotonic()
    for n, task_id in jobs.task_ids.items():
        app.add.apply_async((n, n, 2 * n), task_id=task_id)
    print(f"     published {JOB_COUNT} tasks in {time.monotonic() - started:.1f} s", flush=True)

    queue_url = sqs.get_queue_url(QueueName=f"{prefix}{app.QUEUE}")["QueueUrl"]
    check_created_queue(checks, sqs, queue_url, dlq_arn, app.VISIBILITY_TIMEOUT_S, jobs)
    run_worker(checks, sqs, queue_url, ledger, worker_log, jobs, app.QUEUE)
    check_runs(checks, ledger_rows(ledger), jobs)
    check_worker_log(checks, worker_log, jobs)
    check_queues(checks, sqs, queue_url, dlq_url, jobs)

    sqs.delete_queue(QueueUrl=queue_url)
    sqs.delete_queue(QueueUrl=dlq_url)
    if checks.failed:
        print(f"     worker log: {worker_log}")
    print(f"celery: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 else 1


@dataclass(frozen=True)
class Jobs:
    """The published tasks: n -> Celery task id; which n fail; how often a failure is received."""

    failing: set
    max_receives: int
    task_ids: dict

    @property
    def good(self):
        return set(self.task_ids) - self.failing

    @cached_property
    def _n_by_task_id(self):
        return {task_id: n for n, task_id in self.task_ids.items()}

    def n_of(self, task_id):
        return self._n_by_task_id.get(task_id, -1)

    def all_ran(self, runs):
        return all(runs[n] >= 1 for n in self.good) and all(
            runs[n] >= self.max_receives for n in self.failing
        )


def check_created_queue(checks, sqs, queue_url, dlq_arn, visibility_timeout_s, jobs):
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
    )["Attributes"]
    policy = json.loads(attributes.get("RedrivePolicy", "{}"))
    checks.check(
        "kombu creates the queue with its VisibilityTimeout and RedrivePolicy",
        attributes.get("VisibilityTimeout") == str(visibility_timeout_s)
        and policy.get("deadLetterTargetArn") == dlq_arn
        and int(policy.get("maxReceiveCount", 0)) == jobs.max_receives,
        json.dumps(attributes),
    )
    counts = in_queue_counts(sqs, queue_url)
    checks.check(
        f"the queue holds the {JOB_COUNT} published tasks",
        counts == {**EMPTY, "visible": JOB_COUNT},
        json.dumps(counts),
    )


def run_worker(checks, sqs, queue_url, ledger, worker_log, jobs, queue):
    """Runs `celery worker` until every task is settled (or the deadline), then stops it."""
    command = [
        sys.executable, "-m", "celery", "-A", "app", "worker",
        "--pool=solo", "--loglevel=INFO", "-Q", queue,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen(command, cwd=HERE, stdout=log, stderr=subprocess.STDOUT)
    try:
        settled, elapsed_s = wait_until_settled(sqs, queue_url, ledger, jobs, worker)
        if settled:
            time.sleep(SETTLE_EXTRA_S)
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    checks.check(
        "the worker settles every task before the deadline",
        settled,
        f"after {elapsed_s:.0f} s (worker exit code {worker.returncode})",
    )
    print(f"     worked off in {elapsed_s:.1f} s", flush=True)
    checks.check(
        "the worker stops cleanly on SIGTERM",
        worker.returncode == 0,
        f"exit code {worker.returncode}",
    )


def wait_until_settled(sqs, queue_url, ledger, jobs, worker):
    """Waits until every good task ran, every failing one ran maxReceiveCount times and the
    queue is empty (the last failures moved to the dead-letter queue). Returns (settled, s)."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_DEADLINE_S and worker.poll() is None:
        time.sleep(POLL_INTERVAL_S)
        runs = Counter(n for _, n, _, _ in ledger_rows(ledger))
        if jobs.all_ran(runs) and in_queue_counts(sqs, queue_url) == EMPTY:
            return True, time.monotonic() - started
    return False, time.monotonic() - started


def check_runs(checks, rows, jobs):
    runs = Counter(n for _, n, _, _ in rows)
    strangers = [(task_id, n) for task_id, n, _, _ in rows if jobs.task_ids.get(n) != task_id]
    checks.check("every run belongs to a published task", not strangers, describe(strangers))
    not_once = {n: runs[n] for n in jobs.good if runs[n] != 1}
    checks.check(
        f"each of the {len(jobs.good)} good tasks runs exactly once",
        not not_once,
        describe(f"task {n} ran {c}x" for n, c in not_once.items()),
    )
    wrong = [n for _, n, outcome, result in rows if outcome == "ok" and result != 3 * n]
    checks.check("good tasks compute their result", not wrong, describe(wrong))
    not_max = {n: runs[n] for n in jobs.failing if runs[n] != jobs.max_receives}
    checks.check(
        f"each of the {len(jobs.failing)} failing tasks runs exactly maxReceiveCount "
        f"({jobs.max_receives}) times",
        not not_max,
        describe(f"task {n} ran {c}x" for n, c in not_max.items()),
    )


def check_worker_log(checks, worker_log, jobs):
    lines = worker_log.read_text(errors="replace").splitlines()
    failures = [line for line in lines if EXPECTED_FAILURE_LOG in line]
    expected = len(jobs.failing) * jobs.max_receives
    checks.check(
        "the worker logs one task failure per failed run",
        len(failures) == expected,
        f"{len(failures)}, expected {expected}",
    )
    problems = [
        line
        for line in lines
        if any(level in line for level in ("WARNING/", "ERROR/", "CRITICAL/"))
        and EXPECTED_FAILURE_LOG not in line
    ]
    checks.check(
        "the worker logs no other warning or error", not problems, " | ".join(problems[:5])
    )


def check_queues(checks, sqs, queue_url, dlq_url, jobs):
    counts = in_queue_counts(sqs, queue_url)
    checks.check(
        "the queue is empty (nothing visible, in flight or delayed)",
        counts == EMPTY,
        json.dumps(counts),
    )
    dead = drain_dead_letters(sqs, dlq_url)
    dead_n = Counter(jobs.n_of(task_id_of(m)) for m in dead)
    unexpected = [n for n, c in dead_n.items() if n not in jobs.failing or c > 1]
    checks.check(
        "the dead-letter queue holds exactly the failing tasks, each once",
        dead_n == Counter(jobs.failing),
        f"{len(dead)} received; missing {describe(jobs.failing - set(dead_n))}; "
        f"unexpected or repeated {describe(unexpected)}",
    )


if __name__ == "__main__":
    sys.exit(main())
