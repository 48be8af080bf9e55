import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Logger } from '../log/logger.ts';
import { Announcer } from './announcer.ts';
import type { MasterClient } from './master-client.ts';

test('announcer: failed heartbeats keep the last successful one, count the failures and say since when', async () => {
  let now = 1_000;
  let up = true;
  const master = {
    baseUrl: 'http://127.0.0.1:8000',
    register: async () => {},
    unregister: async () => {},
    heartbeat: async () => {
      if (!up) throw new Error('connect ECONNREFUSED 127.0.0.1:8000');
    },
  } as unknown as MasterClient;
  const announcer = new Announcer({
    master: () => master,
    nodeId: () => 'node-test',
    address: () => '127.0.0.1:8001',
    activeMeetings: () => [],
    syncedMeetingIds: () => [],
    logger: { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger,
    now: () => now,
  });
  assert.equal(await announcer.heartbeat(), true);
  assert.equal(announcer.state.lastSuccessAt, 1_000);
  assert.equal(announcer.state.failingSince, null);

  up = false;
  now = 2_000;
  assert.equal(await announcer.heartbeat(), false);
  now = 3_000;
  assert.equal(await announcer.heartbeat(), false);
  assert.equal(announcer.state.lastHeartbeatAt, 3_000, 'the last attempt');
  assert.equal(announcer.state.lastSuccessAt, 1_000, 'the last success stays');
  assert.equal(announcer.state.consecutiveFailures, 2);
  assert.equal(announcer.state.failingSince, 2_000, 'since the first failure of the outage');

  up = true;
  now = 4_000;
  assert.equal(await announcer.heartbeat(), true);
  assert.equal(announcer.state.lastSuccessAt, 4_000);
  assert.equal(announcer.state.consecutiveFailures, 0);
  assert.equal(announcer.state.failingSince, null);
});
