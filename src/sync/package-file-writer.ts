import { createHash, type Hash } from 'node:crypto';
import { close, fsync, open, writev } from 'node:fs';
import { Writable } from 'node:stream';

/**
 * Writes a download to a new file (never an existing one), hashing what it writes, reporting the
 * bytes that are on disk after each write, and fsyncing before it finishes: when `finish` fires the
 * bytes are durable and `sha256()` describes exactly them. One stage instead of hash-transform +
 * fs.WriteStream keeps the hot path to a single stream hop.
 */
export class PackageFileWriter extends Writable {
  readonly path: string;
  #fd: number | null = null;
  #hash: Hash = createHash('sha256');
  #written = 0;
  #onWritten: (total: number, written: readonly Buffer[]) => void;

  /** `onWritten` gets the running total and the buffers just written (never modified afterwards). */
  constructor(path: string, onWritten: (total: number, written: readonly Buffer[]) => void = () => {}) {
    super({ highWaterMark: 1 << 20 });
    this.path = path;
    this.#onWritten = onWritten;
  }

  get bytesWritten(): number {
    return this.#written;
  }

  sha256(): string {
    return this.#hash.digest('hex');
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.path, 'wx', 0o644, (error, fd) => {
      if (error) return callback(error);
      this.#fd = fd;
      callback();
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
    if (this.#fd === null) return callback(error);
    const fd = this.#fd;
    this.#fd = null;
    close(fd, (closeError) => callback(error ?? closeError));
  }

  #writeBuffers(buffers: Buffer[], callback: (error?: Error | null) => void): void {
    let expected = 0;
    for (const buffer of buffers) expected += buffer.length;
    writev(this.#fd as number, buffers, (error, bytes) => {
      if (error) return callback(error);
      if (bytes !== expected) return callback(Object.assign(new Error(`short write: ${bytes} of ${expected} bytes`), { code: 'EIO' }));
      for (const buffer of buffers) this.#hash.update(buffer);
      this.#written += bytes;
      this.#onWritten(this.#written, buffers);
      callback();
    });
  }
}
