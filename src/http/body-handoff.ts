/**
 * Response bodies handed to the event loop itself (native/transfer.c in the edge-net addon), nginx's
 * model: once a response's headers are on the socket, the addon sends the byte range of the
 * package with sendfile(2) from a poll handle of its own, and JavaScript lets go of the connection.
 * A slow tablet then costs a descriptor and a small C struct, not a net.Socket, an HTTP parser,
 * the request, the response, a pump and their native state (bench/README.md, "Where the memory
 * goes"). The HTTP rules (status, headers, Range) stay in send-file.ts; this only moves bytes.
 *
 * Bytes sent are sampled from the addon every sampleEveryMs while transfers run (for the serving
 * figures, traffic history and metrics) and the rest reported when a transfer ends. Optional:
 * without the addon, or switched off (EDGE_BODY_HANDOFF=0), bodies go through file-pump.ts.
 */
import { loadNetAddon, type NetAddonLoad } from './net-addon.ts';

export interface TransferAddon {
  /** A transfer's id (> 0), or -errno with nothing kept (sendfile refused: the caller sends the body). */
  startTransfer(
    socketFd: number,
    fileFd: number,
    offset: number,
    length: number,
    idleTimeoutMs: number,
    onDone: (bytesSent: number, outcome: number, errno: number) => void,
  ): number;
  /** [id, bytesSent, id, bytesSent, ...] of the transfers not yet done. */
  transferProgress(): Float64Array;
  /** Ends a transfer now (its onDone is called, outcome aborted); false when it was not running. */
  abortTransfer(id: number): boolean;
}

/** How a transfer ended (native/transfer.c's outcomes, in order). */
export type TransferEnd = 'complete' | 'peer-gone' | 'idle-timeout' | 'short-file' | 'error' | 'aborted';
const ENDS: readonly TransferEnd[] = ['complete', 'peer-gone', 'idle-timeout', 'short-file', 'error', 'aborted'];

export interface TransferDone {
  end: TransferEnd;
  /** Body bytes the kernel took. */
  bytesSent: number;
  /** The system error behind `peer-gone` or `error` (0 when none). */
  errno: number;
  /** What onBytes threw: the transfer was aborted for it. */
  failure?: Error;
}

export interface HandOffOptions {
  /** Bodies shorter than this stay on the JavaScript path (and keep the connection alive). Default 1 MiB. */
  minBytes?: number;
  /** How often the bytes sent by running transfers are reported. Default 1 s. */
  sampleEveryMs?: number;
}

interface Running {
  onBytes: ((n: number) => void) | undefined;
  reported: number;
  failure: Error | undefined;
  resolve: (done: TransferDone) => void;
}

const DEFAULT_MIN_BYTES = 1024 * 1024;
const DEFAULT_SAMPLE_EVERY_MS = 1000;

/**
 * The addon's transfers, unless switched off (`enabled: false`: EDGE_BODY_HANDOFF=0, read by
 * config/cli-options.ts) or not built; null: bodies are pumped by JavaScript, as without it.
 */
export function loadBodyHandOff(
  switches: { enabled?: boolean } = {},
  loaded: NetAddonLoad = loadNetAddon(),
  options: HandOffOptions = {},
): { handOff: BodyHandOff | null; reason: string } {
  if (switches.enabled === false) return { handOff: null, reason: 'switched off (EDGE_BODY_HANDOFF=0)' };
  const addon = loaded.addon as Partial<TransferAddon> | null;
  if (!addon || typeof addon.startTransfer !== 'function' || typeof addon.transferProgress !== 'function' || typeof addon.abortTransfer !== 'function') {
    return { handOff: null, reason: addon ? `${loaded.reason} is an older build (run npm run build)` : loaded.reason };
  }
  return { handOff: new BodyHandOff(addon as TransferAddon, options), reason: loaded.reason };
}

export class BodyHandOff {
  readonly minBytes: number;
  readonly #addon: TransferAddon;
  readonly #sampleEveryMs: number;
  readonly #running = new Map<number, Running>();
  #sampler: NodeJS.Timeout | null = null;
  #idleWaiters: Array<() => void> = [];

  constructor(addon: TransferAddon, options: HandOffOptions = {}) {
    this.#addon = addon;
    this.minBytes = options.minBytes ?? DEFAULT_MIN_BYTES;
    this.#sampleEveryMs = options.sampleEveryMs ?? DEFAULT_SAMPLE_EVERY_MS;
  }

  /** Transfers running now. */
  get active(): number {
    return this.#running.size;
  }

  /** Whether a body of `length` bytes is handed over. */
  wants(length: number): boolean {
    return length >= this.minBytes;
  }

  /**
   * Sends `length` bytes of `fileFd` from `offset` to the connection `socketFd` (the headers
   * already on it), from the addon's dup of it: the caller closes its own socket right after. The
   * file descriptor must stay open until the promise resolves. Null, having kept nothing, when
   * the kernel refuses sendfile for this file or socket: the caller sends the body itself.
   */
  start(socketFd: number, fileFd: number, offset: number, length: number, idleTimeoutMs: number, onBytes?: (n: number) => void): Promise<TransferDone> | null {
    let resolve!: (done: TransferDone) => void;
    const done = new Promise<TransferDone>((r) => (resolve = r));
    const running: Running = { onBytes, reported: 0, failure: undefined, resolve };
    const id = this.#addon.startTransfer(socketFd, fileFd, offset, length, idleTimeoutMs, (bytesSent, outcome, errno) => {
      this.#running.delete(id);
      this.#report(id, running, bytesSent);
      const end = ENDS[outcome] ?? 'error';
      running.resolve({ end: running.failure ? 'error' : end, bytesSent, errno, ...(running.failure ? { failure: running.failure } : {}) });
      this.#settle();
    });
    if (id < 0) return null;
    this.#running.set(id, running);
    this.#sampler ??= setInterval(() => this.sample(), this.#sampleEveryMs).unref();
    return done;
  }

  /** Reports the bytes each running transfer sent since the last report to its onBytes. */
  sample(): void {
    const progress = this.#addon.transferProgress();
    for (let i = 0; i + 1 < progress.length; i += 2) {
      const id = progress[i]!;
      const running = this.#running.get(id);
      if (running) this.#report(id, running, progress[i + 1]!);
    }
  }

  /** Ends every running transfer now (a stop that will not wait any longer). */
  abortAll(): void {
    for (const id of [...this.#running.keys()]) this.#addon.abortTransfer(id);
  }

  /** Resolves once no transfer runs. */
  idle(): Promise<void> {
    if (this.#running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #report(id: number, running: Running, bytesSent: number): void {
    const delta = bytesSent - running.reported;
    if (delta <= 0 || running.failure) return;
    running.reported = bytesSent;
    try {
      running.onBytes?.(delta);
    } catch (error) {
      // A counter that throws fails this transfer, as it fails a pumped one, not the process. One
      // that already ended is not aborted: it may be lingering, and cutting that resets the connection.
      running.failure = error instanceof Error ? error : new Error(String(error));
      if (this.#running.has(id)) this.#addon.abortTransfer(id);
    }
  }

  #settle(): void {
    if (this.#running.size > 0) return;
    if (this.#sampler) clearInterval(this.#sampler);
    this.#sampler = null;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
