import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, ConfigStore } from './config/config-store.ts';
import type { ConfigApplyResult, NodeEventMap } from './node-events.ts';
import type { NodeMetrics } from './http/admin/metrics.ts';
import { NodeReports } from './node/reports.ts';
import { createApp } from './http/app.ts';
import { loadNetAddon } from './http/net-addon.ts';
import { downloadSettings } from './http/download-route.ts';
import { logDownloads } from './http/access-log.ts';
import { ServeStats } from './http/serve-stats.ts';
import { LogRing, tapLogger } from './log/log-ring.ts';
import { createLogger, type Logger } from './log/logger.ts';
import { Announcer } from './master/announcer.ts';
import { InstrumentedMasterClient } from './master/instrumented-master-client.ts';
import type { MasterClient } from './master/master-client.ts';
import { printAdminToken, resolveAdminToken } from './node/admin-token.ts';
import { ConfigApplier } from './node/config-applier.ts';
import { Maintenance } from './node/maintenance.ts';
import { operatorApi } from './node/operator-api.ts';
import { NodeLifecycle, type ScheduleInfo } from './node/lifecycle.ts';
import { MasterLink, masterClientOptions } from './node/master-link.ts';
import { DEFAULT_POLICY, type NodePolicy } from './policy.ts';
import { acquireStorageLock, describeHolder } from './node/storage-lock.ts';
import { openStorage, refuseUnusable, unusableDirectory, unusableFile } from './node/usable-path.ts';
import { readPackageVersion } from './node/version.ts';
import { DiskSpaceProbe } from './store/disk-space.ts';
import type { PackageStore } from './store/package-store.ts';
import { HashThread } from './sync/hash-thread.ts';
import type { NodeLoad } from './sync/scrub.ts';
import { PeerServeStats } from './site/seed-serving.ts';
import type { SiteTier } from './site/site-tier.ts';
import { siteKeyProblem } from './site/site-key.ts';
import { createSiteTier } from './node/site-wiring.ts';
import { QuotaGuard, quotaSettings } from './sync/quota-guard.ts';
import { SyncJobs, syncSettings } from './sync/sync-jobs.ts';
import { Reconciler } from './sync/reconciler.ts';
import { reconcilePolicy } from './sync/reconcile.ts';
import { Preheater } from './sync/preheat.ts';
import { PreheatSchedule } from './node/preheat-schedule.ts';
import { createHttpFront } from './node/http-front.ts';
import type { EdgeNodeOptions } from './node/edge-node-options.ts';
import { icuDataRelease, memoryRelease } from './node/memory-release.ts';

export type { ScheduleInfo } from './node/lifecycle.ts';
export type { EdgeNodeOptions } from './node/edge-node-options.ts';

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
  readonly sync: Reconciler;
  readonly announcer: Announcer;
  readonly stats: ServeStats;
  /** The site tier (issue 12): which sibling seeds which package, fetches from it, its counters. */
  readonly site: SiteTier;
  /** Bytes and requests served to sibling nodes. */
  readonly peerStats = new PeerServeStats();
  /** Storage quota and free-disk floor: evicts non-active packages, refuses syncs that cannot fit. */
  readonly quota: QuotaGuard;
  /** Fetches the packages of meetings scheduled soon, before they start (preheat.*). */
  readonly preheater: Preheater;
  /** When the preheater reads the master's meeting list (preheat.schedule). */
  readonly preheatTask: PreheatSchedule;
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
  readonly #reports: NodeReports;
  /** Drops ICU's data pages once read (memory-release.ts); undefined without the addon. */
  readonly #releaseIcuData: (() => void) | undefined;

  /** Loads the config, opens storage, listens, registers and starts polling and heartbeats. */
  static async start(options: EdgeNodeOptions): Promise<EdgeNode> {
    const config = ConfigStore.open(options.configPath);
    const { logging, storage } = config.current;
    const storageRoot = config.resolvePath(storage.path);
    const logFile = logging.fileEnabled && !options.logger ? config.resolvePath(logging.filePath) : null;
    // Before winston or the store touch them: an unusable path is a refused start naming the key.
    refuseUnusable('storage.path', await unusableDirectory(storageRoot));
    // One node per storage, before its log file is opened or the store's start-up cleanup runs.
    const lock = await acquireStorageLock(storageRoot, config.filePath);
    const logFileExisted = logFile !== null && existsSync(logFile);
    let logger: Logger | null = null;
    try {
      if (logFile) refuseUnusable('logging.filePath', await unusableFile(logFile));
      const { level, maxFileSize, backupCount, format } = logging;
      const baseLogger = options.logger ?? createLogger({ level, filePath: logFile, maxFileSize, backupCount, format });
      const policy: NodePolicy = { ...DEFAULT_POLICY, ...options.policy };
      const logs = new LogRing(policy.logRingLines);
      logger = tapLogger(baseLogger, logs);
      if (lock.tookOver) logger.warn(`storage: took over the lock of a node that is no longer running (${describeHolder(lock.tookOver)})`);
      const announce = options.announceAdminToken ?? (options.logger ? null : printAdminToken);
      const adminToken = resolveAdminToken(config, { option: options.adminToken, environment: options.environment?.adminToken, announce }, logger);
      const store = await openStorage(storageRoot, logger);
      const siteKeyRefused = options.environment?.siteKey === undefined ? null : siteKeyProblem(options.environment.siteKey);
      if (siteKeyRefused) throw new ConfigError(`EDGE_SITE_KEY ${siteKeyRefused}`, { 'peers.key': siteKeyRefused });
      const node = new EdgeNode(options, policy, config, logger, logs, store, adminToken.current, lock.release);
      await node.#lifecycle.listen(options.port ?? config.current.nodePort);
      node.site.start();
      // The node runs: its config file is written now (defaults, nodeId, a generated token), never by a failed start.
      adminToken.generateIfMissing();
      config.completeFile();
      node.#lifecycle.startBackground();
      node.#maintenance.start();
      node.preheatTask.begin();
      // The schedules' first Intl use read ICU's locale list: its pages are not needed again.
      node.#releaseIcuData?.();
      return node;
    } catch (error) {
      // A failed start leaves what it found: no lock, no log file it created.
      if (logger && !options.logger) await logger.close();
      // (Removing it may fail where the path was unusable in the first place: nothing to undo then.)
      if (logFile && !logFileExisted) await rm(logFile, { force: true }).catch(() => {});
      await lock.release();
      throw error;
    }
  }

  private constructor(
    options: EdgeNodeOptions,
    policy: NodePolicy,
    config: ConfigStore,
    logger: Logger,
    logs: LogRing,
    store: PackageStore,
    adminToken: () => string,
    releaseStorage: () => Promise<void>,
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
    this.stats = new ServeStats();
    logDownloads(this.stats, logger);
    // check-disk-space, cached: the quota guard, /api/status and /metrics read the cache.
    this.#disk = new DiskSpaceProbe(store.root, { ttlMs: policy.diskSpaceTtlMs });
    this.#master = new MasterLink((c) => new InstrumentedMasterClient(masterClientOptions(c), (call, ok) => this.metrics.recordMasterCall(call, ok)), config.current);
    const master = () => this.#master.client;
    // sha256 of downloads on a worker started by the first hash; its idle stop ends a spell of
    // syncing, when the spell's garbage is collected and malloc's leftovers go back to the kernel.
    const addon = loadNetAddon().addon;
    this.#releaseIcuData = icuDataRelease(addon?.releaseIcuData);
    const hashes = new HashThread({ onIdleStop: memoryRelease({ collect: globalThis.gc, trim: addon?.trimMemory, releaseIcuData: this.#releaseIcuData }) });

    const load = (): NodeLoad => ({ activeDownloads: this.stats.activeDownloads, syncing: this.jobs.inFlightIds().size });
    this.quota = new QuotaGuard({
      store,
      settings: () => quotaSettings(current()),
      disk: () => this.#disk.read(),
      activeIds: () => this.sync.knownActiveIds(),
      inFlightIds: () => this.jobs.inFlightIds(),
      lastServedAt: (id) => this.stats.peek(id)?.lastServedAt ?? null,
      logger,
    });
    const site = createSiteTier({
      config: current,
      environmentKey: options.environment?.siteKey,
      listNodes: () => master().listNodes(),
      self: () => this.#lifecycle.address,
      logger,
      options: options.site,
    });
    this.site = site.tier;
    this.jobs = new SyncJobs({ store, master, settings: () => syncSettings(current()), logger, guard: this.quota, hashes, site: this.site });
    this.sync = new Reconciler({
      store,
      jobs: this.jobs,
      master,
      policy: () => reconcilePolicy(current()),
      quota: this.quota,
      scheduled: (meetingId) => this.preheater.isScheduled(meetingId),
      // Only a package's seed probes the master; its siblings ask the seed (site-tier.ts).
      site: this.site,
      logger,
    });
    // The scrub: stored packages re-hashed on the hash thread, held back while the node is busy;
    // a quarantined package of an active meeting is fetched again by the poll it triggers.
    const scrub = { store, hash: hashes.hashStored.bind(hashes), load, onQuarantined: () => void (this.serving && this.syncNow()) };
    this.#maintenance = new Maintenance({ scrub, schedule: () => current().maintenance.scrubSchedule, logger });
    // The membership is read again with every poll, so seeds are picked from a fresh view: at the
    // poll's start, beside the meetings request, so a fetch the poll starts finds the view read
    // (or being read) instead of waiting for one more request to the master before its seed.
    this.sync.events.on('polling', () => {
      if (this.site.enabled) void this.site.members.refresh().then(() => this.site.health.probeNew());
    });
    this.preheater = new Preheater({
      master,
      jobs: this.jobs,
      store,
      sync: this.sync,
      settings: () => current().preheat,
      serving,
      logger,
    });
    this.preheatTask = new PreheatSchedule(this.preheater, () => current().preheat.schedule, this.events, logger);
    this.announcer = new Announcer({
      master,
      nodeId: () => current().nodeId ?? 'node-unknown',
      address: () => this.#lifecycle.address,
      activeMeetings: () => this.sync.activeMeetings(),
      syncedMeetingIds: () => this.sync.syncedMeetingIds(),
      extras: () => ({ load: load() }),
      logger,
    });
    this.#reports = new NodeReports({
      config: current,
      store,
      jobs: this.jobs,
      sync: this.sync,
      stats: this.stats,
      quota: this.quota,
      announcer: this.announcer,
      site: this.site,
      peers: this.peerStats,
      preheater: this.preheater,
      preheatTask: this.preheatTask,
      maintenance: this.#maintenance,
      disk: this.#disk,
      logs,
      nodeEvents: this.events,
      policy,
      serving,
      nodeId: () => current().nodeId ?? '',
      version: this.version,
      startedAt: this.startedAt,
      runtime: () => ({
        serving: this.serving,
        masterUrl: this.master.baseUrl,
        address: this.address,
        port: this.port,
        startedAt: this.startedAt,
        version: this.version,
        schedule: this.schedule,
        restartRequired: this.restartRequired,
        startOverrides: this.#applier.startOverrides,
      }),
    });
    this.metrics = this.#reports.metrics;
    this.#reports.start();

    const front = createHttpFront({
      downloads: { store, sync: this.sync, stats: this.stats, logger, serving, peers: this.peerStats, signer: site.signer, settings: () => downloadSettings(current(), policy) },
      app: (full) =>
        createApp({
          downloads: full,
          admin: operatorApi({
            node: this, config, logger, policy, logs, storageRoot: store.root, metrics: this.metrics, maintenance: this.#maintenance,
            events: this.#reports.events, traffic: this.#reports.traffic, syncNow: () => this.#lifecycle.syncNowReport(),
            siteKeys: () => [options.environment?.siteKey, current().peers.key, ...current().peers.previousKeys].filter((key): key is string => typeof key === 'string'),
          }),
          publicDir,
        }),
      environment: options.environment,
      policy,
      logger,
    });
    this.server = front.server;

    this.#lifecycle = new NodeLifecycle({
      config: current,
      policy,
      server: this.server,
      host: this.host,
      burstAccept: front.burstAccept,
      handOff: front.handOff,
      store,
      sync: this.sync,
      jobs: this.jobs,
      announcer: this.announcer,
      master: this.#master,
      closeAtStop: () => {
        this.#reports.closeFeeds();
        // No scrub while the node stops: it would only compete with the drain.
        void this.#maintenance.stop();
      },
      closeAfterDrain: [() => this.#maintenance.stop(), () => this.metrics.close(), () => hashes.close(), releaseStorage],
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
      startOverrides: { ...(options.portSource ? { nodePort: options.portSource } : {}), ...(options.environment?.siteKey ? { 'peers.key': 'EDGE_SITE_KEY' } : {}) },
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
    return this.#lifecycle.localUrl;
  }

  /** The /api/status document. */
  status() {
    return this.#reports.status();
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
    this.site.health.stop();
    this.preheater.close();
    return this.#lifecycle.stop();
  }
}
