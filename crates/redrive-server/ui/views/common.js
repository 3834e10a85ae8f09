// Parts more than one page draws: the history a page's charts come from (fetched every 10 s,
// as often as the server samples), and the charts of throughput and depth.

import { get, query } from '../api.js';
import { h, fill, fillIfChanged, fmtCount, fmtRate } from '../dom.js';
import { lineChart, historySeries, windowPicker, savedWindow } from '../charts.js';

// The server samples its history every 10 s: asking more often gets the same points.
const HISTORY_EVERY_MS = 10000;

/** The history of one queue (or all when `queueName` is null) over the window the user picks. */
export function historyLoader(ctx, queueName) {
  let win = savedWindow();
  let data = null;
  let fetchedAt = 0;
  let missing = false;
  let stamp = 'loading';
  return {
    get data() {
      return data;
    },
    get stamp() {
      return stamp;
    },
    reset() {
      data = null;
      fetchedAt = 0;
      stamp = 'loading';
    },
    /** Draws the window picker into `el`; a new window loads afresh. */
    picker(el) {
      const draw = () => fill(el, windowPicker(win, (w) => {
        win = w;
        this.reset();
        draw();
        ctx.refresh();
      }));
      draw();
    },
    async load() {
      if (missing || Date.now() - fetchedAt < HISTORY_EVERY_MS) return;
      fetchedAt = Date.now();
      try {
        data = await get(`/v1/history${query({ window: win, queue: queueName })}`);
        const pts = data.points || [];
        stamp = `${win}:${pts.length}:${pts.length ? pts[pts.length - 1].at : ''}`;
        ctx.clear('history');
      } catch (e) {
        if (e.missingRoute) {
          missing = true;
          stamp = 'missing';
        } else {
          ctx.report(e, 'Loading the history for the charts', 'history');
        }
      }
    },
    /** Draws build(series) into `el` when new points came. */
    render(el, build) {
      fillIfChanged(el, stamp, () => {
        if (missing) return h('p', { class: 'muted' }, 'Charts need GET /v1/history, which this server does not have (404).');
        if (!data) return h('p', { class: 'muted' }, 'Loading history…');
        return build(historySeries(data, queueName ? [queueName] : null));
      });
    },
  };
}

export const throughputChart = (s) => lineChart({
  title: 'Throughput (jobs per second)',
  times: s.times,
  series: [
    { label: 'enqueued', values: s.enqueued },
    { label: 'acked', values: s.acked },
    { label: 'failed', values: s.failed },
    { label: 'dead-lettered', values: s.dead_lettered },
  ],
  format: fmtRate,
});

export const depthChart = (s) => lineChart({
  title: 'Depth (jobs by state)',
  times: s.times,
  series: [
    { label: 'ready', values: s.ready },
    { label: 'delayed', values: s.delayed },
    { label: 'leased', values: s.leased },
    { label: 'dead', values: s.dead },
    { label: 'dead letters', values: s.dead_letters },
  ],
  format: fmtCount,
});
