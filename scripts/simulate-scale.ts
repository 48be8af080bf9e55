/**
 * Scale-out simulation (run on demand; not a test):
 *
 *   npx tsx scripts/simulate-scale.ts [--nodes 0,1,2,4,8] [--tablets 100,400] [--size-mib 4]
 *                                     [--arrival-ms 15000] [--poll-spread-ms 10000] [--master-rate-mbps 8] [--trials 3]
 *
 * A reference master that 302-redirects tablets' download-package to a node holding the meeting
 * (least busy first, from the `load` field of the nodes' heartbeats), N edge nodes and T tablets
 * arriving over the first seconds of the meeting. Each tablet asks the master and follows the
 * redirect; the master serves a tablet itself while no node holds the package yet. Reports what the master sent (node syncs + tablets it served itself) against what
 * the tablets received: the offload the nodes give, and how it grows with N and T.
 *
 * Everything runs in this process on loopback; only bytes are measured, not speed.
 *
 * `npm run simulate -- --site` runs the site-tier measurement instead (scripts/simulate-site.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createReferenceMaster, type ReferenceMaster } from '../reference-master/master.ts';
import { runTablet, type TabletResult } from './lib/herd-client.ts';
import { EdgeNode } from '../src/edge-node.ts';
import { createLogger } from '../src/log/logger.ts';
import { parseOptions } from './lib/script-options.ts';

// `--site`: the site-tier measurement (issue 12 §3) instead, in simulate-site.ts.
if (process.argv.includes('--site')) {
  await import('./simulate-site.ts');
  process.exit(0);
}

const USAGE = `Usage: npm run simulate -- [--nodes 0,1,2,4,8] [--tablets 100,400] [--size-mib 4] [--arrival-ms 15000]
                            [--poll-spread-ms 10000] [--master-rate-mbps 8] [--trials 3]
       npm run simulate -- --site [--help]   (the site tier: N nodes against a capped master)

Tablets follow the master's redirect to a node holding the meeting; reports the master's egress per
byte the tablets received, per number of nodes and tablets.`;

const { values } = parseOptions(
  () =>
    parseArgs({
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        nodes: { type: 'string', default: '0,1,2,4,8' },
        tablets: { type: 'string', default: '100,400' },
        'size-mib': { type: 'string', default: '4' },
        'arrival-ms': { type: 'string', default: '15000' },
        // Nodes poll every syncInterval (10 s by default): each notices a new meeting within that.
        'poll-spread-ms': { type: 'string', default: '10000' },
        'master-rate-mbps': { type: 'string', default: '8' },
        // When the first node notices the meeting is random: one run says little, their mean more.
        trials: { type: 'string', default: '3' },
      },
    }),
  USAGE,
);
const list = (text: string) => text.split(',').map((n) => Number(n.trim()));
const nodeCounts = list(values.nodes);
const tabletCounts = list(values.tablets);
const sizeBytes = Math.round(Number(values['size-mib']) * 1024 * 1024);
const arrivalMs = Number(values['arrival-ms']);
const pollSpreadMs = Number(values['poll-spread-ms']);
const masterRate = Number(values['master-rate-mbps']) * 1e6;
const trials = Math.max(1, Number(values.trials));

interface Outcome {
  nodes: number;
  tablets: number;
  delivered: number;
  /** Bytes the master sent in all: node syncs plus tablets it served itself. */
  masterEgress: number;
  nodeSyncBytes: number;
  masterToTablets: number;
  servedByMaster: number;
  failed: number;
  redirectsPerNode: number[];
}

async function startNodes(master: ReferenceMaster, port: number, count: number, root: string): Promise<EdgeNode[]> {
  const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });
  const nodes: EdgeNode[] = [];
  for (let i = 0; i < count; i++) {
    const dir = await mkdtemp(path.join(root, `node-${i}-`));
    const configPath = path.join(dir, 'node_config.json');
    await writeFile(
      configPath,
      JSON.stringify({
        mainServerIp: '127.0.0.1',
        mainServerPort: port,
        // Polls are driven below (a random moment per node, as real nodes' schedules are).
        syncInterval: 3600,
        heartbeat: { interval: 10 },
        usePublicAddress: true,
        publicIp: '127.0.0.1',
        storage: { path: './storage' },
        logging: { fileEnabled: false },
        network: { retryDelay: 0.2 },
      }),
    );
    nodes.push(await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger, adminToken: 'simulate-scale-admin-token' }));
  }
  const deadline = Date.now() + 15_000;
  while (master.nodes().filter((n) => n.online).length < count) {
    if (Date.now() > deadline) throw new Error('nodes did not register');
    await sleep(50);
  }
  return nodes;
}

async function simulate(nodeCount: number, tabletCount: number, root: string): Promise<Outcome> {
  const master = createReferenceMaster({
    redirectToNodes: true,
    throttleBytesPerSec: masterRate,
    chunkSize: 64 * 1024,
    tokenCheckIntervalMs: 200,
    tokenSettleMs: 200,
    tokenMaxWaitMs: 10_000,
  });
  const { url, port } = await master.listen(0, '127.0.0.1');
  const nodes = await startNodes(master, port, nodeCount, root);
  try {
    const id = `sim-${nodeCount}-${tabletCount}`;
    master.addMeeting({ id, title: 'Scale-out simulation', packageSizeBytes: sizeBytes });
    await master.startMeeting(id);
    master.resetStats();
    const started = Date.now();
    // Each node notices the meeting at its next poll: a random moment within the spread.
    for (const node of nodes) setTimeout(() => void node.syncNow(), Math.random() * pollSpreadMs);
    const deadline = started + arrivalMs + 120_000;
    const results: TabletResult[] = await Promise.all(
      Array.from({ length: tabletCount }, async (_, i) => {
        await sleep((i / tabletCount) * arrivalMs);
        return runTablet({ url: `${url}/api/v1/meetings/${id}/download-package`, deadline, followRedirects: true, retryDelayMs: 200 });
      }),
    );
    const stats = master.stats();
    const good = results.filter((r) => r.status === 200 && r.complete && r.sha256 === master.meeting(id)?.package?.sha256);
    const masterHost = new URL(url).host;
    const redirects = nodes.map((node) => stats.redirectsByNode[node.address] ?? 0);
    return {
      nodes: nodeCount,
      tablets: tabletCount,
      delivered: good.reduce((sum, r) => sum + r.bytes, 0),
      masterEgress: stats.packageBytesSent + stats.tabletBytesSent,
      nodeSyncBytes: stats.packageBytesSent,
      masterToTablets: stats.tabletBytesSent,
      servedByMaster: good.filter((r) => r.servedBy === masterHost).length,
      failed: tabletCount - good.length,
      redirectsPerNode: redirects,
    };
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await master.close();
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}

const root = await mkdtemp(path.join(os.tmpdir(), 'simulate-scale-'));
const rows: string[][] = [];
const sum = (outcomes: Outcome[], pick: (o: Outcome) => number) => outcomes.reduce((total, o) => total + pick(o), 0);
try {
  for (const tablets of tabletCounts) {
    for (const nodes of nodeCounts) {
      const outcomes: Outcome[] = [];
      for (let trial = 1; trial <= trials; trial++) {
        process.stderr.write(`[simulate] ${nodes} node(s), ${tablets} tablets, trial ${trial}/${trials} ...\n`);
        outcomes.push(await simulate(nodes, tablets, root));
      }
      const delivered = sum(outcomes, (o) => o.delivered);
      const egress = sum(outcomes, (o) => o.masterEgress);
      const offloads = outcomes.map((o) => (o.delivered > 0 ? (o.delivered - o.masterToTablets) / o.delivered : 0));
      const redirects = outcomes.flatMap((o) => o.redirectsPerNode);
      rows.push([
        String(nodes),
        String(tablets),
        mb(delivered / trials),
        mb(egress / trials),
        `${mb(sum(outcomes, (o) => o.nodeSyncBytes) / trials)} / ${mb(sum(outcomes, (o) => o.masterToTablets) / trials)}`,
        delivered > 0 ? (egress / delivered).toFixed(3) : '-',
        `${((offloads.reduce((a, b) => a + b, 0) / trials) * 100).toFixed(1)} % (${(Math.min(...offloads) * 100).toFixed(0)}..${(Math.max(...offloads) * 100).toFixed(0)})`,
        (sum(outcomes, (o) => o.servedByMaster) / trials).toFixed(0),
        redirects.length ? `${Math.min(...redirects)}..${Math.max(...redirects)}` : '-',
        String(sum(outcomes, (o) => o.failed)),
      ]);
    }
  }
} finally {
  await rm(root, { recursive: true, force: true });
}

const header = ['nodes', 'tablets', 'delivered', 'master egress', 'syncs / direct', 'egress per byte', 'offloaded (range)', 'tablets on master', 'redirects per node', 'failed'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const render = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
console.log(
  `package ${(sizeBytes / 1024 / 1024).toFixed(1)} MiB, master ${masterRate / 1e6} MB/s per download, tablets arriving over ${arrivalMs / 1000} s, ` +
    `nodes polling within ${pollSpreadMs / 1000} s of the start; means of ${trials} trial(s) per row`,
);
console.log(render(header));
for (const row of rows) console.log(render(row));
