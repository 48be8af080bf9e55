// Number, size and time formatting for the panel (locale-aware where the browser provides it).

export function formatBytes(bytes, lang) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return '—';
  // Binary units, named as such (the config form and the logs use them too).
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${new Intl.NumberFormat(lang, { maximumFractionDigits: digits, minimumFractionDigits: unit === 0 ? 0 : digits }).format(value)} ${units[unit]}`;
}

export function formatRate(bytesPerSecond, lang) {
  return `${formatBytes(bytesPerSecond ?? 0, lang)}/s`;
}

export function formatPercent(fraction, lang) {
  return new Intl.NumberFormat(lang, { style: 'percent', maximumFractionDigits: fraction < 0.1 ? 1 : 0 }).format(fraction);
}

export function formatDateTime(value, lang) {
  if (value === null || value === undefined) return '—';
  const date = typeof value === 'number' ? new Date(value) : new Date(String(value));
  if (Number.isNaN(date.getTime())) return '—';
  return new Intl.DateTimeFormat(lang, { dateStyle: 'short', timeStyle: 'medium' }).format(date);
}

/** A date and time in the browser's zone, with the zone: "12/3/26, 8:34:00 AM (UTC+08:00)". */
export function formatDateTimeZone(value, lang) {
  const text = formatDateTime(value, lang);
  if (text === '—') return text;
  return `${text} (${utcOffset(typeof value === 'number' ? new Date(value) : new Date(String(value)))})`;
}

/** "12 s ago", "3 min ago"... relative to now. */
export function formatAgo(value, t, now = Date.now()) {
  if (value === null || value === undefined) return t('time.never');
  const at = typeof value === 'number' ? value : Date.parse(value);
  if (Number.isNaN(at)) return t('time.never');
  const seconds = Math.round((now - at) / 1000);
  if (seconds < 0) return t('time.inSeconds', { n: -seconds });
  if (seconds < 3) return t('time.justNow');
  if (seconds < 90) return t('time.secondsAgo', { n: seconds });
  if (seconds < 5400) return t('time.minutesAgo', { n: Math.round(seconds / 60) });
  return t('time.hoursAgo', { n: Math.round(seconds / 3600) });
}

export function formatUptime(totalSeconds, t) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return t('time.uptime', { d, h, m });
  if (h > 0) return t('time.uptimeShort', { h, m });
  return t('time.uptimeMinutes', { m, s: s % 60 });
}

/** "45 s", "3 min 10 s", "1 h 5 min": a duration ahead (time left). */
export function formatDuration(totalSeconds, t) {
  const s = Math.max(0, Math.ceil(totalSeconds));
  if (s < 60) return t('time.seconds', { n: s });
  if (s < 3600) return t('time.minutesSeconds', { m: Math.floor(s / 60), s: s % 60 });
  return t('time.hoursMinutes', { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

/** The browser's local time of day with its UTC offset, e.g. "16:14:27 (UTC+08:00)". */
export function formatClockTime(value) {
  const date = typeof value === 'number' ? new Date(value) : new Date(String(value));
  if (Number.isNaN(date.getTime())) return '—';
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} (${utcOffset(date)})`;
}

/**
 * A log line's UTC timestamp as local time with the zone, e.g. "2026-12-03 00:14:27.123 UTC+08:00":
 * same order and width as the original, so columns still line up.
 */
export function formatLogTime(isoUtc) {
  const date = new Date(isoUtc);
  if (Number.isNaN(date.getTime())) return isoUtc;
  const ms = String(date.getMilliseconds()).padStart(3, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${ms} ${utcOffset(date)}`;
}

function utcOffset(date) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

/** Binary size units the config form offers; the API itself takes bytes. */
export const SIZE_UNITS = [
  ['KiB', 1024],
  ['MiB', 1024 ** 2],
  ['GiB', 1024 ** 3],
];

/** The largest unit that shows `bytes` as a whole number (0 shows in GiB, a quota's usual unit). */
export function splitSize(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return { amount: '', unit: 'MiB' };
  if (bytes === 0) return { amount: '0', unit: 'GiB' };
  for (const [unit, factor] of [...SIZE_UNITS].reverse()) {
    if (bytes % factor === 0) return { amount: String(bytes / factor), unit };
  }
  // Not a whole number of KiB: the largest unit that keeps it ≥ 1, up to 3 decimals.
  const [unit, factor] = [...SIZE_UNITS].reverse().find(([, f]) => bytes >= f) ?? SIZE_UNITS[0];
  return { amount: String(Math.round((bytes / factor) * 1000) / 1000), unit };
}

export function sizeUnitFactor(unit) {
  return SIZE_UNITS.find(([name]) => name === unit)?.[1] ?? 1;
}

/** Local time with its UTC offset, e.g. "16:14:27 UTC+08:00" today, "2026-12-01 16:14:27 UTC+08:00" before. */
export function formatLocalTime(value, now = new Date()) {
  const date = typeof value === 'number' ? new Date(value) : new Date(String(value));
  if (Number.isNaN(date.getTime())) return '—';
  const sameDay = date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${utcOffset(date)}`;
  return sameDay ? time : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}
