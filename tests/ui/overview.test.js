// The overview lists every queue with its counts by state, its dead letters and its DLQ, and
// keeps them current without a reload; the theme toggle gives the dark look; on a phone's
// width the table scrolls instead of squeezing.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { harness, killJob, screenshot } = require('./helpers.js');

const t = harness();

const cell = (page, queue, state) => page.locator(`tr[data-queue="${queue}"] td[data-state="${state}"]`);

test('the overview shows the seeded queues with their counts, live', async () => {
  const { api, page, server } = t;
  await api.createQueue('orders', { max_attempts: 3 });
  await api.createQueue('emails');
  await api.createQueue('payments', { max_attempts: 1 });
  await api.enqueue('orders', [
    { body: '{"order": 1}', priority: 'high' },
    { body: '{"order": 2}' },
    { body: '{"order": 3}' },
    { body: '{"order": 4}', delay_ms: 600000 },
  ]);
  await api.enqueue('emails', [{ body: '{"to": "ada@example.com"}' }, { body: '{"to": "bob@example.com"}' }]);
  await api.receive('emails', 1, 'mailer-1');
  for (const n of [1, 2]) {
    await killJob(api, 'payments', JSON.stringify({ amount: '12.50', n }),
      { type: 'ValidationError', message: 'field "amount": expected number, got string' });
  }

  await page.goto(`${server.url}/ui`); // the page, without the trailing slash, finds its files
  await page.locator('tr[data-queue="orders"]').waitFor();
  for (const name of ['orders', 'orders-dlq', 'emails', 'emails-dlq', 'payments', 'payments-dlq']) {
    await page.locator(`tr[data-queue="${name}"]`).waitFor();
  }
  assert.equal(await cell(page, 'orders', 'ready').innerText(), '3');
  assert.equal(await cell(page, 'orders', 'delayed').innerText(), '1');
  assert.equal(await cell(page, 'emails', 'ready').innerText(), '1');
  assert.equal(await cell(page, 'emails', 'leased').innerText(), '1');
  assert.equal(await cell(page, 'payments-dlq', 'ready').innerText(), '2');
  const orders = page.locator('tr[data-queue="orders"]');
  assert.match(await orders.innerText(), /1 · 2 · 0/, 'ready by priority: high · standard · low');
  assert.match(await page.locator('tr[data-queue="payments"]').innerText(), /payments-dlq \(2\)/);
  assert.equal(await page.locator('tr[data-queue="payments-dlq"] [data-testid="dead-letters"]').innerText(), '2');

  // Charts come from /v1/history, sampled every 10 s: once two points exist they are drawn.
  const [job] = await api.receive('orders', 1, 'worker-1');
  await api.ack([job.receipt]);
  // Live: the counts follow without a reload.
  await page.locator('tr[data-queue="orders"] td[data-state="ready"]', { hasText: /^2$/ }).waitFor();
  const charts = page.locator('figure.chart');
  await charts.first().locator('svg.chart-svg').waitFor({ timeout: 60000 });
  assert.deepEqual(await charts.locator('figcaption').allInnerTexts(),
    ['Throughput (jobs per second)', 'Depth (jobs by state)', 'Oldest ready job (largest over queues)']);
  assert.match(await charts.first().locator('.legend').innerText(), /enqueued\s+acked\s+failed\s+dead-lettered/);
  await screenshot(page, 'overview');

  // A job enqueued elsewhere shows up too.
  await api.enqueue('orders', [{ body: '{"order": 5}' }]);
  await page.locator('tr[data-queue="orders"] td[data-state="ready"]', { hasText: /^3$/ }).waitFor();

  // Dark, by the toggle (auto → dark).
  await page.locator('#theme').click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(18, 21, 26)');
  await screenshot(page, 'overview-dark');
  await page.locator('#theme').click();
  await page.locator('#theme').click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), undefined);
  // Auto follows the system's preference.
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(18, 21, 26)');
  await page.emulateMedia({ colorScheme: 'light' });
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(246, 247, 249)');

  // A hidden tab stops polling and says so; shown again, it catches up at once.
  const setHidden = (hidden) => page.evaluate((v) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => v });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  await setHidden(true);
  await page.locator('#live', { hasText: 'paused while hidden' }).waitFor();
  await api.enqueue('orders', [{ body: '{"order": 6}' }]);
  await setHidden(false);
  await page.locator('tr[data-queue="orders"] td[data-state="ready"]', { hasText: /^4$/ }).waitFor();
  await page.locator('#live', { hasText: 'live' }).waitFor();

  // A phone: the table scrolls sideways inside its box, the page itself does not.
  await page.setViewportSize({ width: 390, height: 800 });
  const wrap = page.locator('#queues .table-wrap');
  assert.ok(await wrap.evaluate((el) => el.scrollWidth > el.clientWidth), 'the queue table scrolls');
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'the page does not');
  await screenshot(page, 'overview-phone');
  assert.deepEqual(t.problems, []);
});
