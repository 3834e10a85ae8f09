// A job's page (#/jobs/ID): where it is, every attempt with its error, worker and timing, its
// body and attributes, its lineage (redrives, death, the dead job it was repaired from), a link
// to its trace (the creation context's trace id, from the status's traceparent); delete, redrive, or edit the body and redrive.

import { get, post, del, enc } from '../api.js';
import {
  h, fill, fillIfChanged, badge, dl, table, timeEl, fmtDuration, fmtCount, parseBody,
  jobLink, queueLink, showInfo, confirmDialog,
} from '../dom.js';
import { actionButton, previewThenRun, idList, skippedList } from '../actions.js';
import { openBodyEditor } from '../editor.js';

const TRACE_URL_KEY = 'redrive.traceUrl';

export function mount(root, route, ctx) {
  const id = route.param;
  let job = null;
  let gone = false;
  const stateEl = h('span');
  const toolbarEl = h('div', { class: 'toolbar' });
  const summaryEl = h('div');
  const lineageEl = h('div');
  const attemptsEl = h('div');
  const bodyEl = h('div');
  root.append(
    h('h1', null, 'Job ', h('span', { class: 'mono' }, id), stateEl),
    toolbarEl,
    h('div', { class: 'grid2' },
      h('section', { class: 'card' }, h('h2', null, 'Status'), summaryEl),
      h('section', { class: 'card' }, h('h2', null, 'Lineage'), lineageEl)),
    h('section', { class: 'card' }, h('h2', null, 'Attempts'), attemptsEl),
    h('section', { class: 'card' }, h('h2', null, 'Body and attributes'), bodyEl));

  const isDead = () => job && (job.state === 'dead' || !!job.dead);

  async function remove() {
    const ok = await confirmDialog({
      title: 'Delete this job?',
      message: h('p', null, `Job ${id} is deleted from ${job.queue} with its attempt log. This cannot be undone.`),
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await del(`/v1/jobs/${enc(id)}`);
      showInfo(`Deleted job ${id}.`);
      ctx.refresh();
    } catch (e) {
      ctx.report(e, 'Deleting the job');
    }
  }

  async function redrive() {
    const path = `/v1/queues/${enc(job.queue)}/redrive`;
    const done = await previewThenRun({
      title: 'Redrive this job',
      dryRun: () => post(path, { ids: [id], dry_run: true }),
      run: () => post(path, { ids: [id] }),
      describe: (a, dry) => [
        h('p', null, a.moved
          ? `It ${dry ? 'would move' : 'moved'} back to ${job.dead ? job.dead.source_queue : job.queue}.`
          : 'It would not move.'),
        idList(a.ids), skippedList(a.skipped)],
      count: (a) => a.moved,
      confirmLabel: 'Redrive',
      done: () => `Redrove job ${id}.`,
    });
    if (done) ctx.refresh();
  }

  function drawToolbar() {
    const q = job.queue;
    fillIfChanged(toolbarEl, { state: job.state, dead: isDead(), q, json: parseBody(job.body).json !== undefined }, () => [
      isDead() ? actionButton('Redrive…', { action: 'manage', queue: q, kind: 'primary', testId: 'redrive-job', onClick: redrive }) : null,
      isDead() && parseBody(job.body).json !== undefined
        ? actionButton('Edit body and redrive…', { action: 'manage', queue: q, testId: 'edit-body', onClick: () => openBodyEditor(job, () => ctx.refresh()) })
        : null,
      job.state !== 'acked' && job.state !== 'leased'
        ? actionButton('Delete…', { action: 'manage', queue: q, kind: 'danger', testId: 'delete-job', onClick: remove })
        : null,
      h('a', { class: 'button', href: `#/queues/${enc(q)}` }, `Queue ${q}`),
      isDead() ? h('a', { class: 'button', href: `#/dead/${enc(q)}` }, 'Dead letters') : null,
    ]);
  }

  return {
    async refresh() {
      if (gone) return;
      try {
        job = await get(`/v1/jobs/${enc(id)}`);
      } catch (e) {
        if (e.code !== 'job_not_found') throw e;
        gone = true;
        fill(stateEl, badge('gone', 'dead'));
        fill(toolbarEl);
        fill(summaryEl, h('p', { class: 'empty' }, 'No such job: it was deleted, or completed and since forgotten.'));
        for (const el of [lineageEl, attemptsEl, bodyEl]) fill(el);
        return;
      }
      fillIfChanged(stateEl, [job.state, !!job.dead], () => [badge(job.state), job.dead ? [' ', h('span', { class: 'tag' }, 'dead letter')] : null]);
      drawToolbar();
      fillIfChanged(summaryEl, summaryData(job), () => summary(job));
      fillIfChanged(lineageEl, [job.dead, job.redrive_count, job.redriven_from, job.attributes, job.traceparent], () => lineage(job));
      fillIfChanged(attemptsEl, job.attempts, () => attempts(job.attempts || []));
      fillIfChanged(bodyEl, [job.body, job.attributes, job.state], () => body(job));
    },
  };
}

const summaryData = (j) => ({ ...j, body: undefined, attributes: undefined, attempts: undefined });

function summary(j) {
  return dl([
    ['Queue', queueLink(j.queue)],
    ['State', badge(j.state)],
    ['Priority', j.priority],
    ['Deliveries', fmtCount(j.receive_count)],
    ['Failures', `${fmtCount(j.failures)} of ${j.max_attempts === null || j.max_attempts === undefined ? 'unlimited' : j.max_attempts}`],
    ['Enqueued', timeEl(j.enqueued_at)],
    ['Visible at', timeEl(j.visible_at)],
    j.first_received_at && ['First received', timeEl(j.first_received_at)],
    j.completed_at && ['Completed', timeEl(j.completed_at)],
    j.idempotency_key && ['Idempotency key', h('code', null, j.idempotency_key)],
    j.group && ['Group', h('code', null, j.group)],
    j.traceparent && ['Traceparent', h('code', null, j.traceparent)],
  ]);
}

function traceLink(traceId) {
  const template = localStorage.getItem(TRACE_URL_KEY);
  const input = h('input', { type: 'text', value: template || '', placeholder: 'https://tracing.example/trace/{trace_id}', 'aria-label': 'Trace link template' });
  input.addEventListener('change', () => {
    if (input.value.trim()) localStorage.setItem(TRACE_URL_KEY, input.value.trim());
    else localStorage.removeItem(TRACE_URL_KEY);
  });
  return [
    template
      ? h('a', { href: template.replace('{trace_id}', encodeURIComponent(traceId)), target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'trace-link' }, `trace ${traceId}`)
      : h('code', { 'data-testid': 'trace-link' }, traceId),
    h('details', { class: 'small' }, h('summary', null, 'trace link template'), input,
      h('p', { class: 'muted' }, '{trace_id} is replaced; kept in this browser.')),
  ];
}

// The trace id of the job's creation context (its W3C traceparent: 00-<trace id>-<span>-<flags>).
function traceId(j) {
  const parts = (j.traceparent || '').split('-');
  return parts.length >= 4 && /^[0-9a-f]{32}$/.test(parts[1]) ? parts[1] : null;
}

function lineage(j) {
  const from = j.attributes && j.attributes['redrive:patched_from'];
  const rows = [
    ['Redrives', fmtCount(j.redrive_count || 0)],
    j.redriven_from && ['Last redriven from', queueLink(j.redriven_from)],
    j.dead && ['Died', [badge(j.dead.reason.replace(/_/g, ' '), 'dead'), ' in ', queueLink(j.dead.source_queue), ' at ', timeEl(j.dead.died_at)]],
    from && ['Repaired from', [jobLink(from), h('span', { class: 'muted' }, ' (redrive:patched_from: the dead job this one replaced)')]],
    traceId(j) && ['Trace', traceLink(traceId(j))],
  ];
  return dl(rows);
}

function attempts(list) {
  if (!list.length) return h('p', { class: 'empty' }, 'Never delivered yet.');
  const rows = list.map((a) => {
    const took = a.started_at && a.ended_at ? new Date(a.ended_at) - new Date(a.started_at) : null;
    return h('tr', { 'data-attempt': a.attempt },
      h('td', { class: 'num' }, a.attempt),
      h('td', { class: 'nowrap' }, badge(a.outcome || 'leased')),
      h('td', null, a.worker_id ? h('code', null, a.worker_id) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'nowrap' }, timeEl(a.started_at)),
      h('td', { class: 'num' }, took === null ? '—' : fmtDuration(took)),
      h('td', { class: 'wrap' }, a.error
        ? [h('strong', { class: 'error-type' }, a.error.type), ': ', h('span', { class: 'error-message' }, a.error.message),
          a.error.detail ? h('details', null, h('summary', null, 'detail'), h('pre', { class: 'error-detail' }, a.error.detail)) : null]
        : h('span', { class: 'muted' }, '—')));
  });
  return table(['#', 'Outcome', 'Worker', 'Started', 'Took', 'Error'], rows, { class: 'attempts' });
}

function body(j) {
  const attrs = Object.entries(j.attributes || {});
  const parts = [];
  if (j.body === undefined) {
    parts.push(h('p', { class: 'muted' }, j.state === 'acked' ? 'The body is dropped when a job completes.' : 'No body.'));
  } else {
    const { json, text } = parseBody(j.body);
    parts.push(h('p', { class: 'muted small' }, json === undefined ? 'Text' : 'JSON (pretty-printed)', `, ${fmtCount(new TextEncoder().encode(j.body).length)} bytes`),
      h('pre', { class: 'job-body' }, text));
  }
  parts.push(h('h3', null, 'Attributes'), attrs.length
    ? table(['Name', 'Value'], attrs.map(([k, v]) => h('tr', null, h('td', null, h('code', null, k)), h('td', { class: 'wrap' }, k === 'redrive:patched_from' ? jobLink(v) : v))))
    : h('p', { class: 'muted' }, 'None.'));
  return parts;
}
