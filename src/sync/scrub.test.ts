import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import type { StoredPackage } from '../store/package-store.ts';
import { Scrubber } from './scrub.ts';

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
    busy: () => ++busyChecks <= 3,
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
