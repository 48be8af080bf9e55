import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EdgeNode, type EdgeNodeOptions } from '../src/edge-node.ts';
import { createLogger, type Logger } from '../src/logger.ts';
import { createReferenceMaster, type ReferenceMaster, type ReferenceMasterOptions } from '../reference-master/master.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..');

/** A temp folder removed by the returned cleanup. */
export async function tempDir(prefix = 'edge-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** A logger that records lines instead of printing them (tests assert on them sometimes). */
export function memoryLogger(): Logger & { lines: string[] } {
  const logger = createLogger({ level: 'DEBUG', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false }) as Logger & { lines: string[] };
  logger.lines = [];
  const record = (level: string) => (message: unknown) => {
    logger.lines.push(`${level} ${String(message)}`);
    if (process.env.EDGE_TEST_LOG) console.error(`[node] ${level} ${String(message)}`);
    return logger;
  };
  for (const level of ['error', 'warn', 'info', 'debug'] as const) {
    (logger as unknown as Record<string, unknown>)[level] = record(level);
  }
  return logger;
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
  logger: Logger & { lines: string[] };
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
  const node = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger, drainTimeoutMs: 2_000, ...options.node });
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

export function testConfig(masterPort: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    mainServerIp: '127.0.0.1',
    mainServerPort: masterPort,
    syncInterval: 10,
    usePublicAddress: true,
    publicIp: '127.0.0.1',
    storage: { path: './storage' },
    network: { retryDelay: 0.05, connectionTimeout: 2, downloadTimeout: 5 },
    logging: { fileEnabled: false },
    heartbeat: { interval: 10 },
  };
  for (const [key, value] of Object.entries(overrides)) {
    const existing = base[key];
    base[key] =
      existing && typeof existing === 'object' && value && typeof value === 'object' && !Array.isArray(value)
        ? { ...(existing as object), ...(value as object) }
        : value;
  }
  return base;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
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
