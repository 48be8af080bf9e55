import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { buildMeetingPackage } from '../../reference-master/packages.ts';
import { createLogger } from '../log/logger.ts';
import { MasterError, type MasterClient, type PackageResponse } from '../master/master-client.ts';
import { PackageStore } from '../store/package-store.ts';
import type { JobOutcome } from './fetch-view.ts';
import { fetchPackage } from './fetch-package.ts';
import { SyncJob } from './sync-job.ts';
import { SyncJobs, type SyncFailure, type SyncSettings } from './sync-jobs.ts';

const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });

type Behaviour = 'hold' | 'ok' | 'broken' | 'notZip' | 'missing' | 'silent';

interface Open {
  meetingId: string;
  body: PassThrough;
  /** Sends the package and ends the body (for 'hold'). */
  release(): void;
}

/**
 * Stands in for MasterClient.openPackage: each call gets a body the test controls, and the fake
 * records how many bodies are open at once.
 */
class FakeMaster {
  readonly opens: Open[] = [];
  open = 0;
  maxOpen = 0;
  behaviour: (meetingId: string, call: number) => Behaviour = () => 'ok';
  #zip: Buffer;

  constructor(zip: Buffer) {
    this.#zip = zip;
  }

  calls(meetingId: string): number {
    return this.opens.filter((o) => o.meetingId === meetingId).length;
  }

  asClient(): MasterClient {
    return { openPackage: (id: string, options: { signal: AbortSignal }) => this.openPackage(id, options) } as unknown as MasterClient;
  }

  async openPackage(meetingId: string, options: { signal: AbortSignal }): Promise<PackageResponse> {
    options.signal.throwIfAborted();
    const behaviour = this.behaviour(meetingId, this.calls(meetingId) + 1);
    const body = new PassThrough();
    const open: Open = { meetingId, body, release: () => body.end(this.#zip) };
    this.opens.push(open);
    if (behaviour === 'missing') throw new MasterError(`package request answered HTTP 404: 会议 ${meetingId} 不存在`, 'HTTP_STATUS', 404);
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    body.once('close', () => this.open--);
    setImmediate(() => {
      if (behaviour === 'ok') open.release();
      else if (behaviour === 'broken') {
        body.write(this.#zip.subarray(0, 100));
        setImmediate(() => body.destroy(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' })));
      } else if (behaviour === 'notZip') body.end(Buffer.alloc(5000, 7));
      else if (behaviour === 'silent') body.write(this.#zip.subarray(0, 10));
    });
    return { body: body as unknown as PackageResponse['body'], headers: {} };
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('SyncJob, as readers see it (FetchView)', () => {
  const request = { meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' as const };
  const outcomeOf = (size: number) => ({ pkg: { size }, replaced: true }) as unknown as JobOutcome;

  test('attemptStatus: running with the bytes of its attempt, failed once a retry replaces it, succeeded only for the attempt that became the package', () => {
    const job = new SyncJob(request, 0);
    assert.equal(job.beginAttempt(), 1);
    assert.equal(job.state, 'queued');
    job.running('/tmp/one.part', 1_000);
    job.wrote(400, [Buffer.alloc(400)], 3_000);
    assert.deepEqual(job.attemptStatus(1), { kind: 'running', available: 400 });
    assert.equal(job.bytesWritten, 400);
    assert.equal(job.rate, 200, 'bytes per second over the attempt');
    job.endAttempt();
    assert.deepEqual(job.attemptStatus(1), { kind: 'running', available: 0 }, 'its file is gone: nothing more to read');
    assert.equal(job.tempPath, null);

    assert.equal(job.beginAttempt(), 2);
    assert.equal(job.state, 'backoff');
    const replaced = job.attemptStatus(1);
    assert.equal(replaced.kind, 'failed');
    assert.match(replaced.kind === 'failed' ? replaced.reason : '', /attempt 1 failed; attempt 2 starts over/);
    job.queued();
    job.running('/tmp/two.part', 4_000);
    assert.deepEqual(job.attemptStatus(2), { kind: 'running', available: 0 });
    job.wrote(900, [Buffer.alloc(900)], 5_000);
    job.endAttempt();
    job.settle(outcomeOf(900));
    assert.equal(job.settled, true);
    assert.deepEqual(job.attemptStatus(2), { kind: 'succeeded', size: 900 });
    assert.equal(job.attemptStatus(1).kind, 'failed', 'the replaced attempt never succeeds');
  });

  test('attemptStatus after the download failed: failed, with its error', async () => {
    const job = new SyncJob(request, 0);
    job.beginAttempt();
    job.running('/tmp/one.part', 0);
    job.settle(new Error('master gone'));
    assert.deepEqual(job.attemptStatus(1), { kind: 'failed', reason: 'master gone' });
    assert.equal(job.error, 'master gone');
    await assert.rejects(job.done, /master gone/);
  });

  test('subscribe: bytes carry their attempt, restarted comes with each new attempt number, settled once; unsubscribed listeners hear nothing more', () => {
    const job = new SyncJob(request, 0);
    const heard: string[] = [];
    const stop = job.subscribe({
      bytes: (attempt, total, written) => heard.push(`bytes ${attempt} ${total} ${written.length}`),
      restarted: (attempt) => heard.push(`restarted ${attempt}`),
      settled: (outcome) => heard.push(`settled ${outcome instanceof Error ? outcome.message : outcome.pkg.size}`),
    });
    const other: string[] = [];
    job.subscribe({ settled: () => other.push('settled') });
    job.beginAttempt();
    job.running('/tmp/one.part', 0);
    job.wrote(10, [Buffer.alloc(4), Buffer.alloc(6)], 1);
    job.endAttempt();
    job.beginAttempt();
    job.running('/tmp/two.part', 2);
    job.wrote(5, [Buffer.alloc(5)], 3);
    job.settle(outcomeOf(5));
    assert.deepEqual(heard, ['bytes 1 10 2', 'restarted 2', 'bytes 2 5 1', 'settled 5']);
    assert.deepEqual(other, ['settled'], 'a listener without bytes or restarted hears only what it asked for');

    stop();
    stop();
    const after = new SyncJob(request, 0);
    const late: string[] = [];
    const unsubscribe = after.subscribe({ bytes: () => late.push('bytes') });
    unsubscribe();
    after.beginAttempt();
    after.running('/tmp/three.part', 0);
    after.wrote(1, [Buffer.alloc(1)], 1);
    assert.deepEqual(late, []);
  });

  test('a listener leaving while the others are being told does not make them miss it', () => {
    const job = new SyncJob(request, 0);
    const heard: string[] = [];
    const first = job.subscribe({
      bytes: () => {
        heard.push('first');
        first();
      },
    });
    job.subscribe({ bytes: () => heard.push('second') });
    job.beginAttempt();
    job.running('/tmp/one.part', 0);
    job.wrote(1, [Buffer.alloc(1)], 1);
    job.wrote(2, [Buffer.alloc(1)], 2);
    assert.deepEqual(heard, ['first', 'second', 'second']);
  });

  test('a reader cannot change a download through its view', () => {
    const job = new SyncJob(request, 0);
    for (const field of ['state', 'attempt', 'bytesWritten', 'tempPath', 'outcome', 'error', 'urgent']) {
      assert.throws(() => {
        (job as unknown as Record<string, unknown>)[field] = 'x';
      }, TypeError, field);
    }
    assert.equal(job.state, 'queued');
  });
});

describe('SyncJobs', () => {
  let fixtures: string;
  let zip: Buffer;

  before(async () => {
    fixtures = await mkdtemp(path.join(tmpdir(), 'jobs-fixtures-'));
    zip = await readFile((await buildMeetingPackage({ dir: fixtures, meetingId: 'm', title: 'Jobs' })).path);
  });
  const folders: string[] = [];
  after(async () => {
    for (const folder of [fixtures, ...folders]) await rm(folder, { recursive: true, force: true });
  });

  async function setup(settings: Partial<SyncSettings> = {}) {
    const folder = await mkdtemp(path.join(tmpdir(), 'jobs-'));
    folders.push(folder);
    const root = path.join(folder, 'storage');
    const store = await PackageStore.open(root, logger);
    const master = new FakeMaster(zip);
    const client = master.asClient();
    const jobs = new SyncJobs({
      store,
      master: () => client,
      settings: () => ({ maxConcurrentDownloads: 3, retryCount: 3, retryDelayMs: 1, idleTimeoutMs: 5_000, connectTimeoutMs: 1_000, ...settings }),
      logger,
      random: () => 0.5,
    });
    return { root, store, master, jobs };
  }

  test('one job per meeting: a second ensure joins the running one', async () => {
    const { master, jobs, store } = await setup();
    master.behaviour = () => 'hold';
    const first = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' });
    const second = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'requested', urgent: true });
    assert.equal(second, first);
    assert.equal(first.urgent, true, 'a waiting tablet makes the job urgent');
    await until('the download to start', () => master.opens.length === 1);
    assert.deepEqual([...jobs.inFlightIds()], ['m1']);
    master.opens[0]?.release();
    const outcome = await first.done;
    assert.equal(outcome.replaced, true);
    assert.equal(master.calls('m1'), 1);
    assert.equal(store.get('m1')?.token, 'T1');
    assert.equal(jobs.inFlight('m1'), undefined);
    master.behaviour = () => 'ok';
    const again = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T2', reason: 'token-changed' });
    assert.notEqual(again, first, 'a settled job is not reused');
    await again.done;
  });

  test('at most maxConcurrentDownloads at once; urgent jobs take the next free slot', async () => {
    const { master, jobs } = await setup({ maxConcurrentDownloads: 2 });
    master.behaviour = () => 'hold';
    const background = ['a', 'b', 'c', 'd'].map((id) => jobs.ensure({ meetingId: id, title: id, token: 'T', reason: 'new' }));
    await until('two downloads', () => master.opens.length === 2);
    const urgent = jobs.ensure({ meetingId: 'u', title: 'u', token: 'T', reason: 'requested', urgent: true });
    // c, d and u parked for a slot: none of them opens a transfer until one is released.
    await until('three jobs waiting for a slot', () => jobs.waitingForSlot === 3 || master.opens.length > 2);
    assert.equal(master.opens.length, 2, 'the third waits for a slot');
    assert.equal(master.maxOpen, 2);
    assert.equal(jobs.inFlightIds().size, 5, 'queued jobs count as in flight');

    master.opens[0]?.release();
    await until('a third download', () => master.opens.length === 3);
    assert.equal(master.opens[2]?.meetingId, 'u', 'the urgent job goes first');
    master.behaviour = () => 'ok';
    for (const o of master.opens) if (!o.body.writableEnded) o.release();
    await Promise.all([...background, urgent].map((j) => j.done));
    assert.equal(master.maxOpen, 2);
    assert.equal(master.opens.length, 5);
  });

  test('retries retryCount times, then records the failure; the old package stays', async () => {
    const { master, jobs, store, root } = await setup({ retryCount: 3 });
    // An older version is held: a failed job must leave it in place.
    master.behaviour = () => 'ok';
    await jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' }).done;
    const held = store.get('m1');
    assert.ok(held);

    master.behaviour = () => 'broken';
    const failures: SyncFailure[] = [];
    jobs.events.on('failed', (_job, failure) => failures.push(failure));
    const job = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T2', reason: 'token-changed' });
    await assert.rejects(job.done);
    assert.equal(master.calls('m1'), 1 + 3, 'three attempts');
    assert.equal(job.state, 'failed');
    const failure = jobs.failure('m1');
    assert.ok(failure);
    assert.equal(failure.failedJobs, 1);
    assert.match(failure.message, /body broken/);
    assert.ok(failure.retryAt > failure.at, 'the poller waits before the next job');
    assert.deepEqual(failures, [failure]);
    assert.equal(store.get('m1'), held, 'the old package is untouched');
    assert.deepEqual((await readdir(path.join(root, 'meeting_m1'))).sort(), ['manifest.json', 'package.zip'], 'no temp files left');

    await assert.rejects(jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T2', reason: 'retry' }).done);
    assert.equal(jobs.failure('m1')?.failedJobs, 2, 'consecutive failed jobs are counted');
    assert.ok((jobs.failure('m1')?.retryAt ?? 0) - (jobs.failure('m1')?.at ?? 0) > failure.retryAt - failure.at, 'and back off further');

    master.behaviour = () => 'ok';
    const outcome = await jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T3', reason: 'retry' }).done;
    assert.equal(jobs.failure('m1'), undefined, 'success clears the failure');
    assert.equal(outcome.replaced, false, 'same bytes: nothing replaced');
    assert.equal(store.get('m1')?.token, 'T3', 'only the token is updated');
  });

  test('a body that is not a zip is never promoted and is retried', async () => {
    const { master, jobs, store, root } = await setup({ retryCount: 2 });
    master.behaviour = (_id, call) => (call === 1 ? 'notZip' : 'ok');
    const outcome = await jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' }).done;
    assert.equal(master.calls('m1'), 2);
    assert.equal(outcome.pkg.size, zip.length);
    assert.equal(store.get('m1')?.size, zip.length);
    assert.deepEqual((await readdir(path.join(root, 'meeting_m1'))).sort(), ['manifest.json', 'package.zip']);
  });

  test('subscribers of a download hear every byte of each attempt, in order, and the retry that voids the first', async () => {
    const { master, jobs } = await setup({ retryCount: 2 });
    master.behaviour = (_id, call) => (call === 1 ? 'notZip' : 'hold');
    const job = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' });
    const heard: string[] = [];
    let expectedStart = 0;
    let contiguous = true;
    job.subscribe({
      bytes: (attempt, total, written) => {
        let length = 0;
        for (const buffer of written) length += buffer.length;
        if (total - length !== expectedStart) contiguous = false;
        expectedStart = total;
        if (heard.at(-1) !== `bytes ${attempt}`) heard.push(`bytes ${attempt}`);
      },
      restarted: (attempt) => {
        expectedStart = 0;
        heard.push(`restarted ${attempt}`);
      },
      settled: (outcome) => heard.push(outcome instanceof Error ? 'failed' : 'settled'),
    });
    await until('the second attempt to start', () => master.opens.length === 2);
    assert.equal(job.attempt, 2);
    master.opens[1]?.release();
    const outcome = await job.done;
    assert.deepEqual(heard, ['bytes 1', 'restarted 2', 'bytes 2', 'settled']);
    assert.equal(contiguous, true, 'each report ends where the next one starts');
    assert.equal(expectedStart, outcome.pkg.size, 'the last report ends at the package size');
  });

  test('a 404 is not retried', async () => {
    const { master, jobs } = await setup({ retryCount: 5 });
    master.behaviour = () => 'missing';
    await assert.rejects(jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' }).done, /404/);
    assert.equal(master.calls('m1'), 1);
    assert.equal(jobs.failure('m1')?.failedJobs, 1);
  });

  test('a master that stops sending is cut by the idle timeout', async () => {
    const { master, jobs } = await setup({ retryCount: 1, idleTimeoutMs: 100 });
    master.behaviour = () => 'silent';
    await assert.rejects(jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' }).done);
    assert.equal(jobs.failure('m1')?.code, 'IDLE_TIMEOUT');
  });

  test('a failed download leaves no idle-watchdog timer behind', async () => {
    const { master, store } = await setup();
    master.behaviour = () => 'broken';
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    // Whether a write is still in flight when the body breaks is a race: try a few times.
    for (let round = 0; round < 5; round++) {
      const tempPath = await store.createTempPath('m1');
      const signal = new AbortController().signal;
      await assert.rejects(fetchPackage({ master: master.asClient(), meetingId: 'm1', tempPath, idleTimeoutMs: 60_000, headersTimeoutMs: 60_000, signal }));
      // Let the writes still in flight when the body broke complete.
      await new Promise((resolve) => setTimeout(resolve, 20));
      await store.discardTemp(tempPath);
    }
    assert.ok(timers() <= before, 'a 60 s timer left armed would keep a stopping node alive');
  });

  test('cancel and forget: the job ends without a failure record; drain waits for running jobs', async () => {
    const { master, jobs, store } = await setup({ retryCount: 3 });
    master.behaviour = () => 'hold';
    const job = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'new' });
    await until('the download to start', () => master.opens.length === 1);
    assert.equal(await jobs.drain(20), false, 'still running');
    jobs.forget('m1', 'meeting ended');
    await assert.rejects(job.done, /cancelled/);
    assert.equal(master.calls('m1'), 1, 'a cancelled job is not retried');
    assert.equal(jobs.failure('m1'), undefined);
    assert.equal(store.get('m1'), undefined);
    assert.equal(await jobs.drain(20), true);
  });

  test('a preheat waits while any other job runs or waits, and never holds a slot another job needs', async () => {
    const { master, jobs, store } = await setup({ maxConcurrentDownloads: 1 });
    master.behaviour = () => 'hold';
    const sync = jobs.ensure({ meetingId: 'active', title: 'A', token: 'T', reason: 'new' });
    await until('the sync to start', () => master.opens.length === 1);
    const preheat = jobs.ensure({ meetingId: 'later', title: 'L', token: null, reason: 'preheat' });
    await until('the preheat parked until the node is idle', () => jobs.waitingForSlot === 1 || master.calls('later') > 0);
    assert.equal(master.calls('later'), 0, 'no preheat while a sync runs');
    master.opens[0]?.release();
    await sync.done;
    await until('the preheat to start once idle', () => master.calls('later') === 1);
    // A sync asked for while the preheat runs does not wait for it (the preheat is outside the limit of 1).
    const second = jobs.ensure({ meetingId: 'other', title: 'O', token: 'T', reason: 'new' });
    await until('the second sync to start beside the preheat', () => master.calls('other') === 1);
    for (const open of master.opens) open.release();
    await Promise.all([second.done, preheat.done]);
    assert.equal(store.get('later')?.source, 'preheat', 'a preheat is stored as such (not servable)');
    assert.equal(store.get('other')?.source, 'master');
  });

  test('a preheat wanted as a sync (its meeting started) is cancelled and the sync starts cleanly', async () => {
    const { master, jobs, store } = await setup();
    master.behaviour = () => 'hold';
    const preheat = jobs.ensure({ meetingId: 'm1', title: 'One', token: null, reason: 'preheat' });
    await until('the preheat to start', () => master.calls('m1') === 1);
    master.opens[0]?.body.write(zip.subarray(0, 100));
    const sync = jobs.ensure({ meetingId: 'm1', title: 'One', token: 'T1', reason: 'requested', urgent: true });
    assert.notEqual(sync, preheat, 'tablets never join the preheat');
    assert.equal(jobs.inFlight('m1'), sync);
    await assert.rejects(preheat.done, /cancelled/);
    await until('the sync to start', () => master.calls('m1') === 2);
    master.opens[1]?.release();
    await sync.done;
    assert.equal(store.get('m1')?.source, 'master');
    assert.equal(store.get('m1')?.token, 'T1');
    assert.equal(jobs.failure('m1'), undefined);
    assert.equal((await readdir(path.dirname(store.get('m1')!.path))).filter((n) => n.includes('.part-')).length, 0, 'the preheat\'s temp file is gone');
  });

  test('a failed preheat leaves no failure record that would hold back the sync', async () => {
    const { master, jobs } = await setup({ retryCount: 1 });
    master.behaviour = () => 'notZip';
    const preheat = jobs.ensure({ meetingId: 'm1', title: 'One', token: null, reason: 'preheat' });
    await assert.rejects(preheat.done);
    assert.equal(jobs.failure('m1'), undefined);
  });
});
