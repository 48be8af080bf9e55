/**
 * Eviction of ended meetings while a tablet is still downloading, and many tablets asking at once
 * for a meeting that is active but not synced yet (one upstream fetch for all of them).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  cleanupStack,
  fetchRaw,
  masterSha,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startNode,
  startPausedDownload,
  waitFor,
} from './helpers.ts';

const QUIET = { syncInterval: 3600, heartbeat: { interval: 300 } };

test('an ended meeting is evicted while a tablet already downloading it gets every byte', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  // Larger than what loopback socket buffers hold, so the node is still sending when we evict.
  m.master.addMeeting({ id: 'm-big', title: 'Ends soon', packageSizeBytes: 24 * 1024 * 1024 });
  m.master.addMeeting({ id: 'm-keep', title: 'Goes on' });
  await m.master.startMeeting('m-big');
  await m.master.startMeeting('m-keep');
  const n = await startNode(m.port, { config: QUIET });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('both synced', () => n.node.sync.isServable('m-big') && n.node.sync.isServable('m-keep'), 20_000);
  const sha = masterSha(m.master, 'm-big');
  const size = m.master.meeting('m-big')?.package?.size;
  const keepSha = masterSha(m.master, 'm-keep');

  const tablet = await startPausedDownload(packageUrl(n.url, 'm-big'));
  defer(() => tablet.resume());
  assert.equal(tablet.status, 200);
  assert.equal(tablet.headers['content-length'], String(size));
  assert.equal(n.node.stats.peek('m-big')?.activeDownloads, 1);

  await m.master.endMeeting('m-big');
  await n.node.syncNow();
  assert.equal(n.node.store.get('m-big'), undefined, 'evicted from the store');
  assert.equal(existsSync(path.join(n.storageDir, 'meeting_m-big', 'package.zip')), false, 'deleted from disk');
  assert.equal((await fetchRaw(packageUrl(n.url, 'm-big'))).status, 404, 'no new download of an ended meeting');
  // The eviction reached the master at once (heartbeats are 300 s apart here).
  await waitFor(
    'a heartbeat without the ended meeting',
    () => {
      const view = m.master.nodes().find((v) => v.nodeId === n.node.config.current.nodeId);
      const beat = view?.lastHeartbeat as { active_meetings?: Array<{ id: string }>; synced_meetings?: string[] } | undefined;
      return beat && !beat.active_meetings?.some((a) => a.id === 'm-big') && !beat.synced_meetings?.includes('m-big');
    },
    15_000,
  );
  assert.equal(n.node.stats.peek('m-big')?.activeDownloads, 1, 'the tablet\'s download was still running during the eviction');

  tablet.resume();
  const body = await tablet.done;
  assert.equal(body.complete, true);
  assert.equal(body.body.length, size);
  assert.equal(sha256Hex(body.body), sha, 'the tablet received the complete, correct package');
  await waitFor('the download counted as completed', () => n.node.stats.peek('m-big')?.downloadsCompleted === 1, 10_000);

  assert.equal(n.node.store.get('m-keep')?.sha256, keepSha, 'the other meeting is untouched');
  assert.equal(sha256Hex((await fetchRaw(packageUrl(n.url, 'm-keep'))).body), keepSha);
});

test('50 tablets asking for an active meeting not synced yet: one upstream fetch, 50 correct bodies', async (t) => {
  const defer = cleanupStack(t);
  // About 4 s per download: the requests all arrive while the one fetch is running.
  const m = await startMaster({ throttleBytesPerSec: 500_000 });
  defer(() => m.close());
  m.master.addMeeting({ id: 'm-hot', title: 'Everyone at once', packageSizeBytes: 2_000_000 });
  await m.master.startMeeting('m-hot');
  const n = await startNode(m.port, { config: QUIET });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('the node to know m-hot is active', () => n.node.sync.activeMeeting('m-hot'), 15_000);
  assert.equal(n.node.sync.isServable('m-hot'), false, 'still syncing when the tablets arrive');

  const responses = await Promise.all(Array.from({ length: 50 }, () => fetchRaw(packageUrl(n.url, 'm-hot'))));
  const sha = masterSha(m.master, 'm-hot');
  const statuses = responses.map((r) => r.status);
  assert.deepEqual(statuses, Array.from({ length: 50 }, () => 200));
  for (const res of responses) {
    assert.equal(res.complete, true);
    assert.equal(sha256Hex(res.body), sha);
  }
  assert.equal(m.master.stats().packageDownloads['m-hot']?.started, 1, 'exactly one download from the master');
  assert.equal(m.master.stats().tabletDownloads['m-hot'], undefined, 'the node never used the tablets\' URL upstream');
});
