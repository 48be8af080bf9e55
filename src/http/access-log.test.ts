import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accessFields, accessLine } from './access-log.ts';
import type { FinishedServe } from './serve-stats.ts';

const base: FinishedServe = {
  meetingId: 'm1',
  completed: false,
  client: '::1',
  status: 200,
  bytes: 4096,
  durationMs: 1500,
  whileSyncing: true,
  peer: null,
  method: 'GET',
  range: null,
  userAgent: null,
};

test('no Range, no User-Agent: dashes in text, nulls in json', () => {
  assert.equal(accessLine(base), 'access ::1 GET meeting m1 200 4096 bytes 1.500 s aborted (while syncing) range=- ua=-');
  const fields = accessFields(base);
  assert.equal(fields.method, 'GET');
  assert.equal(fields.range, null);
  assert.equal(fields.user_agent, null);
});

test('a User-Agent longer than 256 characters is cut, in both formats', () => {
  const long = 'A'.repeat(5000);
  const line = accessLine({ ...base, userAgent: long });
  assert.ok(line.endsWith(`ua="${'A'.repeat(256)}…"`), line.slice(-40));
  assert.equal(accessFields({ ...base, userAgent: long }).user_agent, `${'A'.repeat(256)}…`);
});
