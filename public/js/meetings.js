// The meetings table: one row per meeting the master lists as active or whose package is held,
// with a live progress bar while its package syncs.
import { h } from './dom.js';
import { formatAgo, formatBytes, formatDateTimeZone, formatDuration, formatPercent, formatRate } from './format.js';
import { nodeName, sourceOf } from './site.js';

const STATE_ORDER = { syncing: 0, failed: 1, active: 2, synced: 3, preheated: 4, ended: 5 };

/** `site`: the status' site block (names the sibling a package came from); may be absent. */
export function renderMeetings(body, meetings, i18n, site = null) {
  const t = (key, vars) => i18n.t(key, vars);
  const lang = i18n.lang;
  const sorted = [...meetings].sort((a, b) => (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) || String(a.title).localeCompare(String(b.title), lang));
  const labels = {
    meeting: t('meetings.col.meeting'),
    state: t('meetings.col.state'),
    progress: t('meetings.col.progress'),
    size: t('meetings.col.size'),
    syncedAt: t('meetings.col.syncedAt'),
    source: t('meetings.col.source'),
    downloads: t('meetings.col.downloads'),
    served: t('meetings.col.served'),
  };
  const rows = sorted.map((meeting) =>
    h(
      'tr',
      { dataset: { meetingId: meeting.id, state: meeting.state } },
      h(
        'td',
        { dataset: { label: labels.meeting } },
        h('div', { className: 'meeting-title' }, meeting.title || t('meetings.untitled')),
        h('div', { className: 'meeting-id mono' }, meeting.id),
      ),
      h('td', { dataset: { label: labels.state } }, h('span', { className: `state state-${meeting.state}`, dataset: { testid: 'meeting-state' } }, t(`state.${meeting.state}`))),
      h('td', { className: 'col-progress', dataset: { label: labels.progress } }, progressCell(meeting, t, lang, i18n)),
      h('td', { dataset: { label: labels.size } }, meeting.size === null ? '—' : formatBytes(meeting.size, lang)),
      h('td', { dataset: { label: labels.syncedAt }, title: meeting.synced_at ? formatDateTimeZone(meeting.synced_at, lang) : null }, meeting.synced_at ? formatAgo(meeting.synced_at, t) : '—'),
      h('td', { dataset: { label: labels.source } }, sourceCell(meeting, site, t)),
      h('td', { dataset: { label: labels.downloads } }, t('meetings.downloads', { completed: meeting.downloads_completed, active: meeting.active_downloads })),
      h('td', { dataset: { label: labels.served } }, servedCell(meeting, t, lang)),
    ),
  );
  patchRows(body, rows);
}

/**
 * Updates the table in place: progress arrives several times a second, and rebuilding the rows
 * would restart the moving stripe of every size-unknown bar each time (it would never be seen).
 */
function patchRows(body, rows) {
  const existing = new Map([...body.children].map((row) => [row.dataset.meetingId, row]));
  rows.forEach((row, index) => {
    const old = existing.get(row.dataset.meetingId);
    existing.delete(row.dataset.meetingId);
    let target = row;
    if (old) {
      patchRow(old, row);
      target = old;
    }
    const current = body.children[index];
    if (current !== target) body.insertBefore(target, current ?? null);
  });
  for (const row of existing.values()) row.remove();
}

function patchRow(old, row) {
  old.dataset.state = row.dataset.state;
  [...row.children].forEach((cell, index) => {
    const oldCell = old.children[index];
    if (!oldCell) return old.append(cell);
    if (oldCell.isEqualNode(cell)) return;
    const oldBar = oldCell.querySelector('.progress.indeterminate');
    const newBar = cell.querySelector('.progress.indeterminate');
    if (oldBar && newBar && oldBar.className === newBar.className) {
      oldBar.setAttribute('aria-valuetext', newBar.getAttribute('aria-valuetext') ?? '');
      const oldText = oldCell.querySelector('.progress-text');
      const newText = cell.querySelector('.progress-text');
      if (oldText && newText) oldText.replaceWith(newText);
      return;
    }
    old.replaceChild(cell, oldCell);
  });
}

/** "from node-x" / "from the master", and a note when this node is the meeting's seed for its siblings. */
function sourceCell(meeting, site, t) {
  const source = sourceOf(meeting, site, t);
  const seedHere = Boolean(site?.enabled && meeting.active && meeting.seed && meeting.seed === site.self && (site.members?.length ?? 0) > 1);
  const seedTitle = site?.enabled && meeting.seed ? t('meetings.seedTitle', { node: nodeName(site, meeting.seed) }) : null;
  return h(
    'div',
    { className: 'source-cell', title: seedTitle },
    source ? h('span', { className: `source source-${source.kind}`, title: source.title, dataset: { testid: 'meeting-source', source: source.kind } }, source.text) : h('span', { className: 'muted' }, '—'),
    seedHere ? h('span', { className: 'source-note', dataset: { testid: 'meeting-seed-here' } }, t('meetings.seedHere')) : null,
  );
}

/** Bytes served; split into tablets and sibling nodes once siblings took some. */
function servedCell(meeting, t, lang) {
  const total = meeting.bytes_served ?? 0;
  const peers = meeting.bytes_served_to_peers ?? 0;
  if (peers <= 0) return formatBytes(total, lang);
  return h(
    'div',
    { className: 'served-cell' },
    h('span', {}, formatBytes(total, lang)),
    h('span', { className: 'served-split', dataset: { testid: 'served-split' } }, t('meetings.servedSplit', { tablets: formatBytes(Math.max(0, total - peers), lang), peers: formatBytes(peers, lang) })),
  );
}

function progressCell(meeting, t, lang, i18n) {
  if (meeting.state === 'synced') {
    return h('div', { className: 'progress-cell' }, bar(1, 'done', `${formatPercent(1, lang)}`), h('span', { className: 'progress-text' }, formatPercent(1, lang)));
  }
  if (meeting.state === 'syncing' && meeting.progress) {
    const { bytes, total, rate, attempt } = meeting.progress;
    const known = typeof total === 'number' && total > 0;
    // A re-sync of a package held here: the master sends no length, but the held package's size
    // is a good estimate (a new version is rarely far off), so percent and time left are shown.
    const previous = !known && typeof meeting.size === 'number' && meeting.size > 0 ? meeting.size : null;
    const expected = known ? total : previous;
    const fraction = expected ? Math.min(known ? 1 : 0.99, bytes / expected) : null;
    const left = expected && rate > 0 && bytes < expected ? t('meetings.timeLeft', { left: formatDuration((expected - bytes) / rate, t) }) : null;
    let text = known
      ? `${formatPercent(fraction, lang)} · ${formatBytes(bytes, lang)} / ${formatBytes(total, lang)} · ${formatRate(rate, lang)}`
      : previous
        ? t('meetings.resync', { percent: formatPercent(fraction, lang), bytes: formatBytes(bytes, lang), size: formatBytes(previous, lang), rate: formatRate(rate, lang) })
        : t('meetings.receiving', { bytes: formatBytes(bytes, lang), rate: formatRate(rate, lang) });
    if (left) text += ` · ${left}`;
    return h(
      'div',
      { className: 'progress-cell' },
      bar(fraction, 'running', text),
      h('span', { className: 'progress-text' }, text, attempt > 1 ? ` · ${t('meetings.retry', { attempt })}` : ''),
      previous && meeting.servable ? h('span', { className: 'progress-note', dataset: { testid: 'serving-previous' } }, t('meetings.servingPrevious')) : null,
    );
  }
  if (meeting.state === 'syncing') {
    return h('div', { className: 'progress-cell' }, bar(null, 'running', t('meetings.waiting')), h('span', { className: 'progress-text' }, t('meetings.waiting')));
  }
  if (meeting.state === 'failed' && meeting.last_error) {
    const retry = meeting.last_error.retry_at ? ` · ${t('meetings.failedRetry', { when: formatAgo(meeting.last_error.retry_at, t) })}` : '';
    const message = i18n.serverMessage(meeting.last_error.message);
    return h('div', { className: 'progress-cell' }, bar(0, 'failed', message), h('span', { className: 'progress-text error-text' }, message, retry));
  }
  if (meeting.state === 'active') return h('span', { className: 'muted' }, t('meetings.waiting'));
  return h('span', { className: 'muted' }, '—');
}

/** fraction null: size unknown (the master sends no length), so the bar runs without a percentage. */
function bar(fraction, kind, label) {
  const known = fraction !== null;
  const element = h('div', {
    className: `progress progress-${kind}${known ? '' : ' indeterminate'}`,
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': '100',
    'aria-valuenow': known ? String(Math.round(fraction * 100)) : null,
    'aria-valuetext': label,
    dataset: { testid: 'progress' },
  });
  const fill = h('div', { className: 'progress-fill' });
  if (known) fill.style.width = `${(fraction * 100).toFixed(1)}%`;
  element.append(fill);
  return element;
}
