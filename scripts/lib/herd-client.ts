/**
 * Tablets of a herd: each asks for the package until it gets a 200 (a 404 before the node has
 * seen the meeting, or a 503, is retried shortly), reads the body to its end and hashes it.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface TabletResult {
  status: number;
  /** Requests made, retries included. */
  attempts: number;
  bytes: number;
  /** sha256 of the body; empty when `expected` was given (the body was compared instead). */
  sha256: string;
  /** With `expected`: every byte equal and the same length. Null without it. */
  matches: boolean | null;
  /** The body ended cleanly (a cut or reset response is false). */
  complete: boolean;
  /** Wall-clock ms of the first body byte of the successful response, null if none arrived. */
  firstByteAt: number | null;
  doneAt: number;
  /** The response had no Content-Length (served while the node was still downloading). */
  streamed: boolean;
  /** host:port that sent the final response (the scale-out simulation follows redirects). */
  servedBy: string;
  /** Every response before the final one: status and wall-clock ms it arrived. */
  earlier: Array<{ status: number; complete: boolean; at: number }>;
  /** Wall-clock ms the final response's headers arrived. */
  headersAt: number | null;
  /** Final request: ms from starting it to the TCP connection being up, and to its headers. */
  connectMs: number | null;
  requestToHeadersMs: number | null;
}

export interface TabletOptions {
  url: string;
  /** Give up (with the last status) after this wall-clock time. */
  deadline: number;
  retryDelayMs?: number;
  /** Follow one 302 to a node, like a tablet sent there by the master. */
  followRedirects?: boolean;
  /**
   * The right bytes: compare each chunk (a memcmp) instead of hashing it. Hundreds of tablets
   * hashing in one process load it enough to delay their own first-byte timestamps.
   */
  expected?: Buffer;
}

function once(url: string, expected: Buffer | undefined): Promise<TabletResult & { location?: string }> {
  return new Promise((resolve) => {
    const hash = expected ? null : createHash('sha256');
    let same = true;
    const startedAt = Date.now();
    let connectedAt: number | null = null;
    const req = http.get(url, { agent: false }, (res) => {
      const headersAt = Date.now();
      let bytes = 0;
      let firstByteAt: number | null = null;
      res.on('data', (chunk: Buffer) => {
        firstByteAt ??= Date.now();
        if (expected) same &&= bytes + chunk.length <= expected.length && expected.subarray(bytes, bytes + chunk.length).equals(chunk);
        else hash?.update(chunk);
        bytes += chunk.length;
      });
      res.on('error', () => {});
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          attempts: 1,
          bytes,
          sha256: hash ? hash.digest('hex') : '',
          matches: expected ? same && bytes === expected.length : null,
          complete: res.complete,
          firstByteAt,
          doneAt: Date.now(),
          streamed: res.headers['content-length'] === undefined,
          servedBy: new URL(url).host,
          earlier: [],
          headersAt,
          connectMs: connectedAt === null ? null : connectedAt - startedAt,
          requestToHeadersMs: headersAt - startedAt,
          ...(res.headers.location ? { location: res.headers.location } : {}),
        }),
      );
    });
    req.once('socket', (socket) => socket.once('connect', () => (connectedAt = Date.now())));
    req.on('error', () =>
      resolve({ status: 0, attempts: 1, bytes: 0, sha256: '', matches: expected ? false : null, complete: false, firstByteAt: null, doneAt: Date.now(), streamed: false, servedBy: '', earlier: [], headersAt: null, connectMs: null, requestToHeadersMs: null }),
    );
  });
}

export async function runTablet(options: TabletOptions): Promise<TabletResult> {
  let attempts = 0;
  let url = options.url;
  const earlier: TabletResult['earlier'] = [];
  for (;;) {
    attempts += 1;
    const result = await once(url, options.expected);
    if (result.status === 302 && result.location && options.followRedirects) {
      url = new URL(result.location, url).toString();
      continue;
    }
    const retry = result.status === 404 || result.status === 503 || result.status === 0 || (result.status === 200 && !result.complete);
    if (!retry || Date.now() >= options.deadline) return { ...result, attempts, earlier };
    earlier.push({ status: result.status, complete: result.complete, at: result.doneAt });
    url = options.url;
    await sleep(options.retryDelayMs ?? 100);
  }
}
