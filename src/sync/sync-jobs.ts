import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import type { MasterClient } from '../master/master-client.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import { FetchError, fetchPackage } from './fetch-package.ts';
import type { HashThread } from './hash-thread.ts';

/** 'preheat': a meeting not started yet (background priority; stored as not servable). */
export type FetchReason = 'new' | 'restarted' | 'token-changed' | 'retry' | 'requested' | 'preheat';
export type JobState = 'queued' | 'running' | 'backoff' | 'done' | 'failed';

export interface JobRequest {
  meetingId: string;
  title: string;
  /** The master's token when the job was asked for; recorded in the manifest. */
  token: string | null;
  reason: FetchReason;
  /** A tablet is waiting: jump the queue of jobs waiting for a download slot. */
  urgent?: boolean;
}

export interface SyncSettings {
  maxConcurrentDownloads: number;
  retryCount: number;
  retryDelayMs: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
}

export interface SyncFailure {
  message: string;
  code: string;
  at: number;
  /** Consecutive failed jobs for this meeting (drives the poller's backoff). */
  failedJobs: number;
  /** The poller will not start another job before this time. */
  retryAt: number;
}

export interface JobOutcome {
  pkg: StoredPackage;
  /** False when the fetched bytes equal the package already held (only the token was updated). */
  replaced: boolean;
}

export interface SyncJobsDeps {
  store: PackageStore;
  master: () => MasterClient;
  settings: () => SyncSettings;
  logger: Logger;
  /** Disk quota and free-space checks around each attempt (QuotaGuard); none when absent. */
  guard?: DownloadGuard;
  /** Computes each download's sha256 off the main thread; absent: on it. */
  hashes?: HashThread;
  /** Injectable for tests: jitter source and clock. */
  random?: () => number;
  now?: () => number;
}

/** Checks a download against the space it may use (implemented by QuotaGuard). */
export interface DownloadGuard {
  /** Before an attempt opens its temp file: may make room; throws (a FetchError) to refuse the attempt. */
  beforeAttempt(job: SyncJob): Promise<void>;
  /** As bytes reach the temp file; an error returned stops the attempt with that error. */
  onProgress(job: SyncJob, bytesWritten: number): Error | null;
  /** The attempt's temp file is gone: promoted (succeeded) or discarded. */
  attemptEnded(job: SyncJob, succeeded: boolean): void;
}

/** One download of one meeting's package, shared by everyone who needs it. */
/**
 * `progress`: the running total on disk and the buffers that just reached it (ending at that
 * total). Tablets served while downloading write those buffers on, instead of each reading them
 * back from the file.
 */
export class SyncJob extends EventEmitter<{ progress: [number, readonly Buffer[]]; settled: [] }> {
  readonly meetingId: string;
  readonly title: string;
  readonly reason: FetchReason;
  token: string | null;
  urgent: boolean;
  state: JobState = 'queued';
  attempt = 0;
  bytesWritten = 0;
  /** Bytes per second over the current attempt. */
  rate = 0;
  readonly createdAt: number;
  attemptStartedAt = 0;
  /** The temp file of the running attempt (readers may tail it); null between attempts. */
  tempPath: string | null = null;
  error: string | null = null;
  outcome: JobOutcome | null = null;
  readonly done: Promise<JobOutcome>;
  readonly controller = new AbortController();
  #resolve!: (outcome: JobOutcome) => void;
  #reject!: (error: Error) => void;

  constructor(request: JobRequest, now: number) {
    super();
    this.setMaxListeners(0);
    this.meetingId = request.meetingId;
    this.title = request.title;
    this.token = request.token;
    this.reason = request.reason;
    this.urgent = request.urgent ?? false;
    this.createdAt = now;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Nobody may be waiting on a failed background job; the failure is recorded elsewhere.
    this.done.catch(() => {});
  }

  get settled(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  cancel(reason: string): void {
    if (!this.settled) this.controller.abort(new FetchError(`cancelled: ${reason}`, 'CANCELLED', false));
  }

  settle(outcome: JobOutcome | Error): void {
    if (outcome instanceof Error) {
      this.state = 'failed';
      this.error = outcome.message;
      this.#reject(outcome);
    } else {
      this.state = 'done';
      this.outcome = outcome;
      this.#resolve(outcome);
    }
    this.emit('settled');
  }
}

/**
 * Runs package downloads: at most one job per meeting (single-flight), at most
 * maxConcurrentDownloads transfers at once, each job retrying with exponential backoff and jitter.
 * A failed job leaves the package already held (if any) untouched.
 */
export class SyncJobs {
  readonly events = new EventEmitter<{
    started: [SyncJob];
    progress: [SyncJob];
    succeeded: [SyncJob, JobOutcome];
    failed: [SyncJob, SyncFailure];
  }>();
  #jobs = new Map<string, SyncJob>();
  #failures = new Map<string, SyncFailure>();
  #waiting: Array<() => void> = [];
  #urgentWaiting: Array<() => void> = [];
  /** Preheat jobs waiting: they get a slot only when no other job runs or waits. */
  #backgroundWaiting: Array<() => void> = [];
  #running = 0;
  /** Preheats running (outside maxConcurrentDownloads: they never hold a slot another job needs). */
  #backgroundRunning = 0;
  #deps: SyncJobsDeps;
  #random: () => number;
  #now: () => number;

  constructor(deps: SyncJobsDeps) {
    this.#deps = deps;
    this.#random = deps.random ?? Math.random;
    this.#now = deps.now ?? Date.now;
  }

  /** The running job for this meeting, or a new one. */
  ensure(request: JobRequest): SyncJob {
    const existing = this.#jobs.get(request.meetingId);
    let superseded: SyncJob | undefined;
    if (existing && !existing.settled) {
      // A preheat is the build of a meeting not started: once it is wanted as a sync (the meeting
      // started), nobody may be served from it. It is cancelled and the sync starts cleanly.
      if (existing.reason !== 'preheat' || request.reason === 'preheat') {
        if (request.urgent && !existing.urgent) existing.urgent = true;
        return existing;
      }
      existing.cancel('the meeting started: syncing its own build');
      superseded = existing;
    }
    const job = new SyncJob(request, this.#now());
    this.#jobs.set(request.meetingId, job);
    void (superseded ? superseded.done.catch(() => {}).then(() => this.#run(job)) : this.#run(job));
    return job;
  }

  /** The unsettled job for this meeting, if any. */
  inFlight(meetingId: string): SyncJob | undefined {
    const job = this.#jobs.get(meetingId);
    return job && !job.settled ? job : undefined;
  }

  inFlightIds(): Set<string> {
    const ids = new Set<string>();
    for (const [id, job] of this.#jobs) if (!job.settled) ids.add(id);
    return ids;
  }

  /** Every job still known (running or the last settled one per meeting). */
  jobs(): SyncJob[] {
    return [...this.#jobs.values()];
  }

  failure(meetingId: string): SyncFailure | undefined {
    return this.#failures.get(meetingId);
  }

  failures(): Map<string, SyncFailure> {
    return new Map(this.#failures);
  }

  /** Forget a meeting (it ended): cancel its job and drop its failure record. */
  forget(meetingId: string, reason: string): void {
    this.#jobs.get(meetingId)?.cancel(reason);
    this.#failures.delete(meetingId);
  }

  cancelAll(reason: string): void {
    for (const job of this.#jobs.values()) job.cancel(reason);
  }

  /** Waits until no job runs, or the timeout passes. */
  async drain(timeoutMs: number): Promise<boolean> {
    const pending = [...this.#jobs.values()].filter((job) => !job.settled).map((job) => job.done.catch(() => {}));
    if (pending.length === 0) return true;
    const timer = sleep(timeoutMs, false, { ref: false });
    return Promise.race([Promise.all(pending).then(() => true), timer]);
  }

  async #acquire(job: SyncJob): Promise<void> {
    if (job.reason === 'preheat') {
      if (this.#backgroundRunning === 0 && this.#idle()) {
        this.#backgroundRunning++;
        return;
      }
    } else if (this.#running < this.#deps.settings().maxConcurrentDownloads) {
      this.#running++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        job.controller.signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        for (const queue of [this.#waiting, this.#urgentWaiting, this.#backgroundWaiting]) {
          const index = queue.indexOf(grant);
          if (index >= 0) queue.splice(index, 1);
        }
        reject(job.controller.signal.reason as Error);
      };
      job.controller.signal.addEventListener('abort', onAbort, { once: true });
      (job.reason === 'preheat' ? this.#backgroundWaiting : job.urgent ? this.#urgentWaiting : this.#waiting).push(grant);
    });
  }

  #idle(): boolean {
    return this.#running === 0 && this.#waiting.length === 0 && this.#urgentWaiting.length === 0;
  }

  #release(job: SyncJob): void {
    if (job.reason === 'preheat') {
      this.#backgroundRunning--;
    } else {
      // Hand the slot straight to the next waiter (urgent first) if the limit still allows it.
      const next = this.#running <= this.#deps.settings().maxConcurrentDownloads ? (this.#urgentWaiting.shift() ?? this.#waiting.shift()) : undefined;
      if (next) return next();
      this.#running--;
    }
    if (this.#backgroundRunning === 0 && this.#idle()) {
      const next = this.#backgroundWaiting.shift();
      if (next) {
        this.#backgroundRunning++;
        next();
      }
    }
  }

  async #run(job: SyncJob): Promise<void> {
    const { store, logger } = this.#deps;
    let lastError: FetchError | null = null;
    const settings = this.#deps.settings();
    for (job.attempt = 1; job.attempt <= settings.retryCount; job.attempt++) {
      if (job.attempt > 1) {
        job.state = 'backoff';
        const delay = backoffDelay(settings.retryDelayMs, job.attempt - 2, this.#random());
        logger.info(`sync ${job.meetingId}: attempt ${job.attempt}/${settings.retryCount} in ${(delay / 1000).toFixed(1)} s`);
        try {
          await sleep(delay, undefined, { signal: job.controller.signal });
        } catch {
          lastError = job.controller.signal.reason as FetchError;
          break;
        }
      }
      try {
        job.state = 'queued';
        await this.#acquire(job);
      } catch (error) {
        lastError = asFetchError(error);
        break;
      }
      try {
        const outcome = await this.#attempt(job, settings);
        this.#failures.delete(job.meetingId);
        job.settle(outcome);
        this.events.emit('succeeded', job, outcome);
        return;
      } catch (error) {
        lastError = asFetchError(error);
        logger.warn(`sync ${job.meetingId}: attempt ${job.attempt}/${settings.retryCount} failed: ${lastError.message}`);
        if (!lastError.retryable || job.controller.signal.aborted) break;
      } finally {
        this.#release(job);
      }
    }
    const error = lastError ?? new FetchError('no attempt was made', 'NO_ATTEMPT');
    const previous = this.#failures.get(job.meetingId);
    const failedJobs = (previous?.failedJobs ?? 0) + 1;
    const now = this.#now();
    const failure: SyncFailure = {
      message: error.message,
      code: error.code,
      at: now,
      failedJobs,
      // Between jobs, back off further each time (capped at 5 min) so a broken package
      // does not hammer a struggling master every poll.
      retryAt: error.code === 'CANCELLED' ? now : now + Math.min(300_000, backoffDelay(settings.retryDelayMs, failedJobs + settings.retryCount - 2, this.#random())),
    };
    // A failed preheat must not hold back the meeting's sync at its start: the preheater keeps its own record.
    if (error.code !== 'CANCELLED' && job.reason !== 'preheat') this.#failures.set(job.meetingId, failure);
    logger.error(`sync ${job.meetingId} failed: ${error.message}`);
    job.settle(error);
    this.events.emit('failed', job, failure);
  }

  async #attempt(job: SyncJob, settings: SyncSettings): Promise<JobOutcome> {
    const { store, logger, guard } = this.#deps;
    await guard?.beforeAttempt(job);
    // The guard stops an attempt that runs out of room through its own signal: aborting the job's
    // controller would read as a cancellation (no failure recorded, no retry later).
    const attemptAbort = new AbortController();
    const tempPath = await store.createTempPath(job.meetingId);
    job.state = 'running';
    job.bytesWritten = 0;
    job.rate = 0;
    job.attemptStartedAt = this.#now();
    job.tempPath = tempPath;
    this.events.emit('started', job);
    let lastEmit = 0;
    try {
      const fetched = await fetchPackage({
        master: this.#deps.master(),
        meetingId: job.meetingId,
        tempPath,
        idleTimeoutMs: settings.idleTimeoutMs,
        headersTimeoutMs: settings.idleTimeoutMs,
        signal: guard ? AbortSignal.any([job.controller.signal, attemptAbort.signal]) : job.controller.signal,
        hash: this.#deps.hashes ? (path) => (this.#deps.hashes as HashThread).create(path) : undefined,
        onProgress: (bytes, written) => {
          job.bytesWritten = bytes;
          const refusal = guard?.onProgress(job, bytes);
          if (refusal && !attemptAbort.signal.aborted) attemptAbort.abort(refusal);
          const now = this.#now();
          const elapsed = (now - job.attemptStartedAt) / 1000;
          job.rate = elapsed > 0 ? bytes / elapsed : 0;
          job.emit('progress', bytes, written);
          // Status/SSE consumers want a few updates a second, not one per chunk.
          if (now - lastEmit >= 250) {
            lastEmit = now;
            this.events.emit('progress', job);
          }
        },
      });
      if (job.controller.signal.aborted) throw job.controller.signal.reason;
      if (attemptAbort.signal.aborted) throw attemptAbort.signal.reason;
      const seconds = Math.max(0.001, (this.#now() - job.attemptStartedAt) / 1000);
      const mbps = fetched.size / 1e6 / seconds;
      const held = store.get(job.meetingId);
      let outcome: JobOutcome;
      const preheat = job.reason === 'preheat';
      // Same bytes as held: only the token is news; unless a preheat's bytes are now wanted as the sync.
      if (held && held.sha256 === fetched.sha256 && (held.source !== 'preheat' || preheat)) {
        await store.discardTemp(tempPath);
        await store.retag(job.meetingId, job.token);
        outcome = { pkg: store.get(job.meetingId) ?? held, replaced: false };
      } else {
        const pkg = await store.promote(job.meetingId, tempPath, {
          sha256: fetched.sha256,
          size: fetched.size,
          token: job.token,
          title: job.title,
          source: preheat ? 'preheat' : 'master',
        });
        outcome = { pkg, replaced: true };
      }
      logger.info(
        `sync ${job.meetingId}: ${fetched.size} bytes in ${seconds.toFixed(1)} s (${mbps.toFixed(2)} MB/s)` +
          `${outcome.replaced ? '' : ', unchanged'}, sha256 ${fetched.sha256.slice(0, 12)}…`,
      );
      guard?.attemptEnded(job, true);
      return outcome;
    } catch (error) {
      await store.discardTemp(tempPath).catch(() => {});
      guard?.attemptEnded(job, false);
      throw error;
    } finally {
      job.tempPath = null;
    }
  }
}

/** retryDelay × 2^step, with ±25 % jitter so nodes do not retry in lockstep. */
export function backoffDelay(baseMs: number, step: number, random: number): number {
  const exponential = baseMs * 2 ** Math.max(0, step);
  return Math.round(Math.min(600_000, exponential) * (0.75 + random * 0.5));
}

function asFetchError(error: unknown): FetchError {
  if (error instanceof FetchError) return error;
  const err = error as NodeJS.ErrnoException;
  return new FetchError(err?.message ?? String(error), err?.code ?? 'ERROR');
}
