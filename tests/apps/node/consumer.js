// An sqs-consumer worker, written as an application would write it for Amazon SQS, pointed at
// redrive. It sends JOB_COUNT jobs to a queue whose RedrivePolicy names a dead-letter queue, runs
// a Consumer whose handler always throws for every FAIL_EVERY-th job and holds every SLOW_EVERY-th
// one longer than the visibility timeout (the consumer's heartbeat must keep it hidden), then
// checks what SQS promises: each good job handled once and deleted, each failing job received
// MAX_RECEIVE_COUNT times and then found, once, in the dead-letter queue, and the main queue empty.
//
// Usage: REDRIVE_SQS_ENDPOINT=http://127.0.0.1:PORT node consumer.js
// Prints one line per check and ends with "N passed, N failed"; exits 1 if any check failed.

import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ListDeadLetterSourceQueuesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { Consumer } from "sqs-consumer";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

const JOB_COUNT = 300;
const FAIL_EVERY = 10; // jobs 0, 10, 20, … always throw
const SLOW_EVERY = 97; // jobs 7, 104, 201, 298 (none failing) outlast the visibility timeout
const SLOW_OFFSET = 7;
const SLOW_HANDLER_MS = 2_500;
const VISIBILITY_TIMEOUT_S = 2;
const HEARTBEAT_INTERVAL_S = 1;
const MAX_RECEIVE_COUNT = 2;
const SEND_BATCH_COUNT_MAX = 10;
const DONE_DEADLINE_MS = 90_000;
// Once everything looks done the consumer keeps polling this long: longer than a visibility
// timeout, so a message that was wrongly left in flight would be delivered a second time.
const SETTLE_MS = (VISIBILITY_TIMEOUT_S + 1.5) * 1000;

const endpoint = process.env.REDRIVE_SQS_ENDPOINT;
if (!endpoint) {
  console.error("set REDRIVE_SQS_ENDPOINT to the redrive server's base URL");
  process.exit(2);
}

// maxAttempts 1: a retried server error would hide a server bug; every failed call must show.
const sqs = new SQSClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "x", secretAccessKey: "x" },
  maxAttempts: 1,
});

const isFailing = (n) => n % FAIL_EVERY === 0;
const isSlow = (n) => !isFailing(n) && n % SLOW_EVERY === SLOW_OFFSET;

const results = { passed: 0, failed: 0 };
function check(name, ok, detail = "") {
  if (ok) {
    results.passed += 1;
    console.log(`ok   ${name}`);
  } else {
    results.failed += 1;
    console.log(`FAIL ${name}${detail ? `: ${detail}` : ""}`);
  }
}

async function queueAttributes(QueueUrl, names) {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: names }));
  return out.Attributes ?? {};
}

async function inQueueCounts(QueueUrl) {
  const a = await queueAttributes(QueueUrl, [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
  ]);
  return {
    visible: Number(a.ApproximateNumberOfMessages),
    inFlight: Number(a.ApproximateNumberOfMessagesNotVisible),
    delayed: Number(a.ApproximateNumberOfMessagesDelayed),
  };
}

async function createQueues() {
  const stem = `apps-node-${randomBytes(4).toString("hex")}`;
  const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${stem}-dlq` }))).QueueUrl;
  const { QueueArn: dlqArn } = await queueAttributes(dlqUrl, ["QueueArn"]);
  const redrivePolicy = { deadLetterTargetArn: dlqArn, maxReceiveCount: String(MAX_RECEIVE_COUNT) };
  const created = await sqs.send(
    new CreateQueueCommand({
      QueueName: stem,
      Attributes: {
        VisibilityTimeout: String(VISIBILITY_TIMEOUT_S),
        RedrivePolicy: JSON.stringify(redrivePolicy),
      },
    }),
  );
  const url = created.QueueUrl;
  const a = await queueAttributes(url, ["VisibilityTimeout", "RedrivePolicy"]);
  const policy = a.RedrivePolicy ? JSON.parse(a.RedrivePolicy) : {};
  check(
    "CreateQueue keeps VisibilityTimeout and RedrivePolicy",
    a.VisibilityTimeout === String(VISIBILITY_TIMEOUT_S) &&
      policy.deadLetterTargetArn === dlqArn &&
      Number(policy.maxReceiveCount) === MAX_RECEIVE_COUNT,
    JSON.stringify(a),
  );
  return { url, dlqUrl };
}

/** Sends jobs 0..JOB_COUNT-1 in batches; returns the MessageId of each job. */
async function sendJobs(QueueUrl) {
  const ids = new Map();
  const failures = [];
  for (let first = 0; first < JOB_COUNT; first += SEND_BATCH_COUNT_MAX) {
    const entries = [];
    for (let n = first; n < Math.min(first + SEND_BATCH_COUNT_MAX, JOB_COUNT); n++) {
      entries.push({ Id: `job-${n}`, MessageBody: JSON.stringify({ job: n }) });
    }
    const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl, Entries: entries }));
    for (const ok of out.Successful ?? []) ids.set(Number(ok.Id.slice(4)), ok.MessageId);
    failures.push(...(out.Failed ?? []));
  }
  check(
    `SendMessageBatch accepts all ${JOB_COUNT} jobs`,
    ids.size === JOB_COUNT && failures.length === 0,
    `${ids.size} sent, failed entries: ${JSON.stringify(failures.slice(0, 3))}`,
  );
  return ids;
}

/** Runs the consumer until every job is settled; returns what the handler and events saw. */
async function consume(QueueUrl) {
  const deliveries = new Map(); // job -> ApproximateReceiveCount of each delivery, in order
  const processed = new Map(); // job -> number of 'message_processed' events (deleted)
  const queueErrors = [];
  // Receipts whose handler has returned: sqs-consumer deletes the message next, and a heartbeat
  // that fires while that delete is under way asks to hide a message that is gone. SQS refuses
  // that change too; it is the client's race, not a lost or repeated job.
  const handled = new Set();
  const lateHeartbeats = [];
  let processingErrors = 0;

  const consumer = Consumer.create({
    queueUrl: QueueUrl,
    sqs,
    batchSize: 10,
    waitTimeSeconds: 1,
    visibilityTimeout: VISIBILITY_TIMEOUT_S,
    heartbeatInterval: HEARTBEAT_INTERVAL_S,
    messageSystemAttributeNames: ["ApproximateReceiveCount"],
    pollingCompleteWaitTimeMs: 5_000,
    handleMessage: async (message) => {
      const { job } = JSON.parse(message.Body);
      const count = Number(message.Attributes?.ApproximateReceiveCount);
      deliveries.set(job, [...(deliveries.get(job) ?? []), count]);
      if (isFailing(job)) throw new Error(`job ${job} fails on purpose`);
      if (isSlow(job)) await sleep(SLOW_HANDLER_MS);
      handled.add(message.ReceiptHandle);
      return message;
    },
  });
  consumer.on("message_processed", (message) => {
    const { job } = JSON.parse(message.Body);
    processed.set(job, (processed.get(job) ?? 0) + 1);
  });
  consumer.on("processing_error", () => {
    processingErrors += 1;
  });
  consumer.on("error", (err, message) => {
    const heartbeat = err.message.startsWith("Error changing visibility timeout");
    if (heartbeat && handled.has(message?.ReceiptHandle)) {
      lateHeartbeats.push(JSON.parse(message.Body).job);
    } else {
      queueErrors.push(err.message);
    }
  });

  const started = Date.now();
  consumer.start();
  const goodCount = JOB_COUNT - Math.ceil(JOB_COUNT / FAIL_EVERY);
  let settled = false;
  while (Date.now() - started < DONE_DEADLINE_MS) {
    await sleep(250);
    const goodDone = [...processed.keys()].filter((n) => !isFailing(n)).length === goodCount;
    if (!goodDone) continue;
    const c = await inQueueCounts(QueueUrl);
    if (c.visible === 0 && c.inFlight === 0 && c.delayed === 0) {
      settled = true;
      break;
    }
  }
  const elapsedMs = Date.now() - started;
  await sleep(SETTLE_MS);
  const stopped = new Promise((resolve) => consumer.once("stopped", resolve));
  consumer.stop();
  await stopped;
  check(
    "the consumer settles every job before the deadline",
    settled,
    `after ${DONE_DEADLINE_MS} ms: ${processed.size} jobs processed`,
  );
  console.log(`     consumed in ${(elapsedMs / 1000).toFixed(1)} s`);
  if (lateHeartbeats.length > 0) {
    console.log(`     heartbeats that raced their message's delete: jobs ${sample(lateHeartbeats)}`);
  }
  return { deliveries, processed, queueErrors, processingErrors };
}

/** Receives everything from the dead-letter queue, keeping it in flight so nothing repeats. */
async function drainDeadLetters(QueueUrl) {
  const messages = [];
  let emptyPolls = 0;
  while (emptyPolls < 2) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        VisibilityTimeout: 120,
        MessageSystemAttributeNames: ["All"],
      }),
    );
    const batch = out.Messages ?? [];
    emptyPolls = batch.length === 0 ? emptyPolls + 1 : 0;
    messages.push(...batch);
  }
  return messages;
}

/** At most ten items, then how many more: enough to tell what went wrong. */
function sample(items) {
  const list = [...items];
  const more = list.length > 10 ? ` and ${list.length - 10} more` : "";
  return `${list.slice(0, 10).join(", ")}${more}`;
}

/** Checks the receive counts the handler saw per job against the expected ones. */
function checkDeliveries(name, jobs, deliveries, expected) {
  const want = JSON.stringify(expected);
  const wrong = jobs.filter((n) => JSON.stringify(deliveries.get(n) ?? []) !== want);
  check(
    name,
    wrong.length === 0,
    sample(wrong.map((n) => `job ${n}: ${JSON.stringify(deliveries.get(n) ?? [])}`)),
  );
}

async function checkConsumption(ids, { deliveries, processed, queueErrors, processingErrors }) {
  const failing = [...ids.keys()].filter(isFailing);
  const good = [...ids.keys()].filter((n) => !isFailing(n));
  checkDeliveries(
    `each of the ${good.length} good jobs is handled exactly once (ApproximateReceiveCount 1)`,
    good,
    deliveries,
    [1],
  );
  const slow = good.filter(isSlow);
  checkDeliveries(
    `the heartbeat keeps the ${slow.length} slow jobs (${SLOW_HANDLER_MS} ms, visibility ` +
      `${VISIBILITY_TIMEOUT_S} s) from redelivery`,
    slow,
    deliveries,
    [1],
  );
  const receiveCounts = Array.from({ length: MAX_RECEIVE_COUNT }, (_, i) => i + 1);
  checkDeliveries(
    `each of the ${failing.length} failing jobs is handled maxReceiveCount times ` +
      `(ApproximateReceiveCount ${receiveCounts.join(", ")})`,
    failing,
    deliveries,
    receiveCounts,
  );
  const notDeleted = good.filter((n) => processed.get(n) !== 1);
  check(
    "each good job is deleted once (message_processed)",
    notDeleted.length === 0,
    sample(notDeleted),
  );
  check(
    "the consumer reports one processing_error per failed attempt",
    processingErrors === failing.length * MAX_RECEIVE_COUNT,
    `${processingErrors}, expected ${failing.length * MAX_RECEIVE_COUNT}`,
  );
  check("no SQS call of the consumer failed", queueErrors.length === 0, sample(queueErrors));
}

async function checkQueues(url, dlqUrl, ids) {
  const failing = new Set([...ids.keys()].filter(isFailing));
  const left = await inQueueCounts(url);
  check(
    "the main queue is empty (nothing visible, in flight or delayed)",
    left.visible === 0 && left.inFlight === 0 && left.delayed === 0,
    JSON.stringify(left),
  );
  const dlqCounts = await inQueueCounts(dlqUrl);
  check(
    `the dead-letter queue reports ${failing.size} visible messages`,
    dlqCounts.visible === failing.size && dlqCounts.inFlight === 0 && dlqCounts.delayed === 0,
    JSON.stringify(dlqCounts),
  );

  const dead = await drainDeadLetters(dlqUrl);
  const deadJobs = dead.map((m) => JSON.parse(m.Body).job);
  const missing = [...failing].filter((n) => !deadJobs.includes(n));
  const unexpected = deadJobs.filter((n, i) => !failing.has(n) || deadJobs.indexOf(n) !== i);
  check(
    "the dead-letter queue holds exactly the failing jobs, each once",
    deadJobs.length === failing.size && missing.length === 0 && unexpected.length === 0,
    `${deadJobs.length} received; missing: ${sample(missing)}; ` +
      `unexpected or repeated: ${sample(unexpected)}`,
  );
  const renamed = dead.filter((m) => m.MessageId !== ids.get(JSON.parse(m.Body).job));
  check("dead letters keep their MessageId", renamed.length === 0, `${renamed.length} changed`);
  const { QueueArn: mainArn } = await queueAttributes(url, ["QueueArn"]);
  const wrongSource = dead.filter((m) => m.Attributes?.DeadLetterQueueSourceArn !== mainArn);
  check(
    "dead letters carry the main queue's ARN as DeadLetterQueueSourceArn",
    wrongSource.length === 0,
    sample(wrongSource.map((m) => JSON.stringify(m.Attributes))),
  );
  const sources = await sqs.send(new ListDeadLetterSourceQueuesCommand({ QueueUrl: dlqUrl }));
  check(
    "ListDeadLetterSourceQueues names the main queue",
    JSON.stringify(sources.queueUrls) === JSON.stringify([url]),
    JSON.stringify(sources.queueUrls),
  );
}

async function main() {
  const { url, dlqUrl } = await createQueues();
  const ids = await sendJobs(url);
  await checkConsumption(ids, await consume(url));
  await checkQueues(url, dlqUrl, ids);
  await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
  await sqs.send(new DeleteQueueCommand({ QueueUrl: dlqUrl }));
}

try {
  await main();
} catch (err) {
  check("the run completes without an unexpected error", false, err.stack ?? String(err));
}
console.log(`sqs-consumer: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed === 0 ? 0 : 1);
