import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ScheduledMeeting } from '../master/master-client.ts';
import { parseMasterTime, planPreheat, preheatCandidates, type PreheatCandidate, type PreheatState } from './preheat-plan.ts';

const HOUR = 3_600_000;
/** 2026-03-10 12:00 local time: the master's times are local, so the tests are too. */
const NOW = new Date(2026, 2, 10, 12, 0, 0).getTime();

function local(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
}

function meeting(id: string, time: string | null, status: ScheduledMeeting['status'] = 'not-started'): ScheduledMeeting {
  return { id, title: `T ${id}`, time, status };
}

describe('parseMasterTime', () => {
  test('reads the master\'s zone-less time in the local time zone', () => {
    assert.equal(parseMasterTime('2026-03-10T12:00'), NOW);
    assert.equal(parseMasterTime('2026-03-10 12:00'), NOW);
    assert.equal(parseMasterTime('2026-03-10T12:00:30'), NOW + 30_000);
  });
  test('refuses what is not such a time', () => {
    for (const bad of ['', '2026-03-10', '2026-02-31T10:00', '2026-03-10T25:00', '2026-03-10T12:00Z', '12:00', 'soon']) {
      assert.equal(parseMasterTime(bad), null, bad);
    }
  });
});

describe('preheatCandidates', () => {
  const window = { hoursAhead: 24, hoursBehind: 12 };

  test('both window edges are in, a minute past either is out', () => {
    const list = [
      meeting('ahead-edge', local(NOW + 24 * HOUR)),
      meeting('ahead-out', local(NOW + 24 * HOUR + 60_000)),
      meeting('behind-edge', local(NOW - 12 * HOUR)),
      meeting('behind-out', local(NOW - 12 * HOUR - 60_000)),
      meeting('now', local(NOW)),
    ];
    assert.deepEqual(
      preheatCandidates(list, NOW, window).map((c) => c.id),
      ['behind-edge', 'now', 'ahead-edge'],
    );
  });

  test('only meetings not started, with a readable time; soonest first, ties by id', () => {
    const list = [
      meeting('b', local(NOW + HOUR)),
      meeting('a', local(NOW + HOUR)),
      meeting('first', local(NOW + 60_000)),
      meeting('active', local(NOW), 'active'),
      meeting('ended', local(NOW), 'ended'),
      meeting('unknown', local(NOW), 'unknown'),
      meeting('no-time', null),
      meeting('bad-time', 'tomorrow'),
    ];
    const candidates = preheatCandidates(list, NOW, window);
    assert.deepEqual(candidates.map((c) => c.id), ['first', 'a', 'b']);
    assert.equal(candidates[0]!.timeMs, NOW + 60_000);
    assert.equal(candidates[0]!.time, local(NOW + 60_000));
  });

  test('a zero window keeps only meetings scheduled this very minute', () => {
    const list = [meeting('now', local(NOW)), meeting('later', local(NOW + 60_000))];
    assert.deepEqual(preheatCandidates(list, NOW, { hoursAhead: 0, hoursBehind: 0 }).map((c) => c.id), ['now']);
  });
});

describe('planPreheat', () => {
  const candidate = (id: string, offsetH: number): PreheatCandidate => ({ id, title: id, time: local(NOW + offsetH * HOUR), timeMs: NOW + offsetH * HOUR });
  const base = (over: Partial<PreheatState>): PreheatState => ({
    candidates: [],
    active: new Set(),
    preheated: new Set(),
    held: new Set(),
    preheating: new Set(),
    inFlight: new Set(),
    retryAt: new Map(),
    now: NOW,
    ...over,
  });

  test('the soonest meeting not held is next, only while nothing downloads', () => {
    const candidates = [candidate('m1', 1), candidate('m2', 2)];
    assert.equal(planPreheat(base({ candidates })).next?.id, 'm1');
    assert.equal(planPreheat(base({ candidates, held: new Set(['m1']), preheated: new Set(['m1']) })).next?.id, 'm2');
    // A sync (or another preheat) in flight: nothing starts.
    assert.equal(planPreheat(base({ candidates, inFlight: new Set(['other']) })).next, null);
    assert.equal(planPreheat(base({ candidates, inFlight: new Set(['m1']), preheating: new Set(['m1']) })).next, null);
  });

  test('a failed preheat waits for its retry time; the next meeting goes meanwhile', () => {
    const candidates = [candidate('m1', 1), candidate('m2', 2)];
    assert.equal(planPreheat(base({ candidates, retryAt: new Map([['m1', NOW + 1]]) })).next?.id, 'm2');
    assert.equal(planPreheat(base({ candidates, retryAt: new Map([['m1', NOW]]) })).next?.id, 'm1');
  });

  test('preheats of meetings deleted, ended or moved out of the window are removed or cancelled; active ones are the sync\'s', () => {
    const plan = planPreheat(
      base({
        candidates: [candidate('kept', 1)],
        preheated: new Set(['kept', 'gone', 'started']),
        held: new Set(['kept', 'gone', 'started']),
        preheating: new Set(['moved', 'started-too']),
        inFlight: new Set(['moved', 'started-too']),
        active: new Set(['started', 'started-too']),
      }),
    );
    assert.deepEqual(plan.remove, ['gone']);
    assert.deepEqual(plan.cancel, ['moved']);
    assert.equal(plan.next, null);
  });
});
