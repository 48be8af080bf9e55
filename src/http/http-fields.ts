/**
 * The RFC 9110 request fields a package response reads, as grammar only: Range (§14), HTTP-dates
 * (§5.6.7), entity-tag lists (§8.8.3) and If-Range (§13.1.5). send-file.ts decides with them.
 */
export type RangeRequest =
  | { kind: 'none' }
  | { kind: 'single'; start: number; end: number }
  | { kind: 'unsatisfiable' }
  | { kind: 'multi' }
  | { kind: 'malformed' };


/**
 * Parses a Range header (RFC 9110 §14.1.1 / §14.2) against a representation of `size` bytes.
 *
 * - `none`: no header.
 * - `single`: one satisfiable range, `end` already clamped to size-1.
 * - `unsatisfiable`: one syntactically valid range that selects nothing (first-pos >= size, or a
 *   zero-length suffix). For size 0 every single range is reported unsatisfiable: no
 *   Content-Range can describe a part of an empty representation.
 * - `multi`: several valid ranges. sendFile answers those with the full 200 (allowed: a server
 *   MAY ignore Range) rather than multipart/byteranges; tablets never ask for them and
 *   multi-range is a known amplification vector.
 * - `malformed`: anything else (other unit, garbage, last-pos < first-pos, numbers beyond
 *   Number.MAX_SAFE_INTEGER, whitespace inside a range-spec); the header must then be ignored.
 *
 * The unit is compared case-insensitively (§14.1). Whitespace is accepted only next to commas
 * and empty list elements are skipped, as the list syntax (§5.6.1) requires.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: 'none' };
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).toLowerCase() !== 'bytes') return { kind: 'malformed' };
  const specs = header
    .slice(eq + 1)
    .split(/[ \t]*,[ \t]*/)
    .filter((spec) => spec !== '');
  const parsed = specs.map(parseRangeSpec);
  const first = parsed[0];
  if (first === undefined || parsed.some((spec) => spec === undefined)) return { kind: 'malformed' };
  if (parsed.length > 1) return { kind: 'multi' };

  if (first.first === undefined) {
    const suffixLength = first.last ?? 0;
    if (suffixLength === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'single', start: Math.max(0, size - suffixLength), end: size - 1 };
  }
  if (first.first >= size) return { kind: 'unsatisfiable' };
  const end = first.last === undefined ? size - 1 : Math.min(first.last, size - 1);
  return { kind: 'single', start: first.first, end };
}

interface RangeSpec {
  /** Undefined for a suffix range (`-n`). */
  first: number | undefined;
  /** Undefined for an open-ended range (`a-`). */
  last: number | undefined;
}

function parseRangeSpec(spec: string): RangeSpec | undefined {
  const match = /^(\d*)-(\d*)$/.exec(spec);
  if (!match) return undefined;
  const [, firstDigits = '', lastDigits = ''] = match;
  if (firstDigits === '' && lastDigits === '') return undefined;
  const first = firstDigits === '' ? undefined : Number(firstDigits);
  const last = lastDigits === '' ? undefined : Number(lastDigits);
  if (first !== undefined && !Number.isSafeInteger(first)) return undefined;
  if (last !== undefined && !Number.isSafeInteger(last)) return undefined;
  if (first !== undefined && last !== undefined && last < first) return undefined;
  return { first, last };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const MONTH = MONTHS.join('|');
const IMF_FIXDATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\\d{2}) (${MONTH}) (\\d{4}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`);
const RFC850_DATE = new RegExp(
  `^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\\d{2})-(${MONTH})-(\\d{2}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`,
);
const ASCTIME_DATE = new RegExp(`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (${MONTH}) ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})$`);

/**
 * Parses an HTTP-date in any of the three forms a recipient must accept (RFC 9110 §5.6.7) and
 * returns epoch milliseconds, or undefined. Deliberately strict: Date.parse accepts things like
 * "1" or "2024", and a date invented from garbage could turn a full download into a 304.
 */
export function parseHttpDate(value: string, nowMs: number): number | undefined {
  let parts: { day: string; month: string; year: number; hour: string; minute: string; second: string } | undefined;
  const imf = IMF_FIXDATE.exec(value);
  if (imf) {
    const [, day = '', month = '', year = '', hour = '', minute = '', second = ''] = imf;
    parts = { day, month, year: Number(year), hour, minute, second };
  }
  const rfc850 = parts ? null : RFC850_DATE.exec(value);
  if (rfc850) {
    const [, day = '', month = '', year = '', hour = '', minute = '', second = ''] = rfc850;
    parts = { day, month, year: rfc850Year(Number(year), nowMs), hour, minute, second };
  }
  const asctime = parts ? null : ASCTIME_DATE.exec(value);
  if (asctime) {
    const [, month = '', day = '', hour = '', minute = '', second = '', year = ''] = asctime;
    parts = { day: day.trim(), month, year: Number(year), hour, minute, second };
  }
  if (!parts) return undefined;

  const month = MONTHS.indexOf(parts.month);
  const day = Number(parts.day);
  const hour = Number(parts.hour);
  const minute = Number(parts.minute);
  // The grammar allows second 60 for a leap second, which Date cannot represent.
  const second = Math.min(Number(parts.second), 59);
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  date.setUTCFullYear(parts.year, month, day);
  date.setUTCHours(hour, minute, second, 0);
  if (date.getUTCDate() !== day || date.getUTCMonth() !== month) return undefined;
  return date.getTime();
}

/** RFC 9110 §5.6.7: a two-digit year more than 50 years ahead means the most recent past such year. */
function rfc850Year(twoDigits: number, nowMs: number): number {
  const currentYear = new Date(nowMs).getUTCFullYear();
  let year = currentYear - (currentYear % 100) + twoDigits;
  if (year > currentYear + 50) year -= 100;
  return year;
}

interface EntityTag {
  weak: boolean;
  /** Including the double quotes. */
  opaque: string;
}

/**
 * `*`, a list of entity-tags, or undefined when the value does not parse: a condition that
 * cannot be read then matches nothing, which errs on the side of sending full, current bytes.
 */
function parseEntityTags(value: string): 'any' | EntityTag[] | undefined {
  if (value.trim() === '*') return 'any';
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < value.length) {
    const ch = value[i];
    if (ch === ' ' || ch === '\t' || ch === ',') {
      i += 1;
      continue;
    }
    const weak = value.startsWith('W/', i);
    const open = weak ? i + 2 : i;
    if (value[open] !== '"') return undefined;
    const close = value.indexOf('"', open + 1);
    if (close < 0) return undefined;
    tags.push({ weak, opaque: value.slice(open, close + 1) });
    i = close + 1;
    while (value[i] === ' ' || value[i] === '\t') i += 1;
    if (i < value.length && value[i] !== ',') return undefined;
  }
  return tags;
}

/** If-Match (§13.1.1): `*`, or a strong match of the representation's entity-tag. */
export function matchesStrongly(value: string, etag: string): boolean {
  const tags = parseEntityTags(value);
  if (tags === 'any') return true;
  return tags !== undefined && tags.some((tag) => !tag.weak && tag.opaque === etag);
}

/** If-None-Match (§13.1.2): `*`, or a weak match. */
export function matchesWeakly(value: string, etag: string): boolean {
  const tags = parseEntityTags(value);
  if (tags === 'any') return true;
  return tags !== undefined && tags.some((tag) => tag.opaque === etag);
}

/**
 * §13.1.5: an entity-tag must match strongly; a date must equal Last-Modified exactly (to the
 * second, the resolution of an HTTP-date). Anything else, including a weak tag, means the client's
 * partial copy may be stale and it gets the whole file.
 */
export function ifRangeHolds(value: string, etag: string, lastModifiedSeconds: number, nowMs: number): boolean {
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith('W/')) return !trimmed.startsWith('W/') && trimmed === etag;
  const date = parseHttpDate(trimmed, nowMs);
  return date !== undefined && date / 1000 === lastModifiedSeconds;
}
