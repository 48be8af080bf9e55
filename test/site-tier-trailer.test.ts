// A sibling's check of a seed's bytes: the sha256 trailer of a streamed answer replaces the HEAD
// after the body; the build must be the one asked for (or an equivalent), never a pre-restart one.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { buildMeetingPackage } from '../reference-master/packages.ts';
import { fileIdentity } from '../src/store/zip-lead.ts';
import { MemoryLogger } from '../src/log/memory-logger.ts';
import { SiteMembers } from '../src/sync/site-members.ts';
import { SHA256_TRAILER, SiteTier, STANDS_FOR_HEADER } from '../src/sync/site-tier.ts';

const SHA = 'a'.repeat(64);
/** No build asked for, none refused. */
const ANY = { build: null, documents: null, notBuilds: [] };

function tier(): SiteTier {
  return new SiteTier({
    members: new SiteMembers({ listNodes: async () => [], self: () => '127.0.0.1:1', staticPeers: () => [] }),
    self: () => '127.0.0.1:1',
    nodeId: () => 'node-test',
    settings: () => ({ enabled: true, connectTimeoutMs: 500 }),
    logger: new MemoryLogger(),
  });
}

// Port 9 on loopback: nothing listens, so a HEAD to this "seed" would fail (PEER_* error).
const SEED = '127.0.0.1:9';

test('a streamed answer ending with the sha256 trailer is verified without asking the seed again', async () => {
  const fetched = { sha256: SHA, size: 1, headers: {}, trailers: { [SHA256_TRAILER]: SHA } };
  await tier().verify(SEED, 'm1', fetched, '/nonexistent', ANY, new AbortController().signal);
});

test('a trailer naming other bytes is a mismatch; a malformed one is no answer (the seed is asked, and fails here)', async () => {
  const signal = new AbortController().signal;
  await assert.rejects(tier().verify(SEED, 'm1', { sha256: SHA, size: 1, headers: {}, trailers: { [SHA256_TRAILER]: 'b'.repeat(64) } }, '/nonexistent', ANY, signal), {
    code: 'PEER_MISMATCH',
  });
  await assert.rejects(tier().verify(SEED, 'm1', { sha256: SHA, size: 1, headers: {}, trailers: { [SHA256_TRAILER]: 'not-a-hash' } }, '/nonexistent', ANY, signal), (error: Error & { code?: string }) => {
    assert.notEqual(error.code, 'PEER_MISMATCH');
    return true;
  });
});

test('the build asked for, or one with its documents the seed vouches for (it then stands for it); never a build held before a restart', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'verify-build-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const documents = [{ name: 'agenda.pdf', content: 'v1', uploadId: '11111111-2222-4333-8444-555555555555' }];
  const build = (buildTime: Date, docs = documents) => buildMeetingPackage({ dir, meetingId: 'm1', title: 'Board', documents: docs, buildTime });
  const preheat = await build(new Date('2026-12-01T08:00:00Z'));
  const start = await build(new Date('2026-12-01T09:00:00Z'));
  // A replaced document is a new upload (a new id in README.txt), as on the real master.
  const changed = await build(new Date('2026-12-01T09:00:00Z'), [{ ...documents[0]!, content: 'v2', uploadId: '66666666-7777-4888-8999-000000000000' }]);
  const [p, s, c] = await Promise.all([preheat, start, changed].map((b) => fileIdentity(b.path)));
  assert.notEqual(p!.buildId, s!.buildId);
  assert.equal(p!.documentsId, s!.documentsId);
  assert.notEqual(c!.documentsId, s!.documentsId);

  const fetched = { sha256: SHA, size: 1, headers: {}, trailers: { [SHA256_TRAILER]: SHA } };
  const vouched = { ...fetched, headers: { [STANDS_FOR_HEADER]: s!.buildId } };
  const signal = new AbortController().signal;
  const wantStart = { build: s!.buildId, documents: s!.documentsId, notBuilds: [] };
  assert.equal(await tier().verify(SEED, 'm1', fetched, start.path, wantStart, signal), null, 'the very build');
  assert.equal(await tier().verify(SEED, 'm1', vouched, preheat.path, wantStart, signal), s!.buildId, 'same documents, and the seed says it stands for it');
  await assert.rejects(tier().verify(SEED, 'm1', fetched, preheat.path, wantStart, signal), { code: 'PEER_OTHER_BUILD' }, 'an older build the seed does not vouch for');
  await assert.rejects(tier().verify(SEED, 'm1', vouched, changed.path, wantStart, signal), { code: 'PEER_OTHER_BUILD' }, 'vouched for, but other documents');
  await assert.rejects(tier().verify(SEED, 'm1', fetched, preheat.path, { build: null, documents: null, notBuilds: [p!.buildId] }, signal), { code: 'PEER_STALE_BUILD' });
  assert.equal(await tier().verify(SEED, 'm1', fetched, start.path, { build: null, documents: null, notBuilds: [p!.buildId] }, signal), null);
});
