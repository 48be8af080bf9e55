import { MasterClient, type HeartbeatPayload, type MasterClientOptions, type MeetingStatus } from './master-client.ts';

/** The master calls an InstrumentedMasterClient reports. */
export type MasterCall = 'register' | 'heartbeat' | 'unregister' | 'status';

/**
 * A MasterClient that reports the outcome of each registry and status call, so heartbeat failures
 * are counted once per request on the wire (the announcer coalesces callers onto one request).
 */
export class InstrumentedMasterClient extends MasterClient {
  #record: (call: MasterCall, ok: boolean) => void;

  constructor(options: MasterClientOptions, record: (call: MasterCall, ok: boolean) => void) {
    super(options);
    this.#record = record;
  }

  override async register(nodeId: string, address: string): Promise<void> {
    return this.#observe('register', super.register(nodeId, address));
  }

  override async heartbeat(payload: HeartbeatPayload): Promise<void> {
    return this.#observe('heartbeat', super.heartbeat(payload));
  }

  override async unregister(nodeId: string, signal?: AbortSignal): Promise<void> {
    return this.#observe('unregister', super.unregister(nodeId, signal));
  }

  override async getMeetingStatus(signal?: AbortSignal): Promise<MeetingStatus> {
    return this.#observe('status', super.getMeetingStatus(signal));
  }

  async #observe<T>(call: MasterCall, pending: Promise<T>): Promise<T> {
    try {
      const value = await pending;
      this.#record(call, true);
      return value;
    } catch (error) {
      this.#record(call, false);
      throw error;
    }
  }
}
