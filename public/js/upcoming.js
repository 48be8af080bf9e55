// The upcoming meetings table: meetings not started yet, scheduled in the preheat window, with how
// far their package is fetched ahead of the start.
import { h } from './dom.js';
import { formatBytes, formatDateTimeZone } from './format.js';

export function renderUpcoming(body, upcoming, i18n) {
  const t = (key, vars) => i18n.t(key, vars);
  const lang = i18n.lang;
  body.replaceChildren(
    ...upcoming.map((meeting) =>
      h(
        'tr',
        { dataset: { meetingId: meeting.id, preheat: meeting.preheat } },
        h('td', {}, h('div', { className: 'meeting-title' }, meeting.title || t('meetings.untitled')), h('div', { className: 'meeting-id mono' }, meeting.id)),
        // The master's own wording of the time (its local time), and the instant as this browser shows it.
        h('td', { title: meeting.time || null }, meeting.scheduled_at ? formatDateTimeZone(meeting.scheduled_at, lang) : '—'),
        h(
          'td',
          {},
          h('span', { className: `state state-preheat-${meeting.preheat}`, dataset: { testid: 'preheat-state' } }, t(`preheat.${meeting.preheat}`)),
          meeting.last_error ? h('div', { className: 'error-text small' }, meeting.last_error.message) : null,
        ),
        h('td', {}, meeting.size === null || meeting.size === undefined ? '—' : formatBytes(meeting.size, lang)),
      ),
    ),
  );
}
