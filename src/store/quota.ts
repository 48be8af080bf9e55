/**
 * Storage quota and free-disk floor, as a pure planner: given what is held, what is pinned and what
 * the disk says, which packages to evict (least recently served first) and whether a download of a
 * given size can fit at all. The caller executes the plan (QuotaGuard) and owns every side effect.
 *
 * Two limits, both measured in bytes:
 * - the quota: `maxSize` (0 = none). Crossing `cleanupThreshold × maxSize` triggers eviction down to
 *   that mark; `maxSize` itself is the hard limit a download may not cross.
 * - the floor: the free disk space the node always leaves to the rest of the machine. Reaching it
 *   triggers eviction, and a download that would go below it is refused.
 * Packages of active meetings (and meetings with a download in flight) are pinned: a meeting that
 * is being held by tablets now is never traded for space.
 */

export interface QuotaPackage {
  meetingId: string;
  size: number;
  /** Epoch ms of the last download served from this node, or null if never served. */
  lastServedAt: number | null;
  /** Epoch ms the bytes arrived: the recency of a package never served yet. */
  fetchedAt: number;
  /** Active meeting or download in flight: never evicted. */
  pinned: boolean;
  /** Fetched ahead of a meeting not started: evicted only after every other candidate. */
  preheated?: boolean;
}

export interface QuotaPolicy {
  /** Bytes; 0 = no quota (the disk floor still applies). */
  maxSize: number;
  /** Fraction of maxSize (0.1..1) above which eviction starts. */
  cleanupThreshold: number;
  /** False: never evict for space (downloads that cannot fit are still refused). */
  autoCleanup: boolean;
  /** Free bytes the node never uses up on the storage filesystem. */
  freeFloorBytes: number;
}

export interface DiskFigures {
  /** Bytes free to an unprivileged process. */
  available: number;
  total: number;
}

export interface QuotaInput {
  packages: readonly QuotaPackage[];
  policy: QuotaPolicy;
  /** null when the filesystem could not be measured: only the quota is enforced then. */
  disk: DiskFigures | null;
  /** Bytes about to be written (not on disk yet): they must fit under the quota and above the floor. */
  reserveBytes?: number;
  /**
   * Bytes already in temp files of downloads in flight: they count against the quota, but the
   * disk figures already include them.
   */
  inFlightBytes?: number;
  /**
   * Fits only under the cleanup mark, not the quota: for a preheat, which the next enforcement
   * would otherwise evict again to get back under the mark (and the preheater fetch again).
   */
  fitUnderMark?: boolean;
}

export type QuotaLimit = 'quota' | 'disk';

export interface EvictionPlan {
  /** In eviction order (least recently served first). */
  evict: QuotaPackage[];
  /** Which limit asked for eviction; null when within both. */
  trigger: QuotaLimit | null;
  /** Bytes of packages plus temp files in flight, before and after the evictions. */
  usedBefore: number;
  usedAfter: number;
  /** Estimated free disk after the evictions (null when unknown). */
  availableAfter: number | null;
  /**
   * False when even after the plan the reserve does not fit under maxSize or above the floor:
   * the download asking for it must be refused. `blockedBy` says which limit.
   */
  fits: boolean;
  blockedBy: QuotaLimit | null;
  /** Bytes missing for the reserve to fit (0 when it fits). */
  shortfall: number;
}

/**
 * Plans evictions and answers "does the reserve fit". Deterministic: ties in recency go to the
 * larger package (frees more per eviction), then to the meeting id.
 */
export function planEviction(input: QuotaInput): EvictionPlan {
  const { policy, disk } = input;
  const reserve = Math.max(0, input.reserveBytes ?? 0);
  const usedBefore = sum(input.packages.map((p) => p.size)) + Math.max(0, input.inFlightBytes ?? 0);
  const quotaOn = policy.maxSize > 0;
  const mark = quotaOn ? policy.cleanupThreshold * policy.maxSize : Number.POSITIVE_INFINITY;

  let used = usedBefore;
  let available = disk ? disk.available : null;
  const overMark = () => used + reserve > mark;
  const underFloor = () => available !== null && available - reserve < policy.freeFloorBytes;

  const trigger: QuotaLimit | null = overMark() ? 'quota' : underFloor() ? 'disk' : null;
  const evict: QuotaPackage[] = [];
  if (trigger && policy.autoCleanup) {
    // Packages of meetings that ended go first; preheats (wanted for a coming start) last.
    const candidates = input.packages.filter((p) => !p.pinned).sort((a, b) => Number(a.preheated ?? false) - Number(b.preheated ?? false) || byLeastRecentlyServed(a, b));
    for (const pkg of candidates) {
      if (!overMark() && !underFloor()) break;
      evict.push(pkg);
      used -= pkg.size;
      if (available !== null) available += pkg.size;
    }
  }

  const ceiling = input.fitUnderMark ? mark : policy.maxSize;
  const quotaShortfall = quotaOn ? Math.max(0, used + reserve - ceiling) : 0;
  const diskShortfall = available === null ? 0 : Math.max(0, policy.freeFloorBytes - (available - reserve));
  const blockedBy: QuotaLimit | null = quotaShortfall > 0 ? 'quota' : diskShortfall > 0 ? 'disk' : null;
  return {
    evict,
    trigger,
    usedBefore,
    usedAfter: used,
    availableAfter: available,
    fits: blockedBy === null,
    blockedBy,
    shortfall: Math.max(quotaShortfall, diskShortfall),
  };
}

/** Least recently served first; a package never served counts from when it arrived. */
export function byLeastRecentlyServed(a: QuotaPackage, b: QuotaPackage): number {
  const recencyA = a.lastServedAt ?? a.fetchedAt;
  const recencyB = b.lastServedAt ?? b.fetchedAt;
  if (recencyA !== recencyB) return recencyA - recencyB;
  if (a.size !== b.size) return b.size - a.size;
  return a.meetingId < b.meetingId ? -1 : a.meetingId > b.meetingId ? 1 : 0;
}

/**
 * The free-disk floor for a filesystem of `totalBytes`: 5 % of it, at most 512 MiB. A small
 * volume keeps a proportional margin; a large one does not strand tens of gigabytes.
 */
export function defaultFreeFloor(totalBytes: number): number {
  return Math.min(512 * 1024 * 1024, Math.floor(totalBytes * 0.05));
}

/** "1.5 GiB": for messages an operator reads. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}
