// A job that failed shows every attempt: outcome, worker, timing and the error's type, message
// and detail; its body pretty-printed, its attributes, and where it died.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { harness, until, screenshot } = require('./helpers.js');

const t = harness();

async function receiveOne(api, queue, worker) {
  return until(async () => (await api.receive(queue, 1, worker))[0], `a job from ${queue}`);
}

test('a failed job shows every attempt with its error', async () => {
  const { api, page, server } = t;
  await api.createQueue('charges', { max_attempts: 5 });
  const [id] = await api.enqueue('charges', [{
    body: '{"charge":{"amount":1250,"currency":"EUR"},"customer":"c-7"}',
    priority: 'high',
    attributes: { tenant: 'acme' },
  }]);
  const errors = [
    { type: 'TimeoutError', message: 'payments timed out after 30s', detail: 'at Gateway.charge (gateway.js:88)' },
    { type: 'ConnectionReset', message: 'peer reset the connection' },
    { type: 'CardDeclined', message: 'card 4242 declined: insufficient funds' },
  ];
  for (const [i, error] of errors.entries()) {
    const job = await receiveOne(api, 'charges', `worker-${i + 1}`);
    assert.equal(job.id, id);
    const last = i === errors.length - 1;
    await api.fail(job.receipt, error, last ? { non_retryable: true } : { retry_after_ms: 0 });
  }

  await page.goto(`${server.url}/ui/#/jobs/${id}`);
  const rows = page.locator('table.attempts tbody tr');
  await rows.nth(2).waitFor();
  assert.equal(await rows.count(), 3);
  for (const [i, error] of errors.entries()) {
    const row = page.locator(`tr[data-attempt="${i + 1}"]`);
    assert.equal(await row.locator('.error-type').innerText(), error.type);
    assert.equal(await row.locator('.error-message').innerText(), error.message);
    assert.match(await row.innerText(), new RegExp(`worker-${i + 1}`));
    assert.match(await row.innerText(), /failed/);
  }
  const detail = page.locator('tr[data-attempt="1"] details');
  await detail.locator('summary').click();
  assert.equal(await detail.locator('.error-detail').innerText(), errors[0].detail);

  // The body, pretty-printed; the attribute; where it died.
  const body = await page.locator('pre.job-body').innerText();
  assert.match(body, /^\{\n {2}"charge": \{\n {4}"amount": 1250,/);
  assert.match(await page.locator('table', { hasText: 'tenant' }).innerText(), /tenant\s+acme/);
  const lineage = await page.locator('section', { hasText: 'Lineage' }).innerText();
  assert.match(lineage, /non retryable in charges/);
  assert.match(await page.locator('h1').innerText(), /ready/, 'a dead letter is ready in the DLQ');
  assert.match(await page.locator('section', { hasText: 'Status' }).first().innerText(), /charges-dlq/);
  assert.equal(await page.locator('[data-testid="trace-link"]').count(), 0, 'no trace_id, no trace link');
  await screenshot(page, 'job');

  // Redriven from its page: back in charges, with its lineage.
  await page.locator('[data-testid="redrive-job"]').click();
  const dialog = page.locator('dialog[open]');
  await dialog.getByText('It would move back to charges.').waitFor();
  await dialog.getByRole('button', { name: 'Redrive (1)' }).click();
  await page.locator('section', { hasText: 'Lineage' }).getByText('Last redriven from').waitFor();
  const lineageAfter = await page.locator('section', { hasText: 'Lineage' }).innerText();
  assert.match(lineageAfter, /Redrives\s+1/);
  assert.match(lineageAfter, /Last redriven from\s+charges-dlq/);
  const status = await api.get(`/v1/jobs/${id}`);
  assert.equal(status.queue, 'charges');
  assert.equal(status.state, 'ready');
  assert.equal(await page.locator('table.attempts tbody tr').count(), 3, 'the attempt log is kept');
  assert.deepEqual(t.problems, []);
});

test("a job links to its creation context's trace", async () => {
  const { api, page, server } = t;
  await api.createQueue('traced');
  const [id] = await api.enqueue('traced', [{ body: 'x', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }]);
  await page.goto(`${server.url}/ui/`);
  await page.evaluate(() => localStorage.setItem('redrive.traceUrl', 'https://tracing.example/trace/{trace_id}'));
  await page.goto(`${server.url}/ui/#/jobs/${id}`);
  const link = page.locator('a[data-testid="trace-link"]');
  await link.waitFor();
  assert.equal(await link.getAttribute('href'), 'https://tracing.example/trace/4bf92f3577b34da6a3ce929d0e0e4736');
  await page.evaluate(() => localStorage.removeItem('redrive.traceUrl'));
  assert.deepEqual(t.problems, []);
});
