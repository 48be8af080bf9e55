import type { EventEmitter } from 'node:events';
import type { ConfigStore } from '../config/config-store.ts';
import type { NodeConfig } from '../config/schema.ts';
import type { ConfigApplyResult } from '../node-events.ts';
import type { NodeEventMap } from '../node-events.ts';
import { toLogLevel, type Logger } from '../log/logger.ts';
import type { Announcer } from '../master/announcer.ts';
import type { NodeLifecycle } from './lifecycle.ts';
import type { MasterLink } from './master-link.ts';

/** Changing these saves the file but takes effect only at the next start. */
export const RESTART_KEYS = ['nodePort', 'storage.path', 'logging.fileEnabled', 'logging.filePath', 'logging.maxFileSize', 'logging.backupCount', 'logging.format'] as const;

export interface ConfigApplierDeps {
  config: ConfigStore;
  logger: Logger;
  master: MasterLink;
  announcer: Pick<Announcer, 'register'>;
  lifecycle: Pick<NodeLifecycle, 'serving' | 'beatsSettled' | 'refreshAddress' | 'runNow' | 'reschedule' | 'whileServing'>;
  events: EventEmitter<NodeEventMap>;
  /** Storage upkeep (the scrub's schedule). */
  maintenance?: { reschedule(): void };
  /**
   * Settings a start option overrides, with the option (nodePort: '--port'): saved, but neither
   * live nor applied by a restart while the option is given; reported as such, not as "restart".
   */
  startOverrides?: Readonly<Record<string, string>>;
}

/**
 * Applies saved config changes to the running node: intervals rescheduled from now, a new master
 * or identity re-registered (leaving the old entry first), the log level switched. Changes are
 * applied one after the other, in the order they were saved.
 */
export class ConfigApplier {
  readonly #deps: ConfigApplierDeps;
  /** The config the process started with: what the restart keys still run on. */
  readonly #boot: NodeConfig;
  #applying: Promise<void> = Promise.resolve();

  constructor(deps: ConfigApplierDeps) {
    this.#deps = deps;
    this.#boot = deps.config.current;
    deps.config.onChange((current, previous, changed) => {
      this.#applying = this.#applying.then(() =>
        this.#apply(current, previous, changed).catch((error: Error) => {
          deps.logger.error(`config: applying ${changed.join(', ')} failed: ${error.message}`);
        }),
      );
    });
  }

  /** Saves a (partial) change and resolves once it is live. */
  async update(patch: Record<string, unknown>): Promise<ConfigApplyResult> {
    const result = this.#deps.config.update(patch);
    if (!result.ok) return result;
    await this.#applying;
    const overridden = Object.entries(this.startOverrides)
      .filter(([key]) => result.changed.includes(key))
      .map(([key, option]) => ({ key, option }));
    return { ok: true, changed: result.changed, restartRequired: this.#restartKeysIn(result.changed), overridden, config: result.config };
  }

  /** Settings a start option overrides for the life of this process, with the option. */
  get startOverrides(): Readonly<Record<string, string>> {
    return this.#deps.startOverrides ?? {};
  }

  /** Resolves once every saved change is live. */
  settled(): Promise<void> {
    return this.#applying;
  }

  /** Saved settings that differ from what the running process uses until it restarts. */
  get restartRequired(): string[] {
    const current = this.#deps.config.current;
    return RESTART_KEYS.filter((key) => !(key in this.startOverrides) && JSON.stringify(pick(current, key)) !== JSON.stringify(pick(this.#boot, key)));
  }

  /** Changed keys that need a restart: only those whose saved value now differs from the running one (set back: none). */
  #restartKeysIn(changed: string[]): string[] {
    const pending = this.restartRequired;
    return changed.filter((key) => pending.includes(key));
  }

  async #apply(current: NodeConfig, previous: NodeConfig, changed: string[]): Promise<void> {
    const { logger, master, lifecycle, announcer, events } = this.#deps;
    const touched = (key: string) => changed.some((k) => k === key || k.startsWith(`${key}.`));
    logger.info(`config: changed ${changed.join(', ')}`);
    if (touched('logging.level')) logger.level = toLogLevel(current.logging.level);

    const endpointChanged = previous.mainServerIp !== current.mainServerIp || previous.mainServerPort !== current.mainServerPort;
    const clientChanged = endpointChanged || touched('network.connectionTimeout') || touched('heartbeat.timeout');
    const idChanged = previous.nodeId !== current.nodeId;
    const addressChanged = touched('usePublicAddress') || touched('publicIp') || touched('publicPort');
    if (addressChanged) {
      logger.info(`config: address for tablets is now ${lifecycle.refreshAddress()}`);
    }
    const oldMaster = clientChanged ? master.replace(current) : master.client;
    if (endpointChanged) logger.info(`config: master changed from ${oldMaster.baseUrl} to ${master.client.baseUrl}`);

    if (lifecycle.serving && (endpointChanged || idChanged || addressChanged)) {
      await lifecycle.beatsSettled();
      // Leave the old registry entry first: the old master would otherwise hand tablets this
      // node until it expires, and under the old id it would list a node that no longer exists.
      if (endpointChanged || idChanged) {
        const oldId = previous.nodeId ?? '';
        try {
          await oldMaster.unregister(oldId);
          logger.info(`config: unregistered ${oldId} from ${oldMaster.baseUrl}`);
        } catch (error) {
          logger.warn(`config: unregister ${oldId} from ${oldMaster.baseUrl} failed: ${(error as Error).message}`);
        }
      }
      // Only if the service still runs: an operator's stop during the awaits above unregistered
      // the node, and registering after it would list a stopped node (serialized with stop/start).
      await lifecycle.whileServing(async () => {
        await announcer.register();
        void lifecycle.runNow('heartbeat');
        if (endpointChanged) void lifecycle.runNow('poll');
      });
    }
    if (clientChanged) void oldMaster.close();

    if (touched('syncInterval')) lifecycle.reschedule('poll');
    if (touched('watchInterval')) lifecycle.reschedule('watch');
    if (touched('heartbeat.interval')) lifecycle.reschedule('heartbeat');
    if (touched('maintenance.scrubSchedule')) this.#deps.maintenance?.reschedule();
    const restartRequired = this.#restartKeysIn(changed);
    if (restartRequired.length > 0) logger.warn(`config: ${restartRequired.join(', ')} saved; takes effect after a restart`);
    for (const [key, option] of Object.entries(this.startOverrides)) {
      if (changed.includes(key)) logger.warn(`config: ${key} saved, but the node was started with ${option}, which wins over it while it is given`);
    }
    events.emit('config', { changed, restartRequired });
  }
}

function pick(config: NodeConfig, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((value, key) => (value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined), config);
}
