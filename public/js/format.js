// Number, size and time formatting for the panel (locale-aware where the browser provides it).

export function formatBytes(bytes, lang) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
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
