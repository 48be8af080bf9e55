/**
 * SHA-256 of a download, computed on another core.
 *
 * A package's sha256 (its ETag, and how a refetch tells new bytes from the same) was computed on
 * the main thread as the bytes were written: at ~1.2 GB/s (SHA-NI) that is ~0.8 CPU-s per GB on
 * the thread that also receives the bytes, writes them and serves every tablet. Profiled during a
 * 256 MiB sync from nginx: hashing was 30 % of the main thread, and the sync ran at a third of
 * curl's speed. Here the bytes are copied into 1 MiB batches (a memcpy, ~0.1 s per GB) and hashed by
 * one worker thread shared by all downloads; the batches come back to be reused.
 *
 * Memory stays bounded: `backlog` counts the bytes handed over and not yet hashed, and the writer
 * waits (`drained`) while it is large.
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

export interface StreamingHash {
  /** Adds bytes (copied or hashed now: the caller may reuse `chunk` afterwards). */
  update(chunk: Uint8Array): void;
  /** Bytes given to update() that are not hashed yet. */
  readonly backlog: number;
  /** Resolves once backlog is at most `limit` bytes (rejects if the hash failed). */
  drained(limit: number): Promise<void>;
  /** The hex digest of every byte given; the hash cannot be used afterwards. */
  digest(): Promise<string>;
  /** Gives the hash up (a failed download). */
  dispose(): void;
}

/** Hashing on the calling thread: small uses, tests, and where a worker cannot start. */
export class InlineSha256 implements StreamingHash {
  readonly #hash: Hash = createHash('sha256');
  readonly backlog = 0;

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  digest(): Promise<string> {
    return Promise.resolve(this.#hash.digest('hex'));
  }

  dispose(): void {}
}

const BATCH_BYTES = 1024 * 1024;
/** Batches kept for reuse: the most in flight with the writer's backlog limit, and a few more. */
const SPARE_BATCHES = 6;

type ToWorker = { type: 'update'; id: number; buffer: ArrayBuffer; length: number } | { type: 'digest'; id: number } | { type: 'drop'; id: number };
type FromWorker = { type: 'hashed'; id: number; buffer: ArrayBuffer; length: number } | { type: 'digest'; id: number; hex: string };

// CommonJS source run with `eval`: no separate file to locate from src/ and from the bundle.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (message) => {
  if (message.type === 'update') {
    let hash = hashes.get(message.id);
    if (!hash) hashes.set(message.id, (hash = createHash('sha256')));
    hash.update(new Uint8Array(message.buffer, 0, message.length));
    parentPort.postMessage({ type: 'hashed', id: message.id, buffer: message.buffer, length: message.length }, [message.buffer]);
  } else if (message.type === 'digest') {
    const hash = hashes.get(message.id) || createHash('sha256');
    hashes.delete(message.id);
    parentPort.postMessage({ type: 'digest', id: message.id, hex: hash.digest('hex') });
  } else if (message.type === 'drop') {
    hashes.delete(message.id);
  }
});
`;

/**
 * The worker and the hashes running on it. Started at the first create(), stopped by close();
 * it does not keep the process alive on its own.
 */
export class HashThread {
  #worker: Worker | null = null;
  readonly #hashes = new Map<number, ThreadSha256>();
  readonly #spare: ArrayBuffer[] = [];
  #nextId = 1;
  #closed = false;

  /** A new hash on the worker; an inline one once closed. */
  create(): StreamingHash {
    if (this.#closed) return new InlineSha256();
    const id = this.#nextId++;
    const hash = new ThreadSha256(id, this);
    this.#hashes.set(id, hash);
    return hash;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = null;
    this.#fail(new Error('hash thread closed'));
    await worker?.terminate();
  }

  /** @internal */
  post(message: ToWorker): void {
    if (this.#closed) return;
    const worker = this.#ensureWorker();
    if (message.type === 'update') worker.postMessage(message, [message.buffer]);
    else worker.postMessage(message);
  }

  /** @internal the hash was given up: forget it here (and on the worker, if it got bytes) */
  forget(id: number, onWorker: boolean): void {
    this.#hashes.delete(id);
    if (onWorker) this.post({ type: 'drop', id });
  }

  /** @internal */
  takeBatch(): ArrayBuffer {
    return this.#spare.pop() ?? new ArrayBuffer(BATCH_BYTES);
  }

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true, name: 'sha256' });
    worker.unref();
    worker.on('message', (message: FromWorker) => {
      const hash = this.#hashes.get(message.id);
      if (message.type === 'hashed') {
        if (this.#spare.length < SPARE_BATCHES && message.buffer.byteLength === BATCH_BYTES) this.#spare.push(message.buffer);
        hash?.hashed(message.length);
      } else {
        this.#hashes.delete(message.id);
        hash?.digested(message.hex);
      }
    });
    const fail = (error: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      this.#fail(error);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`hash thread exited (code ${code})`)));
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

class ThreadSha256 implements StreamingHash {
  readonly #id: number;
  readonly #thread: HashThread;
  #batch: ArrayBuffer | null = null;
  #batchLength = 0;
  /** Posted, not yet hashed. */
  #inFlight = 0;
  #error: Error | null = null;
  #done = false;
  /** Something reached the worker: it holds state for this id. */
  #posted = false;
  #waiters: Array<{ limit: number; resolve: () => void; reject: (error: Error) => void }> = [];
  #digest: { resolve: (hex: string) => void; reject: (error: Error) => void } | null = null;

  constructor(id: number, thread: HashThread) {
    this.#id = id;
    this.#thread = thread;
  }

  get backlog(): number {
    return this.#inFlight + this.#batchLength;
  }

  update(chunk: Uint8Array): void {
    if (this.#done) throw new Error('hash already digested');
    if (this.#error) return;
    let offset = 0;
    while (offset < chunk.length) {
      this.#batch ??= this.#thread.takeBatch();
      const take = Math.min(this.#batch.byteLength - this.#batchLength, chunk.length - offset);
      new Uint8Array(this.#batch, this.#batchLength, take).set(chunk.subarray(offset, offset + take));
      this.#batchLength += take;
      offset += take;
      if (this.#batchLength === this.#batch.byteLength) this.#flush();
    }
  }

  drained(limit: number): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.backlog <= limit) return Promise.resolve();
    // What sits in the unsent batch only leaves it with the next bytes: send it now.
    this.#flush();
    if (this.backlog <= limit) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ limit, resolve, reject }));
  }

  digest(): Promise<string> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#done) return Promise.reject(new Error('hash already digested'));
    this.#done = true;
    this.#flush();
    return new Promise((resolve, reject) => {
      this.#digest = { resolve, reject };
      this.#thread.post({ type: 'digest', id: this.#id });
    });
  }

  dispose(): void {
    const digested = this.#done && !this.#digest;
    this.#done = true;
    this.#batch = null;
    this.#batchLength = 0;
    if (!digested) this.#thread.forget(this.#id, this.#posted && !this.#error);
  }

  /** @internal the worker hashed `length` bytes of ours */
  hashed(length: number): void {
    this.#inFlight -= length;
    this.#waiters = this.#waiters.filter((waiter) => {
      if (this.backlog > waiter.limit) return true;
      waiter.resolve();
      return false;
    });
  }

  /** @internal */
  digested(hex: string): void {
    this.#digest?.resolve(hex);
    this.#digest = null;
  }

  /** @internal */
  failed(error: Error): void {
    this.#error = error;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    this.#digest?.reject(error);
    this.#digest = null;
  }

  #flush(): void {
    if (!this.#batch || this.#batchLength === 0) return;
    const buffer = this.#batch;
    const length = this.#batchLength;
    this.#batch = null;
    this.#batchLength = 0;
    this.#inFlight += length;
    this.#posted = true;
    this.#thread.post({ type: 'update', id: this.#id, buffer, length });
  }
}
