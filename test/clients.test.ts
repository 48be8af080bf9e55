/**
 * 1,000 concurrent tablets against a node running as its own process: fast readers, slow
 * readers, clients that abort mid-body and dead clients that stop reading. Every complete body is
 * the package; the node's open fds return to their baseline afterwards (no leak); its peak RSS
 * stays bounded; and the per-response idle timeout closes the dead connections.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import {
  cleanupStack,
  fetchRaw,
  masterSha,
  packageUrl,
  removeDir,
  spawnNodeProcess,
  startMaster,
  tempDir,
  testConfig,
  waitFor,
  type NodeProcess,
} from './helpers.ts';

const MiB = 1024 * 1024;
const CLIENTS = { fast: 650, slow: 150, aborting: 150, dead: 50 };
/** The node's peak resident memory may not exceed this while serving all of them. */
const RSS_LIMIT = 400 * MiB;

async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** What each open descriptor of a process is (a path, or `socket:[inode]`). */
async function fdTargets(pid: number): Promise<string[]> {
  const targets = await Promise.all((await readdir(`/proc/${pid}/fd`)).map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return targets.filter(Boolean);
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

type Kind = keyof typeof CLIENTS;

interface ClientResult {
  kind: Kind;
  status: number;
  bytes: number;
  sha: string | null;
  complete: boolean;
  error: string | null;
}

/**
 * One tablet. fast: reads everything. slow: reads in bursts with pauses. aborting: goes away after
 * `abortAfter` body bytes.
 */
function tablet(url: string, kind: Exclude<Kind, 'dead'>, abortAfter: number): Promise<ClientResult> {
  return new Promise((resolve) => {
    const result: ClientResult = { kind, status: 0, bytes: 0, sha: null, complete: false, error: null };
    const hash = createHash('sha256');
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const req = httpRequest(url, { agent: false }, (res) => {
      result.status = res.statusCode ?? 0;
      res.on('error', (error) => {
        result.error = error.message;
      });
      res.on('close', () => {
        result.complete = res.complete;
        if (result.complete) result.sha = hash.digest('hex');
        finish();
      });
      res.on('data', (chunk: Buffer) => {
        result.bytes += chunk.length;
        hash.update(chunk);
        if (kind === 'aborting' && result.bytes >= abortAfter) {
          req.destroy();
          return;
        }
        if (kind === 'slow') {
          res.pause();
          setTimeout(() => res.resume(), 20).unref();
        }
      });
    });
    req.on('error', (error) => {
      if (kind === 'aborting' && req.destroyed && result.bytes >= abortAfter) return finish();
      result.error = error.message;
      finish();
    });
    req.end();
  });
}

/**
 * A tablet that takes the headers and never reads a byte of the body (it crashed, or its Wi-Fi
 * went). It cannot tell when the node gives up on it: the node's FIN waits behind the data the
 * tablet never reads. What shows it is the node's side: its socket and file fds go away.
 */
function deadTablet(url: string): Promise<{ status: number; destroy(): void }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.pause();
      res.on('error', () => {});
      resolve({ status: res.statusCode ?? 0, destroy: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

test('1,000 concurrent downloads with slow, aborting and dead clients: correct bodies, no fd leak, bounded memory, dead connections closed', { timeout: 240_000 }, async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm-small', title: 'Small', packageSizeBytes: MiB / 2 });
  // Larger than the loopback socket buffers, so a client that stops reading really stalls the send.
  m.master.addMeeting({ id: 'm-big', title: 'Big', packageSizeBytes: 24 * MiB });
  await m.master.startMeeting('m-small');
  await m.master.startMeeting('m-big');
  const smallSha = masterSha(m.master, 'm-small');
  const bigSha = masterSha(m.master, 'm-big');

  const dir = await tempDir('edge-clients-');
  defer(() => removeDir(dir));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(configPath, JSON.stringify(testConfig(m.port, { syncInterval: 3600, heartbeat: { interval: 300 } }), null, 2));
  const node: NodeProcess = await spawnNodeProcess(configPath);
  defer(async () => {
    if (node.child.exitCode === null && node.child.signalCode === null) {
      node.child.kill('SIGKILL');
      await node.exited;
    }
  });
  const pid = node.child.pid!;

  // Both synced, and one download of each served: the baseline includes warmed-up lazy state.
  await waitFor(
    'm-small served',
    async () => {
      const res = await fetchRaw(packageUrl(node.url, 'm-small'));
      return res.status === 200 && createHash('sha256').update(res.body).digest('hex') === smallSha;
    },
    30_000,
    200,
  );
  await waitFor('m-big synced', async () => (await fetchRaw(packageUrl(node.url, 'm-big'), { headers: { range: 'bytes=0-0' } })).status === 206, 30_000, 200);
  await sleep(200);
  const fdsBefore = await openFds(pid);
  const memBefore = await memory(pid);

  const kinds: Array<Exclude<Kind, 'dead'>> = [];
  for (const kind of ['fast', 'slow', 'aborting'] as const) for (let i = 0; i < CLIENTS[kind]; i++) kinds.push(kind);
  let peakFds = 0;
  let sampling = true;
  defer(() => {
    sampling = false;
  });
  const sampler = (async () => {
    while (sampling) {
      peakFds = Math.max(peakFds, await openFds(pid).catch(() => 0));
      await sleep(50);
    }
  })();
  const started = Date.now();
  const deadClients = Array.from({ length: CLIENTS.dead }, () => deadTablet(packageUrl(node.url, 'm-big')));
  defer(async () => {
    for (const dead of await Promise.allSettled(deadClients)) if (dead.status === 'fulfilled') dead.value.destroy();
  });
  const done = new Map<Kind, number>();
  const progress = setInterval(() => {
    if (process.env.EDGE_TEST_LOG) console.error(`[clients] ${((Date.now() - started) / 1000).toFixed(0)} s: done ${JSON.stringify(Object.fromEntries(done))}`);
  }, 2_000);
  const results = await Promise.all(
    kinds.map((kind, i) =>
      tablet(packageUrl(node.url, 'm-small'), kind, 1 + ((i * 7919) % (MiB / 4))).then((r) => {
        done.set(kind, (done.get(kind) ?? 0) + 1);
        return r;
      }),
    ),
  );
  clearInterval(progress);
  const dead = await Promise.all(deadClients);
  const seconds = (Date.now() - started) / 1000;

  const byKind = (kind: Kind) => results.filter((r) => r.kind === kind);
  for (const r of [...byKind('fast'), ...byKind('slow')]) {
    assert.equal(r.status, 200, `${r.kind}: status (${r.error ?? ''})`);
    assert.ok(r.complete, `${r.kind}: complete body (${r.error ?? ''}, ${r.bytes} bytes)`);
    assert.equal(r.sha, smallSha, `${r.kind}: the package's bytes`);
  }
  for (const r of byKind('aborting')) {
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'an aborting client went away before the end');
  }
  for (const d of dead) assert.equal(d.status, 200);
  // The dead tablets still hold their connections open; each pins a socket on the node, and all
  // of them one descriptor of the package they were sent (shared by every response sending it).
  const fdsWithDead = await openFds(pid);
  const targets = await fdTargets(pid);
  const sockets = targets.filter((target) => target.startsWith('socket:')).length;
  assert.ok(sockets >= CLIENTS.dead, `the dead connections are open on the node (${sockets} sockets, ${fdsWithDead} fds)`);
  const bigPackageFds = targets.filter((target) => target.includes('meeting_m-big')).length;
  assert.equal(bigPackageFds, 1, `one descriptor of the package for all ${CLIENTS.dead} dead connections (${bigPackageFds})`);

  // The node's per-response idle timeout (30 s) closes them: its fds return to the baseline
  // although no dead tablet ever closed its side.
  const fdsAfter = await waitFor(
    'the node\'s open fds to return to the baseline',
    async () => {
      const count = await openFds(pid);
      return count <= fdsBefore + 2 ? count : null;
    },
    90_000,
    250,
  ).catch(async () => openFds(pid));
  const deadClosedAfter = (Date.now() - started) / 1000;
  sampling = false;
  await sampler;
  const memAfter = await memory(pid);
  t.diagnostic(
    `${kinds.length + CLIENTS.dead} clients; the live ones done in ${seconds.toFixed(1)} s, the dead ones closed by the node after ${deadClosedAfter.toFixed(0)} s; ` +
      `node fds: ${fdsBefore} before, peak ${peakFds}, ${fdsWithDead} with the dead connections, ${fdsAfter} after; ` +
      `node RSS: ${(memBefore.rss / MiB).toFixed(0)} MiB before, peak ${(memAfter.peak / MiB).toFixed(0)} MiB, ${(memAfter.rss / MiB).toFixed(0)} MiB after`,
  );
  assert.ok(peakFds >= fdsBefore + 100, `the clients were really concurrent (peak ${peakFds} fds)`);
  assert.ok(fdsAfter <= fdsBefore + 2, `no fd leak and dead connections closed: ${fdsBefore} before, ${fdsAfter} after`);
  assert.ok(memAfter.peak < RSS_LIMIT, `peak RSS ${(memAfter.peak / MiB).toFixed(0)} MiB < ${RSS_LIMIT / MiB} MiB`);

  // Still serving normally.
  const res = await fetchRaw(packageUrl(node.url, 'm-small'));
  assert.equal(res.status, 200);
  assert.equal(createHash('sha256').update(res.body).digest('hex'), smallSha);
  const big = await fetchRaw(packageUrl(node.url, 'm-big'), { headers: { range: 'bytes=0-0' } });
  assert.equal(big.headers.etag, `"${bigSha}"`);
});
