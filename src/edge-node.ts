import { getRequestListener } from '@hono/node-server';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EnvironmentSettings } from './config/cli-options.ts';
import { ConfigStore } from './config/config-store.ts';
import { configSchema, type NodeConfig } from './config/schema.ts';
import type { ConfigApplyResult } from './http/admin/config-routes.ts';
import { AdminEventHub, type NodeEventMap } from './http/admin/events.ts';
import { NodeMetrics } from './http/admin/metrics.ts';
import { createApp } from './http/app.ts';
import { BurstAccept, loadAcceptor } from './http/burst-accept.ts';
import { createDownloadListener, type DownloadDeps } from './http/download-route.ts';
import { logDownloads } from './http/access-log.ts';
import { DownloadStats } from './http/download-stats.ts';
import { loadNetAddon } from './http/net-addon.ts';
import { SharedReadFiles } from './http/shared-files.ts';
import { SharedPackageFiles } from './http/shared-package-files.ts';
import { TailLimit } from './http/tail-send.ts';
import { loadZeroCopy } from './http/zero-copy.ts';
import { LogRing, tapLogger } from './log/log-ring.ts';
import { createLogger, type Logger } from './log/logger.ts';
import { Announcer } from './master/announcer.ts';
import { InstrumentedMasterClient } from './master/instrumented-master-client.ts';
import type { MasterClient } from './master/master-client.ts';
import { printAdminToken, resolveAdminToken } from './node/admin-token.ts';
import { ConfigApplier } from './node/config-applier.ts';
import { Maintenance } from './node/maintenance.ts';
import { collectDiagnostics } from './node/diagnostics.ts';
import { NodeLifecycle, type ScheduleInfo } from './node/lifecycle.ts';
import { MasterLink, masterClientOptions } from './node/master-link.ts';
import { DEFAULT_POLICY, type NodePolicy } from './node/policy.ts';
import { buildStatus } from './node/status.ts';
import { unusableDirectory, unusableFile, UnusablePathError } from './node/usable-path.ts';
import { readPackageVersion } from './node/version.ts';
import { DiskSpaceProbe } from './store/disk-space.ts';
import { PackageStore } from './store/package-store.ts';
import { probeMasterBuild } from './sync/build-probe.ts';
import { HashThread } from './sync/hash-thread.ts';
import { Scrubber } from './sync/scrub.ts';
import { SiteMembers } from './sync/site-members.ts';
import { SiteTier, type SiteTierDeps } from './sync/site-tier.ts';
import { PeerServeStats } from './http/peer-serving.ts';
import { QuotaGuard } from './sync/quota-guard.ts';
import { SyncJobs, type SyncSettings } from './sync/sync-jobs.ts';
import { SyncLoop } from './sync/sync-loop.ts';
import { Preheater } from './sync/preheat.ts';
import { CronTask } from './node/cron-task.ts';

export type { ScheduleInfo } from './node/lifecycle.ts';

export interface EdgeNodeOptions {
  configPath: string;
  /** Overrides nodePort from the config (flag or EDGE_PORT). 0 picks a free port (tests). */
  port?: number;
  /** The start option an operator set `port` with: a nodePort saved later is then reported as overridden by it. */
  portSource?: string;
  /** Listen address; default 0.0.0.0. */
  host?: string;
  /** A ready logger (tests pass a MemoryLogger); otherwise built from the config's logging section. */
  logger?: Logger;
  /** Folder of the control panel; default ./public beside the program. */
  publicDir?: string;
  /** The EDGE_* switches (config/cli-options.ts readEnvironment; start.ts passes them). Default: none set. */
  environment?: Partial<EnvironmentSettings>;
  /**
   * Admin token overriding EDGE_ADMIN_TOKEN and the config's adminToken (tests, benchmarks).
   * With none, the config's token is used, or one is generated and saved on first start.
   */
  adminToken?: string;
  /**
   * Shows a newly generated admin token to the operator. Default: printed on the console, unless
   * a logger was passed in (tests, embedding), which then read node.adminToken.
   */
  announceAdminToken?: (token: string, configPath: string) => void;
  /** Overrides of the operating policy (node/policy.ts): tests and benchmarks run shorter. */
  policy?: Partial<NodePolicy>;
  /** Site tier timings and seed choice (tests: shorter waits, nodes that disagree on the seed). */
  site?: Pick<SiteTierDeps, 'pickSeed' | 'notFoundRetryMs' | 'busyRetryMs' | 'buildAskTimeoutMs' | 'membersMaxAgeMs'>;
}

/** src/ when run from source; start.ts passes the folder explicitly when bundled. */
const PROGRAM_DIR = path.dirname(fileURLToPath(import.meta.url));

/**
 * The composition root: wires config, logger, master client, store, sync, announcer, HTTP app,
 * lifecycle (node/lifecycle.ts) and config applier (node/config-applier.ts), then starts them.
 * It decides nothing itself; only this file knows every part.
 */
export class EdgeNode {
  readonly config: ConfigStore;
  readonly logger: Logger;
  readonly store: PackageStore;
  readonly jobs: SyncJobs;
  readonly sync: SyncLoop;
  readonly announcer: Announcer;
  readonly stats: DownloadStats;
  /** The site tier (issue 12): which sibling seeds which package, fetches from it, its counters. */
  readonly site: SiteTier;
  /** Bytes and requests served to sibling nodes. */
  readonly peerStats = new PeerServeStats();
  /** Storage quota and free-disk floor: evicts non-active packages, refuses syncs that cannot fit. */
  readonly quota: QuotaGuard;
  /** Fetches the packages of meetings scheduled soon, before they start (preheat.*). */
  readonly preheater: Preheater;
  /** When the preheater reads the master's meeting list (preheat.schedule). */
  readonly preheatTask: CronTask;
  readonly server: Server;
  readonly startedAt = Date.now();
  readonly host: string;
  readonly version: string;
  /** The last log lines (admin API, panel, diagnostics). */
  readonly logs: LogRing;
  readonly metrics: NodeMetrics;
  /** Service stop/start and applied config changes (the panel's event stream carries them). */
  readonly events = new EventEmitter<NodeEventMap>();
  readonly #master: MasterLink;
  readonly #lifecycle: NodeLifecycle;
  readonly #applier: ConfigApplier;
  readonly #adminToken: () => string;
  readonly #disk: DiskSpaceProbe;
  readonly #maintenance: Maintenance;

  /** Loads the config, opens storage, listens, registers and starts polling and heartbeats. */
  static async start(options: EdgeNodeOptions): Promise<EdgeNode> {
    const config = ConfigStore.open(options.configPath);
    const { logging, storage } = config.current;
    const storageRoot = config.resolvePath(storage.path);
    const logFile = logging.fileEnabled && !options.logger ? config.resolvePath(logging.filePath) : null;
    // Before winston or the store touch them: an unusable path is a refused start naming the key.
    refuseUnusable('storage.path', await unusableDirectory(storageRoot));
    if (logFile) refuseUnusable('logging.filePath', await unusableFile(logFile));
    const baseLogger =
      options.logger ??
      createLogger({
        level: logging.level,
        filePath: logFile,
        maxFileSize: logging.maxFileSize,
        backupCount: logging.backupCount,
        format: logging.format,
      });
    const policy: NodePolicy = { ...DEFAULT_POLICY, ...options.policy };
    const logs = new LogRing(policy.logRingLines);
    const logger = tapLogger(baseLogger, logs);
    const adminToken = resolveAdminToken(
      config,
      {
        option: options.adminToken,
        environment: options.environment?.adminToken,
        announce: options.announceAdminToken ?? (options.logger ? null : printAdminToken),
      },
      logger,
    );
    let store: PackageStore;
    try {
      store = await PackageStore.open(storageRoot, logger);
    } catch (error) {
      if (!options.logger) await logger.close();
      throw new UnusablePathError('storage.path', `${storageRoot}: cannot be opened (${(error as Error).message})`);
    }
    const node = new EdgeNode(options, policy, config, logger, logs, store, adminToken.current);
    await node.#lifecycle.listen(options.port ?? config.current.nodePort);
    adminToken.generateIfMissing();
    node.#lifecycle.startBackground();
    node.#maintenance.start();
    node.#startPreheat();
    return node;
  }

  private constructor(
    options: EdgeNodeOptions,
    policy: NodePolicy,
    config: ConfigStore,
    logger: Logger,
    logs: LogRing,
    store: PackageStore,
    adminToken: () => string,
  ) {
    this.config = config;
    this.logger = logger;
    this.logs = logs;
    this.store = store;
    this.host = options.host ?? '0.0.0.0';
    this.#adminToken = adminToken;
    const publicDir = options.publicDir ?? path.resolve(PROGRAM_DIR, '..', 'public');
    this.version = readPackageVersion(path.resolve(publicDir, '..', 'package.json'));
    const current = () => this.config.current;
    const serving = () => this.#lifecycle.serving;
    this.stats = new DownloadStats();
    logDownloads(this.stats, logger);
    // check-disk-space, cached: the quota guard, /api/status and /metrics read the cache.
    this.#disk = new DiskSpaceProbe(store.root, { ttlMs: policy.diskSpaceTtlMs });
    this.#master = new MasterLink((c) => new InstrumentedMasterClient(masterClientOptions(c), (call, ok) => this.metrics.recordMasterCall(call, ok)), config.current);
    const master = () => this.#master.client;
    /** sha256 of downloads, on a worker thread (hash-thread.ts): started by the first hash, stopped when idle. */
    const hashes = new HashThread();

    this.quota = new QuotaGuard({
      store,
      settings: () => {
        const { maxSize, cleanupThreshold, autoCleanup } = current().storage;
        // freeFloorBytes null: the guard's own floor (a share of the volume, capped).
        return { maxSize, cleanupThreshold, autoCleanup, freeFloorBytes: null };
      },
      disk: () => this.#disk.read(),
      // null before the first successful poll: nothing is evicted on an unknown active set.
      activeIds: () => (this.sync.lastSuccess ? new Set(this.sync.activeMeetings().map((m) => m.id)) : null),
      inFlightIds: () => this.jobs.inFlightIds(),
      lastServedAt: (id) => this.stats.peek(id)?.lastServedAt ?? null,
      logger,
    });
    this.site = new SiteTier({
      members: new SiteMembers({
        listNodes: () => master().listNodes(),
        self: () => this.#lifecycle.address,
        staticPeers: () => current().peers.static,
      }),
      self: () => this.#lifecycle.address,
      nodeId: () => current().nodeId ?? 'node-unknown',
      settings: () => ({ enabled: current().peers.enabled, connectTimeoutMs: current().peers.connectTimeout * 1000 }),
      logger,
      ...options.site,
    });
    this.jobs = new SyncJobs({ store, master, settings: () => syncSettings(current()), logger, guard: this.quota, hashes, site: this.site });
    this.sync = new SyncLoop({
      store,
      jobs: this.jobs,
      master,
      policy: () => {
        const { cleanup } = current();
        return { evictEnded: cleanup.enabled && cleanup.cleanEndedMeetings, cleanOnStartup: cleanup.enabled && cleanup.cleanOnStartup };
      },
      quota: this.quota,
      scheduled: (meetingId) => this.preheater.isScheduled(meetingId),
      // Only a package's seed probes the master; its siblings ask the seed (site-tier.ts).
      probe: (meetingId, token) => this.site.probe(meetingId, token, () => probeMasterBuild(master(), meetingId, { timeoutMs: 30_000 })),
      logger,
    });
    // The scrub: stored packages re-hashed on the hash thread, held back while the node is busy;
    // a quarantined package of an active meeting is fetched again by the poll it triggers.
    const scrubber = new Scrubber({
      store,
      hash: (file, size, options) => hashes.hashStored(file, size, options),
      busy: () => this.stats.activeDownloads > 0 || this.jobs.inFlightIds().size > 0,
      onQuarantined: () => {
        if (this.serving) void this.syncNow();
      },
      logger,
    });
    this.#maintenance = new Maintenance({ scrubber, schedule: () => current().maintenance.scrubSchedule, logger });
    // The membership is read again with every poll, so seeds are picked from a fresh view: at the
    // poll's start, beside the meetings request, so a fetch the poll starts finds the view read
    // (or being read) instead of waiting for one more request to the master before its seed.
    this.sync.events.on('polling', () => {
      if (this.site.enabled) void this.site.members.refresh();
    });
    this.preheater = new Preheater({
      master,
      jobs: this.jobs,
      store,
      sync: this.sync,
      settings: () => current().preheat,
      running: serving,
      logger,
    });
    this.preheatTask = new CronTask('preheat', () => current().preheat.schedule, () => this.preheater.scan(), logger);
    this.events.on('service', ({ running }) => (running ? this.#startPreheat() : this.preheatTask.stop()));
    this.events.on('config', ({ changed }) => {
      if (!changed.some((key) => key === 'preheat' || key.startsWith('preheat.'))) return;
      this.preheatTask.reschedule();
      void this.preheatTask.runNow();
    });
    this.announcer = new Announcer({
      master,
      nodeId: () => current().nodeId ?? 'node-unknown',
      address: () => this.#lifecycle.address,
      activeMeetings: () => this.sync.activeMeetings(),
      syncedMeetingIds: () => this.sync.syncedMeetingIds(),
      extras: () => ({ load: { activeDownloads: this.stats.activeDownloads, syncing: this.jobs.inFlightIds().size } }),
      logger,
    });
    this.metrics = new NodeMetrics({
      jobs: this.jobs,
      sync: this.sync,
      store,
      stats: this.stats,
      running: serving,
      site: { tier: this.site, peers: this.peerStats },
      nodeId: () => current().nodeId ?? '',
      version: this.version,
      startedAt: this.startedAt,
      storage: {
        usedBytes: () => store.usedBytes() + this.quota.state.inFlightBytes,
        quotaBytes: () => current().storage.maxSize,
        disk: () => this.#disk.read(),
      },
      scrub: () => {
        const last = scrubber.last;
        return {
          totals: scrubber.totals,
          running: scrubber.current !== null,
          last: last?.finishedAt ? { finishedAt: last.finishedAt, findings: last.findings.length } : null,
        };
      },
      preheat: this.preheater,
    });
    const eventHub = new AdminEventHub({ jobs: this.jobs, sync: this.sync, store, logs, node: this.events, running: serving });

    // Loaded once (require caches it) for both of its uses.
    const addon = loadNetAddon();
    const zeroCopy = loadZeroCopy({ enabled: options.environment?.zeroCopy }, addon);
    logger.info(zeroCopy.zeroCopy ? 'serving packages with sendfile (zero copy)' : `serving packages by copying through buffers: ${zeroCopy.reason}`);
    const acceptor = loadAcceptor({ enabled: options.environment?.burstAccept }, addon);
    if (!acceptor.acceptor) logger.info(`accepting connections one per event-loop turn: ${acceptor.reason}`);

    const downloads: DownloadDeps = {
      store,
      sync: this.sync,
      stats: this.stats,
      logger,
      isServing: serving,
      // Serve while downloading: tablets of a package still syncing stream the bytes already
      // on disk; bounded, so a herd cannot hold unlimited sockets and fds.
      tailing: new TailLimit(policy.maxTailingClients),
      tailFiles: new SharedReadFiles(),
      packageFiles: new SharedPackageFiles(store),
      zeroCopy: zeroCopy.zeroCopy,
      peers: this.peerStats,
      settings: () => ({
        waitForSyncMs: policy.waitForSyncMs,
        idleTimeoutMs: Math.max(policy.minDownloadIdleTimeoutMs, current().network.downloadTimeout * 1000),
        retryAfterSeconds: policy.retryAfterSeconds,
      }),
    };
    const app = createApp({
      downloads,
      admin: {
        logger,
        token: () => this.adminToken,
        authLimit: policy.authLimit,
        config: {
          current,
          schema: configSchema,
          update: (patch) => this.updateConfig(patch),
        },
        service: {
          running: serving,
          stop: () => this.stopService(),
          start: () => this.startService(),
          syncNow: () => this.#lifecycle.syncNowReport(),
          status: () => this.status(),
        },
        events: eventHub,
        logs,
        diagnostics: {
          collect: () =>
            collectDiagnostics({
              config: current,
              logs,
              status: () => this.status(),
              metrics: async () => (await this.metrics.render()).body,
              version: this.version,
              adminToken: () => this.adminToken,
            }),
        },
        health: {
          storageRoot: store.root,
          configValid: () => this.config.validate(current()).ok,
          running: serving,
          metrics: this.metrics,
          metricsPublic: () => current().metricsPublic,
        },
        maintenance: {
          scrubNow: () => this.#maintenance.scrubNow(),
          scrubbing: () => scrubber.current !== null,
          scrubStatus: () => this.#maintenance.scrubStatus(),
        },
      },
      publicDir,
    });
    // Package downloads are answered before Hono: its HEAD handling re-dispatches through a slow
    // Response path (HEAD 6.5k → 23.6k req/s and 304 13k → 24k req/s measured with this fast
    // path), and the herd at meeting start is exactly these requests. Everything else is Hono.
    const honoListener = getRequestListener(app.fetch);
    const downloadListener = createDownloadListener(downloads);
    this.server = createServer((req, res) => {
      if (!downloadListener(req, res)) void honoListener(req, res);
    });

    this.#lifecycle = new NodeLifecycle({
      config: current,
      policy,
      server: this.server,
      host: this.host,
      // A meeting start connects every tablet at once: accept them in one turn, not one per turn.
      burstAccept: acceptor.acceptor ? new BurstAccept(this.server, acceptor.acceptor) : null,
      store,
      sync: this.sync,
      jobs: this.jobs,
      announcer: this.announcer,
      master: this.#master,
      closeAtStop: () => {
        eventHub.close();
        // No scrub while the node stops: it would only compete with the drain.
        void this.#maintenance.stop();
      },
      closeAfterDrain: [() => this.#maintenance.stop(), () => this.metrics.close(), () => hashes.close()],
      events: this.events,
      logger,
      ownsLogger: options.logger === undefined,
      configSettled: () => this.#applier.settled(),
    });
    this.#applier = new ConfigApplier({
      config,
      logger,
      master: this.#master,
      announcer: this.announcer,
      lifecycle: this.#lifecycle,
      events: this.events,
      maintenance: this.#maintenance,
      startOverrides: options.portSource ? { nodePort: options.portSource } : {},
    });
  }

  get port(): number {
    return this.#lifecycle.port;
  }

  /** host:port registered with the master. */
  get address(): string {
    return this.#lifecycle.address;
  }

  get master(): MasterClient {
    return this.#master.client;
  }

  get serving(): boolean {
    return this.#lifecycle.serving;
  }

  /** The admin API's bearer token in force: the option / EDGE_ADMIN_TOKEN, else the config's. */
  get adminToken(): string {
    return this.#adminToken();
  }

  /** When the poll and heartbeat timers fire next (null: not scheduled, e.g. service stopped). */
  get schedule(): ScheduleInfo {
    return this.#lifecycle.schedule;
  }

  /** Saved settings that differ from what the running process uses until it restarts. */
  get restartRequired(): string[] {
    return this.#applier.restartRequired;
  }

  /** Base URL to reach this node from this machine (tests, demo). */
  get localUrl(): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  /** The /api/status document. */
  async status() {
    const disk = await this.#disk.read();
    const preheater = this.preheater;
    return buildStatus(
      {
        config: () => this.config.current,
        sync: this.sync,
        jobs: this.jobs,
        store: this.store,
        stats: this.stats,
        quota: this.quota,
        announcer: this.announcer,
        maintenance: () => ({ scrub: this.#maintenance.scrubStatus() }),
        site: this.site,
        peers: this.peerStats,
        preheat: {
          upcoming: () => this.preheater.upcoming(),
          get counters() {
            return preheater.counters;
          },
          get lastScan() {
            return preheater.lastScan;
          },
          nextScanAt: () => this.preheatTask.nextRunAt(),
        },
        runtime: () => ({
          running: this.serving,
          masterUrl: this.master.baseUrl,
          address: this.address,
          port: this.port,
          startedAt: this.startedAt,
          version: this.version,
          schedule: this.schedule,
          restartRequired: this.restartRequired,
          startOverrides: this.#applier.startOverrides,
        }),
      },
      disk,
    );
  }

  /** Scrubs storage now (or joins the scrub running): every package re-hashed against its manifest. */
  scrubNow() {
    return this.#maintenance.scrubNow();
  }

  /** Polls the master and reconciles now (also what the poll schedule runs). */
  syncNow(): Promise<void> {
    return this.#lifecycle.runNow('poll');
  }

  heartbeatNow(): Promise<boolean> {
    return this.#lifecycle.heartbeatNow();
  }

  /**
   * Saves a (partial) config change and applies it: intervals rescheduled from now, a new master
   * or identity re-registered, the log level switched. Resolves once the change is live.
   */
  updateConfig(patch: Record<string, unknown>): Promise<ConfigApplyResult> {
    return this.#applier.update(patch);
  }

  /** The operator's stop (node/lifecycle.ts): unregistered, downloads 503, admin API still up. */
  stopService(): Promise<void> {
    return this.#lifecycle.stopService();
  }

  /** The operator's start: register and resume polling and heartbeats at once. */
  startService(): Promise<void> {
    return this.#lifecycle.startService();
  }

  /** Stops polling, unregisters, lets in-flight transfers finish (bounded), closes the server. */
  stop(): Promise<void> {
    this.preheatTask.stop();
    this.preheater.close();
    return this.#lifecycle.stop();
  }

  /** The preheat scan runs at start, then on its cron schedule. */
  #startPreheat(): void {
    this.preheatTask.start();
    void this.preheatTask.runNow();
  }
}

/** A path the node cannot use: the start is refused like an invalid config, naming the key. */
function refuseUnusable(key: string, reason: string | null): void {
  if (reason !== null) throw new UnusablePathError(key, reason);
}

export function syncSettings(config: NodeConfig): SyncSettings {
  return {
    maxConcurrentDownloads: config.network.maxConcurrentDownloads,
    retryCount: config.network.retryCount,
    retryDelayMs: config.network.retryDelay * 1000,
    idleTimeoutMs: config.network.downloadTimeout * 1000,
    connectTimeoutMs: config.network.connectionTimeout * 1000,
  };
}
