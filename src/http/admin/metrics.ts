import { readdirSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MasterCall } from '../../master/instrumented-master-client.ts';
import type { DiskSpace } from '../../store/disk-space.ts';
import { awaitsStartCheck } from '../../store/package-state.ts';
import type { PackageStore } from '../../store/package-store.ts';
import type { FetchView, JobOutcome } from '../../sync/fetch-view.ts';
import type { SyncFailure, SyncJobs } from '../../sync/sync-jobs.ts';
import type { ScrubTotals } from '../../sync/scrub.ts';
import type { Preheater } from '../../sync/preheat.ts';
import type { Reconciler } from '../../sync/reconciler.ts';
import type { ServeStats } from '../serve-stats.ts';
import { bytesServedToTablets, type PeerServeStats } from '../../site/seed-serving.ts';
import type { SiteTier } from '../../site/site-tier.ts';

export interface MetricsSources {
  jobs: SyncJobs;
  sync: Reconciler;
  store: PackageStore;
  stats: ServeStats;
  serving: () => boolean;
  /** The site tier (issue 12); absent: no site metrics. */
  site?: { tier: Pick<SiteTier, 'counters' | 'health'>; peers: Pick<PeerServeStats, 'bytes' | 'refused'> };
  nodeId: () => string;
  version: string;
  startedAt: number;
  /** Storage figures for the alerting gauges; absent: those gauges are not exported. */
  storage?: StorageGauges;
  /** The scrub's figures; absent: no scrub metrics. */
  scrub?: () => ScrubFigures;
  /** Meetings scheduled soon and their preheat state (absent: no preheat metrics). */
  preheat?: Pick<Preheater, 'upcoming' | 'counters'>;
}

/** What the scrub metrics read at scrape time. */
export interface ScrubFigures {
  totals: ScrubTotals;
  running: boolean;
  /** The last finished scrub: when it ended and how many packages it quarantined. */
  last: { finishedAt: number; findings: number } | null;
}

/** What the storage gauges read at scrape time. */
export interface StorageGauges {
  /** Bytes held: complete packages plus temp files of downloads in flight. */
  usedBytes: () => number;
  /** storage.maxSize (0: no quota). */
  quotaBytes: () => number;
  /** The storage volume's figures (a cached reading; null: unknown). */
  disk: () => Promise<DiskSpace | null>;
}

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
  #counted = new WeakMap<FetchView, number>();

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
    new Gauge({ name: 'meeting_edge_service_running', help: '1 while the service runs, 0 while the operator has stopped it.', registers, collect() { this.set(sources.serving() ? 1 : 0); } });
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
          this.set(store.list().filter(awaitsStartCheck).reduce((sum, p) => sum + p.size, 0));
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
    if (sources.storage) this.#storageGauges(sources.storage, registers);
    if (sources.scrub) this.#scrubMetrics(sources.scrub, registers);
    const site = sources.site;
    if (site) {
      // Totals kept by the sync and the download route, turned into counters when scraped.
      const fetchedSeen = { master: 0, peer: 0 };
      new Counter({
        name: 'meeting_edge_fetched_bytes_total',
        help: 'Package bytes received, by source: the master, or a sibling node of the site (failed attempts included).',
        labelNames: ['source'],
        registers,
        collect() {
          const now = jobs.fetchedBytes;
          for (const source of ['master', 'peer'] as const) {
            if (now[source] > fetchedSeen[source]) this.inc({ source }, now[source] - fetchedSeen[source]);
            fetchedSeen[source] = now[source];
          }
        },
      });
      const servedSeen = { tablet: 0, peer: 0 };
      new Counter({
        name: 'meeting_edge_served_bytes_total',
        help: 'Package bytes sent, by client: tablets, or sibling nodes fetching from this node as their seed.',
        labelNames: ['client'],
        registers,
        collect() {
          const now = { tablet: bytesServedToTablets(stats, site.peers), peer: site.peers.bytes };
          for (const client of ['tablet', 'peer'] as const) {
            if (now[client] > servedSeen[client]) this.inc({ client }, now[client] - servedSeen[client]);
            servedSeen[client] = now[client];
          }
        },
      });
      const countedFrom = (name: string, help: string, read: () => number) => counterFromTotal(name, help, read, registers);
      countedFrom('meeting_edge_peer_fetches_total', 'Packages fetched from a sibling node and promoted.', () => site.tier.counters.peerFetches);
      countedFrom('meeting_edge_peer_fallbacks_total', 'Downloads from a sibling that failed and went to the master.', () => site.tier.counters.fallbacks);
      countedFrom(
        'meeting_edge_site_security_events_total',
        'Answers from a sibling that failed their site-key signature (bytes dropped, answer ignored).',
        () => site.tier.counters.securityEvents,
      );
      countedFrom('meeting_edge_site_handovers_total', 'Seeds abandoned mid-download (silent and not answering health, or reset).', () => site.tier.counters.handovers);
      new Gauge({
        name: 'meeting_edge_site_members',
        help: 'Siblings probed, by state: healthy (proved the site key, answering), sick (not answering), stranger (cannot prove the key).',
        labelNames: ['state'],
        registers,
        collect() {
          const counts = { healthy: 0, sick: 0, stranger: 0 };
          for (const member of site.tier.health.view()) counts[member.proof === 'refused' ? 'stranger' : member.healthy ? 'healthy' : 'sick']++;
          for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
        },
      });
      countedFrom('meeting_edge_peer_refused_total', 'Sibling requests refused because this node fetches that package from a sibling itself.', () => site.peers.refused);
      countedFrom('meeting_edge_probes_total', 'Checks of the current build of a held package.', () => sync.probeCounters.probes);
      countedFrom('meeting_edge_probe_bytes_total', 'Bytes read from the master by probes.', () => sync.probeCounters.bytes);
      countedFrom('meeting_edge_probes_from_seed_total', 'Builds learnt from the site\'s seed instead of probing the master.', () => sync.probeCounters.fromSeed);
    }
    this.#processGauges(registers);

    this.#on(jobs.events, 'started', (job: FetchView) => this.#counted.set(job, 0));
    this.#on(jobs.events, 'progress', (job: FetchView) => this.#countBytes(job));
    this.#on(jobs.events, 'succeeded', (job: FetchView, outcome: JobOutcome) => {
      this.#countBytes(job);
      const result = outcome.replaced ? 'success' : 'unchanged';
      this.#syncs.inc({ result });
      this.#duration.observe({ result }, (Date.now() - job.createdAt) / 1000);
    });
    this.#on(jobs.events, 'failed', (job: FetchView, failure: SyncFailure) => {
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

  /**
   * What operators alert on in any Node service, under prom-client's default names, but only
   * these: its collectDefaultMetrics adds a GC observer and a dozen series per heap space, memory
   * and CPU a small box pays at every scrape for figures nobody alerts on.
   */
  #processGauges(registers: Registry[]): void {
    new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });
    new Gauge({
      name: 'nodejs_heap_size_used_bytes',
      help: 'Process heap size used from Node.js in bytes.',
      registers,
      collect() {
        this.set(process.memoryUsage().heapUsed);
      },
    });
    new Gauge({
      name: 'nodejs_external_memory_bytes',
      help: 'Node.js external memory size in bytes (Buffers and other memory outside the JS heap).',
      registers,
      collect() {
        this.set(process.memoryUsage().external);
      },
    });
    new Gauge({
      name: 'process_open_fds',
      help: 'Number of open file descriptors (NaN where /proc is not there).',
      registers,
      collect() {
        this.set(openDescriptors());
      },
    });
    // The event loop's delay, as a 50 ms timer sees it (how late it fires), the largest since the
    // last scrape. Not monitorEventLoopDelay: its histogram alone is ~360 KiB of native memory.
    let worstLagMs = 0;
    let expected = performance.now() + LAG_SAMPLE_MS;
    const sampler = setInterval(() => {
      const now = performance.now();
      worstLagMs = Math.max(worstLagMs, now - expected);
      expected = now + LAG_SAMPLE_MS;
    }, LAG_SAMPLE_MS);
    sampler.unref();
    this.#unsubscribe.push(() => clearInterval(sampler));
    new Gauge({
      name: 'nodejs_eventloop_lag_seconds',
      help: 'Largest event-loop delay since the last scrape (a 50 ms timer firing late), in seconds.',
      registers,
      collect() {
        this.set(worstLagMs / 1000);
        worstLagMs = 0;
      },
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

  /** The figures alerts are written on: storage used against the quota, and the disk left. */
  #storageGauges(storage: StorageGauges, registers: Registry[]): void {
    new Gauge({
      name: 'meeting_edge_storage_used_bytes',
      help: 'Bytes held in storage: complete packages plus downloads in flight (what the quota counts).',
      registers,
      collect() {
        this.set(storage.usedBytes());
      },
    });
    new Gauge({
      name: 'meeting_edge_storage_quota_bytes',
      help: 'storage.maxSize: the most the packages may take (0: no quota).',
      registers,
      collect() {
        this.set(storage.quotaBytes());
      },
    });
    // Unknown figures are NaN, not 0: an alert on "free < x" must not fire on a failed reading.
    new Gauge({
      name: 'meeting_edge_disk_free_bytes',
      help: 'Free bytes on the storage volume, available to the node (NaN: could not be read).',
      registers,
      async collect() {
        this.set((await storage.disk())?.available ?? Number.NaN);
      },
    });
    new Gauge({
      name: 'meeting_edge_disk_total_bytes',
      help: 'Size of the storage volume in bytes (NaN: could not be read).',
      registers,
      async collect() {
        this.set((await storage.disk())?.total ?? Number.NaN);
      },
    });
  }

  /** The scrub: how much it checked, what it quarantined, and when it last finished. */
  #scrubMetrics(figures: () => ScrubFigures, registers: Registry[]): void {
    const totalCounter = (name: string, help: string, read: (totals: ScrubTotals) => number) => counterFromTotal(name, help, () => read(figures().totals), registers);
    totalCounter('meeting_edge_scrub_runs_total', 'Scrubs finished (every stored package re-hashed against its manifest).', (t) => t.runs);
    totalCounter('meeting_edge_scrub_packages_checked_total', 'Packages the scrub hashed to the end.', (t) => t.packagesChecked);
    totalCounter('meeting_edge_scrub_bytes_checked_total', 'Bytes the scrub hashed.', (t) => t.bytesChecked);
    totalCounter('meeting_edge_scrub_quarantined_total', 'Packages the scrub found not matching their manifest and quarantined.', (t) => t.packagesQuarantined);
    new Gauge({ name: 'meeting_edge_scrub_running', help: '1 while a scrub runs.', registers, collect() { this.set(figures().running ? 1 : 0); } });
    new Gauge({
      name: 'meeting_edge_scrub_last_finished_timestamp_seconds',
      help: 'Unix time the last scrub finished (0: none yet).',
      registers,
      collect() {
        this.set((figures().last?.finishedAt ?? 0) / 1000);
      },
    });
    new Gauge({
      name: 'meeting_edge_scrub_last_findings',
      help: 'Packages the last scrub quarantined.',
      registers,
      collect() {
        this.set(figures().last?.findings ?? 0);
      },
    });
  }

  #countBytes(job: FetchView): void {
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

/** A counter over a running total kept elsewhere: increased by what it grew since the last scrape. */
function counterFromTotal(name: string, help: string, read: () => number, registers: Registry[]): Counter {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** How often the event-loop lag is sampled. */
const LAG_SAMPLE_MS = 50;

/** This process's open descriptors (Linux /proc; NaN elsewhere), the listing's own not counted. */
function openDescriptors(): number {
  try {
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return Number.NaN;
  }
}
