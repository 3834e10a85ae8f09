// What every browser test needs: its own redrive server (a free loopback port, a temporary
// data directory, killed at the end), the HTTP API to seed data with, a headless Chromium, and
// screenshots under target/ui-screenshots/.
//
// Environment: REDRIVE_BIN (default target/debug/redrive), CHROMIUM (default /usr/bin/chromium),
// REDRIVE_UI_DIR (passed on to the server: serve the dashboard's files from disk).

'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.REDRIVE_BIN || path.join(ROOT, 'target', 'debug', 'redrive');
const SHOTS = path.join(ROOT, 'target', 'ui-screenshots');
// Generous: the machine may be busy building; every wait is for a condition, never a sleep.
const WAIT_MS = 30000;

/**
 * Starts `redrive serve` on 127.0.0.1:0 and resolves once it printed its address.
 * opts.args: extra flags; opts.env: extra environment.
 */
async function startServer(opts = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'redrive-ui-'));
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...(opts.args || [])], {
    env: { ...process.env, REDRIVE_LOG: process.env.REDRIVE_LOG || 'warn', ...(opts.env || {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within ${WAIT_MS} ms:\n${log}`)), WAIT_MS);
    const onData = (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/$/, ''));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (c) => (log += c));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${log}`));
    });
  });
  return {
    url,
    dataDir,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A client of the server's HTTP API: api('POST', '/v1/…', body) → parsed JSON; throws on non-2xx. */
function client(baseUrl, token) {
  const call = async (method, p, body, { raw } = {}) => {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(baseUrl + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (raw) return { status: res.status, text, json: text ? safeJson(text) : null };
    if (!res.ok) throw new Error(`${method} ${p}: HTTP ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return {
    call,
    get: (p) => call('GET', p),
    post: (p, body) => call('POST', p, body === undefined ? {} : body),
    put: (p, body) => call('PUT', p, body),
    raw: (method, p, body) => call(method, p, body, { raw: true }),
    createQueue: (name, config = {}) => call('PUT', `/v1/queues/${name}`, config),
    async enqueue(queue, jobs) {
      const r = await call('POST', `/v1/queues/${queue}/jobs`, { jobs });
      return r.jobs.map((j) => j.id);
    },
    async receive(queue, max = 1, workerId = 'test-worker') {
      const r = await call('POST', `/v1/queues/${queue}/receive`, { max, worker_id: workerId });
      return r.jobs;
    },
    fail: (receipt, error, extra = {}) => call('POST', '/v1/fail', { receipt, error, ...extra }),
    ack: (receipts) => call('POST', '/v1/ack', { receipts }),
  };
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** A headless Chromium (Debian's), with nothing that would reach for the network. */
async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A page at 1280x800 whose console errors and failed page loads fail the test through
 * `problems` (checked by the caller at the end).
 */
async function newPage(browser, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: opts.colorScheme || 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // 401/403/404 answers the page expects and shows are logged by the browser as failed loads.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { context, page, problems };
}

async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** Polls `fn` until it returns a truthy value (for conditions outside the page). */
async function until(fn, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Makes a job die: enqueue into `queue` (max_attempts 1 there), receive it, fail it. */
async function killJob(api, queue, body, error, extra = {}) {
  const [id] = await api.enqueue(queue, [{ body, ...extra }]);
  const jobs = await until(async () => {
    const got = await api.receive(queue, 1, 'worker-1');
    return got.length && got;
  }, `job ${id} to be received`);
  if (jobs[0].id !== id) throw new Error(`received ${jobs[0].id}, expected ${id}`);
  await api.fail(jobs[0].receipt, error, { non_retryable: true });
  return id;
}

module.exports = { startServer, client, launchBrowser, newPage, screenshot, until, killJob, WAIT_MS, ROOT };

/**
 * The usual start of a test file: a server, its API client, a browser and a page, made in the
 * file's before() hook and released in its after() hook. Returns the object that holds them.
 */
function harness({ serverOpts, token, colorScheme } = {}) {
  const { before, after } = require('node:test');
  const t = { server: null, api: null, browser: null, page: null, problems: null };
  before(async () => {
    t.server = await startServer(serverOpts);
    t.api = client(t.server.url, token);
    t.browser = await launchBrowser();
    Object.assign(t, await newPage(t.browser, { colorScheme }));
  });
  after(async () => {
    if (t.browser) await t.browser.close();
    if (t.server) await t.server.stop();
  });
  return t;
}

module.exports.harness = harness;
