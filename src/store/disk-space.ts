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
