/**
 * Site-tier measurement (issue 12 §3, issue 18), run on demand:
 *
 *   npm run simulate -- --site [--nodes 1,2,4,8] [--size-mib 8] [--rate-mbps 4] [--trials 1] [--trace]
 *
 * --trace prints every node's log lines with the ms since the meeting start (where the time goes).
 *
 * N edge nodes against the bundled master whose package stream is capped in AGGREGATE (all
 * package bodies share one rate, as the real master's CPU-bound stream does). Per N: a meeting
 * starts and every node notices it at the same moment; then an unrelated meeting starts (a token
 * change). Reports, per N:
 *   - master bytes of the build ÷ package size (target 1.00: once per site, whatever N),
 *   - time until every node holds (and serves) the package ÷ the single-node time (target ≤ 1.15),
 *   - master bytes of the held build caused by the unrelated token change (target ≤ 64 KiB per held package).
 * Every node holds the same site key. Then two runs of three nodes under a fault (scripts/lib/site-faults.ts):
 *   - a seed frozen (SIGSTOP, its own process) after --freeze-at of the package: time until the
 *     others serve, master bytes per build, and the resumed seed's time to serve;
 *   - a seed killed (connection reset, then refused) after --freeze-at of a package it serves
 *     complete to a node fetching it again, while another member holds the build: what that
 *     node fetched from siblings (the bytes kept spare the next member as many), and its time;
 *   - a keyless rogue registered with the master serving a forgery (README lead the master's):
 *     forged copies served (target 0);
 *   - a meeting ended and started within one second while a tablet per node downloads it: the
 *     last older-build body after the token change (target: none later than 2 s).
 * Everything on loopback.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createReferenceMaster } from '../reference-master/master.ts';
import { EdgeNode } from '../src/edge-node.ts';
import { MemoryLogger } from '../src/log/memory-logger.ts';
import { newSiteKey } from '../src/site/site-key.ts';
import { killedSeedRun } from './lib/seed-killed.ts';
import { frozenSeedRun, rogueRun, tokenWindowRun } from './lib/site-faults.ts';
import { loopbackConfig } from './lib/loopback-config.ts';
import { parseOptions } from './lib/script-options.ts';

const USAGE = `Usage: npm run simulate -- --site [--nodes 1,2,4,8] [--size-mib 8] [--rate-mbps 4] [--trials 1]
                                   [--freeze-at 0.2] [--faults frozen,killed,rogue,restart] [--no-faults] [--trace]

N nodes of one site (one site key) against the reference master with its package stream capped in
aggregate: master bytes per build, time until every node serves the package, master bytes per token
change. Then a seed frozen mid-stream and a keyless rogue serving forgeries (--no-faults skips them).`;

const { values } = parseOptions(
  () =>
    parseArgs({
      args: process.argv.slice(2).filter((a) => a !== '--site'),
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        nodes: { type: 'string', default: '1,2,4,8' },
        'size-mib': { type: 'string', default: '8' },
        'rate-mbps': { type: 'string', default: '4' },
        trials: { type: 'string', default: '1' },
        'freeze-at': { type: 'string', default: '0.2' },
        'no-faults': { type: 'boolean', default: false },
        faults: { type: 'string', default: 'frozen,killed,rogue,restart' },
        trace: { type: 'boolean', default: false },
      },
    }),
  USAGE,
);
const nodeCounts = values.nodes.split(',').map((n) => Number(n.trim()));
const sizeBytes = Math.round(Number(values['size-mib']) * 1024 * 1024);
const rate = Number(values['rate-mbps']) * 1e6;
const trials = Math.max(1, Number(values.trials));

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(stepMs);
  }
}

interface Run {
  perBuild: number;
  allServeMs: number;
  tokenChangeBytes: number;
  fromPeers: number;
  fallbacks: number;
}

const t0 = { at: 0 };
const trace = (who: string, line: string) => {
  if (values.trace) process.stderr.write(`${String(Date.now() - t0.at).padStart(6)} ms ${who} ${line}\n`);
};

/** One site, one key. */
const siteKey = newSiteKey();

async function run(count: number, root: string): Promise<Run> {
  const master = createReferenceMaster({ packageRateBytesPerSec: rate, tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 3_000 });
  const { port } = await master.listen(0, '127.0.0.1');
  const nodes: EdgeNode[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const dir = await mkdtemp(path.join(root, `node-${i}-`));
      const configPath = path.join(dir, 'node_config.json');
      await writeFile(configPath, JSON.stringify(loopbackConfig(port, { syncInterval: 3600, peers: { key: siteKey }, network: { retryDelay: 0.2, connectionTimeout: 2, downloadTimeout: 30 } })));
      nodes.push(await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: new MemoryLogger((line) => trace(`node${i}`, line)), adminToken: 'simulate-site-admin-token' }));
    }
    await waitUntil('nodes registered', () => master.nodes().filter((n) => n.online).length === count, 15_000);
    // Running nodes, as at a real meeting start: each node's last view of the site predates it by more than a few seconds.
    await sleep(3_500);
    const id = `site-${count}`;
    master.addMeeting({ id, title: 'Site tier', packageSizeBytes: sizeBytes });
    await master.startMeeting(id);
    const build = master.meeting(id)?.package;
    if (!build) throw new Error('no build');
    master.resetStats();
    const started = Date.now();
    t0.at = started;
    trace('sim', 'start');
    await Promise.all(nodes.map((node) => node.syncNow()));
    trace('sim', 'syncNow done');
    await waitUntil('every node holds the package', () => nodes.every((node) => node.store.get(id)?.sha256 === build.sha256), 300_000);
    trace('sim', 'all serve');
    const allServeMs = Date.now() - started;
    const perBuild = (master.stats().packageBytesByBuild[build.buildId] ?? 0) / build.size;
    const fromPeers = nodes.filter((node) => node.jobs.jobs().find((j) => j.meetingId === id)?.source.kind === 'peer').length;
    const fallbacks = nodes.reduce((sum, node) => sum + node.site.counters.fallbacks, 0);

    // An unrelated meeting starts: the token changes; the held package must not be fetched again.
    await Promise.all(nodes.map((node) => node.syncNow()));
    const before = nodes[0]?.sync.lastSuccess?.token;
    master.resetStats();
    master.addMeeting({ id: 'unrelated', title: 'Unrelated', packageSizeBytes: 64 * 1024 });
    await master.startMeeting('unrelated');
    await waitUntil('the token changed', () => master.token() !== before, 15_000);
    const token = master.token();
    await waitUntil(
      'every node confirmed the held package under the new token',
      async () => {
        await Promise.all(nodes.map((node) => node.syncNow()));
        return nodes.every((node) => node.store.get(id)?.token === token);
      },
      60_000,
      200,
    );
    const tokenChangeBytes = master.stats().packageBytesByBuild[build.buildId] ?? 0;
    return { perBuild, allServeMs, tokenChangeBytes, fromPeers, fallbacks };
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await master.close();
  }
}

const root = await mkdtemp(path.join(os.tmpdir(), 'simulate-site-'));
const results = new Map<number, Run[]>();
try {
  for (const count of nodeCounts) {
    const runs: Run[] = [];
    for (let trial = 1; trial <= trials; trial++) {
      process.stderr.write(`[simulate --site] ${count} node(s), trial ${trial}/${trials} ...\n`);
      runs.push(await run(count, root));
    }
    results.set(count, runs);
  }
} finally {
  await rm(root, { recursive: true, force: true });
}

// Medians: on a shared 2-core machine one slow trial (another process's burst) would move a mean.
const mean = (runs: Run[], pick: (r: Run) => number) => {
  const sorted = runs.map(pick).sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const spread = (runs: Run[]) => runs.map((r) => (r.allServeMs / 1000).toFixed(2)).join(', ');
const single = results.get(1) ?? results.get(nodeCounts[0] as number) ?? [];
const baseMs = mean(single, (r) => r.allServeMs);
const header = ['N', 'master bytes per build / size', 'all nodes serve (s)', 'time / single node', 'token change: master bytes of held build', 'from a sibling', 'fallbacks'];
const rows = [...results].map(([count, runs]) => [
  String(count),
  mean(runs, (r) => r.perBuild).toFixed(2),
  `${(mean(runs, (r) => r.allServeMs) / 1000).toFixed(2)}${runs.length > 1 ? ` (${spread(runs)})` : ''}`,
  (mean(runs, (r) => r.allServeMs) / baseMs).toFixed(2),
  `${(mean(runs, (r) => r.tokenChangeBytes) / 1024).toFixed(1)} KiB`,
  `${mean(runs, (r) => r.fromPeers).toFixed(0)} / ${count}`,
  mean(runs, (r) => r.fallbacks).toFixed(0),
]);
console.log(`package ${(sizeBytes / 1024 / 1024).toFixed(1)} MiB, master package stream capped at ${rate / 1e6} MB/s in aggregate, ${trials} trial(s) per row (medians; every trial's time in brackets)`);
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const row of rows) console.log(`| ${row.join(' | ')} |`);

if (!values['no-faults']) {
  const faultRoot = await mkdtemp(path.join(os.tmpdir(), 'simulate-site-faults-'));
  try {
    const single = mean(results.get(1) ?? [], (r) => r.allServeMs);
    const alone = Number.isFinite(single) && single > 0 ? single : (sizeBytes / rate) * 1000;
    const options = { sizeBytes, rate, root: faultRoot, freezeAt: Number(values['freeze-at']), trace };
    const runs = new Set(values.faults.split(',').map((name) => name.trim()));
    if (runs.has('frozen')) process.stderr.write('[simulate --site] a seed frozen mid-stream (3 node processes) ...\n');
    const frozen = runs.has('frozen') ? await frozenSeedRun(options) : null;
    if (runs.has('killed')) process.stderr.write('[simulate --site] a seed killed mid-serve, another member holding the build (3 nodes) ...\n');
    const killed = runs.has('killed') ? await killedSeedRun(options) : null;
    if (runs.has('rogue')) process.stderr.write('[simulate --site] a keyless rogue serving forgeries (3 nodes) ...\n');
    const rogue = runs.has('rogue') ? await rogueRun(options) : null;
    if (runs.has('restart')) process.stderr.write('[simulate --site] a meeting restarted within a second, tablets downloading (3 nodes) ...\n');
    const window = runs.has('restart') ? await tokenWindowRun(options) : null;
    const seconds = (ms: number | null) => (ms === null ? 'never (120 s)' : `${(ms / 1000).toFixed(2)} s`);
    console.log('');
    console.log(`Faults (3 nodes, package ${(sizeBytes / 1024 / 1024).toFixed(1)} MiB, one download alone ${(alone / 1000).toFixed(2)} s${results.has(1) ? ' measured above' : ' at the capped rate'}):`);
    console.log('| run | measured | target |');
    console.log('|---|---|---|');
    if (frozen) {
      console.log(`| seed frozen after ${Math.round(Number(values['freeze-at']) * 100)} %: others serve after the freeze | ${seconds(frozen.othersServeAfterFreezeMs)} (${seconds(frozen.othersServeMs)} after the start) | ≤ ${((1.4 * alone + 20_000) / 1000).toFixed(1)} s (1.4 × alone + 20 s) |`);
      console.log(`| seed frozen: master bytes per build while frozen / at the end | ${frozen.perBuildWhileFrozen.toFixed(2)} / ${frozen.perBuild.toFixed(2)} | ≤ 2.3 |`);
      console.log(`| seed frozen: the resumed seed serves after | ${seconds(frozen.seedServesAfterResumeMs)} | ≤ 60 s |`);
      console.log(`| seed frozen: handovers (seeds abandoned by the others) | ${frozen.handovers} | |`);
      console.log(`| seed frozen: the others' bytes from siblings per build / bytes kept at hand-over | ${frozen.peerPerBuild.toFixed(2)} / ${frozen.resumedBytes} | – |`);
    }
    if (killed) {
      const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
      console.log(`| seed killed after ${mib(killed.bytesAtKill)} of ${mib(killed.size)}: bytes from siblings / kept at hand-over | ${mib(killed.peerBytes)} (${(killed.peerBytes / killed.size).toFixed(2)} × size) / ${mib(killed.resumedBytes)} | 1.00 × size / – |`);
      console.log(`| seed killed: master bytes of the build meanwhile (C's probe of the lead), serves again after the kill | ${killed.masterBytes}, ${seconds(killed.serveAfterKillMs)} | probe only |`);
    }
    if (rogue) {
      console.log(`| rogue: forged copies served | ${rogue.forgedServed} of 3 | 0 |`);
      console.log(`| rogue: requests it got / nodes listing it "not of this site" | ${rogue.rogueRequests} / ${rogue.notOfSite} of 3 | 0 / 3 |`);
      console.log(`| rogue: master bytes per build, all nodes serve | ${rogue.perBuild.toFixed(2)}, ${seconds(rogue.allServeMs)} | ≤ 1.15 |`);
    }
    if (window) {
      console.log(`| restart: last older-build body after the token change | ${window.windowMs <= 0 ? 'none after it' : seconds(window.windowMs)} | ≤ 2 s |`);
      console.log(`| restart: older-build bodies later than 2 s / bodies / wrong bodies | ${window.lateOldBodies} / ${window.bodies} / ${window.wrongBodies} | 0 / – / 0 |`);
      console.log(`| restart: master bytes of the new build per size | ${window.perBuild.toFixed(2)} | ≤ 1.1 |`);
    }
  } finally {
    await rm(faultRoot, { recursive: true, force: true });
  }
}