import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SYNC_POLICY } from '../policy.ts';
import { backoffDelay, RetrySchedule } from './retry-schedule.ts';

test('backoff doubles per step with ±25 % jitter, each step capped by the policy', () => {
  assert.equal(backoffDelay(1_000, 0, 0.5), 1_000);
  assert.equal(backoffDelay(1_000, 3, 0.5), 8_000);
  assert.equal(backoffDelay(1_000, 3, 0), 6_000);
  assert.equal(backoffDelay(1_000, 3, 1), 10_000);
  assert.equal(backoffDelay(1_000, 40, 0.5), SYNC_POLICY.backoffStepCapMs);
  assert.equal(backoffDelay(1_000, -1, 0.5), 1_000);
});

test('failures in a row wait longer each time, up to the cap; a success starts over', () => {
  let now = 10_000;
  const schedule = new RetrySchedule<{ why: string }>({ now: () => now, random: () => 0.5 });
  const policy = { firstDelayMs: 1_000, maxDelayMs: 3_000 };
  assert.equal(schedule.waiting('m1'), false);
  const first = schedule.failed('m1', policy, { why: 'x' });
  assert.deepEqual(first, { why: 'x', failures: 1, at: 11_000, delayMs: 1_000 });
  assert.equal(schedule.failed('m1', policy, { why: 'y' }).delayMs, 2_000);
  assert.equal(schedule.failed('m1', policy, { why: 'z' }).delayMs, 3_000, 'capped');
  assert.equal(schedule.get('m1')?.failures, 3);
  assert.equal(schedule.get('m1')?.why, 'z');
  assert.equal(schedule.waiting('m1'), true);
  now = 13_000;
  assert.equal(schedule.waiting('m1'), false, 'its time has come');
  schedule.clear('m1');
  assert.equal(schedule.failed('m1', policy, { why: 'again' }).failures, 1);
  assert.deepEqual(schedule.entries().map(([id]) => id), ['m1']);
});

test('next() previews a failure without recording it; skipped steps start the wait further on', () => {
  const schedule = new RetrySchedule({ now: () => 0, random: () => 0.5 });
  const policy = { firstDelayMs: 1_000, maxDelayMs: 60_000 };
  assert.equal(schedule.next('m1', policy, {}, 2).delayMs, 4_000);
  assert.equal(schedule.get('m1'), undefined);
  schedule.failed('m1', policy, {}, 2);
  assert.equal(schedule.next('m1', policy, {}, 2).delayMs, 8_000);
});
