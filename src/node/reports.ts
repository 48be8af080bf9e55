import type { EventEmitter } from 'node:events';
import { AdminEventHub } from '../http/admin/events.ts';
import { NodeMetrics, type MetricsSources } from '../http/admin/metrics.ts';
import { PackageHolders } from '../http/admin/package-holders.ts';
import { TrafficHistory } from '../http/admin/traffic-history.ts';
import { bytesServedToTablets } from '../http/peer-serving.ts';
import type { LogRing } from '../log/log-ring.ts';
import type { NodeEventMap } from '../node-events.ts';
import type { NodePolicy } from '../policy.ts';
import type { DiskSpaceProbe } from '../store/disk-space.ts';
import type { PackageStore } from '../store/package-store.ts';
import type { Preheater } from '../sync/preheat.ts';
import type { Reconciler } from '../sync/reconciler.ts';
import type { SyncJobs } from '../sync/sync-jobs.ts';
import type { ServeStats } from '../http/serve-stats.ts';
import type { Maintenance } from './maintenance.ts';
import type { PreheatSchedule } from './preheat-schedule.ts';
import { buildStatus, type NodeRuntime, type StatusSources } from './status.ts';

export interface ReportsParts extends Pick<StatusSources, 'config' | 'quota' | 'announcer' | 'site' | 'peers'> {
  store: PackageStore;
  jobs: SyncJobs;
  sync: Reconciler;
  stats: ServeStats;
  preheater: Preheater;
  preheatTask: Pick<PreheatSchedule, 'nextRunAt'>;
  maintenance: Pick<Maintenance, 'scrubStatus' | 'scrubFigures'>;
  disk: Pick<DiskSpaceProbe, 'read'>;
  logs: LogRing;
  /** Service stop/start and applied config changes. */
  nodeEvents: EventEmitter<NodeEventMap>;
  policy: Pick<NodePolicy, 'trafficSampleMs' | 'trafficSamples'>;
  serving: () => boolean;
  nodeId: () => string;
  version: string;
  startedAt: number;
  runtime: () => NodeRuntime;
}

/**
 * What the node reports about itself, each built once from its parts: /api/status, /metrics, the
 * panel's chart (bytes per second, tablets holding each package) and its event stream.
 */
export class NodeReports {
  readonly metrics: NodeMetrics;
  readonly traffic: TrafficHistory;
  readonly events: AdminEventHub;
  readonly #holders: PackageHolders;
  readonly #status: StatusSources;
  readonly #disk: Pick<DiskSpaceProbe, 'read'>;

  constructor(parts: ReportsParts) {
    const { store, jobs, sync, stats, peers, preheater } = parts;
    this.#disk = parts.disk;
    const site: MetricsSources['site'] = { tier: parts.site, peers };
    this.metrics = new NodeMetrics({
      jobs,
      sync,
      store,
      stats,
      serving: parts.serving,
      site,
      nodeId: parts.nodeId,
      version: parts.version,
      startedAt: parts.startedAt,
      storage: {
        usedBytes: () => store.usedBytes() + parts.quota.state.inFlightBytes,
        quotaBytes: () => parts.config().storage.maxSize,
        disk: () => parts.disk.read(),
      },
      scrub: () => parts.maintenance.scrubFigures(),
      preheat: preheater,
    });
    this.#holders = new PackageHolders(stats, store);
    this.traffic = new TrafficHistory({
      totals: () => ({ servedTablets: bytesServedToTablets(stats, peers), servedPeers: peers.bytes, fetchedMaster: jobs.fetchedBytes.master }),
      holders: () => this.#holders.counts(),
      intervalMs: parts.policy.trafficSampleMs,
      samples: parts.policy.trafficSamples,
    });
    this.events = new AdminEventHub({ jobs, sync, store, logs: parts.logs, node: parts.nodeEvents, serving: parts.serving, traffic: this.traffic });
    this.#status = {
      config: parts.config,
      sync,
      jobs,
      store,
      stats,
      quota: parts.quota,
      announcer: parts.announcer,
      maintenance: () => ({ scrub: parts.maintenance.scrubStatus() }),
      site: parts.site,
      peers,
      preheat: {
        upcoming: () => preheater.upcoming(),
        get counters() {
          return preheater.counters;
        },
        get lastScan() {
          return preheater.lastScan;
        },
        nextScanAt: () => parts.preheatTask.nextRunAt(),
      },
      runtime: parts.runtime,
    };
  }

  /** Starts sampling the panel's chart. */
  start(): void {
    this.traffic.start();
  }

  /** The /api/status document. */
  async status() {
    return buildStatus(this.#status, await this.#disk.read());
  }

  /** The node stops: the panel's streams close and the chart stops sampling (metrics stay until the drain ends). */
  closeFeeds(): void {
    this.events.close();
    this.traffic.stop();
    this.#holders.close();
  }
}
