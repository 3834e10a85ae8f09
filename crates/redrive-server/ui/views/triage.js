// Triage (#/triage): the proposals that wait for a person, with the agent's analysis and its
// patch shown as a diff of the first job's body; approve or reject with a reason. Also the
// decisions made lately, how the agent's redrives turned out per category (from /metrics), and
// the audit log for keys that may read it.

import { get, getText, post, enc, can, session } from '../api.js';
import { h, fill, fillIfChanged, badge, table, timeEl, jobLink, queueLink, showInfo, fmtCount, parseBody } from '../dom.js';
import { applyPatch, jsonDiff, formatPatch } from '../patch.js';

const JOBS_SHOWN_MAX = 20;
// The slower parts (decided proposals, metrics, audit) are fetched every this many polls.
const SLOW_EVERY_TICKS = 4;
const AUDIT_SHOWN_MAX = 50;

export function mount(root, _route, ctx) {
  const cards = new Map();
  const pendingEl = h('div', { id: 'pending' }, h('p', { class: 'muted' }, 'Loading…'));
  const decidedEl = h('div');
  const outcomesSection = h('section', { class: 'card', hidden: true }, h('h2', null, 'How redrives turned out'));
  const outcomesEl = h('div');
  outcomesSection.append(outcomesEl);
  const auditSection = h('section', { class: 'card', hidden: !can('admin') }, h('h2', null, 'Audit log'));
  const auditEl = h('div');
  auditSection.append(auditEl);
  let auditAllowed = can('admin');
  let ticks = 0;

  root.append(
    h('h1', null, 'Triage'),
    h('section', { class: 'card' }, h('h2', null, 'Waiting for a person'), pendingEl),
    h('section', { class: 'card' }, h('h2', null, 'Decided lately'), decidedEl),
    outcomesSection,
    auditSection);

  const by = () => session.keyId || 'dashboard';

  async function decide(p, verb, why) {
    const body = { by: by() };
    if (why) body.why = why;
    try {
      const r = await post(`/v1/triage/proposals/${enc(p.id)}/${verb}`, body);
      if (r.status === 'failed') {
        ctx.report(new Error(r.result && r.result.error ? r.result.error : 'the action failed'), `Approved, but running proposal ${p.id} failed`);
      } else {
        showInfo(`Proposal ${verb === 'approve' ? 'approved' : 'rejected'}. `, resultSummary(r));
      }
      ticks = 0;
      ctx.refresh();
    } catch (e) {
      ctx.report(e, `${verb === 'approve' ? 'Approving' : 'Rejecting'} the proposal`);
    }
  }

  function card(p) {
    const d = p.decision;
    const why = h('input', { type: 'text', id: `why-${p.id}`, placeholder: 'why (required to reject)', 'aria-label': 'Reason' });
    const allowed = can('triage', p.queue) && can('triage', p.source_queue);
    const denied = allowed ? undefined : `This key may not triage ${p.queue}`;
    const approve = h('button', { type: 'button', class: 'primary', disabled: !allowed, title: denied, 'data-testid': 'approve' }, '✔ Approve and run');
    const reject = h('button', { type: 'button', class: 'danger', disabled: !allowed, title: denied, 'data-testid': 'reject' }, '⊘ Reject');
    const busy = async (fn) => {
      approve.disabled = reject.disabled = true;
      try {
        await fn();
      } finally {
        approve.disabled = reject.disabled = !allowed;
      }
    };
    approve.addEventListener('click', () => busy(() => decide(p, 'approve', why.value.trim())));
    reject.addEventListener('click', () => busy(async () => {
      if (!why.value.trim()) {
        ctx.report(new Error('say why you reject it'), 'Rejecting the proposal');
        why.focus();
        return;
      }
      await decide(p, 'reject', why.value.trim());
    }));
    const patchEl = h('div');
    if (d.patch) showPatch(patchEl, p);
    return h('article', { class: 'proposal', 'data-proposal': p.id },
      h('div', { class: 'proposal-head' },
        badge(p.status), h('span', { class: 'tag' }, d.category.replace(/_/g, ' ')),
        h('strong', null, d.action.replace(/_/g, ' ')),
        h('span', null, `confidence ${Math.round(d.confidence * 100)}%`),
        h('span', { class: 'muted' }, '· ', timeEl(p.created_at))),
      h('p', null, fmtCount(p.job_ids.length), ` job(s) in `, h('a', { href: `#/dead/${enc(p.queue)}` }, p.queue),
        ', died in ', queueLink(p.source_queue), ': ', h('code', null, p.signature)),
      h('p', { class: 'analysis' }, h('strong', null, 'Analysis: '), d.analysis),
      h('p', { class: 'muted' }, 'Asks a person because: ', p.reason),
      d.delay_ms ? h('p', null, `Redrive after ${d.delay_ms} ms.`) : null,
      p.escalation ? h('p', null, 'Escalation: ', p.escalation.delivered ? 'delivered' : `not delivered (${p.escalation.error || 'no reason'})`) : null,
      h('p', { class: 'id-list' }, 'Jobs: ', p.job_ids.slice(0, JOBS_SHOWN_MAX).map((id) => [jobLink(id), ' ']),
        p.job_ids.length > JOBS_SHOWN_MAX ? `and ${fmtCount(p.job_ids.length - JOBS_SHOWN_MAX)} more` : null),
      patchEl,
      h('div', { class: 'decide' }, h('div', { class: 'field' }, h('label', { for: `why-${p.id}` }, 'Reason'), why), approve, reject));
  }

  // The patch as operations, and as a diff of the first job's body with it applied.
  async function showPatch(el, p) {
    const ops = p.decision.patch;
    fill(el, h('h3', null, 'Patch'), h('pre', { class: 'patch' }, formatPatch(ops)), h('p', { class: 'muted' }, 'Loading the first job’s body…'));
    let note;
    try {
      const job = await get(`/v1/jobs/${enc(p.job_ids[0])}`);
      const { json } = parseBody(job.body);
      if (json === undefined) note = h('p', { class: 'muted' }, 'The first job’s body is not JSON: the patch cannot apply to it.');
      else {
        try {
          note = [h('h3', null, 'What it does to the first job’s body'), jsonDiff(json, applyPatch(json, ops))];
        } catch (e) {
          note = h('p', { class: 'dialog-error' }, `The patch does not apply to the first job’s body: ${e.message}`);
        }
      }
    } catch (e) {
      note = h('p', { class: 'muted' }, `The first job could not be read: ${e.message}`);
    }
    el.lastChild.replaceWith(...[note].flat());
  }

  function renderPending(pending) {
    if (!pending.length) {
      cards.clear();
      fill(pendingEl, h('p', { class: 'empty' }, 'Nothing waits for a decision.'));
      return;
    }
    const keep = new Set(pending.map((p) => p.id));
    for (const [id, el] of cards) {
      if (!keep.has(id)) {
        el.remove();
        cards.delete(id);
      }
    }
    const ordered = pending.map((p) => {
      if (!cards.has(p.id)) cards.set(p.id, card(p));
      return cards.get(p.id);
    });
    for (const c of [...pendingEl.children]) if (!c.classList.contains('proposal')) c.remove();
    ordered.forEach((el, i) => {
      if (pendingEl.children[i] !== el) pendingEl.insertBefore(el, pendingEl.children[i] || null);
    });
  }

  function decidedTable(all) {
    const decided = all.filter((p) => p.status !== 'pending').slice(-20).reverse();
    if (!decided.length) return h('p', { class: 'empty' }, 'No decisions yet.');
    return table(['Decided', 'Status', 'Action', 'Queue', 'Signature', 'By', 'Why', 'Result'],
      decided.map((p) => h('tr', { 'data-proposal': p.id },
        h('td', { class: 'nowrap' }, timeEl(p.decided_at)),
        h('td', null, badge(p.status)),
        h('td', null, p.decision.action.replace(/_/g, ' ')),
        h('td', null, p.queue),
        h('td', { class: 'clip' }, h('code', { title: p.signature }, p.signature)),
        h('td', null, p.decided_by || ''),
        h('td', { class: 'wrap' }, p.decided_why || ''),
        h('td', { class: 'wrap' }, resultSummary(p)))));
  }

  async function loadSlow() {
    const [all, metrics, audit] = await Promise.all([
      get('/v1/triage/proposals').catch((e) => ctx.report(e, 'Listing decided proposals', 'decided')),
      // Absent or not for this key: the section stays hidden; anything else is shown.
      getText('/metrics').catch((e) => {
        if (e.status !== 403 && !e.missingRoute) ctx.report(e, 'Reading /metrics', 'metrics');
        return null;
      }),
      auditAllowed ? get(`/v1/audit?limit=${AUDIT_SHOWN_MAX}`).catch((e) => e) : null,
    ]);
    if (all) fillIfChanged(decidedEl, all.proposals.filter((p) => p.status !== 'pending'), () => decidedTable(all.proposals));
    const outcomes = metrics ? parseOutcomes(metrics) : null;
    outcomesSection.hidden = !outcomes;
    if (outcomes) fillIfChanged(outcomesEl, outcomes, () => outcomesTable(outcomes));
    if (audit instanceof Error) {
      if (audit.status === 403 || audit.missingRoute) {
        auditAllowed = false;
        auditSection.hidden = true;
      } else ctx.report(audit, 'Reading the audit log', 'audit');
    } else if (audit) {
      auditSection.hidden = false;
      fillIfChanged(auditEl, audit.entries, () => auditTable(audit.entries || []));
    }
  }

  return {
    async refresh() {
      const slow = ticks++ % SLOW_EVERY_TICKS === 0;
      const [{ proposals }] = await Promise.all([get('/v1/triage/proposals?status=pending'), slow ? loadSlow() : null]);
      renderPending(proposals);
    },
  };
}

function resultSummary(p) {
  const r = p.result;
  if (!r) return '';
  if (r.error) return h('span', { class: 'dialog-error' }, `✖ ${r.error}`);
  if (r.patched) {
    return [
      r.patched.map((x) => h('span', { class: 'nowrap' }, jobLink(x.from), ' → ', jobLink(x.to), ' ')),
      (r.failed || []).map((x) => h('span', { class: 'dialog-error' }, ' ✖ ', jobLink(x.id), `: ${x.error}`)),
    ];
  }
  if (r.moved !== undefined) return `moved ${fmtCount(r.moved)} job(s)`;
  if (r.acknowledged) return 'acknowledged';
  return h('code', null, JSON.stringify(r));
}

/** {category: {succeeded, died_again}} from the Prometheus text, or null when absent. */
function parseOutcomes(text) {
  const out = {};
  let any = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith('redrive_triage_redrive_outcomes_total{')) continue;
    const m = line.match(/^[^{]+\{([^}]*)\}\s+(\S+)/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    const cat = labels.category || 'unknown';
    out[cat] = out[cat] || { succeeded: 0, died_again: 0 };
    out[cat][labels.outcome] = (out[cat][labels.outcome] || 0) + Number(m[2]);
    any = true;
  }
  return any ? out : null;
}

function outcomesTable(outcomes) {
  return table(['Category', 'Succeeded', 'Died again', 'Success rate'],
    Object.entries(outcomes).map(([cat, o]) => {
      const total = (o.succeeded || 0) + (o.died_again || 0);
      return h('tr', null, h('td', null, cat.replace(/_/g, ' ')), h('td', { class: 'num' }, fmtCount(o.succeeded || 0)),
        h('td', { class: 'num' }, fmtCount(o.died_again || 0)),
        h('td', { class: 'num' }, total ? `${Math.round((100 * (o.succeeded || 0)) / total)}%` : '—'));
    }));
}

function auditTable(entries) {
  if (!entries.length) return h('p', { class: 'empty' }, 'No entries.');
  return table(['When', 'Key', 'Action', 'Target', 'From', 'Detail'],
    [...entries].reverse().map((e) => h('tr', null,
      h('td', { class: 'nowrap' }, timeEl(e.at)),
      h('td', null, h('code', null, e.key || '—')),
      h('td', null, e.action),
      h('td', { class: 'wrap' }, e.target || ''),
      h('td', null, e.from || ''),
      h('td', { class: 'clip' }, e.detail === null || e.detail === undefined ? '' : h('code', { title: JSON.stringify(e.detail) }, JSON.stringify(e.detail))))));
}
