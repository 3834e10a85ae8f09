// A queue's jobs (GET /v1/queues/{q}/jobs): combined filters, a table with a selection, and
// bulk actions on the selection or on everything the filter matches (delete; redrive for dead
// jobs), each previewed with a dry run before it runs.

import { get, post, query, enc } from '../api.js';
import { h, fill, fillIfChanged, badge, jobLink, timeEl, table, fmtCount } from '../dom.js';
import { actionButton, previewThenRun, idList, skippedList } from '../actions.js';

const STATES = ['delayed', 'ready', 'leased', 'dead', 'completed'];
const DEFAULT_STATES = ['delayed', 'ready', 'leased', 'dead'];
const PAGE_SIZE = 50;
// The server answers at most this many jobs a page.
const PAGE_SIZE_MAX = 1000;
// A redrive takes at most this many ids (REDRIVE_COUNT_MAX).
const REDRIVE_IDS_MAX = 100000;

/** The filter as the URL's query gives it (e.g. #/queues/orders?state=dead), else the defaults. */
function initialFilter(q) {
  const states = (q.get('state') || '').split(',').filter((s) => STATES.includes(s));
  return {
    state: states.length ? states : DEFAULT_STATES,
    priority: q.get('priority') || '',
    error_type: q.get('error_type') || '',
    since: '',
    until: '',
    where: q.getAll('where'),
    text: q.get('text') || '',
  };
}

/** The filter as the delete route's body takes it: empty fields left out. */
function filterBody(f) {
  const out = { state: f.state };
  for (const k of ['priority', 'error_type', 'since', 'until', 'text']) if (f[k]) out[k] = f[k];
  if (f.where.length) out.where = f.where;
  return out;
}

const filterQuery = (f) => ({ ...filterBody(f), state: f.state.join(',') });

const toIso = (local) => (local ? new Date(local).toISOString() : '');

function lastError(job) {
  const a = [...(job.attempts || [])].reverse().find((x) => x.error);
  return a ? a.error : null;
}

const isDead = (j) => j.state === 'dead' || !!j.dead;

export function jobsBrowser(name, route, ctx) {
  let filter = initialFilter(route.query);
  let missing = false;
  // The first page is fetched again at every refresh; pages after it are fetched once each,
  // by the person, following `next` (a payload search reads at most 10,000 jobs a request).
  let first = { jobs: [], next: null, scanned: null };
  let more = [];
  // Where the next page starts once the person has followed `next` (undefined until then).
  let cursor;
  let scannedMore = 0;
  let jobs = [];
  const selected = new Set();

  const listEl = h('div', { class: 'jobs-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const countEl = h('span', { class: 'count', 'aria-live': 'polite' });
  const moreEl = h('div');

  // ---- the filter form ----
  const stateBoxes = STATES.map((s) => h('input', { type: 'checkbox', name: 'state', value: s, checked: filter.state.includes(s) }));
  const field = (label, input) => h('div', { class: 'field' }, h('label', null, label, input));
  const priority = h('select', { name: 'priority' },
    ['', 'high', 'standard', 'low'].map((p) => h('option', { value: p, selected: p === filter.priority }, p || 'any')));
  const errorType = h('input', { type: 'text', name: 'error_type', value: filter.error_type, placeholder: 'e.g. TimeoutError' });
  const since = h('input', { type: 'datetime-local', name: 'since', step: 1 });
  const until = h('input', { type: 'datetime-local', name: 'until', step: 1 });
  const where = h('textarea', { name: 'where', rows: 2, placeholder: '$.customer.id=42\n@tenant=acme' });
  where.value = filter.where.join('\n');
  const text = h('input', { type: 'search', name: 'text', value: filter.text, placeholder: 'text in the body' });
  const form = h('form', { class: 'filters', 'aria-label': 'Filter jobs' },
    h('fieldset', { class: 'wide checks' }, h('legend', { class: 'sr-only' }, 'States'),
      STATES.map((s, i) => h('label', null, stateBoxes[i], s))),
    field('Priority', priority),
    field('Error type (last error)', errorType),
    field('Enqueued since', since),
    field('Enqueued until', until),
    field('Text', text),
    h('div', { class: 'field wide' }, h('label', null,
      'Where (one per line: ', h('code', null, '$.path=value'), ' in the JSON body, ', h('code', null, '@attribute=value'), ')', where)),
    h('div', { class: 'wide toolbar' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filter'),
      h('button', { type: 'button', onclick: reset }, 'Reset')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    filter = {
      state: STATES.filter((_, i) => stateBoxes[i].checked),
      priority: priority.value,
      error_type: errorType.value.trim(),
      since: toIso(since.value),
      until: toIso(until.value),
      where: where.value.split('\n').map((l) => l.trim()).filter(Boolean),
      text: text.value,
    };
    if (!filter.state.length) filter.state = DEFAULT_STATES;
    forgetMore();
    selected.clear();
    ctx.refresh();
  });

  function forgetMore() {
    more = [];
    cursor = undefined;
    scannedMore = 0;
  }

  const nextPage = () => (cursor === undefined ? first.next : cursor);

  async function showMore() {
    const after = nextPage();
    if (!after) return;
    try {
      const r = await get(`/v1/queues/${enc(name)}/jobs${query({ ...filterQuery(filter), limit: PAGE_SIZE, after })}`);
      more = more.concat(r.jobs || []);
      cursor = r.next || null;
      scannedMore += r.scanned || 0;
    } catch (e) {
      ctx.report(e, 'Listing more jobs');
    }
    ctx.refresh();
  }

  function reset() {
    filter = initialFilter(new URLSearchParams());
    stateBoxes.forEach((b) => (b.checked = filter.state.includes(b.value)));
    priority.value = '';
    for (const i of [errorType, since, until, where, text]) i.value = '';
    forgetMore();
    selected.clear();
    ctx.refresh();
  }

  // ---- bulk actions ----
  const manage = { action: 'manage', queue: name };
  const bulkEl = h('div', { class: 'bulk', role: 'group', 'aria-label': 'Bulk actions' },
    countEl,
    actionButton('Delete selected…', { ...manage, kind: 'danger', testId: 'delete-selected', onClick: () => deleteJobs({ ids: [...selected] }) }),
    actionButton('Redrive selected…', { ...manage, testId: 'redrive-selected', onClick: () => redrive(async () => [...selected]) }),
    h('span', { class: 'muted' }, '· Everything matching the filter:'),
    actionButton('Delete all matching…', { ...manage, kind: 'danger', testId: 'delete-matching', onClick: () => deleteJobs({ filter: filterBody(filter) }) }),
    actionButton('Redrive all matching…', { ...manage, testId: 'redrive-matching', onClick: () => redrive(matchingDeadIds) }));

  function updateBulk() {
    countEl.textContent = `${fmtCount(selected.size)} selected`;
    for (const b of bulkEl.querySelectorAll('[data-testid$="-selected"]')) b.disabled = !selected.size || b.title !== '';
  }

  async function deleteJobs(target) {
    const path = `/v1/queues/${enc(name)}/jobs/delete`;
    const done = await previewThenRun({
      title: target.ids ? `Delete ${fmtCount(target.ids.length)} selected job(s)` : 'Delete every job matching the filter',
      dryRun: () => post(path, { ...target, dry_run: true }),
      run: () => post(path, target),
      describe: (a, dry) => [
        h('p', null, `${fmtCount(a.deleted)} job(s) ${dry ? 'would be' : 'were'} deleted. This cannot be undone.`),
        idList(a.ids), skippedList(a.skipped)],
      count: (a) => a.deleted,
      confirmLabel: 'Delete',
      danger: true,
      done: (a) => `Deleted ${fmtCount(a.deleted)} job(s) from ${name}.`,
    });
    if (done) {
      selected.clear();
      forgetMore();
      ctx.refresh();
    }
  }

  // Every dead job the filter matches, page by page (the redrive route filters by death only).
  async function matchingDeadIds() {
    const ids = [];
    let after;
    do {
      const r = await get(`/v1/queues/${enc(name)}/jobs${query({ ...filterQuery(filter), limit: PAGE_SIZE_MAX, after })}`);
      for (const j of r.jobs) if (isDead(j)) ids.push(j.id);
      after = r.next;
    } while (after && ids.length < REDRIVE_IDS_MAX);
    return ids.slice(0, REDRIVE_IDS_MAX);
  }

  async function redrive(pickIds) {
    const path = `/v1/queues/${enc(name)}/redrive`;
    let ids = null;
    const done = await previewThenRun({
      title: 'Redrive dead jobs',
      dryRun: async () => {
        ids = await pickIds();
        return post(path, { ids, dry_run: true });
      },
      run: () => post(path, { ids }),
      describe: (a, dry) => [
        h('p', null, `${fmtCount(a.moved)} dead job(s) ${dry ? 'would move' : 'moved'} back to their source queue.`),
        idList(a.ids), skippedList(a.skipped)],
      count: (a) => a.moved,
      confirmLabel: 'Redrive',
      done: (a) => `Redrove ${fmtCount(a.moved)} job(s).`,
    });
    if (done) {
      selected.clear();
      forgetMore();
      ctx.refresh();
    }
  }

  // ---- the table ----
  function toggleAll(on) {
    for (const j of jobs) (on ? selected.add(j.id) : selected.delete(j.id));
    for (const b of listEl.querySelectorAll('tbody input[type=checkbox]')) b.checked = on;
    updateBulk();
  }

  function renderTable() {
    if (!jobs.length) {
      return h('p', { class: 'empty' }, nextPage() ? 'No match among the jobs searched so far.' : 'No jobs match.');
    }
    const all = h('input', { type: 'checkbox', 'aria-label': 'Select every job shown', onchange: (e) => toggleAll(e.target.checked) });
    const rows = jobs.map((j) => {
      const box = h('input', {
        type: 'checkbox', checked: selected.has(j.id), 'aria-label': `Select job ${j.id}`,
        onchange: (e) => {
          if (e.target.checked) selected.add(j.id);
          else selected.delete(j.id);
          updateBulk();
        },
      });
      const err = lastError(j);
      return h('tr', { 'data-job': j.id },
        h('td', { class: 'check' }, box),
        h('td', null, jobLink(j.id)),
        h('td', { class: 'nowrap' }, badge(j.state), j.dead ? [' ', h('span', { class: 'tag', title: `died in ${j.dead.source_queue}: ${j.dead.reason}` }, 'dead letter')] : null),
        h('td', null, j.priority),
        h('td', { class: 'num' }, fmtCount(j.receive_count)),
        h('td', { class: 'num' }, `${fmtCount(j.failures)}${j.max_attempts ? ` / ${j.max_attempts}` : ''}`),
        h('td', { class: 'nowrap' }, timeEl(j.enqueued_at)),
        h('td', { class: 'clip', title: err ? `${err.type}: ${err.message}` : undefined }, err ? `${err.type}: ${err.message}` : ''),
        h('td', { class: 'clip mono', title: j.body }, j.body === undefined ? h('span', { class: 'muted' }, '(dropped)') : j.body.slice(0, 120)));
    });
    const t = table([all, 'Job', 'State', 'Priority', 'Deliveries', 'Failures', 'Enqueued', 'Last error', 'Body'], rows, { class: 'jobs' });
    all.checked = jobs.length > 0 && jobs.every((j) => selected.has(j.id));
    return t;
  }

  const el = h('section', { class: 'card', 'aria-labelledby': 'jobs-h' },
    h('h2', { id: 'jobs-h' }, 'Jobs'),
    h('details', { class: 'filter-box', open: true }, h('summary', null, 'Filter'), form),
    bulkEl, listEl, moreEl);
  updateBulk();

  return {
    el,
    async refresh() {
      if (missing) return;
      try {
        const r = await get(`/v1/queues/${enc(name)}/jobs${query({ ...filterQuery(filter), limit: PAGE_SIZE })}`);
        first = { jobs: r.jobs || [], next: r.next || null, scanned: r.scanned };
        ctx.clear('jobs');
      } catch (e) {
        if (e.missingRoute) {
          missing = true;
          bulkEl.hidden = true;
          fill(listEl, h('p', { class: 'muted' }, `Listing jobs needs GET /v1/queues/{q}/jobs, which this server does not have (${e.status}).`));
          return;
        }
        ctx.report(e, 'Listing jobs', 'jobs');
        return;
      }
      const seen = new Set(first.jobs.map((j) => j.id));
      jobs = first.jobs.concat(more.filter((j) => !seen.has(j.id)));
      const present = new Set(jobs.map((j) => j.id));
      for (const id of [...selected]) if (!present.has(id)) selected.delete(id);
      updateBulk();
      fillIfChanged(listEl, [jobs, !!nextPage()], renderTable);
      const next = nextPage();
      const scanned = (first.scanned || 0) + scannedMore;
      fillIfChanged(moreEl, { next, scanned, n: jobs.length }, () => h('p', { class: 'muted small' },
        `${fmtCount(jobs.length)} shown, ${fmtCount(scanned)} scanned. `,
        next ? h('button', { type: 'button', class: 'small', 'data-testid': 'more-jobs', onclick: showMore },
          jobs.length ? 'Show more' : 'Search further') : 'That is all.'));
    },
  };
}
