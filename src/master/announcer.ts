import type { Logger } from '../log/logger.ts';
import type { ActiveMeeting, HeartbeatPayload, MasterClient } from './master-client.ts';

export interface AnnouncerDeps {
  master: () => MasterClient;
  nodeId: () => string;
  /** host:port the master gives tablets. */
  address: () => string;
  activeMeetings: () => ActiveMeeting[];
  syncedMeetingIds: () => string[];
  /** Optional load figures the real master ignores (a load-aware master may redirect by them). */
  extras?: () => Record<string, unknown>;
  logger: Logger;
  now?: () => number;
}

export interface AnnouncerState {
  registered: boolean;
  lastRegisterAt: number | null;
  lastHeartbeatAt: number | null;
  lastHeartbeatOk: boolean | null;
  lastError: { message: string; at: number } | null;
  consecutiveFailures: number;
  /** Last register or heartbeat the master answered (the operator's "last heartbeat" that counts). */
  lastSuccessAt: number | null;
  /** First failure of the current run of failures (null while the master answers). */
  failingSince: number | null;
}

/**
 * Register, heartbeat, unregister. The master keeps its registry in memory and re-registers an
 * unknown node from its heartbeat, so after a master restart nothing needs doing but the next beat.
 * Heartbeats are coalesced: asking for one while one is in flight sends exactly one more after it,
 * carrying the newest state (a finished sync must reach the master promptly: the room's token
 * change waits for it).
 */
export class Announcer {
  readonly state: AnnouncerState = {
    registered: false,
    lastRegisterAt: null,
    lastHeartbeatAt: null,
    lastHeartbeatOk: null,
    lastError: null,
    consecutiveFailures: 0,
    lastSuccessAt: null,
    failingSince: null,
  };
  #deps: AnnouncerDeps;
  #now: () => number;
  #inFlight: Promise<boolean> | null = null;
  #pending: Promise<boolean> | null = null;

  constructor(deps: AnnouncerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  async register(): Promise<boolean> {
    const { logger } = this.#deps;
    const address = this.#deps.address();
    try {
      await this.#deps.master().register(this.#deps.nodeId(), address);
      this.state.registered = true;
      this.state.lastRegisterAt = this.#now();
      this.#recordSuccess();
      logger.info(`registered with master ${this.#deps.master().baseUrl} as ${this.#deps.nodeId()} at ${address}`);
      return true;
    } catch (error) {
      this.#recordFailure(`register: ${(error as Error).message}`);
      logger.warn(`register with ${this.#deps.master().baseUrl} failed: ${(error as Error).message}; heartbeats will register the node`);
      return false;
    }
  }

  /** `signal`: gives up waiting for the master (a stop does not wait long for a hung one). */
  async unregister(master: MasterClient = this.#deps.master(), signal?: AbortSignal): Promise<void> {
    try {
      await master.unregister(this.#deps.nodeId(), signal);
      this.#deps.logger.info(`unregistered from master ${master.baseUrl}`);
    } catch (error) {
      this.#deps.logger.warn(`unregister from ${master.baseUrl} failed: ${(error as Error).message}`);
    }
    this.state.registered = false;
  }

  payload(): HeartbeatPayload {
    const active = this.#deps.activeMeetings();
    const activeIds = new Set(active.map((m) => m.id));
    return {
      node_id: this.#deps.nodeId(),
      address: this.#deps.address(),
      status: 'online',
      active_meetings: active.map((m) => ({ id: m.id, title: m.title })),
      // The master only counts ids that are also in this beat's active_meetings.
      synced_meetings: this.#deps.syncedMeetingIds().filter((id) => activeIds.has(id)),
      ...(this.#deps.extras?.() ?? {}),
    };
  }

  /** Sends a heartbeat now, or once more right after the one in flight. */
  heartbeat(): Promise<boolean> {
    if (!this.#inFlight) {
      this.#inFlight = this.#send().finally(() => {
        this.#inFlight = null;
      });
      return this.#inFlight;
    }
    this.#pending ??= this.#inFlight.then(() => {
      this.#pending = null;
      return this.heartbeat();
    });
    return this.#pending;
  }

  async #send(): Promise<boolean> {
    const payload = this.payload();
    this.state.lastHeartbeatAt = this.#now();
    try {
      await this.#deps.master().heartbeat(payload);
      if (this.state.consecutiveFailures > 0) this.#deps.logger.info('heartbeat: master reachable again');
      this.state.lastHeartbeatOk = true;
      this.state.registered = true;
      this.#recordSuccess();
      this.#deps.logger.debug(`heartbeat ok: ${payload.active_meetings.length} active, ${payload.synced_meetings.length} synced`);
      return true;
    } catch (error) {
      this.state.lastHeartbeatOk = false;
      const first = this.state.consecutiveFailures === 0;
      this.#recordFailure(`heartbeat: ${(error as Error).message}`);
      // One warning per outage, not one per beat.
      if (first) this.#deps.logger.warn(`heartbeat failed: ${(error as Error).message}`);
      return false;
    }
  }

  #recordSuccess(): void {
    this.state.consecutiveFailures = 0;
    this.state.lastError = null;
    this.state.lastSuccessAt = this.#now();
    this.state.failingSince = null;
  }

  #recordFailure(message: string): void {
    const now = this.#now();
    this.state.consecutiveFailures++;
    this.state.failingSince ??= now;
    this.state.lastError = { message, at: now };
  }
}
