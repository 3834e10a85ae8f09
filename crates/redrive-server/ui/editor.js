// Editing a dead job's body before redriving it: the person edits the JSON, the dashboard
// works out the RFC 6902 patch between the old body and the new, shows it as operations and as
// a +/- diff, previews it with the server's dry run, and only then sends it
// (POST /v1/jobs/{id}/redrive with the patch).

import { post, enc } from './api.js';
import { h, fill, modal, parseBody, showInfo, jobLink, queueLink } from './dom.js';
import { diffJson, jsonDiff, formatPatch } from './patch.js';

/** Opens the editor for `job` (a job status); `onDone` runs after a redrive was sent. */
export function openBodyEditor(job, onDone) {
  const { json, text } = parseBody(job.body);
  if (json === undefined) {
    modal({
      title: 'This body is not JSON',
      body: h('p', null, 'A JSON Patch needs a JSON body; redrive this job as it is instead.'),
      actions: [{ label: 'Close' }],
    });
    return;
  }
  const source = job.dead ? job.dead.source_queue : job.queue;
  const area = h('textarea', { id: 'edit-body', rows: Math.min(24, text.split('\n').length + 2), spellcheck: 'false', 'aria-label': 'New body (JSON)' });
  area.value = text;
  const to = h('input', { type: 'text', id: 'edit-to', placeholder: source, 'aria-label': 'Target queue' });
  const review = h('div', { class: 'edit-review', 'aria-live': 'polite' });
  // The patch the last successful dry run checked; sending needs it to match the text again.
  let previewed = null;

  const dlg = modal({
    title: 'Edit the body, then redrive',
    body: [
      h('p', { class: 'muted small' }, 'Job ', jobLink(job.id), ' in ', queueLink(job.queue),
        '. Your edit is sent as a JSON Patch; the server applies it to the stored body.'),
      area,
      h('label', { for: 'edit-to' }, `Redrive into (empty: its source queue, ${source})`),
      to,
      review,
    ],
    actions: [
      { label: 'Cancel' },
      { label: 'Preview (dry run)', onClick: preview },
      { label: 'Redrive with this body', kind: 'primary', onClick: send },
    ],
  });
  const sendButton = dlg.buttons.lastChild;
  const lock = () => {
    sendButton.disabled = true;
    sendButton.dataset.off = '1';
  };
  lock();
  area.addEventListener('input', () => {
    previewed = null;
    lock();
  });
  to.addEventListener('input', () => {
    previewed = null;
    lock();
  });

  function currentPatch() {
    let next;
    try {
      next = JSON.parse(area.value);
    } catch (e) {
      throw new Error(`the new body is not JSON: ${e.message}`);
    }
    return { next, patch: diffJson(json, next) };
  }

  function request(patch, dryRun) {
    const body = { patch, dry_run: dryRun };
    if (to.value.trim()) body.to = to.value.trim();
    return post(`/v1/jobs/${enc(job.id)}/redrive`, body);
  }

  async function preview() {
    const { next, patch } = currentPatch();
    if (!patch.length) {
      fill(review, h('p', { class: 'muted' }, 'No changes yet: edit the body first.'));
      return;
    }
    fill(review, h('h3', null, 'Changes'), jsonDiff(json, next),
      h('h3', null, 'As a JSON Patch (what is sent)'), h('pre', { class: 'patch' }, formatPatch(patch)),
      h('p', { class: 'muted' }, 'Asking the server (dry run)…'));
    const answer = await request(patch, true);
    review.lastChild.remove();
    const { json: server } = parseBody(answer.body);
    const agrees = server !== undefined && diffJson(server, next).length === 0;
    review.append(h('p', { class: 'preview-label' },
      `Dry run: the job would be redriven into ${answer.queue}${agrees ? ' with exactly this body.' : ' with the body below (it differs from your edit).'}`));
    if (!agrees) review.append(h('pre', null, answer.body));
    previewed = JSON.stringify([patch, to.value.trim()]);
    sendButton.dataset.off = '0';
  }

  async function send({ close }) {
    const { patch } = currentPatch();
    if (previewed !== JSON.stringify([patch, to.value.trim()])) throw new Error('preview this patch first');
    const answer = await request(patch, false);
    showInfo('Redriven with the edited body as job ', jobLink(answer.id), ` in ${answer.queue}.`);
    close();
    if (onDone) onDone(answer);
  }
}
