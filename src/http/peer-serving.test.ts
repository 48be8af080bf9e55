import assert from 'node:assert/strict';
import { test } from 'node:test';
import { standsForBuild, type StoredPackage } from '../store/package-store.ts';
import { holdsWanted, type PeerRequest } from './peer-serving.ts';

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
