import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { pickSeed, rendezvousOrder } from './rendezvous.ts';

const members = fc.uniqueArray(fc.stringMatching(/^127\.0\.0\.1:[1-9][0-9]{3}$/), { minLength: 1, maxLength: 12 });
const meetingId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/);

describe('rendezvous seed choice', () => {
  test('every node computes the same seed for the same membership, in whatever order it lists it', () => {
    fc.assert(
      fc.property(meetingId, members, fc.integer(), (id, list, seed) => {
        const shuffled = [...list].sort(() => (seed & 1 ? 1 : -1));
        const reversed = [...list].reverse();
        const expected = pickSeed(id, list);
        assert.equal(pickSeed(id, shuffled), expected);
        assert.equal(pickSeed(id, reversed), expected);
        assert.ok(expected && list.includes(expected));
      }),
    );
  });

  test('stable when an unrelated node joins: the seed changes only to the newcomer', () => {
    fc.assert(
      fc.property(meetingId, members, fc.stringMatching(/^127\.0\.0\.2:[1-9][0-9]{3}$/), (id, list, newcomer) => {
        const before = pickSeed(id, list);
        const after = pickSeed(id, [...list, newcomer]);
        assert.ok(after === before || after === newcomer);
      }),
    );
  });

  test('when the seed leaves, the next in order takes over and the rest keep their order', () => {
    fc.assert(
      fc.property(meetingId, members.filter((l) => l.length >= 2), (id, list) => {
        const order = rendezvousOrder(id, list);
        const without = rendezvousOrder(id, list.filter((m) => m !== order[0]));
        assert.deepEqual(without, order.slice(1));
      }),
    );
  });

  test('spreads meetings over the members', () => {
    const nodes = ['127.0.0.1:8001', '127.0.0.1:8002', '127.0.0.1:8003', '127.0.0.1:8004'];
    const counts = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      const seed = pickSeed(`meeting-${i}`, nodes)!;
      counts.set(seed, (counts.get(seed) ?? 0) + 1);
    }
    for (const node of nodes) assert.ok((counts.get(node) ?? 0) > 800, `${node}: ${counts.get(node)}`);
  });

  test('no members: no seed', () => {
    assert.equal(pickSeed('m1', []), null);
  });
});
