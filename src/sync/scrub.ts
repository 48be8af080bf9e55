import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import { formatBytes } from '../store/quota.ts';
import { FileReadError, HashThreadError } from './hash-thread.ts';

/** Read errors that are the machine's state, not the file's: the package is skipped, not quarantined. */
const RESOURCE_SHORTAGE = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN', 'EINTR']);

/**
 * The scrub: every stored package hashed again and compared with its manifest, so bit rot or a
 * hand-edited file is found by the node, not by a tablet. Hashing runs on the hash thread, one
 * package and one slice at a time, held back while tablets download or packages sync. A package
 * that no longer matches is quarantined: removed from the store (never served again, no longer
 * reported synced) and left to the next reconcile, which fetches it again if its meeting is active.
 */

export interface ScrubFinding {
  meetingId: string;
  /** What was wrong, for the operator. */
  reason: string;
  /** The manifest's sha256 and size. */
  expectedSha256: string;
  actualSha256: string | null;
  at: number;
}

export interface ScrubReport {
  trigger: 'schedule' | 'manual';
  startedAt: number;
  finishedAt: number | null;
  /** Packages hashed to the end (skipped ones, replaced or removed meanwhile, not counted). */
  checked: number;
  /** Packages that could not be read for a reason that is not the file's (out of descriptors): kept, checked next time. */
  skipped: number;
  bytes: number;
  /** Time spent waiting for a busy node. */
  pausedMs: number;
  findings: ScrubFinding[];
  /** Set when the scrub stopped early (node stopping, hash thread gone). */
  error: string | null;
}

export interface ScrubTotals {
  runs: number;
  packagesChecked: number;
  bytesChecked: number;
  packagesQuarantined: number;
}

/** What the node is doing now, as the master's heartbeat reports it too. */
export interface NodeLoad {
  /** Tablets (and siblings) downloading from this node. */
  activeDownloads: number;
  /** Packages being fetched. */
  syncing: number;
}

/** The scrub counts the node busy while anything transfers: its reads would compete with them. */
function busy(load: NodeLoad): boolean {
  return load.activeDownloads > 0 || load.syncing > 0;
}

export interface ScrubberDeps {
  store: Pick<PackageStore, 'list' | 'get' | 'remove'>;
  /** sha256 of a stored file's first `size` bytes, slice by slice (HashThread.hashStored). */
  hash: (path: string, size: number, options: { sliceBytes: number; beforeSlice: () => Promise<void> }) => Promise<string>;
  /** Tablet downloads and package syncs running now: while any runs, the scrub waits between slices. */
  load: () => NodeLoad;
  /** A package was quarantined (the node polls, so an active meeting's package is fetched again). */
  onQuarantined: (meetingId: string) => void;
  logger: Logger;
  now?: () => number;
  sliceBytes?: number;
  /** How often a paused scrub looks again whether the node is still busy. */
  busyCheckMs?: number;
  /** Most a scrub waits before one slice: a node that is never idle still gets scrubbed, slowly. */
  maxPauseMs?: number;
}

export class Scrubber {
  readonly #deps: ScrubberDeps;
  readonly #now: () => number;
  #running: { report: ScrubReport; done: Promise<ScrubReport>; controller: AbortController } | null = null;
  #last: ScrubReport | null = null;
  #totals: ScrubTotals = { runs: 0, packagesChecked: 0, bytesChecked: 0, packagesQuarantined: 0 };

  constructor(deps: ScrubberDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** The scrub in progress (its figures so far), or null. */
  get current(): ScrubReport | null {
    return this.#running ? { ...this.#running.report, findings: [...this.#running.report.findings] } : null;
  }

  /** The last finished scrub, or null. */
  get last(): ScrubReport | null {
    return this.#last;
  }

  get totals(): ScrubTotals {
    return { ...this.#totals };
  }

  /** Scrubs every stored package now; joins the scrub in progress. */
  run(trigger: ScrubReport['trigger'] = 'manual'): Promise<ScrubReport> {
    if (this.#running) return this.#running.done;
    const report: ScrubReport = { trigger, startedAt: this.#now(), finishedAt: null, checked: 0, skipped: 0, bytes: 0, pausedMs: 0, findings: [], error: null };
    const controller = new AbortController();
    const done = this.#scrub(report, controller.signal).finally(() => {
      this.#running = null;
    });
    this.#running = { report, done, controller };
    return done;
  }

  /** Stops the scrub in progress (the node stops); resolves once it has. */
  async stop(): Promise<void> {
    const running = this.#running;
    if (!running) return;
    running.controller.abort();
    await running.done;
  }

  async #scrub(report: ScrubReport, signal: AbortSignal): Promise<ScrubReport> {
    const { logger, store } = this.#deps;
    const packages = store.list();
    logger.info(`scrub: checking ${packages.length} package(s) (${formatBytes(packages.reduce((sum, p) => sum + p.size, 0))})`);
    for (const pkg of packages) {
      if (signal.aborted) {
        report.error = 'stopped';
        break;
      }
      try {
        await this.#check(pkg, report, signal);
      } catch (error) {
        if (signal.aborted) {
          report.error = 'stopped';
          break;
        }
        report.error = (error as Error).message;
        logger.error(`scrub: stopped: ${report.error}`);
        break;
      }
    }
    report.finishedAt = this.#now();
    this.#last = report;
    this.#totals.runs++;
    const found = report.findings.length;
    const summary =
      `scrub: ${report.checked} package(s), ${formatBytes(report.bytes)} checked in ${Math.round((report.finishedAt - report.startedAt) / 1000)} s` +
      `${report.pausedMs > 0 ? ` (${Math.round(report.pausedMs / 1000)} s paused for a busy node)` : ''}: ` +
      (found === 0 ? 'all match their manifests' : `${found} quarantined`);
    if (found > 0) logger.warn(summary);
    else logger.info(summary);
    return report;
  }

  async #check(pkg: StoredPackage, report: ScrubReport, signal: AbortSignal): Promise<void> {
    const { store } = this.#deps;
    // Replaced or removed since the list was taken: its successor was verified as it arrived.
    const unchanged = () => {
      const now = store.get(pkg.meetingId);
      return now !== undefined && now.inode === pkg.inode && now.sha256 === pkg.sha256;
    };
    if (!unchanged()) return;
    const info = await stat(pkg.path).catch((error: NodeJS.ErrnoException) => error);
    if (info instanceof Error) {
      if (info.code !== 'ENOENT') throw info;
      if (unchanged()) await this.#quarantine(pkg, report, 'package.zip is missing', null);
      return;
    }
    if (info.size !== pkg.size) {
      if (unchanged()) await this.#quarantine(pkg, report, `package.zip is ${info.size} bytes, its manifest says ${pkg.size}`, null);
      return;
    }
    let actual: string;
    try {
      actual = await this.#deps.hash(pkg.path, pkg.size, {
        sliceBytes: this.#deps.sliceBytes ?? 16 * 1024 * 1024,
        beforeSlice: () => this.#whenIdle(report, signal),
      });
    } catch (error) {
      if (signal.aborted) throw error;
      // The hash thread failing (closed, crashed, could not start) says nothing about the file:
      // the scrub stops, and the next one tries again. Deleting an intact package mid-meeting
      // would cost tablets and the master far more than a scrub put off.
      if (error instanceof HashThreadError) throw error;
      if (!unchanged()) return;
      const message = (error as Error).message;
      // Out of descriptors or memory (a tablet herd), or not a read error at all: skip, not quarantine.
      if (!(error instanceof FileReadError) || RESOURCE_SHORTAGE.has(error.code)) {
        report.skipped++;
        this.#deps.logger.warn(`scrub: meeting ${pkg.meetingId}: not checked this time (${message}); kept`);
        return;
      }
      await this.#quarantine(pkg, report, `package.zip cannot be read (${message})`, null);
      return;
    }
    report.checked++;
    report.bytes += pkg.size;
    this.#totals.packagesChecked++;
    this.#totals.bytesChecked += pkg.size;
    if (actual !== pkg.sha256 && unchanged()) {
      await this.#quarantine(pkg, report, 'sha256 does not match the manifest (bit rot or an edited file)', actual);
    }
  }

  async #quarantine(pkg: StoredPackage, report: ScrubReport, reason: string, actual: string | null): Promise<void> {
    const { store, logger } = this.#deps;
    report.findings.push({ meetingId: pkg.meetingId, reason, expectedSha256: pkg.sha256, actualSha256: actual, at: this.#now() });
    this.#totals.packagesQuarantined++;
    logger.warn(`scrub: meeting ${pkg.meetingId}: ${reason}; quarantined (no longer served; fetched again if its meeting is active)`);
    await store.remove(pkg.meetingId, 'scrub');
    this.#deps.onQuarantined(pkg.meetingId);
  }

  /** Waits while the node is busy (bounded by maxPauseMs); rejects once the scrub is stopped. */
  async #whenIdle(report: ScrubReport, signal: AbortSignal): Promise<void> {
    const step = this.#deps.busyCheckMs ?? 1_000;
    const max = this.#deps.maxPauseMs ?? 60_000;
    let waited = 0;
    while (busy(this.#deps.load()) && waited < max) {
      signal.throwIfAborted();
      await sleep(step, undefined, { signal }).catch(() => {});
      waited += step;
      report.pausedMs += step;
    }
    signal.throwIfAborted();
  }
}
