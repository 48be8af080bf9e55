import type { NodeConfig } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import type { DiskSpace } from '../store/disk-space.ts';
import { awaitsStartCheck } from '../store/package-state.ts';
import type { PackageStore } from '../store/package-store.ts';
import { defaultFreeFloor, formatBytes, planEviction, type EvictionPlan, type QuotaPackage, type QuotaPolicy } from '../store/quota.ts';
import { evictsToFit, type FetchView } from './fetch-view.ts';
import { FetchError } from './fetch-package.ts';

export interface QuotaSettings {
  /** storage.maxSize: bytes, 0 = no quota. */
  maxSize: number;
  /** storage.cleanupThreshold */
  cleanupThreshold: number;
  /** storage.autoCleanup */
  autoCleanup: boolean;
  /** Free bytes always left on the storage filesystem; null = defaultFreeFloor(disk total). */
  freeFloorBytes?: number | null;
}

/** The guard's settings from the node's config (storage.*); the free-disk floor is the guard's own. */
export function quotaSettings(config: NodeConfig): QuotaSettings {
  const { maxSize, cleanupThreshold, autoCleanup } = config.storage;
  return { maxSize, cleanupThreshold, autoCleanup, freeFloorBytes: null };
}

export interface QuotaGuardDeps {
  store: PackageStore;
  settings: () => QuotaSettings;
  /** Figures of the storage filesystem; null when they cannot be read (only the quota applies then). */
  disk: () => Promise<DiskSpace | null>;
  /**
   * Active meetings as of the last successful poll; null before the first one. Nothing is evicted
   * while this is null: without a poll the node cannot tell a pinned package from an old one.
   */
  activeIds: () => ReadonlySet<string> | null;
  /** Meetings with a download in flight: pinned too. */
  inFlightIds: () => ReadonlySet<string>;
  /** Epoch ms of the last download served for a meeting (ServeStats), null if never. */
  lastServedAt: (meetingId: string) => number | null;
  logger: Logger;
  now?: () => number;
  /** Minimum gap between two statfs calls while downloads are writing (default 1 s). */
  diskProbeIntervalMs?: number;
}

/** What a download attempt is, as far as the guard cares: its meeting, and whether it may evict to fit (evictsToFit). */
export type GuardedJob = Pick<FetchView, 'meetingId'> & Partial<Pick<FetchView, 'reason'>>;

export interface QuotaEviction {
  at: number;
  meetingIds: string[];
  bytes: number;
  trigger: 'quota' | 'disk';
}

export interface QuotaRefusal {
  at: number;
  meetingId: string;
  code: 'QUOTA_EXCEEDED' | 'DISK_FULL';
  message: string;
}

export interface QuotaState {
  lastEviction: QuotaEviction | null;
  lastRefusal: QuotaRefusal | null;
  /** Bytes written by downloads in flight (temp files), counted against the quota. */
  inFlightBytes: number;
}

/**
 * Executes the quota planner (store/quota.ts) for a running node: evicts after each successful
 * poll and before each download attempt, refuses a download that cannot fit, and stops one that
 * outgrows the space while it is written. Evicting goes through PackageStore.remove, which drops
 * the package from memory before unlinking it: tablets already downloading it keep their open fd
 * and finish on the unlinked inode.
 *
 * The size of a package is not known before its download ends (the master streams it without a
 * Content-Length), so a download is admitted on the size of the version held (a refresh) or the
 * size a previous attempt proved it exceeds, and checked again as its bytes arrive.
 */
export class QuotaGuard {
  #deps: QuotaGuardDeps;
  #now: () => number;
  #probeIntervalMs: number;
  /** Bytes on disk per running attempt (temp files). */
  #attempts = new Map<GuardedJob, number>();
  /** A package proved larger than this by an attempt stopped for lack of space. */
  #atLeast = new Map<string, number>();
  /** Meetings whose downloads were preheats: never active yet, their proven sizes are kept. */
  #preheats = new Set<string>();
  /** Evictions run one at a time: two plans made on the same state would evict twice as much. */
  #chain: Promise<unknown> = Promise.resolve();
  #evictionQueued = false;
  #disk: { value: DiskSpace | null; at: number; writtenAt: number } | null = null;
  #probing = false;
  /** Monotonic count of bytes written by all attempts: the disk estimate between probes. */
  #written = 0;
  #lastEviction: QuotaEviction | null = null;
  #lastRefusal: QuotaRefusal | null = null;

  constructor(deps: QuotaGuardDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#probeIntervalMs = deps.diskProbeIntervalMs ?? 1_000;
  }

  get state(): QuotaState {
    return { lastEviction: this.#lastEviction, lastRefusal: this.#lastRefusal, inFlightBytes: this.#inFlightBytes() };
  }

  /** Evicts what the limits ask for (after a successful poll). Resolves with the plan executed. */
  enforce(): Promise<EvictionPlan> {
    return this.#serialized(async () => {
      // A meeting that ended may come back with another package: what its old one proved is moot.
      const active = this.#deps.activeIds();
      if (active) for (const id of this.#atLeast.keys()) if (!active.has(id) && !this.#preheats.has(id)) this.#atLeast.delete(id);
      const disk = await this.#probeDisk();
      return this.#execute(this.#plan(disk, 0, new Set()));
    });
  }

  /**
   * Before a download attempt: makes room for what the package is known to need and throws a
   * non-retryable FetchError (QUOTA_EXCEEDED or DISK_FULL) when it cannot fit. The poller tries
   * again after the job's backoff, by when meetings may have ended.
   */
  beforeAttempt(job: GuardedJob): Promise<void> {
    if (!evictsToFit(job)) this.#preheats.add(job.meetingId);
    return this.#serialized(async () => {
      const disk = await this.#probeDisk();
      const held = this.#deps.store.get(job.meetingId)?.size ?? 0;
      // At least one byte: a quota filled to the brim admits nothing, whatever the size.
      const need = Math.max(1, held, this.#atLeast.get(job.meetingId) ?? 0);
      const plan = await this.#execute(this.#plan(disk, need, new Set([job.meetingId]), !evictsToFit(job)));
      if (!plan.fits) throw this.#refuse(job.meetingId, plan, need, 'before');
    });
  }

  /**
   * As bytes reach an attempt's temp file (synchronous: called per write). Returns the error that
   * must stop the attempt when it no longer fits even after evicting everything evictable; when
   * evicting is enough, starts the eviction and lets the download go on.
   */
  onProgress(job: GuardedJob, bytesWritten: number): FetchError | null {
    const previous = this.#attempts.get(job) ?? 0;
    this.#attempts.set(job, bytesWritten);
    this.#written += Math.max(0, bytesWritten - previous);
    this.#maybeRefreshDisk();

    const settings = this.#deps.settings();
    const inFlight = this.#inFlightBytes();
    // A preheat must stay under the cleanup mark (see planEviction's fitUnderMark).
    const ceiling = !evictsToFit(job) ? settings.cleanupThreshold * settings.maxSize : settings.maxSize;
    const overQuota = settings.maxSize > 0 && this.#deps.store.usedBytes() + inFlight > ceiling;
    const disk = this.#estimatedDisk();
    const underFloor = disk !== null && disk.available < this.#floor(settings, disk);
    if (!overQuota && !underFloor) return null;

    const plan = this.#plan(disk, 0, new Set([job.meetingId]), !evictsToFit(job));
    if (!plan.fits) {
      this.#atLeast.set(job.meetingId, Math.max(bytesWritten + 1, this.#atLeast.get(job.meetingId) ?? 0));
      return this.#refuse(job.meetingId, plan, bytesWritten, 'during');
    }
    if (plan.evict.length > 0 && !this.#evictionQueued) {
      this.#evictionQueued = true;
      void this.#serialized(async () => {
        this.#evictionQueued = false;
        await this.#execute(this.#plan(this.#estimatedDisk(), 0, new Set()));
      }).catch((error: Error) => this.#deps.logger.error(`quota: eviction failed: ${error.message}`));
    }
    return null;
  }

  /** The attempt's temp file is gone (discarded or promoted into a package). */
  attemptEnded(job: GuardedJob, succeeded: boolean): void {
    this.#attempts.delete(job);
    if (succeeded) {
      this.#atLeast.delete(job.meetingId);
      this.#preheats.delete(job.meetingId);
    }
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(task, task);
    this.#chain = run.catch(() => {});
    return run;
  }

  #inFlightBytes(): number {
    let total = 0;
    for (const bytes of this.#attempts.values()) total += bytes;
    return total;
  }

  #floor(settings: QuotaSettings, disk: DiskSpace): number {
    return settings.freeFloorBytes ?? defaultFreeFloor(disk.total);
  }

  /**
   * `need`: bytes the requesting download is expected to add; `pinnedToo`: meetings it is for;
   * `pinAll`: a preheat asks (it may not take anyone's place: it fits as things are, or waits).
   */
  #plan(disk: DiskSpace | null, need: number, pinnedToo: ReadonlySet<string>, pinAll = false): EvictionPlan {
    const settings = this.#deps.settings();
    const active = this.#deps.activeIds();
    const inFlight = this.#deps.inFlightIds();
    const packages: QuotaPackage[] = this.#deps.store.list().map((pkg) => ({
      meetingId: pkg.meetingId,
      size: pkg.size,
      lastServedAt: this.#deps.lastServedAt(pkg.meetingId),
      fetchedAt: Date.parse(pkg.fetchedAt) || 0,
      pinned: pinAll || active === null || active.has(pkg.meetingId) || inFlight.has(pkg.meetingId) || pinnedToo.has(pkg.meetingId),
      preheated: awaitsStartCheck(pkg),
    }));
    const policy: QuotaPolicy = {
      maxSize: settings.maxSize,
      cleanupThreshold: settings.cleanupThreshold,
      // Before the first successful poll nothing is known to be inactive.
      autoCleanup: settings.autoCleanup && active !== null,
      freeFloorBytes: disk ? this.#floor(settings, disk) : 0,
    };
    return planEviction({
      packages,
      policy,
      disk: disk ? { available: disk.available, total: disk.total } : null,
      reserveBytes: need,
      inFlightBytes: this.#inFlightBytes(),
      fitUnderMark: pinAll,
    });
  }

  async #execute(plan: EvictionPlan): Promise<EvictionPlan> {
    if (plan.evict.length === 0 || plan.trigger === null) return plan;
    const settings = this.#deps.settings();
    const removed: string[] = [];
    let bytes = 0;
    for (const pkg of plan.evict) {
      // The plan was made a moment ago: a meeting may have become active or started syncing since.
      const active = this.#deps.activeIds();
      if (active === null || active.has(pkg.meetingId) || this.#deps.inFlightIds().has(pkg.meetingId)) continue;
      const current = this.#deps.store.get(pkg.meetingId);
      if (!current) continue;
      if (await this.#deps.store.remove(pkg.meetingId, 'quota')) {
        removed.push(pkg.meetingId);
        bytes += current.size;
        const served = pkg.lastServedAt === null ? 'never served' : `last served ${new Date(pkg.lastServedAt).toISOString()}`;
        this.#deps.logger.info(
          `quota: evicted meeting ${pkg.meetingId} (${formatBytes(current.size)}, ${served}): ` +
            (plan.trigger === 'quota'
              ? `storage above ${Math.round(settings.cleanupThreshold * 100)} % of ${formatBytes(settings.maxSize)}`
              : 'free disk space under the floor'),
        );
      }
    }
    if (removed.length > 0) {
      this.#lastEviction = { at: this.#now(), meetingIds: removed, bytes, trigger: plan.trigger };
      // The freed space shows in statfs only once the last reader of each file closes it.
      this.#disk = null;
    }
    return plan;
  }

  #refuse(meetingId: string, plan: EvictionPlan, need: number, when: 'before' | 'during'): FetchError {
    const settings = this.#deps.settings();
    const code = plan.blockedBy === 'disk' ? 'DISK_FULL' : 'QUOTA_EXCEEDED';
    const size =
      when === 'during'
        ? `the package is larger than ${formatBytes(need)}`
        : need > 1
          ? `the package needs about ${formatBytes(need)}`
          : 'no room for a new package';
    const message =
      code === 'QUOTA_EXCEEDED'
        ? `storage quota full: ${size}, ${formatBytes(plan.usedAfter)} of storage.maxSize ${formatBytes(settings.maxSize)} ` +
          `held by packages that cannot be evicted (active meetings${settings.autoCleanup ? '' : '; storage.autoCleanup is off'}); ` +
          'raise storage.maxSize or end meetings'
        : `disk almost full: ${size}, ${formatBytes(Math.max(0, plan.availableAfter ?? 0))} free and the node keeps ` +
          `${formatBytes(this.#disk?.value ? this.#floor(settings, this.#disk.value) : 0)} free for the system; free disk space`;
    const prefix = when === 'during' ? 'download stopped' : 'download refused';
    // A refusal repeats every retry while nothing changes: log it once.
    if (when === 'during' || this.#lastRefusal?.message !== message) this.#deps.logger.warn(`quota: ${meetingId}: ${prefix}: ${message}`);
    this.#lastRefusal = { at: this.#now(), meetingId, code, message };
    return new FetchError(`${prefix}: ${message}`, code, false);
  }

  async #probeDisk(): Promise<DiskSpace | null> {
    const writtenAt = this.#written;
    const value = await this.#deps.disk();
    this.#disk = { value, at: this.#now(), writtenAt };
    return value;
  }

  #maybeRefreshDisk(): void {
    if (this.#probing) return;
    if (this.#disk && this.#now() - this.#disk.at < this.#probeIntervalMs) return;
    this.#probing = true;
    void this.#probeDisk().finally(() => {
      this.#probing = false;
    });
  }

  /** The last statfs, less what downloads wrote since (the disk fills between probes). */
  #estimatedDisk(): DiskSpace | null {
    const last = this.#disk?.value;
    if (!last || !this.#disk) return null;
    const since = this.#written - this.#disk.writtenAt;
    return { ...last, available: last.available - since, free: last.free - since };
  }
}
