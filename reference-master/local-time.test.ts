import assert from 'node:assert/strict';
import { test } from 'node:test';
import { localDateTime, localMinute, parseMeetingTime } from './local-time.ts';

test('formats local time the way the master prints it', () => {
  const date = new Date(2026, 0, 9, 8, 5, 7);
  assert.equal(localDateTime(date), '2026-01-09 08:05:07');
  assert.equal(localMinute(date), '2026-01-09T08:05');
});

test('parses a scheduled time from a Date, epoch ms or the minute form', () => {
  const date = new Date(2026, 0, 9, 8, 5, 0);
  assert.equal(parseMeetingTime(date), date.getTime());
  assert.equal(parseMeetingTime(date.getTime()), date.getTime());
  assert.equal(parseMeetingTime('2026-01-09T08:05'), date.getTime());
  assert.equal(parseMeetingTime('2026-02-31T08:05'), null);
  assert.equal(parseMeetingTime('tomorrow'), null);
  assert.equal(parseMeetingTime(null), null);
});
