/**
 * Storage quota and disk faults, with the faults injected:
 * - ENOSPC / EIO while a download writes (the real PackageFileWriter's writes fail): the temp file
 *   is removed, the old version stays served, the error is visible, a later job succeeds;
 * - the quota (QuotaGuard wired into SyncJobs and Reconciler as the composition root does): ended
 *   meetings evicted least recently served first, active ones pinned, a tablet already downloading
 *   an evicted package gets every byte, a sync that cannot fit refused with a clear error and
 *   retried later, the free-disk floor refusing syncs even without a quota.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs, { readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { ServeStats } from '../src/http/serve-stats.ts';
import { handleDownload } from '../src/http/download-route.ts';
import { MasterClient } from '../src/master/master-client.ts';
import type { DiskSpace } from '../src/store/disk-space.ts';
import { PackageStore } from '../src/store/package-store.ts';
import { QuotaGuard, type QuotaSettings } from '../src/sync/quota-guard.ts';
import { SyncJobs } from '../src/sync/sync-jobs.ts';
import { Reconciler } from '../src/sync/reconciler.ts';
import {
  cleanupStack,
  fetchRaw,
  isPartFile,
  masterSha,
  meetingDirEntries,
  memoryLogger,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startNode,
  startPausedDownload,
  tempDir,
  waitFor,
  type TestMaster,
} from './helpers.ts';

const KB = 1000;

/**
 * Makes every write to a download's temp file (`*.part-*`) fail with `code`, as a full or failing
 * disk would, by swapping fs.write/fs.writev/fs.writevSync and updating the ESM bindings (the
 * writer imports them by name). Other files are written normally. Returns the undo.
 */
function failTempWrites(code: 'ENOSPC' | 'EIO'): () => void {
  const original = { write: fs.write, writev: fs.writev, writevSync: fs.writevSync };
  const isTemp = (fd: number) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).includes('.part-');
    } catch {
      return false;
    }
  };
  const failure = () => Object.assign(new Error(`${code}: ${code === 'ENOSPC' ? 'no space left on device' : 'i/o error'}, write`), { code, errno: code === 'ENOSPC' ? -28 : -5, syscall: 'write' });
  const patched = {
    writevSync(fd: number, ...rest: unknown[]) {
      if (isTemp(fd)) throw failure();
      return (original.writevSync as (...args: unknown[]) => number)(fd, ...rest);
    },
    writev(fd: number, ...rest: unknown[]) {
      const callback = rest[rest.length - 1] as (error: Error | null) => void;
      if (isTemp(fd)) return void process.nextTick(callback, failure());
      return (original.writev as (...args: unknown[]) => void)(fd, ...rest);
    },
    write(fd: number, ...rest: unknown[]) {
      const callback = rest[rest.length - 1] as (error: Error | null) => void;
      if (isTemp(fd)) return void process.nextTick(callback, failure());
      return (original.write as (...args: unknown[]) => void)(fd, ...rest);
    },
  };
  Object.assign(fs, patched);
  syncBuiltinESMExports();
  return () => {
    Object.assign(fs, original);
    syncBuiltinESMExports();
  };
}

for (const code of ['ENOSPC', 'EIO'] as const) {
  test(`${code} while a new version downloads: temp removed, old version served, error visible, a later job succeeds`, async (t) => {
    const defer = cleanupStack(t);
    const m = await startMaster({ tokenMaxWaitMs: 300 });
    defer(() => m.close());
    m.master.addMeeting({ id: 'm1', title: 'Disk fault', packageSizeBytes: 300 * KB });
    await m.master.startMeeting('m1');
    const n = await startNode(m.port, { config: { syncInterval: 3600, heartbeat: { interval: 300 }, network: { retryCount: 2, retryDelay: 0.05 } } });
    defer(() => removeDir(n.dir));
    defer(() => n.stop());
    await waitFor('v1 synced', () => n.node.sync.isServable('m1'), 15_000);
    const v1 = masterSha(m.master, 'm1');
    await waitFor('the first token change', () => m.master.stats().tokenChanges >= 1, 10_000);
    await n.node.sync.pollNow();
    // The token change makes the node probe v1's build to compare it: let that finish first.
    await waitFor('no probe or download running', () => n.node.sync.probingIds().size === 0 && n.node.jobs.inFlight('m1') === undefined, 15_000);
    // Probes ask the master's package URL too (and hang up early): counted apart from download attempts.
    const downloadsBefore = (m.master.stats().packageDownloads.m1?.started ?? 0) - n.node.sync.probeCounters.probes;

    const undo = failTempWrites(code);
    defer(undo);
    const token = m.master.token();
    await m.master.endMeeting('m1');
    await m.master.startMeeting('m1');
    const v2 = masterSha(m.master, 'm1');
    await waitFor('the token to change', () => m.master.token() !== token, 10_000);
    await n.node.sync.pollNow();
    const failure = await waitFor(`the job to fail with ${code}`, () => n.node.jobs.failure('m1'), 15_000);

    assert.equal(failure.code, code);
    assert.match(failure.message, /disk error/);
    assert.ok(failure.retryAt > failure.at, 'retried later, not at once');
    assert.equal((m.master.stats().packageDownloads.m1?.started ?? 0) - n.node.sync.probeCounters.probes - downloadsBefore, 2, 'both attempts of the failed job');
    assert.deepEqual((await meetingDirEntries(n.storageDir, 'm1')).filter(isPartFile), [], 'the temp file is removed');
    assert.equal(n.node.store.get('m1')?.sha256, v1, 'the old version stays');
    const served = await fetchRaw(packageUrl(n.url, 'm1'));
    assert.equal(served.status, 200);
    assert.equal(sha256Hex(served.body), v1, 'the old version is still served');
    const status = JSON.parse(
      (await fetchRaw(`${n.url}/api/status`, { headers: { authorization: `Bearer ${n.node.adminToken}` } })).body.toString('utf8'),
    ) as { meetings: Array<{ id: string; last_error: { code: string; message: string } | null }> };
    assert.equal(status.meetings.find((e) => e.id === 'm1')?.last_error?.code, code, '/api/status shows the disk error');
    assert.ok(n.logger.lines.some((line) => line.includes('disk error')), 'the disk error is logged');

    undo();
    await waitFor(
      'a later job to succeed once the disk is back',
      async () => {
        await n.node.sync.pollNow();
        return n.node.store.get('m1')?.sha256 === v2;
      },
      15_000,
      100,
    );
    assert.equal(sha256Hex((await fetchRaw(packageUrl(n.url, 'm1'))).body), v2);
  });
}

interface QuotaNode {
  store: PackageStore;
  jobs: SyncJobs;
  sync: Reconciler;
  guard: QuotaGuard;
  stats: ServeStats;
  logger: ReturnType<typeof memoryLogger>;
  url: string;
  quota: QuotaSettings;
  disk: { value: DiskSpace | null };
}

/**
 * The parts of a node the quota touches, wired as src/edge-node.ts wires them (guard into SyncJobs
 * and Reconciler, last-served times from ServeStats, active meetings from the last poll), with the
 * real download route on a plain HTTP server. Ended meetings are kept (cleanup off) so that only
 * the quota evicts.
 */
async function quotaNode(t: Parameters<typeof cleanupStack>[0], m: TestMaster, quota: QuotaSettings): Promise<QuotaNode> {
  const defer = cleanupStack(t);
  const dir = await tempDir('edge-quota-');
  defer(() => removeDir(dir));
  const logger = memoryLogger();
  const store = await PackageStore.open(path.join(dir, 'storage'), logger);
  const master = new MasterClient({ host: '127.0.0.1', port: m.port, connectTimeoutMs: 2_000, requestTimeoutMs: 5_000 });
  defer(() => master.destroy());
  const stats = new ServeStats();
  const disk: { value: DiskSpace | null } = { value: null };
  const settings = { ...quota };
  let sync: Reconciler | null = null;
  let jobs: SyncJobs | null = null;
  const guard = new QuotaGuard({
    store,
    settings: () => settings,
    disk: async () => disk.value,
    activeIds: () => (sync?.lastSuccess ? new Set(sync.activeMeetings().map((a) => a.id)) : null),
    inFlightIds: () => jobs?.inFlightIds() ?? new Set(),
    lastServedAt: (id) => stats.peek(id)?.lastServedAt ?? null,
    logger,
  });
  jobs = new SyncJobs({
    store,
    master: () => master,
    settings: () => ({ maxConcurrentDownloads: 3, retryCount: 1, retryDelayMs: 50, idleTimeoutMs: 5_000, connectTimeoutMs: 2_000 }),
    logger,
    guard,
  });
  sync = new Reconciler({ store, jobs, master: () => master, policy: () => ({ evictEnded: false, cleanOnStartup: false }), logger, quota: guard });
  const loop = sync;
  const deps = {
    store,
    sync: loop,
    stats,
    logger,
    serving: () => true,
    settings: () => ({ waitForSyncMs: 5_000, idleTimeoutMs: 30_000, retryAfterSeconds: 1 }),
  };
  const server: Server = createServer((req, res) => {
    const match = /^\/api\/v1\/meetings\/([^/]+)\/download-package$/.exec(req.url ?? '');
    if (!match) return void res.writeHead(404).end();
    void handleDownload(deps, decodeURIComponent(match[1]!), req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  defer(() => jobs?.cancelAll('test over'));
  return { store, jobs, sync, guard, stats, logger, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, quota: settings, disk };
}

async function fullDownload(url: string): Promise<string> {
  const res = await fetchRaw(url);
  assert.equal(res.status, 200, `GET ${url}`);
  return sha256Hex(res.body);
}

test('quota: ended meetings are evicted least recently served first, active ones are pinned, and a tablet already downloading an evicted package gets every byte', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  for (const id of ['a', 'b', 'c', 'd']) m.master.addMeeting({ id, title: id.toUpperCase(), packageSizeBytes: 200 * KB });
  for (const id of ['a', 'b', 'c']) await m.master.startMeeting(id);
  // Room for three packages and a bit: the fourth pushes storage past 90 % of the quota.
  const q = await quotaNode(t, m, { maxSize: 700 * KB, cleanupThreshold: 0.9, autoCleanup: true, freeFloorBytes: 0 });
  await q.sync.pollNow();
  await waitFor('a, b, c synced', () => ['a', 'b', 'c'].every((id) => q.sync.isServable(id)), 15_000);
  const shas = Object.fromEntries(['a', 'b', 'c'].map((id) => [id, masterSha(m.master, id)]));

  // c is served first (a tablet still reading it, slowly), then a, then b: c is the least recently served.
  const slow = await startPausedDownload(packageUrl(q.url, 'c'));
  assert.equal(slow.status, 200);
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(await fullDownload(packageUrl(q.url, 'a')), shas.a);
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(await fullDownload(packageUrl(q.url, 'b')), shas.b);

  for (const id of ['a', 'b', 'c']) await m.master.endMeeting(id);
  await m.master.startMeeting('d');
  await q.sync.pollNow();
  await waitFor('d synced', () => q.sync.isServable('d'), 15_000);
  await waitFor('c evicted', () => q.store.get('c') === undefined, 10_000);

  assert.deepEqual(
    q.store
      .list()
      .map((p) => p.meetingId)
      .sort(),
    ['a', 'b', 'd'],
    'only the least recently served ended meeting went',
  );
  assert.ok(q.store.usedBytes() <= 0.9 * q.quota.maxSize, 'storage back under the threshold');
  assert.deepEqual(q.guard.state.lastEviction?.meetingIds, ['c']);
  assert.ok(q.logger.lines.some((line) => /quota: evicted meeting c .*storage above 90 %/.test(line)), 'the eviction is logged with its reason');

  slow.resume();
  const body = await slow.done;
  assert.ok(body.complete, 'the tablet reading c finished');
  assert.equal(sha256Hex(body.body), shas.c, 'and got every byte of the evicted package');
  assert.equal((await fetchRaw(packageUrl(q.url, 'c'))).status, 404, 'no new tablet gets the evicted package');

  // d is active: however full storage gets, it is not evicted.
  q.quota.maxSize = 300 * KB;
  await q.guard.enforce();
  assert.ok(q.store.get('d'), 'the active meeting stays');
  assert.deepEqual(
    q.store
      .list()
      .map((p) => p.meetingId)
      .sort(),
    ['d'],
  );
});

test('quota: a sync that cannot fit is stopped with a clear error, the active packages keep being served, and it is retried once room is made', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  for (const id of ['a', 'b', 'e']) m.master.addMeeting({ id, title: id.toUpperCase(), packageSizeBytes: 200 * KB });
  await m.master.startMeeting('a');
  await m.master.startMeeting('b');
  const q = await quotaNode(t, m, { maxSize: 500 * KB, cleanupThreshold: 0.9, autoCleanup: true, freeFloorBytes: 0 });
  await q.sync.pollNow();
  await waitFor('a, b synced', () => q.sync.isServable('a') && q.sync.isServable('b'), 15_000);
  const shaA = masterSha(m.master, 'a');

  await m.master.startMeeting('e');
  await q.sync.pollNow();
  const failure = await waitFor('e refused', () => q.jobs.failure('e'), 15_000);
  assert.equal(failure.code, 'QUOTA_EXCEEDED');
  assert.match(failure.message, /download stopped: storage quota full: the package is larger than .* storage\.maxSize/);
  assert.equal(q.store.get('e'), undefined);
  const entries = await meetingDirEntries(path.dirname(q.store.meetingDir('e')), 'e');
  assert.deepEqual(entries.filter(isPartFile), [], 'the temp file is removed');
  assert.ok(q.store.usedBytes() <= q.quota.maxSize, 'storage never went past maxSize in complete packages');
  assert.equal(await fullDownload(packageUrl(q.url, 'a')), shaA, 'active packages keep being served');
  const tablet = await fetchRaw(packageUrl(q.url, 'e'));
  assert.equal(tablet.status, 503, 'a tablet asking for e is told to retry');
  assert.match(tablet.body.toString('utf8'), /storage quota full/, 'with the reason');

  // The next attempt knows the package is bigger than what arrived: refused before a byte is fetched.
  const requestsBefore = m.master.stats().packageDownloads.e?.started ?? 0;
  await waitFor(
    'a retry refused up front',
    async () => {
      await q.sync.pollNow();
      return /download refused/.test(q.jobs.failure('e')?.message ?? '') ? true : null;
    },
    10_000,
    100,
  );
  assert.equal(m.master.stats().packageDownloads.e?.started ?? 0, requestsBefore, 'no download started for a refused sync');

  // a ends: its package may now go to make room, and e is retried by itself.
  await m.master.endMeeting('a');
  await waitFor(
    'e synced once a ended',
    async () => {
      await q.sync.pollNow();
      return q.sync.isServable('e');
    },
    15_000,
    100,
  );
  assert.equal(q.store.get('a'), undefined, 'a was evicted to make room');
  assert.ok(q.store.get('b'), 'b (active) stays');
  assert.equal(q.store.get('e')?.sha256, masterSha(m.master, 'e'));
  assert.equal(await fullDownload(packageUrl(q.url, 'e')), masterSha(m.master, 'e'));
  // (A later token change makes the node fetch b and e again to compare bytes; with no room for a
  // second copy that refresh is refused in turn, and the copies held keep being served.)
});

test('disk floor: a sync that would leave less free disk than the floor is refused with DISK_FULL, even without a quota', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'a', title: 'A', packageSizeBytes: 200 * KB });
  await m.master.startMeeting('a');
  const q = await quotaNode(t, m, { maxSize: 0, cleanupThreshold: 0.9, autoCleanup: true, freeFloorBytes: 1_000 * KB });
  q.disk.value = { total: 100_000 * KB, free: 900 * KB, available: 900 * KB };
  await q.sync.pollNow();
  const failure = await waitFor('a refused', () => q.jobs.failure('a'), 10_000);
  assert.equal(failure.code, 'DISK_FULL');
  assert.match(failure.message, /disk almost full/);
  assert.equal(m.master.stats().packageDownloads.a?.started ?? 0, 0, 'nothing was fetched');

  q.disk.value = { total: 100_000 * KB, free: 50_000 * KB, available: 50_000 * KB };
  await waitFor(
    'a synced once there is room',
    async () => {
      await q.sync.pollNow();
      return q.sync.isServable('a');
    },
    15_000,
    100,
  );
});

test('disk floor: a download that eats the free space down to the floor is stopped and its temp file removed', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'a', title: 'A', documents: [{ name: 'big.bin', content: randomBytes(600 * KB) }] });
  await m.master.startMeeting('a');
  const q = await quotaNode(t, m, { maxSize: 0, cleanupThreshold: 0.9, autoCleanup: true, freeFloorBytes: 1_000 * KB });
  // The fake statfs does not see the node's writes: the guard's own count of bytes written must.
  q.disk.value = { total: 100_000 * KB, free: 1_300 * KB, available: 1_300 * KB };
  await q.sync.pollNow();
  const failure = await waitFor('a stopped', () => q.jobs.failure('a'), 10_000);
  assert.equal(failure.code, 'DISK_FULL');
  assert.match(failure.message, /download stopped/);
  assert.deepEqual((await meetingDirEntries(path.dirname(q.store.meetingDir('a')), 'a')).filter(isPartFile), []);
  assert.equal(q.store.get('a'), undefined);
});
