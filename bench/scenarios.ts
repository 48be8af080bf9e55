/**
 * The scenarios of `npm run bench` (issues 5 and 13). Each one starts what it needs (reference master,
 * edge node, nginx) as separate processes on loopback, measures the node and, in the same run, its
 * comparison (nginx, curl or the target), and adds rows to the table.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MasterStats, MeetingView, ReferenceMasterOptions } from '../reference-master/master.ts';
import type { StoredPackage } from '../src/store/package-store.ts';
import type { LoadClient, LoadResult } from './load.ts';
import { Nginx } from './nginx.ts';
import { CpuMeter, PeakRss, rssBytes } from './proc-stats.ts';
import { RpcChild } from './rpc.ts';
import { configSchema } from '../src/config/schema.ts';
import { loopbackConfig } from '../scripts/lib/loopback-config.ts';

const BENCH_DIR = import.meta.dirname;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export interface BenchOptions {
  quick: boolean;
  /** Scenario numbers to run; null = all. */
  only: Set<number> | null;
}

export interface Row {
  scenario: number;
  name: string;
  metric: string;
  unit: string;
  node: number | null;
  /** What the comparison is ("nginx", "curl"), or why there is none. */
  comparisonLabel: string;
  comparison: number | null;
  /** node / comparison. */
  ratio: number | null;
  target: string;
  ok: boolean | null;
}

export interface BenchContext {
  options: BenchOptions;
  /** Scratch folder of this run (masters' packages, nodes' storage, nginx). */
  dir: string;
  load: LoadClient;
  /** nginx binary, or null when it is not installed. */
  nginx: string | null;
  log: (line: string) => void;
  rows: Row[];
  /** Raw figures per scenario, written to the JSON file. */
  details: Record<string, unknown>;
}

interface JobEvent {
  type: 'started' | 'first-bytes' | 'succeeded' | 'failed';
  meetingId: string;
  at: number;
  attemptStartedAt?: number;
  firstBytesAt?: number | null;
  bodyDoneAt?: number | null;
  size?: number;
  sha256?: string;
  message?: string;
}

export interface MasterProcess {
  rpc: RpcChild;
  url: string;
  port: number;
  tempDir: string;
}

export interface NodeProcess {
  rpc: RpcChild;
  url: string;
  port: number;
  adminToken: string;
}

// ---- processes ------------------------------------------------------------------------------

export async function startMaster(ctx: BenchContext, options: ReferenceMasterOptions, netns?: string): Promise<MasterProcess> {
  const tempDir = await mkdtemp(path.join(ctx.dir, 'master-'));
  const { rpc, ready } = await RpcChild.start<{ url: string; port: number }>(path.join(BENCH_DIR, 'master-child.ts'), [
    JSON.stringify({ ...options, tempDir }),
  ], { netns });
  return { rpc, url: ready.url, port: ready.port, tempDir };
}

export async function startNode(ctx: BenchContext, masterPort: number, config: Record<string, unknown> = {}, netns?: string): Promise<NodeProcess> {
  const dir = await mkdtemp(path.join(ctx.dir, 'node-'));
  const configPath = path.join(dir, 'node_config.json');
  // The tests' loopback config, with bench timeouts and no quota (packages are up to 2 GiB).
  const network = { maxConcurrentDownloads: 3, downloadTimeout: 60, connectionTimeout: 5, retryCount: 3, retryDelay: 1 };
  const nodeConfig = loopbackConfig(masterPort, {
    // The product's polling, not the tests' (which switch the watch off).
    syncInterval: configSchema.properties.syncInterval.default,
    watchInterval: configSchema.properties.watchInterval.default,
    storage: { path: './storage', maxSize: 0 },
    logging: { fileEnabled: false, level: 'WARNING' },
    ...config,
    network: { ...network, ...((config['network'] as object | undefined) ?? {}) },
  });
  await writeFile(configPath, JSON.stringify(nodeConfig, null, 2));
  const adminToken = randomBytes(16).toString('hex');
  const { rpc, ready } = await RpcChild.start<{ url: string; port: number }>(path.join(BENCH_DIR, 'node-child.ts'), [configPath, adminToken], {
    stderr: (text) => ctx.log(`  [node] ${text.trimEnd()}`),
    netns,
  });
  return { rpc, url: ready.url, port: ready.port, adminToken };
}

export function packagePath(meetingId: string): string {
  return `/api/v1/meetings/${meetingId}/download-package`;
}

/** Adds and starts a meeting of about `size` bytes on the master (the package is built first). */
export async function activeMeeting(master: MasterProcess, id: string, size: number | undefined): Promise<MeetingView> {
  await master.rpc.call('addMeeting', { id, title: `Bench ${id}`, ...(size ? { packageSizeBytes: size } : {}) });
  return master.rpc.call<MeetingView>('startMeeting', id);
}

/** The master's file for an active meeting (named by its build id in the master's temp folder). */
async function masterPackageFile(master: MasterProcess, meeting: MeetingView): Promise<string | null> {
  const buildId = meeting.package?.buildId;
  if (!buildId) return null;
  for (const sub of await readdir(master.tempDir)) {
    const dir = path.join(master.tempDir, sub);
    const names = await readdir(dir).catch(() => [] as string[]);
    const name = names.find((n) => n.endsWith(`_${buildId}.zip`));
    if (name) return path.join(dir, name);
  }
  return null;
}

export async function waitForPackage(node: NodeProcess, meetingId: string, timeoutMs: number): Promise<StoredPackage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pkg = await node.rpc.call<StoredPackage | null>('package', meetingId);
    if (pkg) return pkg;
    if (Date.now() > deadline) throw new Error(`node did not sync ${meetingId} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Reads a file once so both servers start from a warm page cache. */
export async function warm(file: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    createReadStream(file, { highWaterMark: 4 * MiB })
      .on('data', () => {})
      .on('end', resolve)
      .on('error', reject);
  });
}

function dropDirtyPages(): void {
  try {
    execFileSync('sync');
  } catch {
    // Not fatal: the figures are just noisier.
  }
}

// ---- rows -----------------------------------------------------------------------------------

export function addRow(ctx: BenchContext, row: Omit<Row, 'ratio'> & { ratio?: number | null }): void {
  const ratio = row.ratio !== undefined ? row.ratio : row.node !== null && row.comparison ? row.node / row.comparison : null;
  ctx.rows.push({ ...row, ratio });
}

export function nginxLabel(ctx: BenchContext): string {
  return ctx.nginx ? 'nginx' : 'nginx not installed';
}

// ---- scenarios 1-3: serving a synced package --------------------------------------------------

interface ServeSetup {
  master: MasterProcess;
  node: NodeProcess;
  nginx: Nginx | null;
  large: StoredPackage;
  small: StoredPackage;
  nginxEtag: string | null;
}

async function serveSetup(ctx: BenchContext, sizes: { large: number; small: number }): Promise<ServeSetup> {
  // No token change: it makes every node fetch each held active package again to compare bytes
  // (the rule for meeting restarts), which would run beside the curl measurement.
  const master = await startMaster(ctx, { chunkSize: 256 * 1024, tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  await activeMeeting(master, 'bench-large', sizes.large);
  await activeMeeting(master, 'bench-small', sizes.small);
  const node = await startNode(ctx, master.port);
  const large = await waitForPackage(node, 'bench-large', 120_000);
  const small = await waitForPackage(node, 'bench-small', 120_000);
  await warm(large.path);
  await warm(small.path);
  let nginx: Nginx | null = null;
  let nginxEtag: string | null = null;
  if (ctx.nginx) {
    nginx = await Nginx.start(ctx.nginx, path.join(ctx.dir, 'nginx-serve'), { files: { '/large.zip': large.path, '/small.zip': small.path } });
    const head = await fetch(`http://127.0.0.1:${nginx.port}/small.zip`, { method: 'HEAD' });
    nginxEtag = head.headers.get('etag');
  }
  return { master, node, nginx, large, small, nginxEtag };
}

async function stopServeSetup(setup: ServeSetup): Promise<void> {
  await setup.nginx?.stop();
  await setup.node.rpc.stop();
  await setup.master.rpc.stop();
}

async function measureLoad(pids: number[], run: () => Promise<LoadResult>): Promise<{ result: LoadResult; cpu: number; peakRss: number }> {
  const cpu = new CpuMeter(pids);
  const rss = new PeakRss(pids);
  const result = await run();
  return { result, cpu: cpu.stop(), peakRss: rss.stop() };
}

export async function scenarioLargeFile(ctx: BenchContext, setup: ServeSetup): Promise<void> {
  const durationS = ctx.options.quick ? 4 : 15;
  const sizeLabel = `${Math.round(setup.large.size / MiB)} MiB`;
  const details: Record<string, unknown> = {};
  for (const conns of [16, 64]) {
    ctx.log(`1: ${sizeLabel} x ${conns} clients for ${durationS} s (node)`);
    const node = await measureLoad([setup.node.rpc.pid], () =>
      ctx.load.run({ port: setup.node.port, path: packagePath('bench-large'), conns, durationS }),
    );
    let nginx: typeof node | null = null;
    if (setup.nginx) {
      ctx.log(`1: ${sizeLabel} x ${conns} clients for ${durationS} s (nginx)`);
      const server = setup.nginx;
      nginx = await measureLoad(server.pids(), () => ctx.load.run({ port: server.port, path: '/large.zip', conns, durationS }));
    }
    details[`${conns}`] = { node, nginx };
    const gbps = (m: typeof node) => m.result.bytes / m.result.seconds / 1e9;
    const cpuPerGb = (m: typeof node) => (m.result.bytes > 0 ? m.cpu / (m.result.bytes / 1e9) : null);
    const nodeGbps = gbps(node);
    const nginxGbps = nginx ? gbps(nginx) : null;
    addRow(ctx, {
      scenario: 1,
      name: `${sizeLabel}, ${conns} clients`,
      metric: 'throughput',
      unit: 'GB/s',
      node: nodeGbps,
      comparisonLabel: nginxLabel(ctx),
      comparison: nginxGbps,
      target: conns === 64 ? '>= 0.8x nginx' : '',
      ok: conns === 64 && nginxGbps ? nodeGbps >= 0.8 * nginxGbps && node.result.errors === 0 : null,
    });
    const nodeCpu = cpuPerGb(node);
    const nginxCpu = nginx ? cpuPerGb(nginx) : null;
    addRow(ctx, {
      scenario: 1,
      name: `${sizeLabel}, ${conns} clients`,
      metric: 'server CPU per GB',
      unit: 's',
      node: nodeCpu,
      comparisonLabel: nginxLabel(ctx),
      comparison: nginxCpu,
      target: '<= 1.5x nginx',
      ok: nodeCpu !== null && nginxCpu ? nodeCpu <= 1.5 * nginxCpu : null,
    });
  }
  ctx.details['1'] = details;
}

export async function scenarioSlowClients(ctx: BenchContext, setup: ServeSetup): Promise<void> {
  const conns = 1000;
  const rate = 1_000_000;
  const sizeLabel = `${Math.round(setup.small.size / MiB)} MiB`;
  const timeoutS = Math.ceil(setup.small.size / rate) * 3 + 30;
  ctx.log(`2: ${conns} clients reading ${sizeLabel} at 1 MB/s each (node)`);
  const node = await measureLoad([setup.node.rpc.pid], () =>
    ctx.load.run({ port: setup.node.port, path: packagePath('bench-small'), conns, requests: 1, rateBytesPerSec: rate, timeoutS }),
  );
  let nginx: typeof node | null = null;
  if (setup.nginx) {
    ctx.log(`2: ${conns} clients reading ${sizeLabel} at 1 MB/s each (nginx)`);
    const server = setup.nginx;
    nginx = await measureLoad(server.pids(), () => ctx.load.run({ port: server.port, path: '/small.zip', conns, requests: 1, rateBytesPerSec: rate, timeoutS }));
  }
  ctx.details['2'] = { node, nginx };
  const name = `${conns} clients at 1 MB/s, ${sizeLabel}`;
  addRow(ctx, {
    scenario: 2,
    name,
    metric: 'peak RSS',
    unit: 'MiB',
    node: node.peakRss / MiB,
    comparisonLabel: nginxLabel(ctx),
    comparison: nginx ? nginx.peakRss / MiB : null,
    target: '<= 300 MiB',
    ok: node.peakRss <= 300 * MiB,
  });
  addRow(ctx, {
    scenario: 2,
    name,
    metric: 'completed / errors',
    unit: 'count',
    node: node.result.completed,
    comparisonLabel: nginxLabel(ctx),
    comparison: nginx ? nginx.result.completed : null,
    ratio: null,
    target: `${conns} / 0`,
    ok: node.result.completed === conns && node.result.errors === 0,
  });
}

export async function scenarioSmallRequests(ctx: BenchContext, setup: ServeSetup): Promise<void> {
  const durationS = ctx.options.quick ? 3 : 10;
  const conns = 64;
  const details: Record<string, unknown> = {};
  const cases: Array<{ metric: string; method: 'GET' | 'HEAD'; nodeHeaders: Record<string, string>; nginxHeaders: Record<string, string> | null; status: string }> = [
    {
      metric: 'If-None-Match -> 304',
      method: 'GET',
      nodeHeaders: { 'If-None-Match': `"${setup.small.sha256}"` },
      nginxHeaders: setup.nginxEtag ? { 'If-None-Match': setup.nginxEtag } : null,
      status: '304',
    },
    { metric: 'HEAD', method: 'HEAD', nodeHeaders: {}, nginxHeaders: {}, status: '200' },
  ];
  for (const c of cases) {
    ctx.log(`3: ${c.metric}, ${conns} connections for ${durationS} s (node)`);
    const node = await ctx.load.run({ port: setup.node.port, path: packagePath('bench-small'), conns, durationS, method: c.method, headers: c.nodeHeaders });
    let nginx: LoadResult | null = null;
    if (setup.nginx && c.nginxHeaders) {
      ctx.log(`3: ${c.metric}, ${conns} connections for ${durationS} s (nginx)`);
      nginx = await ctx.load.run({ port: setup.nginx.port, path: '/small.zip', conns, durationS, method: c.method, headers: c.nginxHeaders });
    }
    details[c.metric] = { node, nginx };
    const rps = node.completed / node.seconds;
    const allExpected = (node.status[c.status] ?? 0) === Object.values(node.status).reduce((a, b) => a + b, 0);
    addRow(ctx, {
      scenario: 3,
      name: `${c.metric}, ${conns} connections`,
      metric: 'requests per second',
      unit: 'req/s',
      node: rps,
      comparisonLabel: nginxLabel(ctx),
      comparison: nginx ? nginx.completed / nginx.seconds : null,
      target: '>= 15000 req/s',
      ok: rps >= 15_000 && allExpected && node.errors === 0,
    });
  }
  ctx.log(`3: /api/status, ${conns} connections for ${durationS} s (node)`);
  const authorization = { Authorization: `Bearer ${setup.node.adminToken}` };
  const status = await ctx.load.run({ port: setup.node.port, path: '/api/status', conns, durationS, headers: authorization });
  // What an operator's panel sees: one client polling while the tablets revalidate at full speed.
  ctx.log(`3: /api/status from 1 connection during ${conns} connections of If-None-Match, ${durationS} s (node)`);
  const [, panel] = await Promise.all([
    ctx.load.run({ port: setup.node.port, path: packagePath('bench-small'), conns, durationS, headers: { 'If-None-Match': `"${setup.small.sha256}"` } }),
    ctx.load.run({ port: setup.node.port, path: '/api/status', conns: 1, durationS, headers: authorization }),
  ]);
  details['/api/status'] = status;
  details['/api/status during 304 load'] = panel;
  ctx.details['3'] = details;
  for (const [label, result] of [
    [`/api/status, ${conns} connections`, status],
    [`/api/status, 1 client + ${conns} conns of 304`, panel],
  ] as const) {
    addRow(ctx, {
      scenario: 3,
      name: label,
      metric: 'p99 latency',
      unit: 'ms',
      node: result.latencyMs.p99,
      comparisonLabel: 'target only',
      comparison: null,
      target: '<= 10 ms',
      ok: result.latencyMs.p99 <= 10 && (result.status['200'] ?? 0) > 0 && result.errors === 0,
    });
  }
  addRow(ctx, {
    scenario: 3,
    name: `/api/status, ${conns} connections`,
    metric: 'requests per second',
    unit: 'req/s',
    node: status.completed / status.seconds,
    comparisonLabel: 'target only',
    comparison: null,
    target: '',
    ok: null,
  });
}

export async function runServeScenarios(ctx: BenchContext, which: number[]): Promise<void> {
  const large = ctx.options.quick ? 64 * MiB : 200 * MiB;
  const small = ctx.options.quick ? 4 * MiB : 16 * MiB;
  ctx.log(`setup: master + node, packages of ${large / MiB} and ${small / MiB} MiB`);
  const setup = await serveSetup(ctx, { large, small });
  try {
    if (which.includes(1)) await scenarioLargeFile(ctx, setup);
    if (which.includes(2)) await scenarioSlowClients(ctx, setup);
    if (which.includes(3)) await scenarioSmallRequests(ctx, setup);
  } finally {
    await stopServeSetup(setup);
  }
}

// ---- scenario 4: sync throughput and memory --------------------------------------------------

async function curlToDisk(url: string, file: string): Promise<{ seconds: number; bytes: number } | null> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--fail', '-o', file, '-w', '%{size_download}', url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
    });
    child.on('error', () => resolve(null));
    child.on('exit', (code) => resolve(code === 0 ? { seconds: (performance.now() - started) / 1000, bytes: Number(out) } : null));
  });
}

export async function scenarioSync(ctx: BenchContext): Promise<void> {
  const sizes = ctx.options.quick ? [256 * MiB] : [256 * MiB, GiB, 2 * GiB];
  // No token change: after each sync the master would change it, and the node would fetch the
  // package again to compare its bytes, beside curl's measurement.
  const master = await startMaster(ctx, { chunkSize: 256 * 1024, tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  const linkDir = path.join(ctx.dir, 'origin-packages');
  await mkdir(linkDir, { recursive: true });
  // nginx in front of the master serves the package files itself: the fastest origin there is.
  const origin = ctx.nginx ? await Nginx.start(ctx.nginx, path.join(ctx.dir, 'nginx-origin'), { packagesDir: linkDir, proxyPort: master.port }) : null;
  const originPort = origin?.port ?? master.port;
  const originLabel = origin ? 'curl from nginx' : 'curl from master';
  const details: Record<string, unknown> = { origin: origin ? 'nginx (sendfile) in front of the reference master' : 'reference master, unthrottled' };
  // The bench starts each sync itself (syncNow). The product's watch (every 2 s) would otherwise
  // notice a meeting the moment it starts and sync it beside curl's run in the rounds where curl
  // goes first: measured, the node then took up to 1.1 s for 256 MiB, against 0.41-0.48 s alone.
  const node = await startNode(ctx, originPort, { watchInterval: 0, syncInterval: 3600 });

  /** One sync of a fresh package of `size` by the node, measured from the job's events. */
  const nodeSync = async (id: string, size: number) => {
    dropDirtyPages();
    const pid = node.rpc.pid;
    const baseline = rssBytes(pid);
    const peak = new PeakRss([pid], 20);
    await node.rpc.call('syncNow');
    const done = await node.rpc.waitEvent<JobEvent>('job', (e) => e.meetingId === id && (e.type === 'succeeded' || e.type === 'failed'), 600_000);
    const peakRss = peak.stop();
    if (done.type === 'failed') throw new Error(`node sync of ${id} failed: ${done.message ?? ''}`);
    const started = done.attemptStartedAt ?? done.at;
    const transferS = ((done.bodyDoneAt ?? done.at) - started) / 1000;
    const totalS = (done.at - started) / 1000;
    const firstByteS = done.firstBytesAt ? (done.firstBytesAt - started) / 1000 : null;
    return { firstByteS, transferS, totalS, transferMBps: size / transferS / 1e6, totalMBps: size / totalS / 1e6, baselineRss: baseline, peakRss };
  };
  const curlSync = async (id: string) => {
    dropDirtyPages();
    const curlFile = path.join(ctx.dir, `curl-${id}.zip`);
    const curl = await curlToDisk(`http://127.0.0.1:${originPort}/api/v1/meetings/${id}/download-package-direct`, curlFile);
    await rm(curlFile, { force: true });
    return curl ? { ...curl, MBps: curl.bytes / curl.seconds / 1e6 } : null;
  };

  try {
    await node.rpc.call('syncNow');
    for (const size of sizes) {
      const label = size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`;
      // A 256 MiB copy lasts ~0.3 s at page-cache speed, where this VM's figures swing by 2-4x from
      // one run to the next (curl alone: 210-1,300 MB/s; first writes into memory the host has not
      // backed yet are slow, whoever makes them). So it runs 5 rounds, the node and curl taking
      // turns going first, and compares medians. The larger sizes are disk-bound and run once.
      const rounds = size <= 256 * MiB ? 5 : 1;
      const runs: Array<{ node: Awaited<ReturnType<typeof nodeSync>>; curl: Awaited<ReturnType<typeof curlSync>> }> = [];
      for (let round = 1; round <= rounds; round++) {
        const id = `bench-sync-${Math.round(size / MiB)}-${round}`;
        const of = rounds > 1 ? ` (round ${round} of ${rounds})` : '';
        ctx.log(`4: ${label} package${of}: building it on the master`);
        const view = await activeMeeting(master, id, size);
        const file = await masterPackageFile(master, view);
        if (origin) {
          if (!file) throw new Error(`cannot find the master's file for ${id}`);
          await symlink(file, path.join(linkDir, `${id}.zip`));
        }
        if (file) await warm(file);
        const nodeFirst = round % 2 === 1;
        ctx.log(`4: ${label}${of}: ${nodeFirst ? `node sync, then ${originLabel}` : `${originLabel}, then node sync`} to disk`);
        const curlBefore = nodeFirst ? null : await curlSync(id);
        const nodeRun = await nodeSync(id, size);
        const curl = nodeFirst ? await curlSync(id) : curlBefore;
        runs.push({ node: nodeRun, curl });

        // Free the disk before the next round: the master drops it, the node evicts it.
        await master.rpc.call('endMeeting', id);
        await rm(path.join(linkDir, `${id}.zip`), { force: true });
        await node.rpc.call('syncNow');
      }

      const curlRuns = runs.map((run) => run.curl);
      const curlMBps = curlRuns.every((run) => run !== null) ? medianOf(curlRuns.map((run) => (run as { MBps: number }).MBps)) : null;
      const transferMBps = medianOf(runs.map((run) => run.node.transferMBps));
      const growth = Math.max(...runs.map((run) => (run.node.peakRss - run.node.baselineRss) / MiB));
      details[label] = { size, rounds: runs };
      const comparisonLabel = curlMBps === null ? 'curl failed' : rounds > 1 ? `${originLabel}, median of ${rounds}` : originLabel;
      addRow(ctx, {
        scenario: 4,
        name: `sync ${label}`,
        metric: rounds > 1 ? `download to disk (median of ${rounds})` : 'download to disk',
        unit: 'MB/s',
        node: transferMBps,
        comparisonLabel,
        comparison: curlMBps,
        target: '>= 0.6x curl',
        ok: curlMBps ? transferMBps >= 0.6 * curlMBps : null,
      });
      addRow(ctx, {
        scenario: 4,
        name: `sync ${label}`,
        metric: 'incl. fsync, zip check, promote',
        unit: 'MB/s',
        node: medianOf(runs.map((run) => run.node.totalMBps)),
        comparisonLabel,
        comparison: curlMBps,
        target: '',
        ok: null,
      });
      addRow(ctx, {
        scenario: 4,
        name: `sync ${label}`,
        metric: rounds > 1 ? 'peak RSS growth (largest)' : 'peak RSS growth',
        unit: 'MiB',
        node: growth,
        comparisonLabel: 'target only',
        comparison: null,
        target: '<= 64 MiB',
        ok: growth <= 64,
      });
    }
  } finally {
    ctx.details['4'] = details;
    await node.rpc.stop();
    await origin?.stop();
    await master.rpc.stop();
  }
}

// ---- scenario 5: herd -----------------------------------------------------------------------

export async function scenarioHerd(ctx: BenchContext): Promise<void> {
  const tablets = 500;
  const size = 2 * MiB;
  const rate = 1_000_000;
  const id = 'bench-herd';
  // No token change during the herd: it would make the node re-fetch the package to check it.
  const master = await startMaster(ctx, { throttleBytesPerSec: rate, chunkSize: 64 * 1024, tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  const node = await startNode(ctx, master.port);
  try {
    await node.rpc.call('syncNow');
    await master.rpc.call('addMeeting', { id, title: 'Bench herd', packageSizeBytes: size });
    ctx.log(`5: ${tablets} tablets ask the node the moment the meeting starts; master sends ${size / MiB} MiB at ${rate / 1e6} MB/s (${ctx.load.kind === 'c' ? 'loadgen.c' : 'Node tablets in this process'})`);
    const view = await master.rpc.call<MeetingView>('startMeeting', id);
    const packageFile = await masterPackageFile(master, view);
    if (!packageFile) throw new Error(`cannot find the master's file for ${id}`);
    // The bench process's own event-loop delay: it matters when the Node fallback tablets run here.
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    await node.rpc.call('loopDelay', true);
    const results = await ctx.load.runHerd({ port: node.port, path: packagePath(id), tablets, retryStatus: [404, 503], retryDelayMs: 100, expectFile: packageFile, timeoutS: 120 });
    lag.disable();
    const stats = await master.rpc.call<MasterStats>('stats');
    const fetches = stats.packageDownloads[id]?.started ?? 0;
    const originStart = stats.requestLog.find((entry) => entry.route === 'package' && entry.path.includes(id))?.time ?? null;
    const good = results.filter((r) => r.status === 200 && r.complete && r.matches);
    const delays = originStart === null ? [] : good.map((r) => (r.firstByteAt ?? Infinity) - originStart).sort((a, b) => a - b);
    const maxDelay = delays.at(-1) ?? null;
    const streamed = good.filter((r) => r.streamed).length;
    ctx.details['5'] = {
      tablets,
      client: ctx.load.kind,
      size,
      rate,
      fetches,
      good: good.length,
      streamed,
      statuses: countBy(results.map((r) => `${r.status}${r.status === 200 && !r.complete ? ' cut' : ''}${r.status === 200 && !r.matches ? ' wrong bytes' : ''}`)),
      attempts: results.reduce((sum, r) => sum + r.attempts, 0),
      firstByteDelayMs: delays.length ? { p50: delays[Math.floor(delays.length / 2)], max: maxDelay } : null,
      lastDoneAfterOriginStartMs: originStart === null ? null : Math.max(...results.map((r) => r.doneAt ?? NaN)) - originStart,
      nodeFirstBytesAfterOriginStartMs: originStart === null ? null : ((await node.rpc.waitEvent<JobEvent>('job', (e) => e.type === 'first-bytes' && e.meetingId === id, 1000).catch(() => null))?.at ?? NaN) - originStart,
      headersAfterOriginStartMs: originStart === null ? null : summary(good.map((r) => (r.headersAt ?? NaN) - originStart)),
      clientEventLoopDelayMs: { p50: lag.percentile(50) / 1e6, p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 },
      nodeEventLoopDelayMs: await node.rpc.call('loopDelay', false),
      connectMs: summary(good.map((r) => r.connectMs ?? NaN)),
      requestToHeadersMs: summary(good.map((r) => r.requestToHeadersMs ?? NaN)),
      // Per tablet: its last 404/503 ended -> headers of the good answer.
      retryToHeadersMs: summary(good.filter((r) => r.lastRetryAt !== null).map((r) => (r.headersAt ?? NaN) - (r.lastRetryAt ?? NaN))),
      // Every tablet, relative to the origin's first byte: when it last heard 404/503 and when its headers came.
      timeline: originStart === null ? null : results.map((r) => ({ attempts: r.attempts, lastRetry: r.lastRetryAt === null ? null : Math.round(r.lastRetryAt - originStart), headers: r.headersAt === null ? null : Math.round(r.headersAt - originStart) })),
    };
    const name = `herd of ${tablets}, ${size / MiB} MiB at ${rate / 1e6} MB/s`;
    addRow(ctx, { scenario: 5, name, metric: 'upstream fetches', unit: 'count', node: fetches, comparisonLabel: 'target only', comparison: null, target: '= 1', ok: fetches === 1 });
    addRow(ctx, {
      scenario: 5,
      name,
      metric: 'tablets with the right bytes',
      unit: 'count',
      node: good.length,
      comparisonLabel: 'target only',
      comparison: null,
      target: `= ${tablets}`,
      ok: good.length === tablets,
    });
    addRow(ctx, {
      scenario: 5,
      name,
      metric: "first byte after origin's, max",
      unit: 'ms',
      node: maxDelay,
      comparisonLabel: 'target only',
      comparison: null,
      target: '<= 1000 ms',
      ok: maxDelay !== null && maxDelay <= 1000,
    });
    addRow(ctx, { scenario: 5, name, metric: 'served while downloading', unit: 'count', node: streamed, comparisonLabel: 'target only', comparison: null, target: '', ok: null });
  } finally {
    await node.rpc.stop();
    await master.rpc.stop();
  }
}

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

/** The middle of a non-empty list (summary's p50). */
function medianOf(values: number[]): number {
  return summary(values)?.p50 ?? NaN;
}

function summary(values: number[]): { p50: number; p90: number; max: number } | null {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
  return { p50: at(0.5), p90: at(0.9), max: sorted[sorted.length - 1] ?? NaN };
}

// ---- scenario 6: meeting start to token change -----------------------------------------------

export async function scenarioTokenChange(ctx: BenchContext): Promise<void> {
  const trials = ctx.options.quick ? 1 : 3;
  // The real master's timing rules: check every 5 s, settle 3 s, give up waiting after 300 s.
  const master = await startMaster(ctx, {});
  const nodes = [await startNode(ctx, master.port), await startNode(ctx, master.port)];
  const seconds: number[] = [];
  try {
    const deadline = Date.now() + 30_000;
    while ((await master.rpc.call<Array<{ online: boolean }>>('nodes')).filter((n) => n.online).length < 2) {
      if (Date.now() > deadline) throw new Error('the nodes did not register');
      await sleep(100);
    }
    for (let trial = 1; trial <= trials; trial++) {
      const id = `bench-token-${trial}`;
      await master.rpc.call('addMeeting', { id, title: `Bench token ${trial}` });
      const before = await master.rpc.call<string>('token');
      await master.rpc.call('startMeeting', id);
      const startedAt = Date.now();
      ctx.log(`6: trial ${trial}/${trials}: meeting started, waiting for the token to change`);
      while ((await master.rpc.call<string>('token')) === before) {
        if (Date.now() - startedAt > 120_000) throw new Error('the token did not change within 120 s');
        await sleep(50);
      }
      seconds.push((Date.now() - startedAt) / 1000);
      await master.rpc.call('endMeeting', id);
    }
  } finally {
    for (const node of nodes) await node.rpc.stop();
    await master.rpc.stop();
  }
  const stats = summary(seconds);
  const median = stats?.p50 ?? null;
  const max = stats?.max ?? null;
  ctx.details['6'] = { seconds };
  const name = `2 nodes, small package, ${trials} trial${trials > 1 ? 's' : ''}`;
  addRow(ctx, { scenario: 6, name, metric: 'start -> token change, median', unit: 's', node: median, comparisonLabel: 'target only', comparison: null, target: '<= 10 s', ok: median !== null && median <= 10 });
  if (trials > 1) addRow(ctx, { scenario: 6, name, metric: 'start -> token change, max', unit: 's', node: max, comparisonLabel: 'target only', comparison: null, target: '<= 10 s', ok: max !== null && max <= 10 });
}

// ---- scenario 7: preheat (issue 13) -------------------------------------------------------------

/**
 * A meeting starts and 20 tablets ask the node at once, with the master's package stream capped
 * (aggregate, like the field's CPU-bound master): the node preheated the package before the start,
 * or not. From the start (the master marks the meeting active) to the last tablet holding the
 * whole package, the 404s the tablets were answered, and the start to the master's token change.
 */
export async function scenarioPreheat(ctx: BenchContext): Promise<void> {
  const tablets = 20;
  const rate = 1_000_000;
  const sizes = ctx.options.quick ? [4 * MiB, 20 * MiB] : [20 * MiB, 200 * MiB];
  const figures: Record<string, unknown>[] = [];
  for (const size of sizes) {
    for (const preheat of [true, false]) {
      const id = `bench-preheat-${size / MiB}-${preheat ? 'on' : 'off'}`;
      // The master's real token rules (check every 5 s, settle 3 s); its package stream capped for all downloads together.
      const master = await startMaster(ctx, { packageRateBytesPerSec: rate, chunkSize: 64 * 1024 });
      const node = await startNode(ctx, master.port, { preheat: { enabled: preheat } });
      try {
        await node.rpc.call('syncNow');
        // Scheduled in an hour: in the preheat window.
        await master.rpc.call('addMeeting', { id, title: `Bench preheat ${size / MiB} MiB`, time: Date.now() + 3_600_000, packageSizeBytes: size });
        let expectFile: string | null = null;
        let preheatSeconds: number | null = null;
        if (preheat) {
          ctx.log(`7: ${size / MiB} MiB: waiting for the node to preheat it at ${rate / 1e6} MB/s`);
          const began = Date.now();
          await node.rpc.call('preheatNow');
          const deadline = Date.now() + (size / rate) * 3_000 + 60_000;
          for (;;) {
            const pkg = await node.rpc.call<StoredPackage | null>('package', id);
            if (pkg?.source === 'preheat') break;
            if (Date.now() > deadline) throw new Error(`the node did not preheat ${id}`);
            await sleep(200);
          }
          preheatSeconds = (Date.now() - began) / 1000;
          // The tablets must get the preheated build: keep a copy (the master deletes it at the start).
          const kept = await masterPackageFile(master, (await master.rpc.call<MeetingView>('meeting', id))!);
          if (!kept) throw new Error('cannot find the master\'s preheat build');
          expectFile = path.join(ctx.dir, `${id}.zip`);
          await copyFile(kept, expectFile);
        }
        const tokenBefore = await master.rpc.call<string>('token');
        ctx.log(`7: ${size / MiB} MiB, ${preheat ? 'preheated' : 'not preheated'}: starting the meeting; ${tablets} tablets ask at once`);
        const view = await master.rpc.call<MeetingView>('startMeeting', id);
        const startedAt = Date.now();
        if (!expectFile) expectFile = await masterPackageFile(master, view);
        if (!expectFile) throw new Error(`cannot find the master's file for ${id}`);
        let tokenChangedAt: number | null = null;
        let herdDoneAt: number | null = null;
        const watchToken = (async () => {
          while (tokenChangedAt === null && Date.now() - startedAt < 300_000) {
            if ((await master.rpc.call<string>('token')) !== tokenBefore) tokenChangedAt = Date.now();
            // The token waits for the node's report, which waits for the whole package: give it time after the herd.
            else if (herdDoneAt !== null && Date.now() - herdDoneAt > 30_000) return;
            else await sleep(50);
          }
        })();
        const results = await ctx.load.runHerd({ port: node.port, path: packagePath(id), tablets, retryStatus: [404], retryDelayMs: 100, expectFile, timeoutS: Math.ceil(size / rate) * 3 + 60 });
        herdDoneAt = Date.now();
        await watchToken;
        const stats = await master.rpc.call<MasterStats>('stats');
        const good = results.filter((r) => r.status === 200 && r.complete && r.matches);
        const lastDone = Math.max(...results.map((r) => r.doneAt ?? NaN));
        const holdSeconds = good.length === tablets ? (lastDone - startedAt) / 1000 : null;
        const notFound = results.reduce((sum, r) => sum + Math.max(0, r.attempts - 1), 0);
        const tokenSeconds = tokenChangedAt === null ? null : (tokenChangedAt - startedAt) / 1000;
        const startBuild = view.package?.buildId ?? '';
        const masterBytesAfterStart = stats.packageBytesByBuild[startBuild] ?? 0;
        const row = {
          size,
          preheat,
          preheatSeconds,
          holdSeconds,
          good: good.length,
          statuses: countBy(results.map((r) => `${r.status}${r.status === 200 && !r.complete ? ' cut' : ''}${r.status === 200 && !r.matches ? ' wrong bytes' : ''}`)),
          notFound,
          tokenSeconds,
          masterBytesAfterStart,
          nodePackage: await node.rpc.call<StoredPackage | null>('package', id),
        };
        figures.push(row);
        ctx.log(`7: ${JSON.stringify({ ...row, nodePackage: row.nodePackage?.source })}`);
        const name = `${tablets} tablets, ${size / MiB} MiB at ${rate / 1e6} MB/s, ${preheat ? 'preheated' : 'not preheated'}`;
        addRow(ctx, {
          scenario: 7,
          name,
          metric: 'start -> last tablet holds it',
          unit: 's',
          node: holdSeconds,
          comparisonLabel: 'target only',
          comparison: null,
          target: preheat ? '<= 3 s' : '',
          ok: preheat ? holdSeconds !== null && holdSeconds <= 3 : null,
        });
        addRow(ctx, { scenario: 7, name, metric: '404 answers', unit: 'count', node: notFound, comparisonLabel: 'target only', comparison: null, target: '= 0', ok: notFound === 0 });
        addRow(ctx, {
          scenario: 7,
          name,
          metric: 'start -> token change',
          unit: 's',
          node: tokenSeconds,
          comparisonLabel: 'target only',
          comparison: null,
          target: '<= 10 s',
          ok: tokenSeconds !== null && tokenSeconds <= 10,
        });
        addRow(ctx, { scenario: 7, name, metric: "master bytes of the start's build", unit: 'bytes', node: masterBytesAfterStart, comparisonLabel: 'target only', comparison: null, target: '', ok: null });
      } finally {
        await node.rpc.stop();
        await master.rpc.stop();
      }
    }
  }
  ctx.details['7'] = { tablets, rate, runs: figures };
}
