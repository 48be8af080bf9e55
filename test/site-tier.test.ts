/**
 * The site tier (issue 12 §2, §4): several nodes of one site on loopback, one reference master.
 * Each build leaves the master once per site; a sibling that fails or lies is never promoted and
 * the download goes to the master; nodes that take each other for the seed do not loop.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EdgeNodeOptions } from '../src/edge-node.ts';
import { pickSeed } from '../src/site/rendezvous.ts';
import { SIGNATURE_HEADER } from '../src/site/wire.ts';
import { buildIdentity } from '../src/store/zip-lead.ts';
import { forgePackage } from '../scripts/lib/forgery.ts';
import {
  cleanupStack,
  fetchRaw,
  masterPackageBytes,
  masterSha,
  nodeStatus,
  packageUrl,
  removeDir,
  settleSite,
  sha256Hex,
  spawnNodeProcess,
  killProcess,
  startMaster,
  startNode,
  tempDir,
  testConfig,
  TEST_SITE_KEY,
  waitFor,
  type TestMaster,
  type TestNode,
} from './helpers.ts';
import { writeFile } from 'node:fs/promises';
import { signPackage, startFakePeer } from './site-fakes.ts';
import path from 'node:path';

const SITE: EdgeNodeOptions['site'] = { notFoundRetryMs: 3_000, busyRetryMs: 8_000, buildAskTimeoutMs: 5_000, membersMaxAgeMs: 0 };

/** Every node of these sites holds the key. */
const KEYED = { peers: { key: TEST_SITE_KEY } };

async function startSite(t: Parameters<typeof cleanupStack>[0], count: number, masterOptions = {}, config: Record<string, unknown> = {}) {
  const cleanup = cleanupStack(t);
  const m = await startMaster(masterOptions);
  cleanup(() => m.close());
  const nodes: TestNode[] = [];
  for (let i = 0; i < count; i++) {
    const n = await startNode(m.port, { config: { ...KEYED, ...config }, node: { site: SITE } });
    cleanup(async () => {
      await n.stop();
      await removeDir(n.dir);
    });
    nodes.push(n);
  }
  await waitFor('every node registered', () => m.master.nodes().filter((n) => n.online).length === count);
  await settleSite(nodes);
  return { m, nodes, cleanup };
}

/** A meeting id whose seed among `members` is `seed`. */
function idSeededBy(seed: string, members: string[], prefix = 'site'): string {
  for (let i = 0; i < 10_000; i++) if (pickSeed(`${prefix}-${i}`, members) === seed) return `${prefix}-${i}`;
  throw new Error('no such id');
}

function bytesOfBuild(m: TestMaster, meetingId: string): number {
  const build = m.master.meeting(meetingId)?.package?.buildId;
  assert.ok(build, 'the meeting has a build');
  return m.master.stats().packageBytesByBuild[build] ?? 0;
}

async function held(n: TestNode, meetingId: string): Promise<string | null> {
  return n.node.store.get(meetingId)?.sha256 ?? null;
}

test('each build leaves the master once per site: the seed fetches it, its siblings fetch from the seed and serve the same bytes', async (t) => {
  const { m, nodes } = await startSite(t, 3, { packageRateBytesPerSec: 4_000_000 });
  const addresses = nodes.map((n) => n.node.address);
  const id = idSeededBy(addresses[0] as string, addresses);
  m.master.addMeeting({ id, title: 'Site', packageSizeBytes: 3_000_000 });
  await m.master.startMeeting(id);
  m.master.resetStats();
  await Promise.all(nodes.map((n) => n.node.syncNow()));
  const sha = masterSha(m.master, id);
  await waitFor('every node holds the package', async () => (await Promise.all(nodes.map((n) => held(n, id)))).every((s) => s === sha), 20_000);
  const size = m.master.meeting(id)?.package?.size as number;
  assert.equal(bytesOfBuild(m, id), size, 'the master sent the build once');
  for (const n of nodes.slice(1)) {
    const res = await fetchRaw(packageUrl(n.url, id));
    assert.equal(res.status, 200);
    assert.equal(sha256Hex(res.body), sha);
    const status = await nodeStatus(n.node);
    const meeting = (status.meetings as Array<Record<string, unknown>>).find((x) => x.id === id) as Record<string, unknown>;
    assert.deepEqual(meeting.source, { kind: 'peer', node: addresses[0] });
    assert.equal(meeting.seed, addresses[0]);
    const site = status.site as { fetched_bytes: { peer: number } };
    assert.ok(site.fetched_bytes.peer >= size);
  }
  const seedStatus = await nodeStatus(nodes[0]!.node);
  assert.equal((seedStatus.site as { served_bytes: { peer: number } }).served_bytes.peer, 2 * size, 'the seed served each sibling once');
});

test('seed choice: every node names the same seed for every meeting, and a node joining moves only the meetings it wins', async (t) => {
  const { m, nodes, cleanup } = await startSite(t, 3);
  const ids = Array.from({ length: 24 }, (_, i) => `pick-${i}`);
  await settleSite(nodes);
  const before = nodes.map((n) => ids.map((id) => n.node.site.seedNow(id) ?? n.node.address));
  for (const seeds of before.slice(1)) assert.deepEqual(seeds, before[0], 'all nodes agree');
  assert.ok(new Set(before[0]).size > 1, 'the meetings spread over the nodes');

  const joined = await startNode(m.port, { config: KEYED, node: { site: SITE } });
  cleanup(async () => {
    await joined.stop();
    await removeDir(joined.dir);
  });
  await waitFor('the new node registered', () => m.master.nodes().filter((n) => n.online).length === 4);
  await settleSite([...nodes, joined]);
  const after = [...nodes, joined].map((n) => ids.map((id) => n.node.site.seedNow(id) ?? n.node.address));
  for (const seeds of after.slice(1)) assert.deepEqual(seeds, after[0], 'all four agree');
  ids.forEach((id, i) => {
    if (after[0]?.[i] !== joined.node.address) assert.equal(after[0]?.[i], before[0]?.[i], `${id} keeps its seed`);
  });
  assert.ok(after[0]?.some((seed) => seed === joined.node.address), 'the new node seeds some meetings');
});

test('an unrelated token change costs the site one probe of the master per held package, from the seed only', async (t) => {
  const { m, nodes } = await startSite(t, 3, { packageRateBytesPerSec: 4_000_000 });
  const addresses = nodes.map((n) => n.node.address);
  const id = idSeededBy(addresses[1] as string, addresses);
  m.master.addMeeting({ id, title: 'Held', packageSizeBytes: 1_500_000 });
  await m.master.startMeeting(id);
  await Promise.all(nodes.map((n) => n.node.syncNow()));
  const sha = masterSha(m.master, id);
  await waitFor('every node holds the package', async () => (await Promise.all(nodes.map((n) => held(n, id)))).every((s) => s === sha), 20_000);
  await Promise.all(nodes.map((n) => n.node.syncNow()));
  m.master.addMeeting({ id: 'other', title: 'Unrelated', packageSizeBytes: 100_000 });
  await m.master.startMeeting('other');
  const tokenBefore = nodes[0]!.node.sync.lastSuccess?.token;
  await waitFor('a new token', async () => {
    await nodes[0]!.node.syncNow();
    return nodes[0]!.node.sync.lastSuccess?.token !== tokenBefore;
  }, 15_000, 200);
  m.master.resetStats();
  await Promise.all(nodes.map((n) => n.node.syncNow()));
  const token = nodes[0]!.node.sync.lastSuccess?.token;
  await waitFor('every node confirmed the package under the new token', () => nodes.every((n) => n.node.store.get(id)?.token === token), 15_000);
  const stats = m.master.stats();
  assert.equal(stats.packageDownloads[id]?.started ?? 0, 1, 'one request for the held package, by its seed');
  const probed = nodes.reduce((sum, n) => sum + n.node.sync.probeCounters.bytes, 0);
  assert.ok(probed > 0 && probed <= 64 * 1024, `the site read at most 64 KiB of the held build (${probed})`);
  assert.equal(nodes[1]!.node.sync.probeCounters.fromSeed, 0, 'the seed probed the master itself');
  for (const n of [nodes[0]!, nodes[2]!]) assert.ok(n.node.sync.probeCounters.fromSeed >= 1, 'the siblings asked the seed');
  for (const n of nodes) assert.equal(n.node.store.get(id)?.sha256, sha, 'nothing refetched');
});

test('probe different: a restarted meeting is fetched again, once for the site, and siblings never promote the old build', async (t) => {
  const { m, nodes } = await startSite(t, 2, { packageRateBytesPerSec: 4_000_000 });
  const addresses = nodes.map((n) => n.node.address);
  const id = idSeededBy(addresses[0] as string, addresses);
  m.master.addMeeting({ id, title: 'Restarts', packageSizeBytes: 1_000_000 });
  await m.master.startMeeting(id);
  await Promise.all(nodes.map((n) => n.node.syncNow()));
  const first = masterSha(m.master, id);
  await waitFor('both hold the first build', async () => (await Promise.all(nodes.map((n) => held(n, id)))).every((s) => s === first), 20_000);
  await sleep(1_100);
  await m.master.endMeeting(id);
  await m.master.startMeeting(id);
  const second = masterSha(m.master, id);
  assert.notEqual(second, first);
  m.master.resetStats();
  const tokenBefore = nodes[1]!.node.sync.lastSuccess?.token;
  await waitFor('both hold the new build', async () => {
    await Promise.all(nodes.map((n) => n.node.syncNow()));
    return (await Promise.all(nodes.map((n) => held(n, id)))).every((s) => s === second);
  }, 25_000, 300);
  assert.notEqual(nodes[1]!.node.sync.lastSuccess?.token, tokenBefore);
  const size = m.master.meeting(id)?.package?.size as number;
  // The seed's probe of the new build (cut short) and its one download; the sibling took it from the seed.
  assert.ok(bytesOfBuild(m, id) < 1.5 * size, `the new build left the master once (${bytesOfBuild(m, id)} for ${size})`);
  assert.deepEqual(nodes[1]!.node.jobs.jobs().find((j) => j.meetingId === id)?.source, { kind: 'peer', node: addresses[0] });
});

test('a restart the sibling saw and its seed missed: the sibling never takes the old build back from the seed; the new one leaves the master once', async (t) => {
  // Polls only when the test says: the seed misses the end, the sibling sees it.
  const { m, nodes } = await startSite(t, 2, { packageRateBytesPerSec: 4_000_000 }, { syncInterval: 3600, watchInterval: 0, cleanup: { enabled: true, cleanOnStartup: false, cleanEndedMeetings: false } });
  const [seed, sibling] = nodes as [TestNode, TestNode];
  const addresses = nodes.map((n) => n.node.address);
  const id = idSeededBy(seed.node.address, addresses, 'restart');
  m.master.addMeeting({ id, title: 'Restarts', packageSizeBytes: 300_000 });
  await m.master.startMeeting(id);
  const first = masterSha(m.master, id);
  await waitFor('both hold the first build under the same token', async () => {
    await seed.node.syncNow();
    await sibling.node.syncNow();
    const token = seed.node.sync.lastSuccess?.token;
    return token !== undefined && nodes.every((n) => n.node.store.get(id)?.sha256 === first && n.node.store.get(id)?.token === token && n.node.sync.lastSuccess?.token === token);
  }, 20_000, 300);
  await sleep(1_100);

  await m.master.endMeeting(id);
  await sibling.node.syncNow();
  await m.master.startMeeting(id);
  const second = masterSha(m.master, id);
  assert.notEqual(second, first);
  m.master.resetStats();
  await sibling.node.syncNow();
  await waitFor('the sibling holds the restart\'s build', () => sibling.node.store.get(id)?.sha256 === second, 20_000, 100);
  assert.equal(sibling.node.sync.isServable(id), true);
  const size = m.master.meeting(id)?.package?.size as number;
  assert.ok(bytesOfBuild(m, id) < 1.5 * size, `the new build left the master once (${bytesOfBuild(m, id)} for ${size})`);
  assert.equal(seed.node.store.get(id)?.sha256, second, 'the seed brought its own copy up to date for the sibling');
});

/** A seed in a child process and a sibling in this one, keyed alike; the meeting's seed is the child. */
async function seedChildAndSibling(t: Parameters<typeof cleanupStack>[0], network: Record<string, number>, peers: Record<string, unknown> = {}) {
  const cleanup = cleanupStack(t);
  const m = await startMaster({ packageRateBytesPerSec: 1_000_000 });
  cleanup(() => m.close());
  const dir = await tempDir();
  cleanup(() => removeDir(dir));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(configPath, JSON.stringify(testConfig(m.port, { network, peers: { key: TEST_SITE_KEY, ...peers } })));
  const seedProcess = await spawnNodeProcess(configPath);
  cleanup(() => killProcess(seedProcess));
  const sibling = await startNode(m.port, { config: { network, peers: { key: TEST_SITE_KEY, ...peers } }, node: { site: SITE } });
  cleanup(async () => {
    await sibling.stop();
    await removeDir(sibling.dir);
  });
  await waitFor('both registered', () => m.master.nodes().filter((n) => n.online).length === 2);
  await settleSite([sibling]);
  const seedAddress = `127.0.0.1:${seedProcess.port}`;
  assert.equal(sibling.node.site.health.usable(seedAddress), true, 'the child proved the key');
  return { m, seedProcess, sibling, seedAddress };
}

test('seed killed mid-stream (connection reset): the sibling hands over at once and finishes from the master with the right bytes', async (t) => {
  const { m, seedProcess, sibling, seedAddress } = await seedChildAndSibling(t, { retryDelay: 0.05, connectionTimeout: 2, downloadTimeout: 30 });
  const id = idSeededBy(seedAddress, [seedAddress, sibling.node.address], 'kill');
  m.master.addMeeting({ id, title: 'Killed seed', packageSizeBytes: 3_000_000 });
  await m.master.startMeeting(id);
  m.master.resetStats();
  await sibling.node.syncNow();
  await waitFor('the sibling streams from the seed', () => {
    const job = sibling.node.jobs.inFlight(id);
    return job && job.source.kind === 'peer' && job.bytesWritten > 200_000;
  }, 20_000);
  await killProcess(seedProcess);
  const sha = masterSha(m.master, id);
  await waitFor('the sibling holds the package', () => sibling.node.store.get(id)?.sha256 === sha, 30_000);
  const res = await fetchRaw(packageUrl(sibling.url, id));
  assert.equal(sha256Hex(res.body), sha);
  assert.equal(sibling.node.site.counters.fallbacks, 1);
  assert.equal(sibling.node.site.counters.handovers, 1, 'the seed was found gone');
  assert.equal(sibling.node.site.health.usable(seedAddress), false, 'and marked sick');
  assert.deepEqual(sibling.node.jobs.jobs().find((j) => j.meetingId === id)?.source, { kind: 'master' });
  assert.ok(sibling.logger.lines.some((line) => /seed .* is gone/.test(line)));
});

test('seed frozen mid-stream (SIGSTOP): the sibling hands over within the stall window and the probe timeout plus one stream', async (t) => {
  // downloadTimeout 60 s: without the stall watch, the sibling would wait out the idle timeout.
  const stallTimeout = 2;
  const { m, seedProcess, sibling, seedAddress } = await seedChildAndSibling(t, { retryDelay: 0.05, connectionTimeout: 2, downloadTimeout: 60 }, { stallTimeout });
  t.after(() => {
    if (seedProcess.child.exitCode === null) seedProcess.child.kill('SIGCONT');
  });
  const id = idSeededBy(seedAddress, [seedAddress, sibling.node.address], 'freeze');
  const size = 3_000_000;
  m.master.addMeeting({ id, title: 'Frozen seed', packageSizeBytes: size });
  await m.master.startMeeting(id);
  m.master.resetStats();
  await sibling.node.syncNow();
  await waitFor('the sibling streams from the seed', () => {
    const job = sibling.node.jobs.inFlight(id);
    return job && job.source.kind === 'peer' && job.bytesWritten > 200_000;
  }, 20_000);
  seedProcess.child.kill('SIGSTOP');
  const sha = masterSha(m.master, id);
  // The stall window, the health probe's timeout (1 s), one stream from the master (3 s at
  // 1 MB/s), and slack for a loaded machine: far below the idle timeout the sibling waited before.
  await waitFor('the sibling holds the package', () => sibling.node.store.get(id)?.sha256 === sha, (stallTimeout + 1 + 3) * 1000 + 15_000);
  assert.equal(sibling.node.site.counters.handovers, 1);
  assert.ok(sibling.logger.lines.some((line) => /seed .* is gone .*no byte for 2 s and no answer to its health probe/.test(line)));
  assert.deepEqual(sibling.node.jobs.jobs().find((j) => j.meetingId === id)?.source, { kind: 'master' });
  assert.equal(sha256Hex((await fetchRaw(packageUrl(sibling.url, id))).body), sha);
});

for (const kind of ['truncated', 'corrupt', 'not a zip', 'older build'] as const) {
  test(`a sibling that sends ${kind} bytes is never promoted: the node fetches from the master`, async (t) => {
    const cleanup = cleanupStack(t);
    const m = await startMaster();
    cleanup(() => m.close());
    let good: Buffer = Buffer.alloc(0);
    let old: Buffer = Buffer.alloc(0);
    let served = 0;
    const fake = await startFakePeer(t, (req, res, address) => {
      if (!req.url?.includes('download-package')) {
        res.writeHead(404).end();
        return;
      }
      served++;
      // Signed as the real package would be: a member with the key whose bytes went bad.
      const signed = (bytes: Buffer) => ({ [SIGNATURE_HEADER]: signPackage(id, bytes, address) });
      if (kind === 'truncated') {
        res.writeHead(200, { 'content-length': good.length, etag: `"${sha256Hex(good)}"`, ...signed(good) });
        res.write(good.subarray(0, good.length >> 1));
        setTimeout(() => res.destroy(), 20);
      } else if (kind === 'corrupt') {
        const bad = Buffer.from(good);
        bad.writeUInt8(bad.readUInt8(bad.length >> 1) ^ 0xff, bad.length >> 1);
        res.writeHead(200, { 'content-length': bad.length, etag: `"${sha256Hex(good)}"`, ...signed(good) });
        res.end(bad);
      } else if (kind === 'not a zip') {
        const noise = Buffer.alloc(good.length, 7);
        res.writeHead(200, { 'content-length': noise.length, etag: `"${sha256Hex(noise)}"`, ...signed(good) });
        res.end(noise);
      } else {
        res.writeHead(200, { 'content-length': old.length, etag: `"${sha256Hex(old)}"`, ...signed(old) });
        res.end(old);
      }
    });
    const n = await startNode(m.port, { config: { peers: { static: [fake.address], key: TEST_SITE_KEY } }, node: { site: SITE } });
    cleanup(async () => {
      await n.stop();
      await removeDir(n.dir);
    });
    await settleSite([n]);
    const id = idSeededBy(fake.address, [fake.address, n.node.address], kind.replace(/ /g, '-'));
    m.master.addMeeting({ id, title: 'Lying sibling', packageSizeBytes: 600_000 });
    await m.master.startMeeting(id);
    if (kind === 'older build') {
      // The node holds the first build (fetched while the tier was off); the meeting restarts.
      await n.node.updateConfig({ peers: { enabled: false } });
      await n.node.syncNow();
      await waitFor('the first build held', () => n.node.store.get(id)?.sha256 === masterSha(m.master, id));
      old = await masterPackageBytes(m.url, id);
      await n.node.updateConfig({ peers: { enabled: true } });
      await sleep(1_100);
      await m.master.endMeeting(id);
      await m.master.startMeeting(id);
    }
    good = await masterPackageBytes(m.url, id);
    const sha = masterSha(m.master, id);
    await waitFor('the node holds the master\'s bytes', async () => {
      await n.node.syncNow();
      return n.node.store.get(id)?.sha256 === sha;
    }, 20_000, 300);
    assert.ok(served >= 1, 'the sibling was asked');
    assert.equal(n.node.site.counters.fallbacks, 1, 'one fallback to the master');
    assert.equal(n.node.site.counters.peerFetches, 0, 'nothing promoted from the sibling');
    const why = { truncated: /TRUNCATED|before the end/, corrupt: /signature does not match/, 'not a zip': /not a complete zip/, 'older build': /another build|held before the meeting restarted/ }[kind];
    assert.ok(
      n.logger.lines.some((line) => /fetching from the master instead|is gone/.test(line) && why.test(line)),
      `the fallback names the cause (${why})`,
    );
    assert.equal(n.node.site.counters.securityEvents, kind === 'corrupt' ? 1 : 0, 'bytes that do not match their signature are a security event');
    const res = await fetchRaw(packageUrl(n.url, id));
    assert.equal(sha256Hex(res.body), sha);
  });
}

test('two nodes that each take the other for the seed do not loop: both end with the master\'s bytes', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster({ packageRateBytesPerSec: 3_000_000 });
  cleanup(() => m.close());
  const addresses: string[] = [];
  // Each node's view names the other as the seed of every meeting.
  const other = (self: () => string) => (_id: string, members: string[]) => members.find((a) => a !== self()) ?? null;
  const nodes: TestNode[] = [];
  for (let i = 0; i < 2; i++) {
    let me = '';
    const n = await startNode(m.port, { config: KEYED, node: { site: { ...SITE, pickSeed: other(() => me) } } });
    me = n.node.address;
    addresses.push(me);
    nodes.push(n);
    cleanup(async () => {
      await n.stop();
      await removeDir(n.dir);
    });
  }
  await waitFor('both registered', () => m.master.nodes().filter((n) => n.online).length === 2);
  await settleSite(nodes);
  m.master.addMeeting({ id: 'loop', title: 'Loop', packageSizeBytes: 2_000_000 });
  await m.master.startMeeting('loop');
  m.master.resetStats();
  await Promise.all(nodes.map((n) => n.node.syncNow()));
  const sha = masterSha(m.master, 'loop');
  await waitFor('both hold the package', () => nodes.every((n) => n.node.store.get('loop')?.sha256 === sha), 20_000);
  const size = m.master.meeting('loop')?.package?.size as number;
  assert.ok(bytesOfBuild(m, 'loop') <= 2 * size, 'no amplification: at most one master download per node');
  const peerRequests = nodes.reduce((sum, n) => sum + n.node.peerStats.requests, 0);
  assert.ok(peerRequests <= 4, `a bounded number of sibling requests (${peerRequests})`);
});

test('a probe the master cuts short is "unknown": the package is kept, served, and probed again', async (t) => {
  const { m, nodes } = await startSite(t, 1);
  const [n] = nodes as [TestNode];
  m.master.addMeeting({ id: 'cut', title: 'Cut probe', packageSizeBytes: 400_000 });
  await m.master.startMeeting('cut');
  await n.node.syncNow();
  const sha = masterSha(m.master, 'cut');
  await waitFor('held', () => n.node.store.get('cut')?.sha256 === sha);
  m.master.setFault('package', { kind: 'cutChunked', afterBytes: 100, times: 1, meetingId: 'cut' });
  m.master.addMeeting({ id: 'other', title: 'Unrelated', packageSizeBytes: 50_000 });
  await m.master.startMeeting('other');
  const before = n.node.sync.lastSuccess?.token;
  await waitFor('the new token and the cut probe', async () => {
    await n.node.syncNow();
    return n.node.sync.lastSuccess?.token !== before && n.node.sync.probeCounters.unknown === 1;
  }, 15_000, 200);
  assert.equal(n.node.store.get('cut')?.sha256, sha, 'the package is kept');
  assert.equal((await fetchRaw(packageUrl(n.url, 'cut'))).status, 200, 'and served');
  const token = n.node.sync.lastSuccess?.token;
  await waitFor('probed again and confirmed', async () => {
    await n.node.syncNow();
    return n.node.store.get('cut')?.token === token;
  }, 15_000, 300);
  assert.equal(n.node.sync.probeCounters.sameBuild >= 1, true);
  // Counted on the node: the master may have written a whole small package into the socket
  // buffers before a probe hung up, which its own counters call a completed download.
  assert.equal(n.node.jobs.fetchedBytes.master, n.node.store.get('cut')!.size + n.node.store.get('other')!.size, 'never fetched again in full');
});

test('a registered rogue without the key, serving a forgery that starts with the master\'s README, is never asked and never promoted', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster();
  cleanup(() => m.close());
  const dir = await tempDir();
  cleanup(() => removeDir(dir));
  let forged: Buffer = Buffer.alloc(0);
  let served = 0;
  const rogue = await startFakePeer(
    t,
    (req, res) => {
      if (!req.url?.includes('download-package') && !req.url?.includes('/build')) {
        res.writeHead(404).end();
        return;
      }
      served++;
      res.writeHead(200, { 'content-length': forged.length, etag: `"${sha256Hex(forged)}"` });
      res.end(forged);
    },
    () => null,
  );
  // Registered with the master's open registry, as any host that reaches it can do.
  const registered = await fetch(`${m.url}/api/v1/nodes/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ node_id: 'rogue', address: rogue.address, status: 'online' }),
  });
  assert.equal(registered.status, 200);
  const n = await startNode(m.port, { config: KEYED, node: { site: SITE } });
  cleanup(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  await settleSite([n]);
  const id = idSeededBy(rogue.address, [rogue.address, n.node.address], 'rogue');
  m.master.addMeeting({ id, title: 'Forged', packageSizeBytes: 300_000 });
  await m.master.startMeeting(id);
  const genuine = await masterPackageBytes(m.url, id);
  forged = await forgePackage(genuine, dir);
  const lead = (bytes: Buffer) => buildIdentity(bytes.subarray(0, 64 * 1024), true)?.buildId;
  assert.equal(lead(forged), lead(genuine), 'the forgery\'s lead is the master\'s');
  assert.notEqual(sha256Hex(forged), sha256Hex(genuine));
  await n.node.syncNow();
  const sha = masterSha(m.master, id);
  await waitFor('the node holds the master\'s bytes', () => n.node.store.get(id)?.sha256 === sha, 20_000);
  assert.equal(sha256Hex((await fetchRaw(packageUrl(n.url, id))).body), sha);
  assert.equal(served, 0, 'the rogue was never asked');
  const view = n.node.site.health.view().find((member) => member.address === rogue.address);
  assert.equal(view?.proof, 'refused', 'listed as not of this site');
  assert.equal(n.logger.lines.filter((line) => line.includes(rogue.address) && /not of this site/.test(line)).length, 1, 'logged once');
  const status = await nodeStatus(n.node);
  assert.ok(!JSON.stringify(status).includes(TEST_SITE_KEY), 'the key is not in the status');
});

test('a rotation, node by node: nodes keyed [new, old] and [old] share packages; once both hold [new, old] they still do', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster({ packageRateBytesPerSec: 4_000_000 });
  cleanup(() => m.close());
  const oldKey = TEST_SITE_KEY;
  const newKey = Buffer.alloc(32, 9).toString('base64');
  const a = await startNode(m.port, { config: { peers: { key: newKey, previousKeys: [oldKey] } }, node: { site: SITE } });
  const b = await startNode(m.port, { config: { peers: { key: oldKey, previousKeys: [] } }, node: { site: SITE } });
  for (const n of [a, b]) {
    cleanup(async () => {
      await n.stop();
      await removeDir(n.dir);
    });
  }
  await waitFor('both registered', () => m.master.nodes().filter((x) => x.online).length === 2);
  await settleSite([a, b]);
  const addresses = [a.node.address, b.node.address];
  assert.equal(a.node.site.health.usable(b.node.address), true, '[new, old] accepts a node still on the old key');

  const fromB = idSeededBy(b.node.address, addresses, 'rot-b');
  m.master.addMeeting({ id: fromB, title: 'Seeded by the old key', packageSizeBytes: 600_000 });
  await m.master.startMeeting(fromB);
  await Promise.all([a, b].map((n) => n.node.syncNow()));
  await waitFor('both hold it', () => [a, b].every((n) => n.node.store.get(fromB)?.sha256 === masterSha(m.master, fromB)), 20_000);
  assert.deepEqual(a.node.jobs.jobs().find((j) => j.meetingId === fromB)?.source, { kind: 'peer', node: b.node.address }, 'a took it from b');

  // b moves on: the new key signs, the old one is still accepted.
  await b.node.updateConfig({ peers: { key: newKey, previousKeys: [oldKey] } });
  await settleSite([a, b]);
  assert.equal(b.node.site.health.usable(a.node.address), true);
  const fromA = idSeededBy(a.node.address, addresses, 'rot-a');
  m.master.addMeeting({ id: fromA, title: 'Seeded by the new key', packageSizeBytes: 600_000 });
  await m.master.startMeeting(fromA);
  m.master.resetStats();
  await Promise.all([a, b].map((n) => n.node.syncNow()));
  await waitFor('both hold it', () => [a, b].every((n) => n.node.store.get(fromA)?.sha256 === masterSha(m.master, fromA)), 20_000);
  assert.deepEqual(b.node.jobs.jobs().find((j) => j.meetingId === fromA)?.source, { kind: 'peer', node: a.node.address }, 'b took it from a');
  assert.equal(a.node.site.counters.securityEvents + b.node.site.counters.securityEvents, 0);
  assert.equal(bytesOfBuild(m, fromA), m.master.meeting(fromA)?.package?.size, 'the build left the master once');
});
