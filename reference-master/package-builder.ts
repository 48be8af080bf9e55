// Builds packages into one temporary folder of the master, tracks builds in progress so close()
// can wait for them, and deletes the folder at close.
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildMeetingPackage, type BuiltPackage, type PackageDocument } from './packages.ts';
import type { BuildReason, BuildRecord } from './types.ts';

export interface BuildSpec {
  meetingId: string;
  title: string;
  documents: readonly PackageDocument[];
  packageSizeBytes: number | undefined;
  buildTime: Date;
}

export class PackageBuilder {
  readonly #tempParent: string;
  readonly #onBuilt: (record: BuildRecord) => void;
  readonly #builds = new Set<Promise<unknown>>();
  readonly #shutdown = new AbortController();
  #workDir: Promise<string> | null = null;

  constructor(tempParent: string, onBuilt: (record: BuildRecord) => void) {
    this.#tempParent = tempParent;
    this.#onBuilt = onBuilt;
  }

  async build(spec: BuildSpec, reason: BuildReason): Promise<BuiltPackage> {
    const work = (async () => {
      this.#workDir ??= mkdtemp(join(this.#tempParent, 'reference-master-'));
      const dir = await this.#workDir;
      const pkg = await buildMeetingPackage({
        dir,
        meetingId: spec.meetingId,
        title: spec.title,
        documents: spec.documents,
        ...(spec.packageSizeBytes ? { packageSizeBytes: spec.packageSizeBytes } : {}),
        buildTime: spec.buildTime,
        signal: this.#shutdown.signal,
      });
      this.#onBuilt({
        buildId: pkg.buildId,
        meetingId: spec.meetingId,
        reason,
        size: pkg.size,
        sha256: pkg.sha256,
        builtAt: pkg.builtAt,
      });
      return pkg;
    })();
    this.#builds.add(work);
    try {
      return await work;
    } finally {
      this.#builds.delete(work);
    }
  }

  /** Aborts builds in progress, waits for them, and deletes every package file. */
  async close(): Promise<void> {
    this.#shutdown.abort();
    await Promise.allSettled([...this.#builds]);
    if (this.#workDir) {
      const dir = await this.#workDir.catch(() => null);
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }
}
