import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PerTurn } from './service-routes.ts';

test('PerTurn: callers of one event-loop turn share one build; a later turn builds again', async () => {
  const perTurn = new PerTurn<number>();
  let builds = 0;
  const build = async () => ++builds;
  const sameTurn = await Promise.all([perTurn.get(build), perTurn.get(build), perTurn.get(build)]);
  assert.deepEqual(sameTurn, [1, 1, 1]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await perTurn.get(build), 2, 'a request in a later turn never gets the earlier document');
});

test('PerTurn: a failed build is not kept for later turns', async () => {
  const perTurn = new PerTurn<string>();
  await assert.rejects(perTurn.get(async () => Promise.reject(new Error('boom'))), /boom/);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await perTurn.get(async () => 'ok'), 'ok');
});
