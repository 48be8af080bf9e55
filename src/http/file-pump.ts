/**
 * Copies a byte range of an open file into an HTTP response: the one hot loop behind sendFile
 * (complete packages) and tailDownload (packages still downloading).
 *
 * A plain read/write loop that reuses its buffers instead of fs.createReadStream + pipeline: no
 * stream machinery and no fresh allocation per chunk, and the chunk size can follow the client:
 *
 * - A chunk flushed within a few milliseconds means the client keeps up: chunks grow up to
 *   maxChunk (fewer syscalls) and the next chunk may be read while one is being flushed.
 * - A chunk that took longer means the client is the bottleneck (a tablet on Wi-Fi): no
 *   read-ahead, and chunks shrink towards minChunk (about 10 ms of the client's rate), so a
 *   thousand slow tablets hold a thousand small buffers, not a thousand large ones.
 *
 * Backpressure is by write completion: at most two chunks are ever outside the file per response.
 *
 * Reads are synchronous while the file is in the page cache, as nginx's sendfile is: a cached
 * 128 KiB read is a memcpy of tens of microseconds, while a round trip through libuv's thread pool
 * per chunk cost 3-4x the CPU per byte and 60 % of the throughput on the 2-core target machine
 * whenever other processes competed for the cores (measured: 0.45 GB/s at 1.6-3.8 CPU-s/GB
 * against 1.2-1.7 GB/s at 0.4-0.6; createReadStream + pipeline: 1.1-1.4 GB/s at 0.5-0.7). A read
 * that takes long came from the disk: that response then reads through the thread pool for a
 * while, so a cold package blocks the event loop for one read now and then, not for every read.
 */
import { close, read, readSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { ERRNO, socketFd, touchSocket, type ZeroCopy } from './zero-copy.ts';

export interface PumpOptions {
  /**
   * Largest read. Default 128 KiB: larger chunks measured no faster (they fall out of the CPU
   * cache) and, times a thousand tablets starting at once, cost memory.
   */
  maxChunk?: number;
  /** Smallest read, used for clients that cannot keep up. Default 16 KiB (or maxChunk if smaller). */
  minChunk?: number;
  /** Called with the size of each chunk handed to the response, right after the write. */
  onBytes?: (n: number) => void;
  /**
   * sendfile(2), when the addon is built: bytes go from the page cache to the socket without
   * entering the process (see #sendZeroCopy). Null or absent: every byte is copied through a Buffer.
   */
  zeroCopy?: ZeroCopy | null;
}

/** The file ended before the range did (it was truncated under us). */
export class ShortFileError extends Error {
  constructor(readonly position: number) {
    super(`file ended at byte ${position}`);
    this.name = 'ShortFileError';
  }
}

export const DEFAULT_MAX_CHUNK = 128 * 1024;
const DEFAULT_MIN_CHUNK = 16 * 1024;
const INITIAL_CHUNK = 32 * 1024;
/** A synchronous read slower than this may not have come from the page cache (see #cameFromDisk). */
const SLOW_READ_NS = 2_000_000n;
/** A synchronous read slower than this is taken for the disk even without block reads (NFS, FUSE). */
const SURELY_COLD_NS = 50_000_000n;
/** Reads done through the thread pool after a slow one, before trying synchronously again. */
const ASYNC_READS_AFTER_SLOW = 32;
/** A write that took longer than this to flush means a client slower than ~chunk/10 ms. */
const SLOW_WRITE_MS = 10;
/**
 * With sendfile, a full socket is waited for by writing some of the next bytes the copying way
 * (libuv then polls the socket for room). For a client that keeps up that is minChunk; once the
 * last wait took long (a slow client) only this many: all such a response holds, so a thousand
 * slow tablets hold a thousand of these, not a thousand 16 KiB chunks. (1 KiB for every client
 * cost fast ones a third of their throughput: 1.44x nginx at 64 clients became 0.63-0.77x.)
 */
const ZERO_COPY_WAIT_CHUNK = 1024;
/** Give other responses and new connections a turn of the event loop after this many bytes. */
const YIELD_EVERY_BYTES = 1024 * 1024;
/**
 * Largest single sendfile. The kernel stops at the free socket buffer anyway (a few MiB at most on
 * loopback); the cap only bounds how long one call can hold the event loop on a cold file.
 */
const ZERO_COPY_MAX = 4 * 1024 * 1024;

export class FilePump {
  readonly #res: ServerResponse;
  readonly #fd: number;
  readonly #maxChunk: number;
  readonly #minChunk: number;
  readonly #onBytes: ((n: number) => void) | undefined;
  #position: number;
  #bytesSent = 0;
  #chunk: number;
  /** A buffer whose write has completed, ready for the next read. */
  #spare: Buffer | null = null;
  #pendingWrites = 0;
  /** The last chunk took long to flush: the client is slower than the file. */
  #congested = false;
  #wake: (() => void) | null = null;
  #closed = false;
  /** Inside sendUntil: buffers coming back from the socket are worth keeping for the next read. */
  #active = false;
  #asyncReadsLeft = 0;
  /**
   * Starts one byte short of a yield: the first chunk (the one that carries the headers) goes out
   * at once, then the other responses get a turn before this one sends more. When a herd of tablets
   * starts together, each gets its first bytes before any one's catch-up fills the turn.
   */
  #bytesSinceYield = YIELD_EVERY_BYTES - 1;
  readonly #zeroCopy: ZeroCopy | null;
  /** sendfile refused this file or socket (EINVAL and the like): copy for the rest of the response. */
  #zeroCopyOff = false;
  /** Writes through the response that completed: the first carries the headers to the socket. */
  #flushedWrites = 0;
  /** Block reads of the whole process (getrusage ru_inblock) when this pump last looked. */
  #blockReads: number;
  /** Involuntary context switches of the event loop's thread (#preemptionCount) when this pump last looked. */
  #preemptions: number;

  constructor(res: ServerResponse, fd: number, position: number, options: PumpOptions = {}) {
    this.#res = res;
    this.#fd = fd;
    this.#position = position;
    this.#maxChunk = options.maxChunk ?? DEFAULT_MAX_CHUNK;
    this.#minChunk = Math.min(options.minChunk ?? DEFAULT_MIN_CHUNK, this.#maxChunk);
    this.#chunk = Math.min(INITIAL_CHUNK, this.#maxChunk);
    this.#onBytes = options.onBytes;
    this.#zeroCopy = options.zeroCopy ?? null;
    const usage = process.resourceUsage();
    this.#blockReads = usage.fsRead;
    this.#preemptions = this.#preemptionCount(usage);
    const onClose = () => {
      this.#closed = true;
      this.#notify();
    };
    if (res.destroyed) this.#closed = true;
    else res.once('close', onClose);
  }

  /** Next file position to send. */
  get position(): number {
    return this.#position;
  }

  /** Body bytes handed to the response so far. */
  get bytesSent(): number {
    return this.#bytesSent;
  }

  /**
   * Sends the file from the current position up to `limit` (exclusive). Resolves true once every
   * byte was handed to the response, false if the response closed first. Rejects with the read
   * error, a ShortFileError when the file ends early, or what onBytes threw; the response is left
   * as it is (the caller destroys it).
   */
  async sendUntil(limit: number): Promise<boolean> {
    this.#active = true;
    try {
      return await this.#sendUntil(limit);
    } finally {
      // Between calls (a tailing client waiting for the download) hold no buffer at all.
      this.#active = false;
      this.#spare = null;
    }
  }

  async #sendUntil(limit: number): Promise<boolean> {
    while (this.#position < limit) {
      if (this.#bytesSinceYield >= YIELD_EVERY_BYTES) {
        // Synchronous reads and writes the kernel takes at once never return to the event loop.
        this.#bytesSinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.#closed) return false;
      }
      const zeroCopy = this.#zeroCopyUsable();
      if (zeroCopy) {
        // sendfile must follow every byte written through Node, headers included.
        await this.flushed();
        if (this.#closed) return false;
        const step = await this.#sendZeroCopy(zeroCopy, limit);
        if (step === 'closed') return false;
        if (this.#position >= limit) break;
        // 'copy': the socket is full (or the file cold): one small chunk goes the copying way, and
        // its completion is the wait for the socket to take more (libuv polls it for us).
      }
      // Read-ahead only while the client keeps up; a congested client gets one chunk at a time.
      while (!this.#closed && (this.#pendingWrites >= 2 || (this.#congested && this.#pendingWrites > 0))) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
      if (this.#closed) return false;
      // The chunk that carries the headers of a response sendfile will send is small too: it only
      // flushes them (at a herd's start, a 32 KiB one per tablet was 32 MiB at once, for nothing).
      const wanted = zeroCopy ? (this.#congested ? ZERO_COPY_WAIT_CHUNK : this.#minChunk) : this.#zeroCopyNext() ? ZERO_COPY_WAIT_CHUNK : this.#chunk;
      const size = Math.min(wanted, limit - this.#position);
      const buffer = this.#takeBuffer(size);
      const bytesRead = await this.#read(buffer, size);
      if (this.#closed) return false;
      this.#bytesSinceYield += bytesRead;
      if (bytesRead === 0) throw new ShortFileError(this.#position);
      this.#position += bytesRead;
      this.#write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), buffer);
    }
    return !this.#closed;
  }

  /** sendfile will take over once the headers are flushed (nothing has been flushed yet). */
  #zeroCopyNext(): boolean {
    return this.#zeroCopy !== null && !this.#zeroCopyOff && this.#flushedWrites === 0 && this.#asyncReadsLeft === 0 && socketFd(this.#res.socket) !== null;
  }

  /** The addon, when this response can use it now: headers flushed, file warm, socket plain TCP. */
  #zeroCopyUsable(): ZeroCopy | null {
    if (!this.#zeroCopy || this.#zeroCopyOff || this.#flushedWrites === 0 || this.#asyncReadsLeft > 0) return null;
    return this.#zeroCopy;
  }

  /**
   * sendfile from the current position until `limit`, the socket buffer is full, or the file
   * turns out cold. Resolves 'copy' when the caller should send one chunk the copying way,
   * 'closed' when the client went away. Throws what a copy would (ShortFileError, read errors).
   */
  async #sendZeroCopy(zeroCopy: ZeroCopy, limit: number): Promise<'sent' | 'copy' | 'closed'> {
    const socket = this.#res.socket;
    const fd = socketFd(socket);
    if (fd === null || !socket) {
      this.#zeroCopyOff = true;
      return 'copy';
    }
    while (this.#position < limit) {
      // A client gone since the last turn (the yield below) may have had its descriptor closed,
      // and the number reused by another connection: never hand it to sendfile then.
      if (this.#closed || socket.destroyed) return 'closed';
      if (socket.writableLength > 0) return 'copy';
      const want = Math.min(limit - this.#position, ZERO_COPY_MAX);
      const started = process.hrtime.bigint();
      const sent = zeroCopy.sendfile(fd, this.#fd, this.#position, want);
      const slow = this.#slowFromDisk(process.hrtime.bigint() - started);
      if (sent > 0) {
        this.#position += sent;
        this.#bytesSent += sent;
        this.#bytesSinceYield += sent;
        touchSocket(socket);
        this.#onBytes?.(sent);
      }
      // The file came from the disk: read it through the thread pool for a while (as the copy
      // path does), rather than stall every other client on the next cold sendfile.
      if (slow) this.#asyncReadsLeft = ASYNC_READS_AFTER_SLOW;
      if (sent === 0 && want > 0) throw new ShortFileError(this.#position);
      if (sent === ERRNO.EPIPE || sent === ERRNO.ECONNRESET || sent === ERRNO.ENOTCONN || sent === ERRNO.EBADF) {
        this.#res.destroy();
        return 'closed';
      }
      if (sent === ERRNO.EINVAL || sent === ERRNO.ENOSYS || sent === ERRNO.EOPNOTSUPP) {
        this.#zeroCopyOff = true;
        return 'copy';
      }
      if (sent < 0 && sent !== ERRNO.EAGAIN) throw Object.assign(new Error(`sendfile failed: errno ${-sent}`), { errno: -sent });
      // Short count or EAGAIN: the socket buffer is full.
      if (sent < want || slow) return 'copy';
      if (this.#bytesSinceYield >= YIELD_EVERY_BYTES) {
        this.#bytesSinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    return 'sent';
  }

  /**
   * Writes `buffers`, the bytes at `offset` of the file that the download just wrote, straight to
   * the response instead of reading them back: for a tailing client that is caught up (position
   * at `offset`), between sendUntil calls, and keeping up (no write pending). Returns false,
   * having done nothing, otherwise: the client then reads them from the file later, as before.
   * The buffers are shared by every tailing client, so they are never reused for reads.
   */
  appendShared(offset: number, buffers: readonly Buffer[]): boolean {
    if (this.#closed || this.#active || offset !== this.#position || this.#pendingWrites > 0) return false;
    for (const buffer of buffers) {
      if (buffer.length === 0) continue;
      this.#position += buffer.length;
      this.#write(buffer, null);
    }
    return true;
  }

  /** Resolves once every write handed to the response has been flushed (or the response closed). */
  async flushed(): Promise<void> {
    while (!this.#closed && this.#pendingWrites > 0) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  async #read(buffer: Buffer, size: number): Promise<number> {
    if (this.#asyncReadsLeft > 0) {
      this.#asyncReadsLeft -= 1;
      return readAt(this.#fd, buffer, size, this.#position);
    }
    const started = process.hrtime.bigint();
    const bytesRead = readSync(this.#fd, buffer, 0, size, this.#position);
    if (this.#slowFromDisk(process.hrtime.bigint() - started)) this.#asyncReadsLeft = ASYNC_READS_AFTER_SLOW;
    return bytesRead;
  }

  /**
   * A synchronous read or sendfile that took `elapsedNs`: did it wait for the disk? A slow call
   * may also be a thread preempted on a busy machine, and judging that one cold moved half of a
   * response's bytes from sendfile to copying on a loaded 2-core host. Only the disk issues block
   * reads, so a slow call counts as cold when the process's block reads rose since the last look
   * (another response's cold read may be counted too: that errs on the safe side), or when it was
   * slower than a cache hit can be and the process was not preempted since the last look (a network
   * file system issues no block reads; its wait is voluntary, a preemption is not). On a box that
   * shares its cores, a call held > 50 ms off the CPU used to move its response to copying.
   */
  #slowFromDisk(elapsedNs: bigint): boolean {
    if (elapsedNs <= SLOW_READ_NS) return false;
    const usage = process.resourceUsage();
    const rose = usage.fsRead > this.#blockReads;
    const preemptions = this.#preemptionCount(usage);
    const preempted = preemptions > this.#preemptions;
    this.#blockReads = usage.fsRead;
    this.#preemptions = preemptions;
    return rose || (elapsedNs > SURELY_COLD_NS && !preempted);
  }

  /**
   * Preemptions of the event loop's thread, the one that made the call, where the addon can count
   * them; else the whole process's, which also rise when one of V8's or libuv's threads is
   * preempted meanwhile (on a loaded box that made a call that waited off the CPU look preempted).
   */
  #preemptionCount(usage: NodeJS.ResourceUsage): number {
    const own = this.#zeroCopy?.threadPreemptions?.();
    return own !== undefined && own >= 0 ? own : usage.involuntaryContextSwitches;
  }

  #takeBuffer(size: number): Buffer {
    const spare = this.#spare;
    this.#spare = null;
    if (spare && spare.length >= size && spare.length <= this.#chunk) return spare;
    // Exactly what this read needs (a tailing client often reads a few KiB that just arrived).
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so keeping it as
    // a spare cannot pin unrelated memory.
    return Buffer.allocUnsafeSlow(size);
  }

  /** `buffer`: the pump's own buffer behind `chunk`, reusable once written; null for a shared one. */
  #write(chunk: Buffer, buffer: Buffer | null): void {
    this.#pendingWrites += 1;
    this.#bytesSent += chunk.length;
    const writtenAt = performance.now();
    this.#res.write(chunk, (error) => {
      this.#pendingWrites -= 1;
      if (!error) this.#flushedWrites += 1;
      // A chunk the socket took long to flush: the client, not the file, sets the pace. (Judged by
      // time, not by what write() returned: the response corks the socket until the next tick.)
      this.#congested = performance.now() - writtenAt > SLOW_WRITE_MS;
      this.#chunk = this.#congested ? Math.max(this.#minChunk, this.#chunk >> 1) : Math.min(this.#maxChunk, this.#chunk * 2);
      // Reuse only after the socket is done with the bytes: one spare is all the loop needs, and
      // reusing it is what keeps a slow client from allocating a buffer per chunk. A buffer larger
      // than the (shrunk) chunk is dropped instead, so a slow client holds only small ones.
      if (buffer && !error && this.#active && this.#spare === null && buffer.length <= this.#chunk) this.#spare = buffer;
      this.#notify();
    });
    this.#onBytes?.(chunk.length);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

function readAt(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, 0, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}

/** Closes a read-only descriptor (a package or a download's temp file) once nothing reads it. */
export function closeFd(fd: number): Promise<void> {
  // Close errors on a read-only descriptor carry no information the caller could act on.
  return new Promise((resolve) => close(fd, () => resolve()));
}
