import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryRelease } from './memory-release.ts';

test('a release collects garbage before it trims', () => {
  const calls: string[] = [];
  const release = memoryRelease({ collect: () => calls.push('collect'), trim: () => (calls.push('trim'), true) });
  assert.ok(release);
  release();
  assert.deepEqual(calls, ['collect', 'trim']);
});

test('a release runs the part it has', () => {
  const calls: string[] = [];
  memoryRelease({ trim: () => (calls.push('trim'), true) })?.();
  memoryRelease({ collect: () => calls.push('collect') })?.();
  assert.deepEqual(calls, ['trim', 'collect']);
});

test('no release without a GC or a trim', () => {
  assert.equal(memoryRelease({}), undefined);
});
