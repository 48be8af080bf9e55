import { createAdaptorServer } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigStore } from './config/config-store.ts';
import type { NodeConfig } from './config/schema.ts';
import { createApp } from './http/app.ts';
import { DownloadStats } from './http/download-stats.ts';
import { createLogger, type Logger } from './logger.ts';
import { Announcer } from './master/announcer.ts';
import { MasterClient } from './master/master-client.ts';
import { resolveNodeAddress } from './master/node-address.ts';
import { PeriodicTask } from './scheduler.ts';
import { PackageStore } from './store/package-store.ts';
import { SyncJobs, type SyncSettings } from './sync/sync-jobs.ts';
import { SyncLoop } from './sync/sync-loop.ts';
import { buildStatus } from './status.ts';

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
  readonly server: Server;
  readonly startedAt = Date.now();
  readonly host: string;
  #master: MasterClient;
  #address = '';
  #port = 0;
  #serving = true;
  #pollTask: PeriodicTask;
  #heartbeatTask: PeriodicTask;
  #options: EdgeNodeOptions;
  #stopping: Promise<void> | null = null;

  private constructor(options: EdgeNodeOptions, config: ConfigStore, logger: Logger, store: PackageStore) {
    this.#options = options;
    this.config = config;
    this.logger = logger;
    this.store = store;
    this.host = options.host ?? '0.0.0.0';
    this.stats = new DownloadStats();
    this.#master = this.#createMasterClient(config.current);
    this.jobs = new SyncJobs({ store, master: () => this.#master, settings: () => syncSettings(this.config.current), logger });
    this.sync = new SyncLoop({
      store,
      jobs: this.jobs,
      master: () => this.#master,
      policy: () => {
        const { cleanup } = this.config.current;
        return { evictEnded: cleanup.enabled && cleanup.cleanEndedMeetings, cleanOnStartup: cleanup.enabled && cleanup.cleanOnStartup };
      },
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
    const app = createApp({
      downloads: {
        store,
        sync: this.sync,
        stats: this.stats,
        logger,
        isServing: () => this.#serving,
        settings: () => ({
          waitForSyncMs: options.waitForSyncMs ?? 30_000,
          idleTimeoutMs: Math.max(30_000, this.config.current.network.downloadTimeout * 1000),
          retryAfterSeconds: 5,
        }),
      },
      status: () => buildStatus(this),
      publicDir: options.publicDir ?? path.resolve(PROGRAM_DIR, '..', 'public'),
    });
    this.server = createAdaptorServer({ fetch: app.fetch }) as Server;
    this.#pollTask = new PeriodicTask('poll', () => this.config.current.syncInterval * 1000, () => this.sync.pollNow(), logger);
    this.#heartbeatTask = new PeriodicTask('heartbeat', () => this.config.current.heartbeat.interval * 1000, () => this.announcer.heartbeat(), logger);
    // A finished sync or an eviction goes to the master at once: the room's token waits for it.
    this.sync.events.on('changed', () => {
      if (this.#serving) void this.announcer.heartbeat();
    });
  }

  /** Loads the config, opens storage, listens, registers and starts polling and heartbeats. */
  static async start(options: EdgeNodeOptions): Promise<EdgeNode> {
    const config = ConfigStore.open(options.configPath);
    const { logging, storage } = config.current;
    const logger =
      options.logger ??
      createLogger({
        level: logging.level,
        filePath: logging.fileEnabled ? config.resolvePath(logging.filePath) : null,
        maxFileSize: logging.maxFileSize,
        backupCount: logging.backupCount,
      });
    const store = await PackageStore.open(config.resolvePath(storage.path), logger);
    const node = new EdgeNode(options, config, logger, store);
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

  /** Base URL to reach this node from this machine (tests, demo). */
  get localUrl(): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.#port}`;
  }

  /** Polls the master and reconciles now (also what the poll schedule runs). */
  syncNow(): Promise<void> {
    return this.#pollTask.runNow();
  }

  heartbeatNow(): Promise<boolean> {
    return this.announcer.heartbeat();
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
    this.#heartbeatTask.stop();
    this.sync.setPaused(true);
    await this.announcer.unregister();
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
    await closed;
    clearTimeout(timer);
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
      if (this.#serving && !this.#stopping) this.#heartbeatTask.start(0);
    });
    this.#pollTask.start(0);
  }

  #createMasterClient(config: NodeConfig): MasterClient {
    return new MasterClient({
      host: config.mainServerIp,
      port: config.mainServerPort,
      connectTimeoutMs: config.network.connectionTimeout * 1000,
      requestTimeoutMs: Math.max(config.heartbeat.timeout, config.network.connectionTimeout) * 1000,
    });
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
