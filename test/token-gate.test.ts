/**
 * No older build after a token change (issue 18): a held package is not confirmed under a new
 * token until its check answers. The first tablet request for it moves that check to the front
 * and waits for it (at most 2 s, one check for every request); a check that finds a new build
 * sends the request to the new build's download, never to the older bytes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupStack, fetchRaw, masterSha, packageUrl, removeDir, sha256Hex, startMaster, startNode, waitFor } from './helpers.ts';

// Polls only when the test says (no watch, no periodic poll in the test's time).
const QUIET = { syncInterval: 3600, watchInterval: 0, cleanup: { enabled: true, cleanOnStartup: false, cleanEndedMeetings: false } };

test('a meeting ended and started again within a second: the first tablet request after the token change gets the new build, not the held one', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster({ packageRateBytesPerSec: 2_000_000 });
  cleanup(() => m.close());
  const n = await startNode(m.port, { config: QUIET });
  cleanup(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  m.master.addMeeting({ id: 'again', title: 'Again', packageSizeBytes: 1_500_000 });
  await m.master.startMeeting('again');
  await n.node.syncNow();
  const first = masterSha(m.master, 'again');
  await waitFor('the first build held', () => n.node.store.get('again')?.sha256 === first, 20_000);
  await n.node.heartbeatNow();
  await sleep(1_100);
  // Ended and started between two polls: the node's view of the active list does not change.
  const tokenBefore = m.master.token();
  await m.master.endMeeting('again');
  await m.master.startMeeting('again');
  const second = masterSha(m.master, 'again');
  assert.notEqual(second, first);
  // The node still reports the meeting synced (it holds a package): the token moves at once.
  await n.node.heartbeatNow();
  await waitFor('the token changed', () => m.master.token() !== tokenBefore, 15_000, 20);
  await n.node.syncNow();
  assert.equal(n.node.sync.lastSuccess?.token, m.master.token());
  const res = await fetchRaw(packageUrl(n.url, 'again'));
  assert.equal(res.status, 200);
  assert.equal(sha256Hex(res.body), second, 'the new build, streamed as it downloads; never the held older one');
});

test('an unrelated token change: the first request waits for the one check of its package, then gets the held (current) build', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster();
  cleanup(() => m.close());
  const n = await startNode(m.port, { config: QUIET });
  cleanup(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  m.master.addMeeting({ id: 'held', title: 'Held', packageSizeBytes: 400_000 });
  await m.master.startMeeting('held');
  await n.node.syncNow();
  const sha = masterSha(m.master, 'held');
  await waitFor('held', () => n.node.store.get('held')?.sha256 === sha, 20_000);
  const tokenBefore = m.master.token();
  m.master.addMeeting({ id: 'other', title: 'Other', packageSizeBytes: 50_000 });
  await m.master.startMeeting('other');
  await waitFor('the token changed', async () => {
    await n.node.syncNow();
    await n.node.heartbeatNow();
    return m.master.token() !== tokenBefore;
  }, 15_000, 100);
  const probesBefore = n.node.sync.probeCounters.probes;
  await n.node.syncNow();
  const token = n.node.sync.lastSuccess?.token;
  const bodies = await Promise.all([1, 2, 3].map(() => fetchRaw(packageUrl(n.url, 'held'))));
  for (const res of bodies) assert.equal(sha256Hex(res.body), sha);
  assert.equal(n.node.store.get('held')?.token, token, 'confirmed under the new token before it was served');
  assert.equal(n.node.sync.probeCounters.probes - probesBefore, 1, 'one check for every request');
});
