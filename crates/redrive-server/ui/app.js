// The dashboard's shell: the hash router, the poll that keeps the current page live (every few
// seconds, paused while the tab is hidden), the key prompt, who the key is, and the theme.
//
// A page is a module with mount(root, route, ctx) → {refresh()}: mount builds what
// stays (forms, buttons), refresh fetches and redraws the data, and must leave what the user
// typed or selected alone.
//
// Layout: api.js (requests, errors, the key, grants) · dom.js (elements, formats, messages,
// dialogs) · actions.js (grant-aware buttons, dry run then confirm) · charts.js (SVG charts,
// series from /v1/history) · patch.js (JSON Patch, line diffs) · editor.js (edit a dead body,
// redrive it patched) · views/ (one module per page; common.js and jobs-browser.js are parts).
// Served by the server at /ui (crates/redrive-server/src/ui.rs); no build step.

import { loadWhoami, onUnauthorized, session, setToken, token } from './api.js';
import { h, fill, modal, showError, clearError, clearErrors } from './dom.js';
import * as overview from './views/overview.js';
import * as queue from './views/queue.js';
import * as job from './views/job.js';
import * as dead from './views/dead.js';
import * as triage from './views/triage.js';

const POLL_MS = 3000;

const ROUTES = [
  [/^\/$/, overview, 'Queues'],
  [/^\/queues\/([^/]+)$/, queue, 'Queue'],
  [/^\/jobs\/([^/]+)$/, job, 'Job'],
  [/^\/dead\/([^/]+)$/, dead, 'Dead letters'],
  [/^\/triage$/, triage, 'Triage'],
];

let current = null;

const ctx = {
  /** Shows a failure of one part of the page; the same `key` shares one message. */
  report(err, context, key) {
    showError(err, context, key);
    setLive('error');
  },
  clear(key) {
    clearError(key);
  },
  /** Refreshes the current page now (after an action), rather than at the next tick. */
  refresh: () => tick(true),
};

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(qs || '') };
}

function route() {
  const { path, query } = parseHash();
  const root = document.getElementById('view');
  root.replaceChildren();
  for (const a of document.querySelectorAll('header nav a')) {
    a.setAttribute('aria-current', String(a.getAttribute('href') === `#${path}` || (path.startsWith('/queues') && a.getAttribute('href') === '#/')));
  }
  for (const [re, mod, title] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    let param = m[1];
    try {
      param = param && decodeURIComponent(param);
    } catch {
      // a malformed %-escape: the text as it is
    }
    document.title = `${param ? `${param} · ` : ''}${title} · redrive`;
    current = { page: mod.mount(root, { param, query }, ctx), busy: false };
    tick(true);
    return;
  }
  current = null;
  fill(root, h('h1', null, 'Not found'), h('p', null, 'No page here. ', h('a', { href: '#/' }, 'Back to the queues.')));
}

async function tick(force) {
  const c = current;
  if (!c || (document.hidden && !force)) return;
  if (c.busy) {
    // An action asked for fresh data while a refresh is on its way: run once more after it.
    if (force) c.again = true;
    return;
  }
  c.busy = true;
  try {
    await c.page.refresh();
    if (c === current) setLive('ok');
  } catch (e) {
    if (c === current) ctx.report(e, 'Updating this page', 'poll');
  } finally {
    c.busy = false;
  }
  if (c.again && c === current) {
    c.again = false;
    tick(true);
  }
}

function setLive(state) {
  const el = document.getElementById('live');
  const now = new Date().toLocaleTimeString();
  if (document.hidden) el.textContent = '‖ paused while hidden';
  else if (state === 'error') el.textContent = `⚠ update failed ${now}`;
  else el.textContent = `● live · ${now}`;
  el.dataset.state = document.hidden ? 'paused' : state;
}

// ---- the key ----------------------------------------------------------------------------

// Set when the person closed the prompt without a key: polls stop asking until they click
// "Enter a key".
let declined = false;

function promptForKey(err) {
  if (declined) return Promise.resolve(false);
  return new Promise((resolve) => {
    let given = false;
    const input = h('input', {
      id: 'key-input', type: 'password', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'KEY_ID.SECRET', 'aria-describedby': 'key-help',
    });
    const use = ({ close }) => {
      const v = input.value.trim();
      if (!/^[^.\s]+\.\S+$/.test(v)) throw new Error('a key is written KEY_ID.SECRET');
      setToken(v);
      given = true;
      close();
    };
    const { buttons } = modal({
      title: 'API key needed',
      body: [
        h('p', null, token() ? 'The server refused this key: ' : 'This server needs a key: ', h('span', { class: 'muted' }, err.message)),
        h('label', { for: 'key-input' }, 'API key'),
        input,
        h('p', { id: 'key-help', class: 'muted small' }, 'Kept in this tab only (session storage), sent as Authorization: Bearer.'),
      ],
      actions: [{ label: 'Cancel' }, { label: 'Use this key', kind: 'primary', onClick: use }],
      onClose: () => {
        resolve(given);
        if (given) keyChanged();
        else {
          declined = true;
          renderWho();
        }
      },
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') buttons.lastChild.click();
    });
    input.focus();
  });
}

async function keyChanged() {
  try {
    await loadWhoami();
    // What failed for want of a key is answered now.
    clearErrors();
  } catch (e) {
    showError(e, 'Who am I', 'whoami');
  }
  renderWho();
  route();
}

function renderWho() {
  const el = document.getElementById('who');
  if (declined) {
    fill(el, h('button', {
      type: 'button', class: 'small',
      onclick: () => {
        declined = false;
        keyChanged();
      },
    }, '🔑 Enter a key'));
    return;
  }
  if (!session.known) {
    fill(el);
    return;
  }
  if (!session.auth) {
    fill(el, h('span', { class: 'muted' }, 'no authentication'));
    return;
  }
  fill(el,
    h('span', { title: session.grants.join(' ') }, '🔑 ', session.name || '', ' ', h('span', { class: 'mono muted' }, session.keyId)),
    ' ',
    h('button', {
      type: 'button', class: 'small',
      onclick: () => {
        setToken(null);
        Object.assign(session, { known: false, auth: false, grants: [] });
        location.reload();
      },
    }, 'Sign out'));
}

// ---- the theme --------------------------------------------------------------------------

const THEMES = ['auto', 'dark', 'light'];

function applyTheme(t) {
  if (t === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  const b = document.getElementById('theme');
  b.textContent = `◐ ${t}`;
  b.setAttribute('aria-label', `Colour theme: ${t} (click to change)`);
}

function setupTheme() {
  let t = localStorage.getItem('redrive.theme');
  if (!THEMES.includes(t)) t = 'auto';
  applyTheme(t);
  document.getElementById('theme').addEventListener('click', () => {
    t = THEMES[(THEMES.indexOf(t) + 1) % THEMES.length];
    localStorage.setItem('redrive.theme', t);
    applyTheme(t);
  });
}

// ---- start ------------------------------------------------------------------------------

async function start() {
  setupTheme();
  onUnauthorized(promptForKey);
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => {
    setLive('ok');
    if (!document.hidden) tick();
  });
  setInterval(tick, POLL_MS);
  try {
    await loadWhoami();
  } catch (e) {
    showError(e, 'Who am I', 'whoami');
  }
  renderWho();
  route();
}

start();
