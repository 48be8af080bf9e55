/**
 * Which build of a package the master serves now, learnt from the first bytes of its stream.
 *
 * A held package may be out of date after a token change (some meeting started; it may be this
 * one, restarted), and downloading it again costs the master the whole package. The master sends
 * no length, ETag or hash and ignores Range, but its first zip entry identifies the build
 * (zip-lead.ts): reading up to the end of it (at most 64 KiB) and closing the connection tells
 * the node whether its copy is current. Each request makes the master read the whole package into
 * memory, so probes go one at a time (ProbeQueue) and only when needed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MasterClient } from '../master/master-client.ts';
import { buildIdentity, LEAD_CAP_BYTES, type BuildIdentity } from '../store/zip-lead.ts';

export type ProbeResult =
  /** `seed`: the build was learnt from the site's seed (that address), not from the master. */
  | { kind: 'identified'; identity: BuildIdentity; bytesRead: number; seed?: string }
  /** The master answered nothing usable in time (closed early, stalled, errored): keep what is held, ask again later. */
  | { kind: 'unknown'; reason: string; bytesRead: number };

export interface ProbeOptions {
  /** For the whole probe: connect, headers and the leading bytes. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Reads the beginning of the master's current build of a meeting's package, then hangs up. */
export async function probeMasterBuild(master: MasterClient, meetingId: string, options: ProbeOptions): Promise<ProbeResult> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const chunks: Buffer[] = [];
  let bytesRead = 0;
  let response;
  try {
    response = await master.openPackage(meetingId, { signal, headersTimeoutMs: options.timeoutMs, idleTimeoutMs: options.timeoutMs });
  } catch (error) {
    return { kind: 'unknown', reason: describe(error, signal), bytesRead };
  }
  const { body } = response;
  try {
    for await (const chunk of body) {
      const piece = chunk as Buffer;
      // Never more than the cap from the master, whatever its chunk sizes.
      const room = LEAD_CAP_BYTES - bytesRead;
      chunks.push(piece.length > room ? piece.subarray(0, room) : piece);
      bytesRead += Math.min(piece.length, room);
      const identity = buildIdentity(Buffer.concat(chunks, bytesRead));
      if (identity) return { kind: 'identified', identity, bytesRead };
      if (signal.aborted) break;
    }
    if (signal.aborted) return { kind: 'unknown', reason: describe(signal.reason, signal), bytesRead };
    // The whole package was shorter than its first entry's end could show: all of it is the lead.
    const identity = buildIdentity(Buffer.concat(chunks, bytesRead), true);
    return identity && bytesRead > 0 ? { kind: 'identified', identity, bytesRead } : { kind: 'unknown', reason: 'empty package', bytesRead };
  } catch (error) {
    return { kind: 'unknown', reason: describe(error, signal), bytesRead };
  } finally {
    body.destroy();
  }
}

/**
 * Runs probes one after the other: each makes the master read a whole package into memory, so
 * they never overlap. Asking again for a meeting already waiting joins that probe; an urgent ask
 * (a tablet waits for the answer) moves it to the front of the ones waiting.
 */
export class ProbeQueue {
  #waiting: Array<{ meetingId: string; probe: () => Promise<ProbeResult>; settle: (result: Promise<ProbeResult>) => void }> = [];
  #pending = new Map<string, Promise<ProbeResult>>();
  #running = false;
  #gapMs: number;

  /** `gapMs`: a pause between two probes, so a burst of them does not keep the master busy. */
  constructor(gapMs = 0) {
    this.#gapMs = gapMs;
  }

  run(meetingId: string, probe: () => Promise<ProbeResult>, options: { urgent?: boolean } = {}): Promise<ProbeResult> {
    const pending = this.#pending.get(meetingId);
    if (pending) {
      if (options.urgent) this.#toFront(meetingId);
      return pending;
    }
    let settle!: (result: Promise<ProbeResult>) => void;
    const result = new Promise<ProbeResult>((resolve) => {
      settle = resolve;
    });
    const entry = { meetingId, probe, settle };
    if (options.urgent) this.#waiting.unshift(entry);
    else this.#waiting.push(entry);
    this.#pending.set(meetingId, result);
    void this.#drain();
    return result;
  }

  /** Meetings with a probe running or waiting. */
  pendingIds(): Set<string> {
    return new Set(this.#pending.keys());
  }

  #toFront(meetingId: string): void {
    const index = this.#waiting.findIndex((entry) => entry.meetingId === meetingId);
    if (index > 0) this.#waiting.unshift(...this.#waiting.splice(index, 1));
  }

  async #drain(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      for (let entry = this.#waiting.shift(); entry; entry = this.#waiting.shift()) {
        let outcome: Promise<ProbeResult>;
        try {
          outcome = Promise.resolve(await entry.probe());
        } catch (error) {
          outcome = Promise.reject(error as Error);
        }
        // Gone from the pending ones before anyone hears the answer: an ask made on hearing it
        // starts a new probe rather than joining this finished one.
        this.#pending.delete(entry.meetingId);
        entry.settle(outcome);
        if (this.#gapMs > 0) await sleep(this.#gapMs);
      }
    } finally {
      this.#running = false;
    }
  }
}

function describe(error: unknown, signal: AbortSignal): string {
  if (signal.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError') return 'no answer in time';
  return (error as Error | undefined)?.message ?? String(error);
}
