/**
 * The master misbehaving: gone (closed) and back on the same port; package bodies that are cut,
 * reset or not a zip. Nothing partial is ever promoted or served, nothing is evicted on a failed
 * poll, and the node recovers by itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Fault } from '../reference-master/master.ts';
import {
  cleanupStack,
  fetchRaw,
  isPartFile,
  masterSha,
  meetingDirEntries,
  nodeStatus,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startMasterOnPort,
  startNode,
  waitFor,
} from './helpers.ts';

test('master down: cached packages are still served and nothing is evicted; back on the same port, the node recovers', async (t) => {
  const defer = cleanupStack(t);
  const first = await startMaster();
  defer(() => first.close());
  // Heartbeats every 10 s (the minimum): recovery must come from the node's own schedule.
  const n = await startNode(first.port, { config: { syncInterval: 3600, heartbeat: { interval: 10 } } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  // The meetings start while the node runs, and the node sees the token change each start causes
  // (as its regular polls would), so the change after the master's restart is one no new meeting
  // explains. (A node started after the token settled trips over the reconcile bug that the todo
  // tests in main-job.test.ts describe.)
  await waitFor('the node registered', () => first.master.nodes().length === 1, 15_000);
  first.master.addMeeting({ id: 'm1', title: 'One' });
  first.master.addMeeting({ id: 'm2', title: 'Two' });
  await first.master.startMeeting('m1');
  await first.master.startMeeting('m2');
  await n.node.syncNow();
  await waitFor('both synced', () => n.node.sync.isServable('m1') && n.node.sync.isServable('m2'), 15_000);
  const sha1 = masterSha(first.master, 'm1');
  const sha2 = masterSha(first.master, 'm2');
  await waitFor('both token changes', () => first.master.stats().tokenChanges >= 2, 15_000);
  await n.node.syncNow();
  assert.equal(n.node.sync.lastSuccess?.token, first.master.token());

  await first.close();
  for (let poll = 0; poll < 3; poll++) {
    await n.node.syncNow();
    assert.ok(n.node.sync.lastError, 'the failed poll is recorded');
    assert.deepEqual(n.node.store.list().map((p) => p.meetingId).sort(), ['m1', 'm2'], 'nothing evicted');
    for (const [id, sha] of [['m1', sha1], ['m2', sha2]] as const) {
      const res = await fetchRaw(packageUrl(n.url, id));
      assert.equal(res.status, 200, `${id} still served`);
      assert.equal(sha256Hex(res.body), sha);
    }
  }
  assert.ok((await meetingDirEntries(n.storageDir, 'm1')).includes('package.zip'));
  const status = (await nodeStatus(n.node)) as { meetings?: Array<{ id: string }> };
  assert.deepEqual(status.meetings?.map((meeting) => meeting.id).sort(), ['m1', 'm2'], '/api/status still lists both');

  // The master comes back (empty registry, new token) with m1 rebuilt and m2 no longer active.
  const second = await startMasterOnPort(first.port);
  defer(() => second.close());
  second.master.addMeeting({ id: 'm1', title: 'One' });
  await second.master.startMeeting('m1');
  const newSha1 = masterSha(second.master, 'm1');

  await waitFor(
    'the node to reappear in the restarted master\'s registry',
    () => second.master.nodes().some((v) => v.nodeId === n.node.config.current.nodeId && v.online),
    25_000,
    100,
  );
  assert.equal(second.master.stats().requests.register, undefined, 'a heartbeat alone re-registers the node');

  await waitFor(
    'the node to sync from the restarted master',
    async () => {
      await n.node.syncNow();
      return n.node.store.get('m1')?.sha256 === newSha1 && n.node.store.get('m2') === undefined;
    },
    20_000,
    200,
  );
  assert.equal(n.node.sync.lastError, null);
  assert.equal(sha256Hex((await fetchRaw(packageUrl(n.url, 'm1'))).body), newSha1);
  assert.equal((await fetchRaw(packageUrl(n.url, 'm2'))).status, 404);
});

const BROKEN_BODIES: Array<{ name: string; fault: Fault }> = [
  { name: 'chunked body cut mid-way', fault: { kind: 'cutChunked', afterBytes: 50_000 } },
  // Every byte of the zip arrives, but not the terminating chunk: still a failed download.
  { name: 'whole zip without the terminating chunk', fault: { kind: 'cutChunked', afterBytes: 100_000_000 } },
  { name: 'connection reset mid-body', fault: { kind: 'resetMidBody', afterBytes: 50_000 } },
  { name: 'a body that is not a zip', fault: { kind: 'notZip', bytes: 100_000 } },
];

test('broken package bodies are never promoted, the error is visible, and the next try succeeds', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  const n = await startNode(m.port, { config: { syncInterval: 3600, heartbeat: { interval: 300 }, network: { retryCount: 2 } } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());

  for (const [index, { name, fault }] of BROKEN_BODIES.entries()) {
    const id = `m-broken-${index}`;
    m.master.addMeeting({ id, title: name, packageSizeBytes: 300_000 });
    // Both attempts of the first job fail; the fault then clears itself.
    m.master.setFault('package', { ...fault, times: 2, meetingId: id });
    await m.master.startMeeting(id);
    await n.node.syncNow();
    const failure = await waitFor(`${name}: the job to fail`, () => n.node.jobs.failure(id), 15_000);

    assert.ok(failure.message.length > 0, name);
    const requests = m.master.stats().requestLog.filter((e) => e.path === `/api/v1/meetings/${id}/download-package-direct`);
    assert.equal(requests.length, 2, `${name}: retryCount attempts`);
    assert.equal(n.node.store.get(id), undefined, `${name}: not promoted`);
    assert.equal(n.node.sync.isServable(id), false);
    const entries = await meetingDirEntries(n.storageDir, id);
    assert.ok(!entries.includes('package.zip'), `${name}: no package.zip (${entries.join(', ')})`);
    assert.deepEqual(entries.filter(isPartFile), [], `${name}: no temp file left`);
    assert.ok(!n.node.announcer.payload().synced_meetings.includes(id), `${name}: not reported synced`);
    const status = (await nodeStatus(n.node)) as { meetings?: Array<{ id: string; last_error?: { message?: string } | null }> };
    const entry = status.meetings?.find((meeting) => meeting.id === id);
    assert.ok(entry?.last_error?.message, `${name}: /api/status shows the error`);

    await waitFor(
      `${name}: the retry to succeed`,
      async () => {
        await n.node.syncNow();
        return n.node.sync.isServable(id);
      },
      15_000,
      100,
    );
    const sha = masterSha(m.master, id);
    assert.equal(n.node.store.get(id)?.sha256, sha, name);
    assert.equal(n.node.jobs.failure(id), undefined, `${name}: failure cleared`);
    assert.equal(sha256Hex((await fetchRaw(packageUrl(n.url, id))).body), sha);
    assert.deepEqual((await meetingDirEntries(n.storageDir, id)).filter(isPartFile), []);
  }
});

test('a broken first attempt is retried within the same job', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Flaky', packageSizeBytes: 300_000 });
  m.master.setFault('package', { kind: 'resetMidBody', afterBytes: 100_000, times: 1, meetingId: 'm1' });
  await m.master.startMeeting('m1');
  const n = await startNode(m.port, { config: { syncInterval: 3600, heartbeat: { interval: 300 }, network: { retryCount: 3 } } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('m1 synced', () => n.node.sync.isServable('m1'), 15_000);
  assert.equal(n.node.store.get('m1')?.sha256, masterSha(m.master, 'm1'));
  assert.equal(m.master.stats().packageDownloads.m1?.started, 2);
  assert.equal(m.master.stats().packageDownloads.m1?.faulted, 1);
  assert.equal(n.node.jobs.failure('m1'), undefined, 'a job that succeeded leaves no failure');
});

// The test's timeout is the guard: before, a stop waited for the heartbeat's 30 s, then the
// unregister's 30 s, then the hung poll, before the drain even began (about 61 s).
test('a master that accepts but never answers does not hold a stop: the node gives up on it and stops', { timeout: 25_000 }, async (t) => {
  // Registration answered (so heartbeats start), every other request left hanging: a stuck worker.
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    if (req.url === '/api/v1/nodes/register') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"success"}');
      return;
    }
    hanging.add(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  const n = await startNode(port, { config: { heartbeat: { interval: 10, timeout: 30 }, network: { connectionTimeout: 10 } } });
  t.after(() => removeDir(n.dir));
  await waitFor('a heartbeat and a poll hanging', () => [...hanging].length >= 2, 10_000);

  await n.stop();
  assert.ok(n.logger.lines.some((line) => /heartbeat to the master got no answer/.test(line)), 'it stopped waiting for the heartbeat');
  assert.ok(n.logger.lines.some((line) => /^warn unregister from .* failed/.test(line)), 'and for the unregister');
  assert.ok(n.logger.lines.some((line) => /^info stopped$/.test(line)));
  assert.ok([...hanging].every((res) => !res.writableEnded), 'the master answered nothing meanwhile');
});

test('a service stop while a master change is being applied leaves the node unregistered from the new master', async (t) => {
  const oldMaster = await startMaster();
  const newMaster = await startMaster();
  const n = await startNode(oldMaster.port, { config: { heartbeat: { interval: 10, timeout: 2 }, network: { connectionTimeout: 1, retryDelay: 0.05, downloadTimeout: 5 } } });
  t.after(async () => {
    await n.stop();
    await oldMaster.close();
    await newMaster.close();
    await removeDir(n.dir);
  });
  await waitFor('registered with the old master', () => oldMaster.master.nodes().some((x) => x.online));
  // The old master is slow to answer the unregister: the stop lands while the change is applied.
  oldMaster.master.setFault('unregister', { kind: 'hang' });
  const applying = n.node.updateConfig({ mainServerPort: newMaster.port });
  await new Promise((resolve) => setTimeout(resolve, 300));
  await n.node.stopService();
  await applying;
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(n.node.serving, false);
  assert.deepEqual(
    newMaster.master.nodes().filter((x) => x.online).map((x) => x.nodeId),
    [],
    'the new master lists no node whose service is stopped',
  );
});
