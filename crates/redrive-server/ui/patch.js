// JSON Patch (RFC 6902) for the body editor and the triage page: the patch that turns one
// document into another (replace, add and remove, found by walking both), applying a patch to
// preview it, and a line diff of two texts shown with +/- marks (not colour alone).

import { h } from './dom.js';

const escapeToken = (k) => String(k).replace(/~/g, '~0').replace(/\//g, '~1');
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const kind = (v) => (Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v);

function equal(a, b) {
  if (a === b) return true;
  if (kind(a) !== kind(b) || typeof a !== 'object' || a === null) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => equal(v, b[i]));
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => has(b, k) && equal(a[k], b[k]));
}

/** The operations that turn `a` into `b`; [] when they are equal. */
export function diffJson(a, b, path = '') {
  if (equal(a, b)) return [];
  if (isObject(a) && isObject(b)) {
    const ops = [];
    for (const k of Object.keys(a)) if (!has(b, k)) ops.push({ op: 'remove', path: `${path}/${escapeToken(k)}` });
    for (const k of Object.keys(b)) {
      const p = `${path}/${escapeToken(k)}`;
      if (!has(a, k)) ops.push({ op: 'add', path: p, value: b[k] });
      else ops.push(...diffJson(a[k], b[k], p));
    }
    return ops;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const ops = [];
    const common = Math.min(a.length, b.length);
    for (let i = 0; i < common; i++) ops.push(...diffJson(a[i], b[i], `${path}/${i}`));
    // Removed from the end backwards, so that each index still names the element meant.
    for (let i = a.length - 1; i >= common; i--) ops.push({ op: 'remove', path: `${path}/${i}` });
    for (let i = common; i < b.length; i++) ops.push({ op: 'add', path: `${path}/${i}`, value: b[i] });
    return ops;
  }
  return [{ op: 'replace', path, value: b }];
}

function parsePointer(path) {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error(`${JSON.stringify(path)} is not a JSON pointer`);
  return path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc, tokens, path) {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object' || !has(cur, t)) throw new Error(`${path} does not exist`);
    cur = cur[t];
  }
  if (cur === null || typeof cur !== 'object') throw new Error(`${path} is not in an object or array`);
  return cur;
}

function getAt(doc, path) {
  let cur = doc;
  for (const t of parsePointer(path)) {
    if (cur === null || typeof cur !== 'object' || !has(cur, t)) throw new Error(`${path} does not exist`);
    cur = cur[t];
  }
  return cur;
}

function arrayIndex(arr, t, path, forAdd) {
  if (forAdd && t === '-') return arr.length;
  const i = Number(t);
  if (!/^(0|[1-9][0-9]*)$/.test(t) || i > arr.length || (!forAdd && i === arr.length)) throw new Error(`bad index in ${path}`);
  return i;
}

function addAt(doc, path, value) {
  const tokens = parsePointer(path);
  if (!tokens.length) return value;
  const parent = parentOf(doc, tokens, path);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, path, true), 0, value);
  else parent[last] = value;
  return doc;
}

function removeAt(doc, path) {
  const tokens = parsePointer(path);
  const parent = parentOf(doc, tokens, path);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, path, false), 1)[0];
  if (!has(parent, last)) throw new Error(`${path} does not exist`);
  const v = parent[last];
  delete parent[last];
  return v;
}

function replaceAt(doc, path, value) {
  const tokens = parsePointer(path);
  if (!tokens.length) return value;
  const parent = parentOf(doc, tokens, path);
  const last = tokens[tokens.length - 1];
  if (Array.isArray(parent)) parent[arrayIndex(parent, last, path, false)] = value;
  else if (has(parent, last)) parent[last] = value;
  else throw new Error(`${path} does not exist`);
  return doc;
}

/** `doc` with `ops` applied (to a copy); throws naming the operation that fails. */
export function applyPatch(doc, ops) {
  let out = structuredClone(doc);
  ops.forEach((op, i) => {
    try {
      const clone = (v) => structuredClone(v);
      switch (op.op) {
        case 'add': out = addAt(out, op.path, clone(op.value)); break;
        case 'remove': removeAt(out, op.path); break;
        case 'replace': out = replaceAt(out, op.path, clone(op.value)); break;
        case 'move': { const v = removeAt(out, op.from); out = addAt(out, op.path, v); break; }
        case 'copy': out = addAt(out, op.path, clone(getAt(out, op.from))); break;
        case 'test': if (!equal(getAt(out, op.path), op.value)) throw new Error(`test failed at ${op.path}`); break;
        default: throw new Error(`unknown op ${JSON.stringify(op.op)}`);
      }
    } catch (e) {
      throw new Error(`operation ${i}: ${e.message}`);
    }
  });
  return out;
}

// Above this many lines on either side, the diff shows both texts whole instead of an LCS.
const DIFF_LINES_MAX = 3000;

/** [{sign: ' ' | '-' | '+', text}] turning `a` into `b`, line by line (longest common subsequence). */
export function lineDiff(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  if (x.length > DIFF_LINES_MAX || y.length > DIFF_LINES_MAX) {
    return [...x.map((text) => ({ sign: '-', text })), ...y.map((text) => ({ sign: '+', text }))];
  }
  // lcs[i][j]: the common length of x[i..] and y[j..].
  const lcs = Array.from({ length: x.length + 1 }, () => new Uint32Array(y.length + 1));
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < x.length && j < y.length) {
    if (x[i] === y[j]) { out.push({ sign: ' ', text: x[i] }); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ sign: '-', text: x[i++] });
    else out.push({ sign: '+', text: y[j++] });
  }
  while (i < x.length) out.push({ sign: '-', text: x[i++] });
  while (j < y.length) out.push({ sign: '+', text: y[j++] });
  return out;
}

// Unchanged lines kept around each change; longer unchanged runs fold into one line.
const CONTEXT_LINES = 3;

/** A diff as a <pre>: removed lines marked "-", added "+", long unchanged runs folded. */
export function renderDiff(lines) {
  const changed = lines.map((l) => l.sign !== ' ');
  const near = (i) => {
    for (let k = Math.max(0, i - CONTEXT_LINES); k <= Math.min(lines.length - 1, i + CONTEXT_LINES); k++) if (changed[k]) return true;
    return false;
  };
  const pre = h('pre', { class: 'diff', 'aria-label': 'Changes: lines starting with - are removed, + are added' });
  let folded = 0;
  const flush = () => {
    if (folded) pre.append(h('span', { class: 'diff-fold' }, `  … ${folded} unchanged line${folded === 1 ? '' : 's'}\n`));
    folded = 0;
  };
  lines.forEach((l, i) => {
    if (l.sign === ' ' && !near(i)) {
      folded++;
      return;
    }
    flush();
    const cls = l.sign === '+' ? 'diff-add' : l.sign === '-' ? 'diff-del' : 'diff-same';
    pre.append(h('span', { class: cls }, `${l.sign} ${l.text}\n`));
  });
  flush();
  if (!changed.some(Boolean)) pre.prepend(h('span', { class: 'diff-fold' }, '  (no changes)\n'));
  return pre;
}

/** The diff of two JSON documents, each pretty-printed. */
export const jsonDiff = (a, b) => renderDiff(lineDiff(JSON.stringify(a, null, 2), JSON.stringify(b, null, 2)));

/** A patch as JSON with one operation a line. */
export function formatPatch(ops) {
  return ops.length ? `[\n${ops.map((o) => `  ${JSON.stringify(o)}`).join(',\n')}\n]` : '[]';
}
