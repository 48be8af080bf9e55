/**
 * Site churn soak (issue 18's first target), run on demand (not in CI):
 *
 *   npx tsx scripts/site-soak.ts [--minutes 7] [--tablets 8] [--meetings 4] [--package-kb 4096]
 *                                [--rate-mbps 2] [--late-s 10] [--restart-every-s 90] [--churn-every-s 12]
 *
 * The reference master in this process (its package stream capped in aggregate), three nodes of
 * one site (one site key) as child processes (scripts/lib/run-node.ts), each with its own temp
 * config, storage and log. For the given time:
 *   - the meetings churn on the master, in turn: a restart within the same second (the active list
 *     never changes), a restart after a short gap, an end with a long gap before the next start;
 *   - one node is restarted in place (SIGTERM, then started again on the same port) every 90 s;
 *   - tablets download active meetings from random nodes, and again at once after a token change.
 * Every complete body is checked against the builds the master made (sha256 of its build bytes):
 * a body of no build of that meeting, or of a build that a token change had replaced more than
 * --late-s before the request, is a wrong body. Prints a table; exit 1 on a wrong body.
 * Everything on loopback.
 */
import { createHash, randomInt } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createReferenceMaster } from '../reference-master/master.ts';
import { newSiteKey } from '../src/site/site-key.ts';
import { loopbackConfig } from './lib/loopback-config.ts';
import { parseOptions } from './lib/script-options.ts';
import { spawnNode, waitUntil, type ChildNode } from './lib/site-faults.ts';

const USAGE = `Usage: npx tsx scripts/site-soak.ts [--minutes 7] [--tablets 8] [--meetings 4] [--package-kb 4096]
                                    [--rate-mbps 2] [--late-s 10] [--restart-every-s 90] [--churn-every-s 12] [--keep-logs]

Three nodes of one site under churn (meetings started, ended, restarted with and without a gap, a
node restarted every 90 s) against the reference master; tablets check every body against the
master's builds. Exit 1 on a wrong body (no build, or an older build served later than --late-s
after the token change that replaced it).`;

const { values: args } = parseOptions(
  () =>
    parseArgs({
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        minutes: { type: 'string', default: '7' },
        tablets: { type: 'string', default: '8' },
        meetings: { type: 'string', default: '4' },
        'package-kb': { type: 'string', default: '4096' },
        'rate-mbps': { type: 'string', default: '2' },
        'late-s': { type: 'string', default: '10' },
        'restart-every-s': { type: 'string', default: '90' },
        'churn-every-s': { type: 'string', default: '12' },
        'keep-logs': { type: 'boolean', default: false },
      },
    }),
  USAGE,
);
const durationMs = Number(args.minutes) * 60_000;
const tabletCount = Number(args.tablets);
const packageBytes = Number(args['package-kb']) * 1024;
const rate = Number(args['rate-mbps']) * 1e6;
const lateMs = Number(args['late-s']) * 1000;
const restartEveryMs = Number(args['restart-every-s']) * 1000;
const churnEveryMs = Number(args['churn-every-s']) * 1000;
const MEETINGS = Array.from({ length: Number(args.meetings) }, (_, i) => `churn-${i + 1}`);
const NODE_COUNT = 3;

/** The master's token changed: when, and each meeting's build (sha256) the master served then (null: not active). */
interface TokenEvent {
  at: number;
  current: Map<string, string | null>;
}

/** One tablet request: where, when, and what came back. */
interface Download {
  meetingId: string;
  node: number;
  at: number;
  status: number;
  retryAfter: boolean;
  /** sha256 of a complete body, null when the body was cut or there was none. */
  sha: string | null;
  complete: boolean;
  error: string | null;
}

function download(port: number, meetingId: string): Promise<Omit<Download, 'meetingId' | 'node' | 'at'>> {
  return new Promise((resolve) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: 'GET', path: `/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package`, agent: false, timeout: 120_000 },
      (res) => {
        const hash = createHash('sha256');
        res.on('data', (chunk: Buffer) => hash.update(chunk));
        res.on('error', () => {});
        res.on('close', () =>
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] !== undefined, sha: res.complete ? hash.digest('hex') : null, complete: res.complete, error: null }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 120 s')));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ status: 0, retryAfter: false, sha: null, complete: false, error: error.code ?? error.message }));
    req.end();
  });
}

async function main(): Promise<void> {
  const loadAtStart = os.loadavg();
  const master = createReferenceMaster({ packageRateBytesPerSec: rate, requestLogLimit: 100 });
  const { port: masterPort } = await master.listen(0, '127.0.0.1');

  const tokenEvents: TokenEvent[] = [];
  let lastToken = master.token();
  const snapshot = () => new Map(MEETINGS.map((id) => [id, master.meeting(id)?.package?.sha256 ?? null]));
  /** Called on a timer and synchronously around every churn step, so a snapshot never sees a later step. */
  const checkToken = () => {
    const token = master.token();
    if (token === lastToken) return;
    lastToken = token;
    tokenEvents.push({ at: Date.now(), current: snapshot() });
  };
  const tokenTimer = setInterval(checkToken, 20);

  const root = await mkdtemp(path.join(os.tmpdir(), 'site-soak-'));
  const key = newSiteKey();
  const logs: WriteStream[] = [];
  const logPaths: string[] = [];
  const configPaths: string[] = [];
  const nodes: ChildNode[] = [];
  const restarts: Array<{ at: number; node: number; downMs: number }> = [];
  const downloads: Download[] = [];
  let churnSteps = 0;
  let failed = false;
  try {
    for (let i = 0; i < NODE_COUNT; i++) {
      const dir = await mkdtemp(path.join(root, `node-${i}-`));
      const configPath = path.join(dir, 'node_config.json');
      await writeFile(
        configPath,
        JSON.stringify(
          loopbackConfig(masterPort, {
            storage: { path: path.join(dir, 'storage') },
            // The watch and poll as shipped: the node notices starts and token changes itself.
            syncInterval: 10,
            watchInterval: 2,
            peers: { key },
            network: { retryDelay: 0.5, connectionTimeout: 2, downloadTimeout: 30 },
            logging: { fileEnabled: false, level: 'INFO' },
          }),
        ),
      );
      const logPath = path.join(dir, 'node.log');
      const log = createWriteStream(logPath, { flags: 'a' });
      logs.push(log);
      logPaths.push(logPath);
      configPaths.push(configPath);
      nodes.push(await spawnNode(configPath, (line) => log.write(`${line}\n`)));
    }
    await waitUntil('nodes registered', () => master.nodes().filter((n) => n.online).length === NODE_COUNT, 30_000);
    // Past a probe round and a heartbeat, the meetings start: every node has proved the others, so
    // the nodes' staggered start does not send each of them to the master for the first builds.
    await sleep(4_000);
    for (const id of MEETINGS) {
      master.addMeeting({ id, title: `Churn ${id}`, packageSizeBytes: packageBytes });
      await master.startMeeting(id);
    }
    checkToken();
    console.log(
      `site soak: ${args.minutes} min, ${NODE_COUNT} nodes (${nodes.map((n) => n.address).join(', ')}), ${tabletCount} tablets, ` +
        `${MEETINGS.length} meetings of ${args['package-kb']} KiB, master package stream ${rate / 1e6} MB/s; logs in ${root}`,
    );

    const started = Date.now();
    const deadline = started + durationMs;
    const running = () => Date.now() < deadline;

    const churnLoop = async () => {
      const resting = new Set<string>();
      const pending: Array<Promise<void>> = [];
      while (running()) {
        await sleep(churnEveryMs);
        if (!running()) break;
        const id = MEETINGS.filter((m) => !resting.has(m))[randomInt(MEETINGS.length - resting.size)];
        if (id === undefined) continue;
        const kind = churnSteps++ % 3;
        checkToken();
        await master.endMeeting(id);
        checkToken();
        if (kind === 0) {
          // Within the same second: the active list looks the same, only the build (and then the token) changes.
          await master.startMeeting(id);
          checkToken();
          continue;
        }
        resting.add(id);
        const gapMs = kind === 1 ? 3_000 + randomInt(5_000) : 30_000 + randomInt(20_000);
        pending.push(
          (async () => {
            // A gap past the end of the run is cut short: the start still happens, nobody waits long for it.
            await sleep(Math.min(gapMs, Math.max(0, deadline - Date.now())));
            checkToken();
            await master.startMeeting(id);
            checkToken();
            resting.delete(id);
          })(),
        );
      }
      await Promise.all(pending);
    };

    const restartLoop = async () => {
      let step = 0;
      while (running()) {
        await sleep(restartEveryMs);
        if (!running()) break;
        const i = step++ % NODE_COUNT;
        const old = nodes[i] as ChildNode;
        const at = Date.now();
        const exited = new Promise((resolve) => old.child.once('exit', resolve));
        old.child.kill('SIGTERM');
        await exited;
        logs[i]?.write(`--- soak: restarted (SIGTERM) at ${new Date().toISOString()}\n`);
        // Same port: a real node keeps its address over a restart.
        nodes[i] = await spawnNode(configPaths[i] as string, (line) => logs[i]?.write(`${line}\n`), old.port);
        restarts.push({ at, node: i, downMs: Date.now() - at });
      }
    };

    const tablet = async () => {
      let seen = tokenEvents.length;
      while (running()) {
        const active = MEETINGS.filter((id) => master.meeting(id)?.active);
        if (active.length === 0) {
          await sleep(200);
          continue;
        }
        const meetingId = active[randomInt(active.length)] as string;
        const node = randomInt(NODE_COUNT);
        const at = Date.now();
        downloads.push({ meetingId, node, at, ...(await download((nodes[node] as ChildNode).port, meetingId)) });
        // Next download after a pause, or at once (a tablet's jitter) when the token changes.
        const until = Date.now() + 500 + randomInt(1_500);
        while (running() && Date.now() < until && tokenEvents.length === seen) await sleep(25);
        if (tokenEvents.length !== seen) {
          seen = tokenEvents.length;
          await sleep(randomInt(300));
        }
      }
    };

    const progressLoop = async () => {
      while (running()) {
        await sleep(30_000);
        const bodies = downloads.filter((d) => d.sha !== null).length;
        console.log(`${String(Math.round((Date.now() - started) / 1000)).padStart(4)} s  bodies ${bodies}  token changes ${tokenEvents.length}  churn steps ${churnSteps}  restarts ${restarts.length}  load ${os.loadavg()[0]!.toFixed(2)}`);
      }
    };

    await Promise.all([churnLoop(), restartLoop(), progressLoop(), ...Array.from({ length: tabletCount }, tablet)]);
    checkToken();
    const elapsedS = (Date.now() - started) / 1000;

    // Judge every body against the builds the master made (oldest first) and the token history.
    const stats = master.stats();
    const builds = stats.packageBuilds;
    const buildIndex = new Map(builds.map((b, i) => [b.sha256, i]));
    /** When a token change first showed a newer build of the meeting than this one. */
    const supersededAt = (meetingId: string, index: number): number | null => {
      for (const event of tokenEvents) {
        const sha = event.current.get(meetingId);
        if (sha && (buildIndex.get(sha) ?? -1) > index) return event.at;
      }
      return null;
    };
    const wrong: Array<Download & { why: string }> = [];
    let olderBodies = 0;
    let olderLaterThan2s = 0;
    let windowMs = 0;
    const bodies = downloads.filter((d) => d.sha !== null && d.status === 200);
    for (const d of bodies) {
      const index = buildIndex.get(d.sha as string);
      const build = index === undefined ? undefined : builds[index];
      if (index === undefined || build?.meetingId !== d.meetingId) {
        wrong.push({ ...d, why: build ? `a build of ${build.meetingId}` : 'bytes of no build' });
        continue;
      }
      const replaced = supersededAt(d.meetingId, index);
      if (replaced === null || d.at <= replaced) continue;
      olderBodies++;
      windowMs = Math.max(windowMs, d.at - replaced);
      if (d.at - replaced > 2_000) olderLaterThan2s++;
      if (d.at - replaced > lateMs) wrong.push({ ...d, why: `build ${build.buildId}, replaced by the token change ${((d.at - replaced) / 1000).toFixed(1)} s before the request` });
    }
    const count = (pick: (d: Download) => boolean) => downloads.filter(pick).length;
    const noConnection = new Map<string, number>();
    for (const d of downloads) if (d.error) noConnection.set(d.error, (noConnection.get(d.error) ?? 0) + 1);
    const serverErrors = downloads.filter((d) => d.status >= 500 && !(d.status === 503 && d.retryAfter));
    const builtBytes = builds.reduce((sum, b) => sum + b.size, 0);
    const pulledBuilds = builds.filter((b) => (stats.packageBytesByBuild[b.buildId] ?? 0) > 0);
    const pulledTwice = pulledBuilds.filter((b) => (stats.packageBytesByBuild[b.buildId] ?? 0) > 1.5 * b.size).length;

    const rows: Array<[string, string, string]> = [
      ['complete bodies (per node)', `${bodies.length} (${Array.from({ length: NODE_COUNT }, (_, i) => bodies.filter((d) => d.node === i).length).join(' / ')})`, ''],
      ['wrong bodies: no build / older build later than the limit', `${wrong.filter((w) => !w.why.startsWith('build ')).length} / ${wrong.filter((w) => w.why.startsWith('build ')).length}`, `0 / 0 (limit ${lateMs / 1000} s)`],
      ['older-build bodies after a token change: all / later than 2 s', `${olderBodies} / ${olderLaterThan2s}`, '– / 0 (issue 18 §3)'],
      ['token change → last older-build body', olderBodies === 0 ? 'none after one' : `${(windowMs / 1000).toFixed(2)} s`, `≤ ${lateMs / 1000} s`],
      ['errors ≥ 500 (503 + Retry-After apart)', `${serverErrors.length}${serverErrors.length ? ` (${[...new Set(serverErrors.map((d) => d.status))].join(', ')})` : ''}`, '0'],
      ['503 + Retry-After / 404 / cut bodies / no connection', `${count((d) => d.status === 503 && d.retryAfter)} / ${count((d) => d.status === 404)} / ${count((d) => d.status === 200 && !d.complete)} / ${count((d) => d.status === 0)}${noConnection.size ? ` (${[...noConnection].map(([code, n]) => `${code} ${n}`).join(', ')})` : ''}`, ''],
      ['master package bytes ÷ bytes of builds made', (stats.packageBytesSent / Math.max(1, builtBytes)).toFixed(2), '≤ 1.1'],
      ['master package bytes ÷ bytes of the builds pulled at all', (stats.packageBytesSent / Math.max(1, pulledBuilds.reduce((sum, b) => sum + b.size, 0))).toFixed(2), ''],
      ['builds made / pulled / pulled more than 1.5×', `${builds.length} / ${pulledBuilds.length} / ${pulledTwice}`, ''],
      ['token changes / churn steps / node restarts (longest down)', `${tokenEvents.length} / ${churnSteps} / ${restarts.length} (${(Math.max(0, ...restarts.map((r) => r.downMs)) / 1000).toFixed(1)} s)`, ''],
    ];
    console.log(`\nsite soak figures (${elapsedS.toFixed(0)} s; load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end)`);
    console.log('| figure | measured | target |');
    console.log('|---|---|---|');
    for (const row of rows) console.log(`| ${row.join(' | ')} |`);
    for (const w of wrong.slice(0, 20)) {
      console.log(`WRONG BODY: ${w.meetingId} from node ${w.node} (${nodes[w.node]?.address}, log ${logPaths[w.node]}) requested at ${new Date(w.at).toISOString()}: ${w.why}`);
    }
    failed = wrong.length > 0;
    console.log(`verdict: ${failed ? `FAIL: ${wrong.length} wrong bodies` : 'OK: no wrong body'}`);
    process.exitCode = failed ? 1 : 0;
  } finally {
    clearInterval(tokenTimer);
    for (const n of nodes) n.child.kill('SIGTERM');
    await Promise.all(nodes.map((n) => (n.child.exitCode === null ? new Promise((resolve) => n.child.once('exit', resolve)) : null)));
    await Promise.all(logs.map((log) => new Promise((resolve) => log.end(resolve))));
    await master.close();
    if (failed || args['keep-logs'] || process.exitCode === undefined) console.log(`node logs kept in ${root}`);
    else await rm(root, { recursive: true, force: true });
  }
}

await main();
