// A pending redrive_patched proposal shows the agent's analysis and its patch as a diff of the
// dead job's body; approving it in the page repairs the job, a worker then receives the fixed
// body and acks it, and the page shows the repaired job completed.

'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { harness, killJob, until, screenshot } = require('./helpers.js');

const t = harness();

test('approving a triage proposal repairs the dead job, which then succeeds', async () => {
  const { api, page, server } = t;
  await api.createQueue('shop', { max_attempts: 1 });
  const deadId = await killJob(api, 'shop', JSON.stringify({ sku: 'A-1', quantity: '3' }),
    { type: 'ValidationError', message: 'field "quantity": expected integer, got string' });
  const proposal = await api.post('/v1/triage/proposals', {
    queue: 'shop-dlq',
    source_queue: 'shop',
    signature: 'ValidationError: field <str>: expected integer, got string',
    job_ids: [deadId],
    decision: {
      category: 'bad_data',
      action: 'redrive_patched',
      confidence: 0.9,
      patch: [{ op: 'replace', path: '/quantity', value: 3 }],
      analysis: 'quantity is a string; the error expects an integer',
    },
    reason: 'patched redrives need a person',
  });

  await page.goto(`${server.url}/ui/#/triage`);
  const card = page.locator(`article[data-proposal="${proposal.id}"]`);
  await card.waitFor();
  assert.match(await card.locator('.analysis').innerText(), /quantity is a string; the error expects an integer/);
  assert.match(await card.innerText(), /bad data/);
  assert.match(await card.innerText(), /confidence 90%/);
  const diff = card.locator('pre.diff');
  await diff.waitFor();
  assert.match(await diff.innerText(), /^- {3}"quantity": "3"$/m);
  assert.match(await diff.innerText(), /^\+ {3}"quantity": 3$/m);
  await screenshot(page, 'triage');

  await card.getByLabel('Reason').fill('a safe cast');
  await card.getByRole('button', { name: /Approve/ }).click();
  await card.waitFor({ state: 'detached' });
  const decided = page.locator(`tr[data-proposal="${proposal.id}"]`);
  await decided.waitFor();
  assert.match(await decided.innerText(), /approved/);
  assert.match(await decided.innerText(), /a safe cast/);

  // The server's record of what ran: the repaired job's id.
  const after = await api.get(`/v1/triage/proposals/${proposal.id}`);
  assert.equal(after.status, 'approved');
  const repairedId = after.result.patched[0].to;
  assert.equal(after.result.patched[0].from, deadId);

  // The repaired job's page links back to the dead job it replaced (the attribute goes with
  // the body when the job completes, so this is looked at first).
  await page.goto(`${server.url}/ui/#/jobs/${repairedId}`);
  await page.locator(`section a[href="#/jobs/${deadId}"]`).first().waitFor();
  assert.match(await page.locator('section', { hasText: 'Lineage' }).innerText(), /Repaired from/);
  assert.match(await page.locator('pre.job-body').innerText(), /"quantity": 3/);

  // Act as the worker: the repaired job carries the fixed body and says where it came from.
  const [job] = await until(async () => {
    const got = await api.receive('shop', 1, 'shop-worker');
    return got.length && got;
  }, 'the repaired job');
  assert.equal(job.id, repairedId);
  assert.deepEqual(JSON.parse(job.body), { sku: 'A-1', quantity: 3 });
  assert.equal(job.attributes['redrive:patched_from'], deadId);
  assert.deepEqual(await api.ack([job.receipt]), { results: ['ok'] });

  // The open page turns to completed by itself.
  await page.locator('h1 .badge', { hasText: 'acked' }).waitFor();
  assert.match(await page.locator('table.attempts').innerText(), /ok\s+shop-worker/);
  await screenshot(page, 'job-repaired');
  await page.goto(`${server.url}/ui/#/triage`);
  await page.locator(`tr[data-proposal="${proposal.id}"] a[href="#/jobs/${repairedId}"]`).waitFor();
  await page.locator('#pending .empty').waitFor();

  // The audit log (this server has no keys, so the page may read it) names the approval.
  await page.locator('section', { hasText: 'Audit log' }).locator('td', { hasText: 'triage.proposal.approve' }).waitFor();
  assert.deepEqual(t.problems, []);
});

test('rejecting a proposal needs a reason and runs nothing', async () => {
  const { api, page, server } = t;
  await api.createQueue('mail', { max_attempts: 1 });
  const deadId = await killJob(api, 'mail', '{"to": "nobody"}', { type: 'SmtpError', message: '550 mailbox unavailable' });
  const proposal = await api.post('/v1/triage/proposals', {
    queue: 'mail-dlq', source_queue: 'mail', signature: 'SmtpError: <n> mailbox unavailable', job_ids: [deadId],
    decision: { category: 'transient', action: 'redrive', confidence: 0.6, analysis: 'maybe the server was busy' },
    reason: 'below min_confidence',
  });
  await page.goto(`${server.url}/ui/#/triage`);
  const card = page.locator(`article[data-proposal="${proposal.id}"]`);
  await card.getByRole('button', { name: /Reject/ }).click();
  await page.locator('#messages .msg-error', { hasText: 'say why you reject it' }).waitFor();
  assert.equal((await api.get(`/v1/triage/proposals/${proposal.id}`)).status, 'pending');
  await card.getByLabel('Reason').fill('550 is permanent: the address is wrong');
  await card.getByRole('button', { name: /Reject/ }).click();
  await card.waitFor({ state: 'detached' });
  const after = await api.get(`/v1/triage/proposals/${proposal.id}`);
  assert.equal(after.status, 'rejected');
  assert.equal(after.decided_why, '550 is permanent: the address is wrong');
  assert.equal(after.decided_by, 'dashboard', 'no key: the page decides as "dashboard"');
  await page.locator(`tr[data-proposal="${proposal.id}"]`, { hasText: 'rejected' }).waitFor();
  assert.equal((await api.get('/v1/queues/mail-dlq/dead')).jobs.length, 1, 'the dead job stayed');
  assert.deepEqual(t.problems, []);
});

test('redrive outcomes per category are shown when /metrics has them', async () => {
  const { page, server } = t;
  // Only a server running the triage agent counts outcomes: add its lines to the real answer.
  await page.route('**/metrics', async (route) => {
    const res = await route.fetch();
    const text = `${await res.text()}# TYPE redrive_triage_redrive_outcomes_total counter
redrive_triage_redrive_outcomes_total{category="transient",outcome="succeeded"} 9
redrive_triage_redrive_outcomes_total{category="transient",outcome="died_again"} 1
redrive_triage_redrive_outcomes_total{category="rate_limited",outcome="succeeded"} 4
`;
    await route.fulfill({ response: res, body: text });
  });
  await page.goto(`${server.url}/ui/#/triage`);
  const section = page.locator('section', { hasText: 'How redrives turned out' });
  await section.waitFor();
  assert.match(await section.locator('tr', { hasText: 'transient' }).innerText(), /transient\s+9\s+1\s+90%/);
  assert.match(await section.locator('tr', { hasText: 'rate limited' }).innerText(), /rate limited\s+4\s+0\s+100%/);
  await page.unroute('**/metrics');
  // Without those lines the section stays hidden.
  await page.reload();
  await page.locator('#pending').waitFor();
  await page.locator('section', { hasText: 'Decided lately' }).locator('table, .empty').first().waitFor();
  assert.ok(await page.locator('section', { hasText: 'How redrives turned out' }).isHidden());
  assert.deepEqual(t.problems, []);
});
