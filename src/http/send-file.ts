/**
 * Sends one meeting package (a zip) to a tablet over a raw node:http response: validators and
 * conditional requests (RFC 9110 §13), a single byte range (§14), HEAD, a per-response idle
 * timeout, and a body copied from an already-open fd (file-pump.ts) with backpressure, or, for
 * large bodies when the addon is built, sent by the event loop itself once the headers are out
 * (body-handoff.ts: the request, response and socket objects are let go of).
 *
 * Called by the download route (download-route.ts) on the raw request, before Hono sees it
 * (node/http-front.ts); depends only on node:http / node:fs, so a plain http.Server can test it.
 * The header grammar it decides with is http-fields.ts.
 *
 * The caller opens the fd and hands it over; from then on this module owns it and closes it on
 * every path. Serving from an fd rather than a path is what lets a meeting restart rename a new
 * package over the old one while tablets that already started keep receiving the old bytes.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { BodyHandOff, TransferDone } from './body-handoff.ts';
import { closeFd, DEFAULT_MAX_CHUNK, FilePump, ShortFileError } from './file-pump.ts';
import { AbortState, armIdleTimeout, connectionTurn, responseSettled, type SendResult } from './response-outcome.ts';
import { socketFd, type ZeroCopy } from './zero-copy.ts';
import { ifRangeHolds, matchesStrongly, matchesWeakly, parseHttpDate, parseRange } from './http-fields.ts';

export interface PackageFile {
  /** An open file descriptor owned by the caller until sendFile is called; sendFile gives it back in every path (including 304/416/HEAD/errors/client abort). */
  fd: number;
  /**
   * How sendFile gives the descriptor back, once, when it no longer reads it: default, closing it;
   * a descriptor shared by every response sending the package is released to its owner instead.
   */
  giveBack?: () => void | Promise<void>;
  size: number;
  /** sha256 hex of the content; the ETag is the strong `"<sha256>"`. */
  sha256: string;
  lastModified: Date;
  /** e.g. `meeting_abc.zip` for Content-Disposition: attachment; filename="meeting_abc.zip" */
  filename: string;
}

/** What describes a package without an open descriptor: enough for HEAD and conditional requests. */
export type PackageMeta = Omit<PackageFile, 'fd'>;

export interface SendOptions {
  /**
   * Abort (destroy the socket) if no bytes could be written for this long: dead tablets must not
   * pin fds. Progress is counted per completed socket write, so a client must take in at least
   * one chunk (see chunkSize) per idleTimeoutMs to stay connected.
   */
  idleTimeoutMs: number;
  /**
   * Largest read from the file. Default 128 KiB. Clients that cannot take bytes as fast as they
   * are read get smaller chunks (down to 16 KiB), so slow clients hold small buffers.
   */
  chunkSize?: number;
  /** Called with each chunk size actually handed to the socket (for metrics/status). */
  onBytes?: (n: number) => void;
  /** sendfile(2) addon (zero-copy.ts); without it the body is copied through Buffers. */
  zeroCopy?: ZeroCopy | null;
  /**
   * Bodies of handOff.minBytes or more are sent by the addon's event-loop transfers: the response
   * says `Connection: close`, and sendFile resolves once the headers are out, with the final
   * result in `handedOff` (see HandedOffResult). Null or absent: every body is pumped here.
   */
  handOff?: BodyHandOff | null;
}

/**
 * What sendFile resolves with when the body was handed off: the request, response and socket
 * are done with (callers keep only what they read from them before), and `handedOff` resolves
 * with the response's final result, after the descriptor was given back.
 */
export interface HandedOffResult extends SendResult {
  handedOff: Promise<SendResult>;
}

const EMPTY = Buffer.alloc(0);

/** Node's timers are 32-bit; larger durations are not honoured as given. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

interface ResponsePlan {
  status: number;
  headers: OutgoingHttpHeaders;
  /** Inclusive byte range to send; absent when there is no body. */
  body?: { start: number; end: number };
}

/**
 * Decides status, headers and byte range. Preconditions are evaluated in the order of RFC 9110
 * §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, then If-Range.
 * If-Match matters for resuming clients (undici's RetryAgent sends it with Range): when a meeting
 * restart has replaced the package, a 412 makes them start over instead of splicing new bytes
 * onto old ones.
 */
function planResponse(method: string | undefined, headers: IncomingHttpHeaders, file: PackageMeta, nowMs: number): ResponsePlan {
  if (method !== 'GET' && method !== 'HEAD') {
    return { status: 405, headers: { Allow: 'GET, HEAD', 'Content-Length': 0 } };
  }
  const etag = `"${file.sha256}"`;
  const lastModifiedSeconds = Math.floor(file.lastModified.getTime() / 1000);
  const validators: OutgoingHttpHeaders = {
    ETag: etag,
    'Last-Modified': file.lastModified.toUTCString(),
    'Cache-Control': 'no-cache',
  };
  const preconditionFailed: ResponsePlan = { status: 412, headers: { ...validators, 'Content-Length': 0 } };
  const notModified: ResponsePlan = { status: 304, headers: validators };
  const dateSeconds = (value: string | undefined): number | undefined => {
    const ms = value === undefined ? undefined : parseHttpDate(value, nowMs);
    return ms === undefined ? undefined : ms / 1000;
  };

  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    if (!matchesStrongly(ifMatch, etag)) return preconditionFailed;
  } else {
    const ifUnmodifiedSince = dateSeconds(headers['if-unmodified-since']);
    if (ifUnmodifiedSince !== undefined && lastModifiedSeconds > ifUnmodifiedSince) return preconditionFailed;
  }

  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (matchesWeakly(ifNoneMatch, etag)) return notModified;
  } else {
    const ifModifiedSince = dateSeconds(headers['if-modified-since']);
    // A date in the future is not a date this server could have sent; trusting it would pin the
    // tablet to whatever it has cached.
    if (ifModifiedSince !== undefined && ifModifiedSince * 1000 <= nowMs && lastModifiedSeconds <= ifModifiedSince) {
      return notModified;
    }
  }

  const representation: OutgoingHttpHeaders = {
    ...validators,
    'Accept-Ranges': 'bytes',
    'X-Content-Type-Options': 'nosniff',
  };
  const full: ResponsePlan = {
    status: 200,
    headers: {
      ...representation,
      'Content-Type': 'application/zip',
      'Content-Length': file.size,
      'Content-Disposition': contentDisposition(file.filename),
    },
    body: method === 'GET' && file.size > 0 ? { start: 0, end: file.size - 1 } : undefined,
  };

  // Range is defined for GET only (§14.2). An empty file is always sent whole: there is no part
  // of it a 206 could describe, and ignoring Range is always allowed.
  const rangeHeader = headers.range;
  if (method !== 'GET' || rangeHeader === undefined || file.size === 0) return full;
  const ifRange = singleHeader(headers['if-range']);
  if (ifRange !== undefined && !ifRangeHolds(ifRange, etag, lastModifiedSeconds, nowMs)) return full;

  const range = parseRange(rangeHeader, file.size);
  switch (range.kind) {
    case 'single':
      return {
        status: 206,
        headers: {
          ...full.headers,
          'Content-Length': range.end - range.start + 1,
          'Content-Range': `bytes ${range.start}-${range.end}/${file.size}`,
        },
        body: { start: range.start, end: range.end },
      };
    case 'unsatisfiable':
      return {
        status: 416,
        headers: { ...representation, 'Content-Range': `bytes */${file.size}`, 'Content-Length': 0 },
      };
    case 'none':
    case 'multi':
    case 'malformed':
      return full;
  }
}

/** Node joins repeated fields itself; the index-signature type still allows an array. */
function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * A plain quoted filename when it is safe ASCII; otherwise an ASCII fallback plus the RFC 8187
 * `filename*` form (RFC 6266 §4.3), so a Chinese meeting name survives and no byte of it can
 * break the header.
 */
export function contentDisposition(filename: string): string {
  if (filename === '') return 'attachment';
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  if (fallback === filename) return `attachment; filename="${filename}"`;
  let encoded: string;
  try {
    encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  } catch {
    // A lone surrogate cannot be encoded as UTF-8; the fallback alone still names the file.
    return `attachment; filename="${fallback}"`;
  }
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

function validateArguments(file: PackageFile, opts: SendOptions): void {
  if (!Number.isSafeInteger(file.fd) || file.fd < 0) throw new TypeError(`sendFile: invalid fd ${file.fd}`);
  validateMeta(file, opts);
}

function validateMeta(file: PackageMeta, opts: SendOptions): void {
  if (!Number.isSafeInteger(file.size) || file.size < 0) throw new TypeError(`sendFile: invalid size ${file.size}`);
  if (!SHA256_HEX.test(file.sha256)) throw new TypeError('sendFile: sha256 must be 64 hex digits');
  if (!(file.lastModified instanceof Date) || Number.isNaN(file.lastModified.getTime())) {
    throw new TypeError('sendFile: lastModified must be a valid Date');
  }
  if (!Number.isSafeInteger(opts.idleTimeoutMs) || opts.idleTimeoutMs < 1 || opts.idleTimeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(`sendFile: idleTimeoutMs must be an integer in 1..${MAX_TIMEOUT_MS}`);
  }
  if (opts.chunkSize !== undefined && (!Number.isSafeInteger(opts.chunkSize) || opts.chunkSize < 1)) {
    throw new RangeError('sendFile: chunkSize must be a positive integer');
  }
}

/**
 * Sends `file` as the response to `req`. Resolves once the fd is closed and the response has
 * either been handed to the OS completely or been destroyed, or once a body was handed off
 * (opts.handOff; the result is then a HandedOffResult). Never rejects once a response has
 * started (client aborts, timeouts and read errors are reported in the result); rejects, after
 * closing the fd, only for invalid arguments or a response whose headers were already sent.
 * Headers are only stored by writeHead; they reach the wire with the first body bytes, so a read
 * that fails at once shows the client a dropped connection, not a misleading status.
 */
export async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: PackageFile,
  opts: SendOptions,
): Promise<SendResult | HandedOffResult> {
  let plan: ResponsePlan;
  try {
    validateArguments(file, opts);
    if (res.headersSent) throw new Error('sendFile: response headers were already sent');
    plan = planResponse(req.method, req.headers, file, Date.now());
  } catch (err) {
    await giveBack(file);
    throw err;
  }
  if (!(await connectionTurn(req, res)) || res.destroyed) {
    await giveBack(file);
    return { status: plan.status, bytesSent: 0, completed: false, abortReason: 'client-closed' };
  }
  const handOff = plan.body && opts.handOff?.wants(plan.body.end - plan.body.start + 1) && socketFd(res.socket) !== null ? opts.handOff : null;
  // The addon closes the connection after the body: say so, so the client does not reuse it.
  if (handOff) plan.headers = { ...plan.headers, Connection: 'close' };
  try {
    res.writeHead(plan.status, plan.headers);
  } catch (err) {
    await giveBack(file);
    throw err;
  }
  if (plan.body === undefined) return sendWithoutBody(res, file, plan, opts);
  return handOff ? handOffBody(res, file, plan, plan.body, opts, handOff) : sendBody(res, file, plan, plan.body, opts);
}

function giveBack(file: PackageFile): Promise<void> {
  return Promise.resolve(file.giveBack ? file.giveBack() : closeFd(file.fd));
}

/**
 * Answers a request that needs none of the file's bytes (HEAD, 304, 412, 416, 405) from `meta`
 * alone, without opening the file: for tablets revalidating a cached package this is the whole
 * exchange, and it costs no system call. Resolves null, having written nothing, when the response
 * has a body: the caller then opens the file and calls sendFile (which decides again, against the
 * file it opened). Rejects only for invalid arguments or headers already sent.
 */
export async function sendFromMetadata(req: IncomingMessage, res: ServerResponse, meta: PackageMeta, opts: SendOptions): Promise<SendResult | null> {
  validateMeta(meta, opts);
  if (res.headersSent) throw new Error('sendFromMetadata: response headers were already sent');
  const plan = planResponse(req.method, req.headers, meta, Date.now());
  if (plan.body !== undefined) return null;
  if (!(await connectionTurn(req, res)) || res.destroyed) return { status: plan.status, bytesSent: 0, completed: false, abortReason: 'client-closed' };
  res.writeHead(plan.status, plan.headers);
  return sendWithoutBody(res, null, plan, opts);
}

async function sendWithoutBody(res: ServerResponse, file: PackageFile | null, plan: ResponsePlan, opts: SendOptions): Promise<SendResult> {
  const abort = new AbortState();
  const disarm = armIdleTimeout(res, opts.idleTimeoutMs, abort);
  // Nothing to read: give the descriptor back before waiting on a possibly slow client.
  const closed = file === null ? Promise.resolve() : giveBack(file);
  try {
    res.end();
    const completed = await responseSettled(res);
    return abort.result(plan.status, 0, completed);
  } finally {
    disarm();
    await closed;
  }
}

async function sendBody(
  res: ServerResponse,
  file: PackageFile,
  plan: ResponsePlan,
  body: { start: number; end: number },
  opts: SendOptions,
): Promise<SendResult> {
  const abort = new AbortState();
  const disarm = armIdleTimeout(res, opts.idleTimeoutMs, abort);
  const expectedBytes = body.end - body.start + 1;
  // Registered first so the cause is recorded before its consequences.
  res.once('close', () => {
    if (!res.writableFinished) abort.record('client-closed');
  });
  const pump = new FilePump(res, file.fd, body.start, { maxChunk: opts.chunkSize ?? DEFAULT_MAX_CHUNK, onBytes: opts.onBytes, zeroCopy: opts.zeroCopy });
  let completed = false;
  try {
    if (await pump.sendUntil(body.end + 1)) {
      res.end();
      completed = await responseSettled(res);
    }
  } catch (err) {
    const error =
      err instanceof ShortFileError
        ? shortFileError(pump.bytesSent, expectedBytes)
        : err instanceof Error
          ? err
          : new Error(String(err));
    abort.record('server-error', error);
    // A response cut short must never look ended to the client (on keep-alive it would be
    // taken for the whole file).
    res.destroy();
  } finally {
    // No read is in flight once sendUntil has settled; writes do not use the descriptor.
    await giveBack(file);
    disarm();
  }
  return abort.result(plan.status, pump.bytesSent, completed);
}

/**
 * Flushes the headers (they must be on the socket before any byte the addon sends), then hands
 * the body to the addon and closes this side's socket: the addon's dup of it keeps the connection.
 * When the kernel refuses sendfile here, the body is pumped as without a hand-off.
 */
async function handOffBody(
  res: ServerResponse,
  file: PackageFile,
  plan: ResponsePlan,
  body: { start: number; end: number },
  opts: SendOptions,
  handOff: BodyHandOff,
): Promise<SendResult | HandedOffResult> {
  const abort = new AbortState();
  const disarm = armIdleTimeout(res, opts.idleTimeoutMs, abort);
  const socket = await headersFlushed(res);
  disarm();
  const fd = socketFd(socket);
  if (!socket || fd === null) {
    await giveBack(file);
    abort.record('client-closed');
    return abort.result(plan.status, 0, false);
  }
  const length = body.end - body.start + 1;
  let transfer: Promise<TransferDone> | null;
  try {
    transfer = handOff.start(fd, file.fd, body.start, length, opts.idleTimeoutMs, opts.onBytes);
  } catch (err) {
    // The headers are out: a body that cannot follow must not look like an empty one.
    res.destroy();
    await giveBack(file);
    abort.record('server-error', err instanceof Error ? err : new Error(String(err)));
    return abort.result(plan.status, 0, false);
  }
  if (!transfer) return sendBody(res, file, plan, body, opts);
  socket.destroy();
  const status = plan.status;
  return { status, bytesSent: 0, completed: false, handedOff: transfer.then((done) => transferResult(done, status, length, file)) };
}

/** The socket once every byte written so far (the headers) is in the kernel; null if it closed first. */
function headersFlushed(res: ServerResponse): Promise<Socket | null> {
  const socket = res.socket;
  if (!socket || res.destroyed) return Promise.resolve(null);
  return new Promise((resolve) => {
    const onClose = () => resolve(null);
    res.once('close', onClose);
    res.flushHeaders();
    // Written after the headers, so its callback means they are out of Node's buffers.
    socket.write(EMPTY, (error) => {
      res.off('close', onClose);
      resolve(error || socket.destroyed || socket.writableLength > 0 ? null : socket);
    });
  });
}

async function transferResult(done: TransferDone, status: number, length: number, file: PackageFile): Promise<SendResult> {
  await giveBack(file);
  if (done.end === 'complete') return { status, bytesSent: done.bytesSent, completed: true };
  const abort = new AbortState();
  if (done.end === 'idle-timeout') abort.record('idle-timeout');
  else if (done.end === 'short-file') abort.record('server-error', shortFileError(done.bytesSent, length));
  else if (done.end === 'error') abort.record('server-error', done.failure ?? Object.assign(new Error(`sendfile failed: errno ${done.errno}`), { errno: done.errno }));
  // The peer gone, or a stop that cut the transfer (as it cuts a pumped response's connection).
  else abort.record('client-closed');
  return abort.result(status, done.bytesSent, false);
}

function shortFileError(sent: number, expected: number): Error {
  return new Error(`file ended after ${sent} of ${expected} bytes`);
}
