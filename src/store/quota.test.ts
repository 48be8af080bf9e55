import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { byLeastRecentlyServed, defaultFreeFloor, planEviction, type QuotaPackage, type QuotaPolicy } from './quota.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function pkg(meetingId: string, sizeMiB: number, lastServedAt: number | null, extra: Partial<QuotaPackage> = {}): QuotaPackage {
  return { meetingId, size: sizeMiB * MiB, lastServedAt, fetchedAt: 0, pinned: false, ...extra };
}

const policy = (overrides: Partial<QuotaPolicy> = {}): QuotaPolicy => ({
  maxSize: 100 * MiB,
  cleanupThreshold: 0.9,
  autoCleanup: true,
  freeFloorBytes: 0,
  ...overrides,
});

describe('planEviction', () => {
  test('within the threshold evicts nothing', () => {
    const plan = planEviction({ packages: [pkg('a', 40, 1), pkg('b', 50, 2)], policy: policy(), disk: null });
    assert.equal(plan.trigger, null);
    assert.deepEqual(plan.evict, []);
    assert.equal(plan.fits, true);
  });

  test('over the threshold evicts the least recently served first, down to the mark', () => {
    const packages = [pkg('recent', 30, 3_000), pkg('oldest', 30, 1_000), pkg('middle', 35, 2_000)];
    const plan = planEviction({ packages, policy: policy(), disk: null });
    assert.equal(plan.trigger, 'quota');
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['oldest'],
    );
    assert.equal(plan.usedAfter, 65 * MiB);
  });

  test('preheated packages go only after every other evictable one, however recent the others', () => {
    const packages = [
      pkg('preheat-old', 30, null, { preheated: true, fetchedAt: 1 }),
      pkg('ended-recent', 30, 9_000),
      pkg('preheat-new', 30, null, { preheated: true, fetchedAt: 2 }),
      pkg('ended-old', 5, 5_000),
    ];
    // 95 MiB held, mark 63: both ended ones go, though the preheats were fetched earlier than either was served.
    const plan = planEviction({ packages, policy: policy({ maxSize: 70 * MiB }), disk: null });
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['ended-old', 'ended-recent'],
    );
    // Under more pressure the preheats go too, the oldest first.
    const tight = planEviction({ packages, policy: policy({ maxSize: 40 * MiB }), disk: null });
    assert.deepEqual(
      tight.evict.map((p) => p.meetingId),
      ['ended-old', 'ended-recent', 'preheat-old'],
    );
  });

  test('a package never served counts from when it was fetched', () => {
    const packages = [pkg('served-long-ago', 50, 1_000), pkg('fetched-recently-never-served', 50, null, { fetchedAt: 5_000 })];
    const plan = planEviction({ packages, policy: policy(), disk: null });
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['served-long-ago'],
    );
  });

  test('packages of active meetings are pinned even when they are the least recently served', () => {
    const packages = [pkg('active', 60, 1, { pinned: true }), pkg('ended', 35, 9_999)];
    const plan = planEviction({ packages, policy: policy(), disk: null });
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['ended'],
    );
  });

  test('autoCleanup off evicts nothing', () => {
    const plan = planEviction({ packages: [pkg('a', 95, 1)], policy: policy({ autoCleanup: false }), disk: null });
    assert.equal(plan.trigger, 'quota');
    assert.deepEqual(plan.evict, []);
  });

  test('maxSize 0 means no quota', () => {
    const plan = planEviction({ packages: [pkg('a', 10_000, 1)], policy: policy({ maxSize: 0 }), disk: null, reserveBytes: GiB });
    assert.equal(plan.trigger, null);
    assert.equal(plan.fits, true);
  });

  test('a download that cannot fit under maxSize after evicting everything evictable is refused', () => {
    const packages = [pkg('active-1', 50, 1, { pinned: true }), pkg('active-2', 30, 1, { pinned: true }), pkg('ended', 10, 1)];
    const plan = planEviction({ packages, policy: policy(), disk: null, reserveBytes: 25 * MiB });
    assert.equal(plan.fits, false);
    assert.equal(plan.blockedBy, 'quota');
    assert.equal(plan.shortfall, 5 * MiB);
    // It still evicts what it can: the space is needed either way.
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['ended'],
    );
  });

  test('a reserve that fits only after eviction fits', () => {
    const packages = [pkg('active', 50, 1, { pinned: true }), pkg('ended', 40, 1)];
    const plan = planEviction({ packages, policy: policy(), disk: null, reserveBytes: 30 * MiB });
    assert.equal(plan.fits, true);
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['ended'],
    );
  });

  test('temp files in flight count against the quota', () => {
    const plan = planEviction({ packages: [pkg('ended', 50, 1)], policy: policy(), disk: null, inFlightBytes: 45 * MiB });
    assert.equal(plan.trigger, 'quota');
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['ended'],
    );
  });

  test('free disk under the floor evicts until the floor is met, even with no quota', () => {
    const packages = [pkg('a', 10, 1), pkg('b', 10, 2), pkg('c', 10, 3)];
    const plan = planEviction({
      packages,
      policy: policy({ maxSize: 0, freeFloorBytes: 100 * MiB }),
      disk: { available: 85 * MiB, total: GiB },
    });
    assert.equal(plan.trigger, 'disk');
    assert.deepEqual(
      plan.evict.map((p) => p.meetingId),
      ['a', 'b'],
    );
    assert.equal(plan.availableAfter, 105 * MiB);
    assert.equal(plan.fits, true);
  });

  test('a download that would take the disk under the floor is refused as DISK', () => {
    const plan = planEviction({
      packages: [pkg('active', 10, 1, { pinned: true })],
      policy: policy({ maxSize: 0, freeFloorBytes: 100 * MiB }),
      disk: { available: 120 * MiB, total: GiB },
      reserveBytes: 30 * MiB,
    });
    assert.equal(plan.fits, false);
    assert.equal(plan.blockedBy, 'disk');
    assert.equal(plan.shortfall, 10 * MiB);
  });

  test('unknown disk figures enforce the quota only', () => {
    const plan = planEviction({ packages: [], policy: policy({ freeFloorBytes: 100 * GiB }), disk: null, reserveBytes: MiB });
    assert.equal(plan.fits, true);
  });

  test('properties: pinned never evicted, order is least recently served, evicts only when a limit is crossed', () => {
    const packageArb = fc.record({
      meetingId: fc.uuid(),
      size: fc.integer({ min: 0, max: 50 * MiB }),
      lastServedAt: fc.option(fc.integer({ min: 0, max: 1e6 }), { nil: null }),
      fetchedAt: fc.integer({ min: 0, max: 1e6 }),
      pinned: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(packageArb, { selector: (p) => p.meetingId, maxLength: 12 }),
        fc.integer({ min: 0, max: 400 * MiB }),
        fc.double({ min: 0.1, max: 1, noNaN: true }),
        fc.option(fc.integer({ min: 0, max: 400 * MiB }), { nil: null }),
        fc.integer({ min: 0, max: 100 * MiB }),
        fc.integer({ min: 0, max: 50 * MiB }),
        (packages, maxSize, cleanupThreshold, available, floor, reserve) => {
          const p = policy({ maxSize, cleanupThreshold, freeFloorBytes: floor });
          const disk = available === null ? null : { available, total: 1024 * MiB };
          const plan = planEviction({ packages, policy: p, disk, reserveBytes: reserve });
          for (const evicted of plan.evict) assert.equal(evicted.pinned, false);
          const sorted = [...plan.evict].sort(byLeastRecentlyServed);
          assert.deepEqual(plan.evict, sorted);
          if (plan.trigger === null) assert.equal(plan.evict.length, 0);
          // Evicting one package fewer would have left a limit crossed: no over-eviction.
          if (plan.evict.length > 0) {
            const last = plan.evict[plan.evict.length - 1]!;
            const usedWithout = plan.usedAfter + last.size;
            const availableWithout = plan.availableAfter === null ? null : plan.availableAfter - last.size;
            const overMark = maxSize > 0 && usedWithout + reserve > cleanupThreshold * maxSize;
            const underFloor = availableWithout !== null && availableWithout - reserve < floor;
            assert.ok(overMark || underFloor, 'the last eviction was needed');
          }
          // Every evictable package older than an evicted one was evicted before it.
          if (plan.evict.length > 0) {
            const evictedIds = new Set(plan.evict.map((e) => e.meetingId));
            const newestEvicted = plan.evict[plan.evict.length - 1]!;
            for (const candidate of packages) {
              if (candidate.pinned || evictedIds.has(candidate.meetingId)) continue;
              assert.ok(byLeastRecentlyServed(candidate, newestEvicted) > 0, 'an older unpinned package was skipped');
            }
          }
          if (plan.fits && maxSize > 0) assert.ok(plan.usedAfter + reserve <= maxSize);
        },
      ),
      { numRuns: 2_000 },
    );
  });
});

describe('defaultFreeFloor', () => {
  test('is 5 % of a small volume and at most 512 MiB', () => {
    assert.equal(defaultFreeFloor(GiB), Math.floor(GiB * 0.05));
    assert.equal(defaultFreeFloor(1024 * GiB), 512 * MiB);
  });
});
