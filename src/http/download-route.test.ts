import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import { DEFAULT_POLICY } from '../policy.ts';
import type { PackageStore } from '../store/package-store.ts';
import { ServeStats } from './serve-stats.ts';
import { createDownloadListener, downloadSettings, type DownloadDeps } from './download-route.ts';

test('a tablet\'s idle timeout is the configured one, never under the policy\'s floor', () => {
  const config = (downloadTimeout: number) => ({ network: { downloadTimeout } }) as Parameters<typeof downloadSettings>[0];
  assert.equal(downloadSettings(config(120), DEFAULT_POLICY).idleTimeoutMs, 120_000);
  assert.equal(downloadSettings(config(5), DEFAULT_POLICY).idleTimeoutMs, DEFAULT_POLICY.minDownloadIdleTimeoutMs);
  assert.equal(downloadSettings(config(5), DEFAULT_POLICY).settleWaitMs, DEFAULT_POLICY.settleWaitMs);
});

/** The download listener on loopback, with a sync that knows `active` meetings and holds nothing. */
async function serve(t: { after: (fn: () => unknown) => void }, options: { serving: boolean; active: string[] }) {
  const settled: Array<{ id: string; waitMs: number }> = [];
  const deps: DownloadDeps = {
    store: { get: () => undefined } as unknown as PackageStore,
    sync: {
      isServable: () => false,
      settleRequest: async (id: string, waitMs: number) => void settled.push({ id, waitMs }),
      activeMeeting: (id: string) => (options.active.includes(id) ? { id, title: id } : undefined),
      requestSync: () => undefined,
    } as unknown as DownloadDeps['sync'],
    stats: new ServeStats(),
    logger: new MemoryLogger(),
    serving: () => options.serving,
    settings: () => ({ waitForSyncMs: 50, idleTimeoutMs: 1_000, retryAfterSeconds: 7, settleWaitMs: 25 }),
  };
  const listener = createDownloadListener(deps);
  const server = http.createServer((req, res) => {
    if (!listener(req, res)) res.writeHead(418).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, settled, stats: deps.stats };
}

test('bad ids get 400 naming the field; a stopped service 503 with Retry-After', async (t) => {
  const stopped = await serve(t, { serving: false, active: [] });
  const bad = await fetch(`${stopped.base}/api/v1/meetings/..%2Fetc/download-package`);
  assert.equal(bad.status, 400);
  assert.deepEqual(await bad.json(), { error: 'invalid meeting id', field: 'id' });
  const off = await fetch(`${stopped.base}/api/v1/meetings/m1/download-package`);
  assert.equal(off.status, 503);
  assert.equal(off.headers.get('retry-after'), '7');
  assert.equal(off.headers.get('cache-control'), 'no-store');
});

test('an id not held waits (bounded) for the shared check, then 404 when not active', async (t) => {
  const node = await serve(t, { serving: true, active: [] });
  const res = await fetch(`${node.base}/api/v1/meetings/m1/download-package`);
  assert.equal(res.status, 404);
  assert.equal(((await res.json()) as { field: string }).field, 'id');
  assert.deepEqual(node.settled, [{ id: 'm1', waitMs: 25 }]);
});

test('an active meeting nothing can be fetched for yet: 503 with Retry-After, not 404', async (t) => {
  const node = await serve(t, { serving: true, active: ['m1'] });
  const res = await fetch(`${node.base}/api/v1/meetings/m1/download-package`);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '7');
});

test('every request for a package is told to ServeStats, HEADs and refusals too; a bad id is not', async (t) => {
  const node = await serve(t, { serving: true, active: [] });
  let requests = 0;
  node.stats.events.on('request', () => requests++);
  await fetch(`${node.base}/api/v1/meetings/..%2Fetc/download-package`);
  assert.equal(requests, 0, 'a bad id is no request for a package');
  await fetch(`${node.base}/api/v1/meetings/m1/download-package`);
  await fetch(`${node.base}/api/v1/meetings/m1/download-package`, { method: 'HEAD' });
  assert.equal(requests, 2);
});
