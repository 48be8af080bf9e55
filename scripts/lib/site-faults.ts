/**
 * The site tier under the two faults of issue 18, for `npm run simulate -- --site`:
 *   - a seed frozen mid-stream (SIGSTOP of a node running in its own process, as a stalled disk or
 *     a paused VM): how long until every other node serves the master's bytes, what the master
 *     sent for the build, and how long the seed takes to serve once it runs again;
 *   - a rogue in the master's open registry (no site key) serving, for the meeting it wins, a
 *     valid zip whose README.txt is the master's and whose documents are changed, ETag its own
 *     sha256: how many forged copies the nodes serve (target 0).
 * Everything on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createReferenceMaster } from '../../reference-master/master.ts';
import { EdgeNode } from '../../src/edge-node.ts';
import { MemoryLogger } from '../../src/log/memory-logger.ts';
import { pickSeed } from '../../src/site/rendezvous.ts';
import { newSiteKey } from '../../src/site/site-key.ts';
import { forgePackage } from './forgery.ts';
import { loopbackConfig } from './loopback-config.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ADMIN_TOKEN = 'simulate-site-faults-admin-token';

export interface FaultOptions {
  sizeBytes: number;
  /** The master's package stream, bytes per second, shared by every download. */
  rate: number;
  root: string;
  /** The share of the package the seed has received when it is frozen. */
  freezeAt: number;
  trace: (who: string, line: string) => void;
}

export interface FrozenSeedRun {
  /** From the freeze to the last other node serving the master's bytes. */
  othersServeAfterFreezeMs: number;
  /** From the meeting's start to the same moment. */
  othersServeMs: number;
  /** Master bytes of the build ÷ package size, while the seed was frozen (until the others serve). */
  perBuildWhileFrozen: number;
  /** Once it runs again: until the seed serves the master's bytes itself. */
  seedServesAfterResumeMs: number | null;
  /** Master bytes of the build ÷ package size, at the end (the resumed seed included). */
  perBuild: number;
  handovers: number;
  /** Package bytes the other two received from siblings ÷ package size (2.00: each got it once). */
  peerPerBuild: number;
  /** Bytes they kept of an abandoned seed's package instead of fetching them again. */
  resumedBytes: number;
}

export interface RogueRun {
  forgedServed: number;
  rogueRequests: number;
  perBuild: number;
  allServeMs: number;
  notOfSite: number;
}

export interface ChildNode {
  child: ChildProcess;
  port: number;
  address: string;
  url: string;
}

export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(stepMs);
  }
}

/** A node in its own process (scripts/lib/run-node.ts); `port` 0 takes a free one. Resolves once it listens. */
export function spawnNode(configPath: string, trace: (line: string) => void, port = 0): Promise<ChildNode> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/lib/run-node.ts'), `--port=${port}`, configPath], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    for (const line of text.split('\n')) if (line) trace(line);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('a node process did not start within 30 s')), 30_000);
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      const match = /^READY (\d+)$/m.exec(out);
      if (match) {
        clearTimeout(timer);
        const port = Number(match[1]);
        resolve({ child, port, address: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` });
      }
    });
    child.once('exit', (code) => reject(new Error(`a node process exited (${code}) before it listened`)));
  });
}

/** The sha256 the node serves for a meeting now (HEAD, its ETag), or null (not yet, or no answer within 1 s). */
async function servedSha(url: string, meetingId: string): Promise<string | null> {
  try {
    const res = await fetch(`${url}/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package`, { method: 'HEAD', signal: AbortSignal.timeout(1_000) });
    return res.status === 200 ? (res.headers.get('etag')?.replaceAll('"', '') ?? null) : null;
  } catch {
    return null;
  }
}

export async function frozenSeedRun(options: FaultOptions): Promise<FrozenSeedRun> {
  const master = createReferenceMaster({ packageRateBytesPerSec: options.rate, tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 3_000 });
  const { port } = await master.listen(0, '127.0.0.1');
  const key = newSiteKey();
  const nodes: ChildNode[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const dir = await mkdtemp(path.join(options.root, `frozen-${i}-`));
      const configPath = path.join(dir, 'node_config.json');
      // The watch (every second) notices the start; the product's idle timeout (300 s) stays.
      const config = loopbackConfig(port, { adminToken: ADMIN_TOKEN, syncInterval: 3600, watchInterval: 1, peers: { key }, network: { retryDelay: 0.2, connectionTimeout: 2, downloadTimeout: 300 } });
      await writeFile(configPath, JSON.stringify(config));
      nodes.push(await spawnNode(configPath, (line) => options.trace(`node${i}`, line)));
    }
    await waitUntil('nodes registered', () => master.nodes().filter((n) => n.online).length === 3, 20_000);
    // Past a probe round and a heartbeat: every node has read the list and proved the others.
    await sleep(4_000);
    const addresses = nodes.map((n) => n.address);
    const id = 'frozen-seed';
    const seed = nodes.find((n) => n.address === pickSeed(id, addresses)) as ChildNode;
    const others = nodes.filter((n) => n !== seed);
    master.addMeeting({ id, title: 'Frozen seed', packageSizeBytes: options.sizeBytes });
    await master.startMeeting(id);
    const build = master.meeting(id)?.package;
    if (!build) throw new Error('no build');
    master.resetStats();
    const started = Date.now();
    const sent = () => master.stats().packageBytesByBuild[build.buildId] ?? 0;
    await waitUntil('the seed has part of the package', () => sent() >= options.freezeAt * build.size, 120_000, 10);
    seed.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    options.trace('sim', `seed ${seed.address} frozen after ${sent()} bytes`);
    const serving = new Set<ChildNode>();
    await waitUntil(
      'every other node serves the master\'s bytes',
      async () => {
        for (const n of others) if (!serving.has(n) && (await servedSha(n.url, id)) === build.sha256) serving.add(n);
        return serving.size === others.length;
      },
      300_000,
      100,
    );
    const othersServedAt = Date.now();
    const perBuildWhileFrozen = sent() / build.size;
    seed.child.kill('SIGCONT');
    const resumedAt = Date.now();
    let seedServesAfterResumeMs: number | null = null;
    try {
      await waitUntil('the resumed seed serves the master\'s bytes', async () => (await servedSha(seed.url, id)) === build.sha256, 120_000, 100);
      seedServesAfterResumeMs = Date.now() - resumedAt;
    } catch {
      seedServesAfterResumeMs = null;
    }
    let handovers = 0;
    let peerBytes = 0;
    let resumedBytes = 0;
    for (const n of others) {
      const status = (await (await fetch(`${n.url}/api/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
        site: { handovers: number; fetched_bytes: { peer: number }; resumed_bytes?: number };
      };
      handovers += status.site.handovers;
      peerBytes += status.site.fetched_bytes.peer;
      resumedBytes += status.site.resumed_bytes ?? 0;
    }
    return {
      othersServeAfterFreezeMs: othersServedAt - frozenAt,
      othersServeMs: othersServedAt - started,
      perBuildWhileFrozen,
      seedServesAfterResumeMs,
      perBuild: sent() / build.size,
      handovers,
      peerPerBuild: peerBytes / build.size,
      resumedBytes,
    };
  } finally {
    for (const n of nodes) {
      n.child.kill('SIGCONT');
      n.child.kill('SIGKILL');
    }
    await master.close();
  }
}

export async function rogueRun(options: FaultOptions): Promise<RogueRun> {
  const master = createReferenceMaster({ packageRateBytesPerSec: options.rate, tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 3_000 });
  const { port } = await master.listen(0, '127.0.0.1');
  const key = newSiteKey();
  let forged: Buffer = Buffer.alloc(0);
  let rogueRequests = 0;
  const rogue = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/api/edge/v1/health')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, proof: null }));
      return;
    }
    rogueRequests++;
    if (url.includes('/download-package') && forged.length > 0) {
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': forged.length, etag: `"${createHash('sha256').update(forged).digest('hex')}"` });
      res.end(req.method === 'HEAD' ? undefined : forged);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => rogue.listen(0, '127.0.0.1', resolve));
  const rogueAddress = `127.0.0.1:${(rogue.address() as AddressInfo).port}`;
  const nodes: EdgeNode[] = [];
  try {
    // Anyone who reaches the master can do this.
    await fetch(`http://127.0.0.1:${port}/api/v1/nodes/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ node_id: 'rogue', address: rogueAddress, status: 'online' }),
    });
    for (let i = 0; i < 3; i++) {
      const dir = await mkdtemp(path.join(options.root, `rogue-${i}-`));
      const configPath = path.join(dir, 'node_config.json');
      await writeFile(configPath, JSON.stringify(loopbackConfig(port, { syncInterval: 3600, peers: { key }, network: { retryDelay: 0.2, connectionTimeout: 2, downloadTimeout: 30 } })));
      nodes.push(await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: new MemoryLogger((line) => options.trace(`node${i}`, line)), adminToken: ADMIN_TOKEN }));
    }
    await waitUntil('nodes registered', () => master.nodes().filter((n) => n.online).length === 4, 20_000);
    await sleep(3_500);
    const addresses = [rogueAddress, ...nodes.map((n) => n.address)];
    let i = 0;
    while (pickSeed(`rogue-${i}`, addresses) !== rogueAddress) i++;
    const id = `rogue-${i}`;
    master.addMeeting({ id, title: 'Forged', packageSizeBytes: options.sizeBytes });
    await master.startMeeting(id);
    const build = master.meeting(id)?.package;
    if (!build) throw new Error('no build');
    const genuine = Buffer.from(await (await fetch(`http://127.0.0.1:${port}/api/v1/meetings/${id}/download-package`)).arrayBuffer());
    forged = await forgePackage(genuine, options.root);
    const forgedSha = createHash('sha256').update(forged).digest('hex');
    master.resetStats();
    rogueRequests = 0;
    const started = Date.now();
    await Promise.all(nodes.map((node) => node.syncNow()));
    await waitUntil('every node holds a package', () => nodes.every((node) => node.sync.isServable(id)), 120_000);
    const allServeMs = Date.now() - started;
    let forgedServed = 0;
    for (const node of nodes) {
      const body = Buffer.from(await (await fetch(`${node.localUrl}/api/v1/meetings/${id}/download-package`)).arrayBuffer());
      if (createHash('sha256').update(body).digest('hex') === forgedSha) forgedServed++;
    }
    const notOfSite = nodes.filter((node) => node.site.health.view().some((m) => m.address === rogueAddress && m.proof === 'refused')).length;
    return { forgedServed, rogueRequests, perBuild: (master.stats().packageBytesByBuild[build.buildId] ?? 0) / build.size, allServeMs, notOfSite };
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    rogue.closeAllConnections();
    await new Promise<void>((resolve) => rogue.close(() => resolve()));
    await master.close();
  }
}

export interface TokenWindowRun {
  /** From the token change to the start of the last response that carried the previous build (ms; ≤ 0: none after it). */
  windowMs: number;
  /** Responses with the previous build's bytes that started more than 2 s after the token change. */
  lateOldBodies: number;
  bodies: number;
  /** Bodies that were neither build (cut or corrupt): must be 0. */
  wrongBodies: number;
  perBuild: number;
}

/**
 * A meeting restarted within one second (ended and started: the active list looks the same, the
 * build and then the token change) while a tablet per node keeps downloading it: how long after
 * the token change an older build is still served.
 */
export async function tokenWindowRun(options: FaultOptions): Promise<TokenWindowRun> {
  const master = createReferenceMaster({ packageRateBytesPerSec: options.rate, tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 3_000 });
  const { port } = await master.listen(0, '127.0.0.1');
  const key = newSiteKey();
  const nodes: EdgeNode[] = [];
  let tablets = true;
  const tabletLoops: Array<Promise<void>> = [];
  try {
    for (let i = 0; i < 3; i++) {
      const dir = await mkdtemp(path.join(options.root, `window-${i}-`));
      const configPath = path.join(dir, 'node_config.json');
      // The watch as shipped (every 2 s); polls left to it.
      await writeFile(configPath, JSON.stringify(loopbackConfig(port, { syncInterval: 3600, watchInterval: 2, peers: { key }, network: { retryDelay: 0.2, connectionTimeout: 2, downloadTimeout: 30 } })));
      nodes.push(await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: new MemoryLogger((line) => options.trace(`node${i}`, line)), adminToken: ADMIN_TOKEN }));
    }
    await waitUntil('nodes registered', () => master.nodes().filter((n) => n.online).length === 3, 20_000);
    await sleep(3_500);
    const id = 'restarted';
    master.addMeeting({ id, title: 'Restarted', packageSizeBytes: options.sizeBytes });
    await master.startMeeting(id);
    const first = master.meeting(id)?.package;
    if (!first) throw new Error('no build');
    await Promise.all(nodes.map((node) => node.syncNow()));
    await waitUntil('every node holds the first build', () => nodes.every((node) => node.store.get(id)?.sha256 === first.sha256), 120_000);
    await sleep(1_100);
    const records: Array<{ at: number; sha: string | null }> = [];
    for (const node of nodes) {
      tabletLoops.push(
        (async () => {
          while (tablets) {
            const at = Date.now();
            try {
              const res = await fetch(`${node.localUrl}/api/v1/meetings/${id}/download-package`, { signal: AbortSignal.timeout(120_000) });
              const body = Buffer.from(await res.arrayBuffer());
              if (res.status === 200) records.push({ at, sha: createHash('sha256').update(body).digest('hex') });
            } catch {
              records.push({ at, sha: null });
            }
            await sleep(100);
          }
        })(),
      );
    }
    await sleep(1_000);
    const tokenBefore = master.token();
    master.resetStats();
    await master.endMeeting(id);
    await master.startMeeting(id);
    const second = master.meeting(id)?.package;
    if (!second) throw new Error('no second build');
    await waitUntil('the token changed', () => master.token() !== tokenBefore, 60_000, 10);
    const changedAt = Date.now();
    options.trace('sim', 'token changed');
    await waitUntil('every node holds the new build', () => nodes.every((node) => node.store.get(id)?.sha256 === second.sha256), 120_000);
    await sleep(2_000);
    tablets = false;
    await Promise.all(tabletLoops);
    const old = records.filter((r) => r.sha === first.sha256);
    const lastOld = Math.max(...old.map((r) => r.at), 0);
    return {
      windowMs: lastOld - changedAt,
      lateOldBodies: old.filter((r) => r.at > changedAt + 2_000).length,
      bodies: records.length,
      wrongBodies: records.filter((r) => r.sha !== first.sha256 && r.sha !== second.sha256).length,
      perBuild: (master.stats().packageBytesByBuild[second.buildId] ?? 0) / second.size,
    };
  } finally {
    tablets = false;
    await Promise.all(tabletLoops).catch(() => {});
    await Promise.all(nodes.map((node) => node.stop()));
    await master.close();
  }
}
