/**
 * What a meeting id may look like. The master uses UUIDs and short slugs (`m1`, `meeting-2024-01`).
 * Letters, digits, `-` and `_`, starting with a letter or digit, at most 128 characters: no dots,
 * slashes, backslashes, percent signs or NULs, so an id can never name a path outside storage/.
 * Anything else is rejected before any filesystem or network access.
 */
export const MEETING_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
export const MEETING_ID_MAX_LENGTH = 128;

export function isValidMeetingId(value: unknown): value is string {
  return typeof value === 'string' && MEETING_ID_PATTERN.test(value);
}
