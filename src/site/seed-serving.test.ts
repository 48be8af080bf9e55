import assert from 'node:assert/strict';
import { test } from 'node:test';
import { standsForBuild, type StoredPackage } from '../store/package-store.ts';
import type { ServerResponse } from 'node:http';
import { handleHealth, holdsWanted, peerPackageHeaders, SeedSigner, type PeerRequest } from './seed-serving.ts';
import { healthMessage, newSiteKey, packageMessage, SiteKeyring } from './site-key.ts';

const P = 'p'.repeat(64);
const B2 = 'b'.repeat(64);
const B1 = 'a'.repeat(64);

function held(over: Partial<StoredPackage>): StoredPackage {
  return {
    version: 1, meetingId: 'm1', sha256: 's'.repeat(64), size: 1, fetchedAt: '', token: 'T2', title: 'Board',
    source: 'master', buildId: B1, documentsId: 'd'.repeat(64), standsFor: null, inode: 1, mtimeMs: 0, path: '/x',
    ...over,
  };
}
const peer = (over: Partial<PeerRequest>): PeerRequest => ({ node: 'n2', build: null, token: null, notBuilds: [], ...over });

test('a confirmed preheat stands for the start\'s build: asked for that build, it is the one wanted', () => {
  const confirmed = held({ source: 'confirmed', buildId: P, standsFor: B2 });
  assert.equal(standsForBuild(confirmed), B2);
  assert.equal(standsForBuild(held({})), B1);
  assert.equal(holdsWanted(confirmed, peer({ build: B2 })), true);
  assert.equal(holdsWanted(confirmed, peer({ build: P })), true);
  assert.equal(holdsWanted(confirmed, peer({ build: B1 })), false);
});

test('a build the sibling held before a restart is never the one wanted, whatever the token says', () => {
  const stale = held({ buildId: B1, token: 'T2' });
  assert.equal(holdsWanted(stale, peer({ token: 'T2' })), true);
  assert.equal(holdsWanted(stale, peer({ token: 'T2', notBuilds: [B1] })), false);
  assert.equal(holdsWanted(held({ source: 'confirmed', buildId: P, standsFor: B1 }), peer({ notBuilds: [B1] })), false);
  assert.equal(holdsWanted(held({ buildId: B2 }), peer({ token: 'T2', notBuilds: [B1] })), true);
});

test('the seed signs what it serves for its own address; a sibling verifies it only for those very bytes', () => {
  const keyring = new SiteKeyring(newSiteKey());
  const signer = new SeedSigner(() => keyring, () => '127.0.0.1:7');
  const pkg = held({ source: 'confirmed', buildId: P, standsFor: B2 });
  const headers = peerPackageHeaders(signer, 'm1', pkg);
  assert.equal(headers['x-edge-stands-for'], B2);
  const claim = { meetingId: 'm1', buildId: P, standsFor: B2, size: pkg.size, sha256: pkg.sha256, address: '127.0.0.1:7' };
  assert.equal(keyring.verify(packageMessage(claim), headers['x-edge-signature']), true);
  assert.equal(keyring.verify(packageMessage({ ...claim, standsFor: null }), headers['x-edge-signature']), false, 'the stands-for header is signed too');
  assert.deepEqual(peerPackageHeaders(new SeedSigner(() => new SiteKeyring(null), () => '127.0.0.1:7'), 'm1', held({})), {}, 'without a key nothing is signed');
});

test('the health route answers the proof for a valid nonce, a 400 naming the nonce otherwise, and no proof without a key', () => {
  const keyring = new SiteKeyring(newSiteKey());
  const answer = (signer: SeedSigner | undefined, url: string) => {
    const res = new FakeResponse();
    handleHealth(signer, url, res as unknown as ServerResponse);
    return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown> };
  };
  const nonce = 'ab'.repeat(16);
  const ok = answer(new SeedSigner(() => keyring, () => '127.0.0.1:7'), `/api/edge/v1/health?nonce=${nonce}`);
  assert.equal(ok.status, 200);
  assert.equal(keyring.verify(healthMessage(nonce, '127.0.0.1:7'), ok.body.proof as string), true);
  const bad = answer(new SeedSigner(() => keyring, () => '127.0.0.1:7'), '/api/edge/v1/health?nonce=x%0Ay');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.field, 'nonce');
  assert.equal(answer(new SeedSigner(() => new SiteKeyring(null), () => '127.0.0.1:7'), `/api/edge/v1/health?nonce=${nonce}`).body.proof, null);
});

class FakeResponse {
  status = 0;
  body = '';
  headersSent = false;
  writeHead(status: number): this {
    this.status = status;
    this.headersSent = true;
    return this;
  }
  end(text: string): void {
    this.body = text;
  }
}
