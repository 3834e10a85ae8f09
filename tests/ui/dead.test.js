// A dead-letter queue's page groups its dead jobs by failure; redriving a group (after its dry
// run) sends its jobs back until the list is empty. A dead job's body can be edited: the page
// shows the JSON Patch and a +/- diff, previews it, and the job runs again with the new body.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { harness, killJob, until, screenshot } = require('./helpers.js');

const t = harness();

const invalid = { type: 'ValidationError', message: 'field "amount": expected number, got string' };
const timeout = { type: 'TimeoutError', message: 'gateway timed out after 30s' };

async function redriveGroup(page, signatureText, count) {
  const row = page.locator('table.groups tbody tr', { hasText: signatureText });
  await row.getByRole('button', { name: 'Redrive group…' }).click();
  const dialog = page.locator('dialog[open]');
  await dialog.locator('[data-testid="redrive-preview"]').waitFor();
  assert.match(await dialog.locator('[data-testid="redrive-preview"]').innerText(), new RegExp(`^${count} dead job\\(s\\) would move`));
  await dialog.getByRole('button', { name: `Redrive (${count})` }).click();
  await dialog.waitFor({ state: 'detached' });
  await row.waitFor({ state: 'detached' });
}

test('redriving the groups of a DLQ empties it', async () => {
  const { api, page, server } = t;
  await api.createQueue('billing', { max_attempts: 1 });
  for (const n of [1, 2, 3]) await killJob(api, 'billing', JSON.stringify({ amount: `${n}.50` }), invalid);
  for (const n of [4, 5]) await killJob(api, 'billing', JSON.stringify({ amount: n }), timeout);

  await page.goto(`${server.url}/ui/#/dead/billing-dlq`);
  const groups = page.locator('table.groups tbody tr');
  await groups.nth(1).waitFor();
  assert.equal(await groups.count(), 2);
  const first = await groups.nth(0).innerText();
  assert.match(first, /ValidationError/);
  assert.match(first, /\b3\b/);
  await page.locator('table.dead-jobs tbody tr').nth(4).waitFor();
  assert.equal(await page.locator('table.dead-jobs tbody tr').count(), 5);
  await screenshot(page, 'dead-letters');

  await redriveGroup(page, 'ValidationError', 3);
  await until(async () => (await api.get('/v1/queues/billing')).stats.counts.ready === 3, 'three jobs back in billing');
  await page.locator('table.dead-jobs tbody tr').nth(2).waitFor({ state: 'detached' });
  assert.equal(await page.locator('table.dead-jobs tbody tr').count(), 2);

  await redriveGroup(page, 'TimeoutError', 2);
  await page.locator('[data-testid="no-dead"]').waitFor();
  assert.equal((await api.get('/v1/queues/billing-dlq/dead')).jobs.length, 0);
  assert.equal((await api.get('/v1/queues/billing')).stats.counts.ready, 5);
  assert.deepEqual(t.problems, []);
});

test('a dead job is redriven with an edited body, sent as a JSON Patch', async () => {
  const { api, page, server } = t;
  await api.createQueue('refunds', { max_attempts: 1 });
  const id = await killJob(api, 'refunds', JSON.stringify({ refund: { amount: '12.50', currency: 'EUR' }, note: 'late' }), invalid);

  await page.goto(`${server.url}/ui/#/dead/refunds-dlq`);
  await page.reload(); // a fresh page: no messages left from the test before
  await page.locator(`tr[data-job="${id}"]`).getByRole('button', { name: 'Edit body…' }).click();
  const dialog = page.locator('dialog[open]');
  const area = dialog.locator('#edit-body');
  const send = dialog.getByRole('button', { name: 'Redrive with this body' });
  assert.ok(await send.isDisabled(), 'sending waits for a preview');
  const edited = JSON.parse(await area.inputValue());
  edited.refund.amount = 12.5;
  delete edited.note;
  edited.reviewed = true;
  await area.fill(JSON.stringify(edited, null, 2));
  await dialog.getByRole('button', { name: 'Preview (dry run)' }).click();
  await dialog.locator('.preview-label').waitFor();
  const patch = JSON.parse(await dialog.locator('pre.patch').innerText());
  assert.deepEqual(patch, [
    { op: 'remove', path: '/note' },
    { op: 'replace', path: '/refund/amount', value: 12.5 },
    { op: 'add', path: '/reviewed', value: true },
  ]);
  const diff = await dialog.locator('pre.diff').innerText();
  assert.match(diff, /^- {5}"amount": "12\.50",$/m);
  assert.match(diff, /^\+ {5}"amount": 12\.5,$/m);
  assert.match(diff, /^- {3}"note": "late"$/m);
  assert.match(diff, /^\+ {3}"reviewed": true$/m);
  assert.match(await dialog.locator('.preview-label').innerText(), /would be redriven into refunds with exactly this body/);
  await screenshot(page, 'edit-body');
  assert.equal((await api.get('/v1/queues/refunds-dlq/dead')).jobs.length, 1, 'the dry run moved nothing');

  await send.click();
  await dialog.waitFor({ state: 'detached' });
  await page.locator('[data-testid="no-dead"]').waitFor();
  const [job] = await until(async () => {
    const got = await api.receive('refunds', 1, 'refund-worker');
    return got.length && got;
  }, 'the edited job');
  assert.deepEqual(JSON.parse(job.body), { refund: { amount: 12.5, currency: 'EUR' }, reviewed: true });
  assert.deepEqual(await api.ack([job.receipt]), { results: ['ok'] });
  assert.deepEqual(t.problems, []);
});
