/**
 * Preheat (issue 13) end to end with the reference master: a meeting scheduled soon is fetched
 * before it starts, never served or reported synced before the start, served at once after it
 * when its documents are unchanged, and never served when they changed.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  cleanupStack,
  fetchRaw,
  masterSha,
  nodeStatus,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startNode,
  waitFor,
  type TestMaster,
  type TestNode,
} from './helpers.ts';

const HOUR = 3_600_000;
/** Quick checks every second (the start is noticed fast); full polls rare; heartbeats driven by the node's own events. */
const CONFIG = { syncInterval: 3600, watchInterval: 1, heartbeat: { interval: 300 }, preheat: { enabled: true } };

function preheated(n: TestNode, id: string): boolean {
  return n.node.store.get(id)?.source === 'preheat';
}

/** Bytes the master sent of builds made at a start (a probe reads only the beginning). */
function startBuildBytes(m: TestMaster, id: string): number {
  const stats = m.master.stats();
  return stats.packageBuilds.filter((b) => b.meetingId === id && b.reason === 'start').reduce((sum, b) => sum + (stats.packageBytesByBuild[b.buildId] ?? 0), 0);
}

test('a meeting scheduled soon is preheated, not served or reported before its start, then served at once from the preheat', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  // Large enough that what the master writes into loopback's socket buffers before the probe
  // hangs up (1 MiB seen on a loaded machine) stays well under half of it.
  m.master.addMeeting({ id: 'm1', title: 'Board', time: Date.now() + HOUR, packageSizeBytes: 8_000_000 });
  m.master.addMeeting({ id: 'far', title: 'Next week', time: Date.now() + 7 * 24 * HOUR });
  const n = await startNode(m.port, { config: CONFIG });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());

  await waitFor('m1 preheated', () => preheated(n, 'm1'), 15_000);
  const preheatSha = n.node.store.get('m1')!.sha256;
  assert.equal(n.node.store.get('far'), undefined, 'a meeting outside the window is not preheated');
  const status = await nodeStatus(n.node);
  const upcoming = status.upcoming as Array<{ id: string; preheat: string; size: number }>;
  assert.deepEqual(
    upcoming.map((u) => [u.id, u.preheat]),
    [['m1', 'ready']],
  );
  assert.equal(upcoming[0]!.size, n.node.store.get('m1')!.size);
  assert.equal((status.meetings as Array<{ id: string; state: string }>).find((x) => x.id === 'm1')?.state, 'preheated');
  const metrics = (await fetchRaw(`${n.url}/metrics`)).body.toString('utf8');
  assert.match(metrics, /meeting_edge_preheat_meetings\{state="ready"\} 1/);
  assert.match(metrics, /meeting_edge_preheat_meetings\{state="waiting"\} 0/);
  assert.match(metrics, new RegExp(`meeting_edge_preheat_ready_bytes ${n.node.store.get('m1')!.size}`));

  // Not started: not served, not reported synced.
  assert.equal((await fetchRaw(packageUrl(n.url, 'm1'))).status, 404);
  assert.deepEqual(n.node.sync.syncedMeetingIds(), []);
  await n.node.heartbeatNow();
  assert.deepEqual(m.master.nodes()[0]?.syncedMeetings ?? [], []);

  // The 404 above made the node check the master's status less than a second ago: checks for
  // unknown ids are at most one a second, and that check predates the start. A scheduled meeting's
  // request waits for the next check instead of taking the last one's answer.
  const startedAt = Date.now();
  await m.master.startMeeting('m1');
  // A tablet asks the moment the meeting starts: served (no 404), the preheated bytes.
  const res = await fetchRaw(packageUrl(n.url, 'm1'));
  assert.equal(res.status, 200);
  assert.equal(sha256Hex(res.body), preheatSha);
  assert.equal(res.headers.etag, `"${preheatSha}"`, 'the ETag is the sha256 of the bytes served');
  assert.equal(n.node.store.get('m1')?.source, 'confirmed');
  const confirmed = n.node.store.get('m1')!;
  assert.ok(confirmed.standsFor && confirmed.standsFor !== confirmed.buildId, 'it stands for the start\'s build (another build time)');
  // A probe reads the first entry and hangs up; the master has written a few socket buffers by then.
  const size = confirmed.size;
  assert.ok(startBuildBytes(m, 'm1') < size / 2, `the start's build was only probed (${startBuildBytes(m, 'm1')} of ${size} bytes sent)`);
  assert.equal(m.master.stats().packageDownloads.m1?.completed, 1, 'one complete download: the preheat');

  await waitFor('the master\'s token change', () => m.master.stats().tokenChanges >= 1, 10_000);
  t.diagnostic(`start → token change ${Date.now() - startedAt} ms`);
  // The next look at the new token finds the same build: nothing fetched.
  await n.node.syncNow();
  await waitFor('probes and jobs done', () => n.node.sync.probingIds().size === 0 && n.node.jobs.inFlightIds().size === 0, 10_000);
  assert.equal(n.node.store.get('m1')?.sha256, preheatSha);
  assert.ok(startBuildBytes(m, 'm1') < size, 'no full download of the start\'s build');
  assert.equal(m.master.stats().packageDownloads.m1?.completed, 1);
});

test('a document replaced after the preheat: the preheated package is never served', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Board', time: Date.now() + HOUR, documents: [{ name: 'agenda.pdf', content: 'first version' }] });
  const n = await startNode(m.port, { config: CONFIG });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('m1 preheated', () => preheated(n, 'm1'), 15_000);
  const preheatSha = n.node.store.get('m1')!.sha256;

  m.master.setDocuments('m1', [{ name: 'agenda.pdf', content: 'second version' }]);
  await m.master.startMeeting('m1');
  const served = await Promise.all(Array.from({ length: 5 }, () => fetchRaw(packageUrl(n.url, 'm1'))));
  for (const res of served) {
    if (res.status !== 200) continue;
    assert.notEqual(sha256Hex(res.body), preheatSha, 'the stale preheat reached a tablet');
    assert.equal(sha256Hex(res.body), masterSha(m.master, 'm1'));
  }
  await waitFor('the new build synced', () => n.node.sync.isServable('m1'), 15_000);
  assert.equal(n.node.store.get('m1')?.sha256, masterSha(m.master, 'm1'));
  assert.equal(n.node.sync.probeCounters.preheatDiscarded, 1);
});

test('a meeting deleted, or moved out of the window, before it starts: its preheated package goes', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'gone', title: 'Cancelled', time: Date.now() + HOUR });
  m.master.addMeeting({ id: 'moved', title: 'Postponed', time: Date.now() + 2 * HOUR });
  m.master.addMeeting({ id: 'kept', title: 'Still on', time: Date.now() + 3 * HOUR });
  const n = await startNode(m.port, { config: CONFIG });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('all three preheated', () => ['gone', 'moved', 'kept'].every((id) => preheated(n, id)), 20_000);

  await m.master.deleteMeeting('gone');
  m.master.setMeetingTime('moved', Date.now() + 72 * HOUR);
  await n.node.preheatTask.runNow();
  await waitFor('the two removed', () => !n.node.store.get('gone') && !n.node.store.get('moved'), 10_000);
  assert.equal(existsSync(path.join(n.storageDir, 'meeting_gone', 'package.zip')), false);
  assert.ok(preheated(n, 'kept'));
  // A regular poll does not treat a preheat as an ended meeting's package.
  await n.node.syncNow();
  assert.ok(preheated(n, 'kept'));
});

test('a start the preheat scan sees before the node\'s poll: the preheated package is kept for the poll to confirm', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  // Large enough that the start's build cannot fit the loopback socket buffers the probe leaves unread.
  m.master.addMeeting({ id: 'm1', title: 'Board', time: Date.now() + HOUR, packageSizeBytes: 8_000_000 });
  // No quick checks: the node learns of the start only from the poll this test asks for.
  const n = await startNode(m.port, { config: { ...CONFIG, watchInterval: 0 } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('m1 preheated', () => preheated(n, 'm1'), 15_000);
  const preheatSha = n.node.store.get('m1')!.sha256;

  await m.master.startMeeting('m1');
  await n.node.preheatTask.runNow();
  assert.equal(n.node.sync.activeMeeting('m1'), undefined, 'the poll has not seen the start yet');
  assert.ok(preheated(n, 'm1'), 'the scan saw the meeting started, not gone: the preheat stays');

  await n.node.syncNow();
  await waitFor('confirmed', () => n.node.store.get('m1')?.source === 'confirmed', 10_000);
  assert.equal(n.node.store.get('m1')?.sha256, preheatSha);
  const size = n.node.store.get('m1')!.size;
  assert.ok(startBuildBytes(m, 'm1') < size / 2, `the start's build was only probed (${startBuildBytes(m, 'm1')} of ${size} bytes sent)`);
});

test('a meeting started while its preheat is half done: the preheat gives way and tablets get the start\'s build', async (t) => {
  const defer = cleanupStack(t);
  // Slow enough that the preheat is mid-way when the meeting starts.
  const m = await startMaster({ packageRateBytesPerSec: 1_000_000 });
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Board', time: Date.now() + HOUR, packageSizeBytes: 3_000_000 });
  const n = await startNode(m.port, { config: CONFIG });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('the preheat under way', () => {
    const job = n.node.jobs.inFlight('m1');
    return job?.reason === 'preheat' && job.bytesWritten > 200_000;
  }, 15_000);
  await m.master.startMeeting('m1');
  const res = await fetchRaw(packageUrl(n.url, 'm1'));
  assert.equal(res.status, 200);
  assert.equal(sha256Hex(res.body), masterSha(m.master, 'm1'), 'the start\'s build, not the preheat\'s');
  await waitFor('synced', () => n.node.sync.isServable('m1'), 15_000);
  assert.equal(n.node.store.get('m1')?.source, 'master');
  assert.equal(n.node.store.get('m1')?.sha256, masterSha(m.master, 'm1'));
});

test('a node restarted with preheated packages on disk keeps them unserved until the start, then serves them', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Board', time: Date.now() + HOUR, packageSizeBytes: 2_000_000 });
  const first = await startNode(m.port, { config: CONFIG });
  defer(() => removeDir(first.dir));
  await waitFor('m1 preheated', () => preheated(first, 'm1'), 15_000);
  const sha = first.node.store.get('m1')!.sha256;
  await first.stop();

  const n = await startNode(m.port, { dir: first.dir, config: CONFIG });
  defer(() => n.stop());
  assert.ok(preheated(n, 'm1'), 'still a preheat after the restart');
  await waitFor('the first poll', () => n.node.sync.lastSuccess !== null, 10_000);
  await n.node.syncNow();
  assert.ok(preheated(n, 'm1'), 'not evicted as a start-up leftover');
  assert.equal((await fetchRaw(packageUrl(n.url, 'm1'))).status, 404);
  await new Promise((resolve) => setTimeout(resolve, 1_100));

  await m.master.startMeeting('m1');
  const res = await fetchRaw(packageUrl(n.url, 'm1'));
  assert.equal(res.status, 200);
  assert.equal(sha256Hex(res.body), sha);
  assert.equal(n.node.store.get('m1')?.source, 'confirmed');
  const size = n.node.store.get('m1')!.size;
  assert.ok(startBuildBytes(m, 'm1') < size / 2, `the start's build was only probed (${startBuildBytes(m, 'm1')} of ${size} bytes sent)`);
});
