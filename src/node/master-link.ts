import type { NodeConfig } from '../config/schema.ts';
import type { MasterClient } from '../master/master-client.ts';

/**
 * The master client in use. Sync, jobs and announcer read it through `client` on every call, so
 * when the config applier switches masters (address or timeouts changed) they follow at once.
 */
export class MasterLink {
  #client: MasterClient;
  readonly #create: (config: NodeConfig) => MasterClient;

  constructor(create: (config: NodeConfig) => MasterClient, config: NodeConfig) {
    this.#create = create;
    this.#client = create(config);
  }

  get client(): MasterClient {
    return this.#client;
  }

  /** Switches to a client built for `config`; returns the previous one, which the caller closes. */
  replace(config: NodeConfig): MasterClient {
    const previous = this.#client;
    this.#client = this.#create(config);
    return previous;
  }
}

/** The master client's options from the config: seconds become milliseconds. */
export function masterClientOptions(config: NodeConfig) {
  return {
    host: config.mainServerIp,
    port: config.mainServerPort,
    connectTimeoutMs: config.network.connectionTimeout * 1000,
    // A heartbeat may take heartbeat.timeout; no call should give up before the connect timeout.
    requestTimeoutMs: Math.max(config.heartbeat.timeout, config.network.connectionTimeout) * 1000,
  };
}
