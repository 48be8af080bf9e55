import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeConfig } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import type { MasterClient } from '../master/master-client.ts';
import { SYNC_POLICY } from '../policy.ts';
import type { PackageStore } from '../store/package-store.ts';
import { within } from '../time-limit.ts';
import { FetchSlots } from './fetch-slots.ts';
import { yieldsToSyncs, type FetchView, type JobOutcome } from './fetch-view.ts';
import { asFetchError, FetchAttempts, PeerFetchError, type DownloadGuard, type SyncSettings } from './fetch-attempt.ts';
import { FetchError } from './fetch-package.ts';
import type { HashThread } from './hash-thread.ts';
import { backoffDelay, RetrySchedule, type RetryEntry } from './retry-schedule.ts';
import type { SiteTier } from '../site/site-tier.ts';
import { SyncJob, type JobRequest } from './sync-job.ts';

export type { DownloadGuard, SyncSettings } from './fetch-attempt.ts';
export type { JobRequest } from './sync-job.ts';

export interface SyncFailure {
  message: string;
  code: string;
  at: number;
  /** Consecutive failed jobs for this meeting (drives the poller's backoff). */
  failedJobs: number;
  /** The poller will not start another job before this time. */
  retryAt: number;
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
  /** The site tier: a package is fetched from its seed when that is another node; absent: always the master. */
  site?: SiteTier;
  /** Injectable for tests: jitter source and clock. */
  random?: () => number;
  now?: () => number;
}

/**
 * Runs package downloads: at most one job per meeting (single-flight), at most
 * maxConcurrentDownloads transfers at once, each job retrying with exponential backoff and jitter.
 * A failed job leaves the package already held (if any) untouched.
 */
export class SyncJobs {
  /** `progress` comes a few times a second at most, for status and admin consumers. */
  readonly events = new EventEmitter<{
    started: [FetchView];
    progress: [FetchView];
    succeeded: [FetchView, JobOutcome];
    failed: [FetchView, SyncFailure];
  }>();
  #jobs = new Map<string, SyncJob>();
  /** Failed jobs per meeting: the poller starts no job of it before their retry time. */
  #failures: RetrySchedule<{ message: string; code: string; failedAt: number }>;
  #slots: FetchSlots;
  #attempts: FetchAttempts;
  #deps: SyncJobsDeps;
  #random: () => number;
  #now: () => number;

  constructor(deps: SyncJobsDeps) {
    this.#deps = deps;
    this.#random = deps.random ?? Math.random;
    this.#now = deps.now ?? Date.now;
    this.#failures = new RetrySchedule({ now: this.#now, random: this.#random });
    this.#slots = new FetchSlots(() => deps.settings().maxConcurrentDownloads);
    this.#attempts = new FetchAttempts({ ...deps, now: this.#now, events: this.events });
  }

  /** The running job for this meeting, or a new one. */
  ensure(request: JobRequest): FetchView {
    const existing = this.#jobs.get(request.meetingId);
    let superseded: SyncJob | undefined;
    if (existing && !existing.settled) {
      // A preheat is the build of a meeting not started: once it is wanted as a sync (the meeting
      // started), nobody may be served from it. It is cancelled and the sync starts cleanly.
      if (!yieldsToSyncs(existing) || yieldsToSyncs(request)) {
        if (request.urgent) existing.markUrgent();
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

  /** Package bytes received from the master and from siblings since start, failed attempts included. */
  get fetchedBytes(): { master: number; peer: number } {
    return this.#attempts.fetchedBytes;
  }

  /** Jobs waiting for a fetch slot (a preheat: for the node to be idle). */
  get waitingForSlot(): number {
    return this.#slots.waiting;
  }

  /** The unsettled job for this meeting, if any. */
  inFlight(meetingId: string): FetchView | undefined {
    const job = this.#jobs.get(meetingId);
    return job && !job.settled ? job : undefined;
  }

  inFlightIds(): Set<string> {
    const ids = new Set<string>();
    for (const [id, job] of this.#jobs) if (!job.settled) ids.add(id);
    return ids;
  }

  /** Every job still known (running or the last settled one per meeting). */
  jobs(): FetchView[] {
    return [...this.#jobs.values()];
  }

  failure(meetingId: string): SyncFailure | undefined {
    const entry = this.#failures.get(meetingId);
    return entry && asSyncFailure(entry);
  }

  failures(): Map<string, SyncFailure> {
    return new Map(this.#failures.entries().map(([id, entry]) => [id, asSyncFailure(entry)]));
  }

  /** Cancels the meeting's download in progress, if any (a preheat giving the master's stream back). */
  cancel(meetingId: string, reason: string): void {
    this.#jobs.get(meetingId)?.cancel(reason);
  }

  /** Forget a meeting (it ended): cancel its job and drop its failure record. */
  forget(meetingId: string, reason: string): void {
    this.#jobs.get(meetingId)?.cancel(reason);
    this.#failures.clear(meetingId);
  }

  cancelAll(reason: string): void {
    for (const job of this.#jobs.values()) job.cancel(reason);
  }

  /** Waits until no job runs, or the timeout passes. */
  async drain(timeoutMs: number): Promise<boolean> {
    const pending = [...this.#jobs.values()].filter((job) => !job.settled).map((job) => job.done.catch(() => {}));
    if (pending.length === 0) return true;
    return within(Promise.all(pending).then(() => true), timeoutMs, false, { ref: false });
  }

  async #run(job: SyncJob): Promise<void> {
    const { logger } = this.#deps;
    let lastError: FetchError | null = null;
    const settings = this.#deps.settings();
    // A sibling failing a download costs no attempt of the master's, nor a backoff: the master is
    // asked at once, with every attempt it would have had.
    let attempts = settings.retryCount;
    let fallback = false;
    while (job.attempt < attempts) {
      const attempt = job.beginAttempt();
      if (attempt > 1 && !fallback) {
        const delay = backoffDelay(settings.retryDelayMs, attempt - 2, this.#random());
        logger.info(`sync ${job.meetingId}: attempt ${attempt}/${settings.retryCount} in ${(delay / 1000).toFixed(1)} s`);
        try {
          await sleep(delay, undefined, { signal: job.signal });
        } catch {
          lastError = job.signal.reason as FetchError;
          break;
        }
      }
      try {
        job.queued();
        await this.#slots.acquire(job);
      } catch (error) {
        lastError = asFetchError(error);
        break;
      }
      try {
        const outcome = await this.#attempts.run(job, settings);
        this.#failures.clear(job.meetingId);
        job.settle(outcome);
        this.events.emit('succeeded', job, outcome);
        return;
      } catch (error) {
        lastError = asFetchError(error);
        if (job.signal.aborted) break;
        fallback = error instanceof PeerFetchError;
        if (fallback) {
          attempts += 1;
          continue;
        }
        logger.warn(`sync ${job.meetingId}: attempt ${job.attempt}/${settings.retryCount} failed: ${lastError.message}`);
        if (!lastError.retryable) break;
      } finally {
        this.#slots.release(job);
      }
    }
    // Bytes kept for a next attempt that will not come: removed like any failed attempt's.
    await this.#attempts.discardKept(job);
    const error = lastError ?? new FetchError('no attempt was made', 'NO_ATTEMPT');
    const now = this.#now();
    const details = { message: error.message, code: error.code, failedAt: now };
    // Between jobs the wait goes on from where the job's own attempts left it.
    const retry = { firstDelayMs: settings.retryDelayMs, maxDelayMs: SYNC_POLICY.failedJobMaxDelayMs };
    const skip = settings.retryCount - 1;
    let failure: SyncFailure;
    // A cancellation is no failure to wait out; a failed preheat must not hold back the meeting's
    // sync at its start (the preheater keeps its own record).
    if (error.code === 'CANCELLED') failure = { message: error.message, code: error.code, at: now, failedJobs: (this.#failures.get(job.meetingId)?.failures ?? 0) + 1, retryAt: now };
    else if (yieldsToSyncs(job)) failure = asSyncFailure(this.#failures.next(job.meetingId, retry, details, skip));
    else failure = asSyncFailure(this.#failures.failed(job.meetingId, retry, details, skip));
    // A cancellation (the node stopping, a meeting ended, a preheat giving way) is not a fault.
    if (error.code === 'CANCELLED') logger.info(`sync ${job.meetingId} stopped: ${error.message}`);
    else logger.error(`sync ${job.meetingId} failed: ${error.message}`);
    job.settle(error);
    this.events.emit('failed', job, failure);
  }

}

/** The sync's settings from the node's config (network.*). */
export function syncSettings(config: NodeConfig): SyncSettings {
  return {
    maxConcurrentDownloads: config.network.maxConcurrentDownloads,
    retryCount: config.network.retryCount,
    retryDelayMs: config.network.retryDelay * 1000,
    idleTimeoutMs: config.network.downloadTimeout * 1000,
    connectTimeoutMs: config.network.connectionTimeout * 1000,
  };
}

function asSyncFailure(entry: RetryEntry & { message: string; code: string; failedAt: number }): SyncFailure {
  return { message: entry.message, code: entry.code, at: entry.failedAt, failedJobs: entry.failures, retryAt: entry.at };
}
