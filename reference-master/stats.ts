// Counters of what nodes and tablets asked and got: requests, faults, downloads, bytes, builds.
import type { BuildRecord, DownloadCounters, MasterStats, RequestLogEntry } from './types.ts';

export type DownloadRoute = 'package' | 'tabletPackage';

function emptyStats(): MasterStats {
  return {
    requests: {},
    requestsTotal: 0,
    faultsApplied: {},
    heartbeats: 0,
    tokenChanges: 0,
    packagesBuilt: 0,
    packageDownloads: {},
    tabletDownloads: {},
    redirectsByNode: {},
    packageBytesSent: 0,
    tabletBytesSent: 0,
    packageBytesByBuild: {},
    packageBuilds: [],
    packageRequestsCutShort: 0,
    requestLog: [],
  };
}

export class StatsBook {
  readonly #requestLogLimit: number;
  #stats: MasterStats = emptyStats();

  constructor(requestLogLimit: number) {
    this.#requestLogLimit = requestLogLimit;
  }

  snapshot(): MasterStats {
    return structuredClone(this.#stats);
  }

  reset(): void {
    this.#stats = emptyStats();
  }

  /** Counts a request; admin requests count under 'admin' only. */
  request(entry: RequestLogEntry): void {
    const stats = this.#stats;
    stats.requests[entry.route] = (stats.requests[entry.route] ?? 0) + 1;
    if (entry.route === 'admin') return;
    stats.requestsTotal += 1;
    stats.requestLog.push(entry);
    if (stats.requestLog.length > this.#requestLogLimit) {
      stats.requestLog.splice(0, stats.requestLog.length - this.#requestLogLimit);
    }
  }

  fault(route: string): void {
    this.#stats.faultsApplied[route] = (this.#stats.faultsApplied[route] ?? 0) + 1;
  }

  heartbeat(): void {
    this.#stats.heartbeats += 1;
  }

  tokenChange(): void {
    this.#stats.tokenChanges += 1;
  }

  build(record: BuildRecord): void {
    this.#stats.packagesBuilt += 1;
    this.#stats.packageBuilds.push({ ...record });
  }

  redirect(address: string): void {
    this.#stats.redirectsByNode[address] = (this.#stats.redirectsByNode[address] ?? 0) + 1;
  }

  /**
   * Starts counting one download; the returned recorder adds its bytes and outcome. Its per-meeting
   * counters are the ones of its start (a reset in the middle does not count its end alone).
   */
  download(route: DownloadRoute, meetingId: string, buildId: string): {
    bytes(n: number): void;
    outcome(outcome: 'completed' | 'aborted' | 'faulted'): void;
  } {
    const counters = this.#counters(route, meetingId);
    counters.started += 1;
    return {
      bytes: (n) => {
        counters.bytesSent += n;
        if (route === 'package') {
          this.#stats.packageBytesSent += n;
          this.#stats.packageBytesByBuild[buildId] = (this.#stats.packageBytesByBuild[buildId] ?? 0) + n;
        } else {
          this.#stats.tabletBytesSent += n;
        }
      },
      outcome: (outcome) => {
        counters[outcome] += 1;
        if (route === 'package' && outcome === 'aborted') this.#stats.packageRequestsCutShort += 1;
      },
    };
  }

  #counters(route: DownloadRoute, meetingId: string): DownloadCounters {
    const table = route === 'package' ? this.#stats.packageDownloads : this.#stats.tabletDownloads;
    let counters = table[meetingId];
    if (!counters) {
      counters = { started: 0, completed: 0, aborted: 0, faulted: 0, bytesSent: 0 };
      table[meetingId] = counters;
    }
    return counters;
  }
}
