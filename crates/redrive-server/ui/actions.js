// What pages share for acting on jobs: buttons that know the key's grants, the preview-then-run
// flow (a dry run first, then the real request after a person confirms), and a short list of
// job ids.

import { can } from './api.js';
import { h, fill, modal, showInfo, jobLink, fmtCount } from './dom.js';

/**
 * A button for something that needs `action` on `queue`: disabled, saying why, when the key's
 * grants do not allow it (the server would answer 403 anyway).
 */
export function actionButton(label, { action, queue, onClick, kind, testId }) {
  const allowed = can(action, queue);
  return h('button', {
    type: 'button',
    class: kind || '',
    disabled: !allowed,
    title: allowed ? undefined : `This key may not ${action} on ${queue ?? 'any queue'}`,
    'data-action': action,
    'data-testid': testId,
    onclick: onClick,
  }, label);
}

const IDS_SHOWN_MAX = 20;

export function idList(ids) {
  if (!ids || !ids.length) return null;
  const shown = ids.slice(0, IDS_SHOWN_MAX);
  return h('p', { class: 'id-list' }, shown.map((id) => [jobLink(id), ' ']),
    ids.length > shown.length ? `and ${fmtCount(ids.length - shown.length)} more` : null);
}

export function skippedList(skipped) {
  if (!skipped || !skipped.length) return null;
  const byReason = {};
  for (const s of skipped) byReason[s.reason] = (byReason[s.reason] || 0) + 1;
  return h('p', { class: 'muted' }, 'Skipped: ',
    Object.entries(byReason).map(([r, n]) => `${fmtCount(n)} ${r.replace(/_/g, ' ')}`).join(', '), '.');
}

/**
 * Previews an action with its dry run, shows what it would do, and runs it for real only when
 * the person confirms. `dryRun()` and `run()` return the server's answers; `describe(answer,
 * dry)` renders one; `count(answer)` says how many jobs it touches (0 disables the button).
 * Resolves to the real answer, or null when cancelled.
 */
export function previewThenRun({ title, dryRun, run, describe, count, confirmLabel, danger, done }) {
  return new Promise((resolve) => {
    let result = null;
    const body = h('div', { class: 'preview' }, h('p', { class: 'muted' }, 'Previewing (dry run)…'));
    const dlg = modal({
      title,
      body,
      onClose: () => resolve(result),
      actions: [
        { label: 'Cancel' },
        {
          label: confirmLabel,
          kind: danger ? 'danger' : 'primary',
          onClick: async ({ close }) => {
            result = await run();
            if (done) showInfo(done(result));
            close();
          },
        },
      ],
    });
    const confirm = dlg.buttons.lastChild;
    confirm.disabled = true;
    confirm.dataset.off = '1';
    dryRun().then(
      (answer) => {
        fill(body, h('p', { class: 'preview-label' }, 'Dry run: nothing has changed yet.'), describe(answer, true));
        const n = count(answer);
        confirm.dataset.off = n > 0 ? '0' : '1';
        confirm.disabled = n <= 0;
        confirm.textContent = n > 0 ? `${confirmLabel} (${fmtCount(n)})` : `${confirmLabel}: nothing to do`;
      },
      (e) => {
        dlg.error.textContent = `The preview failed: ${e.message}${e.status ? ` (HTTP ${e.status}, ${e.code})` : ''}`;
        dlg.error.hidden = false;
        body.replaceChildren();
      });
  });
}
