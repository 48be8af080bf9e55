/**
 * Serve-while-downloading: tablets asking for a package that is still syncing get the bytes from
 * the download's temp file as they arrive, a response that ends cleanly only when the sync
 * succeeded, and 503 past the cap of such tablets.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { ServeStats } from '../src/http/serve-stats.ts';
import { handleDownload, type DownloadDeps } from '../src/http/download-route.ts';
import { TailLimit } from '../src/http/tail-send.ts';
import type { PackageStore, StoredPackage } from '../src/store/package-store.ts';
import { SyncJob } from '../src/sync/sync-job.ts';
import type { Reconciler } from '../src/sync/reconciler.ts';
import {
  cleanupStack,
  descriptorsOn,
  fetchRaw,
  masterPackageBytes,
  memoryLogger,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startNode,
  tempDir,
  waitFor,
  type RawResponse,
} from './helpers.ts';

/** Polls are driven by the tests (syncNow) and heartbeats come only at start and on events. */
const QUIET = { syncInterval: 3600, heartbeat: { interval: 300 } };
const SIZE = 2 * 1024 * 1024;

/** A master sending the package slowly (about 2 s for SIZE), so tablets arrive mid-download. */
async function slowSetup(t: { after(fn: () => Promise<void>): void }, meetingId: string, config: Record<string, unknown> = {}) {
  const defer = cleanupStack(t);
  // No token change during a test: it would make the node re-fetch the package to check it.
  const m = await startMaster({ throttleBytesPerSec: 1_000_000, chunkSize: 16 * 1024, tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  defer(() => m.close());
  m.master.addMeeting({ id: meetingId, title: 'Streaming 流式', packageSizeBytes: SIZE });
  await m.master.startMeeting(meetingId);
  const expected = await masterPackageBytes(m.url, meetingId);
  m.master.resetStats();
  const n = await startNode(m.port, { config: { ...QUIET, ...config } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  return { m, n, expected };
}

test('a tablet asking mid-download gets the whole package as it arrives: chunked, no Content-Length, no ETag, one upstream fetch', async (t) => {
  const { m, n, expected } = await slowSetup(t, 'tail-ok');
  await n.node.syncNow();
  await waitFor('the download to start', () => (n.node.jobs.inFlight('tail-ok')?.bytesWritten ?? 0) > 0, 15_000);

  const [plain, ranged] = await Promise.all([
    fetchRaw(packageUrl(n.url, 'tail-ok')),
    // Range cannot be honoured before the size is known: ignored, the whole package is sent.
    fetchRaw(packageUrl(n.url, 'tail-ok'), { headers: { Range: 'bytes=0-99' } }),
  ]);
  for (const res of [plain, ranged]) {
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], undefined, 'streamed before the size was known');
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    assert.equal(res.headers['etag'], undefined);
    assert.equal(res.headers['content-range'], undefined);
    assert.equal(res.complete, true);
    assert.equal(res.body.length, expected.length);
    assert.equal(sha256Hex(res.body), sha256Hex(expected));
  }
  assert.equal(m.master.stats().packageDownloads['tail-ok']?.started, 1, 'exactly one download from the master');

  // Once synced, the same URL serves the stored package with its validators again.
  await waitFor('the package synced', () => n.node.sync.isServable('tail-ok'), 15_000);
  const stored = await fetchRaw(packageUrl(n.url, 'tail-ok'), { method: 'HEAD' });
  assert.equal(stored.headers['content-length'], String(expected.length));
  assert.equal(stored.headers['etag'], `"${sha256Hex(expected)}"`);
});

test('tablets tailing one download share one read descriptor of its temp file', async (t) => {
  const { n, expected } = await slowSetup(t, 'tail-fds');
  await n.node.syncNow();
  await waitFor('the download to start', () => (n.node.jobs.inFlight('tail-fds')?.bytesWritten ?? 0) > 0, 15_000);
  const tempPath = n.node.jobs.inFlight('tail-fds')?.tempPath;
  assert.ok(tempPath);
  const before = descriptorsOn(tempPath); // the download's own

  const tablets = 5;
  const bodies: Array<Promise<Buffer>> = [];
  const firstBytes: Array<Promise<void>> = [];
  for (let i = 0; i < tablets; i++) {
    let gotFirst: () => void = () => {};
    firstBytes.push(new Promise<void>((resolve) => (gotFirst = resolve)));
    bodies.push(
      new Promise<Buffer>((resolve, reject) => {
        http
          .get(packageUrl(n.url, 'tail-fds'), (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => {
              chunks.push(chunk);
              gotFirst();
            });
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
          })
          .on('error', reject);
      }),
    );
  }
  await Promise.all(firstBytes);
  assert.ok(n.node.jobs.inFlight('tail-fds'), 'still downloading while the tablets stream');
  assert.equal(descriptorsOn(tempPath) - before, 1, `${tablets} tablets, one read descriptor`);
  for (const body of await Promise.all(bodies)) assert.ok(body.equals(expected));
});

function isPrefixOf(body: Buffer, expected: Buffer): boolean {
  return body.length <= expected.length && body.equals(expected.subarray(0, body.length));
}

test('an attempt cut mid-body is retried by the node; the tablet tailing it sees a broken transfer, then gets the right bytes on its retry', async (t) => {
  const { m, n, expected } = await slowSetup(t, 'tail-retry');
  m.master.setFault('package', { kind: 'resetMidBody', afterBytes: 600 * 1024, times: 1 });
  await n.node.syncNow();
  await waitFor('the download to start', () => (n.node.jobs.inFlight('tail-retry')?.bytesWritten ?? 0) > 0, 15_000);

  const cut = await fetchRaw(packageUrl(n.url, 'tail-retry'));
  assert.equal(cut.status, 200);
  assert.equal(cut.complete, false, 'the response of the failed attempt is destroyed, never ended');
  assert.ok(cut.body.length < expected.length);
  assert.ok(isPrefixOf(cut.body, expected), 'what arrived is the start of the package');

  let again: RawResponse | undefined;
  await waitFor(
    'a complete download on retry',
    async () => {
      again = await fetchRaw(packageUrl(n.url, 'tail-retry'));
      return again.status === 200 && again.complete;
    },
    30_000,
    100,
  );
  assert.ok(again);
  assert.equal(sha256Hex(again.body), sha256Hex(expected));
  assert.equal(m.master.stats().packageDownloads['tail-retry']?.started, 2, 'the cut attempt and its retry');
});

test('a sync that fails for good aborts the tailing tablet (chunked body cut before its end)', async (t) => {
  const { m, n, expected } = await slowSetup(t, 'tail-fail', { network: { retryCount: 1 } });
  m.master.setFault('package', { kind: 'cutChunked', afterBytes: 600 * 1024, times: 1 });
  await n.node.syncNow();
  await waitFor('the download to start', () => (n.node.jobs.inFlight('tail-fail')?.bytesWritten ?? 0) > 0, 15_000);

  const res = await fetchRaw(packageUrl(n.url, 'tail-fail'));
  assert.equal(res.status, 200);
  assert.equal(res.complete, false);
  assert.ok(res.body.length < expected.length);
  assert.ok(isPrefixOf(res.body, expected));
  assert.equal(n.node.sync.isServable('tail-fail'), false);
  assert.ok(n.node.jobs.failure('tail-fail'), 'the sync failed');
});

// ---- the route alone, with a download driven by the test -----------------------------------

interface Harness {
  url: string;
  job: SyncJob;
  limit: TailLimit;
  tempPath: string;
  close(): Promise<void>;
}

/** handleDownload on a plain server, for an active meeting whose (fake) download the test drives. */
async function routeHarness(max: number): Promise<Harness> {
  const dir = await tempDir('tail-route-');
  const tempPath = path.join(dir, 'package.zip.part-test');
  const job = new SyncJob({ meetingId: 'm1', title: 'M1', token: null, reason: 'requested' }, Date.now());
  const limit = new TailLimit(max);
  const sync = {
    isServable: () => false,
    activeMeeting: (id: string) => (id === 'm1' ? { id, title: 'M1' } : undefined),
    requestSync: () => job,
    settleRequest: async () => {},
  } as unknown as Reconciler;
  const deps: DownloadDeps = {
    store: { get: () => undefined, open: async () => undefined } as unknown as PackageStore,
    sync,
    stats: new ServeStats(),
    logger: memoryLogger(),
    serving: () => true,
    settings: () => ({ waitForSyncMs: 30_000, idleTimeoutMs: 30_000, retryAfterSeconds: 7 }),
    tailing: limit,
  };
  const server = http.createServer((req, res) => {
    void handleDownload(deps, 'm1', req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    job,
    limit,
    tempPath,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await removeDir(dir);
    },
  };
}

/** Starts the job's first attempt, writing h.tempPath, as sync-jobs does. */
async function startAttempt(h: Harness): Promise<void> {
  h.job.beginAttempt();
  h.job.running(h.tempPath, Date.now());
  await writeFile(h.tempPath, '');
}

async function write(h: Harness, bytes: Buffer, total: number): Promise<void> {
  await appendFile(h.tempPath, bytes);
  h.job.wrote(total, [bytes], Date.now());
}

test('past the cap of tailing tablets: 503 with Retry-After; the others end cleanly only once the download succeeded', async (t) => {
  const h = await routeHarness(2);
  t.after(() => h.close());
  const content = randomBytes(300_000);
  await startAttempt(h);
  await write(h, content.subarray(0, 100_000), 100_000);

  const first = fetchRaw(`${packageUrl(h.url, 'm1')}`);
  const second = fetchRaw(`${packageUrl(h.url, 'm1')}`);
  await waitFor('two tablets tailing', () => h.limit.active === 2);
  const third = await fetchRaw(packageUrl(h.url, 'm1'));
  assert.equal(third.status, 503);
  assert.equal(third.headers['retry-after'], '7');

  await write(h, content.subarray(100_000, 200_000), 200_000);
  await write(h, content.subarray(200_000), content.length);
  // All bytes are there, but the download has not succeeded: nobody may see a complete response yet.
  const pkg = { size: content.length, sha256: sha256Hex(content) } as StoredPackage;
  h.job.settle({ pkg, replaced: true });
  for (const res of await Promise.all([first, second])) {
    assert.equal(res.status, 200);
    assert.equal(res.complete, true);
    assert.ok(res.body.equals(content));
  }
  await waitFor('the places released', () => h.limit.active === 0);
});

test('a tablet tailing an attempt that a retry replaces is cut off, never ended', async (t) => {
  const h = await routeHarness(10);
  t.after(() => h.close());
  await startAttempt(h);
  await write(h, randomBytes(50_000), 50_000);
  const tailing = fetchRaw(packageUrl(h.url, 'm1'));
  await waitFor('the tablet tailing', () => h.limit.active === 1);

  // What sync-jobs does when an attempt fails and another starts: a new attempt, a new temp file.
  h.job.endAttempt();
  h.job.beginAttempt();
  h.job.queued();
  h.job.running(`${h.tempPath}-2`, Date.now());
  const res = await tailing;
  assert.equal(res.status, 200);
  assert.equal(res.complete, false);
  assert.equal(res.body.length <= 50_000, true);
});
