/**
 * Runs the load client: bench/loadgen.c compiled with `cc` at bench time when a compiler is
 * there, otherwise bench/load-client.ts (same options and output, but a Node client costs about as
 * much CPU as the server it measures, so throughput figures are then lower bounds).
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { runTablet } from '../scripts/lib/herd-client.ts';

export interface LoadOptions {
  port: number;
  path: string;
  conns: number;
  /** Seconds each connection keeps repeating requests. */
  durationS?: number;
  /** Requests per connection (instead of a duration). */
  requests?: number;
  /** Bytes per second each connection reads at most. */
  rateBytesPerSec?: number;
  /** With rateBytesPerSec: the smallest read (8192 at 32768 B/s: 8 KiB every 0.25 s). C client only. */
  stepBytes?: number;
  /** Run the client in this network namespace (`ip netns exec`). C client only. */
  netns?: string;
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  timeoutS?: number;
}

export interface LoadResult {
  completed: number;
  errors: number;
  unfinished: number;
  timedOut: boolean;
  bytes: number;
  seconds: number;
  status: Record<string, number>;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  ttfbMs: { p50: number; p99: number; max: number };
}

export interface HerdOptions {
  port: number;
  path: string;
  tablets: number;
  /** Answers that make a tablet ask again (as do a failed connection and a cut body). */
  retryStatus: number[];
  retryDelayMs: number;
  /** The right bytes: every tablet's body is compared with this file. */
  expectFile: string;
  /** Tablets give up asking after this long. */
  timeoutS: number;
}

/** One tablet's last response. Times are wall-clock ms (like Date.now()), null when not reached. */
export interface HerdTablet {
  status: number;
  bytes: number;
  matches: boolean;
  /** The body ended as framed (a cut or reset response is false). */
  complete: boolean;
  /** No Content-Length: served while the node was still downloading. */
  streamed: boolean;
  /** Requests made, retries included. */
  attempts: number;
  connectMs: number | null;
  requestToHeadersMs: number | null;
  headersAt: number | null;
  firstByteAt: number | null;
  doneAt: number | null;
  /** When the answer before the last one ended (a 404 or 503), null if the first one counted. */
  lastRetryAt: number | null;
}

export type LoadClientKind = 'c' | 'node';

const BENCH_DIR = import.meta.dirname;

/** Compiles loadgen.c into `workDir`; returns null when there is no C compiler. */
export function buildLoadgen(workDir: string): string | null {
  const binary = path.join(workDir, 'loadgen');
  for (const compiler of ['cc', 'gcc', 'clang']) {
    try {
      execFileSync(compiler, ['-O2', '-o', binary, path.join(BENCH_DIR, 'loadgen.c')], { stdio: 'pipe' });
      return binary;
    } catch {
      // Try the next compiler name.
    }
  }
  return null;
}

export class LoadClient {
  readonly kind: LoadClientKind;
  readonly #binary: string | null;

  constructor(binary: string | null) {
    this.#binary = binary;
    this.kind = binary ? 'c' : 'node';
  }

  /**
   * A herd: every tablet asks once the same instant and again after a 404/503 until it gets the
   * package. With loadgen.c the tablets cost the machine little, so their timings are the
   * server's; the Node fallback runs them in this process and its figures include its own lag.
   */
  async runHerd(options: HerdOptions): Promise<HerdTablet[]> {
    if (!this.#binary) return this.#runHerdInProcess(options);
    const args = ['--port', String(options.port), '--path', options.path, '--conns', String(options.tablets), '--requests', '1'];
    args.push('--retry-status', options.retryStatus.join(','), '--retry-delay', String(options.retryDelayMs));
    args.push('--expect', options.expectFile, '--per-conn', '1', '--timeout', String(options.timeoutS));
    const stdout = await this.#exec(this.#binary, args);
    // Line 1 is the usual summary, line 2 the tablets.
    const tablets = JSON.parse(stdout.trim().split('\n')[1] ?? '[]') as Array<Record<keyof HerdTablet, number | boolean>>;
    const time = (value: number | boolean) => (typeof value === 'number' && value > 0 ? value : null);
    return tablets.map((t) => ({
      status: Number(t.status),
      bytes: Number(t.bytes),
      matches: t.matches === true,
      complete: t.complete === true,
      streamed: t.streamed === true,
      attempts: Number(t.attempts),
      connectMs: Number(t.connectMs) >= 0 ? Number(t.connectMs) : null,
      requestToHeadersMs: Number(t.requestToHeadersMs) >= 0 ? Number(t.requestToHeadersMs) : null,
      headersAt: time(t.headersAt),
      firstByteAt: time(t.firstByteAt),
      doneAt: time(t.doneAt),
      lastRetryAt: time(t.lastRetryAt),
    }));
  }

  async #runHerdInProcess(options: HerdOptions): Promise<HerdTablet[]> {
    const expected = await readFile(options.expectFile);
    const deadline = Date.now() + options.timeoutS * 1000;
    const url = `http://127.0.0.1:${options.port}${options.path}`;
    const results = await Promise.all(Array.from({ length: options.tablets }, () => runTablet({ url, deadline, retryDelayMs: options.retryDelayMs, expected })));
    return results.map((r) => ({
      status: r.status,
      bytes: r.bytes,
      matches: r.matches === true,
      complete: r.complete,
      streamed: r.streamed,
      attempts: r.attempts,
      connectMs: r.connectMs,
      requestToHeadersMs: r.requestToHeadersMs,
      headersAt: r.headersAt,
      firstByteAt: r.firstByteAt,
      doneAt: r.doneAt,
      lastRetryAt: r.earlier.at(-1)?.at ?? null,
    }));
  }

  #exec(command: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(command, args, { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
        if (error) reject(new Error(`load client failed: ${error.message} ${stderr}`));
        else resolve(stdout);
      });
    });
  }

  async run(options: LoadOptions): Promise<LoadResult> {
    const args = ['--port', String(options.port), '--path', options.path, '--conns', String(options.conns)];
    if (options.durationS !== undefined) args.push('--duration', String(options.durationS));
    if (options.requests !== undefined) args.push('--requests', String(options.requests));
    if (options.rateBytesPerSec) args.push('--rate', String(options.rateBytesPerSec));
    if (options.stepBytes) args.push('--step', String(options.stepBytes));
    if (options.method) args.push('--method', options.method);
    if (options.timeoutS) args.push('--timeout', String(options.timeoutS));
    for (const [name, value] of Object.entries(options.headers ?? {})) args.push('--header', `${name}: ${value}`);
    if ((options.stepBytes || options.netns) && !this.#binary) throw new Error('--step and network namespaces need the C load client (a C compiler)');
    const [command, commandArgs] = this.#binary
      ? options.netns
        ? ['ip', ['netns', 'exec', options.netns, this.#binary, ...args]]
        : [this.#binary, args]
      : [process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'load-client.ts'), ...args]];
    const stdout = await this.#exec(command, commandArgs);
    try {
      return JSON.parse(stdout) as LoadResult;
    } catch {
      throw new Error(`load client printed no JSON: ${stdout}`);
    }
  }
}
