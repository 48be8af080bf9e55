import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharedRate } from './shared-rate.ts';

test('reservations from several downloads share one rate', () => {
  let now = 1_000;
  const rate = new SharedRate(1_000, () => now);
  // Two downloads of 10 chunks of 100 bytes, interleaved, each sending when told to.
  let sentAt = 0;
  for (let i = 0; i < 20; i += 1) {
    now += rate.reserve(100);
    sentAt = now;
  }
  // 2000 bytes at 1000 B/s: the last chunk starts after 1.9 s (the first went at once).
  assert.equal(sentAt - 1_000, 1_900);
});

test('idle time earns no credit', () => {
  let now = 0;
  const rate = new SharedRate(1_000, () => now);
  assert.equal(rate.reserve(500), 0);
  now = 10_000;
  assert.equal(rate.reserve(500), 0);
  assert.equal(rate.reserve(500), 500);
});
