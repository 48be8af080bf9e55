import { statfs as statfsPromise } from 'node:fs/promises';

export interface DiskSpace {
  total: number;
  /** Free blocks, including those reserved for root. */
  free: number;
  /** Free to an unprivileged process: what the node can actually use. */
  available: number;
}

/** What the node needs of statfs(2); tests pass a fake to simulate a full disk. */
export type StatFs = (path: string) => Promise<{ blocks: number; bsize: number; bfree: number; bavail: number }>;

/** Reads the figures of the filesystem holding `path`. Rejects when statfs fails. */
export async function readDiskSpace(path: string, statfs: StatFs = statfsPromise): Promise<DiskSpace> {
  const s = await statfs(path);
  return { total: s.blocks * s.bsize, free: s.bfree * s.bsize, available: s.bavail * s.bsize };
}

/** A reader bound to one path that answers null instead of failing (a quota check must not crash the sync). */
export function diskSpaceReader(path: string, statfs: StatFs = statfsPromise): () => Promise<DiskSpace | null> {
  return () => readDiskSpace(path, statfs).catch(() => null);
}

/**
 * Disk figures of the storage filesystem: one statfs() at most every ttlMs, shared by concurrent
 * callers, so a status poll never touches the disk more than that.
 */
export class DiskSpaceProbe {
  #path: string;
  #ttlMs: number;
  #now: () => number;
  #last: { at: number; value: DiskSpace | null } | null = null;
  #pending: Promise<DiskSpace | null> | null = null;

  constructor(path: string, ttlMs = 5_000, now: () => number = Date.now) {
    this.#path = path;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  read(): Promise<DiskSpace | null> {
    if (this.#last && this.#now() - this.#last.at < this.#ttlMs) return Promise.resolve(this.#last.value);
    this.#pending ??= readDiskSpace(this.#path)
      .catch(() => null)
      .then((value) => {
        this.#last = { at: this.#now(), value };
        this.#pending = null;
        return value;
      });
    return this.#pending;
  }
}
