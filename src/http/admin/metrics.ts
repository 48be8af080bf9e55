import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MasterCall } from '../../master/instrumented-master-client.ts';
import { awaitsStartCheck } from '../../store/package-state.ts';
import type { PackageStore } from '../../store/package-store.ts';
import type { FetchView, JobOutcome } from '../../sync/fetch-view.ts';
import type { SyncFailure, SyncJobs } from '../../sync/sync-jobs.ts';
import type { Preheater } from '../../sync/preheat.ts';
import type { Reconciler } from '../../sync/reconciler.ts';
import type { ServeStats } from '../serve-stats.ts';
import { counterFromTotal, registerProcessGauges, registerScrubMetrics, registerStorageGauges, type ScrubFigures, type StorageGauges } from './metric-groups.ts';
export type { ScrubFigures, StorageGauges } from './metric-groups.ts';
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
    if (sources.storage) registerStorageGauges(sources.storage, registers);
    if (sources.scrub) registerScrubMetrics(sources.scrub, registers);
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
      countedFrom('meeting_edge_site_resumed_bytes_total', 'Bytes kept of an abandoned seed\'s package and not fetched again (the next member served the rest).', () => site.tier.counters.resumedBytes);
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
    this.#unsubscribe.push(registerProcessGauges(registers));

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
