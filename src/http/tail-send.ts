/**
 * Serve-while-downloading: a tablet asking for a package that is still coming from the master is
 * sent the bytes already in the download's temp file, then the rest as they arrive (like Varnish
 * streaming a miss). The one upstream fetch feeds every tablet; none waits for the whole package.
 *
 * Until the download is complete its size and sha256 are unknown, so the response is a plain 200
 * with no Content-Length (chunked), no ETag and no Range support. If the download fails, or the
 * attempt these bytes came from is replaced by a retry, the response is destroyed, never ended:
 * the tablet sees a broken transfer, never a short file that looks complete. It ends cleanly only
 * after the download succeeded and every byte of the promoted package was sent.
 *
 * The temp file is opened once: the download renames it into place on success (or unlinks it on
 * failure) and the open descriptor keeps reading the same bytes either way.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FetchListener, FetchView } from '../sync/fetch-view.ts';
import { SHA256_TRAILER } from '../sync/site-tier.ts';
import { FilePump } from './file-pump.ts';
import { AbortState, armIdleTimeout, responseSettled, type SendResult } from './response-outcome.ts';
import { contentDisposition } from './send-file.ts';
import { SharedReadFiles } from './shared-files.ts';

export interface TailOptions {
  /** Destroy the response if no byte could be written for this long (also while the master is silent). */
  idleTimeoutMs: number;
  /** e.g. `meeting_abc.zip` */
  filename: string;
  /** Largest read (see FilePump). */
  chunkSize?: number;
  /** Called once, just before the response is committed (headers written): count the download here. */
  onStart?: () => void;
  onBytes?: (n: number) => void;
  /**
   * Where the temp file's descriptor comes from: shared by every tablet tailing the same attempt
   * (see shared-files.ts). Absent: this response opens its own.
   */
  files?: SharedReadFiles;
  /**
   * The promoted package's sha256 (given its size), sent as a trailer field (SHA256_TRAILER) after
   * the last chunk: a sibling node (site tier) checks its copy against it without asking again once
   * the body ends. Null: no trailer (the sibling asks with a HEAD).
   */
  sha256Trailer?: (size: number) => string | null;
}

/**
 * How many tablets are being served from downloads in progress, node-wide, against a cap: each
 * one holds an open file and a socket for as long as the master takes, so past the cap a tablet
 * gets 503 + Retry-After rather than joining the wait.
 */
export class TailLimit {
  readonly max: number;
  #active = 0;

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError('TailLimit: max must be a non-negative integer');
    this.max = max;
  }

  get active(): number {
    return this.#active;
  }

  /** Takes a place; false when all are taken. Every true must be followed by one release(). */
  tryAcquire(): boolean {
    if (this.#active >= this.max) return false;
    this.#active += 1;
    return true;
  }

  release(): void {
    if (this.#active > 0) this.#active -= 1;
  }
}

/** How often a waiting tablet re-checks the download: an attempt can end without notifying anyone. */
const RECHECK_MS = 1_000;

/**
 * Whether a request may be answered from a download in progress: a plain GET over HTTP/1.1.
 * HEAD wants the size, If-Match a validator, neither known yet; an HTTP/1.0 client could not tell a
 * cut response from a complete one (no chunked encoding: the body ends when the connection does).
 * Range is simply ignored (the whole package is sent).
 */
export function canTail(req: IncomingMessage): boolean {
  return req.method === 'GET' && req.httpVersion !== '1.0' && req.headers['if-match'] === undefined;
}

/**
 * Streams the package `download` is downloading, from its current attempt: the response lives and
 * dies with that attempt (download.attemptStatus). Resolves null, having written nothing, when
 * there is nothing to tail (no attempt running or its temp file not there: not created yet, or
 * already renamed or removed) or the request cannot be tailed (canTail); the caller then falls
 * back to waiting for the download. Otherwise resolves once the response ended or was destroyed;
 * rejects only if the temp file cannot be opened for another reason than ENOENT.
 */
export async function tailDownload(req: IncomingMessage, res: ServerResponse, download: FetchView, opts: TailOptions): Promise<SendResult | null> {
  const tempPath = download.tempPath;
  const attempt = download.attempt;
  if (tempPath === null || download.state !== 'running' || !canTail(req)) return null;
  // Null: the file is gone (renamed into place or removed since we looked). Without a shared
  // registry, a private one: this response's own descriptor.
  const file = await (opts.files ?? new SharedReadFiles()).acquire(tempPath);
  if (file === null) return null;
  if (download.attemptStatus(attempt).kind === 'failed' || res.destroyed || res.headersSent) {
    file.release();
    return null;
  }
  const fd = file.fd;

  opts.onStart?.();
  const abort = new AbortState();
  const disarm = armIdleTimeout(res, opts.idleTimeoutMs, abort);
  res.once('close', () => {
    if (!res.writableFinished) abort.record('client-closed');
  });
  res.writeHead(200, {
    'Content-Type': 'application/zip',
    'Content-Disposition': contentDisposition(opts.filename),
    // No validator to revalidate with: nothing may keep this copy.
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...(opts.sha256Trailer ? { Trailer: SHA256_TRAILER } : {}),
  });

  let wake: (() => void) | null = null;
  const notify = () => {
    const resume = wake;
    wake = null;
    resume?.();
  };
  const pump = new FilePump(res, fd, 0, { maxChunk: opts.chunkSize, onBytes: opts.onBytes });
  let sharedError: unknown = null;
  const listener: FetchListener = {
    bytes(ofAttempt: number, total: number, written: readonly Buffer[]) {
      // A herd of tablets caught up with the download: each writes the bytes that just arrived, as
      // they are, instead of each reading them back from the file (one buffer for all of them).
      if (ofAttempt === attempt && sharedError === null) {
        let length = 0;
        for (const buffer of written) length += buffer.length;
        try {
          pump.appendShared(total - length, written);
        } catch (error) {
          // onBytes threw: fail this response in the loop below, as a read error would.
          sharedError = error;
        }
      }
      notify();
    },
    restarted: notify,
    settled: notify,
  };
  const unsubscribe = download.subscribe(listener);
  res.once('close', notify);
  const recheck = setInterval(notify, RECHECK_MS);
  let completed = false;
  try {
    for (;;) {
      if (sharedError !== null) throw sharedError;
      const state = download.attemptStatus(attempt);
      if (state.kind === 'failed') {
        abort.record('server-error', new Error(state.reason));
        res.destroy();
        break;
      }
      const limit = state.kind === 'succeeded' ? state.size : state.available;
      if (pump.position < limit) {
        if (!(await pump.sendUntil(limit))) break;
        continue;
      }
      if (state.kind === 'succeeded') {
        const sha256 = opts.sha256Trailer?.(state.size) ?? null;
        if (sha256 !== null) res.addTrailers({ [SHA256_TRAILER]: sha256 });
        res.end();
        completed = await responseSettled(res);
        break;
      }
      if (res.destroyed) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } catch (error) {
    abort.record('server-error', error instanceof Error ? error : new Error(String(error)));
    res.destroy();
  } finally {
    clearInterval(recheck);
    unsubscribe();
    res.off('close', notify);
    file.release();
    disarm();
  }
  return abort.result(200, pump.bytesSent, completed);
}
