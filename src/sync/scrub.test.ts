import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import type { StoredPackage } from '../store/package-store.ts';
import { FileReadError, HashThread } from './hash-thread.ts';
import { Scrubber, type ScrubberDeps } from './scrub.ts';

test('the scrub waits between slices while the node is busy, and quarantines only what no longer matches', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'scrub-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const packages = new Map<string, StoredPackage>();
  for (const [id, content, recorded] of [['good', 'intact bytes', 'intact bytes'], ['bad', 'edited bytes', 'original bts']] as const) {
    const file = path.join(dir, `${id}.zip`);
    await writeFile(file, content);
    const sha256 = createHash('sha256').update(recorded).digest('hex');
    packages.set(id, { meetingId: id, path: file, sha256, size: recorded.length, inode: 1 } as StoredPackage);
  }
  const removed: string[] = [];
  const quarantined: string[] = [];
  let busyChecks = 0;
  const scrubber = new Scrubber({
    store: {
      list: () => [...packages.values()],
      get: (id) => packages.get(id),
      remove: async (id) => {
        removed.push(id);
        return packages.delete(id);
      },
    },
    hash: async (file, size, { beforeSlice }) => {
      await beforeSlice();
      const { readFile } = await import('node:fs/promises');
      return createHash('sha256').update((await readFile(file)).subarray(0, size)).digest('hex');
    },
    // Busy for the first three looks, then idle.
    load: () => ({ activeDownloads: ++busyChecks <= 3 ? 1 : 0, syncing: 0 }),
    onQuarantined: (id) => quarantined.push(id),
    logger: new MemoryLogger(),
    busyCheckMs: 5,
  });
  const report = await scrubber.run('manual');
  assert.equal(report.checked, 2);
  assert.ok(report.pausedMs >= 15, `paused while busy (${report.pausedMs} ms)`);
  assert.deepEqual(report.findings.map((f) => f.meetingId), ['bad']);
  assert.deepEqual(removed, ['bad']);
  assert.deepEqual(quarantined, ['bad']);
  assert.equal(scrubber.totals.packagesQuarantined, 1);
  assert.equal(scrubber.last, report);
});

/** One intact package in a temp folder, and a scrubber over it with the given hash function. */
async function oneIntactPackage(t: { after: (fn: () => Promise<void>) => void }, hash: ScrubberDeps['hash']) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'scrub-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'package.zip');
  const content = Buffer.alloc(3 * 1024 * 1024, 7);
  await writeFile(file, content);
  const pkg = { meetingId: 'm1', path: file, sha256: createHash('sha256').update(content).digest('hex'), size: content.length, inode: 1 } as StoredPackage;
  const packages = new Map([[pkg.meetingId, pkg]]);
  const removed: string[] = [];
  const scrubber = new Scrubber({
    store: { list: () => [...packages.values()], get: (id) => packages.get(id), remove: async (id) => (removed.push(id), packages.delete(id)) },
    hash,
    load: () => ({ activeDownloads: 0, syncing: 0 }),
    onQuarantined: () => {},
    logger: new MemoryLogger(),
  });
  return { scrubber, removed };
}

test('a hash thread that dies mid-scrub stops the scrub and removes nothing (it says nothing about the file)', async (t) => {
  const thread = new HashThread({ workerSource: "require('node:worker_threads').parentPort.on('message', () => process.exit(1));" });
  t.after(() => thread.close());
  const { scrubber, removed } = await oneIntactPackage(t, (file, size, options) => thread.hashStored(file, size, options));
  // The worker does not keep the process alive on its own.
  const keepAlive = setInterval(() => {}, 1_000);
  const report = await scrubber.run('manual').finally(() => clearInterval(keepAlive));
  assert.deepEqual(removed, []);
  assert.deepEqual(report.findings, []);
  assert.match(report.error ?? '', /hash thread exited/);
});

test('out of descriptors (or memory) skips the package and keeps it; an I/O error or a short file quarantines it', async (t) => {
  for (const [code, quarantined] of [['EMFILE', false], ['ENFILE', false], ['ENOMEM', false], ['EIO', true], ['SHORT', true]] as const) {
    const { scrubber, removed } = await oneIntactPackage(t, async () => {
      throw new FileReadError(`hashing package.zip: ${code}`, code);
    });
    const report = await scrubber.run('manual');
    assert.deepEqual(removed, quarantined ? ['m1'] : [], code);
    assert.equal(report.skipped, quarantined ? 0 : 1, code);
    assert.equal(report.error, null, code);
  }
});
