/**
 * One attempt of a download (SyncJobs runs the retries): where its bytes come from (the meeting's
 * seed, else the master), fetching them to a temp file within the disk guard's limits, checking a
 * sibling's bytes, and promote-or-retag into the store.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../log/logger.ts';
import type { MasterClient } from '../master/master-client.ts';
import { SYNC_POLICY } from '../policy.ts';
import { mayBeServed } from '../store/package-state.ts';
import type { PackageStore } from '../store/package-store.ts';
import { storedSource, yieldsToSyncs, type FetchView, type FetchSource, type JobOutcome } from './fetch-view.ts';
import { FetchError, fetchPackage, type OpenPackage } from './fetch-package.ts';
import type { HashThread } from './hash-thread.ts';
import type { SiteTier } from '../site/site-tier.ts';
import { MASTER, type KeptDownload, type SyncJob } from './sync-job.ts';

export interface SyncSettings {
  maxConcurrentDownloads: number;
  retryCount: number;
  retryDelayMs: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
}

/** Checks a download against the space it may use (implemented by QuotaGuard). */
export interface DownloadGuard {
  /** Before an attempt opens its temp file: may make room; throws (a FetchError) to refuse the attempt. */
  beforeAttempt(download: FetchView): Promise<void>;
  /** As bytes reach the temp file; an error returned stops the attempt with that error. */
  onProgress(download: FetchView, bytesWritten: number): Error | null;
  /** The attempt's temp file is gone: promoted (succeeded) or discarded. */
  attemptEnded(download: FetchView, succeeded: boolean): void;
}

export interface AttemptDeps {
  store: PackageStore;
  master: () => MasterClient;
  logger: Logger;
  guard?: DownloadGuard;
  hashes?: HashThread;
  site?: SiteTier;
  now: () => number;
  /** Where 'started' and (a few times a second) 'progress' of each attempt are told. */
  events: Pick<EventEmitter<{ started: [FetchView]; progress: [FetchView] }>, 'emit'>;
}

export class FetchAttempts {
  #deps: AttemptDeps;
  /** Package bytes received, by where they came from (failed attempts included). */
  #fetchedBytes = { master: 0, peer: 0 };

  constructor(deps: AttemptDeps) {
    this.#deps = deps;
  }

  /** Package bytes received from the master and from siblings since start, failed attempts included. */
  get fetchedBytes(): { master: number; peer: number } {
    return { ...this.#fetchedBytes };
  }

  /** Discards the temp file a job kept from a failed attempt, if any (the job ends). */
  async discardKept(job: SyncJob): Promise<void> {
    const kept = job.takeKept();
    if (kept) await this.#discardKept(job, kept);
  }

  async #discardKept(job: SyncJob, kept: KeptDownload): Promise<void> {
    this.#deps.logger.debug(`sync ${job.meetingId}: discarding the ${kept.resume.bytes} bytes kept (the next source cannot go on from them)`);
    await this.#discardAttempt(job, kept.tempPath);
  }

  async #discardAttempt(job: SyncJob, tempPath: string): Promise<void> {
    await this.#deps.store.discardTemp(tempPath).catch(() => {});
    this.#deps.guard?.attemptEnded(job, false);
  }

  /** Where this attempt fetches from: the meeting's seed when that is another node, else the master. */
  async #chooseSource(job: SyncJob): Promise<FetchSource> {
    const site = this.#deps.site;
    if (!site || job.forPeer || job.peerFailed) return MASTER;
    try {
      const seed = await site.seedFor(job.meetingId);
      return seed === null ? MASTER : { kind: 'peer', node: seed };
    } catch {
      return MASTER;
    }
  }

  /**
   * One attempt of `job`: its source chosen, the bytes fetched to a temp file, checked, and
   * promoted (or, the same bytes as held, only retagged). A sibling's failure throws PeerFetchError.
   */
  async run(job: SyncJob, settings: SyncSettings): Promise<JobOutcome> {
    const { store, logger, guard } = this.#deps;
    const source = await this.#chooseSource(job);
    job.fetchFrom(source);
    const site = this.#deps.site;
    const seed = source.kind === 'peer' ? source.node : null;
    // Bytes kept of an abandoned seed's package go on only with a sibling: the master ignores Range.
    let kept = job.takeKept();
    if (kept && seed === null) {
      await this.#discardKept(job, kept);
      kept = null;
    }
    /** The headers of the seed's answer, once it answered: what a failure may keep the bytes on. */
    let answered: Record<string, string> | null = null;
    const open: OpenPackage | undefined =
      seed !== null && site
        ? async (options) => {
            const response = await site.openFromSeed(seed, job.meetingId, { token: job.token, build: job.build, notBuilds: job.notBuilds }, options, kept?.resume ?? null);
            answered = response.headers;
            return response;
          }
        : undefined;
    // A seed silent for peers.stallTimeout that does not answer its health probe is abandoned.
    const seedWatch = seed !== null && site ? site.watchSeed(seed) : null;
    try {
      await guard?.beforeAttempt(job);
    } catch (error) {
      if (kept) await this.#discardKept(job, kept);
      seedWatch?.stop();
      throw error;
    }
    // The guard stops an attempt that runs out of room through its own signal: aborting the job's
    // controller would read as a cancellation (no failure recorded, no retry later).
    const attemptAbort = new AbortController();
    const tempPath = kept?.tempPath ?? (await store.createTempPath(job.meetingId));
    job.running(tempPath, this.#deps.now());
    this.#deps.events.emit('started', job);
    let lastEmit = 0;
    try {
      const fetched = await fetchPackage({
        master: this.#deps.master(),
        open,
        meetingId: job.meetingId,
        tempPath,
        keptBytes: kept?.resume.bytes,
        idleTimeoutMs: settings.idleTimeoutMs,
        headersTimeoutMs: settings.idleTimeoutMs,
        signal: guard || seedWatch ? AbortSignal.any([job.signal, attemptAbort.signal, ...(seedWatch ? [seedWatch.signal] : [])]) : job.signal,
        hash: this.#deps.hashes ? (path) => (this.#deps.hashes as HashThread).create(path) : undefined,
        onProgress: (bytes, written) => {
          seedWatch?.progressed();
          const refusal = guard?.onProgress(job, bytes);
          if (refusal && !attemptAbort.signal.aborted) attemptAbort.abort(refusal);
          const now = this.#deps.now();
          // Counted by what arrived: the total includes the bytes kept from an earlier attempt.
          for (const buffer of written) this.#fetchedBytes[source.kind] += buffer.length;
          job.wrote(bytes, written, now);
          // Status/SSE consumers want a few updates a second, not one per chunk.
          if (now - lastEmit >= SYNC_POLICY.progressEventMs) {
            lastEmit = now;
            this.#deps.events.emit('progress', job);
          }
        },
      });
      if (job.signal.aborted) throw job.signal.reason;
      if (attemptAbort.signal.aborted) throw attemptAbort.signal.reason;
      seedWatch?.stop();
      // Spliced bytes that are not the package both seeds named (the kept ones were bad): dropped
      // whole, without blaming the seed that sent the rest (its signature is checked below).
      if (kept && fetched.resumedFrom > 0 && fetched.sha256 !== kept.resume.sha256) {
        throw new FetchError(`the ${fetched.resumedFrom} bytes kept and the rest from ${seed} are not the package's sha256`, 'RESUME_MISMATCH');
      }
      // A seed's bytes of an equivalent build (same documents) stand for the build asked for.
      const standsFor = seed !== null && site ? await site.verify(seed, job.meetingId, fetched, tempPath, job, job.signal) : null;
      const seconds = Math.max(0.001, (this.#deps.now() - job.attemptStartedAt) / 1000);
      const mbps = (fetched.size - fetched.resumedFrom) / 1e6 / seconds;
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
      if (seed !== null) site?.peerFetched(fetched.resumedFrom);
      const resumed = fetched.resumedFrom > 0 ? `, the first ${fetched.resumedFrom} kept from the seed abandoned` : '';
      logger.info(
        `sync ${job.meetingId}: ${fetched.size} bytes${seed === null ? '' : ` from ${seed}`}${resumed} in ${seconds.toFixed(1)} s (${mbps.toFixed(2)} MB/s)` +
          `${outcome.replaced ? '' : ', unchanged'}, sha256 ${fetched.sha256.slice(0, 12)}…`,
      );
      guard?.attemptEnded(job, true);
      return outcome;
    } catch (error) {
      // A sibling's failure of any kind (not a cancel or a full disk): the next healthy member when
      // the seed is gone, else the master, is asked next.
      if (seed !== null && site && !job.signal.aborted && !attemptAbort.signal.aborted) {
        const failure = seedWatch?.signal.aborted ? (seedWatch.signal.reason as Error & { code?: string }) : asFetchError(error);
        seedWatch?.stop();
        const handedOver = site.fellBack(seed, job.meetingId, failure);
        if (!handedOver) job.markPeerFailed();
        // Handed over to the next member: what came of the seed's package may spare it those bytes
        // (a seed that never answered left the bytes kept before it as they were).
        const resume = !handedOver
          ? null
          : answered === null
            ? (kept?.resume ?? null)
            : await site.resumePoint(seed, job.meetingId, answered, tempPath, job.bytesWritten, job).catch(() => null);
        if (resume) {
          // Still on disk: the guard goes on counting it until it is used or discarded.
          job.keep({ tempPath, resume });
          logger.info(`sync ${job.meetingId}: keeping the ${resume.bytes} bytes received of ${resume.size} for the next member to go on from`);
        } else {
          await this.#discardAttempt(job, tempPath);
        }
        throw new PeerFetchError(failure.message);
      }
      await this.#discardAttempt(job, tempPath);
      throw error;
    } finally {
      seedWatch?.stop();
      job.endAttempt();
    }
  }
}

/** A sibling failed an attempt: the next one goes at once to the next healthy member or the master. */
export class PeerFetchError extends FetchError {
  constructor(message: string) {
    super(message, 'PEER_FAILED', true);
  }
}

export function asFetchError(error: unknown): FetchError {
  if (error instanceof FetchError) return error;
  const err = error as NodeJS.ErrnoException;
  return new FetchError(err?.message ?? String(error), err?.code ?? 'ERROR');
}
