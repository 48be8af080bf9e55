import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import { SYNC_POLICY } from '../policy.ts';
import { within } from '../time-limit.ts';
import type { MasterClient } from '../master/master-client.ts';
import type { PackageStore } from '../store/package-store.ts';
import { mayBeServed } from '../store/package-state.ts';
import { storedSource, yieldsToSyncs, type AttemptStatus, type DownloadListener, type DownloadView, type FetchReason, type FetchSource, type JobOutcome, type JobState } from './download-view.ts';
import { FetchError, fetchPackage, type OpenPackage } from './fetch-package.ts';
import type { HashThread } from './hash-thread.ts';
import { backoffDelay, RetrySchedule, type RetryEntry } from './retry-schedule.ts';
import type { SiteTier } from './site-tier.ts';

export interface JobRequest {
  meetingId: string;
  title: string;
  /** The master's token when the job was asked for; recorded in the manifest. */
  token: string | null;
  reason: FetchReason;
  /** A tablet is waiting: jump the queue of jobs waiting for a download slot. */
  urgent?: boolean;
  /** Asked for by a sibling node: fetched from the master, never from a sibling (no loops). */
  forPeer?: boolean;
  /** The build (zip-lead.ts buildId) a probe found current: a sibling's bytes must be it... */
  build?: string | null;
  /** ...or carry its documents (documentsId): a seed's confirmed preheat stands for that build. */
  documents?: string | null;
  /**
   * Builds a sibling's bytes must not be: the ones held when the meeting was seen to end and start
   * again (a seed that missed the restart still holds them under the current token).
   */
  notBuilds?: readonly string[];
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

/** Checks a download against the space it may use (implemented by QuotaGuard). */
export interface DownloadGuard {
  /** Before an attempt opens its temp file: may make room; throws (a FetchError) to refuse the attempt. */
  beforeAttempt(download: DownloadView): Promise<void>;
  /** As bytes reach the temp file; an error returned stops the attempt with that error. */
  onProgress(download: DownloadView, bytesWritten: number): Error | null;
  /** The attempt's temp file is gone: promoted (succeeded) or discarded. */
  attemptEnded(download: DownloadView, succeeded: boolean): void;
}

/**
 * One download of one meeting's package, shared by everyone who needs it. Its state changes only
 * through its own methods, called by SyncJobs (and by tests driving a download); everyone else
 * holds it as a DownloadView.
 */
export class SyncJob implements DownloadView {
  readonly meetingId: string;
  readonly title: string;
  readonly reason: FetchReason;
  /** The master's token when the job was asked for; recorded in the manifest. */
  readonly token: string | null;
  readonly forPeer: boolean;
  readonly build: string | null;
  readonly documents: string | null;
  readonly notBuilds: readonly string[];
  readonly createdAt: number;
  readonly done: Promise<JobOutcome>;
  #urgent: boolean;
  #source: FetchSource = MASTER;
  /** A sibling failed this download: the attempts left go to the master. */
  #peerFailed = false;
  #state: JobState = 'queued';
  #attempt = 0;
  #bytesWritten = 0;
  #rate = 0;
  #attemptStartedAt = 0;
  #tempPath: string | null = null;
  #error: string | null = null;
  #outcome: JobOutcome | null = null;
  #controller = new AbortController();
  #resolve!: (outcome: JobOutcome) => void;
  #reject!: (error: Error) => void;
  #listeners = new Set<DownloadListener>();
  /** #listeners as an array, rebuilt when membership changes: notifying allocates nothing. */
  #notified: readonly DownloadListener[] = [];

  constructor(request: JobRequest, now: number) {
    this.meetingId = request.meetingId;
    this.title = request.title;
    this.token = request.token;
    this.reason = request.reason;
    this.forPeer = request.forPeer ?? false;
    this.build = request.build ?? null;
    this.documents = request.documents ?? null;
    this.notBuilds = request.notBuilds ?? [];
    this.#urgent = request.urgent ?? false;
    this.createdAt = now;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Nobody may be waiting on a failed background job; the failure is recorded elsewhere.
    this.done.catch(() => {});
  }

  get urgent(): boolean {
    return this.#urgent;
  }
  get source(): FetchSource {
    return this.#source;
  }
  get peerFailed(): boolean {
    return this.#peerFailed;
  }
  get state(): JobState {
    return this.#state;
  }
  get attempt(): number {
    return this.#attempt;
  }
  get bytesWritten(): number {
    return this.#bytesWritten;
  }
  get rate(): number {
    return this.#rate;
  }
  get attemptStartedAt(): number {
    return this.#attemptStartedAt;
  }
  get tempPath(): string | null {
    return this.#tempPath;
  }
  get error(): string | null {
    return this.#error;
  }
  get outcome(): JobOutcome | null {
    return this.#outcome;
  }
  get settled(): boolean {
    return this.#state === 'done' || this.#state === 'failed';
  }
  /** Aborted when the job is cancelled. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  attemptStatus(attempt: number): AttemptStatus {
    if (this.settled) {
      if (this.#outcome && this.#attempt === attempt) return { kind: 'succeeded', size: this.#outcome.pkg.size };
      return { kind: 'failed', reason: this.#error ?? 'the download failed' };
    }
    if (this.#attempt !== attempt) return { kind: 'failed', reason: `download attempt ${attempt} failed; attempt ${this.#attempt} starts over` };
    // Between the end of the attempt and the job settling there is nothing new to read.
    return { kind: 'running', available: this.#tempPath === null ? 0 : this.#bytesWritten };
  }

  subscribe(listener: DownloadListener): () => void {
    this.#listeners.add(listener);
    this.#notified = [...this.#listeners];
    return () => {
      if (this.#listeners.delete(listener)) this.#notified = [...this.#listeners];
    };
  }

  /** A tablet is waiting now. */
  markUrgent(): void {
    this.#urgent = true;
  }

  /** The next attempt begins (waiting out its backoff first, after the first). */
  beginAttempt(): number {
    this.#attempt += 1;
    this.#state = this.#attempt > 1 ? 'backoff' : 'queued';
    if (this.#attempt > 1) {
      const attempt = this.#attempt;
      const listeners = this.#notified;
      for (let i = 0; i < listeners.length; i++) listeners[i]!.restarted?.(attempt);
    }
    return this.#attempt;
  }

  /** The next attempt fetches from `source`. */
  fetchFrom(source: FetchSource): void {
    this.#source = source;
  }

  /** The sibling this download came from failed it: no more attempts from siblings. */
  markPeerFailed(): void {
    this.#peerFailed = true;
  }

  /** The attempt waits for a download slot. */
  queued(): void {
    this.#state = 'queued';
  }

  /** The attempt writes `tempPath` from now on. */
  running(tempPath: string, now: number): void {
    this.#state = 'running';
    this.#bytesWritten = 0;
    this.#rate = 0;
    this.#attemptStartedAt = now;
    this.#tempPath = tempPath;
  }

  /** `written` just reached the temp file, ending at offset `total`. */
  wrote(total: number, written: readonly Buffer[], now: number): void {
    this.#bytesWritten = total;
    const elapsed = (now - this.#attemptStartedAt) / 1000;
    this.#rate = elapsed > 0 ? total / elapsed : 0;
    const attempt = this.#attempt;
    const listeners = this.#notified;
    for (let i = 0; i < listeners.length; i++) listeners[i]!.bytes?.(attempt, total, written);
  }

  /** The attempt's temp file was promoted or discarded: nothing more to read from it. */
  endAttempt(): void {
    this.#tempPath = null;
  }

  cancel(reason: string): void {
    if (!this.settled) this.#controller.abort(new FetchError(`cancelled: ${reason}`, 'CANCELLED', false));
  }

  settle(outcome: JobOutcome | Error): void {
    if (outcome instanceof Error) {
      this.#state = 'failed';
      this.#error = outcome.message;
      this.#reject(outcome);
    } else {
      this.#state = 'done';
      this.#outcome = outcome;
      this.#resolve(outcome);
    }
    const listeners = this.#notified;
    for (let i = 0; i < listeners.length; i++) listeners[i]!.settled?.(outcome);
  }
}

/**
 * Runs package downloads: at most one job per meeting (single-flight), at most
 * maxConcurrentDownloads transfers at once, each job retrying with exponential backoff and jitter.
 * A failed job leaves the package already held (if any) untouched.
 */
export class SyncJobs {
  /** `progress` comes a few times a second at most, for status and admin consumers. */
  readonly events = new EventEmitter<{
    started: [DownloadView];
    progress: [DownloadView];
    succeeded: [DownloadView, JobOutcome];
    failed: [DownloadView, SyncFailure];
  }>();
  #jobs = new Map<string, SyncJob>();
  /** Failed jobs per meeting: the poller starts no job of it before their retry time. */
  #failures: RetrySchedule<{ message: string; code: string; failedAt: number }>;
  #waiting: Array<() => void> = [];
  #urgentWaiting: Array<() => void> = [];
  /** Preheat jobs waiting: they get a slot only when no other job runs or waits. */
  #backgroundWaiting: Array<() => void> = [];
  #running = 0;
  /** Package bytes received, by where they came from (failed attempts included). */
  #fetchedBytes = { master: 0, peer: 0 };
  /** Preheats running (outside maxConcurrentDownloads: they never hold a slot another job needs). */
  #backgroundRunning = 0;
  #deps: SyncJobsDeps;
  #random: () => number;
  #now: () => number;

  constructor(deps: SyncJobsDeps) {
    this.#deps = deps;
    this.#random = deps.random ?? Math.random;
    this.#now = deps.now ?? Date.now;
    this.#failures = new RetrySchedule({ now: this.#now, random: this.#random });
  }

  /** The running job for this meeting, or a new one. */
  ensure(request: JobRequest): DownloadView {
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
    return { ...this.#fetchedBytes };
  }

  /** The unsettled job for this meeting, if any. */
  inFlight(meetingId: string): DownloadView | undefined {
    const job = this.#jobs.get(meetingId);
    return job && !job.settled ? job : undefined;
  }

  inFlightIds(): Set<string> {
    const ids = new Set<string>();
    for (const [id, job] of this.#jobs) if (!job.settled) ids.add(id);
    return ids;
  }

  /** Every job still known (running or the last settled one per meeting). */
  jobs(): DownloadView[] {
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

  async #acquire(job: SyncJob): Promise<void> {
    if (yieldsToSyncs(job)) {
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
        job.signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        for (const queue of [this.#waiting, this.#urgentWaiting, this.#backgroundWaiting]) {
          const index = queue.indexOf(grant);
          if (index >= 0) queue.splice(index, 1);
        }
        reject(job.signal.reason as Error);
      };
      job.signal.addEventListener('abort', onAbort, { once: true });
      (yieldsToSyncs(job) ? this.#backgroundWaiting : job.urgent ? this.#urgentWaiting : this.#waiting).push(grant);
    });
  }

  #idle(): boolean {
    return this.#running === 0 && this.#waiting.length === 0 && this.#urgentWaiting.length === 0;
  }

  #release(job: SyncJob): void {
    if (yieldsToSyncs(job)) {
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
        await this.#acquire(job);
      } catch (error) {
        lastError = asFetchError(error);
        break;
      }
      try {
        const outcome = await this.#attempt(job, settings);
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
        this.#release(job);
      }
    }
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

  /** Where this attempt fetches from: the meeting's seed when that is another node, else the master. */
  async #pickSource(job: SyncJob): Promise<FetchSource> {
    const site = this.#deps.site;
    if (!site || job.forPeer || job.peerFailed) return MASTER;
    try {
      const seed = await site.seedFor(job.meetingId);
      return seed === null ? MASTER : { kind: 'peer', node: seed };
    } catch {
      return MASTER;
    }
  }

  async #attempt(job: SyncJob, settings: SyncSettings): Promise<JobOutcome> {
    const { store, logger, guard } = this.#deps;
    const source = await this.#pickSource(job);
    job.fetchFrom(source);
    const site = this.#deps.site;
    const seed = source.kind === 'peer' ? source.node : null;
    const open: OpenPackage | undefined =
      seed !== null && site ? (options) => site.openFromSeed(seed, job.meetingId, { token: job.token, build: job.build, notBuilds: job.notBuilds }, options) : undefined;
    await guard?.beforeAttempt(job);
    // The guard stops an attempt that runs out of room through its own signal: aborting the job's
    // controller would read as a cancellation (no failure recorded, no retry later).
    const attemptAbort = new AbortController();
    const tempPath = await store.createTempPath(job.meetingId);
    job.running(tempPath, this.#now());
    this.events.emit('started', job);
    let lastEmit = 0;
    let counted = 0;
    try {
      const fetched = await fetchPackage({
        master: this.#deps.master(),
        open,
        meetingId: job.meetingId,
        tempPath,
        idleTimeoutMs: settings.idleTimeoutMs,
        headersTimeoutMs: settings.idleTimeoutMs,
        signal: guard ? AbortSignal.any([job.signal, attemptAbort.signal]) : job.signal,
        hash: this.#deps.hashes ? (path) => (this.#deps.hashes as HashThread).create(path) : undefined,
        onProgress: (bytes, written) => {
          const refusal = guard?.onProgress(job, bytes);
          if (refusal && !attemptAbort.signal.aborted) attemptAbort.abort(refusal);
          const now = this.#now();
          this.#fetchedBytes[source.kind] += bytes - counted;
          counted = bytes;
          job.wrote(bytes, written, now);
          // Status/SSE consumers want a few updates a second, not one per chunk.
          if (now - lastEmit >= SYNC_POLICY.progressEventMs) {
            lastEmit = now;
            this.events.emit('progress', job);
          }
        },
      });
      if (job.signal.aborted) throw job.signal.reason;
      if (attemptAbort.signal.aborted) throw attemptAbort.signal.reason;
      // A seed's bytes of an equivalent build (same documents) stand for the build asked for.
      const standsFor = seed !== null && site ? await site.verify(seed, job.meetingId, fetched, tempPath, job, job.signal) : null;
      const seconds = Math.max(0.001, (this.#now() - job.attemptStartedAt) / 1000);
      const mbps = fetched.size / 1e6 / seconds;
      const held = store.get(job.meetingId);
      let outcome: JobOutcome;
      // Same bytes as held: only the token is news; unless a preheat's bytes are now wanted as the sync.
      if (held && held.sha256 === fetched.sha256 && (mayBeServed(held) || yieldsToSyncs(job))) {
        await store.discardTemp(tempPath);
        await store.retag(job.meetingId, job.token, standsFor);
        outcome = { pkg: store.get(job.meetingId) ?? held, replaced: false };
      } else {
        const pkg = await store.promote(job.meetingId, tempPath, {
          sha256: fetched.sha256,
          size: fetched.size,
          token: job.token,
          title: job.title,
          source: storedSource(job),
          standsFor,
        });
        outcome = { pkg, replaced: true };
      }
      if (seed !== null) site?.peerFetched();
      logger.info(
        `sync ${job.meetingId}: ${fetched.size} bytes${seed === null ? '' : ` from ${seed}`} in ${seconds.toFixed(1)} s (${mbps.toFixed(2)} MB/s)` +
          `${outcome.replaced ? '' : ', unchanged'}, sha256 ${fetched.sha256.slice(0, 12)}…`,
      );
      guard?.attemptEnded(job, true);
      return outcome;
    } catch (error) {
      await store.discardTemp(tempPath).catch(() => {});
      guard?.attemptEnded(job, false);
      // A sibling's failure of any kind (not a cancel or a full disk): the master is asked next.
      if (seed !== null && site && !job.signal.aborted && !attemptAbort.signal.aborted) {
        const reason = asFetchError(error).message;
        site.fellBack(seed, job.meetingId, reason);
        job.markPeerFailed();
        throw new PeerFetchError(reason);
      }
      throw error;
    } finally {
      job.endAttempt();
    }
  }
}

const MASTER: FetchSource = Object.freeze({ kind: 'master' });

/** A sibling failed an attempt: the next one goes to the master at once. */
class PeerFetchError extends FetchError {
  constructor(message: string) {
    super(message, 'PEER_FAILED', true);
  }
}

function asSyncFailure(entry: RetryEntry & { message: string; code: string; failedAt: number }): SyncFailure {
  return { message: entry.message, code: entry.code, at: entry.failedAt, failedJobs: entry.failures, retryAt: entry.at };
}

function asFetchError(error: unknown): FetchError {
  if (error instanceof FetchError) return error;
  const err = error as NodeJS.ErrnoException;
  return new FetchError(err?.message ?? String(error), err?.code ?? 'ERROR');
}
