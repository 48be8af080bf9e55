import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { buildMeetingPackage } from '../../reference-master/packages.ts';
import { handleDownload, type DownloadDeps } from '../http/download-route.ts';
import { ServeStats } from '../http/serve-stats.ts';
import { createLogger, type Logger } from '../log/logger.ts';
import { MemoryLogger } from '../log/memory-logger.ts';
import type { MasterClient, MeetingStatus, PackageResponse } from '../master/master-client.ts';
import { PackageStore } from '../store/package-store.ts';
import { fileIdentity } from '../store/zip-lead.ts';
import { SyncJobs } from './sync-jobs.ts';
import { Reconciler } from './reconciler.ts';

const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });

/** Download jobs against `master`, with quick retries (the tests' master answers at once). */
function jobsFor(store: PackageStore, master: () => MasterClient, jobLogger: Logger = logger): SyncJobs {
  const settings = { maxConcurrentDownloads: 3, retryCount: 1, retryDelayMs: 1, idleTimeoutMs: 5_000, connectTimeoutMs: 1_000 };
  return new SyncJobs({ store, master, settings: () => settings, logger: jobLogger });
}

/** A master whose status answers the test sets, delayed as the test says; counts every request. */
class FakeMaster {
  status: MeetingStatus = { token: 'T0', meetings: [], rejectedIds: [] };
  statusDelayMs = 0;
  statusCalls = 0;
  packageCalls: string[] = [];
  #zip: Buffer;

  constructor(zip: Buffer) {
    this.#zip = zip;
  }

  asClient(): MasterClient {
    return {
      getMeetingStatus: async () => {
        this.statusCalls++;
        const answer = structuredClone(this.status);
        if (this.statusDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.statusDelayMs));
        return answer;
      },
      openPackage: async (id: string): Promise<PackageResponse> => {
        this.packageCalls.push(id);
        const body = new PassThrough();
        setImmediate(() => body.end(this.#zip));
        return { body: body as unknown as PackageResponse['body'], headers: {} };
      },
    } as unknown as MasterClient;
  }
}

describe('a request for an id not active here waits for one shared status check (no 404 for a meeting just started)', () => {
  let fixtures: string;
  let zip: Buffer;
  const folders: string[] = [];
  before(async () => {
    fixtures = await mkdtemp(path.join(tmpdir(), 'reconciler-fixtures-'));
    zip = await readFile((await buildMeetingPackage({ dir: fixtures, meetingId: 'm1', title: 'One' })).path);
  });
  after(async () => {
    for (const folder of [fixtures, ...folders]) await rm(folder, { recursive: true, force: true });
  });

  async function setup() {
    const folder = await mkdtemp(path.join(tmpdir(), 'reconciler-'));
    folders.push(folder);
    const store = await PackageStore.open(path.join(folder, 'storage'), logger);
    const master = new FakeMaster(zip);
    const client = master.asClient();
    const jobs = jobsFor(store, () => client);
    let now = 1_000_000;
    const clock = { advance: (ms: number) => (now += ms) };
    const scheduled = new Set<string>();
    const sync = new Reconciler({
      scheduled: (id) => scheduled.has(id),
      store,
      jobs,
      master: () => client,
      policy: () => ({ evictEnded: true, cleanOnStartup: false }),
      logger,
      now: () => now,
      // Probes are not what this is about: the held build is always current.
      probe: async () => ({ kind: 'unknown', reason: 'not probed in this test', bytesRead: 0 }),
    });
    assert.equal(await sync.pollNow(), true);
    master.statusCalls = 0;
    return { store, master, jobs, sync, clock, scheduled };
  }

  test('concurrent requests share one check; another comes only after the gap; the wait is bounded', async () => {
    const { master, sync, clock } = await setup();
    master.statusDelayMs = 50;
    await Promise.all(Array.from({ length: 20 }, () => sync.settleRequest('nope', 2_000)));
    assert.equal(master.statusCalls, 1, 'twenty requests at once: one status check');

    await sync.settleRequest('nope', 2_000);
    assert.equal(master.statusCalls, 1, 'within the gap the last check stands');
    clock.advance(1_000);
    await sync.settleRequest('nope', 2_000);
    assert.equal(master.statusCalls, 2, 'after the gap: a new check');

    // A master that does not answer in time: the request is answered after the bound, not later.
    master.statusDelayMs = 1_500;
    clock.advance(1_000);
    const started = Date.now();
    await sync.settleRequest('nope', 200);
    const waited = Date.now() - started;
    assert.ok(waited >= 150 && waited < 1_000, `waited ${waited} ms`);
    assert.deepEqual(master.packageCalls, [], 'an unknown id never makes the node ask for a package');
  });

  test('a scheduled meeting asked for just after a check waits for the next check; a made-up id is answered from the last one', async () => {
    const { master, sync, scheduled } = await setup();
    scheduled.add('m1');
    await sync.settleRequest('nope', 2_000);
    assert.equal(master.statusCalls, 1, 'the check that may predate the start');

    // The meeting starts right after that check; a made-up id still gets the last check's answer.
    master.status = { token: 'T1', meetings: [{ id: 'm1', title: 'One' }], rejectedIds: [] };
    await sync.settleRequest('made-up', 2_000);
    assert.equal(master.statusCalls, 1, 'a made-up id is answered from the last check');
    assert.equal(sync.activeMeeting('m1'), undefined);

    await Promise.all(Array.from({ length: 10 }, () => sync.settleRequest('m1', 2_000)));
    assert.equal(master.statusCalls, 2, 'one more check for all ten, after the gap');
    assert.equal(sync.activeMeeting('m1')?.id, 'm1', 'the start is seen: served, not 404');
  });

  test('a meeting the check finds active is served (or joined), an unknown id gets 404; a flood makes no package request', async (t) => {
    const { master, sync, store, clock } = await setup();
    const deps: DownloadDeps = {
      store,
      sync,
      stats: new ServeStats(),
      logger,
      serving: () => true,
      settings: () => ({ waitForSyncMs: 5_000, idleTimeoutMs: 5_000, retryAfterSeconds: 1, settleWaitMs: 2_000 }),
    };
    const server = http.createServer((req, res) => {
      const id = decodeURIComponent(String(req.url).split('/')[1] ?? '');
      void handleDownload(deps, id, req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const get = (id: string) =>
      new Promise<{ status: number; bytes: number }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `/${id}`, agent: false }, (res) => {
            let bytes = 0;
            res.on('data', (chunk: Buffer) => (bytes += chunk.length));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
          })
          .on('error', reject);
      });

    // The meeting starts on the master; the node has not polled since. Tablets ask at once.
    master.status = { token: 'T1', meetings: [{ id: 'm1', title: 'One' }], rejectedIds: [] };
    master.statusDelayMs = 100;
    const answers = await Promise.all(Array.from({ length: 10 }, () => get('m1')));
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(10).fill(200),
      'served, not 404',
    );
    assert.ok(answers.every((a) => a.bytes === zip.length));
    assert.equal(master.statusCalls, 1, 'one status check for all ten');
    assert.deepEqual(master.packageCalls, ['m1'], 'one download for all ten');

    clock.advance(1_000);
    const unknown = await Promise.all(Array.from({ length: 10 }, () => get('nope')));
    assert.deepEqual(
      unknown.map((a) => a.status),
      Array(10).fill(404),
    );
    assert.equal(master.statusCalls, 2);
    assert.deepEqual(master.packageCalls, ['m1'], 'no package request for an unknown id');
  });
});

test('a poll answered by a master that was replaced while it waited is not acted on', async (t) => {
  const folder = await mkdtemp(path.join(tmpdir(), 'reconciler-swap-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  const store = await PackageStore.open(path.join(folder, 'storage'), logger);
  const zip = Buffer.alloc(0);
  const oldMaster = new FakeMaster(zip);
  oldMaster.status = { token: 'OLD', meetings: [{ id: 'old-only', title: 'Old' }], rejectedIds: [] };
  oldMaster.statusDelayMs = 100;
  const newMaster = new FakeMaster(zip);
  let current = oldMaster.asClient();
  const jobs = jobsFor(store, () => current);
  const sync = new Reconciler({ store, jobs, master: () => current, policy: () => ({ evictEnded: true, cleanOnStartup: false }), logger });
  const polling = sync.pollNow();
  // The poll has asked the old master and waits for its answer (held statusDelayMs): switch now.
  assert.equal(oldMaster.statusCalls, 1, 'the poll is waiting on the old master');
  current = newMaster.asClient();
  assert.equal(await polling, false);
  const last = () => sync.lastSuccess;
  assert.equal(last(), null, 'the old master\'s list was not taken');
  assert.deepEqual(oldMaster.packageCalls, []);
  assert.deepEqual(newMaster.packageCalls, []);
  assert.equal(await sync.pollNow(), true, 'the next poll asks the new master');
  assert.equal(last()?.token, 'T0');
});

test('a sync promoted while the start confirmation writes its manifest is kept, not discarded as a stale preheat', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'reconciler-confirm-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const zip = (await buildMeetingPackage({ dir, meetingId: 'm1', title: 'One' })).path;
  const identity = await fileIdentity(zip);
  const logger = new MemoryLogger();
  const store = await PackageStore.open(path.join(dir, 'storage'), logger);
  await promoteFile(store, 'm1', zip, 'preheat');
  const status: MeetingStatus = { token: 'T1', meetings: [{ id: 'm1', title: 'One' }], rejectedIds: [] };
  let packageCalls = 0;
  const zipBytes = await readFile(zip);
  const client = {
    getMeetingStatus: async () => structuredClone(status),
    openPackage: async (): Promise<PackageResponse> => {
      packageCalls++;
      const body = new PassThrough();
      setImmediate(() => body.end(zipBytes));
      return { body: body as unknown as PackageResponse['body'], headers: {} };
    },
  } as unknown as MasterClient;
  const jobs = jobsFor(store, () => client, logger);
  const sync = new Reconciler({ store, jobs, master: () => client, policy: () => ({ evictEnded: true, cleanOnStartup: false }), logger,
    // Same documents as the preheat: the start confirms it.
    probe: async () => ({ kind: 'identified', identity, bytesRead: 100 }) });
  // Emulates the interleaving: the tablets' 'requested' sync promotes the master's package while
  // confirm() is inside its manifest write (after it read the preheat, before it compares again).
  const confirm = store.confirm.bind(store);
  store.confirm = async (...args: Parameters<PackageStore['confirm']>) => {
    await promoteFile(store, 'm1', zip, 'master');
    return confirm(...args);
  };
  const removed: string[] = [];
  store.events.on('change', (event) => {
    if (event.type === 'removed') removed.push(event.reason);
  });
  assert.equal(await sync.pollNow(), true);
  await waitUntil(() => logger.lines.some((line) => /replaced by the meeting's sync during the check|discarding it/.test(line)));
  await jobs.drain(5_000);
  assert.deepEqual(removed, [], 'the promoted package was not removed');
  assert.equal(store.get('m1')?.source, 'master');
  assert.equal(packageCalls, 0, 'nothing fetched again');
});

async function promoteFile(store: PackageStore, meetingId: string, file: string, source: 'master' | 'preheat') {
  const data = await readFile(file);
  const temp = await store.createTempPath(meetingId);
  await copyFile(file, temp);
  return store.promote(meetingId, temp, { sha256: createHash('sha256').update(data).digest('hex'), size: data.length, token: null, title: meetingId, source });
}

async function waitUntil(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    assert.ok(Date.now() < until, 'timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
