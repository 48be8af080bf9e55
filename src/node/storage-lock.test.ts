import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { acquireStorageLock, LINUX_PROCESSES, LOCK_FILE, type LockHolder, type ProcessProbe } from './storage-lock.ts';
import { UnusablePathError } from './usable-path.ts';

/** Processes as a table: pid → state and start time (absent: not running). */
function processes(table: Record<number, { state?: string; start: string } | 'no-proc'>, bootId = 'boot-1'): ProcessProbe {
  return {
    exists: (pid) => pid in table,
    stat: (pid) => {
      const entry = table[pid];
      if (entry === undefined || entry === 'no-proc') return null;
      return { state: entry.state ?? 'S', start: entry.start };
    },
    bootId: () => bootId,
  };
}

function holder(pid: number, processStart: string | null, bootId: string | null = 'boot-1'): LockHolder {
  return { pid, processStart, bootId, startedAt: '2026-12-07T01:00:00.000Z', configPath: '/etc/meeting-edge/node_config.json', instance: 'earlier' };
}

describe('the storage lock', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'edge-lock-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const writeLock = (content: LockHolder | string) => writeFile(path.join(dir, LOCK_FILE), typeof content === 'string' ? content : JSON.stringify(content));
  const self = { [process.pid]: { start: '500' } };

  test('taken in an empty folder with this process\'s pid and start time, and released at the end', async () => {
    const lock = await acquireStorageLock(dir, '/etc/node_config.json', processes(self));
    assert.equal(lock.tookOver, null);
    const written = JSON.parse(await readFile(path.join(dir, LOCK_FILE), 'utf8')) as LockHolder;
    assert.equal(written.pid, process.pid);
    assert.equal(written.processStart, '500');
    assert.equal(written.configPath, '/etc/node_config.json');
    assert.deepEqual(await readdir(dir), [LOCK_FILE], 'no staging file left');
    await lock.release();
    assert.deepEqual(await readdir(dir), []);
  });

  test('a second holder is refused, naming the process that holds it; the first keeps its lock', async () => {
    const first = await acquireStorageLock(dir, '/a/node_config.json', processes(self));
    await assert.rejects(acquireStorageLock(dir, '/b/node_config.json', processes(self)), (error: unknown) => {
      assert.ok(error instanceof UnusablePathError);
      assert.equal(error.key, 'storage.path');
      assert.match(error.message, new RegExp(`in use by another meeting-edge node: pid ${process.pid}, started \\S+, config /a/node_config\\.json, lock file `));
      return true;
    });
    assert.deepEqual(await readdir(dir), [LOCK_FILE]);
    await first.release();
  });

  test('a lock of a running process with the recorded start time is held; no /proc: a running pid holds it', async () => {
    await writeLock(holder(4242, '900'));
    await assert.rejects(acquireStorageLock(dir, '/c', processes({ ...self, 4242: { start: '900' } })), /pid 4242/);
    await assert.rejects(acquireStorageLock(dir, '/c', processes({ ...self, 4242: 'no-proc' })), /pid 4242/);
  });

  test('stale locks are taken over: pid not running, a zombie, a reused pid (another start time), another boot', async () => {
    const cases: Array<[string, LockHolder, ProcessProbe]> = [
      ['not running', holder(4242, '900'), processes(self)],
      ['zombie', holder(4242, '900'), processes({ ...self, 4242: { state: 'Z', start: '900' } })],
      ['pid reused', holder(4242, '900'), processes({ ...self, 4242: { start: '901' } })],
      ['another boot', holder(4242, '900', 'boot-0'), processes({ ...self, 4242: { start: '900' } })],
    ];
    for (const [why, stale, probe] of cases) {
      await writeLock(stale);
      const lock = await acquireStorageLock(dir, '/c', probe);
      assert.equal(lock.tookOver?.pid, 4242, why);
      assert.equal((JSON.parse(await readFile(path.join(dir, LOCK_FILE), 'utf8')) as LockHolder).pid, process.pid, why);
      await lock.release();
    }
    // The same pid as this process (a container restarted: the node gets pid 1 again), started earlier.
    await writeLock(holder(process.pid, '499'));
    const lock = await acquireStorageLock(dir, '/c', processes(self));
    assert.equal(lock.tookOver?.pid, process.pid);
    await lock.release();
  });

  test('a file that is not a lock (never written by a node) is replaced', async () => {
    await writeLock('garbage');
    const lock = await acquireStorageLock(dir, '/c', processes(self));
    assert.equal(lock.tookOver, null);
    await lock.release();
  });

  test('release removes only its own lock', async () => {
    const lock = await acquireStorageLock(dir, '/c', processes(self));
    await writeLock({ ...holder(4242, '1'), instance: 'someone-else' });
    await lock.release();
    assert.deepEqual(await readdir(dir), [LOCK_FILE], 'the newer holder\'s lock stays');
  });

  test('the real probe reads this process as running, with a start time on Linux', () => {
    assert.equal(LINUX_PROCESSES.exists(process.pid), true);
    const stat = LINUX_PROCESSES.stat(process.pid);
    assert.match(stat?.start ?? '', /^\d+$/);
    assert.equal(stat?.state, 'R');
    assert.match(LINUX_PROCESSES.bootId() ?? '', /^[0-9a-f-]{36}$/);
  });
});
