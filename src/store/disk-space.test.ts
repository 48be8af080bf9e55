import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { DiskSpaceProbe, readDiskSpace, type DiskReader, type DiskSpace } from './disk-space.ts';

test('the volume is measured through check-disk-space: real figures of the temp folder', async () => {
  const disk = await readDiskSpace(os.tmpdir());
  assert.ok(disk.total > 0, 'a size');
  assert.ok(disk.available > 0 && disk.available <= disk.total, 'free space within the size');
  assert.equal(disk.free, disk.available);
});

test('disk figures are answered from the cache; stale ones refresh in the background, once for all callers', async () => {
  let now = 1_000;
  let calls = 0;
  let release: (() => void) | null = null;
  let free = 500;
  const reader: DiskReader = async () => {
    calls++;
    if (calls > 1) await new Promise<void>((resolve) => (release = resolve));
    return { size: 1000, free };
  };
  const probe = new DiskSpaceProbe('/storage', { ttlMs: 100, reader, now: () => now });
  const cached = (): DiskSpace | null => probe.cached;
  assert.equal(cached(), null);
  assert.deepEqual(await probe.read(), { total: 1000, free: 500, available: 500 }, 'the first read waits for an answer');
  assert.equal(calls, 1);
  now += 50;
  await probe.read();
  assert.equal(calls, 1, 'fresh: no new reading');

  now += 100;
  free = 400;
  // Stale: the old figures at once (a status request never waits for df), one refresh started.
  assert.equal((await probe.read())?.available, 500);
  assert.equal((await probe.read())?.available, 500);
  assert.equal(calls, 2, 'concurrent readers share one refresh');
  (release as unknown as () => void)();
  await probe.refresh();
  assert.equal(cached()?.available, 400, 'the refreshed figures are cached');
});

test('a volume that cannot be read is null, not a crash', async () => {
  const probe = new DiskSpaceProbe('/nowhere', { reader: async () => { throw new Error('df failed'); } });
  assert.equal(await probe.read(), null);
});
