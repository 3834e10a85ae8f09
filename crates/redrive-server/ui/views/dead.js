// A queue's dead letters (#/dead/NAME): grouped by failure signature (count, first and last
// seen), each group redriven at once; the dead jobs themselves with filters, redriven by
// selection or by filter, each previewed with a dry run first; a dead job's body edited as a
// JSON Patch before it is redriven.

import { get, post, query, enc } from '../api.js';
import { h, fill, fillIfChanged, fmtCount, table, timeEl, badge, jobLink, queueLink } from '../dom.js';
import { actionButton, previewThenRun, idList, skippedList } from '../actions.js';
import { openBodyEditor } from '../editor.js';

const PAGE_SIZE = 100;
const PAGE_SIZE_MAX = 1000;

function lastError(job) {
  const a = [...(job.attempts || [])].reverse().find((x) => x.error);
  return a ? a.error : null;
}

export function mount(root, route, ctx) {
  const name = route.param;
  const redrivePath = `/v1/queues/${enc(name)}/redrive`;
  let filter = { error_type: '', signature: route.query.get('signature') || '', source_queue: '', since: '', until: '' };
  let pages = 1;
  let jobs = [];
  let jobsById = new Map();
  let next = null;
  let groupsMissing = false;
  const selected = new Set();

  const groupsEl = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const listEl = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const moreEl = h('div');
  const countEl = h('span', { class: 'count', 'aria-live': 'polite' });

  // Where redriven jobs go and when: the same for every redrive started on this page.
  const to = h('input', { type: 'text', id: 'redrive-to', placeholder: 'their source queue', 'aria-label': 'Redrive into queue' });
  const delay = h('input', { type: 'number', id: 'redrive-delay', min: 0, step: 1, placeholder: '0', 'aria-label': 'Delay (ms)' });
  const options = () => {
    const o = {};
    if (to.value.trim()) o.to = to.value.trim();
    if (delay.value) o.delay_ms = Number(delay.value);
    return o;
  };

  const manage = { action: 'manage', queue: name };

  function redrive(title, target) {
    return previewThenRun({
      title,
      dryRun: () => post(redrivePath, { ...target, ...options(), dry_run: true }),
      run: () => post(redrivePath, { ...target, ...options() }),
      describe: (a, dry) => [
        h('p', { 'data-testid': 'redrive-preview' },
          `${fmtCount(a.moved)} dead job(s) ${dry ? 'would move' : 'moved'} to ${options().to || 'their source queue'}`,
          options().delay_ms ? `, ready after ${options().delay_ms} ms` : '', '.'),
        idList(a.ids), skippedList(a.skipped)],
      count: (a) => a.moved,
      confirmLabel: 'Redrive',
      done: (a) => `Redrove ${fmtCount(a.moved)} job(s) from ${name}.`,
    }).then((done) => {
      if (done) {
        selected.clear();
        ctx.refresh();
      }
    });
  }

  function deleteSelected() {
    const ids = [...selected];
    const path = `/v1/queues/${enc(name)}/jobs/delete`;
    return previewThenRun({
      title: `Delete ${fmtCount(ids.length)} dead job(s)`,
      dryRun: () => post(path, { ids, dry_run: true }),
      run: () => post(path, { ids }),
      describe: (a, dry) => [h('p', null, `${fmtCount(a.deleted)} job(s) ${dry ? 'would be' : 'were'} deleted. This cannot be undone.`), idList(a.ids), skippedList(a.skipped)],
      count: (a) => a.deleted,
      confirmLabel: 'Delete',
      danger: true,
      done: (a) => `Deleted ${fmtCount(a.deleted)} job(s).`,
    }).then((done) => {
      if (done) {
        selected.clear();
        ctx.refresh();
      }
    });
  }

  // ---- filters ----
  const inputs = {
    error_type: h('input', { type: 'text', placeholder: 'e.g. TimeoutError' }),
    signature: h('input', { type: 'text', value: filter.signature, placeholder: 'TimeoutError: order <n> timed out' }),
    source_queue: h('input', { type: 'text', placeholder: 'the queue they died in' }),
    since: h('input', { type: 'datetime-local', step: 1 }),
    until: h('input', { type: 'datetime-local', step: 1 }),
  };
  const labels = { error_type: 'Error type', signature: 'Signature', source_queue: 'Source queue', since: 'Died since', until: 'Died until' };
  const form = h('form', { class: 'filters', 'aria-label': 'Filter dead jobs' },
    Object.entries(inputs).map(([k, input]) => h('div', { class: 'field' }, h('label', null, labels[k], input))),
    h('div', { class: 'toolbar' }, h('button', { type: 'submit', class: 'primary' }, 'Apply filter')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    for (const [k, input] of Object.entries(inputs)) {
      const v = input.value.trim();
      filter[k] = v && (k === 'since' || k === 'until') ? new Date(v).toISOString() : v;
    }
    pages = 1;
    selected.clear();
    ctx.refresh();
  });
  const filterBody = () => Object.fromEntries(Object.entries(filter).filter(([, v]) => v));

  const bulkEl = h('div', { class: 'bulk', role: 'group', 'aria-label': 'Bulk actions' },
    countEl,
    actionButton('Redrive selected…', { ...manage, kind: 'primary', testId: 'redrive-selected', onClick: () => redrive('Redrive the selected dead jobs', { ids: [...selected] }) }),
    actionButton('Delete selected…', { ...manage, kind: 'danger', testId: 'delete-selected', onClick: deleteSelected }),
    h('span', { class: 'muted' }, '·'),
    actionButton('Redrive all matching the filter…', { ...manage, testId: 'redrive-matching', onClick: () => redrive('Redrive every dead job matching the filter', { filter: filterBody() }) }));

  function updateBulk() {
    countEl.textContent = `${fmtCount(selected.size)} selected`;
    for (const b of bulkEl.querySelectorAll('[data-testid$="-selected"]')) b.disabled = !selected.size || b.title !== '';
  }

  root.append(
    h('p', { class: 'small' }, h('a', { href: '#/' }, '← Queues'), ' · ', queueLink(name)),
    h('h1', null, 'Dead letters in ', h('span', { class: 'mono' }, name)),
    h('section', { class: 'card' },
      h('h2', null, 'Redrive options'),
      h('div', { class: 'form-row' },
        h('label', { for: 'redrive-to' }, 'Into queue ', to),
        h('label', { for: 'redrive-delay' }, 'Ready after (ms) ', delay)),
      h('p', { class: 'muted small' }, 'Every redrive below shows what it would move (a dry run) before anything moves.')),
    h('section', { class: 'card' }, h('h2', null, 'By failure'), groupsEl),
    h('section', { class: 'card' },
      h('h2', null, 'Dead jobs'),
      h('details', { open: true }, h('summary', null, 'Filter'), form),
      bulkEl, listEl, moreEl));
  updateBulk();

  function groupTable(groups) {
    if (!groups.length) return h('p', { class: 'empty' }, 'No dead letters.');
    return table(['Signature', 'Error type', 'Count', 'First seen', 'Last seen', 'Source queues', 'Example', ''],
      groups.map((g) => h('tr', { 'data-signature': g.signature },
        h('td', { class: 'wrap' }, h('code', null, g.signature)),
        h('td', null, g.error_type || h('span', { class: 'muted' }, 'none')),
        h('td', { class: 'num' }, fmtCount(g.count)),
        h('td', { class: 'nowrap' }, timeEl(g.first_seen)),
        h('td', { class: 'nowrap' }, timeEl(g.last_seen)),
        h('td', null, (g.source_queues || []).map((q, i) => [i ? ', ' : '', queueLink(q)])),
        h('td', null, g.example_id ? jobLink(g.example_id) : ''),
        h('td', { class: 'nowrap' },
          actionButton('Redrive group…', { ...manage, testId: 'redrive-group', onClick: () => redrive(`Redrive: ${g.signature}`, { filter: { signature: g.signature } }) }),
          ' ',
          h('button', {
            type: 'button', class: 'small',
            onclick: () => {
              inputs.signature.value = g.signature;
              form.requestSubmit();
            },
          }, 'Show')))),
      { class: 'groups' });
  }

  function jobTable() {
    if (!jobs.length) return h('p', { class: 'empty', 'data-testid': 'no-dead' }, 'No dead letters.');
    const all = h('input', {
      type: 'checkbox', 'aria-label': 'Select every job shown',
      onchange: (e) => {
        for (const j of jobs) (e.target.checked ? selected.add(j.id) : selected.delete(j.id));
        for (const b of listEl.querySelectorAll('tbody input[type=checkbox]')) b.checked = e.target.checked;
        updateBulk();
      },
    });
    const rows = jobs.map((j) => {
      const err = lastError(j);
      return h('tr', { 'data-job': j.id },
        h('td', { class: 'check' }, h('input', {
          type: 'checkbox', checked: selected.has(j.id), 'aria-label': `Select job ${j.id}`,
          onchange: (e) => {
            if (e.target.checked) selected.add(j.id);
            else selected.delete(j.id);
            updateBulk();
          },
        })),
        h('td', null, jobLink(j.id)),
        h('td', null, j.dead ? queueLink(j.dead.source_queue) : '—'),
        h('td', { class: 'nowrap' }, j.dead ? badge(j.dead.reason.replace(/_/g, ' '), 'dead') : badge(j.state)),
        h('td', { class: 'nowrap' }, j.dead ? timeEl(j.dead.died_at) : '—'),
        h('td', { class: 'num' }, fmtCount((j.attempts || []).length)),
        h('td', { class: 'clip', title: err ? `${err.type}: ${err.message}` : undefined }, err ? `${err.type}: ${err.message}` : h('span', { class: 'muted' }, 'no error recorded')),
        h('td', { class: 'nowrap' }, actionButton('Edit body…', {
          ...manage, testId: 'edit-body',
          onClick: () => openBodyEditor(jobsById.get(j.id) || j, () => ctx.refresh()),
        })));
    });
    all.checked = jobs.every((j) => selected.has(j.id));
    return table([all, 'Job', 'Died in', 'Reason', 'Died at', 'Attempts', 'Last error', ''], rows, { class: 'dead-jobs' });
  }

  async function loadGroups() {
    if (groupsMissing) return;
    try {
      const r = await get(`/v1/queues/${enc(name)}/dead/groups`);
      ctx.clear('groups');
      fillIfChanged(groupsEl, r.groups, () => groupTable(r.groups || []));
    } catch (e) {
      if (!e.missingRoute) return ctx.report(e, 'Grouping the dead letters', 'groups');
      groupsMissing = true;
      fill(groupsEl, h('p', { class: 'muted' }, 'Grouping needs GET /v1/queues/{q}/dead/groups, which this server does not have (404).'));
    }
  }

  async function loadJobs() {
    const limit = Math.min(PAGE_SIZE * pages, PAGE_SIZE_MAX);
    const r = await get(`/v1/queues/${enc(name)}/dead${query({ ...filterBody(), limit })}`);
    jobs = r.jobs || [];
    jobsById = new Map(jobs.map((j) => [j.id, j]));
    next = r.next || null;
    const present = new Set(jobs.map((j) => j.id));
    for (const id of [...selected]) if (!present.has(id)) selected.delete(id);
    updateBulk();
    fillIfChanged(listEl, jobs, jobTable);
    fillIfChanged(moreEl, { n: jobs.length, next }, () => h('p', { class: 'muted small' }, `${fmtCount(jobs.length)} shown. `,
      next && jobs.length < PAGE_SIZE_MAX ? h('button', { type: 'button', class: 'small', onclick: () => { pages++; ctx.refresh(); } }, 'Show more') : null));
  }

  return {
    async refresh() {
      await Promise.all([loadGroups(), loadJobs()]);
    },
  };
}
