import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildMessage, healthMessage, isNonce, newNonce, newSiteKey, packageMessage, SiteKeyring, siteKeyProblem } from './site-key.ts';

const claim = { meetingId: 'm1', buildId: 'b'.repeat(64), standsFor: null, size: 10, sha256: 's'.repeat(64), address: '127.0.0.1:9001' };

test('a fresh key is 32 random bytes in base64, accepted by the rule; other texts are refused naming how to make one', () => {
  const key = newSiteKey();
  assert.equal(Buffer.from(key, 'base64').length, 32);
  assert.equal(siteKeyProblem(key), null);
  assert.notEqual(newSiteKey(), key);
  for (const bad of ['', 'short', `${key}x`, key.replace('=', ''), Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64')]) {
    assert.match(siteKeyProblem(bad) ?? '', /--new-site-key/, bad);
  }
  assert.throws(() => new SiteKeyring('not a key'), RangeError);
});

test('what the current key signs verifies; a change to any field of the message does not', () => {
  const ring = new SiteKeyring(newSiteKey());
  const signature = ring.sign(packageMessage(claim));
  assert.ok(signature && /^[0-9a-f]{64}$/.test(signature));
  assert.equal(ring.verify(packageMessage(claim), signature), true);
  for (const change of [{ sha256: 't'.repeat(64) }, { size: 11 }, { buildId: 'c'.repeat(64) }, { standsFor: 'd'.repeat(64) }, { meetingId: 'm2' }, { address: '127.0.0.1:9002' }]) {
    assert.equal(ring.verify(packageMessage({ ...claim, ...change }), signature), false, JSON.stringify(change));
  }
  assert.equal(ring.verify(packageMessage(claim), null), false);
  assert.equal(ring.verify(packageMessage(claim), 'zz'), false);
});

test('the purposes never stand for each other, and a health proof is bound to the nonce and the prover\'s address', () => {
  const ring = new SiteKeyring(newSiteKey());
  const nonce = newNonce();
  assert.ok(isNonce(nonce));
  const proof = ring.sign(healthMessage(nonce, '127.0.0.1:1'));
  assert.equal(ring.verify(healthMessage(nonce, '127.0.0.1:1'), proof), true);
  assert.equal(ring.verify(healthMessage(newNonce(), '127.0.0.1:1'), proof), false, 'another nonce');
  assert.equal(ring.verify(healthMessage(nonce, '127.0.0.1:2'), proof), false, 'relayed from another address');
  const build = { meetingId: 'm1', buildId: 'b'.repeat(64), documentsId: null, nonce, address: '127.0.0.1:1' };
  assert.equal(ring.verify(healthMessage(nonce, '127.0.0.1:1'), ring.sign(buildMessage(build))), false);
  assert.equal(ring.verify(buildMessage({ ...build, nonce: newNonce() }), ring.sign(buildMessage(build))), false, 'an old answer replayed');
});

test('rotation: [new, old] signs with new and accepts both; [old] accepts old only; a keyless node signs and accepts nothing', () => {
  const oldKey = newSiteKey();
  const newKey = newSiteKey();
  const rotated = new SiteKeyring(newKey, [oldKey]);
  const before = new SiteKeyring(oldKey);
  const after = new SiteKeyring(newKey);
  const message = packageMessage(claim);
  assert.equal(rotated.verify(message, before.sign(message)), true, 'a node still on the old key is accepted');
  assert.equal(before.verify(message, rotated.sign(message)), false, 'the new key signs');
  assert.equal(after.verify(message, rotated.sign(message)), true);
  assert.equal(after.verify(message, before.sign(message)), false, 'once the old key is dropped it is refused');
  const keyless = new SiteKeyring(null, [oldKey]);
  assert.equal(keyless.enabled, false);
  assert.equal(keyless.sign(message), null);
  assert.equal(keyless.verify(message, before.sign(message)), false);
});
