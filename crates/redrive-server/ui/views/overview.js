// The overview (#/): every queue with its depth by state, ready jobs by priority, the age of
// its oldest ready job, its rates and its dead letters; and charts of all queues together over
// the chosen window.

import { get } from '../api.js';
import { h, fill, fillIfChanged, fmtCount, fmtRate, fmtDuration, badge, table } from '../dom.js';
import { lineChart, recentRate } from '../charts.js';
import { historyLoader, throughputChart, depthChart } from './common.js';

export function mount(root, _route, ctx) {
  const history = historyLoader(ctx, null);
  const queuesEl = h('div', { id: 'queues' }, h('p', { class: 'muted' }, 'Loading…'));
  const chartsEl = h('div', { class: 'charts' });
  const pickerEl = h('div');
  root.append(
    h('h1', null, 'Queues'),
    h('section', { class: 'card', 'aria-labelledby': 'queues-h' }, h('h2', { id: 'queues-h', class: 'sr-only' }, 'Queues'), queuesEl),
    h('section', { class: 'card' },
      h('div', { class: 'section-head' }, h('h2', null, 'All queues over time'), pickerEl),
      chartsEl));

  history.picker(pickerEl);

  return {
    async refresh() {
      const [{ queues }] = await Promise.all([get('/v1/queues'), history.load()]);
      const h1 = history.data;
      fillIfChanged(queuesEl, { queues, h: history.stamp }, () => queueTable(queues, h1));
      history.render(chartsEl, (s) => [
        throughputChart(s),
        depthChart(s),
        lineChart({
          title: 'Oldest ready job (largest over queues)',
          times: s.times,
          series: [{ label: 'age', values: s.oldest_ready_age_ms }],
          format: fmtDuration,
        }),
      ]);
    },
  };
}

function queueTable(queues, hist) {
  if (!queues.length) {
    return h('p', { class: 'empty' }, 'No queues yet. Create one with ', h('code', null, 'redrive queue create NAME'),
      ' or ', h('code', null, 'PUT /v1/queues/NAME'), '.');
  }
  const byName = Object.fromEntries(queues.map((q) => [q.name, q]));
  const dlqs = new Set(queues.map((q) => q.config.dead_letter_queue).filter(Boolean));
  const rows = queues.map((q) => {
    const s = q.stats;
    const c = s.counts;
    const p = s.ready_by_priority;
    const dlq = q.config.dead_letter_queue;
    const failRate = recentRate(hist, q.name, 'failed');
    const num = (n, state) => h('td', { class: n ? 'num' : 'num zero', 'data-state': state }, fmtCount(n));
    return h('tr', { 'data-queue': q.name },
      h('th', { scope: 'row' },
        h('a', { href: `#/queues/${encodeURIComponent(q.name)}` }, q.name),
        q.config.paused ? [' ', badge('paused')] : null,
        dlqs.has(q.name) ? [' ', h('span', { class: 'tag' }, 'DLQ')] : null),
      num(c.ready, 'ready'), num(c.delayed, 'delayed'), num(c.leased, 'leased'), num(c.dead, 'dead'),
      num(c.completed, 'completed'),
      h('td', { class: 'num nowrap', title: 'high · standard · low' }, `${fmtCount(p.high)} · ${fmtCount(p.standard)} · ${fmtCount(p.low)}`),
      h('td', { class: 'num' }, c.ready ? fmtDuration(s.oldest_ready_age_ms) : '—'),
      h('td', { class: 'num' }, fmtRate(s.enqueue_rate)),
      h('td', { class: 'num' }, fmtRate(s.ack_rate)),
      h('td', { class: 'num', title: failRate === null ? 'from /v1/history, when the server has it' : undefined }, fmtRate(failRate)),
      h('td', { class: 'num' }, s.dead_letters || dlqs.has(q.name)
        ? h('a', { href: `#/dead/${encodeURIComponent(q.name)}`, 'data-testid': 'dead-letters' }, fmtCount(s.dead_letters))
        : '0'),
      h('td', null, dlq
        ? h('a', { href: `#/dead/${encodeURIComponent(dlq)}` }, dlq, byName[dlq] ? ` (${fmtCount(byName[dlq].stats.dead_letters)})` : '')
        : h('span', { class: 'muted' }, 'none')));
  });
  return table(
    ['Queue', ...['Ready', 'Delayed', 'Leased', 'Dead', 'Completed', 'Ready H · S · L', 'Oldest ready',
      'Enqueued /s', 'Acked /s', 'Failed /s', 'Dead letters'].map((t) => [t, 'num']), 'DLQ (size)'],
    rows, { class: 'queues' });
}
