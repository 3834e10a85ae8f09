// With --auth, the page asks for a key (a refused one is asked for again), keeps it for the
// tab, and with a read-only key shows the queues but offers no destructive action: its buttons
// are disabled, and one forced into action is refused with a 403 the page shows.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { harness, killJob, client, screenshot } = require('./helpers.js');

const adminId = 'ui-test-admin';
const adminSecret = crypto.randomBytes(24).toString('hex');
const t = harness({
  serverOpts: { args: ['--auth'], env: { REDRIVE_ADMIN_KEY_ID: adminId, REDRIVE_ADMIN_SECRET: adminSecret } },
  token: `${adminId}.${adminSecret}`,
});

test('a read-only key sees the queues and cannot change anything', async () => {
  const { api, page, server } = t;
  await api.createQueue('ledger', { max_attempts: 1 });
  await killJob(api, 'ledger', '{"entry": 3}', { type: 'ValidationError', message: 'unbalanced entry' });
  await api.enqueue('ledger', [{ body: '{"entry": 1}' }, { body: '{"entry": 2}' }]);
  const viewer = await api.post('/v1/keys', { name: 'viewer', allow: ['read:*'] });
  assert.equal((await client(server.url).raw('GET', '/v1/queues')).status, 401, 'the API wants a key');

  await page.goto(`${server.url}/ui/`);
  // Closed without a key: the refusal is shown, and the page waits to be given one.
  await page.locator('dialog[open]').getByRole('button', { name: 'Cancel' }).click();
  await page.locator('#messages .msg-error', { hasText: 'not authenticated' }).first().waitFor();
  await page.getByRole('button', { name: 'Enter a key' }).click();
  const input = page.locator('dialog[open] #key-input');
  await input.fill(`${viewer.id}.wrong-secret-wrong-secret`);
  await page.getByRole('button', { name: 'Use this key' }).click();
  // Refused: asked again, saying so.
  await page.locator('dialog[open]', { hasText: 'refused this key' }).waitFor();
  await screenshot(page, 'key-prompt');
  await page.locator('dialog[open] #key-input').fill(viewer.token);
  await page.getByRole('button', { name: 'Use this key' }).click();
  await page.locator('tr[data-queue="ledger"]').waitFor();
  assert.equal(await page.locator('tr[data-queue="ledger"] td[data-state="ready"]').innerText(), '2');
  assert.match(await page.locator('#who').innerText(), new RegExp(`viewer\\s+${viewer.id}`));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('redrive.token')), viewer.token);
  assert.equal(await page.locator('#messages .msg-error').count(), 0, 'the refusals before the key are cleared');

  // The queue page: reading works, every change is disabled.
  await page.goto(`${server.url}/ui/#/queues/ledger`);
  await page.locator('table.jobs tbody tr').nth(1).waitFor();
  for (const id of ['pause', 'purge', 'delete-matching', 'redrive-matching', 'send-test-job']) {
    const b = page.locator(`[data-testid="${id}"]`);
    assert.ok(await b.isDisabled(), `${id} is disabled`);
    assert.match(await b.getAttribute('title'), /This key may not/);
  }
  await screenshot(page, 'queue-read-only');

  // Forced: the button enabled by hand, clicked and confirmed; the server says no, the page shows it.
  await page.locator('[data-testid="purge"]').evaluate((b) => { b.disabled = false; });
  await page.locator('[data-testid="purge"]').click();
  await page.locator('dialog[open]').getByRole('button', { name: 'Purge' }).click();
  const msg = page.locator('#messages .msg-forbidden');
  await msg.waitFor();
  assert.match(await msg.innerText(), /may not manage on queue "ledger".*HTTP 403/s);
  assert.equal((await api.get('/v1/queues/ledger')).stats.counts.ready, 2, 'nothing was purged');

  // The dead letters: no redrive, no edit.
  await page.goto(`${server.url}/ui/#/dead/ledger-dlq`);
  await page.locator('table.groups tbody tr').first().waitFor();
  assert.ok(await page.locator('[data-testid="redrive-group"]').first().isDisabled());
  assert.ok(await page.locator('[data-testid="edit-body"]').first().isDisabled());
  assert.ok(await page.locator('[data-testid="redrive-matching"]').isDisabled());
  const refused = await page.evaluate(async () => (await fetch('/v1/queues/ledger-dlq/redrive', {
    method: 'POST',
    headers: { authorization: `Bearer ${sessionStorage.getItem('redrive.token')}`, 'content-type': 'application/json' },
    body: '{}',
  })).status);
  assert.equal(refused, 403);

  // Triage: no audit log for a key that may not read it.
  await page.goto(`${server.url}/ui/#/triage`);
  await page.locator('#pending .empty').waitFor();
  assert.equal(await page.locator('section', { hasText: 'Audit log' }).count(), 1);
  assert.ok(await page.locator('section', { hasText: 'Audit log' }).isHidden());
  assert.deepEqual(t.problems, []);
});
