// Small helpers every page uses: building elements, formatting numbers, times and states, the
// message area, and modal dialogs. No page writes HTML strings: text always goes in as text.

/**
 * h('a', {href, class, onclick}, 'text', child, [more]) builds an element. Attributes that are
 * booleans set the property (disabled, checked), `on…` functions become listeners, and
 * null/false children are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) {
      if (k in el) el[k] = true;
      else el.setAttribute(k, '');
    } else if (k === 'value' && 'value' in el) el.value = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces what `el` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * Re-renders `el` only when `data` changed since the last call, so that a refresh every few
 * seconds keeps open <details>, focus and scroll positions when nothing moved.
 */
export function fillIfChanged(el, data, render) {
  const key = JSON.stringify(data);
  if (el.dataset.rendered === key) return false;
  el.dataset.rendered = key;
  fill(el, render());
  return true;
}

export const fmtCount = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'));

export function fmtRate(perSecond) {
  if (perSecond === undefined || perSecond === null || Number.isNaN(perSecond)) return '—';
  if (perSecond === 0) return '0/s';
  if (perSecond < 0.1) return `${(perSecond * 60).toFixed(1)}/min`;
  return `${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond)}/s`;
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const pad = (n) => String(n).padStart(2, '0');

/** A time as local `YYYY-MM-DD HH:MM:SS`, with the exact UTC value as its tooltip. */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeEl(iso) {
  return h('time', { datetime: iso || undefined, title: iso || undefined }, fmtTime(iso));
}

// UUIDv7 ids of one moment share their first digits (the time): the tail tells them apart.
export const shortId = (id) => (id && id.length > 17 ? `${id.slice(0, 8)}…${id.slice(-8)}` : id || '');

// States and outcomes carry a symbol and a word, so that they read without colour.
const MARKS = {
  ready: '▶', delayed: '◔', leased: '⟳', dead: '✖', acked: '✔', completed: '✔',
  ok: '✔', failed: '✖', lease_expired: '⌛', revoked: '↺', released: '↩',
  pending: '…', approved: '✔', rejected: '⊘', paused: '‖', running: '▶',
  succeeded: '✔', died_again: '✖',
};

export function badge(word, kind) {
  const mark = MARKS[word] || '•';
  return h('span', { class: `badge b-${kind || word}` }, h('span', { 'aria-hidden': 'true' }, mark), ` ${word.replace(/_/g, ' ')}`);
}

export function jobLink(id) {
  return h('a', { href: `#/jobs/${encodeURIComponent(id)}`, class: 'mono', title: id }, shortId(id));
}

export function queueLink(name) {
  return h('a', { href: `#/queues/${encodeURIComponent(name)}` }, name);
}

/** The body pretty-printed when it is JSON; `json` is the parsed value or undefined. */
export function parseBody(body) {
  if (typeof body !== 'string') return { json: undefined, text: '' };
  try {
    const json = JSON.parse(body);
    return { json, text: JSON.stringify(json, null, 2) };
  } catch {
    return { json: undefined, text: body };
  }
}

/** A table; a header given as [text, 'num'] is a right-aligned numeric column. */
export function table(headers, rows, opts = {}) {
  const th = (t) => (Array.isArray(t) ? h('th', { scope: 'col', class: t[1] }, t[0]) : h('th', { scope: 'col' }, t));
  return h('div', { class: 'table-wrap' },
    h('table', { class: opts.class },
      h('thead', null, h('tr', null, headers.map(th))),
      h('tbody', null, rows)));
}

export function dl(pairs) {
  return h('dl', { class: 'props' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

// ---- the message area -------------------------------------------------------------------

const messages = () => document.getElementById('messages');

/**
 * Shows an error until it is dismissed. Errors with the same `key` (a poll that keeps failing)
 * share one message with a count instead of stacking up.
 */
export function showError(err, context, key) {
  const status = err && err.status ? ` (HTTP ${err.status}${err.code ? `, ${err.code}` : ''})` : '';
  const text = `${context ? `${context}: ` : ''}${err && err.message ? err.message : String(err)}${status}`;
  const id = key || text;
  const area = messages();
  for (const m of area.children) {
    if (m.dataset.key === id) {
      m.querySelector('.msg-text').textContent = text;
      const n = Number(m.dataset.count || 1) + 1;
      m.dataset.count = n;
      m.querySelector('.msg-count').textContent = `×${n}`;
      return;
    }
  }
  const forbidden = err && err.status === 403;
  const el = h('div', { class: `msg msg-error${forbidden ? ' msg-forbidden' : ''}`, role: 'alert', 'data-key': id },
    h('strong', null, forbidden ? '⊘ Not allowed' : '⚠ Error'),
    ' ',
    h('span', { class: 'msg-text' }, text),
    ' ',
    h('span', { class: 'msg-count' }),
    h('button', { type: 'button', class: 'msg-close', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'));
  area.append(el);
}

/** Removes the message a keyed error left, once what failed works again. */
export function clearError(key) {
  for (const m of [...messages().children]) if (m.dataset.key === key) m.remove();
}

/** Removes every error shown (a new key answers what the old one could not). */
export function clearErrors() {
  for (const m of [...messages().querySelectorAll('.msg-error')]) m.remove();
}

export function showInfo(...content) {
  const el = h('div', { class: 'msg msg-info', role: 'status' },
    h('strong', null, '✔'), ' ', h('span', { class: 'msg-text' }, content),
    h('button', { type: 'button', class: 'msg-close', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'));
  messages().append(el);
  setTimeout(() => el.remove(), 15000);
}

// ---- dialogs ----------------------------------------------------------------------------

/**
 * Opens a modal <dialog>. `actions` are buttons: {label, kind, onClick}; onClick may return a
 * promise, and the dialog stays open (its buttons disabled) until it settles. Returns the
 * dialog with a close() that removes it.
 */
export function modal({ title, body, actions, onClose }) {
  const error = h('p', { class: 'dialog-error', role: 'alert', hidden: true });
  const buttons = h('div', { class: 'dialog-actions' });
  const dlg = h('dialog', { class: 'dialog' },
    h('h2', null, title), h('div', { class: 'dialog-body' }, body), error, buttons);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    dlg.close();
    dlg.remove();
    if (onClose) onClose();
  };
  dlg.addEventListener('cancel', (e) => {
    e.preventDefault();
    close();
  });
  for (const a of actions) {
    const b = h('button', { type: 'button', class: a.kind || '' }, a.label);
    b.addEventListener('click', async () => {
      if (!a.onClick) return close();
      for (const x of buttons.children) x.disabled = true;
      error.hidden = true;
      try {
        await a.onClick({ close, error });
      } catch (e) {
        error.textContent = `${e.message}${e.status ? ` (HTTP ${e.status}, ${e.code})` : ''}`;
        error.hidden = false;
      } finally {
        if (!closed) for (const x of buttons.children) x.disabled = x.dataset.off === '1';
      }
    });
    buttons.append(b);
  }
  document.body.append(dlg);
  dlg.showModal();
  return { dlg, close, error, buttons };
}

/** Asks before doing something that cannot be undone; resolves to true or false. */
export function confirmDialog({ title, message, confirmLabel, danger }) {
  return new Promise((resolve) => {
    let answer = false;
    modal({
      title,
      body: message,
      onClose: () => resolve(answer),
      actions: [
        { label: 'Cancel' },
        { label: confirmLabel, kind: danger ? 'danger' : 'primary', onClick: ({ close }) => { answer = true; close(); } },
      ],
    });
  });
}
