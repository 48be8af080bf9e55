// The master's time formats: local time without a zone, as the real master prints it.

const pad = (value: number) => String(value).padStart(2, '0');

/** `YYYY-MM-DD HH:MM:SS`, master local time (README.txt's 生成时间). */
export function localDateTime(date: Date): string {
  return `${localDate(date)} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** `YYYY-MM-DDTHH:MM`, master local time (a meeting's scheduled `time`). */
export function localMinute(date: Date): string {
  return `${localDate(date)}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function localDate(date: Date): string {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

const MINUTE_FORM = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/;

/**
 * Epoch ms of a scheduled time given as a Date, epoch ms, or `YYYY-MM-DDTHH:MM[:SS]` (local time);
 * null when it is none of these.
 */
export function parseMeetingTime(value: unknown): number | null {
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.getTime() : null;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value !== 'string') return null;
  const match = MINUTE_FORM.exec(value);
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1).map((part) => Number(part ?? 0));
  const date = new Date(year ?? 0, (month ?? 1) - 1, day, hour, minute, second);
  // Reject 2024-02-31 and the like, which Date would roll over.
  if (date.getMonth() !== (month ?? 1) - 1 || date.getDate() !== day || date.getHours() !== hour) return null;
  return date.getTime();
}
