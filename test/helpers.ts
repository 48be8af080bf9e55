import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EdgeNode, type EdgeNodeOptions } from '../src/edge-node.ts';
import { MemoryLogger } from '../src/log/memory-logger.ts';
import { createReferenceMaster, type ReferenceMaster, type ReferenceMasterOptions } from '../reference-master/master.ts';
import { loopbackConfig } from '../scripts/lib/loopback-config.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');

/** A temp folder removed by the returned cleanup. */
export async function tempDir(prefix = 'edge-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** A logger that records lines instead of printing them (tests assert on them sometimes). */
export function memoryLogger(): MemoryLogger {
  return new MemoryLogger(process.env.EDGE_TEST_LOG ? (line) => console.error(`[node] ${line}`) : null);
}

export interface TestMaster {
  master: ReferenceMaster;
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The reference master on loopback with fast token timings. */
export async function startMaster(options: ReferenceMasterOptions = {}): Promise<TestMaster> {
  const master = createReferenceMaster({ tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 5_000, ...options });
  const { url, port } = await master.listen(0, '127.0.0.1');
  return { master, url, port, close: () => master.close() };
}

export interface TestNode {
  node: EdgeNode;
  dir: string;
  configPath: string;
  storageDir: string;
  logger: MemoryLogger;
  url: string;
  stop(): Promise<void>;
}

/**
 * An edge node in its own temp folder (config, storage, logs), listening on 127.0.0.1:0 and
 * registering 127.0.0.1:<port> with the given master.
 */
export async function startNode(
  masterPort: number,
  options: { config?: Record<string, unknown>; dir?: string; node?: Partial<EdgeNodeOptions> } = {},
): Promise<TestNode> {
  const dir = options.dir ?? (await tempDir());
  const configPath = path.join(dir, 'node_config.json');
  if (!options.dir) {
    await writeFile(configPath, JSON.stringify(testConfig(masterPort, options.config), null, 2));
  }
  const logger = memoryLogger();
  const node = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger, ...options.node, policy: { drainTimeoutMs: 2_000, ...options.node?.policy } });
  return {
    node,
    dir,
    configPath,
    storageDir: path.join(dir, 'storage'),
    logger,
    url: node.localUrl,
    async stop() {
      await node.stop();
    },
  };
}

/** The loopback node config (scripts/lib, shared with bench/ and scripts/ without importing a test helper). */
export const testConfig = loopbackConfig;

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Descriptors of this process (its worker threads' included) open on `file`, even once deleted (Linux /proc). */
export function descriptorsOn(file: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target === file || target === `${file} (deleted)`) count += 1;
    } catch {
      // Closed since the listing.
    }
  }
  return count;
}

/** Polls `check` until it returns a truthy value or the timeout passes (then throws with `what`). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, stepMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    await sleep(stepMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body ended cleanly (false if the connection broke mid-body). */
  complete: boolean;
}

/** A plain node:http request (no retries, no decompression): what a tablet sees. */
export function fetchRaw(url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let complete = false;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        complete = res.complete;
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: complete && res.complete }));
      res.on('error', () => {});
    });
    req.on('error', reject);
    req.end();
  });
}

export function packageUrl(base: string, meetingId: string): string {
  return `${base}/api/v1/meetings/${meetingId}/download-package`;
}

/** The bytes the master serves for an active meeting (what every node must hand out). */
export async function masterPackageBytes(masterUrl: string, meetingId: string): Promise<Buffer> {
  const res = await fetchRaw(`${masterUrl}/api/v1/meetings/${meetingId}/download-package-direct`);
  if (res.status !== 200) throw new Error(`master answered ${res.status}`);
  return res.body;
}

// ---- added for the main-job integration suite (issue 2) ------------------------------------

export function sha256Hex(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The sha256 the master serves for an active meeting (throws if it is not active). */
export function masterSha(master: ReferenceMaster, meetingId: string): string {
  const pkg = master.meeting(meetingId)?.package;
  if (!pkg) throw new Error(`meeting ${meetingId} has no active package on the master`);
  return pkg.sha256;
}

/** Names in storage/meeting_{id}/ ([] when the folder does not exist). */
export async function meetingDirEntries(storageDir: string, meetingId: string): Promise<string[]> {
  try {
    return await readdir(path.join(storageDir, `meeting_${meetingId}`));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export function isPartFile(name: string): boolean {
  return name.includes('.part-');
}

/**
 * A reference master on a fixed port (a "restarted" master reuses the port the node knows).
 * Same fast token timings as startMaster.
 */
export async function startMasterOnPort(port: number, options: ReferenceMasterOptions = {}): Promise<TestMaster> {
  const master = createReferenceMaster({ tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 5_000, ...options });
  const listening = await master.listen(port, '127.0.0.1');
  return { master, url: listening.url, port: listening.port, close: () => master.close() };
}

/**
 * A transparent proxy in front of the master that rewrites the JSON of the status poll
 * (`GET /api/v1/meetings/status/node`): lets a test feed the node answers the reference master
 * never produces (null or missing titles) while everything else reaches the real master.
 */
export async function startStatusProxy(
  masterPort: number,
  rewrite: (status: Record<string, unknown>) => unknown,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const upstream = httpRequest(
      { host: '127.0.0.1', port: masterPort, method: req.method, path: req.url, headers: req.headers, agent: false },
      (answer) => {
        if (req.url?.startsWith('/api/v1/meetings/status/node') && answer.statusCode === 200) {
          const chunks: Buffer[] = [];
          answer.on('data', (chunk: Buffer) => chunks.push(chunk));
          answer.on('end', () => {
            const body = Buffer.from(JSON.stringify(rewrite(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>)));
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
            res.end(body);
          });
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A tablet that reads slowly: the response is paused after the first chunk until resume() is
 * called; `done` resolves with the whole body once it has been read to the end.
 */
export function startPausedDownload(url: string): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  received: () => number;
  resume(): void;
  done: Promise<RawResponse>;
}> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      let paused = false;
      const done = new Promise<RawResponse>((resolveDone) => {
        res.on('close', () =>
          resolveDone({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }),
        );
      });
      res.on('error', () => {});
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (!paused) {
          paused = true;
          res.pause();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, received: () => received, resume: () => res.resume(), done });
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** SIGKILLs a child node (no-op if it already exited) and waits for it to be gone. */
export function killProcess(proc: Pick<NodeProcess, 'child' | 'exited'>): Promise<unknown> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return Promise.resolve();
  proc.child.kill('SIGKILL');
  return proc.exited;
}

export interface NodeProcess {
  child: ChildProcess;
  /** Port the node listens on (from its READY line). */
  port: number;
  url: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** What a child node runs: scripts/lib/run-node.ts through tsx, or its bundle (bundleRunNode). */
export interface NodeProgram {
  /** node's arguments before the run-node options and the config path. */
  args: string[];
}

const RUN_NODE_FROM_SOURCE: NodeProgram = {
  args: ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/lib/run-node.ts')],
};

/**
 * scripts/lib/run-node.ts bundled with the source it imports (esbuild, dependencies external, as
 * start.js is built): a child started from it skips tsx's work on every module, for tests that
 * start many. Built from the current source by each call; written in its own folder under build/
 * (two levels below the repository like run-node.ts, so node_modules, public/ and the socket-calls
 * addon are found the same way) and removed by remove().
 */
export async function bundleRunNode(): Promise<NodeProgram & { remove(): Promise<void> }> {
  const { build } = await import('esbuild');
  await mkdir(path.join(REPO_ROOT, 'build'), { recursive: true });
  const dir = await mkdtemp(path.join(REPO_ROOT, 'build', 'test-run-node-'));
  const outfile = path.join(dir, 'run-node.mjs');
  await build({
    entryPoints: [path.join(REPO_ROOT, 'scripts/lib/run-node.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  return { args: [outfile], remove: () => removeDir(dir) };
}

/** A child node process that has loaded its modules and opens its storage only once started. */
export interface LoadedNodeProcess {
  /** Starts the node and resolves once it prints `READY <port>`. */
  start(timeoutMs?: number): Promise<NodeProcess>;
  /** SIGKILLs it, started or not, and waits for it to be gone. */
  kill(): Promise<unknown>;
}

/**
 * Starts an edge node in a child process (scripts/lib/run-node.ts) with the given config file and
 * resolves once it prints `READY <port>`.
 */
export async function spawnNodeProcess(configPath: string, program: NodeProgram = RUN_NODE_FROM_SOURCE, timeoutMs = 20_000): Promise<NodeProcess> {
  return launch(configPath, program, false).start(timeoutMs);
}

/**
 * A child node that loads its modules now and starts when start() is called (run-node's
 * --start-on-stdin): a test that restarts a node many times loads the next process while the
 * current one runs.
 */
export function loadNodeProcess(configPath: string, program: NodeProgram = RUN_NODE_FROM_SOURCE): LoadedNodeProcess {
  return launch(configPath, program, true);
}

function launch(configPath: string, program: NodeProgram, startOnStdin: boolean): LoadedNodeProcess {
  const child = spawn(process.execPath, [...program.args, ...(startOnStdin ? ['--start-on-stdin'] : []), configPath], {
    cwd: REPO_ROOT,
    stdio: [startOnStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  child.stdin?.on('error', () => {}); // EPIPE when the child is gone before start()
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const ready = new Promise<number>((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      const match = /^READY (\d+)$/m.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    void exited.then(({ code, signal }) => reject(new Error(`node process exited (${code ?? signal}) before READY; stderr: ${stderr}`)));
  });
  ready.catch(() => {}); // a process killed before start() was never awaited
  const kill = () => killProcess({ child, exited });
  return {
    kill,
    async start(timeoutMs = 20_000) {
      child.stdin?.end('start\n');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`node process did not print READY within ${timeoutMs} ms; stderr: ${stderr}`));
        }, timeoutMs);
      });
      try {
        const port = await Promise.race([ready, timeout]);
        return { child, port, url: `http://127.0.0.1:${port}`, stderr: () => stderr, exited };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Registers cleanups on a test context; they run after the test in reverse order, each one even
 * if an earlier one failed (a stuck node must not leave a master listening).
 */
export function cleanupStack(t: { after(fn: () => Promise<void>): void }): (fn: () => Promise<unknown> | unknown) => void {
  const steps: Array<() => Promise<unknown> | unknown> = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const step of steps.reverse()) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length) throw errors[0];
  });
  return (fn) => {
    steps.push(fn);
  };
}

/** The node's /api/status document (with the node's admin token); throws unless 200. */
export async function nodeStatus(node: EdgeNode): Promise<Record<string, unknown>> {
  const res = await fetchRaw(`${node.localUrl}/api/status`, { headers: { authorization: `Bearer ${node.adminToken}` } });
  if (res.status !== 200) throw new Error(`/api/status answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
  return JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
}

/** Builds start.js from start.ts (scripts/build.mjs), as `npm install` does: tests of the real CLI run it. */
export async function buildStartJs(): Promise<string> {
  const build = spawn(process.execPath, ['scripts/build.mjs'], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  build.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const code = await new Promise<number | null>((resolve) => build.once('exit', resolve));
  if (code !== 0) throw new Error(`build failed: ${stderr}`);
  return path.join(REPO_ROOT, 'start.js');
}

/** A loopback port free a moment ago (for the CLI, which refuses --port 0). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
