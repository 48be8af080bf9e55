import { close, fstat, fsync, ftruncate, open, writev, writevSync } from 'node:fs';
import { Writable } from 'node:stream';
import { InlineSha256, type PackageHash } from './hash-thread.ts';

export interface PackageFileWriterOptions {
  /** The sha256 of this file as it is written; default: of the chunks, on this thread. See hash-thread.ts. */
  hash?: PackageHash;
  /** Writes on this thread while they are quick (see #write); false: always through the thread pool. */
  syncWrites?: boolean;
  /**
   * The file exists (a temp file kept from a failed attempt) and its first `keepBytes` bytes stay:
   * anything after them is cut and writing goes on from there (0: the file starts over). Absent:
   * a new file.
   */
  keepBytes?: number;
}

/** A write slower than this did not go to the page cache only (writeback throttling, a slow disk). */
const SLOW_WRITE_NS = 4_000_000n;
/** Writes sent through the thread pool after a slow one, before trying synchronously again. */
const ASYNC_WRITES_AFTER_SLOW = 32;

/**
 * Writes a download to a new file (never an existing one, unless told to go on with a kept one), hashing what it writes, reporting the
 * bytes that are on disk after each write, and fsyncing before it finishes: when `finish` fires the
 * bytes are durable and `sha256()` describes exactly them. One stage instead of hash-transform +
 * fs.WriteStream keeps the hot path to a single stream hop.
 *
 * Writes go to the page cache, which takes them in well under a millisecond: like FilePump's
 * reads, they are made synchronously, which spares a thread-pool round trip per chunk (measured:
 * ~2x the bytes per second on a 256 MiB sync). A write that takes long (the kernel throttling a
 * writer that outruns the disk) sends the next ones through the thread pool for a while, so a slow
 * disk delays the event loop once now and then, not at every chunk.
 */
export class PackageFileWriter extends Writable {
  readonly path: string;
  #fd: number | null = null;
  readonly #hash: PackageHash;
  readonly #syncWrites: boolean;
  readonly #keepBytes: number | undefined;
  #asyncWritesLeft = 0;
  /** A thread-pool write is running: the descriptor must stay open until it returns. */
  #writing = false;
  /** The close that _destroy deferred until that write returns. */
  #closeAfterWrite: (() => void) | null = null;
  #written = 0;
  #onWritten: (total: number, written: readonly Buffer[]) => void;

  /** `onWritten` gets the running total and the buffers just written (never modified afterwards). */
  constructor(path: string, onWritten: (total: number, written: readonly Buffer[]) => void = () => {}, options: PackageFileWriterOptions = {}) {
    super({ highWaterMark: 1 << 20 });
    this.path = path;
    this.#onWritten = onWritten;
    this.#hash = options.hash ?? new InlineSha256();
    this.#syncWrites = options.syncWrites ?? true;
    this.#keepBytes = options.keepBytes;
  }

  get bytesWritten(): number {
    return this.#written;
  }

  /** The sha256 of every byte written; once, after `finish`. */
  sha256(): Promise<string> {
    return this.#hash.digest();
  }

  override _construct(callback: (error?: Error | null) => void): void {
    const keep = this.#keepBytes;
    open(this.path, keep === undefined ? 'wx' : 'r+', 0o644, (error, fd) => {
      if (error) return callback(error);
      this.#fd = fd;
      if (keep === undefined) return callback();
      // A write of the failed attempt still running when it ended may have landed past what it
      // reported: cut back to the bytes known to be the package's.
      fstat(fd, (statError, info) => {
        if (statError) return callback(statError);
        if (info.size < keep) return callback(Object.assign(new Error(`kept file holds ${info.size} bytes, ${keep} expected`), { code: 'SHORT' }));
        ftruncate(fd, keep, (truncateError) => {
          if (truncateError) return callback(truncateError);
          this.#written = keep;
          this.#hash.kept(this.path, keep).then(() => callback(), callback);
        });
      });
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#writeBuffers([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#writeBuffers(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    fsync(this.#fd as number, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A writer destroyed before finishing never digests: give the hash up.
    if (error || !this.writableFinished) this.#hash.dispose();
    if (this.#fd === null) return callback(error);
    const fd = this.#fd;
    this.#fd = null;
    const closeFd = () => close(fd, (closeError) => callback(error ?? closeError));
    // Closed under a running thread-pool write, the descriptor number could be reused by another
    // file or socket before the write runs, and the bytes would land there.
    if (this.#writing) this.#closeAfterWrite = closeFd;
    else closeFd();
  }

  #writeBuffers(buffers: Buffer[], callback: (error?: Error | null) => void): void {
    let expected = 0;
    for (const buffer of buffers) expected += buffer.length;
    const written = (bytes: number) => {
      // Destroyed while the write ran (a failed or cancelled download): nothing more to report.
      if (this.destroyed) return callback();
      if (bytes !== expected) return callback(Object.assign(new Error(`short write: ${bytes} of ${expected} bytes`), { code: 'EIO' }));
      this.#written += bytes;
      // Hashed once on disk: the digest describes exactly the bytes in the file.
      this.#hash.appended(this.#written, buffers);
      // The hash can no longer succeed (its thread failed): stop now rather than at the digest.
      if (this.#hash.failure) return callback(this.#hash.failure);
      this.#onWritten(this.#written, buffers);
      callback();
    };
    if (this.#syncWrites && this.#asyncWritesLeft === 0) {
      const started = process.hrtime.bigint();
      let bytes: number;
      try {
        bytes = writevSync(this.#fd as number, buffers, this.#written);
      } catch (error) {
        return callback(error as Error);
      }
      if (process.hrtime.bigint() - started > SLOW_WRITE_NS) this.#asyncWritesLeft = ASYNC_WRITES_AFTER_SLOW;
      return written(bytes);
    }
    if (this.#asyncWritesLeft > 0) this.#asyncWritesLeft -= 1;
    this.#writing = true;
    writev(this.#fd as number, buffers, this.#written, (error, bytes) => {
      this.#writing = false;
      const closeFd = this.#closeAfterWrite;
      this.#closeAfterWrite = null;
      closeFd?.();
      if (error) callback(error);
      else written(bytes);
    });
  }
}
