// The asking side of the site tier: a seed's bytes are promoted only with its signature over
// exactly them; its build answers count only signed over this node's nonce; seed choice takes
// only proven, healthy members.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { buildMeetingPackage } from '../../reference-master/packages.ts';
import { MemoryLogger } from '../log/memory-logger.ts';
import { fileIdentity } from '../store/zip-lead.ts';
import { SiteHealth } from './health.ts';
import { pickSeed } from './rendezvous.ts';
import { buildMessage, healthMessage, newSiteKey, packageMessage, SiteKeyring } from './site-key.ts';
import { SiteMembers } from './site-members.ts';
import { SiteTier } from './site-tier.ts';
import { SIGNATURE_HEADER, STANDS_FOR_HEADER } from './wire.ts';

const SELF = '127.0.0.1:1';
// Port 9 on loopback: nothing listens, so a HEAD to this "seed" would fail (PEER_* error).
const SEED = '127.0.0.1:9';
const ANY: { build: string | null; documents: string | null; notBuilds: string[] } = { build: null, documents: null, notBuilds: [] };

function tier(keyring: SiteKeyring, options: { others?: string[]; answering?: (address: string) => SiteKeyring | null } = {}) {
  const logger = new MemoryLogger();
  const others = options.others ?? [];
  const members = new SiteMembers({ listNodes: async () => [], self: () => SELF, staticPeers: () => others });
  const health = new SiteHealth({
    transport: async (address, nonce) => {
      const ring = options.answering?.(address) ?? null;
      if (ring === null) throw new Error('no answer');
      return { proof: ring.sign(healthMessage(nonce, address)) };
    },
    keyring: () => keyring,
    members: () => others,
    logger,
  });
  const site = new SiteTier({ members, health, keyring: () => keyring, self: () => SELF, nodeId: () => 'node-test', settings: () => ({ enabled: true, connectTimeoutMs: 500, stallTimeoutMs: 5_000 }), logger });
  return { site, health, logger };
}

async function packages(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'site-verify-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const documents = [{ name: 'agenda.pdf', content: 'v1', uploadId: '11111111-2222-4333-8444-555555555555' }];
  const build = (buildTime: Date, docs = documents) => buildMeetingPackage({ dir, meetingId: 'm1', title: 'Board', documents: docs, buildTime });
  const preheat = await build(new Date('2026-12-01T08:00:00Z'));
  const start = await build(new Date('2026-12-01T09:00:00Z'));
  // A replaced document is a new upload (a new id in README.txt), as on the real master.
  const changed = await build(new Date('2026-12-01T09:00:00Z'), [{ ...documents[0]!, content: 'v2', uploadId: '66666666-7777-4888-8999-000000000000' }]);
  return { preheat, start, changed };
}

/** What a sibling received from `seed`, signed by `ring` as the seed would (`standsFor` header when given). */
async function received(ring: SiteKeyring, pkg: { path: string; sha256: string; size: number }, standsFor: string | null = null, seed = SEED) {
  const { buildId } = await fileIdentity(pkg.path);
  const signature = ring.sign(packageMessage({ meetingId: 'm1', buildId, standsFor, size: pkg.size, sha256: pkg.sha256, address: seed }));
  const headers: Record<string, string> = standsFor ? { [STANDS_FOR_HEADER]: standsFor } : {};
  return { sha256: pkg.sha256, size: pkg.size, headers, trailers: { [SIGNATURE_HEADER]: signature as string } };
}

test('signed bytes are promoted; unsigned, wrongly signed, signed for other bytes or by a stranger\'s key: a security event, never promoted', async (t) => {
  const { start, changed } = await packages(t);
  const key = new SiteKeyring(newSiteKey());
  const { site, logger } = tier(key);
  const signal = new AbortController().signal;
  assert.equal(await site.verify(SEED, 'm1', await received(key, start), start.path, ANY, signal), null);

  const good = await received(key, start);
  const cases: Array<[string, typeof good, string]> = [
    ['unsigned', { ...good, trailers: { [SIGNATURE_HEADER]: '' }, headers: { [SIGNATURE_HEADER]: '' } }, 'PEER_BAD_SIGNATURE'],
    ['the forgery: another package, the signature of the real one', { ...good, sha256: changed.sha256, size: changed.size }, 'PEER_BAD_SIGNATURE'],
    ['a stranger\'s key', await received(new SiteKeyring(newSiteKey()), start), 'PEER_BAD_SIGNATURE'],
    ['a real member\'s signature relayed from another address', await received(key, start, null, '127.0.0.1:10'), 'PEER_BAD_SIGNATURE'],
  ];
  for (const [what, bytes, code] of cases) {
    await assert.rejects(site.verify(SEED, 'm1', bytes, start.path, ANY, signal), { code }, what);
  }
  assert.equal(site.counters.securityEvents, cases.length);
  assert.equal(site.lastSecurityEvent?.node, SEED);
  assert.equal(logger.lines.filter((line) => /site security: 127\.0\.0\.1:9 sent/.test(line)).length, cases.length, 'each logged with the member\'s address');
});

test('the build asked for, or one with its documents the seed vouches for (it then stands for it); never a build held before a restart', async (t) => {
  const { preheat, start, changed } = await packages(t);
  const [p, s] = await Promise.all([preheat, start].map((b) => fileIdentity(b.path)));
  assert.notEqual(p!.buildId, s!.buildId);
  assert.equal(p!.documentsId, s!.documentsId);
  const key = new SiteKeyring(newSiteKey());
  const { site } = tier(key);
  const signal = new AbortController().signal;
  const wantStart = { build: s!.buildId, documents: s!.documentsId, notBuilds: [] };
  assert.equal(await site.verify(SEED, 'm1', await received(key, start), start.path, wantStart, signal), null, 'the very build');
  assert.equal(await site.verify(SEED, 'm1', await received(key, preheat, s!.buildId), preheat.path, wantStart, signal), s!.buildId, 'same documents, vouched for');
  await assert.rejects(site.verify(SEED, 'm1', await received(key, preheat), preheat.path, wantStart, signal), { code: 'PEER_OTHER_BUILD' }, 'not vouched for');
  await assert.rejects(site.verify(SEED, 'm1', await received(key, changed, s!.buildId), changed.path, wantStart, signal), { code: 'PEER_OTHER_BUILD' }, 'other documents');
  // A stands-for header the seed did not sign is a forgery.
  const unsignedVouch = { ...(await received(key, preheat)), headers: { [STANDS_FOR_HEADER]: s!.buildId } };
  await assert.rejects(site.verify(SEED, 'm1', unsignedVouch, preheat.path, wantStart, signal), { code: 'PEER_BAD_SIGNATURE' });
  await assert.rejects(site.verify(SEED, 'm1', await received(key, preheat), preheat.path, { build: null, documents: null, notBuilds: [p!.buildId] }, signal), { code: 'PEER_STALE_BUILD' });
});

test('seed choice: only members that proved the key and are healthy; a stranger never seeds; a member found dead hands its meetings on', async () => {
  const key = new SiteKeyring(newSiteKey());
  const member = '127.0.0.1:2';
  const stranger = '127.0.0.1:3';
  let memberAnswers = true;
  const { site, health } = tier(key, { others: [member, stranger], answering: (a) => (a === member && memberAnswers ? key : a === stranger ? new SiteKeyring(newSiteKey()) : null) });
  const strangerIds = Array.from({ length: 200 }, (_, i) => `m${i}`).filter((id) => pickSeed(id, [SELF, member, stranger]) === stranger);
  const memberIds = Array.from({ length: 200 }, (_, i) => `m${i}`).filter((id) => pickSeed(id, [SELF, member, stranger]) === member);
  assert.ok(strangerIds.length > 0 && memberIds.length > 0);
  for (const id of memberIds) assert.equal(site.seedNow(id), null, 'before any probe: nobody else is a member');
  // A member read from the list for the first time is probed before a seed is chosen.
  assert.equal(await site.seedFor(memberIds[0]!), member);
  await health.probeAll();
  for (const id of strangerIds) assert.notEqual(await site.seedFor(id), stranger, 'a stranger never seeds');
  for (const id of memberIds) assert.equal(await site.seedFor(id), member);
  assert.equal(site.fellBack(member, memberIds[0]!, { message: 'reset', code: 'ECONNRESET' }), true, 'a reset hands over');
  memberAnswers = false;
  for (const id of memberIds) assert.notEqual(await site.seedFor(id), member, 'sick: its meetings move to the next in rendezvous order');
  assert.equal(site.counters.handovers, 1);
  assert.equal(site.fellBack(member, memberIds[0]!, { message: 'bad', code: 'PEER_BAD_SIGNATURE' }), true, 'a sick member stays handed over');
});

test('a build answer counts only when signed over this node\'s nonce by the seed; otherwise the node asks the master', async (t) => {
  const key = new SiteKeyring(newSiteKey());
  let mode: 'signed' | 'unsigned' | 'replayed' | 'silent' = 'signed';
  let first: string | null = null;
  let address = '';
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const meetingId = decodeURIComponent(url.pathname.split('/')[5] ?? '');
    const nonce = url.searchParams.get('nonce') as string;
    const buildId = 'b'.repeat(64);
    if (mode === 'silent') return; // never answers
    const fresh = key.sign(buildMessage({ meetingId, buildId, documentsId: null, nonce, address }));
    first ??= fresh;
    const signature = mode === 'unsigned' ? null : mode === 'replayed' ? first : fresh;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ buildId, documentsId: null, sha256: null, size: null, token: null, signature }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { site, health } = tier(key, { others: [address], answering: () => key });
  await health.probeAll();
  const id = Array.from({ length: 100 }, (_, i) => `m${i}`).find((x) => pickSeed(x, [SELF, address]) === address)!;
  const signed = await site.askSeed(id, 'T1');
  assert.deepEqual(signed, { kind: 'identified', seed: address, buildId: 'b'.repeat(64), documentsId: null });
  for (const m of ['unsigned', 'replayed'] as const) {
    mode = m;
    assert.equal((await site.askSeed(id, 'T1'))?.kind, 'unknown', m);
  }
  assert.equal(site.counters.securityEvents, 2, 'an unsigned and a replayed answer are security events');
  mode = 'silent';
  const silent = await site.askSeed(id, 'T1');
  assert.equal(silent?.kind, 'unknown', 'a seed that does not answer in time: the node asks the master itself');
  assert.equal(site.counters.securityEvents, 2, 'silence is no security event');
});

test('a seed silent mid-stream is asked its health: alive (waiting on a slow master) it is waited on; no answer, the download is abandoned and the seed marked sick', async () => {
  const key = new SiteKeyring(newSiteKey());
  const seed = '127.0.0.1:2';
  let answering = true;
  let asked = 0;
  let onAsk: (() => void) | null = null;
  const logger = new MemoryLogger();
  const members = new SiteMembers({ listNodes: async () => [], self: () => SELF, staticPeers: () => [seed] });
  const health = new SiteHealth({
    transport: async (address, nonce) => {
      asked++;
      onAsk?.();
      if (!answering) throw new Error('no answer');
      return { proof: key.sign(healthMessage(nonce, address)) };
    },
    keyring: () => key,
    members: () => [seed],
    logger,
  });
  // A stall window of a few milliseconds: the watch's decisions, not its timing, are under test.
  const site = new SiteTier({ members, health, keyring: () => key, self: () => SELF, nodeId: () => 'n', settings: () => ({ enabled: true, connectTimeoutMs: 500, stallTimeoutMs: 5 }), logger });
  await health.probeAll();
  const askedTimes = (n: number) => new Promise<void>((resolve) => {
    onAsk = () => {
      if (asked >= n) resolve();
    };
  });
  const watch = site.watchSeed(seed);
  await askedTimes(asked + 3);
  assert.equal(watch.signal.aborted, false, 'a seed that answers its health is waited on, however long it is silent');
  answering = false;
  const aborted = new Promise<void>((resolve) => watch.signal.addEventListener('abort', () => resolve(), { once: true }));
  await aborted;
  assert.equal((watch.signal.reason as { code?: string }).code, 'PEER_STALLED');
  assert.equal(health.usable(seed), false, 'marked sick');
  watch.stop();
  assert.equal(site.fellBack(seed, 'm1', watch.signal.reason as Error), true, 'the next attempt goes to the next healthy member');
});

test('bytes of an abandoned seed are kept only as a prefix of the complete package it signed, of a build asked for, its first entry whole', async (t) => {
  const { start, changed } = await packages(t);
  const key = new SiteKeyring(newSiteKey());
  const { site } = tier(key);
  const bytes = await readFile(start.path);
  const { buildId } = await fileIdentity(start.path);
  const keep = bytes.length >> 1;
  const partial = path.join(path.dirname(start.path), 'partial.part');
  await writeFile(partial, bytes.subarray(0, keep));
  const signed = (of: { sha256: string; size: number }, ring = key) =>
    ring.sign(packageMessage({ meetingId: 'm1', buildId, standsFor: null, size: of.size, sha256: of.sha256, address: SEED })) as string;
  const headers = { 'content-length': String(start.size), etag: `"${start.sha256}"`, [SIGNATURE_HEADER]: signed(start) };
  const point = (h: Record<string, string>, kept = keep, want: { build: string | null; documents: string | null; notBuilds: string[] } = ANY) => site.resumePoint(SEED, 'm1', h, partial, kept, want);

  assert.deepEqual(await point(headers), { bytes: keep, size: start.size, sha256: start.sha256 });
  // A 206 that died too states the whole package's size in its Content-Range.
  const ranged = { ...headers, 'content-length': '10', 'content-range': `bytes 100-109/${start.size}` };
  assert.deepEqual(await point(ranged), { bytes: keep, size: start.size, sha256: start.sha256 });
  assert.equal(await point({ ...headers, etag: '' }), null, 'a streamed answer (no ETag): nothing to ask the rest of');
  assert.equal(await point({ 'content-length': String(start.size), etag: headers.etag }), null, 'unsigned');
  assert.equal(await point({ ...headers, [SIGNATURE_HEADER]: signed(start, new SiteKeyring(newSiteKey())) }), null, 'signed with another key');
  assert.equal(await point({ ...headers, etag: `"${changed.sha256}"` }), null, 'the signature is not of the package named');
  assert.equal(await point(headers, 20), null, 'the first entry is not all there: the build is not known');
  assert.equal(await point(headers, start.size), null, 'nothing is missing');
  assert.equal(await point(headers, keep, { build: null, documents: null, notBuilds: [buildId] }), null, 'a build held before a restart');
  assert.equal(await point(headers, keep, { build: 'f'.repeat(64), documents: null, notBuilds: [] }), null, 'another build than the one asked for');
  assert.equal(site.counters.securityEvents, 0, 'a seed that died is no security event');
});
