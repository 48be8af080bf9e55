/**
 * The package download's GET, on a plain socket read in large blocks.
 *
 * Packages are the only large bodies the node receives, and undici's path for them cost more
 * than the rest of the download: its wasm parser copies every byte into wasm memory, each 64 KiB
 * read becomes a fresh Buffer and a stream push, and the allocations keep the GC busy. Profiled
 * on a 256 MiB sync from nginx, the node's main thread spent ~2.4 CPU-s per GB and the sync ran
 * at 0.3-0.4x curl to disk. Here the socket is read up to 512 KiB at a time (Node's `onread`, a
 * buffer per read), the HTTP/1.1 framing is taken off in place, and the payload is handed on as
 * views of those buffers, never copied. Read size, measured on the same sync: 512 KiB-1 MiB reads
 * cost the main thread ~0.25 CPU-s where 256 KiB reads cost ~0.30 (fewer reads, writes and stream
 * hops), for ~10 % more MB/s. Not 1 MiB: the used buffers wait for V8's garbage collector, which
 * runs less often the fewer objects a download makes; with 1 MiB reads the node's RSS grew by up
 * to 62 MiB during a sync in the bench (the target is 64). undici still makes every other call to
 * the master (small JSON answers, where its pooling and timeouts are what matter).
 *
 * Deliberately small: one GET, `Connection: close`, no redirects, no compression (none is asked
 * for); bodies framed by chunked encoding (what the master sends), Content-Length, or the end of
 * the connection. A body that ends before its framing says it should is an error, never a short
 * success: that is how a cut transfer is told from a complete one.
 */
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';

export interface PackageGetOptions {
  host: string;
  port: number;
  /** Path and query, already encoded. */
  path: string;
  headers?: Record<string, string>;
  /** Default GET. A HEAD's answer has no body, whatever its headers say. */
  method?: 'GET' | 'HEAD';
  signal: AbortSignal;
  connectTimeoutMs: number;
  /** From the request being sent to the end of the response headers. */
  headersTimeoutMs: number;
  /** Most bytes read from the socket at once. Default 512 KiB. */
  readBufferBytes?: number;
}

export interface PackageGetResponse {
  statusCode: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The payload (framing removed). Errors, rather than ends, if the connection ends early. */
  body: Readable;
  /** A chunked body's trailer fields (lower-case names), filled in once the body has ended. */
  trailers: Record<string, string>;
}

/** Why a response could not be read; `code` names the case for logs and retries. */
export class PackageGetError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'PackageGetError';
  }
}

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_CHUNK_LINE = 1024;
const MAX_TRAILERS = 16;
const MIN_READ = 16 * 1024;
/** Body bytes buffered for a slow consumer before the socket is paused. */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };
type ChunkState = 'size' | 'data' | 'data-end' | 'trailer';

export function packageGet(options: PackageGetOptions): Promise<PackageGetResponse> {
  return new Promise((resolve, reject) => {
    const { signal } = options;
    if (signal.aborted) return reject(signal.reason);
    const maxRead = options.readBufferBytes ?? 512 * 1024;
    // Every read gets a buffer of its own, handed on as is (no copy; the writer and tailing tablets
    // keep references to it). Its size follows the last read, so a master sending small chunks
    // does not pin a large buffer per few KiB received.
    let readSize = MIN_READ;
    let head: Buffer | null = Buffer.alloc(0);
    let response: PackageGetResponse | null = null;
    let framing: Framing = { kind: 'none' };
    let chunkState: ChunkState = 'size';
    let chunkRemaining = 0;
    let line = '';
    let finished = false;
    const trailers: Record<string, string> = {};
    let timer: NodeJS.Timeout | undefined;

    const body = new Readable({
      highWaterMark: BODY_HIGH_WATER_MARK,
      // The consumer wants more: restart reading if a full body paused it (onread's callback
      // returning false stops the handle's reads without pausing the stream; read(0) restarts them).
      read: () => {
        if (response && !finished) socket.read(0);
      },
      destroy: (error, callback) => {
        cleanup();
        socket.destroy();
        callback(error);
      },
    });

    // A body can fail before its consumer attaches (a bad first chunk arrives with the headers).
    // Its consumers read through pipeline or for-await, which see the stored error anyway; without
    // this listener that early 'error' event would be an uncaught exception.
    body.on('error', () => {});

    const fail = (error: Error) => {
      if (finished) return;
      finished = true;
      cleanup();
      socket.destroy();
      if (response) body.destroy(error);
      else reject(error);
    };
    const onAbort = () => fail(signal.reason instanceof Error ? signal.reason : new PackageGetError('aborted', 'ABORTED'));
    const cleanup = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    signal.addEventListener('abort', onAbort, { once: true });

    const complete = () => {
      if (finished) return;
      finished = true;
      cleanup();
      socket.destroy();
      body.push(null);
    };

    /** Hands payload bytes on (a view of this read's own buffer); false when the consumer is full. */
    const deliver = (data: Buffer): boolean => (data.length === 0 ? true : body.push(data));

    /** Takes the framing off `data`; returns false to pause reading. */
    const onBody = (data: Buffer): boolean => {
      if (framing.kind === 'close') return deliver(data);
      if (framing.kind === 'length') {
        const take = Math.min(data.length, framing.remaining);
        framing.remaining -= take;
        const more = deliver(data.subarray(0, take));
        if (framing.remaining === 0) complete();
        return more;
      }
      if (framing.kind === 'none') {
        complete();
        return false;
      }
      let more = true;
      let i = 0;
      while (i < data.length && !finished) {
        if (chunkState === 'data') {
          const take = Math.min(data.length - i, chunkRemaining);
          more = deliver(data.subarray(i, i + take)) && more;
          chunkRemaining -= take;
          i += take;
          if (chunkRemaining === 0) chunkState = 'data-end';
          continue;
        }
        const newline = data.indexOf(10, i);
        const end = newline === -1 ? data.length : newline;
        line += data.toString('latin1', i, end);
        i = newline === -1 ? data.length : newline + 1;
        if (line.length > MAX_CHUNK_LINE) return fail(new PackageGetError('chunk framing line too long', 'BAD_CHUNK')), false;
        if (newline === -1) break;
        const text = line.endsWith('\r') ? line.slice(0, -1) : line;
        line = '';
        if (chunkState === 'data-end') {
          if (text !== '') return fail(new PackageGetError('chunk data not followed by CRLF', 'BAD_CHUNK')), false;
          chunkState = 'size';
        } else if (chunkState === 'size') {
          const hex = text.split(';', 1)[0]?.trim() ?? '';
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) return fail(new PackageGetError(`bad chunk size line "${text.slice(0, 40)}"`, 'BAD_CHUNK')), false;
          chunkRemaining = Number.parseInt(hex, 16);
          chunkState = chunkRemaining === 0 ? 'trailer' : 'data';
        } else if (text === '') {
          // The empty line after the last chunk (and any trailers): the body is complete.
          complete();
        } else {
          const colon = text.indexOf(':');
          if (colon <= 0) return fail(new PackageGetError(`malformed trailer line "${text.slice(0, 60)}"`, 'BAD_CHUNK')), false;
          if (Object.keys(trailers).length >= MAX_TRAILERS) return fail(new PackageGetError(`more than ${MAX_TRAILERS} trailer fields`, 'BAD_CHUNK')), false;
          trailers[text.slice(0, colon).trim().toLowerCase()] = text.slice(colon + 1).trim();
        }
      }
      return more;
    };

    const onHead = (data: Buffer): boolean => {
      head = Buffer.concat([head as Buffer, data]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1 ? head.length > MAX_HEADER_BYTES : end > MAX_HEADER_BYTES) {
        fail(new PackageGetError(`response headers larger than ${MAX_HEADER_BYTES} bytes`, 'HEADERS_TOO_LARGE'));
        return false;
      }
      if (end === -1) return true;
      const lines = head.toString('latin1', 0, end).split('\r\n');
      const rest = head.subarray(end + 4);
      head = null;
      const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
      if (!status) return fail(new PackageGetError(`not an HTTP/1.1 response: "${(lines[0] ?? '').slice(0, 60)}"`, 'BAD_RESPONSE')), false;
      const statusCode = Number(status[1]);
      const headers: Record<string, string> = {};
      for (const headerLine of lines.slice(1)) {
        const colon = headerLine.indexOf(':');
        if (colon <= 0) return fail(new PackageGetError(`malformed header line "${headerLine.slice(0, 60)}"`, 'BAD_RESPONSE')), false;
        const name = headerLine.slice(0, colon).trim().toLowerCase();
        const value = headerLine.slice(colon + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      const transferEncoding = headers['transfer-encoding']?.toLowerCase();
      if (options.method === 'HEAD' || statusCode === 204 || statusCode === 304 || (statusCode >= 100 && statusCode < 200)) framing = { kind: 'none' };
      else if (transferEncoding !== undefined) {
        if (transferEncoding !== 'chunked') return fail(new PackageGetError(`unsupported transfer-encoding "${transferEncoding}"`, 'BAD_RESPONSE')), false;
        framing = { kind: 'chunked' };
      } else if (headers['content-length'] !== undefined) {
        if (!/^\d{1,15}$/.test(headers['content-length'])) return fail(new PackageGetError(`bad content-length "${headers['content-length']}"`, 'BAD_RESPONSE')), false;
        framing = { kind: 'length', remaining: Number(headers['content-length']) };
      } else framing = { kind: 'close' };
      clearTimeout(timer);
      response = { statusCode, headers, body, trailers };
      resolve(response);
      if (framing.kind === 'none' || (framing.kind === 'length' && framing.remaining === 0)) {
        complete();
        return false;
      }
      return onBody(rest);
    };

    const socket: Socket = connect({
      host: options.host,
      port: options.port,
      noDelay: true,
      onread: {
        buffer: () => Buffer.allocUnsafe(readSize),
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          readSize = bytes >= readSize ? Math.min(maxRead, readSize * 2) : Math.max(MIN_READ, Math.min(readSize, 2 ** Math.ceil(Math.log2(bytes * 2))));
          if (finished) return false;
          const data = Buffer.from(buffer.buffer, buffer.byteOffset, bytes);
          // false pauses the socket until the body's consumer asks for more (read() above).
          return head !== null ? onHead(data) : onBody(data);
        },
      },
    });
    timer = setTimeout(() => fail(new PackageGetError(`no connection within ${options.connectTimeoutMs} ms`, 'CONNECT_TIMEOUT')), options.connectTimeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(new PackageGetError(`no response headers within ${options.headersTimeoutMs} ms`, 'HEADERS_TIMEOUT')), options.headersTimeoutMs);
      const host = options.host.includes(':') ? `[${options.host}]` : options.host;
      const extra = Object.entries(options.headers ?? {})
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join('');
      socket.write(`${options.method ?? 'GET'} ${options.path} HTTP/1.1\r\nHost: ${host}:${options.port}\r\nConnection: close\r\n${extra}\r\n`);
    });
    socket.on('error', (error) => fail(error));
    socket.on('end', () => {
      if (finished) return;
      if (head !== null) return fail(new PackageGetError('connection closed before the response headers', 'ECONNRESET'));
      if (framing.kind === 'close') return complete();
      fail(
        new PackageGetError(
          framing.kind === 'chunked' ? 'connection closed before the chunked body ended (no terminating chunk)' : `connection closed ${framing.kind === 'length' ? framing.remaining : ''} bytes before the end of the body`,
          'TRUNCATED',
        ),
      );
    });
    socket.on('close', () => {
      // Closed without 'end' (reset): whatever was not finished is broken.
      if (!finished) fail(new PackageGetError('connection reset', 'ECONNRESET'));
    });
  });
}
