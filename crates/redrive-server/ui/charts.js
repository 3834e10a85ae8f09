// Charts from /v1/history, drawn as inline SVG: a line chart with a y scale, time labels, a
// legend whose lines carry the series' dash pattern (so they read without colour), and a
// readout of the values under the pointer. Also the series a page needs, derived from points.

import { h, fmtTime } from './dom.js';

const W = 480;
const H = 180;
const PAD = { left: 52, right: 10, top: 10, bottom: 22 };
// The widest chart we draw: more points than pixels only cost time.
const POINTS_DRAWN_MAX = 320;
const DASHES = ['', '6 4', '2 3', '10 3 2 3', '1 6'];

const svg = (tag, attrs, ...children) => h(`svg:${tag}`, attrs, ...children);

/** A round number at or above `v` (1, 2, 5 × 10^n), for the top of a scale. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  const p2 = (n) => String(n).padStart(2, '0');
  const hm = `${p2(d.getHours())}:${p2(d.getMinutes())}`;
  if (spanMs > 36 * 3600 * 1000) return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
  return spanMs < 10 * 60 * 1000 ? `${hm}:${p2(d.getSeconds())}` : hm;
}

/**
 * lineChart({title, times: [ms], series: [{label, values: [number|null]}], format}) → <figure>.
 * `format` renders a value (the y labels and the readout). Nulls break a line.
 */
export function lineChart({ title, times, series, format }) {
  const fig = h('figure', { class: 'chart' }, h('figcaption', null, title));
  if (times.length < 2) {
    fig.append(h('p', { class: 'muted chart-empty' },
      `Not enough history yet (${times.length} point${times.length === 1 ? '' : 's'}); the server samples every 10 s.`));
    return fig;
  }
  const t0 = times[0];
  const t1 = times[times.length - 1];
  const span = Math.max(1, t1 - t0);
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  const top = niceMax(max);
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - t0) / span) * iw;
  const y = (v) => PAD.top + ih - (v / top) * ih;

  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': title });
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    root.append(
      svg('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }),
      svg('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, format(v)));
  }
  for (const [t, anchor] of [[t0, 'start'], [(t0 + t1) / 2, 'middle'], [t1, 'end']]) {
    root.append(svg('text', { x: x(t), y: H - 6, 'text-anchor': anchor, class: 'axis' }, timeLabel(t, span)));
  }
  series.forEach((s, i) => {
    let d = '';
    let pen = false;
    s.values.forEach((v, j) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    root.append(svg('path', { d, class: `series s${i}`, 'stroke-dasharray': DASHES[i % DASHES.length] || undefined }));
    // A value with no neighbour draws no line: mark it.
    const has = (j) => s.values[j] !== null && s.values[j] !== undefined;
    s.values.forEach((v, j) => {
      if (has(j) && !has(j - 1) && !has(j + 1)) root.append(svg('circle', { cx: x(times[j]), cy: y(v), r: 3, class: `dot s${i}` }));
    });
  });

  // The readout: the values at the point nearest the pointer.
  const cursor = svg('line', { y1: PAD.top, y2: PAD.top + ih, class: 'cursor', visibility: 'hidden' });
  const readout = h('div', { class: 'chart-readout muted' }, '\u00a0');
  const hit = svg('rect', { x: PAD.left, y: PAD.top, width: iw, height: ih, class: 'hit' });
  const show = (ev) => {
    const box = root.getBoundingClientRect();
    const t = t0 + ((((ev.clientX - box.left) / box.width) * W - PAD.left) / iw) * span;
    let j = 0;
    for (let k = 1; k < times.length; k++) if (Math.abs(times[k] - t) < Math.abs(times[j] - t)) j = k;
    cursor.setAttribute('x1', x(times[j]));
    cursor.setAttribute('x2', x(times[j]));
    cursor.setAttribute('visibility', 'visible');
    readout.textContent = `${fmtTime(new Date(times[j]).toISOString())} — ${series
      .map((s) => `${s.label} ${s.values[j] === null || s.values[j] === undefined ? '—' : format(s.values[j])}`)
      .join(', ')}`;
  };
  hit.addEventListener('pointermove', show);
  hit.addEventListener('pointerdown', show);
  hit.addEventListener('pointerleave', () => cursor.setAttribute('visibility', 'hidden'));
  root.append(cursor, hit);

  const legend = h('ul', { class: 'legend' }, series.map((s, i) =>
    h('li', null,
      svg('svg', { viewBox: '0 0 24 8', class: 'legend-line', 'aria-hidden': 'true' },
        svg('line', { x1: 0, x2: 24, y1: 4, y2: 4, class: `series s${i}`, 'stroke-dasharray': DASHES[i % DASHES.length] || undefined })),
      ` ${s.label}`)));
  fig.append(root, legend, readout);
  return fig;
}

const GAUGES = ['ready', 'delayed', 'leased', 'dead', 'dead_letters'];
const COUNTERS = ['enqueued', 'acked', 'failed', 'dead_lettered', 'delivered'];
const PERCENTILES = ['start_p50_ms', 'start_p95_ms', 'start_p99_ms', 'process_p50_ms', 'process_p95_ms', 'process_p99_ms'];

/**
 * The series of a history answer, over the queues named in `names` (all when null): gauges
 * summed, the oldest ready age as the largest, counters turned into rates per second by
 * differencing consecutive points (a counter that went down is a restart: that step counts 0),
 * and percentiles as they are (when a single queue is asked for).
 */
export function historySeries(history, names) {
  let points = (history && history.points) || [];
  if (points.length > POINTS_DRAWN_MAX) {
    const step = Math.ceil(points.length / POINTS_DRAWN_MAX);
    points = points.filter((_, i) => i % step === 0 || i === points.length - 1);
  }
  const times = points.map((p) => new Date(p.at).getTime());
  const out = { times, oldest_ready_age_ms: [], hasPercentiles: false };
  for (const k of [...GAUGES, ...COUNTERS, ...PERCENTILES]) out[k] = [];
  const pick = (p) => Object.entries(p.queues || {}).filter(([q]) => !names || names.includes(q));
  points.forEach((p, i) => {
    const qs = pick(p);
    for (const k of GAUGES) out[k].push(qs.reduce((a, [, v]) => a + (v[k] || 0), 0));
    out.oldest_ready_age_ms.push(qs.reduce((a, [, v]) => Math.max(a, v.oldest_ready_age_ms || 0), 0));
    const prev = i > 0 ? points[i - 1].queues || {} : null;
    const dt = i > 0 ? (times[i] - times[i - 1]) / 1000 : 0;
    for (const k of COUNTERS) {
      if (!prev || dt <= 0) {
        out[k].push(null);
        continue;
      }
      let sum = 0;
      for (const [q, v] of qs) {
        // A queue absent from the point before was created since: its counters started at 0.
        const before = prev[q] ? prev[q][k] || 0 : 0;
        sum += Math.max(0, (v[k] || 0) - before);
      }
      out[k].push(sum / dt);
    }
    for (const k of PERCENTILES) {
      const v = qs.length === 1 ? qs[0][1][k] : undefined;
      if (v !== undefined && v !== null) out.hasPercentiles = true;
      out[k].push(v === undefined ? null : v);
    }
  });
  return out;
}

/** The rate of a counter over the last `spanMs` of history, per queue; null without data. */
export function recentRate(history, queue, counter, spanMs = 60000) {
  const points = ((history && history.points) || []).filter((p) => p.queues && p.queues[queue]);
  if (points.length < 2) return null;
  const at = (p) => new Date(p.at).getTime();
  const count = (p) => p.queues[queue][counter] || 0;
  const end = at(points[points.length - 1]);
  let i = points.length - 2;
  while (i > 0 && end - at(points[i - 1]) <= spanMs) i--;
  let total = 0;
  for (let k = i + 1; k < points.length; k++) total += Math.max(0, count(points[k]) - count(points[k - 1]));
  const seconds = (end - at(points[i])) / 1000;
  return seconds > 0 ? total / seconds : null;
}

export const WINDOWS = ['1h', '6h', '24h', '7d'];

/** The window picker: buttons, the chosen one pressed; remembers the choice. */
export function windowPicker(current, onPick) {
  return h('div', { class: 'seg', role: 'group', 'aria-label': 'Chart window' },
    WINDOWS.map((w) => h('button', {
      type: 'button', 'aria-pressed': String(w === current), class: w === current ? 'on' : '',
      onclick: () => {
        localStorage.setItem('redrive.window', w);
        onPick(w);
      },
    }, w)));
}

export const savedWindow = () => (WINDOWS.includes(localStorage.getItem('redrive.window')) ? localStorage.getItem('redrive.window') : '1h');
