// A queue's page: its jobs filtered by state, payload path, attribute and text together; a bulk
// delete of everything the filter matches (previewed first); a test job sent from the page;
// pause and resume; purge after a confirmation.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { harness, screenshot } = require('./helpers.js');

const t = harness();

const rows = (page) => page.locator('table.jobs tbody tr');

async function applyFilter(page, fill) {
  const form = page.locator('form[aria-label="Filter jobs"]');
  await fill(form);
  await form.getByRole('button', { name: 'Apply filter' }).click();
}

test('jobs are filtered, deleted by filter, and a test job is sent', async () => {
  const { api, page, server } = t;
  await api.createQueue('invoices');
  await api.enqueue('invoices', [
    { body: JSON.stringify({ customer: { id: 42 }, total: 10 }), attributes: { tenant: 'acme' }, priority: 'high' },
    { body: JSON.stringify({ customer: { id: 42 }, total: 99 }), attributes: { tenant: 'globex' } },
    { body: JSON.stringify({ customer: { id: 7 }, total: 5 }), attributes: { tenant: 'acme' } },
    { body: 'a plain text invoice note', priority: 'low' },
    { body: JSON.stringify({ customer: { id: 42 }, total: 1 }), delay_ms: 3600000 },
  ]);

  await page.goto(`${server.url}/ui/#/queues/invoices`);
  await rows(page).nth(4).waitFor();
  assert.equal(await rows(page).count(), 5);
  assert.match(await page.locator('.jobs-list + div').innerText(), /5 shown, 5 scanned\. That is all\./);
  await screenshot(page, 'queue');

  // Path and attribute together: customer 42 at acme only.
  await applyFilter(page, (f) => f.locator('textarea[name="where"]').fill('$.customer.id=42\n@tenant=acme'));
  await rows(page).nth(1).waitFor({ state: 'detached' });
  assert.equal(await rows(page).count(), 1);
  assert.match(await rows(page).first().innerText(), /"total":10/);

  // State and text: the delayed one only, then text alone.
  await applyFilter(page, async (f) => {
    await f.locator('textarea[name="where"]').fill('');
    await f.getByLabel('ready').uncheck();
    await f.locator('input[name="text"]').fill('"total":1}');
  });
  await rows(page).first().filter({ hasText: 'delayed' }).waitFor();
  assert.equal(await rows(page).count(), 1);

  // Delete every ready job with priority low (previewed, then done).
  await applyFilter(page, async (f) => {
    await f.getByLabel('ready').check();
    await f.getByLabel('delayed').uncheck();
    await f.locator('input[name="text"]').fill('');
    await f.locator('select[name="priority"]').selectOption('low');
  });
  await rows(page).filter({ hasText: 'plain text invoice' }).waitFor();
  assert.equal(await rows(page).count(), 1);
  await page.locator('[data-testid="delete-matching"]').click();
  const dialog = page.locator('dialog[open]');
  await dialog.getByText('1 job(s) would be deleted').waitFor();
  assert.equal((await api.get('/v1/queues/invoices')).stats.counts.ready, 4, 'the preview deleted nothing');
  await dialog.getByRole('button', { name: 'Delete (1)' }).click();
  await page.locator('.jobs-list .empty').waitFor();
  assert.equal((await api.get('/v1/queues/invoices')).stats.counts.ready, 3);

  // A test job from the page.
  await page.getByText('Send a test job').click();
  await page.locator('textarea[name="body"]').fill('{"from": "the dashboard"}');
  await page.locator('select[name="priority"][aria-label="Priority"]').selectOption('high');
  await page.locator('[data-testid="send-test-job"]').click();
  const info = page.locator('#messages .msg-info', { hasText: 'Enqueued job' });
  await info.waitFor();
  const id = (await info.locator('a').getAttribute('href')).replace('#/jobs/', '');
  const job = await api.get(`/v1/jobs/${id}`);
  assert.equal(job.body, '{"from": "the dashboard"}');
  assert.equal(job.state, 'ready');
  assert.equal(job.priority, 'high');
  assert.deepEqual(t.problems, []);
});

test('pause, resume and purge', async () => {
  const { api, page, server } = t;
  await api.createQueue('reports');
  await api.enqueue('reports', [{ body: 'r1' }, { body: 'r2' }]);
  await page.goto(`${server.url}/ui/#/queues/reports`);
  const pause = page.locator('[data-testid="pause"]');
  await pause.waitFor();
  assert.match(await pause.innerText(), /Pause/);
  await pause.click();
  await page.locator('h1 .badge', { hasText: 'paused' }).waitFor();
  assert.equal((await api.get('/v1/queues/reports')).config.paused, true);
  assert.deepEqual(await api.receive('reports', 1, 'w'), [], 'a paused queue hands nothing out');
  await page.goto(`${server.url}/ui/#/`);
  await page.locator('tr[data-queue="reports"] .badge', { hasText: 'paused' }).waitFor();
  await page.goto(`${server.url}/ui/#/queues/reports`);
  await page.locator('[data-testid="pause"]', { hasText: 'Resume' }).click();
  await page.locator('h1 .badge', { hasText: 'running' }).waitFor();
  assert.equal((await api.get('/v1/queues/reports')).config.paused, false);

  await page.locator('[data-testid="purge"]').click();
  const dialog = page.locator('dialog[open]');
  assert.match(await dialog.innerText(), /every ready and delayed job of reports \(2 now\)/);
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await api.get('/v1/queues/reports')).stats.counts.ready, 2, 'cancelled: nothing purged');
  await page.locator('[data-testid="purge"]').click();
  await dialog.getByRole('button', { name: 'Purge' }).click();
  await page.locator('#messages .msg-info', { hasText: 'Purged 2 job(s)' }).waitFor();
  assert.equal((await api.get('/v1/queues/reports')).stats.counts.ready, 0);
  assert.deepEqual(t.problems, []);
});

test('latency percentiles are charted when the history carries them', async () => {
  const { api, page, server } = t;
  await api.createQueue('timed');
  // The history as a server that measures latencies answers it: two points, ten seconds apart.
  const at = (ms) => new Date(Date.now() - ms).toISOString();
  const point = (ms, n) => ({
    at: at(ms),
    queues: { timed: {
      ready: n, delayed: 0, leased: 1, dead: 0, dead_letters: 0, oldest_ready_age_ms: 100 * n,
      enqueued: 10 * n, acked: 9 * n, failed: n, dead_lettered: 0, delivered: 10 * n,
      start_p50_ms: 2, start_p95_ms: 9, start_p99_ms: 40, process_p50_ms: 120, process_p95_ms: 480, process_p99_ms: 950,
    } },
  });
  await page.route('**/v1/history?*', (route) => route.fulfill({ json: { step_ms: 10000, points: [point(10000, 1), point(0, 3)] } }));
  await page.goto(`${server.url}/ui/#/queues/timed`);
  const captions = page.locator('figure.chart figcaption');
  await captions.filter({ hasText: 'Processing time' }).waitFor();
  assert.deepEqual(await captions.allInnerTexts(),
    ['Throughput (jobs per second)', 'Depth (jobs by state)', 'Enqueue → start', 'Processing time']);
  const processing = page.locator('figure.chart', { hasText: 'Processing time' });
  assert.match(await processing.locator('.legend').innerText(), /p50\s+p95\s+p99/);
  assert.equal(await processing.locator('path.series').count(), 3);
  // Rates come from differencing the counters: 20 enqueued over 10 s.
  const throughput = page.locator('figure.chart', { hasText: 'Throughput' });
  const svg = throughput.locator('svg.chart-svg');
  const box = await svg.boundingBox();
  await svg.hover({ position: { x: box.width - 15, y: box.height / 2 } });
  assert.match(await throughput.locator('.chart-readout').innerText(), /enqueued 2\.0\/s, acked 1\.8\/s, failed 0\.2\/s/);
  await page.unroute('**/v1/history?*');
  assert.deepEqual(t.problems, []);
});

test('a long list is paged by following next', async () => {
  const { api, page, server } = t;
  await api.createQueue('bulk');
  await api.enqueue('bulk', Array.from({ length: 120 }, (_, i) => ({ body: JSON.stringify({ n: i }) })));
  await page.goto(`${server.url}/ui/#/queues/bulk`);
  await rows(page).nth(49).waitFor();
  assert.equal(await rows(page).count(), 50);
  await page.locator('[data-testid="more-jobs"]').click();
  await rows(page).nth(99).waitFor();
  await page.locator('[data-testid="more-jobs"]').click();
  await rows(page).nth(119).waitFor();
  assert.equal(await rows(page).count(), 120);
  assert.match(await page.locator('.jobs-list + div').innerText(), /120 shown.*That is all\./);
  assert.match(await rows(page).last().innerText(), /\{"n":119\}/);
  // Everything selected by the header box; the selection spans every page shown.
  await page.locator('table.jobs thead input[type="checkbox"]').check();
  assert.match(await page.locator('.bulk .count').innerText(), /^120 selected$/);
  assert.deepEqual(t.problems, []);
});
