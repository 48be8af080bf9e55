/**
 * The site tier's hand-over keeps the bytes already received (issue 18): a seed that dies
 * mid-stream of a complete package leaves its bytes in the temp file, and the next member in
 * rendezvous order is asked only for the rest, on condition that it holds that very package. What
 * it answers otherwise (the whole package, another build, a bad signature) never corrupts the
 * result; the kept bytes are never served, count against the quota, and never outlive the download.
 */
import assert from 'node:assert/strict';
import { copyFile, readdir, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import type { EdgeNodeOptions } from '../src/edge-node.ts';
import type { FinishedServe } from '../src/http/serve-stats.ts';
import { rendezvousOrder } from '../src/site/rendezvous.ts';
import { SiteKeyring } from '../src/site/site-key.ts';
import { SIGNATURE_HEADER } from '../src/site/wire.ts';
import { signPackage, startFakePeer } from './site-fakes.ts';
import {
  cleanupStack,
  fetchRaw,
  masterPackageBytes,
  masterSha,
  packageUrl,
  removeDir,
  settleSite,
  sha256Hex,
  startMaster,
  startNode,
  TEST_SITE_KEY,
  waitFor,
  type TestMaster,
  type TestNode,
} from './helpers.ts';

const SITE: EdgeNodeOptions['site'] = { notFoundRetryMs: 3_000, busyRetryMs: 8_000, buildAskTimeoutMs: 2_000, membersMaxAgeMs: 0 };
const SIZE = 600_000;

/** A meeting id whose rendezvous order over these members is exactly `order`. */
function idOrdered(order: string[], prefix: string): string {
  for (let i = 0; i < 100_000; i++) {
    const id = `${prefix}-${i}`;
    if (rendezvousOrder(id, order).join() === order.join()) return id;
  }
  throw new Error('no such id');
}

function isDownload(req: IncomingMessage): boolean {
  return req.url?.includes('/download-package') === true && req.method === 'GET';
}

/** Seed A: answers with the whole package (signed, ETag, length), sends `keep` bytes of it, then dies (reset). */
function dyingSeed(pkg: () => { id: string; bytes: Buffer }, keep: number) {
  return (req: IncomingMessage, res: ServerResponse, address: string) => {
    const { id, bytes } = pkg();
    if (!isDownload(req) || !req.url?.includes(`/${id}/`)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': bytes.length, etag: `"${sha256Hex(bytes)}"`, [SIGNATURE_HEADER]: signPackage(id, bytes, address) });
    res.write(bytes.subarray(0, keep));
    setTimeout(() => res.destroy(), 50);
  };
}

/** The node under test, asking A (a static peer) first, then B, then itself. */
async function askingNode(t: Parameters<typeof cleanupStack>[0], m: TestMaster, staticPeers: string[], config: Record<string, unknown> = {}, node: Partial<EdgeNodeOptions> = {}): Promise<TestNode> {
  const cleanup = cleanupStack(t);
  const n = await startNode(m.port, { config: { peers: { key: TEST_SITE_KEY, static: staticPeers }, network: { retryDelay: 0.05, connectionTimeout: 2, downloadTimeout: 30 }, ...config }, node: { site: SITE, ...node } });
  cleanup(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  return n;
}

async function partFiles(n: TestNode, id: string): Promise<string[]> {
  const dir = path.join(n.storageDir, `meeting_${id}`);
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => name.includes('.part-')).map((name) => path.join(dir, name));
}

test('seed A dies after K bytes of a complete package: member B, holding the same build, is asked for the rest only (Range), and the node ends with the exact package', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster();
  cleanup(() => m.close());
  let good: { id: string; bytes: Buffer } = { id: '', bytes: Buffer.alloc(0) };
  const keep = SIZE >> 1;
  let askedA = 0;
  const a = await startFakePeer(t, (req, res, address) => {
    if (isDownload(req)) askedA++;
    dyingSeed(() => good, keep)(req, res, address);
  });
  const b = await startNode(m.port, { config: { peers: { key: TEST_SITE_KEY } }, node: { site: SITE } });
  cleanup(async () => {
    await b.stop();
    await removeDir(b.dir);
  });
  const n = await askingNode(t, m, [a.address]);
  await settleSite([b, n]);
  const id = idOrdered([a.address, b.node.address, n.node.address], 'resume');
  m.master.addMeeting({ id, title: 'Resumed', packageSizeBytes: SIZE });
  await m.master.startMeeting(id);
  const sha = masterSha(m.master, id);
  // B is the seed among the members it knows (A is only n's static peer): it fetches from the master.
  await b.node.syncNow();
  await waitFor('B holds the build', () => b.node.store.get(id)?.sha256 === sha, 20_000);
  good = { id, bytes: await masterPackageBytes(m.url, id) };
  const size = good.bytes.length;
  const masterBefore = m.master.stats().packageBytesSent;
  const servedByB: FinishedServe[] = [];
  b.node.stats.events.on('finished', (serve) => {
    if (serve.meetingId === id && serve.peer !== null) servedByB.push(serve);
  });

  await n.node.syncNow();
  await waitFor('n holds the package', () => n.node.store.get(id)?.sha256 === sha, 30_000);
  assert.equal(askedA, 1, 'A was asked, and died');
  const counters = n.node.site.counters;
  assert.equal(counters.handovers, 1);
  assert.equal(counters.resumes, 1, 'the download went on from the bytes kept');
  assert.ok(counters.resumedBytes > 0 && counters.resumedBytes <= keep, `kept ${counters.resumedBytes} of the ${keep} A sent`);
  assert.deepEqual(
    servedByB.map((serve) => [serve.status, serve.range, serve.bytes]),
    [[206, `bytes=${counters.resumedBytes}-`, size - counters.resumedBytes]],
    'B saw one Range request, for the rest, and sent only the rest (206)',
  );
  assert.equal(n.node.jobs.fetchedBytes.peer, size, 'bytes fetched from siblings total the package, not the package plus what A sent');
  assert.equal(m.master.stats().packageBytesSent, masterBefore, 'nothing more from the master');
  assert.deepEqual(n.node.jobs.jobs().find((j) => j.meetingId === id)?.source, { kind: 'peer', node: b.node.address });
  assert.ok(n.logger.lines.some((line) => line.includes(`kept from the seed abandoned`)));
  const res = await fetchRaw(packageUrl(n.url, id));
  assert.equal(res.status, 200);
  assert.equal(sha256Hex(res.body), sha, 'the exact package');
  assert.deepEqual(await partFiles(n, id), [], 'no temp file left');
});

type Answer = 'ignores Range' | 'another build' | 'other bytes under the ETag' | 'a bad signature';

for (const answer of ['ignores Range', 'another build', 'other bytes under the ETag', 'a bad signature'] as Answer[]) {
  test(`the next member answers the Range with ${answer}: no corruption, never promoted unless it is the package`, async (t) => {
    const cleanup = cleanupStack(t);
    const m = await startMaster();
    cleanup(() => m.close());
    let good: { id: string; bytes: Buffer } = { id: '', bytes: Buffer.alloc(0) };
    let other: Buffer = Buffer.alloc(0);
    const keep = SIZE >> 1;
    const ranges: Array<string | undefined> = [];
    const a = await startFakePeer(t, dyingSeed(() => good, keep));
    const b = await startFakePeer(t, (req, res, address) => {
      // The other meeting (active too, so the node syncs it) is not B's business here.
      if (!isDownload(req) || !req.url?.includes(`/${good.id}/`)) return void res.writeHead(404).end();
      ranges.push(req.headers.range);
      const { id, bytes } = good;
      const etag = (of: Buffer) => `"${sha256Hex(of)}"`;
      const partial = (of: Buffer, signature: string) => {
        res.writeHead(206, { 'content-range': `bytes ${keep}-${of.length - 1}/${of.length}`, 'content-length': of.length - keep, etag: etag(of), [SIGNATURE_HEADER]: signature });
        res.end(of.subarray(keep));
      };
      if (answer === 'ignores Range') {
        res.writeHead(200, { 'content-length': bytes.length, etag: etag(bytes), [SIGNATURE_HEADER]: signPackage(id, bytes, address) });
        res.end(bytes);
      } else if (answer === 'another build') {
        partial(other, signPackage(id, other, address));
      } else if (answer === 'other bytes under the ETag') {
        const spliced = Buffer.from(bytes);
        spliced.writeUInt8(spliced.readUInt8(keep + 1000) ^ 0xff, keep + 1000);
        res.writeHead(206, { 'content-range': `bytes ${keep}-${bytes.length - 1}/${bytes.length}`, 'content-length': bytes.length - keep, etag: etag(bytes), [SIGNATURE_HEADER]: signPackage(id, bytes, address) });
        res.end(spliced.subarray(keep));
      } else {
        partial(bytes, signPackage(id, bytes, address, new SiteKeyring(Buffer.alloc(32, 9).toString('base64'))));
      }
    });
    const n = await askingNode(t, m, [a.address, b.address]);
    await settleSite([n]);
    const id = idOrdered([a.address, b.address, n.node.address], `answer-${ranges.length}-${answer.replace(/ /g, '-')}`);
    m.master.addMeeting({ id, title: 'Resumed', packageSizeBytes: SIZE });
    m.master.addMeeting({ id: `${id}-x`, title: 'Another', packageSizeBytes: SIZE });
    await m.master.startMeeting(id);
    await m.master.startMeeting(`${id}-x`);
    good = { id, bytes: await masterPackageBytes(m.url, id) };
    other = await masterPackageBytes(m.url, `${id}-x`);
    const sha = masterSha(m.master, id);

    await n.node.syncNow();
    await waitFor('n holds the package', () => n.node.store.get(id)?.sha256 === sha, 30_000);
    assert.equal(ranges.length, 1, 'B was asked once');
    assert.match(ranges[0] ?? '', /^bytes=\d+-$/, 'for the rest of the bytes kept');
    const counters = n.node.site.counters;
    assert.equal(counters.resumes, 0, 'nothing went on from the bytes kept');
    const job = n.node.jobs.jobs().find((j) => j.meetingId === id);
    if (answer === 'ignores Range') {
      assert.equal(counters.peerFetches, 1, 'the whole package from B, promoted');
      assert.deepEqual(job?.source, { kind: 'peer', node: b.address });
    } else {
      assert.equal(counters.peerFetches, 0, 'never promoted from B');
      assert.deepEqual(job?.source, { kind: 'master' }, 'fell back to the master');
      assert.equal(counters.securityEvents, answer === 'a bad signature' ? 1 : 0, 'a bad signature is a security event');
    }
    assert.equal(sha256Hex((await fetchRaw(packageUrl(n.url, id))).body), sha, 'the exact package, served');
    assert.deepEqual(await partFiles(n, id), [], 'no temp file left');
  });
}

test('the bytes kept are never served to a tablet, go with the download when it stops, and are removed at start-up', async (t) => {
  const cleanup = cleanupStack(t);
  const m = await startMaster();
  cleanup(() => m.close());
  let good: { id: string; bytes: Buffer } = { id: '', bytes: Buffer.alloc(0) };
  const keep = SIZE >> 1;
  const a = await startFakePeer(t, dyingSeed(() => good, keep));
  // B takes the request and never answers: the download waits on it with the bytes kept.
  const hanging: ServerResponse[] = [];
  const b = await startFakePeer(t, (req, res) => {
    if (!isDownload(req)) return void res.writeHead(404).end();
    hanging.push(res);
  });
  cleanup(() => hanging.forEach((res) => res.destroy()));
  const n = await askingNode(t, m, [a.address, b.address], {}, { policy: { waitForSyncMs: 1_000 } });
  await settleSite([n]);
  const id = idOrdered([a.address, b.address, n.node.address], 'kept');
  m.master.addMeeting({ id, title: 'Kept', packageSizeBytes: SIZE });
  await m.master.startMeeting(id);
  good = { id, bytes: await masterPackageBytes(m.url, id) };

  await n.node.syncNow();
  await waitFor('B is asked, the bytes of A kept', () => hanging.length === 1, 20_000);
  const [kept] = await partFiles(n, id);
  assert.ok(kept, 'the temp file kept');
  const keptBytes = (await stat(kept)).size;
  assert.ok(keptBytes > 0 && keptBytes <= keep);
  const job = n.node.jobs.inFlight(id);
  assert.equal(job?.bytesWritten, 0, 'the attempt with B has nothing of its own to read yet');
  assert.equal(n.node.quota.state.inFlightBytes, keptBytes, 'the quota guard counts the bytes kept on disk');
  const res = await fetchRaw(packageUrl(n.url, id));
  assert.equal(res.status, 503, 'a tablet waits: the bytes kept are not served');
  assert.equal(res.body.includes(good.bytes.subarray(0, 1024)), false, 'not a byte of the package');

  // What a crash would leave: the kept file; start-up removes it (and adopts nothing).
  const leftover = `${kept}-crash`;
  await copyFile(kept, leftover);
  await n.stop();
  assert.deepEqual((await partFiles(n, id)).filter((file) => file !== leftover), [], 'stopping removed the kept bytes with the download');
  const again = await startNode(m.port, { dir: n.dir, node: { site: SITE } });
  cleanup(() => again.stop());
  assert.deepEqual(await partFiles(again, id), [], 'start-up removed the leftover');
  assert.equal(again.node.store.get(id), undefined, 'and adopted nothing');
});
