import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import type { DiskSpace } from '../store/disk-space.ts';
import { PackageStore } from '../store/package-store.ts';
import { FetchError } from './fetch-package.ts';
import { QuotaGuard, type QuotaSettings } from './quota-guard.ts';

const KiB = 1024;

function silentLogger(): MemoryLogger {
  return new MemoryLogger();
}

interface Fixture {
  store: PackageStore;
  guard: QuotaGuard;
  logger: MemoryLogger;
  active: Set<string>;
  inFlight: Set<string>;
  served: Map<string, number>;
  settings: QuotaSettings;
  disk: { value: DiskSpace | null };
  /** Adds a complete package of `bytes` random bytes; returns its content. */
  add(meetingId: string, bytes: number): Promise<Buffer>;
  cleanup(): Promise<void>;
}

async function fixture(settings: Partial<QuotaSettings> = {}, options: { polled?: boolean } = {}): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'quota-guard-'));
  const logger = silentLogger();
  const store = await PackageStore.open(dir, logger);
  const active = new Set<string>();
  const inFlight = new Set<string>();
  const served = new Map<string, number>();
  const disk: { value: DiskSpace | null } = { value: null };
  const fullSettings: QuotaSettings = { maxSize: 100 * KiB, cleanupThreshold: 0.9, autoCleanup: true, freeFloorBytes: null, ...settings };
  const guard = new QuotaGuard({
    store,
    settings: () => fullSettings,
    disk: async () => disk.value,
    activeIds: () => (options.polled === false ? null : active),
    inFlightIds: () => inFlight,
    lastServedAt: (id) => served.get(id) ?? null,
    logger,
    // Only the probe of beforeAttempt/enforce: the fake statfs does not see writes, the estimate must.
    diskProbeIntervalMs: 60_000,
  });
  return {
    store,
    guard,
    logger,
    active,
    inFlight,
    served,
    settings: fullSettings,
    disk,
    async add(meetingId, bytes) {
      const data = randomBytes(bytes);
      const temp = await store.createTempPath(meetingId);
      await writeFile(temp, data);
      await store.promote(meetingId, temp, { sha256: createHash('sha256').update(data).digest('hex'), size: bytes, token: 't', title: meetingId });
      return data;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

describe('QuotaGuard', () => {
  test('enforce evicts ended meetings least recently served first and keeps active ones', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('active', 40 * KiB);
    await f.add('ended-old', 30 * KiB);
    await f.add('ended-new', 25 * KiB);
    f.active.add('active');
    f.served.set('active', 1);
    f.served.set('ended-old', 10);
    f.served.set('ended-new', 20);
    await f.guard.enforce();
    assert.deepEqual(
      f.store
        .list()
        .map((p) => p.meetingId)
        .sort(),
      ['active', 'ended-new'],
    );
    assert.deepEqual(f.guard.state.lastEviction?.meetingIds, ['ended-old']);
    assert.ok(f.logger.lines.some((line) => line.includes('quota: evicted meeting ended-old')));
  });

  test('evicts nothing before the first successful poll', async (t) => {
    const f = await fixture({}, { polled: false });
    t.after(() => f.cleanup());
    await f.add('a', 60 * KiB);
    await f.add('b', 60 * KiB);
    await f.guard.enforce();
    assert.equal(f.store.list().length, 2);
  });

  test('a meeting with a download in flight is pinned', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('syncing', 95 * KiB);
    f.inFlight.add('syncing');
    await f.guard.enforce();
    assert.equal(f.store.list().length, 1);
  });

  test('autoCleanup off never evicts', async (t) => {
    const f = await fixture({ autoCleanup: false });
    t.after(() => f.cleanup());
    await f.add('ended', 95 * KiB);
    await f.guard.enforce();
    assert.equal(f.store.list().length, 1);
  });

  test('a sync that cannot fit is refused before it starts with QUOTA_EXCEEDED', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('active-1', 60 * KiB);
    await f.add('active-2', 40 * KiB);
    f.active.add('active-1').add('active-2').add('new');
    await assert.rejects(f.guard.beforeAttempt({ meetingId: 'new' }), (error: unknown) => {
      assert.ok(error instanceof FetchError);
      assert.equal(error.code, 'QUOTA_EXCEEDED');
      assert.equal(error.retryable, false);
      assert.match(error.message, /storage quota full/);
      assert.match(error.message, /storage\.maxSize/);
      return true;
    });
    assert.equal(f.guard.state.lastRefusal?.meetingId, 'new');
  });

  test('refreshing a held package needs room for a second copy', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('big', 60 * KiB);
    f.active.add('big');
    await assert.rejects(f.guard.beforeAttempt({ meetingId: 'big' }), { code: 'QUOTA_EXCEEDED' });
    f.settings.maxSize = 130 * KiB;
    await f.guard.beforeAttempt({ meetingId: 'big' });
  });

  test('a sync evicts ended meetings before preheated ones; a preheat evicts nothing and is refused instead', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    const addPreheat = async (meetingId: string, bytes: number) => {
      const data = randomBytes(bytes);
      const temp = await f.store.createTempPath(meetingId);
      await writeFile(temp, data);
      await f.store.promote(meetingId, temp, { sha256: createHash('sha256').update(data).digest('hex'), size: bytes, token: null, title: meetingId, source: 'preheat' });
    };
    await addPreheat('tomorrow', 30 * KiB);
    await f.add('ended', 30 * KiB);
    await addPreheat('tonight', 30 * KiB);
    // Never served: the preheats count from when they arrived, before the ended one did; still it goes first.
    f.active.add('new');
    // A preheat needing room is refused: it takes nobody's place, not even an ended meeting's.
    f.settings.maxSize = 90 * KiB;
    await assert.rejects(f.guard.beforeAttempt({ meetingId: 'next-week', reason: 'preheat' }), { code: 'QUOTA_EXCEEDED' });
    assert.equal(f.store.list().length, 3, 'nothing evicted for a preheat');
    // A sync for an active meeting: the ended package goes first, then the oldest preheat.
    f.settings.maxSize = 100 * KiB;
    await f.guard.beforeAttempt({ meetingId: 'new' });
    assert.equal(f.store.get('ended'), undefined);
    assert.ok(f.store.get('tomorrow') && f.store.get('tonight'), 'preheats kept while an ended package was enough');
  });

  test('a preheat must fit under the cleanup mark: one that would be evicted at the next poll is stopped, and refused again up front after the poll', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('live', 60 * KiB);
    f.active.add('live');
    // 60 + 35 KiB fits the 100 KiB quota but not its 90 KiB cleanup mark: enforce() would evict it.
    const big = { meetingId: 'tomorrow', reason: 'preheat' as const };
    f.inFlight.add('tomorrow');
    await f.guard.beforeAttempt(big);
    assert.equal(f.guard.onProgress(big, 25 * KiB), null);
    const stop = f.guard.onProgress(big, 35 * KiB);
    assert.ok(stop instanceof FetchError, 'stopped above the mark');
    assert.equal(stop.code, 'QUOTA_EXCEEDED');
    f.guard.attemptEnded(big, false);
    f.inFlight.delete('tomorrow');
    await f.guard.enforce();
    await assert.rejects(f.guard.beforeAttempt(big), { code: 'QUOTA_EXCEEDED' }, 'what it proved survives the poll: not fetched again');

    // 60 + 25 KiB stays under the mark: admitted, and kept by the next poll.
    const small = { meetingId: 'tonight', reason: 'preheat' as const };
    await f.guard.beforeAttempt(small);
    assert.equal(f.guard.onProgress(small, 25 * KiB), null);
    f.guard.attemptEnded(small, true);
    const data = randomBytes(25 * KiB);
    const temp = await f.store.createTempPath('tonight');
    await writeFile(temp, data);
    await f.store.promote('tonight', temp, { sha256: createHash('sha256').update(data).digest('hex'), size: data.length, token: null, title: 'tonight', source: 'preheat' });
    const plan = await f.guard.enforce();
    assert.deepEqual(plan.evict, []);
    assert.ok(f.store.get('tonight'));
  });

  test('room is made by evicting ended meetings before a download starts', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('ended', 80 * KiB);
    await f.add('active', 10 * KiB);
    f.active.add('active').add('new');
    await f.guard.beforeAttempt({ meetingId: 'new' });
    assert.equal(f.store.get('ended'), undefined);
    assert.ok(f.store.get('active'));
  });

  test('a download that outgrows the quota is stopped, and its next attempt is refused up front', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('active', 50 * KiB);
    f.active.add('active').add('grows');
    const job = { meetingId: 'grows' };
    await f.guard.beforeAttempt(job);
    assert.equal(f.guard.onProgress(job, 40 * KiB), null);
    const stop = f.guard.onProgress(job, 51 * KiB);
    assert.ok(stop instanceof FetchError);
    assert.equal(stop.code, 'QUOTA_EXCEEDED');
    assert.match(stop.message, /larger than 51\.0 KiB/);
    f.guard.attemptEnded(job, false);
    assert.equal(f.guard.state.inFlightBytes, 0);
    await assert.rejects(f.guard.beforeAttempt(job), { code: 'QUOTA_EXCEEDED' });
  });

  test('a download that outgrows the quota while ended packages can make room goes on and they are evicted', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    await f.add('ended', 50 * KiB);
    f.active.add('grows');
    const job = { meetingId: 'grows' };
    await f.guard.beforeAttempt(job);
    assert.equal(f.guard.onProgress(job, 60 * KiB), null);
    await f.guard.enforce();
    assert.equal(f.store.get('ended'), undefined);
  });

  test('free disk under the floor refuses a download with DISK_FULL, even with no quota', async (t) => {
    const f = await fixture({ maxSize: 0, freeFloorBytes: 100 * KiB });
    t.after(() => f.cleanup());
    f.disk.value = { total: 10_000 * KiB, free: 90 * KiB, available: 90 * KiB };
    f.active.add('new');
    await assert.rejects(f.guard.beforeAttempt({ meetingId: 'new' }), (error: unknown) => {
      assert.ok(error instanceof FetchError);
      assert.equal(error.code, 'DISK_FULL');
      assert.match(error.message, /disk almost full/);
      return true;
    });
  });

  test('a download that eats the disk down to the floor is stopped between statfs probes', async (t) => {
    const f = await fixture({ maxSize: 0, freeFloorBytes: 100 * KiB });
    t.after(() => f.cleanup());
    f.disk.value = { total: 10_000 * KiB, free: 300 * KiB, available: 300 * KiB };
    f.active.add('new');
    const job = { meetingId: 'new' };
    await f.guard.beforeAttempt(job);
    // The fake statfs does not see the writes: the guard's estimate must.
    assert.equal(f.guard.onProgress(job, 150 * KiB), null);
    const stop = f.guard.onProgress(job, 250 * KiB);
    assert.ok(stop instanceof FetchError);
    assert.equal(stop.code, 'DISK_FULL');
  });

  test('eviction never breaks a reader that already opened the package', async (t) => {
    const f = await fixture();
    t.after(() => f.cleanup());
    const bytes = await f.add('ended', 95 * KiB);
    const opened = await f.store.open('ended');
    assert.ok(opened);
    await f.guard.enforce();
    assert.equal(f.store.get('ended'), undefined);
    assert.equal(await f.store.open('ended'), undefined, 'no new reader after eviction');
    const chunks: Buffer[] = [];
    for await (const chunk of createReadStream(null as unknown as string, { fd: opened.fd })) chunks.push(chunk as Buffer);
    assert.ok(Buffer.concat(chunks).equals(bytes), 'the reader got every byte of the evicted package');
  });
});
