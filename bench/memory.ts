/**
 * Scenarios 8-10 (issue 20): the node on a small box. Memory is measured on the node as operators
 * run it (`node start.js`, the bundle: no tsx loader thread in the figures), beside bare Node and
 * nginx in the same run; the shaped-link room runs the node and nginx behind one 200 Mbit/s link.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { configSchema } from '../src/config/schema.ts';
import { loopbackConfig } from '../scripts/lib/loopback-config.ts';
import type { LoadResult } from './load.ts';
import { freePort, Nginx } from './nginx.ts';
import { CpuMeter, PeakRss, rssBytes } from './proc-stats.ts';
import { activeMeeting, addRow, nginxLabel, packagePath, startMaster, startNode, waitForPackage, warm, type BenchContext } from './scenarios.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const MiB = 1024 * 1024;
const MB = 1_000_000;

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/**
 * The descriptors that serve tablets: connected sockets on the server's port and open package
 * files (.zip). The rest (the log, the master's keep-alive pool, the listener) comes and goes
 * with the node's own work and says nothing of what a tablet costs.
 */
function servingFds(pid: number, port: number): { tablets: number; packages: number } {
  const connected = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const localPort = Number.parseInt((fields[1] ?? '').split(':')[1] ?? '', 16);
      // State 0A is LISTEN: the listener is the idle server's, not a tablet's.
      if (localPort === port && fields[3] !== '0A') connected.add(fields[9] ?? '');
    }
  }
  let tablets = 0;
  let packages = 0;
  let entries: string[] = [];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return { tablets, packages };
  }
  for (const fd of entries) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const socket = /^socket:\[(\d+)\]$/.exec(target);
    if (socket && connected.has(socket[1] ?? '')) tablets++;
    else if (target.endsWith('.zip')) packages++;
  }
  return { tablets, packages };
}

/** The node as `node start.js` runs it (the bundle is rebuilt first, so it is this tree's code). */
interface ProductNode {
  child: ChildProcess;
  /** Its folder: config, storage/, logs/. */
  dir: string;
  pid: number;
  port: number;
  token: string;
  stop(): Promise<void>;
}

let bundleBuilt = false;

async function startProductNode(ctx: BenchContext, masterPort: number): Promise<ProductNode> {
  if (!bundleBuilt) {
    execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: REPO, stdio: 'ignore' });
    bundleBuilt = true;
  }
  const dir = await mkdtemp(path.join(ctx.dir, 'product-node-'));
  const configPath = path.join(dir, 'node_config.json');
  // The product's defaults where they matter for memory: file log on at INFO, the real polling.
  const config = loopbackConfig(masterPort, {
    syncInterval: configSchema.properties.syncInterval.default,
    watchInterval: configSchema.properties.watchInterval.default,
    storage: { path: './storage', maxSize: 0 },
    logging: { fileEnabled: true, filePath: './logs/node.log', level: 'INFO' },
    // The product's default: preheat on, its schedule running (loopbackConfig turns it off).
    preheat: { enabled: configSchema.properties.preheat.properties.enabled.default },
  });
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const token = randomBytes(16).toString('hex');
  const port = await freePort();
  // As deploy/meeting-edge.service and the Dockerfile start it.
  const child = spawn(process.execPath, ['--max-semi-space-size=2', '--expose-gc', path.join(REPO, 'start.js'), '--config', configPath, '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EDGE_ADMIN_TOKEN: token },
  });
  let output = '';
  const collect = (text: string) => {
    output = (output + text).slice(-8000);
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);
  const deadline = Date.now() + 30_000;
  while (!output.includes('listening on http')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`node start.js did not start: ${output}`);
    }
    await sleep(50);
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    dir,
    pid: child.pid ?? 0,
    port,
    token,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The synced meetings (state in /api/status), asked with the admin token. */
async function syncedMeetings(node: ProductNode): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${node.port}/api/status`, { headers: { authorization: `Bearer ${node.token}` } });
  const status = (await response.json()) as { meetings?: Array<{ state?: string }> };
  return (status.meetings ?? []).filter((m) => m.state === 'synced').length;
}

/** RSS once it has settled: the lowest of a few samples a second apart (a GC may be under way). */
async function settledRss(pid: number, seconds = 5): Promise<number> {
  let lowest = Infinity;
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    lowest = Math.min(lowest, rssBytes(pid));
  }
  return lowest;
}

async function bareNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    return await settledRss(child.pid ?? 0, 3);
  } finally {
    child.kill('SIGKILL');
  }
}

// ---- 8: idle memory -------------------------------------------------------------------------

export async function scenarioIdleMemory(ctx: BenchContext): Promise<void> {
  const size = ctx.options.quick ? 10 * MB : 50 * MB;
  const master = await startMaster(ctx, { tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  try {
    ctx.log('8: bare Node, then a fresh node (node start.js), idle');
    const bare = await bareNodeRss();
    const node = await startProductNode(ctx, master.port);
    let fresh: number;
    let startRss = 0;
    let synced: number;
    try {
      // Over 20 s: V8's memory reducer gives back the start's garbage ~8 s after the start's last
      // GC (the start itself reads ~8 MiB more until then, kept in the raw figures).
      startRss = rssBytes(node.pid);
      fresh = await settledRss(node.pid, 20);
      ctx.log(`8: the node syncs three ${size / MB} MB packages, then idles`);
      for (const id of ['idle-1', 'idle-2', 'idle-3']) await activeMeeting(master, id, size);
      const deadline = Date.now() + 300_000;
      for (;;) {
        await fetch(`http://127.0.0.1:${node.port}/api/sync`, { method: 'POST', headers: { authorization: `Bearer ${node.token}` } }).catch(() => null);
        if ((await syncedMeetings(node)) >= 3) break;
        if (Date.now() > deadline) throw new Error('the node did not sync three packages within 300 s');
        await sleep(500);
      }
      // Past the hash thread's idle stop (30 s) and a few polls.
      await sleep(35_000);
      synced = await settledRss(node.pid, 10);
    } finally {
      await node.stop();
    }
    ctx.details['8'] = { bareNodeRss: bare, rssJustStarted: startRss, freshRss: fresh, afterSyncRss: synced, packageBytes: size };
    addRow(ctx, { scenario: 8, name: 'idle, fresh node', metric: 'RSS', unit: 'MiB', node: fresh / MiB, comparisonLabel: 'bare Node', comparison: bare / MiB, target: '<= 64 MiB', ok: fresh <= 64 * MiB });
    addRow(ctx, {
      scenario: 8,
      name: `idle after syncing 3 x ${size / MB} MB`,
      metric: 'RSS',
      unit: 'MiB',
      node: synced / MiB,
      comparisonLabel: 'bare Node',
      comparison: bare / MiB,
      target: '<= 72 MiB',
      ok: synced <= 72 * MiB,
    });
  } finally {
    await master.rpc.stop();
  }
}

// ---- 9: 1,000 slow tablets ------------------------------------------------------------------

interface SlowFigures {
  result: LoadResult;
  /** RSS and descriptors sampled in the middle of the run (every tablet connected and reading). */
  rss: number;
  peakRss: number;
  /** RSS of the server idle just before the tablets connect (lowest of a few samples). */
  rssBefore: number;
  fds: number;
  fdsBefore: number;
  /** Most tablet sockets and package files open at once in the second half. */
  serving: { tablets: number; packages: number };
  cpu: number;
}

async function slowRun(ctx: BenchContext, pids: () => number[], port: number, urlPath: string, conns: number, durationS: number): Promise<SlowFigures> {
  let rssBefore = Infinity;
  for (let i = 0; i < 3; i++) {
    rssBefore = Math.min(rssBefore, pids().reduce((n, pid) => n + rssBytes(pid), 0));
    await sleep(1000);
  }
  const fdsBefore = pids().reduce((n, pid) => n + openFds(pid), 0);
  const cpu = new CpuMeter(pids());
  const peak = new PeakRss(pids());
  let rss = 0;
  let fds = 0;
  const serving = { tablets: 0, packages: 0 };
  const run = ctx.load.run({ port, path: urlPath, conns, durationS, rateBytesPerSec: 32 * 1024, stepBytes: 8 * 1024, timeoutS: durationS + 30 });
  // Sampled over the second half, when every tablet is connected and reading slowly.
  const sampler = (async () => {
    await sleep((durationS / 2) * 1000);
    for (let i = 0; i < durationS / 2 - 1; i++) {
      rss = Math.max(rss, pids().reduce((n, pid) => n + rssBytes(pid), 0));
      fds = Math.max(fds, pids().reduce((n, pid) => n + openFds(pid), 0));
      const now = pids().map((pid) => servingFds(pid, port));
      serving.tablets = Math.max(serving.tablets, now.reduce((n, f) => n + f.tablets, 0));
      serving.packages = Math.max(serving.packages, now.reduce((n, f) => n + f.packages, 0));
      await sleep(1000);
    }
  })();
  const result = await run;
  await sampler;
  return { result, rss, peakRss: peak.stop(), rssBefore, fds, fdsBefore, serving, cpu: cpu.stop() };
}

export async function scenarioSlowTablets(ctx: BenchContext): Promise<void> {
  const conns = 1000;
  const durationS = ctx.options.quick ? 20 : 40;
  const size = ctx.options.quick ? 16 * MiB : 64 * MiB;
  const master = await startMaster(ctx, { tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  let nginx: Nginx | null = null;
  try {
    await activeMeeting(master, 'slow-tablets', size);
    const node = await startProductNode(ctx, master.port);
    try {
      const deadline = Date.now() + 120_000;
      while ((await syncedMeetings(node)) < 1) {
        if (Date.now() > deadline) throw new Error('the node did not sync the package within 120 s');
        await sleep(300);
      }
      const file = path.join(node.dir, 'storage', 'meeting_slow-tablets', 'package.zip');
      await warm(file).catch(() => {});
      // Past the hash thread's idle stop (30 s) and the malloc trim after it, as in scenario 8: a
      // room's tablets come long after the package synced, and the trim landing inside the
      // sampled half moved this row by ~12 MiB from run to run.
      await sleep(35_000);
      ctx.log(`9: ${conns} tablets reading 8 KiB every 0.25 s for ${durationS} s (node)`);
      const nodeFigures = await slowRun(ctx, () => [node.pid], node.port, packagePath('slow-tablets'), conns, durationS);
      let nginxFigures: SlowFigures | null = null;
      if (ctx.nginx) {
        nginx = await Nginx.start(ctx.nginx, path.join(ctx.dir, 'nginx-slow'), { files: { '/slow.zip': file } });
        const server = nginx;
        ctx.log(`9: ${conns} tablets reading 8 KiB every 0.25 s for ${durationS} s (nginx)`);
        nginxFigures = await slowRun(ctx, () => server.pids(), server.port, '/slow.zip', conns, durationS);
      }
      ctx.details['9'] = { node: nodeFigures, nginx: nginxFigures, conns, durationS, packageBytes: size };
      const name = `${conns} tablets, 8 KiB / 0.25 s`;
      const label = nginxLabel(ctx);
      addRow(ctx, { scenario: 9, name, metric: 'RSS (2nd half)', unit: 'MiB', node: nodeFigures.rss / MiB, comparisonLabel: label, comparison: nginxFigures ? nginxFigures.rss / MiB : null, target: '<= 96 MiB', ok: nodeFigures.rss <= 96 * MiB });
      // What the tablets add to the idle server: the per-tablet state, apart from the idle node's size.
      const perTabletKiB = (f: SlowFigures) => (f.rss - f.rssBefore) / conns / 1024;
      addRow(ctx, {
        scenario: 9,
        name,
        metric: 'RSS per tablet (over idle)',
        unit: 'KiB',
        node: perTabletKiB(nodeFigures),
        comparisonLabel: label,
        comparison: nginxFigures ? perTabletKiB(nginxFigures) : null,
        target: `idle ${(nodeFigures.rssBefore / MiB).toFixed(0)} MiB${nginxFigures ? ` (nginx ${(nginxFigures.rssBefore / MiB).toFixed(0)})` : ''}`,
        ok: null,
      });
      // One descriptor per tablet and one per package: those serving the tablets, counted by what
      // they are (the whole process's count over idle is in the details: the node's own poll of
      // the master opens and closes connections of its own meanwhile).
      const perTablet = (f: SlowFigures) => (f.serving.tablets + f.serving.packages) / conns;
      addRow(ctx, {
        scenario: 9,
        name,
        metric: 'fds per tablet',
        unit: 'per',
        node: perTablet(nodeFigures),
        comparisonLabel: label,
        comparison: nginxFigures ? perTablet(nginxFigures) : null,
        target: '1 + 1 per package',
        ok: nodeFigures.serving.tablets <= conns && nodeFigures.serving.packages <= 1,
      });
      addRow(ctx, { scenario: 9, name, metric: 'CPU-seconds', unit: 's', node: nodeFigures.cpu, comparisonLabel: label, comparison: nginxFigures?.cpu ?? null, target: '', ok: null });
      addRow(ctx, {
        scenario: 9,
        name,
        metric: 'bytes to tablets',
        unit: 'bytes',
        node: nodeFigures.result.bytes,
        comparisonLabel: label,
        comparison: nginxFigures?.result.bytes ?? null,
        target: `errors 0 (node ${nodeFigures.result.errors})`,
        ok: nodeFigures.result.errors === 0,
      });
    } finally {
      await node.stop();
    }
  } finally {
    await nginx?.stop();
    await master.rpc.stop();
  }
}

// ---- 10: the shaped-link room ----------------------------------------------------------------

const LINK_RATE_BITS = 200_000_000;

/** Why the shaped room cannot run here, or null when a namespace with a tbf-shaped loopback works. */
function createShapedNamespace(name: string): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, tc)';
  const run = (args: string[]) => execFileSync(args[0] as string, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    run(['ip', 'netns', 'add', name]);
  } catch (error) {
    return `ip netns add failed: ${String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim()}`;
  }
  try {
    // Everything in the room talks over this namespace's own loopback, at an Ethernet MTU, through
    // one token bucket: the master's package stream, the node's and nginx's bytes to the tablets.
    run(['ip', '-n', name, 'link', 'set', 'lo', 'mtu', '1500']);
    run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    run(['tc', '-n', name, 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', `${LINK_RATE_BITS / 1e6}mbit`, 'burst', '64kb', 'latency', '50ms']);
    return null;
  } catch (error) {
    deleteNamespace(name);
    return `tc tbf on the namespace's loopback failed: ${String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim()}`;
  }
}

function deleteNamespace(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // Already gone.
  }
}

export async function scenarioShapedRoom(ctx: BenchContext): Promise<void> {
  const ns = `meeting-edge-bench-${process.pid}`;
  const why = ctx.load.kind === 'c' ? createShapedNamespace(ns) : 'needs the C load client (no C compiler)';
  if (why) {
    ctx.log(`10: shaped-link room SKIPPED: ${why}`);
    ctx.details['10'] = { skipped: why };
    addRow(ctx, { scenario: 10, name: 'shaped link, 200 Mbit/s', metric: 'skipped', unit: '', node: null, comparisonLabel: why, comparison: null, target: '', ok: null });
    return;
  }
  const size = ctx.options.quick ? 10 * MB : 50 * MB;
  const details: Record<string, unknown> = {};
  let nginx: Nginx | null = null;
  const master = await startMaster(ctx, { tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 }, ns);
  try {
    await activeMeeting(master, 'room', size);
    const node = await startNode(ctx, master.port, {}, ns);
    try {
      const pkg = await waitForPackage(node, 'room', 300_000);
      await warm(pkg.path);
      if (ctx.nginx) nginx = await Nginx.start(ctx.nginx, path.join(ctx.dir, 'nginx-room'), { files: { '/room.zip': pkg.path } }, ns);
      for (const tablets of ctx.options.quick ? [20] : [20, 100]) {
        const ideal = (pkg.size * tablets * 8) / LINK_RATE_BITS;
        const timeoutS = Math.ceil(ideal * 3) + 30;
        ctx.log(`10: ${tablets} tablets x ${(pkg.size / MB).toFixed(0)} MB behind ${LINK_RATE_BITS / 1e6} Mbit/s (ideal ${ideal.toFixed(1)} s), node`);
        const nodeRun = await ctx.load.run({ port: node.port, path: packagePath('room'), conns: tablets, requests: 1, timeoutS, netns: ns });
        let nginxRun: LoadResult | null = null;
        if (nginx) {
          ctx.log(`10: ${tablets} tablets, nginx`);
          nginxRun = await ctx.load.run({ port: nginx.port, path: '/room.zip', conns: tablets, requests: 1, timeoutS, netns: ns });
        }
        details[`${tablets}`] = { ideal, node: nodeRun, nginx: nginxRun };
        const last = (r: LoadResult) => r.latencyMs.max / 1000;
        const name = `${tablets} tablets x ${(pkg.size / MB).toFixed(0)} MB, 200 Mbit/s`;
        const nodeLast = last(nodeRun);
        const nginxLast = nginxRun ? last(nginxRun) : null;
        addRow(ctx, {
          scenario: 10,
          name,
          metric: 'last tablet',
          unit: 's',
          node: nodeLast,
          comparisonLabel: nginxLabel(ctx),
          comparison: nginxLast,
          target: `<= 1.05x nginx, <= 1.10x ideal ${ideal.toFixed(1)} s`,
          ok: nodeRun.completed === tablets && nodeLast <= 1.1 * ideal && (nginxLast === null || nodeLast <= 1.05 * nginxLast),
        });
        const spread = (r: LoadResult) => `p50 ${(r.latencyMs.p50 / 1000).toFixed(1)} / p90 ${(r.latencyMs.p90 / 1000).toFixed(1)} / max ${(r.latencyMs.max / 1000).toFixed(1)} s`;
        addRow(ctx, {
          scenario: 10,
          name,
          metric: `per tablet: node ${spread(nodeRun)}`,
          unit: '',
          node: null,
          comparisonLabel: nginxRun ? `nginx ${spread(nginxRun)}` : nginxLabel(ctx),
          comparison: null,
          ratio: nodeLast / ideal,
          target: 'ratio: last / ideal',
          ok: null,
        });
      }
    } finally {
      await node.rpc.stop();
    }
  } finally {
    await nginx?.stop();
    await master.rpc.stop();
    ctx.details['10'] = details;
    deleteNamespace(ns);
  }
}
