import type { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodeConfig } from '../config/schema.ts';
import type { NodeEventMap } from '../node-events.ts';
import type { BurstAccept } from '../http/burst-accept.ts';
import type { BodyHandOff } from '../http/body-handoff.ts';
import type { Logger } from '../log/logger.ts';
import type { Announcer } from '../master/announcer.ts';
import { addressMismatch, resolveNodeAddress } from '../master/node-address.ts';
import type { PackageStore } from '../store/package-store.ts';
import type { SyncJobs } from '../sync/sync-jobs.ts';
import type { Reconciler } from '../sync/reconciler.ts';
import type { MasterLink } from './master-link.ts';
import type { NodePolicy } from '../policy.ts';
import { settledWithin } from '../time-limit.ts';
import { PeriodicTask } from './scheduler.ts';

export interface ScheduleInfo {
  nextPollAt: number | null;
  nextHeartbeatAt: number | null;
}

export type TaskName = 'poll' | 'watch' | 'heartbeat';

export interface LifecycleDeps {
  config: () => NodeConfig;
  policy: NodePolicy;
  server: Server;
  host: string;
  /** Connections accepted past Node's own accept; server.close() does not wait for them. */
  burstAccept: BurstAccept | null;
  /** Bodies the addon sends after the connection left the server: a stop waits for them as for the server's own. */
  handOff?: Pick<BodyHandOff, 'idle' | 'abortAll'> | null;
  store: Pick<PackageStore, 'root' | 'list'>;
  sync: Reconciler;
  jobs: SyncJobs;
  announcer: Announcer;
  master: MasterLink;
  /** Closed in this order once the transfers are over (metrics, hash thread...). */
  closeAfterDrain: Array<() => void | Promise<void>>;
  /** Closed as soon as the node stops serving (the panel's event streams). */
  closeAtStop: () => void;
  events: EventEmitter<NodeEventMap>;
  logger: Logger;
  /** Whether stop closes the logger: only one the node built itself. */
  ownsLogger: boolean;
  /** Resolves once the config changes being applied are live (a stop waits for them). */
  configSettled: () => Promise<void>;
}

/**
 * The node's life: listening, the poll, watch and heartbeat timers, the operator's service
 * stop/start, and the final stop that drains transfers before closing. Owns the serving flag.
 */
export class NodeLifecycle {
  readonly #deps: LifecycleDeps;
  #address = '';
  #port = 0;
  #serving = true;
  #stopping: Promise<void> | null = null;
  /** Service stop/start requests run one at a time. */
  #serviceOp: Promise<void> = Promise.resolve();
  /** Heartbeats this node started and that have not finished (stop waits for them before unregistering). */
  #beats = new Set<Promise<boolean>>();
  readonly #tasks: Record<TaskName, PeriodicTask>;

  constructor(deps: LifecycleDeps) {
    this.#deps = deps;
    const { config, sync, logger } = deps;
    this.#tasks = {
      poll: new PeriodicTask(
        'poll',
        () => config().syncInterval * 1000,
        () => sync.pollNow(),
        logger,
      ),
      // Quick checks between polls (watchInterval).
      watch: new PeriodicTask(
        'watch',
        () => this.#watchDelayMs(),
        async () => {
          if (config().watchInterval > 0) await sync.watch();
        },
        logger,
      ),
      heartbeat: new PeriodicTask(
        'heartbeat',
        () => config().heartbeat.interval * 1000,
        () => this.#beat(),
        logger,
      ),
    };
    // A finished sync or an eviction goes to the master at once: the room's token waits for it.
    sync.events.on('changed', () => {
      if (this.#serving) void this.#beat();
    });
  }

  get serving(): boolean {
    return this.#serving;
  }

  get stopping(): boolean {
    return this.#stopping !== null;
  }

  get port(): number {
    return this.#port;
  }

  /** host:port registered with the master. */
  get address(): string {
    return this.#address;
  }

  /** Base URL to reach this node from this machine (a wildcard host is reached on loopback). */
  get localUrl(): string {
    const { host } = this.#deps;
    const local = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return `http://${local.includes(':') ? `[${local}]` : local}:${this.#port}`;
  }

  /** When the next poll and heartbeat start, as their timers say (null: not scheduled, e.g. service stopped). */
  get schedule(): ScheduleInfo {
    return { nextPollAt: this.#tasks.poll.nextRunAt, nextHeartbeatAt: this.#tasks.heartbeat.nextRunAt };
  }

  /** Listens, then works out the address to register. Rejects when the port cannot be had. */
  async listen(port: number): Promise<void> {
    const { server, host, logger, config, master, store } = this.#deps;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#port = (server.address() as AddressInfo).port;
    logger.info(`listening on ${host}:${this.#port}; node ${config().nodeId}`);
    this.#resolveAddress(true);
    logger.info(`master: ${master.client.baseUrl}; storage: ${store.root} (${store.list().length} package(s))`);
  }

  /** The address settings changed: works out the address to register again. */
  refreshAddress(): string {
    this.#resolveAddress(false);
    return this.#address;
  }

  /** `announce`: log the address and why it was chosen (at start; the config applier logs a change itself). */
  #resolveAddress(announce: boolean): void {
    const { config, host, logger } = this.#deps;
    const resolved = resolveNodeAddress(config(), this.#port, undefined, host);
    this.#address = resolved.address;
    if (resolved.source === 'unlisted') {
      // Degrade, do not die: the node serves; only the address tablets are sent to is unknown.
      logger.warn(
        `address for tablets: cannot list the network interfaces (${resolved.error}); registering ${this.#address}, which tablets cannot reach: start with --host ADDR, or set usePublicAddress and publicIp`,
      );
      return;
    }
    const why = { public: 'publicIp from config', listen: 'the address listened on', interface: 'first non-internal IPv4', loopback: 'no network interface found, loopback only' };
    if (announce) logger.info(`address for tablets: ${this.#address} (${why[resolved.source]})`);
    this.#warnUnreachable();
  }

  #warnUnreachable(): void {
    const mismatch = addressMismatch(this.#address, this.#deps.host, this.#port);
    if (mismatch) this.#deps.logger.warn(mismatch);
  }

  /** Registers, then heartbeats; polls and quick checks start at once. */
  startBackground(): void {
    void this.#deps.announcer.register().then(() => {
      if (this.#serving && !this.#stopping) this.#tasks.heartbeat.start(0);
    });
    this.#tasks.poll.start(0);
    this.#tasks.watch.start(this.#watchDelayMs());
  }

  /**
   * Runs a task now (or right after its current run) and counts its interval from then; only while
   * the service runs (a stopped service polls and beats no more).
   */
  runNow(task: TaskName): Promise<void> {
    if (!this.#serving || this.#stopping) return Promise.resolve();
    return this.#tasks[task].runNow();
  }

  /** Runs `operation` only while the service runs, never interleaved with a service stop or start. */
  whileServing(operation: () => Promise<void>): Promise<void> {
    return this.#serialized(async () => {
      if (this.#serving && !this.#stopping) await operation();
    });
  }

  /** Its interval changed: the next run counts the new one from now. */
  reschedule(task: TaskName): void {
    this.#tasks[task].reschedule();
  }

  heartbeatNow(): Promise<boolean> {
    return this.#beat();
  }

  /** Polls now; ok when that poll reached the master, else the poll's error. */
  async syncNowReport(): Promise<{ ok: boolean; error: string | null }> {
    const started = Date.now();
    await this.#tasks.poll.runNow();
    const last = this.#deps.sync.lastSuccess;
    if (last && last.at >= started) return { ok: true, error: null };
    return { ok: false, error: this.#deps.sync.lastError?.message ?? null };
  }

  /** Waits for every heartbeat in flight (a heartbeat landing after an unregister registers again). */
  async beatsSettled(): Promise<void> {
    while (this.#beats.size > 0) await Promise.allSettled([...this.#beats]);
  }

  /**
   * The operator's stop: unregister, no more polls or heartbeats, downloads answer 503. The
   * process and the admin API stay up; in-flight syncs finish, no new ones start.
   */
  stopService(): Promise<void> {
    return this.#serialized(async () => {
      if (!this.#serving || this.#stopping) return;
      this.#serving = false;
      this.#stopTasks();
      this.#deps.logger.info('service stopped by the operator: downloads answer 503, no polls or heartbeats');
      this.#deps.events.emit('service', { serving: false });
      await this.#leaveMaster();
    });
  }

  /** The operator's start: register and resume polling and heartbeats at once. */
  startService(): Promise<void> {
    return this.#serialized(async () => {
      if (this.#serving || this.#stopping) return;
      this.#serving = true;
      this.#deps.sync.setPaused(false);
      this.#deps.logger.info('service started by the operator');
      this.#deps.events.emit('service', { serving: true });
      await this.#deps.announcer.register();
      this.#tasks.heartbeat.start(0);
      this.#tasks.poll.start(0);
      this.#tasks.watch.start(this.#watchDelayMs());
    });
  }

  /** Stops polling, unregisters, lets in-flight transfers finish (bounded), closes the server. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const { server, jobs, logger, policy } = this.#deps;
    const drainMs = policy.drainTimeoutMs;
    logger.info('stopping: no more polls or heartbeats');
    this.#stopTasks();
    await this.#serviceOp;
    await this.#deps.configSettled();
    const wasServing = this.#serving;
    this.#serving = false;
    this.#deps.closeAtStop();
    if (wasServing) await this.#leaveMaster();
    // Refuse new connections; let running downloads (tablets and master) finish within the bound.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const drained = await jobs.drain(drainMs);
    if (!drained) {
      logger.warn('stopping: cancelling downloads from the master that did not finish in time');
      jobs.cancelAll('node stopping');
      await jobs.drain(policy.cancelGraceMs);
    }
    const handOff = this.#deps.handOff;
    const timer = setTimeout(
      () => {
        server.closeAllConnections();
        handOff?.abortAll();
      },
      drained ? drainMs : policy.closeGraceMs,
    );
    // server.close() waits only for the connections Node accepted itself (and holds). A body is
    // handed off by closing its connection, so the server may report closed with a transfer just
    // started: the transfers are waited for once no connection can hand off another.
    await Promise.all([closed, this.#deps.burstAccept?.closed()]);
    await handOff?.idle();
    clearTimeout(timer);
    for (const close of this.#deps.closeAfterDrain) await close();
    // A poll or watch still waiting on a hung master: cut it rather than wait for its timeout.
    const client = this.#deps.master.client;
    if (!(await settledWithin(client.close(), policy.stopMasterWaitMs))) await client.destroy();
    logger.info('stopped');
    if (this.#deps.ownsLogger) await logger.close();
  }

  /**
   * Unregisters, having let a heartbeat in flight land first (one landing after the unregister
   * would register the node again). Each wait is bounded: a hung master gets stopMasterWaitMs for
   * the heartbeat and as long again for the unregister, and the stop goes on without it.
   */
  async #leaveMaster(): Promise<void> {
    const waitMs = this.#deps.policy.stopMasterWaitMs;
    if (!(await settledWithin(this.beatsSettled(), waitMs))) {
      this.#deps.logger.warn(`stopping: a heartbeat to the master got no answer in ${waitMs / 1000} s; unregistering anyway`);
    }
    await this.#deps.announcer.unregister(undefined, AbortSignal.timeout(waitMs));
  }

  #stopTasks(): void {
    this.#tasks.poll.stop();
    this.#tasks.watch.stop();
    this.#tasks.heartbeat.stop();
    this.#deps.sync.setPaused(true);
  }

  /** Between quick checks; switched off (0) it idles, so turning it on applies soon. */
  #watchDelayMs(): number {
    return (this.#deps.config().watchInterval || this.#deps.policy.watchIdleSeconds) * 1000;
  }

  #beat(): Promise<boolean> {
    const beat = this.#deps.announcer.heartbeat();
    this.#beats.add(beat);
    void beat.finally(() => this.#beats.delete(beat));
    return beat;
  }

  #serialized(operation: () => Promise<void>): Promise<void> {
    const run = this.#serviceOp.then(operation);
    this.#serviceOp = run.catch(() => {});
    return run;
  }
}
