/**
 * SHA-256 of a download, computed on another core from the file being written.
 *
 * A package's sha256 (its ETag, and how a refetch tells new bytes from the same) was computed on
 * the main thread as the bytes were written: at ~1.4 GB/s (SHA-NI) that is ~0.7 CPU-s per GB on
 * the thread that also receives the bytes, writes them and serves every tablet. Profiled during a
 * 256 MiB sync from nginx: hashing was 30 % of the main thread. The first worker version copied
 * the bytes into batches and bounded the copies in flight, which left the main thread a memcpy per
 * byte and, measured, ~100 ms of 330 waiting for the worker to catch up.
 *
 * Here the worker reads what the writer reports as written back from the file (the page cache,
 * where the bytes just went) and hashes it: the main thread only posts an offset now and then, and
 * never waits; nothing is held in memory for the hash whatever the worker's lag. The digest also
 * describes exactly the bytes in the file, read back, not the buffers that were meant to reach it.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { READ_BYTES, WORKER_SOURCE, type FromWorker, type ToWorker } from './hash-worker.ts';

export interface PackageHash {
  /**
   * The file already held `bytes` bytes when this hash was made (a download resumed from a kept
   * temp file): they are hashed before the first append. Called once, before any append.
   */
  kept(path: string, bytes: number): Promise<void>;
  /** `chunks` were just appended to the file, which now holds `total` bytes (the caller may reuse them). */
  appended(total: number, chunks: readonly Uint8Array[]): void;
  /** The hex digest of the file's first `total` bytes (the last total reported); once. */
  digest(): Promise<string>;
  /** Gives the hash up (a failed download). */
  dispose(): void;
  /** Why the digest can no longer succeed (its thread failed), as soon as that is known; else null. */
  readonly failure: Error | null;
}

/** Hashing the written chunks on the calling thread: small uses, tests, and where a worker cannot start. */
export class InlineSha256 implements PackageHash {
  readonly #hash: Hash = createHash('sha256');
  readonly failure = null;

  async kept(path: string, bytes: number): Promise<void> {
    if (bytes <= 0) return;
    // Read back once, a resume's prefix only: the hash must cover every byte of the file.
    let read = 0;
    for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 })) {
      this.#hash.update(chunk as Buffer);
      read += (chunk as Buffer).length;
    }
    if (read !== bytes) throw Object.assign(new Error(`${path} ends at ${read} bytes, ${bytes} were kept`), { code: 'SHORT' });
  }

  appended(_total: number, chunks: readonly Uint8Array[]): void {
    for (const chunk of chunks) this.#hash.update(chunk);
  }

  digest(): Promise<string> {
    return Promise.resolve(this.#hash.digest('hex'));
  }

  dispose(): void {}
}

/** The worker is told about new bytes once this many have been written since the last time. */
const POST_EVERY_BYTES = 1024 * 1024;
/** Workers that failed to start or died before hashes go inline (a broken install, not a bad file). */
const MAX_WORKER_FAILURES = 3;

/** The hash thread itself failed (closed, could not start, exited): it says nothing about any file. */
export class HashThreadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HashThreadError';
  }
}

/** The worker could not read the file: `code` is the errno code, or 'SHORT' when it ended early. */
export class FileReadError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'FileReadError';
  }
}

/** A worker with no hash to run for this long is stopped (a sync or scrub starts it again). */
const DEFAULT_IDLE_STOP_MS = 30_000;

/**
 * The worker and the hashes running on it. Started at the first message (or by start()), stopped
 * once no hash has run for idleStopMs, and by close(); it does not keep the process alive on its
 * own. An idle worker is an isolate of its own: 6-9 MiB of a small box's memory for nothing
 * between syncs, against tens of milliseconds to start one again for the next sync.
 */
export class HashThread {
  readonly #source: string;
  readonly #idleStopMs: number;
  readonly #onIdleStop: (() => void) | undefined;
  #worker: Worker | null = null;
  readonly #hashes = new Map<number, WorkerHash>();
  #nextId = 1;
  #closed = false;
  #workerFailures = 0;
  #idleTimer: NodeJS.Timeout | null = null;

  /**
   * `workerSource`: the worker's code (tests give a broken one); default: the hashing worker.
   * `idleStopMs`: how long a worker with nothing to hash stays up.
   * `onIdleStop`: called once an idle worker has exited (the syncs that needed it are over).
   */
  constructor(options: { workerSource?: string; idleStopMs?: number; onIdleStop?: () => void } = {}) {
    this.#source = options.workerSource ?? WORKER_SOURCE;
    this.#idleStopMs = options.idleStopMs ?? DEFAULT_IDLE_STOP_MS;
    this.#onIdleStop = options.onIdleStop;
  }

  /** Hashes in progress (for diagnostics and tests). */
  get inProgress(): number {
    return this.#hashes.size;
  }

  /**
   * A hash of the file at `path` as it is written; an inline one (of the chunks written) once
   * closed, or once workers keep failing.
   */
  create(path: string): PackageHash {
    if (this.#closed || this.#workerFailures >= MAX_WORKER_FAILURES) return new InlineSha256();
    const id = this.#nextId++;
    const hash = new ThreadFileHash(id, path, this);
    this.#hashes.set(id, hash);
    return hash;
  }

  /**
   * Starts the worker now rather than at the first hash (it stops again once idle). A worker that
   * cannot start is left to the first hash, which then counts the failure as always.
   */
  start(): void {
    if (this.#closed || this.#worker) return;
    try {
      this.#ensureWorker();
    } catch {
      // Counted when a hash needs the worker.
    }
    this.#stopWhenIdle();
  }

  /** Whether the worker is running. */
  get started(): boolean {
    return this.#worker !== null;
  }

  /**
   * sha256 of the first `size` bytes of a file already on disk (the scrub), read on the worker one
   * slice at a time: the next slice is asked for only once the worker has read the last, after
   * `beforeSlice` resolves, so a node busy serving can hold the scrub back and a download's hash
   * never waits behind more than one slice. Rejects when the file is shorter than `size` or
   * cannot be read, when the worker fails, and once the thread is closed.
   */
  async hashStored(path: string, size: number, options: { sliceBytes?: number; beforeSlice?: () => Promise<void> } = {}): Promise<string> {
    const slice = Math.max(READ_BYTES, options.sliceBytes ?? 16 * READ_BYTES);
    if (this.#closed) throw new HashThreadError('hash thread closed');
    const id = this.#nextId++;
    const hash = new StoredFileHash();
    this.#hashes.set(id, hash);
    try {
      for (let end = Math.min(size, slice); ; end = Math.min(size, end + slice)) {
        await options.beforeSlice?.();
        if (end >= size) {
          const digest = hash.next();
          this.post({ type: 'digest', id, path, end: size });
          return (await digest) as string;
        }
        const hashed = hash.next();
        this.post({ type: 'hash', id, path, end, ack: true });
        await hashed;
      }
    } catch (error) {
      this.forget(id, true);
      throw error;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelIdleStop();
    const worker = this.#worker;
    this.#worker = null;
    this.#fail(new HashThreadError('hash thread closed'));
    await worker?.terminate();
  }

  /** @internal */
  post(message: ToWorker): void {
    if (this.#closed) return;
    let worker: Worker;
    try {
      worker = this.#ensureWorker();
    } catch (error) {
      // No worker could start: the hashes in progress fail (their downloads are retried, inline
      // once this has happened MAX_WORKER_FAILURES times).
      this.#workerFailures += 1;
      this.#fail(new HashThreadError(`hash thread could not start: ${(error as Error).message}`));
      return;
    }
    this.#cancelIdleStop();
    worker.postMessage(message);
    this.#stopWhenIdle();
  }

  /**
   * @internal the hash was given up: forget it here, and on the worker if it got messages there.
   * A hash already failed by a dead worker is no longer known: nothing is sent (a new worker
   * would start just to drop an id it never saw).
   */
  forget(id: number, onWorker: boolean): void {
    if (this.#hashes.delete(id) && onWorker) this.post({ type: 'drop', id });
    this.#stopWhenIdle();
  }

  /** With no hash in progress, the worker is stopped after idleStopMs unless one starts meanwhile. */
  #stopWhenIdle(): void {
    if (this.#idleTimer || !this.#worker || this.#hashes.size > 0) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      const worker = this.#worker;
      if (!worker || this.#hashes.size > 0) return;
      // Forgotten first: its exit is then no failure (see fail in #ensureWorker).
      this.#worker = null;
      void worker.terminate().then(() => this.#onIdleStop?.());
    }, this.#idleStopMs);
    this.#idleTimer.unref();
  }

  #cancelIdleStop(): void {
    if (!this.#idleTimer) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
  }

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(this.#source, { eval: true, name: 'sha256' });
    worker.unref();
    worker.on('message', (message: FromWorker) => {
      const hash = this.#hashes.get(message.id);
      if (message.type === 'hashed') {
        hash?.hashed?.();
      } else if (message.type === 'digest') {
        this.#hashes.delete(message.id);
        hash?.digested(message.hex);
        this.#stopWhenIdle();
      } else {
        // The worker keeps a failed file's entry (closed) until told: drop it now.
        this.forget(message.id, true);
        hash?.failed(new FileReadError(message.message, message.code));
      }
    });
    const fail = (error: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      this.#workerFailures += 1;
      this.#fail(error);
    };
    worker.on('error', (error) => fail(new HashThreadError(`hash thread failed: ${error.message}`)));
    worker.on('exit', (code) => fail(new HashThreadError(`hash thread exited (code ${code})`)));
    this.#worker = worker;
    return worker;
  }

  /** Every hash in progress fails: their downloads fail and are retried (with a new worker). */
  #fail(error: Error): void {
    const hashes = [...this.#hashes.values()];
    this.#hashes.clear();
    for (const hash of hashes) hash.failed(error);
  }
}

/** A hash the worker is running, as the thread reports back to it. */
interface WorkerHash {
  digested(hex: string): void;
  failed(error: Error): void;
  /** The worker read up to the end asked for (stored-file hashes only). */
  hashed?(): void;
}

/** The main thread's side of hashStored: one answer awaited at a time (a slice read, or the digest). */
class StoredFileHash implements WorkerHash {
  #waiting: { resolve: (hex?: string) => void; reject: (error: Error) => void } | null = null;
  #error: Error | null = null;

  next(): Promise<string | undefined> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  hashed(): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.resolve();
  }

  digested(hex: string): void {
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.resolve(hex);
  }

  failed(error: Error): void {
    this.#error ??= error;
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.reject(error);
  }
}

class ThreadFileHash implements PackageHash {
  readonly #id: number;
  readonly #path: string;
  readonly #thread: HashThread;
  #total = 0;
  /** The end offset last posted to the worker. */
  #posted = 0;
  /** The worker got a message for this id: it holds state for it. */
  #onWorker = false;
  #error: Error | null = null;
  #done = false;
  #digest: { resolve: (hex: string) => void; reject: (error: Error) => void } | null = null;

  constructor(id: number, path: string, thread: HashThread) {
    this.#id = id;
    this.#path = path;
    this.#thread = thread;
  }

  get failure(): Error | null {
    return this.#error;
  }

  kept(_path: string, bytes: number): Promise<void> {
    // The worker reads the file back from offset 0 up to each total: the kept bytes come first.
    this.#total = bytes;
    return Promise.resolve();
  }

  appended(total: number): void {
    // Failed or given up: nothing to add (a late report of a write that was already running).
    if (this.#error) return;
    if (this.#done) throw new Error('hash already digested');
    this.#total = total;
    if (total - this.#posted < POST_EVERY_BYTES) return;
    this.#post('hash');
  }

  digest(): Promise<string> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#done) return Promise.reject(new Error('hash already digested'));
    this.#done = true;
    return new Promise((resolve, reject) => {
      this.#digest = { resolve, reject };
      this.#post('digest');
    });
  }

  dispose(): void {
    const digested = this.#done && !this.#digest;
    this.#done = true;
    if (digested) return;
    this.#thread.forget(this.#id, this.#onWorker);
    this.failed(new Error('hash given up'));
  }

  /** @internal */
  digested(hex: string): void {
    this.#digest?.resolve(hex);
    this.#digest = null;
  }

  /** @internal */
  failed(error: Error): void {
    this.#error ??= error;
    this.#digest?.reject(error);
    this.#digest = null;
  }

  #post(type: 'hash' | 'digest'): void {
    this.#posted = this.#total;
    this.#onWorker = true;
    this.#thread.post({ type, id: this.#id, path: this.#path, end: this.#total });
  }
}
