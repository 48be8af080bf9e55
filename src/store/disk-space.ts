import checkDiskSpaceExport from 'check-disk-space';

export interface DiskSpace {
  total: number;
  /** Free bytes (what check-disk-space reports: available to this process). */
  free: number;
  /** Free to an unprivileged process: what the node can actually use. */
  available: number;
}

/** What the node needs of check-disk-space; tests pass a fake to simulate a full or failing disk. */
export type DiskReader = (path: string) => Promise<{ size: number; free: number }>;

// The package's types describe its CommonJS build (the function under `default`); loaded as ESM
// (tsx, the bundle) the default export is the function itself.
const checkDiskSpace = ((checkDiskSpaceExport as unknown as { default?: DiskReader }).default ?? checkDiskSpaceExport) as unknown as DiskReader;

/**
 * Reads the figures of the filesystem holding `path` through check-disk-space, the one way the
 * node measures a volume. Rejects when it cannot.
 */
export async function readDiskSpace(path: string, reader: DiskReader = checkDiskSpace): Promise<DiskSpace> {
  const { size, free } = await reader(path);
  return { total: size, free, available: free };
}

export interface DiskSpaceProbeOptions {
  /** How old the cached figures may get before a read starts a refresh (default 5 s). */
  ttlMs?: number;
  reader?: DiskReader;
  now?: () => number;
}

/**
 * Disk figures of one filesystem, cached off the hot path: check-disk-space runs `df` in a child
 * process, which a status request, a scrape or a quota check must never wait for. A read answers
 * the cached figures at once; stale ones start one refresh in the background (shared by every
 * caller). Only the very first read, with nothing cached yet, waits for the answer. null: the
 * figures could not be read (the quota guard then enforces the quota alone).
 */
export class DiskSpaceProbe {
  readonly path: string;
  readonly #ttlMs: number;
  readonly #reader: DiskReader;
  readonly #now: () => number;
  #last: { at: number; value: DiskSpace | null } | null = null;
  #pending: Promise<DiskSpace | null> | null = null;

  constructor(path: string, options: DiskSpaceProbeOptions = {}) {
    this.path = path;
    this.#ttlMs = options.ttlMs ?? 5_000;
    this.#reader = options.reader ?? checkDiskSpace;
    this.#now = options.now ?? Date.now;
  }

  /** The cached figures without touching the disk (null: none yet, or the last read failed). */
  get cached(): DiskSpace | null {
    return this.#last?.value ?? null;
  }

  /** Cached figures, refreshed in the background when older than the TTL. */
  read(): Promise<DiskSpace | null> {
    const last = this.#last;
    if (last && this.#now() - last.at < this.#ttlMs) return Promise.resolve(last.value);
    const refresh = this.refresh();
    return last ? Promise.resolve(last.value) : refresh;
  }

  /** Reads the figures now (joins a read in progress) and caches them. */
  refresh(): Promise<DiskSpace | null> {
    this.#pending ??= readDiskSpace(this.path, this.#reader)
      .catch(() => null)
      .then((value) => {
        this.#last = { at: this.#now(), value };
        this.#pending = null;
        return value;
      });
    return this.#pending;
  }
}
