import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { MasterClient, type HeartbeatPayload, type MasterClientOptions, type MeetingStatus } from '../../master/master-client.ts';
import type { PackageStore } from '../../store/package-store.ts';
import type { JobOutcome, SyncFailure, SyncJob, SyncJobs } from '../../sync/sync-jobs.ts';
import type { Preheater } from '../../sync/preheat.ts';
import type { SyncLoop } from '../../sync/sync-loop.ts';
import type { DownloadStats } from '../download-stats.ts';

export interface MetricsSources {
  jobs: SyncJobs;
  sync: SyncLoop;
  store: PackageStore;
  stats: DownloadStats;
  running: () => boolean;
  nodeId: () => string;
  version: string;
  startedAt: number;
  /** Meetings scheduled soon and their preheat state (absent: no preheat metrics). */
  preheat?: Pick<Preheater, 'upcoming' | 'counters'>;
}

export type MasterCall = 'register' | 'heartbeat' | 'unregister' | 'status';

/**
 * Prometheus metrics of one node, in a registry of its own (two nodes in one process, as in the
 * tests, must not share or clash). Counters of things that happen are fed by the sync events;
 * figures kept elsewhere (bytes served, package count) are read when scraped.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly #syncs: Counter<'result'>;
  readonly #duration: Histogram<'result'>;
  readonly #bytesFetched: Counter;
  readonly #polls: Counter<'result'>;
  readonly #pollFailures: Counter;
  readonly #heartbeatFailures: Counter;
  readonly #masterRequests: Counter<'call' | 'result'>;
  #unsubscribe: Array<() => void> = [];
  /** Bytes of each running job already counted (progress events report totals, not deltas). */
  #counted = new WeakMap<SyncJob, number>();

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    const { jobs, sync, store, stats } = sources;
    this.#syncs = new Counter({
      name: 'meeting_edge_syncs_total',
      help: 'Finished package syncs by result (success: new bytes stored; unchanged: same bytes as held; failure; cancelled).',
      labelNames: ['result'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'meeting_edge_sync_duration_seconds',
      help: 'Time from a sync job being asked for to its end, retries included.',
      labelNames: ['result'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.#bytesFetched = new Counter({ name: 'meeting_edge_sync_bytes_fetched_total', help: 'Package bytes received from the master, failed attempts included (up to their last progress report).', registers });
    this.#polls = new Counter({ name: 'meeting_edge_master_polls_total', help: 'Polls of the master for active meetings, by result.', labelNames: ['result'], registers });
    this.#pollFailures = new Counter({ name: 'meeting_edge_master_poll_failures_total', help: 'Failed polls of the master for active meetings.', registers });
    this.#heartbeatFailures = new Counter({ name: 'meeting_edge_master_heartbeat_failures_total', help: 'Heartbeats the master did not accept.', registers });
    this.#masterRequests = new Counter({
      name: 'meeting_edge_master_requests_total',
      help: 'Registry and status calls to the master, by call and result.',
      labelNames: ['call', 'result'],
      registers,
    });
    let servedSeen = 0;
    new Counter({
      name: 'meeting_edge_bytes_served_total',
      help: 'Package bytes sent to tablets.',
      registers,
      collect() {
        const total = stats.totalBytesServed;
        if (total > servedSeen) this.inc(total - servedSeen);
        servedSeen = total;
      },
    });
    new Gauge({ name: 'meeting_edge_active_downloads', help: 'Package downloads being served to tablets now.', registers, collect() { this.set(stats.activeDownloads); } });
    new Gauge({ name: 'meeting_edge_syncs_in_flight', help: 'Package syncs from the master running or waiting now.', registers, collect() { this.set(jobs.inFlightIds().size); } });
    new Gauge({ name: 'meeting_edge_packages', help: 'Complete packages held in storage.', registers, collect() { this.set(store.list().length); } });
    new Gauge({ name: 'meeting_edge_package_bytes', help: 'Bytes of the complete packages held in storage.', registers, collect() { this.set(store.usedBytes()); } });
    new Gauge({ name: 'meeting_edge_active_meetings', help: 'Meetings the master listed as active at the last successful poll.', registers, collect() { this.set(sync.activeMeetings().length); } });
    new Gauge({ name: 'meeting_edge_service_running', help: '1 while the service runs, 0 while the operator has stopped it.', registers, collect() { this.set(sources.running() ? 1 : 0); } });
    new Gauge({
      name: 'meeting_edge_master_reachable',
      help: '1 if the last poll of the master succeeded.',
      registers,
      collect() {
        this.set(sync.lastSuccess !== null && sync.lastError === null ? 1 : 0);
      },
    });
    new Gauge({
      name: 'meeting_edge_last_successful_poll_timestamp_seconds',
      help: 'Unix time of the last successful poll of the master (0: none yet).',
      registers,
      collect() {
        this.set(sync.lastSuccess ? sync.lastSuccess.at / 1000 : 0);
      },
    });
    const preheat = sources.preheat;
    if (preheat) {
      new Gauge({
        name: 'meeting_edge_preheat_meetings',
        help: 'Meetings not started in the preheat window, by preheat state (waiting, preheating, ready, stale).',
        labelNames: ['state'],
        registers,
        collect() {
          const counts: Record<string, number> = { waiting: 0, preheating: 0, ready: 0, stale: 0 };
          for (const m of preheat.upcoming()) counts[m.preheat] = (counts[m.preheat] ?? 0) + 1;
          for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
        },
      });
      new Gauge({
        name: 'meeting_edge_preheat_ready_bytes',
        help: 'Bytes of preheated packages held, ready for their meeting\'s start.',
        registers,
        collect() {
          this.set(store.list().filter((p) => p.source === 'preheat').reduce((sum, p) => sum + p.size, 0));
        },
      });
      new Counter({
        name: 'meeting_edge_preheat_downloads_total',
        help: 'Preheat downloads by result (completed, failed, cancelled: a sync needed the master, or the meeting left the window).',
        labelNames: ['result'],
        registers,
        collect() {
          const c = preheat.counters;
          this.reset();
          this.inc({ result: 'completed' }, c.completed);
          this.inc({ result: 'failed' }, c.failed);
          this.inc({ result: 'cancelled' }, c.cancelled);
        },
      });
      new Counter({
        name: 'meeting_edge_preheat_starts_total',
        help: 'Meetings started with a preheated package, by outcome (confirmed: served at once; discarded: documents changed, synced anew).',
        labelNames: ['outcome'],
        registers,
        collect() {
          const c = sync.probeCounters;
          this.reset();
          this.inc({ outcome: 'confirmed' }, c.preheatConfirmed);
          this.inc({ outcome: 'discarded' }, c.preheatDiscarded);
        },
      });
    }
    new Gauge({ name: 'meeting_edge_start_time_seconds', help: 'Unix time the node started.', registers }).set(sources.startedAt / 1000);
    new Gauge({
      name: 'meeting_edge_info',
      help: 'Constant 1, labelled with the node id and version.',
      labelNames: ['node_id', 'version'],
      registers,
      collect() {
        this.reset();
        this.set({ node_id: sources.nodeId(), version: sources.version }, 1);
      },
    });
    new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });

    this.#on(jobs.events, 'started', (job: SyncJob) => this.#counted.set(job, 0));
    this.#on(jobs.events, 'progress', (job: SyncJob) => this.#countBytes(job));
    this.#on(jobs.events, 'succeeded', (job: SyncJob, outcome: JobOutcome) => {
      this.#countBytes(job);
      const result = outcome.replaced ? 'success' : 'unchanged';
      this.#syncs.inc({ result });
      this.#duration.observe({ result }, (Date.now() - job.createdAt) / 1000);
    });
    this.#on(jobs.events, 'failed', (job: SyncJob, failure: SyncFailure) => {
      this.#countBytes(job);
      const result = failure.code === 'CANCELLED' ? 'cancelled' : 'failure';
      this.#syncs.inc({ result });
      this.#duration.observe({ result }, (Date.now() - job.createdAt) / 1000);
    });
    this.#on(sync.events, 'polled', () => this.#polls.inc({ result: 'ok' }));
    this.#on(sync.events, 'pollFailed', () => {
      this.#polls.inc({ result: 'failure' });
      this.#pollFailures.inc();
    });
  }

  /** Called by the instrumented master client for every registry/status call. */
  recordMasterCall(call: MasterCall, ok: boolean): void {
    this.#masterRequests.inc({ call, result: ok ? 'ok' : 'failure' });
    if (call === 'heartbeat' && !ok) this.#heartbeatFailures.inc();
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  close(): void {
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
  }

  #countBytes(job: SyncJob): void {
    // A new attempt starts from zero bytes; the 'started' event resets the baseline.
    const seen = this.#counted.get(job) ?? 0;
    if (job.bytesWritten > seen) this.#bytesFetched.inc(job.bytesWritten - seen);
    this.#counted.set(job, job.bytesWritten);
  }

  #on<A extends unknown[]>(emitter: object, event: string, listener: (...args: A) => void): void {
    const target = emitter as { on(e: string, l: (...args: unknown[]) => void): void; off(e: string, l: (...args: unknown[]) => void): void };
    const wrapped = listener as (...args: unknown[]) => void;
    target.on(event, wrapped);
    this.#unsubscribe.push(() => target.off(event, wrapped));
  }
}

/**
 * A MasterClient that reports the outcome of each registry and status call, so heartbeat failures
 * are counted once per request on the wire (the announcer coalesces callers onto one request).
 */
export class InstrumentedMasterClient extends MasterClient {
  #record: (call: MasterCall, ok: boolean) => void;

  constructor(options: MasterClientOptions, record: (call: MasterCall, ok: boolean) => void) {
    super(options);
    this.#record = record;
  }

  override async register(nodeId: string, address: string): Promise<void> {
    return this.#observe('register', super.register(nodeId, address));
  }

  override async heartbeat(payload: HeartbeatPayload): Promise<void> {
    return this.#observe('heartbeat', super.heartbeat(payload));
  }

  override async unregister(nodeId: string): Promise<void> {
    return this.#observe('unregister', super.unregister(nodeId));
  }

  override async getMeetingStatus(signal?: AbortSignal): Promise<MeetingStatus> {
    return this.#observe('status', super.getMeetingStatus(signal));
  }

  async #observe<T>(call: MasterCall, pending: Promise<T>): Promise<T> {
    try {
      const value = await pending;
      this.#record(call, true);
      return value;
    } catch (error) {
      this.#record(call, false);
      throw error;
    }
  }
}
