/**
 * The node's main job end to end against the reference master: register and heartbeat, sync,
 * serve (GET/HEAD/Range/conditional), restart of a meeting, unknown and invalid ids.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import type { NodeView, ReferenceMaster } from '../reference-master/master.ts';
import {
  cleanupStack,
  fetchRaw,
  masterPackageBytes,
  masterSha,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startNode,
  startStatusProxy,
  waitFor,
} from './helpers.ts';

/** Polls are driven by the tests (syncNow) and heartbeats come only at start and on events. */
const QUIET = { syncInterval: 3600, heartbeat: { interval: 300 } };

function aliasUrl(base: string, meetingId: string): string {
  return `${base}/api/meetings/${meetingId}/download`;
}

function nodeView(master: ReferenceMaster, nodeId: string | null): NodeView | undefined {
  return master.nodes().find((n) => n.nodeId === nodeId);
}

test('register and heartbeat: string titles always, synced only once the package is complete, a beat as soon as a sync completes', async (t) => {
  const defer = cleanupStack(t);
  // Slow enough that the big package is still downloading when we look (about 4 s).
  const m = await startMaster({ throttleBytesPerSec: 400_000 });
  defer(() => m.close());
  m.master.addMeeting({ id: 'm-null', title: 'will be null' });
  m.master.addMeeting({ id: 'm-missing', title: 'will be missing' });
  m.master.addMeeting({ id: 'm-empty', title: '' });
  m.master.addMeeting({ id: 'm-big', title: '董事会 Board', packageSizeBytes: 1_600_000 });
  for (const id of ['m-null', 'm-missing', 'm-empty']) await m.master.startMeeting(id);
  await m.master.startMeeting('m-big');
  // The reference master only produces string titles; the real one has sent null and none.
  const proxy = await startStatusProxy(m.port, (status) => {
    const meetings = status.active_meetings as Array<Record<string, unknown>>;
    for (const meeting of meetings) {
      if (meeting.id === 'm-null') meeting.title = null;
      if (meeting.id === 'm-missing') delete meeting.title;
    }
    return status;
  });
  defer(() => proxy.close());

  const n = await startNode(proxy.port, { config: QUIET });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  const nodeId = n.node.config.current.nodeId;

  await waitFor('the node registered', () => nodeView(m.master, nodeId), 15_000);
  await waitFor('the small packages synced', () => ['m-null', 'm-missing', 'm-empty'].every((id) => n.node.sync.isServable(id)), 15_000);
  await waitFor('the big package downloading', () => (n.node.jobs.inFlight('m-big')?.bytesWritten ?? 0) > 0, 15_000);

  assert.equal(await n.node.heartbeatNow(), true, 'heartbeat accepted by the master');
  assert.ok(n.node.jobs.inFlight('m-big'), 'the big package must still be downloading for this observation to mean anything');
  const during = nodeView(m.master, nodeId);
  assert.ok(during);
  const beat = during.lastHeartbeat as { active_meetings: Array<{ id: unknown; title: unknown }>; synced_meetings: unknown[]; address: unknown };
  assert.equal(during.breaksList, false, 'no heartbeat may break the master\'s /nodes/list');
  assert.deepEqual(beat.active_meetings.map((a) => a.id).sort(), ['m-big', 'm-empty', 'm-missing', 'm-null']);
  for (const entry of beat.active_meetings) {
    assert.equal(typeof entry.title, 'string', `title of ${String(entry.id)}`);
    assert.notEqual((entry.title as string).trim(), '', `title of ${String(entry.id)} must not be empty`);
  }
  assert.equal(beat.active_meetings.find((a) => a.id === 'm-big')?.title, '董事会 Board');
  assert.deepEqual([...beat.synced_meetings].sort(), ['m-empty', 'm-missing', 'm-null'], 'the package still downloading is not synced');
  assert.equal(beat.address, n.node.address);
  const list = await fetchRaw(`${m.url}/api/v1/nodes/list`);
  assert.equal(list.status, 200, 'the master\'s node list still works');

  // With a 300 s heartbeat interval only the beat sent on completion can carry the news.
  const beatsBefore = during.heartbeats;
  await waitFor('the master to see m-big synced', () => nodeView(m.master, nodeId)?.syncedMeetings.includes('m-big'), 30_000);
  const after = nodeView(m.master, nodeId);
  assert.ok(after && after.heartbeats > beatsBefore);
  assert.equal(n.node.store.get('m-big')?.sha256, masterSha(m.master, 'm-big'), 'reported synced means the complete package is stored');
});

test('sync: both download URLs serve the master\'s bytes; HEAD, Range, If-None-Match and If-Range', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: '第一次会议', packageSizeBytes: 300_000 });
  await m.master.startMeeting('m1');
  const n = await startNode(m.port, { config: QUIET });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('m1 synced', () => n.node.sync.isServable('m1'), 15_000);

  const sha = masterSha(m.master, 'm1');
  const direct = await masterPackageBytes(m.url, 'm1');
  assert.equal(sha256Hex(direct), sha);
  const size = direct.length;

  for (const url of [packageUrl(n.url, 'm1'), aliasUrl(n.url, 'm1')]) {
    const res = await fetchRaw(url);
    assert.equal(res.status, 200, url);
    assert.ok(res.complete);
    assert.equal(sha256Hex(res.body), sha, `bytes from ${url}`);
    assert.equal(res.headers['content-type'], 'application/zip');
    assert.equal(res.headers['content-length'], String(size));
    assert.equal(res.headers['content-disposition'], 'attachment; filename="meeting_m1.zip"');
    assert.equal(res.headers.etag, `"${sha}"`);
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.ok(res.headers['last-modified'] && !Number.isNaN(Date.parse(String(res.headers['last-modified']))));

    const head = await fetchRaw(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0, 'HEAD has no body');
    assert.equal(head.headers['content-length'], String(size));
    assert.equal(head.headers.etag, `"${sha}"`);
    assert.equal(head.headers['content-type'], 'application/zip');
  }

  const url = packageUrl(n.url, 'm1');
  const first = await fetchRaw(url, { headers: { range: 'bytes=0-99' } });
  assert.equal(first.status, 206);
  assert.equal(first.headers['content-range'], `bytes 0-99/${size}`);
  assert.equal(first.headers['content-length'], '100');
  assert.deepEqual(first.body, direct.subarray(0, 100));

  const middle = await fetchRaw(url, { headers: { range: 'bytes=1000-' } });
  assert.equal(middle.status, 206);
  assert.deepEqual(middle.body, direct.subarray(1000));

  const suffix = await fetchRaw(url, { headers: { range: 'bytes=-22' } });
  assert.equal(suffix.status, 206);
  assert.equal(suffix.headers['content-range'], `bytes ${size - 22}-${size - 1}/${size}`);
  assert.deepEqual(suffix.body, direct.subarray(size - 22));

  const beyond = await fetchRaw(url, { headers: { range: `bytes=${size}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers['content-range'], `bytes */${size}`);

  const notModified = await fetchRaw(url, { headers: { 'if-none-match': `"${sha}"` } });
  assert.equal(notModified.status, 304);
  assert.equal(notModified.body.length, 0);
  assert.equal(notModified.headers.etag, `"${sha}"`);
  const otherTag = await fetchRaw(url, { headers: { 'if-none-match': `"${'0'.repeat(64)}"` } });
  assert.equal(otherTag.status, 200);
  assert.equal(sha256Hex(otherTag.body), sha);

  const ifRangeMatch = await fetchRaw(url, { headers: { range: 'bytes=10-19', 'if-range': `"${sha}"` } });
  assert.equal(ifRangeMatch.status, 206, 'If-Range with the current ETag honours the Range');
  assert.deepEqual(ifRangeMatch.body, direct.subarray(10, 20));
  const ifRangeStale = await fetchRaw(url, { headers: { range: 'bytes=10-19', 'if-range': `"${'f'.repeat(64)}"` } });
  assert.equal(ifRangeStale.status, 200, 'If-Range with another ETag sends the whole package');
  assert.equal(sha256Hex(ifRangeStale.body), sha);

  // A tablet's keep-alive connection survives a HEAD: the next GET reuses the same socket.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  defer(() => agent.destroy());
  const viaAgent = (method: string) =>
    new Promise<{ status: number; reused: boolean; body: Buffer }>((resolve, reject) => {
      const req = httpRequest(url, { method, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  const headFirst = await viaAgent('HEAD');
  assert.equal(headFirst.status, 200);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const getAfter = await viaAgent('GET');
  assert.equal(getAfter.status, 200);
  assert.equal(sha256Hex(getAfter.body), sha);
  assert.equal(getAfter.reused, true, 'the connection used for HEAD must stay usable');

  // On disk: exactly the verified package and its manifest, no temp files.
  const dir = path.join(n.storageDir, 'meeting_m1');
  assert.ok(existsSync(path.join(dir, 'package.zip')));
  assert.ok(existsSync(path.join(dir, 'manifest.json')));
});

/**
 * A node that was running when its meetings started: it has seen the token change each start
 * causes.
 */
async function nodeThenMeetings(t: { after(fn: () => Promise<void>): void }, ids: string[], options: { tokenSettleMs?: number } = {}) {
  const defer = cleanupStack(t);
  const m = await startMaster(options);
  defer(() => m.close());
  const n = await startNode(m.port, { config: QUIET });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('the node registered', () => nodeView(m.master, n.node.config.current.nodeId), 15_000);
  for (const id of ids) {
    m.master.addMeeting({ id, title: `Meeting ${id}` });
    await m.master.startMeeting(id);
  }
  await n.node.syncNow();
  await waitFor('every meeting synced', () => ids.every((id) => n.node.sync.isServable(id)), 15_000);
  return { m, n };
}

test('watch: between polls, a started meeting is synced and reported within watchInterval; an unchanged answer reconciles nothing', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  // No full poll after the first one for an hour: only the watch can notice the start.
  const n = await startNode(m.port, { config: { ...QUIET, watchInterval: 1 } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('the first poll', () => n.node.sync.lastSuccess !== null, 15_000);
  let reconciles = 0;
  n.node.sync.events.on('polled', () => reconciles++);

  const statusRequests = () => m.master.stats().requests['status'] ?? 0;
  const before = statusRequests();
  await waitFor('three quick checks', () => statusRequests() >= before + 3, 15_000, 50);
  assert.equal(reconciles, 0, 'an answer equal to the last poll reconciles nothing');

  m.master.addMeeting({ id: 'w1', title: 'Watched' });
  await m.master.startMeeting('w1');
  await waitFor('the started meeting synced without a poll', () => n.node.sync.isServable('w1'), 15_000);
  assert.equal(reconciles, 1);
  await waitFor('the node reported it synced', () => nodeView(m.master, n.node.config.current.nodeId)?.syncedMeetings.includes('w1'), 15_000);
  await waitFor('the token changed', () => m.master.stats().tokenChanges >= 1, 15_000);
  const res = await fetchRaw(packageUrl(n.url, 'w1'));
  assert.equal(sha256Hex(res.body), masterSha(m.master, 'w1'));

  // Off: the node keeps to its full polls.
  await n.node.updateConfig({ watchInterval: 0 });
  const afterOff = statusRequests();
  await m.master.endMeeting('w1');
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  assert.equal(statusRequests(), afterOff, 'no quick checks while watchInterval is 0');
  assert.ok(n.node.sync.activeMeeting('w1'), 'the end is seen only at the next poll');
});

test('a meeting that ends and starts again: the node serves the new bytes after its next poll', async (t) => {
  const { m, n } = await nodeThenMeetings(t, ['m1', 'm2']);
  // Each start's token change waits for this node's synced report; the node then sees them.
  await waitFor('the master to change the token for both meetings', () => m.master.stats().tokenChanges >= 2, 15_000);
  await n.node.syncNow();
  assert.equal(n.node.sync.lastSuccess?.token, m.master.token());
  const oldSha = masterSha(m.master, 'm1');
  const steadySha = masterSha(m.master, 'm2');
  assert.equal(n.node.store.get('m1')?.sha256, oldSha);

  await m.master.endMeeting('m1');
  await m.master.startMeeting('m1');
  const newSha = masterSha(m.master, 'm1');
  assert.notEqual(newSha, oldSha, 'the master rebuilds the package on restart');
  await waitFor('the master to change the token for the restart', () => m.master.stats().tokenChanges >= 3, 15_000);

  await waitFor(
    'the node to hold the rebuilt package',
    async () => {
      await n.node.syncNow();
      return n.node.store.get('m1')?.sha256 === newSha;
    },
    30_000,
    200,
  );
  const res = await fetchRaw(packageUrl(n.url, 'm1'), { headers: { 'if-none-match': `"${oldSha}"` } });
  assert.equal(res.status, 200, 'the old ETag no longer matches');
  assert.equal(sha256Hex(res.body), newSha);
  assert.equal(res.headers.etag, `"${newSha}"`);

  // The unchanged meeting keeps its bytes (fetching it again to compare is allowed).
  assert.equal(n.node.store.get('m2')?.sha256, steadySha);
  const steady = await fetchRaw(packageUrl(n.url, 'm2'));
  assert.equal(sha256Hex(steady.body), steadySha);
});

test(
  'a node started while meetings were already active notices a later restart',
  async (t) => {
    const defer = cleanupStack(t);
    const m = await startMaster();
    defer(() => m.close());
    m.master.addMeeting({ id: 'm1', title: 'Restarted' });
    m.master.addMeeting({ id: 'm2', title: 'Steady' });
    await m.master.startMeeting('m1');
    await m.master.startMeeting('m2');
    // No node online: the token settles for both at once, long before the node starts.
    await waitFor('the token to settle', () => m.master.stats().tokenChanges >= 2, 15_000);
    const n = await startNode(m.port, { config: QUIET });
    defer(() => removeDir(n.dir));
    defer(() => n.stop());
    await waitFor('both synced', () => n.node.sync.isServable('m1') && n.node.sync.isServable('m2'), 15_000);

    await m.master.endMeeting('m1');
    await m.master.startMeeting('m1');
    const newSha = masterSha(m.master, 'm1');
    await waitFor('the token change for the restart', () => m.master.stats().tokenChanges >= 3, 15_000);
    await n.node.syncNow();
    // Whatever the poll decided has started by now: let it finish, then look.
    await waitFor('the poll\'s probes and jobs to finish', () => n.node.sync.probingIds().size === 0 && n.node.jobs.inFlightIds().size === 0, 15_000);
    assert.equal(n.node.store.get('m1')?.sha256, newSha, 'the rebuilt package replaced the stale one');
  },
);

test(
  'a meeting restarted before its first token change is refetched',
  async (t) => {
    // A long settle keeps the first activation's token change pending while the operator restarts.
    const { m, n } = await nodeThenMeetings(t, ['m1'], { tokenSettleMs: 1_500 });
    await waitFor('the master to see m1 synced', () => nodeView(m.master, n.node.config.current.nodeId)?.syncedMeetings.includes('m1'), 15_000);
    assert.equal(m.master.stats().tokenChanges, 0);
    await m.master.endMeeting('m1');
    await m.master.startMeeting('m1');
    const newSha = masterSha(m.master, 'm1');
    await waitFor('the token change', () => m.master.stats().tokenChanges >= 1, 15_000);
    await n.node.syncNow();
    // Whatever the poll decided has started by now: let it finish, then look.
    await waitFor('the poll\'s probes and jobs to finish', () => n.node.sync.probingIds().size === 0 && n.node.jobs.inFlightIds().size === 0, 15_000);
    assert.equal(n.node.store.get('m1')?.sha256, newSha, 'the rebuilt package replaced the stale one');
  },
);

test('unknown id: 404 without asking the master for a package; invalid id: 400', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Active' });
  // The master would happily build and send this one: the node must not ask.
  m.master.addMeeting({ id: 'm-later', title: 'Not started' });
  await m.master.startMeeting('m1');
  const n = await startNode(m.port, { config: QUIET });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('m1 synced', () => n.node.sync.isServable('m1'), 15_000);
  const pollsBefore = n.node.sync.lastSuccess?.at ?? 0;

  for (const id of ['nope', 'm-later']) {
    for (const url of [packageUrl(n.url, id), aliasUrl(n.url, id)]) {
      const res = await fetchRaw(url);
      assert.equal(res.status, 404, `${url}`);
      assert.match(res.headers['content-type'] as string, /json/);
    }
    const head = await fetchRaw(packageUrl(n.url, id), { method: 'HEAD' });
    assert.equal(head.status, 404);
  }
  // An unknown id may trigger one refresh poll; after it, still no package request.
  await waitFor('the refresh poll for the unknown id', () => (n.node.sync.lastSuccess?.at ?? 0) > pollsBefore, 15_000);
  await n.node.syncNow();
  const stats = m.master.stats();
  assert.equal(stats.packageDownloads.nope, undefined);
  assert.equal(stats.packageDownloads['m-later'], undefined);
  assert.equal(stats.tabletDownloads.nope, undefined);
  assert.deepEqual(
    stats.requestLog.filter((e) => e.route === 'package' || e.route === 'tabletPackage').map((e) => e.path),
    ['/api/v1/meetings/m1/download-package-direct'],
    'the only package fetched is the active meeting\'s',
  );
  assert.equal(existsSync(path.join(n.storageDir, 'meeting_m-later')), false);

  for (const raw of ['..%2f', '..%2F..%2Fetc%2Fpasswd', 'a.b', '-x', 'x%20y', 'x%00y', 'a'.repeat(129)]) {
    for (const url of [`${n.url}/api/v1/meetings/${raw}/download-package`, `${n.url}/api/meetings/${raw}/download`]) {
      const res = await fetchRaw(url);
      assert.equal(res.status, 400, url);
    }
  }
  assert.equal(m.master.stats().packageDownloads['..'], undefined);
});

test(
  'a HEAD request is answered once: no second response attempt reported on the console',
  // Hono answers HEAD by dispatching GET and copying the result into a new Response; that copy
  // once lost the already-sent marker and @hono/node-server wrote a second answer on every HEAD.
  async (t) => {
    const defer = cleanupStack(t);
    const m = await startMaster();
    defer(() => m.close());
    m.master.addMeeting({ id: 'm1', title: 'Head' });
    await m.master.startMeeting('m1');
    const n = await startNode(m.port, { config: QUIET });
    defer(() => removeDir(n.dir));
    defer(() => n.stop());
    await waitFor('m1 synced', () => n.node.sync.isServable('m1'), 15_000);
    const errors = t.mock.method(console, 'error', () => {});
    for (const url of [packageUrl(n.url, 'm1'), aliasUrl(n.url, 'm1')]) {
      assert.equal((await fetchRaw(url, { method: 'HEAD' })).status, 200);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(errors.mock.calls.map((call) => String(call.arguments[0])), []);
  },
);
