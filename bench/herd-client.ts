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
  sha256: string;
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
}

export interface TabletOptions {
  url: string;
  /** Give up (with the last status) after this wall-clock time. */
  deadline: number;
  retryDelayMs?: number;
  /** Follow one 302 to a node, like a tablet sent there by the master. */
  followRedirects?: boolean;
}

function once(url: string): Promise<TabletResult & { location?: string }> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    const req = http.get(url, { agent: false }, (res) => {
      const headersAt = Date.now();
      let bytes = 0;
      let firstByteAt: number | null = null;
      res.on('data', (chunk: Buffer) => {
        firstByteAt ??= Date.now();
        bytes += chunk.length;
        hash.update(chunk);
      });
      res.on('error', () => {});
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          attempts: 1,
          bytes,
          sha256: hash.digest('hex'),
          complete: res.complete,
          firstByteAt,
          doneAt: Date.now(),
          streamed: res.headers['content-length'] === undefined,
          servedBy: new URL(url).host,
          earlier: [],
          headersAt,
          ...(res.headers.location ? { location: res.headers.location } : {}),
        }),
      );
    });
    req.on('error', () =>
      resolve({ status: 0, attempts: 1, bytes: 0, sha256: '', complete: false, firstByteAt: null, doneAt: Date.now(), streamed: false, servedBy: '', earlier: [], headersAt: null }),
    );
  });
}

export async function runTablet(options: TabletOptions): Promise<TabletResult> {
  let attempts = 0;
  let url = options.url;
  const earlier: TabletResult['earlier'] = [];
  for (;;) {
    attempts += 1;
    const result = await once(url);
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
