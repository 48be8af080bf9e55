import assert from 'node:assert/strict';
import { test } from 'node:test';
import { asPackageSource, awaitsStartCheck, buildsOf, isAnyBuild, isBuild, isBuildAskedFor, mayBeServed, standsForBuild, standsForToRecord } from './package-state.ts';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);

test('only an unconfirmed preheat awaits its start check; everything else may be served', () => {
  assert.equal(awaitsStartCheck({ source: 'preheat' }), true);
  assert.equal(mayBeServed({ source: 'preheat' }), false);
  for (const source of ['master', 'adopted', 'confirmed'] as const) {
    assert.equal(awaitsStartCheck({ source }), false, source);
    assert.equal(mayBeServed({ source }), true, source);
  }
});

test('a manifest names a known origin or none', () => {
  assert.equal(asPackageSource('confirmed'), 'confirmed');
  assert.equal(asPackageSource('preheat'), 'preheat');
  assert.equal(asPackageSource('seed'), null);
  assert.equal(asPackageSource(undefined), null);
});

test('bytes are their own build and the build they stand for, nothing else', () => {
  const plain = { buildId: A, standsFor: null };
  const standing = { buildId: A, standsFor: B };
  assert.equal(standsForBuild(plain), A);
  assert.equal(standsForBuild(standing), B);
  assert.deepEqual(buildsOf(plain), [A]);
  assert.deepEqual(buildsOf(standing), [A, B]);
  assert.equal(isBuild(standing, A), true);
  assert.equal(isBuild(standing, B), true);
  assert.equal(isBuild(standing, C), false);
  assert.equal(isBuild({ buildId: A }, A), true);
  assert.equal(isAnyBuild(standing, [C, B]), true);
  assert.equal(isAnyBuild(plain, [B, C]), false);
});

test('the build asked for: excluded builds never, a named build only, otherwise any', () => {
  const standing = { buildId: A, standsFor: B };
  assert.equal(isBuildAskedFor(standing, { build: null, notBuilds: [] }), true);
  assert.equal(isBuildAskedFor(standing, { build: B, notBuilds: [] }), true);
  assert.equal(isBuildAskedFor(standing, { build: C, notBuilds: [] }), false);
  // Excluded by the build it stands for, even when the named build matches its own.
  assert.equal(isBuildAskedFor(standing, { build: A, notBuilds: [B] }), false);
  assert.equal(isBuildAskedFor(standing, { build: null, notBuilds: [A] }), false);
});

test('what is recorded as the build stood for: nothing when it is the bytes\' own', () => {
  assert.equal(standsForToRecord(A, B), B);
  assert.equal(standsForToRecord(A, A), null);
  assert.equal(standsForToRecord(A, null), null);
  assert.equal(standsForToRecord(A, undefined), null);
});
