import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { initialMemory, reconcile, type ReconcileInput, type ReconcileMemory, type SyncAction } from './reconcile.ts';

const policy = { evictEnded: true, cleanOnStartup: true };

function input(overrides: Partial<ReconcileInput> & { active?: string[]; token?: string | null }): ReconcileInput {
  const active = overrides.active ?? [];
  return {
    now: overrides.now ?? 1_000_000,
    poll: overrides.poll ?? { token: overrides.token === undefined ? 'T0' : overrides.token, meetings: active.map((id) => ({ id, title: `title ${id}` })) },
    held: overrides.held ?? [],
    inFlight: overrides.inFlight ?? new Set(),
    probing: overrides.probing ?? new Set(),
    retryAt: overrides.retryAt ?? new Map(),
    memory: overrides.memory ?? initialMemory,
    policy: overrides.policy ?? policy,
  };
}

function byType(actions: SyncAction[], type: SyncAction['type']): string[] {
  return actions.filter((a) => a.type === type).map((a) => a.meetingId).sort();
}

/** Runs a sequence of polls, carrying memory, returning each step's actions. */
function run(steps: Array<Omit<Partial<ReconcileInput>, 'memory'> & { active: string[]; token: string | null }>): { actions: SyncAction[][]; memory: ReconcileMemory } {
  let memory: ReconcileMemory = initialMemory;
  const actions: SyncAction[][] = [];
  for (const step of steps) {
    const result = reconcile(input({ ...step, memory }));
    actions.push(result.actions);
    memory = result.memory;
  }
  return { actions, memory };
}

describe('reconcile', () => {
  test('fetches every active meeting not held', () => {
    const { actions } = reconcile(input({ active: ['a', 'b'] }));
    assert.deepEqual(byType(actions, 'fetch'), ['a', 'b']);
    const fetchA = actions.find((a) => a.meetingId === 'a');
    assert.deepEqual(fetchA, { type: 'fetch', meetingId: 'a', title: 'title a', reason: 'new' });
  });

  test('does not fetch what is held under the current token or already in flight', () => {
    const { actions } = reconcile(input({ active: ['a', 'b'], held: [{ meetingId: 'a', token: 'T0' }], inFlight: new Set(['b']) }));
    assert.deepEqual(actions, []);
  });

  test('evicts held packages of meetings no longer active, and cancels their jobs', () => {
    const { actions } = run([
      { active: ['a', 'b'], token: 'T0', held: [{ meetingId: 'a', token: 'T0' }] , inFlight: new Set(['b'])},
      { active: [], token: 'T0', held: [{ meetingId: 'a', token: 'T0' }], inFlight: new Set(['b']) },
    ]);
    assert.deepEqual(actions[1], [
      { type: 'cancel', meetingId: 'b' },
      { type: 'evict', meetingId: 'a', reason: 'ended' },
    ]);
  });

  test('first poll: non-active packages are start-up cleanup, only if cleanOnStartup', () => {
    const held = [{ meetingId: 'old', token: 'T0' }];
    assert.deepEqual(reconcile(input({ active: [], held })).actions, [{ type: 'evict', meetingId: 'old', reason: 'startup-cleanup' }]);
    assert.deepEqual(reconcile(input({ active: [], held, policy: { evictEnded: true, cleanOnStartup: false } })).actions, []);
  });

  test('with cleanOnStartup off, a package not active at start is not evicted later as "ended"', () => {
    const held = [{ meetingId: 'old', token: 'T0' }];
    const keepAtStart = { evictEnded: true, cleanOnStartup: false };
    const { actions } = run([
      { active: ['a'], token: 'T0', held, policy: keepAtStart },
      { active: ['a'], token: 'T0', held, policy: keepAtStart },
    ]);
    assert.deepEqual(byType(actions[0]!, 'evict'), []);
    assert.deepEqual(byType(actions[1]!, 'evict'), []);
  });

  test('a package kept at start-up while its meeting was not active is stale (refetched, not served) when the meeting starts, even under the same token', () => {
    const keepAtStart = { evictEnded: true, cleanOnStartup: false };
    const held = [{ meetingId: 'a', token: 'T0' }];
    const { actions, memory } = run([
      { active: [], token: 'T0', held, policy: keepAtStart },
      { active: ['a'], token: 'T0', held, policy: keepAtStart },
    ]);
    assert.deepEqual(actions[0], []);
    assert.deepEqual(actions[1], [{ type: 'fetch', meetingId: 'a', title: 'title a', reason: 'restarted' }]);
    assert.ok(memory.endedHeld.has('a'), 'not servable until the new package lands');
  });

  test('ended meetings are kept when eviction is off, and refetched (stale) if they restart', () => {
    const noEvict = { evictEnded: false, cleanOnStartup: false };
    const held = [{ meetingId: 'a', token: 'T0' }];
    const { actions, memory } = run([
      { active: ['a'], token: 'T0', held, policy: noEvict },
      { active: [], token: 'T0', held, policy: noEvict },
      { active: ['a'], token: 'T0', held, policy: noEvict },
    ]);
    assert.deepEqual(actions[1], []);
    assert.deepEqual(actions[2], [{ type: 'fetch', meetingId: 'a', title: 'title a', reason: 'restarted' }]);
    assert.ok(memory.endedHeld.has('a'), 'stays stale until the new package lands');
  });

  test('first poll: a held package from another token is probed (its build compared, not fetched)', () => {
    const { actions } = reconcile(input({ active: ['a'], token: 'T1', held: [{ meetingId: 'a', token: 'T0' }] }));
    assert.deepEqual(actions, [{ type: 'probe', meetingId: 'a', title: 'title a' }]);
  });

  test('adopted packages (token null) are probed on the first poll', () => {
    const { actions } = reconcile(input({ active: ['a'], token: 'T0', held: [{ meetingId: 'a', token: null }] }));
    assert.equal(actions[0]?.type, 'probe');
  });

  test('a probe already running or queued is not asked for again; a failed one waits for its retry time', () => {
    const held = [{ meetingId: 'a', token: 'T0' }];
    assert.deepEqual(reconcile(input({ active: ['a'], token: 'T1', held, probing: new Set(['a']) })).actions, []);
    assert.deepEqual(reconcile(input({ active: ['a'], token: 'T1', held, retryAt: new Map([['a', 2_000_000]]) })).actions, []);
    assert.equal(reconcile(input({ active: ['a'], token: 'T1', held, retryAt: new Map([['a', 2_000_000]]), now: 2_000_001 })).actions[0]?.type, 'probe');
  });

  test('any token change probes every held active package (a restart may hide behind it)', () => {
    const { actions } = run([
      { active: ['a'], token: 'T0', held: [{ meetingId: 'a', token: 'T0' }] },
      // b starts; the token has not changed yet (the master waits for nodes to sync it)
      { active: ['a', 'b'], token: 'T0', held: [{ meetingId: 'a', token: 'T0' }] },
      { active: ['a', 'b'], token: 'T1', held: [{ meetingId: 'a', token: 'T0' }, { meetingId: 'b', token: 'T0' }] },
    ]);
    assert.deepEqual(byType(actions[1]!, 'fetch'), ['b']);
    assert.deepEqual(byType(actions[2]!, 'probe'), ['a', 'b']);
    assert.deepEqual(byType(actions[2]!, 'fetch'), []);
  });

  test('a meeting restarted before its first token change is probed when the token moves', () => {
    // b appears, is fetched, restarts between two polls (never seen absent), then the token moves.
    const { actions } = run([
      { active: ['b'], token: 'T0' },
      { active: ['b'], token: 'T0', held: [{ meetingId: 'b', token: 'T0' }] },
      { active: ['b'], token: 'T1', held: [{ meetingId: 'b', token: 'T0' }] },
    ]);
    assert.deepEqual(actions[2], [{ type: 'probe', meetingId: 'b', title: 'title b' }]);
  });

  test('a package whose download overlapped a token change is checked once more', () => {
    const { actions } = run([
      { active: ['a'], token: 'T0', inFlight: new Set(['a']) },
      { active: ['a'], token: 'T1', held: [{ meetingId: 'a', token: 'T0' }] },
      { active: ['a'], token: 'T1', held: [{ meetingId: 'a', token: 'T1' }] },
    ]);
    assert.deepEqual(byType(actions[1]!, 'probe'), ['a']);
    assert.deepEqual(actions[2], [], 'stable once the package carries the current token');
  });

  test('a held package under the current token is left alone across polls', () => {
    const held = [{ meetingId: 'a', token: 'T1' }];
    const { actions } = run([
      { active: ['a'], token: 'T1', held },
      { active: ['a'], token: 'T1', held },
    ]);
    assert.deepEqual(actions, [[], []]);
  });

  test('failed meetings wait for their retry time, then fetch with reason retry', () => {
    const retryAt = new Map([['a', 2_000_000]]);
    assert.deepEqual(reconcile(input({ active: ['a'], retryAt })).actions, []);
    const later = reconcile(input({ active: ['a'], retryAt, now: 2_000_001 }));
    assert.deepEqual(later.actions, [{ type: 'fetch', meetingId: 'a', title: 'title a', reason: 'retry' }]);
  });

  test('memory records the active set', () => {
    const { memory } = reconcile(input({ active: ['a', 'b'], token: 'T9' }));
    assert.deepEqual([...(memory.previousActive ?? [])].sort(), ['a', 'b']);
  });

  test('is pure: the input memory is not mutated', () => {
    const memory: ReconcileMemory = { previousActive: new Set(['a']), endedHeld: new Set() };
    const snapshot = JSON.stringify({ ...memory, previousActive: [...memory.previousActive!] });
    reconcile(input({ active: [], token: 'T0', held: [{ meetingId: 'a', token: 'T0' }], memory, policy: { evictEnded: false, cleanOnStartup: false } }));
    assert.equal(JSON.stringify({ ...memory, previousActive: [...memory.previousActive!] }), snapshot);
    assert.equal(memory.endedHeld.size, 0);
  });
});
