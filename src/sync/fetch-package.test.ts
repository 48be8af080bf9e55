import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { buildMeetingPackage } from '../../reference-master/packages.ts';
import type { MasterClient, PackageResponse } from '../master/master-client.ts';
import { fetchPackage } from './fetch-package.ts';
import type { PackageHash } from './hash-thread.ts';

/** A hash whose digest never comes: a worker stuck in a read. */
function stuckHash(): PackageHash {
  return { kept: () => Promise.resolve(), appended: () => {}, digest: () => new Promise<string>(() => {}), dispose: () => {}, failure: null };
}

test('a hash that never finishes does not hold the download: the idle timeout, or a cancel, ends it', { timeout: 10_000 }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fetch-package-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const zip = await readFile((await buildMeetingPackage({ dir, meetingId: 'm1', title: 'Board' })).path);
  const open = async (): Promise<PackageResponse> => ({ body: Readable.from([zip]) as unknown as PackageResponse['body'], headers: {} });
  const base = { master: {} as MasterClient, open, meetingId: 'm1', headersTimeoutMs: 5_000, hash: stuckHash };

  await assert.rejects(
    fetchPackage({ ...base, tempPath: path.join(dir, 'a.part'), idleTimeoutMs: 300, signal: new AbortController().signal }),
    { code: 'IDLE_TIMEOUT' },
  );
  const controller = new AbortController();
  const cancelled = fetchPackage({ ...base, tempPath: path.join(dir, 'b.part'), idleTimeoutMs: 60_000, signal: controller.signal });
  setTimeout(() => controller.abort(new Error('node stopping')), 200);
  await assert.rejects(cancelled, /node stopping|cancel/);
});
