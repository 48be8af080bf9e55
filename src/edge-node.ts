import { getRequestListener } from '@hono/node-server';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, ConfigStore } from './config/config-store.ts';
import { configSchema, type NodeConfig } from './config/schema.ts';
import { redactConfig, type ConfigApplyResult } from './http/admin/config-routes.ts';
import { AdminEventHub, type NodeEventMap } from './http/admin/events.ts';
import { LogRing, tapLogger } from './http/admin/logs.ts';
import { NodeMetrics } from './http/admin/metrics.ts';
import { createApp } from './http/app.ts';
import { createDownloadListener, type DownloadDeps } from './http/download-route.ts';
import { SharedReadFiles } from './http/shared-files.ts';
import { TailLimit } from './http/tail-send.ts';
import { loadZeroCopy, type ZeroCopy } from './http/zero-copy.ts';
import { BurstAccept, loadAcceptor, type Acceptor } from './http/burst-accept.ts';
import { loadNetAddon } from './http/net-addon.ts';
import { HashThread } from './sync/hash-thread.ts';
import { DownloadStats } from './http/download-stats.ts';
import { createLogger, toWinstonLevel, type Logger } from './logger.ts';
import { Announcer } from './master/announcer.ts';
import { InstrumentedMasterClient } from './master/instrumented-master-client.ts';
import type { MasterClient } from './master/master-client.ts';
import { resolveNodeAddress } from './master/node-address.ts';
import { PeriodicTask } from './scheduler.ts';
import { diskSpaceReader } from './store/disk-space.ts';
import { PackageStore } from './store/package-store.ts';
import { QuotaGuard } from './sync/quota-guard.ts';
import { SyncJobs, type SyncSettings } from './sync/sync-jobs.ts';
import { SyncLoop } from './sync/sync-loop.ts';
import { buildStatus, DiskSpaceProbe } from './status.ts';

export interface EdgeNodeOptions {
  configPath: string;
  /** Overrides nodePort from the config (flag or EDGE_PORT). 0 picks a free port (tests). */
  port?: number;
  /** Listen address; default 0.0.0.0. */
  host?: string;
  /** A ready logger (tests pass a silent one); otherwise built from the config's logging section. */
  logger?: Logger;
  /** Folder of the control panel; default ./public beside the program. */
  publicDir?: string;
  /** How long a stop waits for in-flight downloads (both directions) before cutting them. */
  drainTimeoutMs?: number;
  /** Tablets wait this long for an active meeting's sync before 503 (default 30 s). */
  waitForSyncMs?: number;
  /** Most tablets served from a package still syncing (tailing its temp file); past it 503. */
  maxTailingClients?: number;
  /**
   * Admin token overriding the config's adminToken (start() reads EDGE_ADMIN_TOKEN when unset).
   * With neither, the config's token is used, or one is generated and saved on first start.
   */
  adminToken?: string;
  /**
   * Shows a newly generated admin token to the operator. Default: printed on the console, unless
   * a logger was passed in (tests, embedding), which then read node.adminToken.
   */
  announceAdminToken?: (token: string, configPath: string) => void;
  /** Failed-auth limit of the admin API per client address (tests shorten the window). */
  authLimit?: { maxFailures: number; windowMs: number };
  /** sendfile(2) for complete packages; default: the built addon unless EDGE_ZERO_COPY=0. Null: copy. */
  zeroCopy?: ZeroCopy | null;
  /**
   * accept(2) for draining a burst of connections in one event-loop turn (burst-accept.ts);
   * default: the built addon unless EDGE_BURST_ACCEPT=0. Null: libuv's one per turn.
   */
  acceptor?: Acceptor | null;
}

/** Changing these saves the file but takes effect only at the next start. */
const RESTART_KEYS = ['nodePort', 'storage.path', 'logging.fileEnabled', 'logging.filePath', 'logging.maxFileSize', 'logging.backupCount'] as const;

export interface ScheduleInfo {
  nextPollAt: number | null;
  nextHeartbeatAt: number | null;
}

/** src/ when run from source; start.ts passes the folder explicitly when bundled. */
const PROGRAM_DIR = path.dirname(fileURLToPath(import.meta.url));

/**
 * The composition root: wires config, master client, store, sync, announcer, HTTP app and
 * schedules. Everything else takes its dependencies as arguments; only this file knows them all.
 */
export class EdgeNode {
  readonly config: ConfigStore;
  readonly logger: Logger;
  readonly store: PackageStore;
  readonly jobs: SyncJobs;
  readonly sync: SyncLoop;
  readonly announcer: Announcer;
  readonly stats: DownloadStats;
  /** Storage quota and free-disk floor: evicts non-active packages, refuses syncs that cannot fit. */
  readonly quota: QuotaGuard;
  readonly server: Server;
  /** Drains bursts of connections (null without the addon); see burst-accept.ts. */
  readonly #burstAccept: BurstAccept | null;
  /** sha256 of downloads, on a worker thread (hash-thread.ts). */
  readonly #hashes = new HashThread();
  readonly startedAt = Date.now();
  readonly host: string;
  readonly version: string;
  /** The last log lines (admin API, panel, diagnostics). */
  readonly logs: LogRing;
  readonly metrics: NodeMetrics;
  /** Service stop/start and applied config changes (the panel's event stream carries them). */
  readonly events = new EventEmitter<NodeEventMap>();
  #master: MasterClient;
  #address = '';
  #port = 0;
  #serving = true;
  #pollTask: PeriodicTask;
  /** Quick checks between polls (watchInterval); idles at a minute when switched off. */
  #watchTask: PeriodicTask;
  #heartbeatTask: PeriodicTask;
  #options: EdgeNodeOptions;
  #stopping: Promise<void> | null = null;
  #adminTokenOverride: string | null;
  #bootConfig: NodeConfig;
  #eventHub: AdminEventHub;
  #disk: DiskSpaceProbe;
  #schedule: ScheduleInfo = { nextPollAt: null, nextHeartbeatAt: null };
  /** Config changes are applied one after the other, in the order they were saved. */
  #applying: Promise<void> = Promise.resolve();
  /** Service stop/start requests run one at a time. */
  #serviceOp: Promise<void> = Promise.resolve();
  /** Heartbeats this node started and that have not finished (stop waits for them before unregistering). */
  #beats = new Set<Promise<boolean>>();

  private constructor(options: EdgeNodeOptions, config: ConfigStore, logger: Logger, logs: LogRing, store: PackageStore, adminToken: string | null) {
    this.#options = options;
    this.config = config;
    this.logger = logger;
    this.logs = logs;
    this.store = store;
    this.host = options.host ?? '0.0.0.0';
    this.#adminTokenOverride = adminToken;
    this.#bootConfig = config.current;
    const publicDir = options.publicDir ?? path.resolve(PROGRAM_DIR, '..', 'public');
    this.version = readVersion(path.resolve(publicDir, '..', 'package.json'));
    this.stats = new DownloadStats();
    this.#disk = new DiskSpaceProbe(store.root);
    this.#master = this.#createMasterClient(config.current);
    this.quota = new QuotaGuard({
      store,
      settings: () => {
        const { maxSize, cleanupThreshold, autoCleanup } = this.config.current.storage;
        // freeFloorBytes null: keep 5 % of the volume (at most 512 MiB) free.
        return { maxSize, cleanupThreshold, autoCleanup, freeFloorBytes: null };
      },
      disk: diskSpaceReader(store.root),
      // null before the first successful poll: nothing is evicted on an unknown active set.
      activeIds: () => (this.sync.lastSuccess ? new Set(this.sync.activeMeetings().map((m) => m.id)) : null),
      inFlightIds: () => this.jobs.inFlightIds(),
      lastServedAt: (id) => this.stats.peek(id)?.lastServedAt ?? null,
      logger,
    });
    this.jobs = new SyncJobs({ store, master: () => this.#master, settings: () => syncSettings(this.config.current), logger, guard: this.quota, hashes: this.#hashes });
    this.sync = new SyncLoop({
      store,
      jobs: this.jobs,
      master: () => this.#master,
      policy: () => {
        const { cleanup } = this.config.current;
        return { evictEnded: cleanup.enabled && cleanup.cleanEndedMeetings, cleanOnStartup: cleanup.enabled && cleanup.cleanOnStartup };
      },
      quota: this.quota,
      logger,
    });
    this.announcer = new Announcer({
      master: () => this.#master,
      nodeId: () => this.config.current.nodeId ?? 'node-unknown',
      address: () => this.#address,
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
      running: () => this.#serving,
      nodeId: () => this.config.current.nodeId ?? '',
      version: this.version,
      startedAt: this.startedAt,
    });
    this.#eventHub = new AdminEventHub({ jobs: this.jobs, sync: this.sync, store, logs, node: this.events, running: () => this.#serving });
    // Loaded once (require caches it) for both of its uses; options given by tests override each.
    const addon = loadNetAddon();
    let zeroCopy = options.zeroCopy;
    if (zeroCopy === undefined) {
      const loaded = loadZeroCopy(process.env, addon);
      zeroCopy = loaded.zeroCopy;
      logger.info(zeroCopy ? 'serving packages with sendfile (zero copy)' : `serving packages by copying through buffers: ${loaded.reason}`);
    }
    let acceptor = options.acceptor;
    if (acceptor === undefined) {
      const loaded = loadAcceptor(process.env, addon);
      acceptor = loaded.acceptor;
      if (!acceptor) logger.info(`accepting connections one per event-loop turn: ${loaded.reason}`);
    }
    const downloads: DownloadDeps = {
      store,
      sync: this.sync,
      stats: this.stats,
      logger,
      isServing: () => this.#serving,
      // Serve while downloading: tablets of a package still syncing stream the bytes already
      // on disk; bounded, so a herd cannot hold unlimited sockets and fds.
      tailing: new TailLimit(options.maxTailingClients ?? 2_000),
      tailFiles: new SharedReadFiles(),
      zeroCopy,
      settings: () => ({
        waitForSyncMs: options.waitForSyncMs ?? 30_000,
        idleTimeoutMs: Math.max(30_000, this.config.current.network.downloadTimeout * 1000),
        retryAfterSeconds: 5,
      }),
    };
    const app = createApp({
      downloads,
      admin: {
        logger,
        token: () => this.adminToken,
        authLimit: options.authLimit,
        config: {
          current: () => this.config.current,
          schema: configSchema,
          update: (patch) => this.updateConfig(patch),
        },
        service: {
          running: () => this.#serving,
          stop: () => this.stopService(),
          start: () => this.startService(),
          syncNow: () => this.#syncNowReport(),
          status: () => this.status(),
        },
        events: this.#eventHub,
        logs,
        diagnostics: { collect: () => this.#diagnostics() },
        health: {
          storageRoot: store.root,
          configValid: () => this.config.validate(this.config.current).ok,
          running: () => this.#serving,
          metrics: this.metrics,
          metricsPublic: () => this.config.current.metricsPublic,
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
    // A meeting start connects every tablet at once: accept them in one turn, not one per turn.
    this.#burstAccept = acceptor ? new BurstAccept(this.server, acceptor) : null;
    // The interval callbacks run exactly when the next run is scheduled: noting the time there
    // makes the next-run times in /api/status those of the real timers.
    this.#pollTask = new PeriodicTask(
      'poll',
      () => {
        const ms = this.config.current.syncInterval * 1000;
        this.#schedule.nextPollAt = Date.now() + ms;
        return ms;
      },
      () => this.sync.pollNow(),
      logger,
    );
    this.#watchTask = new PeriodicTask(
      'watch',
      () => this.#watchDelayMs(),
      async () => {
        if (this.config.current.watchInterval > 0) await this.sync.watch();
      },
      logger,
    );
    this.#heartbeatTask = new PeriodicTask(
      'heartbeat',
      () => {
        const ms = this.config.current.heartbeat.interval * 1000;
        this.#schedule.nextHeartbeatAt = Date.now() + ms;
        return ms;
      },
      () => this.#beat(),
      logger,
    );
    // A finished sync or an eviction goes to the master at once: the room's token waits for it.
    this.sync.events.on('changed', () => {
      if (this.#serving) void this.#beat();
    });
    config.onChange((current, previous, changed) => {
      this.#applying = this.#applying.then(() =>
        this.#applyConfig(current, previous, changed).catch((error: Error) => {
          this.logger.error(`config: applying ${changed.join(', ')} failed: ${error.message}`);
        }),
      );
    });
  }

  /** Loads the config, opens storage, listens, registers and starts polling and heartbeats. */
  static async start(options: EdgeNodeOptions): Promise<EdgeNode> {
    const config = ConfigStore.open(options.configPath);
    const { logging, storage } = config.current;
    const baseLogger =
      options.logger ??
      createLogger({
        level: logging.level,
        filePath: logging.fileEnabled ? config.resolvePath(logging.filePath) : null,
        maxFileSize: logging.maxFileSize,
        backupCount: logging.backupCount,
      });
    const logs = new LogRing(1000);
    const logger = tapLogger(baseLogger, logs);
    const adminToken = resolveAdminToken(config, options, logger);
    const store = await PackageStore.open(config.resolvePath(storage.path), logger);
    const node = new EdgeNode(options, config, logger, logs, store, adminToken);
    await node.#listen(options.port ?? config.current.nodePort);
    node.#startBackground();
    return node;
  }

  get port(): number {
    return this.#port;
  }

  /** host:port registered with the master. */
  get address(): string {
    return this.#address;
  }

  get master(): MasterClient {
    return this.#master;
  }

  get serving(): boolean {
    return this.#serving;
  }

  /** The admin API's bearer token in force: EDGE_ADMIN_TOKEN / the option, else the config's. */
  get adminToken(): string {
    return this.#adminTokenOverride ?? this.config.current.adminToken ?? '';
  }

  /** When the poll and heartbeat timers fire next (null: not scheduled, e.g. service stopped). */
  get schedule(): ScheduleInfo {
    return { ...this.#schedule };
  }

  /** Saved settings that differ from what the running process uses until it restarts. */
  get restartRequired(): string[] {
    return RESTART_KEYS.filter((key) => JSON.stringify(pick(this.config.current, key)) !== JSON.stringify(pick(this.#bootConfig, key)));
  }

  /** Base URL to reach this node from this machine (tests, demo). */
  get localUrl(): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.#port}`;
  }

  /** The /api/status document. */
  async status() {
    return buildStatus(this, await this.#disk.read());
  }

  /** Polls the master and reconciles now (also what the poll schedule runs). */
  syncNow(): Promise<void> {
    return this.#pollTask.runNow();
  }

  heartbeatNow(): Promise<boolean> {
    return this.#beat();
  }

  /**
   * Saves a (partial) config change and applies it: intervals rescheduled from now, a new master
   * or identity re-registered, the log level switched. Resolves once the change is live.
   */
  async updateConfig(patch: Record<string, unknown>): Promise<ConfigApplyResult> {
    const result = this.config.update(patch);
    if (!result.ok) return result;
    await this.#applying;
    const restartRequired = result.changed.filter((key) => (RESTART_KEYS as readonly string[]).includes(key));
    return { ok: true, changed: result.changed, restartRequired, config: result.config };
  }

  /**
   * The operator's stop: unregister, no more polls or heartbeats, downloads answer 503. The
   * process and the admin API stay up; in-flight syncs finish, no new ones start.
   */
  stopService(): Promise<void> {
    return this.#serialized(async () => {
      if (!this.#serving || this.#stopping) return;
      this.#serving = false;
      this.#pollTask.stop();
      this.#watchTask.stop();
      this.#heartbeatTask.stop();
      this.#schedule = { nextPollAt: null, nextHeartbeatAt: null };
      this.sync.setPaused(true);
      this.logger.info('service stopped by the operator: downloads answer 503, no polls or heartbeats');
      this.events.emit('service', { running: false });
      // A heartbeat landing after the unregister would register the node again.
      await this.#beatsSettled();
      await this.announcer.unregister();
    });
  }

  /** The operator's start: register and resume polling and heartbeats at once. */
  startService(): Promise<void> {
    return this.#serialized(async () => {
      if (this.#serving || this.#stopping) return;
      this.#serving = true;
      this.sync.setPaused(false);
      this.logger.info('service started by the operator');
      this.events.emit('service', { running: true });
      await this.announcer.register();
      this.#schedule.nextHeartbeatAt = Date.now();
      this.#schedule.nextPollAt = Date.now();
      this.#heartbeatTask.start(0);
      this.#pollTask.start(0);
      this.#watchTask.start(this.#watchDelayMs());
    });
  }

  /** Stops polling, unregisters, lets in-flight transfers finish (bounded), closes the server. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const drainMs = this.#options.drainTimeoutMs ?? 10_000;
    this.logger.info('stopping: no more polls or heartbeats');
    this.#pollTask.stop();
    this.#watchTask.stop();
    this.#heartbeatTask.stop();
    this.sync.setPaused(true);
    await this.#serviceOp;
    await this.#applying;
    const wasServing = this.#serving;
    this.#serving = false;
    this.#eventHub.close();
    if (wasServing) {
      await this.#beatsSettled();
      await this.announcer.unregister();
    }
    // Refuse new connections; let running downloads (tablets and master) finish within the bound.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const drained = await this.jobs.drain(drainMs);
    if (!drained) {
      this.logger.warn('stopping: cancelling downloads from the master that did not finish in time');
      this.jobs.cancelAll('node stopping');
      await this.jobs.drain(2_000);
    }
    const timer = setTimeout(() => this.server.closeAllConnections(), drained ? drainMs : 1_000);
    // server.close() waits only for the connections Node accepted itself.
    await Promise.all([closed, this.#burstAccept?.closed()]);
    clearTimeout(timer);
    this.metrics.close();
    await this.#hashes.close();
    await this.#master.close();
    this.logger.info('stopped');
    await new Promise<void>((resolve) => {
      if (this.#options.logger) return resolve();
      this.logger.on('finish', () => resolve());
      this.logger.end();
      setTimeout(resolve, 1000).unref();
    });
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.server.address() as AddressInfo).port;
    const resolved = resolveNodeAddress(this.config.current, this.#port);
    this.#address = resolved.address;
    this.logger.info(`listening on ${this.host}:${this.#port}; node ${this.config.current.nodeId}`);
    this.logger.info(
      `address for tablets: ${this.#address} (${resolved.source === 'public' ? 'publicIp from config' : resolved.source === 'interface' ? 'first non-internal IPv4' : 'no network interface found, loopback only'})`,
    );
    this.logger.info(`master: ${this.#master.baseUrl}; storage: ${this.store.root} (${this.store.list().length} package(s))`);
  }

  #startBackground(): void {
    void this.announcer.register().then(() => {
      if (this.#serving && !this.#stopping) {
        this.#schedule.nextHeartbeatAt = Date.now();
        this.#heartbeatTask.start(0);
      }
    });
    this.#schedule.nextPollAt = Date.now();
    this.#pollTask.start(0);
    this.#watchTask.start(this.#watchDelayMs());
  }

  /** Between quick checks; switched off (0) it idles at a minute, so turning it on applies soon. */
  #watchDelayMs(): number {
    return (this.config.current.watchInterval || 60) * 1000;
  }

  #beat(): Promise<boolean> {
    const beat = this.announcer.heartbeat();
    this.#beats.add(beat);
    void beat.finally(() => this.#beats.delete(beat));
    return beat;
  }

  async #beatsSettled(): Promise<void> {
    while (this.#beats.size > 0) await Promise.allSettled([...this.#beats]);
  }

  #serialized(operation: () => Promise<void>): Promise<void> {
    const run = this.#serviceOp.then(operation);
    this.#serviceOp = run.catch(() => {});
    return run;
  }

  async #syncNowReport(): Promise<{ ok: boolean; error: string | null }> {
    const started = Date.now();
    await this.#pollTask.runNow();
    const last = this.sync.lastSuccess;
    if (last && last.at >= started) return { ok: true, error: null };
    return { ok: false, error: this.sync.lastError?.message ?? null };
  }

  async #applyConfig(current: NodeConfig, previous: NodeConfig, changed: string[]): Promise<void> {
    const touched = (key: string) => changed.some((k) => k === key || k.startsWith(`${key}.`));
    this.logger.info(`config: changed ${changed.join(', ')}`);
    if (touched('logging.level')) this.logger.level = toWinstonLevel(current.logging.level);

    const endpointChanged = previous.mainServerIp !== current.mainServerIp || previous.mainServerPort !== current.mainServerPort;
    const clientChanged = endpointChanged || touched('network.connectionTimeout') || touched('heartbeat.timeout');
    const idChanged = previous.nodeId !== current.nodeId;
    const addressChanged = touched('usePublicAddress') || touched('publicIp') || touched('publicPort');
    if (addressChanged) {
      this.#address = resolveNodeAddress(current, this.#port).address;
      this.logger.info(`config: address for tablets is now ${this.#address}`);
    }
    const oldMaster = this.#master;
    if (clientChanged) this.#master = this.#createMasterClient(current);
    if (endpointChanged) this.logger.info(`config: master changed from ${oldMaster.baseUrl} to ${this.#master.baseUrl}`);

    if (this.#serving && (endpointChanged || idChanged || addressChanged)) {
      await this.#beatsSettled();
      // Leave the old registry entry first: the old master would otherwise hand tablets this
      // node for 30 s more, and under the old id it would list a node that no longer exists.
      if (endpointChanged || idChanged) {
        const oldId = previous.nodeId ?? '';
        try {
          await oldMaster.unregister(oldId);
          this.logger.info(`config: unregistered ${oldId} from ${oldMaster.baseUrl}`);
        } catch (error) {
          this.logger.warn(`config: unregister ${oldId} from ${oldMaster.baseUrl} failed: ${(error as Error).message}`);
        }
      }
      await this.announcer.register();
      void this.#heartbeatTask.runNow();
      if (endpointChanged) void this.#pollTask.runNow();
    }
    if (clientChanged) void oldMaster.close();

    if (touched('syncInterval')) this.#pollTask.reschedule();
    if (touched('watchInterval')) this.#watchTask.reschedule();
    if (touched('heartbeat.interval')) this.#heartbeatTask.reschedule();
    const restartRequired = changed.filter((key) => (RESTART_KEYS as readonly string[]).includes(key));
    if (restartRequired.length > 0) this.logger.warn(`config: ${restartRequired.join(', ')} saved; takes effect after a restart`);
    this.events.emit('config', { changed, restartRequired });
  }

  async #diagnostics() {
    const status = await this.status();
    return {
      nodeId: this.config.current.nodeId ?? 'node',
      logLines: this.logs.recent().map((line) => line.text),
      config: redactConfig(this.config.current),
      status,
      versions: {
        'meeting-edge': this.version,
        platform: `${process.platform} ${process.arch}`,
        ...process.versions,
      },
      metrics: (await this.metrics.render()).body,
      secrets: [this.adminToken],
      now: new Date(),
    };
  }

  #createMasterClient(config: NodeConfig): MasterClient {
    return new InstrumentedMasterClient(
      {
        host: config.mainServerIp,
        port: config.mainServerPort,
        connectTimeoutMs: config.network.connectionTimeout * 1000,
        requestTimeoutMs: Math.max(config.heartbeat.timeout, config.network.connectionTimeout) * 1000,
      },
      (call, ok) => this.metrics.recordMasterCall(call, ok),
    );
  }
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

/**
 * The token from the option / EDGE_ADMIN_TOKEN (not saved), else the config's; with neither, a new
 * random one is saved to the config and shown to the operator once.
 */
function resolveAdminToken(config: ConfigStore, options: EdgeNodeOptions, logger: Logger): string | null {
  const fromEnv = process.env.EDGE_ADMIN_TOKEN;
  const override = options.adminToken ?? (fromEnv && fromEnv.trim() !== '' ? fromEnv.trim() : undefined);
  if (override !== undefined) {
    const checked = config.validate({ ...config.current, adminToken: override });
    if (!checked.ok) {
      const source = options.adminToken !== undefined ? 'adminToken option' : 'EDGE_ADMIN_TOKEN';
      throw new ConfigError(`${source} ${checked.fields.adminToken ?? 'is invalid'}`, { adminToken: checked.fields.adminToken ?? 'is invalid' });
    }
    return override;
  }
  if (config.current.adminToken) return null;
  const token = randomBytes(24).toString('base64url');
  const saved = config.update({ adminToken: token });
  if (!saved.ok) throw new ConfigError(`cannot save a generated admin token: ${JSON.stringify(saved.fields)}`);
  // Never in the log (logs go into diagnostics zips); once on the console for the operator.
  logger.info(`admin token generated and saved as adminToken in ${config.filePath}`);
  const announce =
    options.announceAdminToken ??
    (options.logger
      ? null
      : (value: string, file: string) =>
          console.log(`meeting-edge: admin token for the control panel and API (saved in ${file}; shown only now):\n  ${value}`));
  announce?.(token, config.filePath);
  return null;
}

function pick(config: NodeConfig, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((value, key) => (value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined), config);
}

function readVersion(packageJson: string): string {
  try {
    const parsed = JSON.parse(readFileSync(packageJson, 'utf8')) as { name?: string; version?: string };
    return parsed.name === 'meeting-edge' && parsed.version ? parsed.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
