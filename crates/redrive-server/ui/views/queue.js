// A queue's page (#/queues/NAME): its counts and rates, its jobs, charts (throughput, depth,
// and the enqueue→start and processing-time percentiles when the history carries them),
// pause/resume, purge, a test job, and its configuration.

import { get, post, enc } from '../api.js';
import { h, fill, fillIfChanged, fmtCount, fmtRate, fmtDuration, badge, dl, showInfo, jobLink, confirmDialog } from '../dom.js';
import { lineChart } from '../charts.js';
import { actionButton } from '../actions.js';
import { historyLoader, throughputChart, depthChart } from './common.js';
import { jobsBrowser } from './jobs-browser.js';

export function mount(root, route, ctx) {
  const name = route.param;
  let queue = null;
  let gone = false;
  const history = historyLoader(ctx, name);
  const jobs = jobsBrowser(name, route, ctx);

  const stateEl = h('span');
  const toolbarEl = h('div', { class: 'toolbar' });
  const statsEl = h('div', { class: 'stats' });
  const chartsEl = h('div', { class: 'charts' });
  const pickerEl = h('div');
  const configEl = h('div');
  root.append(
    h('p', { class: 'small' }, h('a', { href: '#/' }, '← Queues')),
    h('h1', null, h('span', { class: 'mono' }, name), stateEl),
    toolbarEl,
    h('section', { class: 'card', 'aria-label': 'Statistics' }, statsEl),
    jobs.el,
    h('section', { class: 'card' },
      h('div', { class: 'section-head' }, h('h2', null, 'Over time'), pickerEl), chartsEl),
    testJobForm(name, ctx),
    h('section', { class: 'card' }, h('details', null, h('summary', null, h('h2', { class: 'inline' }, 'Configuration and totals')), configEl)));

  history.picker(pickerEl);

  async function pauseOrResume() {
    const paused = !!(queue && queue.config.paused);
    try {
      queue = await post(`/v1/queues/${enc(name)}/${paused ? 'resume' : 'pause'}`);
      showInfo(queue.config.paused
        ? `${name} is paused: it keeps accepting jobs but hands none out.`
        : `${name} is running again.`);
      drawHead();
    } catch (e) {
      ctx.report(e, paused ? 'Resuming the queue' : 'Pausing the queue');
    }
  }

  async function purge() {
    const n = queue ? queue.stats.counts.ready + queue.stats.counts.delayed : 0;
    const ok = await confirmDialog({
      title: `Purge ${name}?`,
      message: [
        h('p', null, `This deletes every ready and delayed job of ${name} (${fmtCount(n)} now). `,
          'Leased, parked and completed jobs stay.'),
        h('p', null, h('strong', null, 'This cannot be undone.'))],
      confirmLabel: 'Purge',
      danger: true,
    });
    if (!ok) return;
    try {
      const r = await post(`/v1/queues/${enc(name)}/purge`);
      showInfo(`Purged ${fmtCount(r.purged)} job(s) from ${name}.`);
      ctx.refresh();
    } catch (e) {
      ctx.report(e, 'Purging the queue');
    }
  }

  function drawHead() {
    const paused = !!queue.config.paused;
    const dlq = queue.config.dead_letter_queue;
    fillIfChanged(stateEl, { paused }, () => badge(paused ? 'paused' : 'running'));
    fillIfChanged(toolbarEl, { paused, dlq, has: 'paused' in queue.config }, () => [
      'paused' in queue.config
        ? actionButton(paused ? '▶ Resume' : '‖ Pause', { action: 'manage', queue: name, testId: 'pause', onClick: pauseOrResume })
        : null,
      actionButton('Purge…', { action: 'manage', queue: name, kind: 'danger', testId: 'purge', onClick: purge }),
      h('a', { class: 'button', href: `#/dead/${enc(name)}` }, 'Dead letters here'),
      dlq ? h('a', { class: 'button', href: `#/dead/${enc(dlq)}` }, `Its DLQ: ${dlq}`) : null,
    ]);
  }

  return {
    async refresh() {
      if (gone) return;
      let q;
      try {
        [q] = await Promise.all([get(`/v1/queues/${enc(name)}`), history.load(), jobs.refresh()]);
      } catch (e) {
        if (e.code !== 'queue_not_found') throw e;
        gone = true;
        fill(root, h('h1', null, name), h('p', { class: 'empty' }, `There is no queue named ${name}. `, h('a', { href: '#/' }, 'All queues.')));
        return;
      }
      queue = q;
      drawHead();
      fillIfChanged(statsEl, q.stats, () => stats(name, q.stats));
      fillIfChanged(configEl, [q.config, q.stats.totals], () => config(q));
      history.render(chartsEl, (s) => [
        throughputChart(s),
        depthChart(s),
        s.hasPercentiles ? percentileChart('Enqueue → start', s, 'start') : null,
        s.hasPercentiles ? percentileChart('Processing time', s, 'process') : null,
        s.hasPercentiles ? null : h('p', { class: 'muted small' }, 'Latency percentiles show here when the server’s history carries them.'),
      ]);
    },
  };
}

function percentileChart(title, s, prefix) {
  return lineChart({
    title,
    times: s.times,
    series: ['p50', 'p95', 'p99'].map((p) => ({ label: p, values: s[`${prefix}_${p}_ms`] })),
    format: fmtDuration,
  });
}

function stat(k, v, testId) {
  return h('div', { class: 'stat', 'data-stat': testId }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v));
}

function stats(name, s) {
  const c = s.counts;
  const p = s.ready_by_priority;
  return [
    stat('▶ Ready', fmtCount(c.ready), 'ready'),
    stat('◔ Delayed', fmtCount(c.delayed), 'delayed'),
    stat('⟳ Leased', fmtCount(c.leased), 'leased'),
    stat('✖ Dead (parked)', fmtCount(c.dead), 'dead'),
    stat('✔ Completed', fmtCount(c.completed), 'completed'),
    stat('Dead letters', h('a', { href: `#/dead/${enc(name)}` }, fmtCount(s.dead_letters)), 'dead_letters'),
    stat('Ready H · S · L', `${fmtCount(p.high)} · ${fmtCount(p.standard)} · ${fmtCount(p.low)}`, 'priority'),
    stat('Oldest ready', c.ready ? fmtDuration(s.oldest_ready_age_ms) : '—', 'oldest'),
    stat('Enqueued/s (1 min)', fmtRate(s.enqueue_rate), 'enqueue_rate'),
    stat('Acked/s (1 min)', fmtRate(s.ack_rate), 'ack_rate'),
  ];
}

function config(q) {
  const show = (v) => (v === null ? h('span', { class: 'muted' }, 'none') : typeof v === 'object' ? h('code', null, JSON.stringify(v)) : String(v));
  return h('div', { class: 'grid2' },
    h('div', null, h('h3', null, 'Configuration'), dl([
      ...Object.entries(q.config).map(([k, v]) => [k, k === 'dead_letter_queue' && v ? h('a', { href: `#/queues/${enc(v)}` }, v) : show(v)]),
      ['created_at', q.created_at],
      ['updated_at', q.updated_at],
    ])),
    h('div', null, h('h3', null, 'Totals since the server started'),
      dl(Object.entries(q.stats.totals || {}).map(([k, v]) => [k.replace(/_/g, ' '), fmtCount(v)]))));
}

function testJobForm(name, ctx) {
  const body = h('textarea', { name: 'body', rows: 4, 'aria-label': 'Body' });
  body.value = '{"test": true}';
  const priority = h('select', { name: 'priority', 'aria-label': 'Priority' },
    ['standard', 'high', 'low'].map((p) => h('option', { value: p }, p)));
  const delay = h('input', { type: 'number', name: 'delay_ms', min: 0, step: 1, placeholder: '0', 'aria-label': 'Delay (ms)' });
  const attrs = h('input', { type: 'text', name: 'attributes', placeholder: '{"tenant": "acme"}', 'aria-label': 'Attributes (JSON object)' });
  const send = actionButton('Send', { action: 'send', queue: name, kind: 'primary', testId: 'send-test-job', onClick: submit });
  async function submit() {
    const job = { body: body.value, priority: priority.value };
    if (delay.value) job.delay_ms = Number(delay.value);
    if (attrs.value.trim()) {
      try {
        job.attributes = JSON.parse(attrs.value);
      } catch (e) {
        ctx.report(e, 'Attributes must be a JSON object of strings');
        return;
      }
    }
    try {
      const r = await post(`/v1/queues/${enc(name)}/jobs`, { jobs: [job] });
      const id = r.jobs[0].id;
      showInfo('Enqueued job ', jobLink(id), r.jobs[0].duplicate ? ' (a duplicate)' : '', ` into ${name}.`);
      ctx.refresh();
    } catch (e) {
      ctx.report(e, 'Sending the test job');
    }
  }
  return h('section', { class: 'card' },
    h('details', null, h('summary', null, h('h2', { class: 'inline' }, 'Send a test job')),
      h('label', null, 'Body', body),
      h('div', { class: 'form-row' },
        h('label', null, 'Priority ', priority),
        h('label', null, 'Delay (ms) ', delay),
        h('label', { class: 'grow' }, 'Attributes (JSON) ', attrs),
        send)));
}
