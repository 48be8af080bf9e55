import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { StoreEvent } from '../../store/package-store.ts';
import { ServeStats, type FinishedServe } from '../serve-stats.ts';
import { PackageHolders } from './package-holders.ts';
import { TrafficHistory, type TrafficTotals } from './traffic-history.ts';

test('rates are the counters\' growth per second between samples; the ring keeps the last N, oldest first', () => {
  let now = 1_000_000;
  const totals: TrafficTotals = { servedTablets: 0, servedPeers: 0, fetchedMaster: 0 };
  const history = new TrafficHistory({ totals: () => ({ ...totals }), holders: () => ({ m1: 2 }), intervalMs: 5_000, samples: 3, now: () => now });
  history.start();
  history.stop();
  const seen: number[] = [];
  history.events.on('sample', (sample) => seen.push(sample.at));
  for (let i = 1; i <= 5; i++) {
    now += 5_000;
    totals.servedTablets += 50_000_000 * i;
    totals.servedPeers += 5_000_000;
    totals.fetchedMaster += 1_000_000;
    history.sample();
  }
  const samples = history.samples();
  assert.equal(samples.length, 3, 'bounded');
  assert.deepEqual(samples.map((s) => s.at), [1_015_000, 1_020_000, 1_025_000]);
  assert.deepEqual(samples.map((s) => s.served_tablets), [30_000_000, 40_000_000, 50_000_000]);
  assert.ok(samples.every((s) => s.served_peers === 1_000_000 && s.fetched_master === 200_000));
  assert.deepEqual(samples[2]?.holders, { m1: 2 });
  assert.equal(seen.length, 5, 'each sample is an event (the panel\'s stream)');
});

function finished(overrides: Partial<FinishedServe>): FinishedServe {
  return { meetingId: 'm1', completed: true, client: '127.0.0.2', status: 200, bytes: 10, durationMs: 1, whileSyncing: false, peer: null, method: 'GET', range: null, userAgent: null, ...overrides };
}

test('holders: distinct tablets that got the package to its last byte; siblings, pieces and cut downloads do not count; a new build starts over', () => {
  const stats = new ServeStats();
  const store = { events: new EventEmitter<{ change: [StoreEvent] }>() };
  const holders = new PackageHolders(stats, store);
  const emit = (d: Partial<FinishedServe>) => stats.events.emit('finished', finished(d));
  emit({ client: '127.0.0.2' });
  emit({ client: '127.0.0.2' });
  emit({ client: '127.0.0.3', status: 206, range: 'bytes=5000-' });
  emit({ client: '127.0.0.4', status: 206, range: 'bytes=0-99' });
  emit({ client: '127.0.0.5', completed: false });
  emit({ client: '127.0.0.6', peer: 'node-b' });
  emit({ client: '127.0.0.7', meetingId: 'm2' });
  assert.deepEqual(holders.counts(), { m1: 2, m2: 1 });
  store.events.emit('change', { type: 'retagged', meetingId: 'm1', token: 't' });
  assert.deepEqual(holders.counts(), { m1: 2, m2: 1 }, 'the same bytes under a new token: still held');
  store.events.emit('change', { type: 'promoted', meetingId: 'm1', pkg: {} as never, replaced: true });
  store.events.emit('change', { type: 'removed', meetingId: 'm2', reason: 'ended' });
  assert.deepEqual(holders.counts(), {});
  holders.close();
  emit({ client: '127.0.0.2' });
  assert.deepEqual(holders.counts(), {}, 'closed: no longer listening');
});
