import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import type { MasterClient, ScheduledMeeting } from '../master/master-client.ts';
import { SYNC_POLICY } from '../policy.ts';
import type { PackageStore } from '../store/package-store.ts';
import type { FetchView, FetchReason } from './fetch-view.ts';
import { Preheater } from './preheat.ts';
import type { JobRequest } from './sync-job.ts';
import type { SyncFailure, SyncJobs } from './sync-jobs.ts';

/** The master's time format (its local time, no zone) for `ms`. */
function masterTime(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function view(meetingId: string, reason: FetchReason, settled = false): FetchView {
  return { meetingId, reason, settled, state: settled ? 'failed' : 'running', bytesWritten: 0 } as unknown as FetchView;
}

/** SyncJobs as the preheater sees it: its events, the jobs it lists, what it is asked to start and cancel. */
class FakeJobs {
  readonly events = new EventEmitter<{ started: [FetchView]; progress: [FetchView]; succeeded: [FetchView, unknown]; failed: [FetchView, SyncFailure] }>();
  running: FetchView[] = [];
  ensured: JobRequest[] = [];
  cancelled: string[] = [];
  jobs(): FetchView[] {
    return this.running;
  }
  inFlight(meetingId: string): FetchView | undefined {
    return this.running.find((job) => job.meetingId === meetingId && !job.settled);
  }
  ensure(request: JobRequest): FetchView {
    this.ensured.push(request);
    const job = view(request.meetingId, request.reason);
    this.running.push(job);
    return job;
  }
  cancel(meetingId: string): void {
    this.cancelled.push(meetingId);
  }
  forget(meetingId: string): void {
    this.cancelled.push(meetingId);
  }
}

function setup(meetings: ScheduledMeeting[]) {
  let now = Date.UTC(2026, 0, 5, 12, 0);
  const jobs = new FakeJobs();
  const store = { events: new EventEmitter(), list: () => [], get: () => undefined, remove: async () => false } as unknown as PackageStore;
  const sync = { events: new EventEmitter(), activeMeetings: () => [], lastSuccess: { at: 0, token: 'T', meetings: [] } } as never;
  const master = { listMeetings: async () => meetings } as unknown as MasterClient;
  const preheater = new Preheater({
    master: () => master,
    jobs: jobs as unknown as SyncJobs,
    store,
    sync,
    settings: () => ({ enabled: true, hoursAhead: 2, hoursBehind: 0 }),
    logger: new MemoryLogger(),
    now: () => now,
    random: () => 0.5,
  });
  return { preheater, jobs, tick: (ms: number) => (now += ms), now: () => now };
}

test('the scan starts the preheat of a meeting scheduled in the window, as a preheat (no token)', async () => {
  const start = Date.UTC(2026, 0, 5, 12, 0) + 3_600_000;
  const { preheater, jobs } = setup([{ id: 'soon', title: 'Soon', time: masterTime(start), status: 'not-started' }]);
  await preheater.scan();
  assert.deepEqual(jobs.ensured, [{ meetingId: 'soon', title: 'Soon', token: null, reason: 'preheat' }]);
  assert.equal(preheater.isScheduled('soon'), true);
  assert.equal(preheater.counters.started, 1);
});

test('a sync that starts makes a running preheat give the master\'s stream back', async () => {
  const start = Date.UTC(2026, 0, 5, 12, 0) + 3_600_000;
  const { preheater, jobs } = setup([{ id: 'soon', title: 'Soon', time: masterTime(start), status: 'not-started' }]);
  await preheater.scan();
  jobs.events.emit('started', view('soon', 'preheat'));
  assert.deepEqual(jobs.cancelled, [], 'a preheat starting cancels nothing');
  jobs.events.emit('started', view('live', 'new'));
  assert.deepEqual(jobs.cancelled, ['soon']);
});

test('a failed preheat waits out the policy\'s backoff; a cancelled one is no failure', async () => {
  const start = Date.UTC(2026, 0, 5, 12, 0) + 3_600_000;
  const { preheater, jobs, now } = setup([{ id: 'soon', title: 'Soon', time: masterTime(start), status: 'not-started' }]);
  await preheater.scan();
  const failure: SyncFailure = { message: 'master said 500', code: 'HTTP_500', at: now(), failedJobs: 1, retryAt: now() };
  jobs.running = [view('soon', 'preheat', true)];
  jobs.events.emit('failed', jobs.running[0]!, failure);
  await preheater.advance();
  const row = preheater.upcoming().find((m) => m.id === 'soon');
  assert.equal(row?.lastError?.message, 'master said 500');
  // random 0.5: no jitter, the first wait is the policy's.
  assert.equal(row?.lastError?.retryAt, now() + SYNC_POLICY.preheatRetry.firstDelayMs);
  assert.equal(jobs.ensured.length, 1, 'not started again before its retry time');
  jobs.events.emit('failed', view('soon', 'preheat', true), { ...failure, code: 'CANCELLED' });
  assert.equal(preheater.counters.failed, 1);
  assert.equal(preheater.counters.cancelled, 1);
});
