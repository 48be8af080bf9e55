// A sibling's check of a streamed answer: the seed's sha256 trailer replaces the HEAD after the body.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryLogger } from '../src/log/memory-logger.ts';
import { SiteMembers } from '../src/sync/site-members.ts';
import { SHA256_TRAILER, SiteTier } from '../src/sync/site-tier.ts';

const SHA = 'a'.repeat(64);

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
  await tier().verify(SEED, 'm1', fetched, '/nonexistent', null, new AbortController().signal);
});

test('a trailer naming other bytes is a mismatch; a malformed one is no answer (the seed is asked, and fails here)', async () => {
  const signal = new AbortController().signal;
  await assert.rejects(tier().verify(SEED, 'm1', { sha256: SHA, size: 1, headers: {}, trailers: { [SHA256_TRAILER]: 'b'.repeat(64) } }, '/nonexistent', null, signal), {
    code: 'PEER_MISMATCH',
  });
  await assert.rejects(tier().verify(SEED, 'm1', { sha256: SHA, size: 1, headers: {}, trailers: { [SHA256_TRAILER]: 'not-a-hash' } }, '/nonexistent', null, signal), (error: Error & { code?: string }) => {
    assert.notEqual(error.code, 'PEER_MISMATCH');
    return true;
  });
});
