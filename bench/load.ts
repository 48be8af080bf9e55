/**
 * Runs the load client: bench/loadgen.c compiled with `cc` at bench time when a compiler is
 * there, otherwise bench/load-client.ts (same options and output, but a Node client costs about as
 * much CPU as the server it measures, so throughput figures are then lower bounds).
 */
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';

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

  run(options: LoadOptions): Promise<LoadResult> {
    const args = ['--port', String(options.port), '--path', options.path, '--conns', String(options.conns)];
    if (options.durationS !== undefined) args.push('--duration', String(options.durationS));
    if (options.requests !== undefined) args.push('--requests', String(options.requests));
    if (options.rateBytesPerSec) args.push('--rate', String(options.rateBytesPerSec));
    if (options.method) args.push('--method', options.method);
    if (options.timeoutS) args.push('--timeout', String(options.timeoutS));
    for (const [name, value] of Object.entries(options.headers ?? {})) args.push('--header', `${name}: ${value}`);
    const [command, commandArgs] = this.#binary
      ? [this.#binary, args]
      : [process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'load-client.ts'), ...args]];
    return new Promise((resolve, reject) => {
      execFile(command, commandArgs, { maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
        if (error) return reject(new Error(`load client failed: ${error.message} ${stderr}`));
        try {
          resolve(JSON.parse(stdout) as LoadResult);
        } catch {
          reject(new Error(`load client printed no JSON: ${stdout} ${stderr}`));
        }
      });
    });
  }
}
