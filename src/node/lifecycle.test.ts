import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import type { NodeEventMap } from '../node-events.ts';
import { DEFAULT_POLICY } from '../policy.ts';
import { NodeLifecycle, type LifecycleDeps } from './lifecycle.ts';

/** A lifecycle whose master side is recorded: what was called, in order; heartbeats answer when `beat` says. */
function setup(options: { stopMasterWaitMs?: number } = {}) {
  const calls: string[] = [];
  const events = new EventEmitter<NodeEventMap>();
  const service: boolean[] = [];
  events.on('service', ({ serving }) => service.push(serving));
  let paused = false;
  let beat: Promise<boolean> = Promise.resolve(true);
  const deps = {
    config: () => ({ syncInterval: 3_600, watchInterval: 0, heartbeatInterval: 3_600 }),
    policy: { ...DEFAULT_POLICY, stopMasterWaitMs: options.stopMasterWaitMs ?? DEFAULT_POLICY.stopMasterWaitMs },
    sync: {
      pollNow: async () => void calls.push('poll'),
      watch: async () => false,
      setPaused: (value: boolean) => void (paused = value),
      lastSuccess: null,
      lastError: null,
      events: new EventEmitter(),
    },
    announcer: {
      register: async () => void calls.push('register'),
      unregister: async () => void calls.push('unregister'),
      heartbeat: () => {
        calls.push('heartbeat');
        return beat;
      },
    },
    events,
    logger: new MemoryLogger(),
  } as unknown as LifecycleDeps;
  const lifecycle = new NodeLifecycle(deps);
  return { lifecycle, deps, calls, service, paused: () => paused, holdBeat: (p: Promise<boolean>) => (beat = p) };
}

test('the operator\'s stop: serving ends, the sync pauses, the node unregisters; polls asked for do nothing', async () => {
  const { lifecycle, calls, service, paused } = setup();
  assert.equal(lifecycle.serving, true);
  await lifecycle.stopService();
  assert.equal(lifecycle.serving, false);
  assert.equal(paused(), true);
  assert.deepEqual(service, [false]);
  assert.deepEqual(calls, ['unregister']);
  await lifecycle.runNow('poll');
  await lifecycle.stopService();
  assert.deepEqual(calls, ['unregister'], 'no poll while stopped, and a second stop is no news');
  assert.deepEqual(service, [false]);
});

test('the operator\'s start: registers, unpauses the sync and resumes at once', async (t) => {
  const { lifecycle, calls, service, paused } = setup();
  await lifecycle.stopService();
  await lifecycle.startService();
  t.after(() => lifecycle.stopService());
  assert.equal(lifecycle.serving, true);
  assert.equal(paused(), false);
  assert.deepEqual(service, [false, true]);
  assert.deepEqual(calls.slice(0, 2), ['unregister', 'register']);
});

test('a heartbeat in flight lands before the unregister; a hung one is waited for at most stopMasterWaitMs', async () => {
  const { lifecycle, calls, holdBeat } = setup({ stopMasterWaitMs: 30 });
  let land!: (ok: boolean) => void;
  holdBeat(new Promise<boolean>((resolve) => (land = resolve)));
  void lifecycle.heartbeatNow();
  await lifecycle.stopService();
  assert.deepEqual(calls, ['heartbeat', 'unregister'], 'unregistered after the wait, the heartbeat still hung');
  land(true);
});

test('the unregister waits for a heartbeat in flight to land (one landing after it would register again)', async () => {
  const { lifecycle, calls, holdBeat } = setup();
  let land!: (ok: boolean) => void;
  holdBeat(new Promise<boolean>((resolve) => (land = resolve)));
  void lifecycle.heartbeatNow();
  const stopped = lifecycle.stopService();
  await new Promise(setImmediate);
  assert.deepEqual(calls, ['heartbeat'], 'not unregistered while the heartbeat is out');
  land(true);
  await stopped;
  assert.deepEqual(calls, ['heartbeat', 'unregister']);
});

test('a stop waits for a body handed off while it was closing the server (the last connection leaves by being handed off)', async () => {
  const { deps } = setup();
  const order: string[] = [];
  let running = 0;
  let idleWaiters: Array<() => void> = [];
  const endTransfer = () => {
    running--;
    order.push('transfer done');
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const wake of waiters) wake();
  };
  const handOff = {
    idle: () => (running === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
    abortAll: () => {
      if (running > 0) endTransfer();
    },
  };
  // A response in flight when the stop begins: its body is handed off, which closes its (the
  // server's last) connection, so the server reports closed with the transfer just started.
  const server = {
    close: (done: () => void) => {
      setTimeout(() => {
        running++;
        order.push('handed off');
        done();
        setTimeout(endTransfer, 50);
      }, 10);
    },
    closeIdleConnections: () => {},
    closeAllConnections: () => {},
  };
  const lifecycle = new NodeLifecycle({
    ...deps,
    policy: { ...deps.policy, drainTimeoutMs: 5_000 },
    server,
    burstAccept: null,
    handOff,
    jobs: { drain: async () => true, cancelAll: () => {} },
    master: { client: { close: async () => {}, destroy: async () => {} } },
    closeAfterDrain: [() => void order.push('closed after drain')],
    closeAtStop: () => {},
    configSettled: async () => {},
    ownsLogger: false,
  } as unknown as LifecycleDeps);
  await lifecycle.stop();
  assert.deepEqual(order, ['handed off', 'transfer done', 'closed after drain']);
});
